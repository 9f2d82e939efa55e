"""Issue 15, smaller defects of the controller's metrics:
peak_controller_endpoint_cpu_seconds_total was a counter that could decrease (each agent
report replaced it, and a restarted pod starts again from 0); it is now the gauge
peak_controller_endpoint_cpu_seconds. Label values were printed raw: a service name with a
quote or backslash broke the Prometheus text format; they are now escaped (\\\\, \\", \\n)."""
import re

import ctlpeer

NAME = 'a\\"b.svc.example.'  # the name as YAML and peak print it: a\"b


def test_cpu_is_a_gauge_and_labels_are_escaped(tmp_path):
    mport = ctlpeer.peaktest.free_port()
    cfg = ctlpeer.config(svc=f"'{NAME}'")
    ctl = ctlpeer.Controller(str(tmp_path), cfg, args=["--metrics", f"[::1]:{mport}"])
    try:
        a = ctlpeer.Agent(ctl.port)
        a.read_map()
        a.send(f"load {NAME} pod-0 3 5000000000\n")
        assert ctlpeer.wait_until(lambda: " 5.000" in ctlpeer.metrics(mport))
        a.send(f"load {NAME} pod-0 3 1000000000\n")  # the pod restarted: less CPU
        assert ctlpeer.wait_until(lambda: " 1.000" in ctlpeer.metrics(mport))
        body = ctlpeer.metrics(mport)
        assert "peak_controller_endpoint_cpu_seconds_total" not in body
        assert "# TYPE peak_controller_endpoint_cpu_seconds gauge" in body
        # no counter of the endpoints' figures (the store's own counters may be there)
        assert not re.search(r"^# TYPE peak_controller_endpoint_\w+ counter$", body, re.M)
        # every sample line is NAME{service="...",endpoint="..."} VALUE with escapes only
        label = r'"(?:[^"\\\n]|\\[\\"n])*"'
        for line in body.splitlines():
            if line.startswith("#") or not line:
                continue
            assert re.fullmatch(rf"[a-z_]+(\{{service={label},endpoint={label}\}})? \S+",
                                line), line
        assert 'service="a\\\\\\"b.svc.example."' in body
        a.close()
    finally:
        assert ctl.stop() == 0
