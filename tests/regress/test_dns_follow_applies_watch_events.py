"""Issue 18, propagation at scale: peak dns --store etcd woke on the watch's event, then read
every record changed since its last read with a range request over the whole prefix. etcd
filters such a read by mod_revision only after loading every key of the range, so at 1000
services of 100 endpoints each replica spent 60-100 ms per change (the largest part of a
change's way to the answers). The watch's events carry the new values: the replica now
applies them, and reads only after a compaction or a cancelled watch. Here the records are
written straight into etcd (no controller, whose own requests would blur the count), and
etcd's own count of Range requests must not move while the replica follows five changes."""
import os
import shutil
import sys
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "controlplane"))
import ctlpeer  # noqa: E402
import etcdproc  # noqa: E402
import peaktest  # noqa: E402
from ctlpeer import SVC  # noqa: E402

KEY = f"/peak/svc/{SVC}"


def record(w):
    return (f"map {SVC}\nep pod-0 0/7\nep pod-1 128/7\nend\n"
            f"weight {SVC} pod-0 {w}\nweight {SVC} pod-1 1\n")


def ranges(e):
    """Range requests etcd served so far (its own metrics)."""
    with urllib.request.urlopen(e.url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("grpc_server_handled_total") and 'grpc_code="OK"' in line \
                    and 'grpc_method="Range"' in line:
                return int(float(line.rsplit(" ", 1)[1]))
    raise AssertionError("etcd has no Range counter")


@pytest.mark.skipif(not shutil.which(etcdproc.ETCD), reason="etcd is not installed")
def test_changes_applied_from_the_events(tmp_path):
    e = etcdproc.Etcd(str(tmp_path / "etcd"))
    d = None
    try:
        e.wait()
        e.put(KEY, record(1))
        d = peaktest.Server(tmp_path, ctlpeer.config(neps=2),
                            extra=("--store", "etcd", "--etcd", e.url))
        assert ctlpeer.wait_until(lambda: f"{SVC} pod-0 up weight=1" in d.status(), 20), \
            (d.status(), d.logtext())
        # the watch is up once a first change came through it
        e.put(KEY, record(2))
        assert ctlpeer.wait_until(lambda: f"{SVC} pod-0 up weight=2" in d.status(), 20), \
            (d.status(), d.logtext())
        before = ranges(e)
        for w in (3, 4, 5, 6, 7):
            e.put(KEY, record(w))
            assert ctlpeer.wait_until(lambda: f"{SVC} pod-0 up weight={w}" in d.status(), 20), \
                (d.status(), d.logtext())
        assert ranges(e) == before, "the replica read the store for a change the watch held"
        # a value that is not a service's lines is refused, as from a read
        e.put(KEY, "garbage\n")
        e.put(KEY, record(8))
        assert ctlpeer.wait_until(lambda: f"{SVC} pod-0 up weight=8" in d.status(), 20)
        assert "refused" in d.logtext()
        assert d.proc.poll() is None
    finally:
        if d:
            d.stop()
            d.proc.wait(10)
        e.stop()
