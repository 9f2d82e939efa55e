"""Issue 18, two DNS replicas within 100 ms: peak dns --store etcd read the stored state and
opened its /v3/watch stream only at its next 50 ms tick. etcd registers a watch when the
request arrives; a change stored between the replica's read and then makes the watch a late
one, which etcd serves only at its next pass over late watchers (every 100 ms). So the
first change after a replica started reached it ~200 ms after the controller stored it
(bench/controlplane/replicas.py: 186-197 ms for the first change, about 1 ms for the others).
The replica now opens the stream right after the read, its request sent (etcd.h:
etcd_watch_open), before it logs that it follows the store.

Here: a replica starts; as soon as it logs that it follows the store, the test stops it
(SIGSTOP). Stopped, it can send nothing more: its watch must already be
registered in etcd (etcd's own gauge of watchers), and a change stored while it is stopped
is applied once it runs again. Before the fix, etcd had no watcher from it while it was
stopped (its next tick never came)."""
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "controlplane"))
import ctlpeer  # noqa: E402
import etcdproc  # noqa: E402
import peaktest  # noqa: E402
from ctlpeer import SVC  # noqa: E402

KEY = f"/peak/svc/{SVC}"


def record(down):
    return f"map {SVC}\nep pod-0 0/7\nep pod-1 128/7\nend\n" + \
        (f"health {SVC} pod-1 down\n" if down else "")


def watchers(e):
    """Watchers etcd holds now (its own metrics)."""
    with urllib.request.urlopen(e.url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("etcd_debugging_mvcc_watcher_total "):
                return int(float(line.split()[1]))
    raise AssertionError("etcd has no watcher gauge")


@pytest.mark.skipif(not shutil.which(etcdproc.ETCD), reason="etcd is not installed")
def test_the_watch_is_registered_when_the_read_is_done(tmp_path):
    e = etcdproc.Etcd(str(tmp_path / "etcd"))
    p = None
    try:
        e.wait()
        e.put(KEY, record(False))
        (tmp_path / "peak.yaml").write_text(ctlpeer.config())
        log = tmp_path / "dns.log"
        ctl = str(tmp_path / "dns.ctl")
        p = subprocess.Popen([peaktest.PEAK, "dns", "--config", str(tmp_path / "peak.yaml"),
                              "--listen", f"[::1]:{peaktest.free_port()}", "--threads", "1",
                              "--control", ctl, "--store", "etcd", "--etcd", e.url],
                             stdout=open(log, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while "dns: etcd: following " not in log.read_text():
            assert p.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.001)
        os.kill(p.pid, signal.SIGSTOP)
        try:
            # stopped: whatever etcd holds of it was sent with the read's step
            assert ctlpeer.wait_until(lambda: watchers(e) >= 1, 5), \
                "no watch registered when the replica's read was done"
            e.put(KEY, record(True))
        finally:
            os.kill(p.pid, signal.SIGCONT)
        assert ctlpeer.wait_until(
            lambda: f"{SVC} pod-1 down" in peaktest.Server.status(
                type("S", (), {"control": ctl})()), 5), log.read_text()
    finally:
        if p and p.poll() is None:
            p.terminate()
            p.wait(10)
        e.stop()
