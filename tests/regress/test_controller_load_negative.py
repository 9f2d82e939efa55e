"""Defect 6 (issue 15): 'load SERVICE ENDPOINT -1 -1' from an agent was read with
sscanf("%llu"), which takes a minus sign, so the connections and CPU metrics showed
18446744073709551615. The control grammar now refuses signs, leading zeros and overflow."""
import ctlpeer
from ctlpeer import SVC


def test_negative_load_is_refused(tmp_path):
    mport = ctlpeer.peaktest.free_port()
    ctl = ctlpeer.Controller(str(tmp_path), ctlpeer.config(),
                             args=["--metrics", f"[::1]:{mport}"])
    try:
        a = ctlpeer.Agent(ctl.port)
        a.read_map()
        a.send(f"load {SVC} pod-0 -1 -1\n"
               f"load {SVC} pod-1 18446744073709551616 0\n"
               f"load {SVC} pod-2 7 2500000000\n")
        # lines are handled in order: once pod-2's load shows, the others were seen
        assert ctlpeer.wait_until(
            lambda: ctlpeer.metric(mport, "peak_controller_endpoint_connections",
                                   "pod-2") == "7")
        for ep in ("pod-0", "pod-1"):
            assert ctlpeer.metric(mport, "peak_controller_endpoint_connections", ep) == "0"
        body = ctlpeer.metrics(mport)
        assert "18446744073709551615" not in body
        assert a.s.fileno() >= 0
        a.close()
    finally:
        assert ctl.stop() == 0
