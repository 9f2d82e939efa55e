"""Issue 18: a standby controller (--store etcd) read the stored state at start, then opened
its /v3/watch stream only at its next 250 ms interval, and curl sent the request at a later
call still. A change the leader stored in between made the watch a late one, which etcd
serves only at its next pass over late watchers (every 100 ms): the standby adopted the
first change 0.33 s after the leader stored it (tests/controlplane/test_ha.py, ASan build),
later ones within 20 ms. A standby now opens the stream right after its read, its request
sent (etcd.h: etcd_watch_open), as peak dns replicas do
(test_dns_follow_watch_starts_with_the_read.py).

Here: a leader, then a standby; as soon as the standby logs that it is one (its read done),
the test stops it (SIGSTOP). Stopped, it sends nothing more: its watch must already be
registered in etcd (etcd's own gauge of watchers; a leader watches nothing). Before the
fix, etcd had no watcher while it was stopped. Once it runs again it adopts a change."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "controlplane"))
import ctlpeer  # noqa: E402
import etcdproc  # noqa: E402
from ctlpeer import SVC  # noqa: E402
from test_dns_follow_watch_starts_with_the_read import watchers  # noqa: E402


@pytest.mark.skipif(not shutil.which(etcdproc.ETCD), reason="etcd is not installed")
def test_the_standby_watch_is_registered_when_its_read_is_done(tmp_path):
    e = etcdproc.Etcd(str(tmp_path / "etcd"))
    c1 = c2 = None
    try:
        e.wait()
        c1 = ctlpeer.Controller(str(tmp_path), ctlpeer.config(),
                                ("--store", "etcd", "--etcd", e.url, "--control",
                                 str(tmp_path / "c1.sock")), name="c1")
        assert ctlpeer.wait_until(lambda: "leading (store etcd)" in c1.log(), 10), c1.log()
        assert watchers(e) == 0
        log = tmp_path / "c2.log"
        c2 = subprocess.Popen([ctlpeer.PEAK, "controller", "--config", c1.cfg, "--listen",
                               f"[::1]:{c1.port}", "--store", "etcd", "--etcd", e.url],
                              stdout=open(log, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while "a standby" not in log.read_text():
            assert c2.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.001)
        os.kill(c2.pid, signal.SIGSTOP)
        try:
            assert ctlpeer.wait_until(lambda: watchers(e) >= 1, 5), \
                "no watch registered when the standby's read was done"
        finally:
            os.kill(c2.pid, signal.SIGCONT)
        r = subprocess.run([ctlpeer.PEAK, "controller-ctl", "--control",
                            str(tmp_path / "c1.sock"), "weight", SVC, "pod-0", "3"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r
        assert ctlpeer.wait_until(lambda: "the stored state changed: adopted" in
                                  log.read_text(), 5), log.read_text()
    finally:
        if c2 and c2.poll() is None:
            c2.terminate()
            c2.wait(10)
        if c1:
            c1.stop()
        e.stop()
