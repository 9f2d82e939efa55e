"""Issue 18, the slow first changes: peak dns --store etcd read every stored record in one
range request bounded by 1 s. At 1000 services of 100 endpoints (about 10 MB of JSON) the
read outlasted the bound on a loaded machine, timed out, and was tried again at every tick
for seconds, while the replica answered from its configuration: the first changes after a
start took 1-4.5 s to show. The replica now reads in pages of 100 records, every page at the
first page's revision, and logs that it follows the store once the read is whole. Here 250
records sort before the service's own, so its record comes in the third page."""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "controlplane"))
import ctlpeer  # noqa: E402
import etcdproc  # noqa: E402
import peaktest  # noqa: E402
from ctlpeer import SVC  # noqa: E402

N = 250


def record(name, w):
    return (f"map {name}\nep pod-0 0/7\nep pod-1 128/7\nend\n"
            f"weight {name} pod-0 {w}\nweight {name} pod-1 1\n")


@pytest.mark.skipif(not shutil.which(etcdproc.ETCD), reason="etcd is not installed")
def test_first_read_in_pages(tmp_path):
    e = etcdproc.Etcd(str(tmp_path / "etcd"))
    d = None
    try:
        e.wait()
        for i in range(N):  # "aa..." sorts before "api..."
            name = f"aa{i:04d}.svc.example."
            e.put(f"/peak/svc/{name}", record(name, 1))
        e.put(f"/peak/svc/{SVC}", record(SVC, 5))
        d = peaktest.Server(tmp_path, ctlpeer.config(neps=2),
                            extra=("--store", "etcd", "--etcd", e.url))
        assert ctlpeer.wait_until(lambda: "dns: etcd: following /peak/svc/" in d.logtext(),
                                  20), d.logtext()
        assert f"({N + 1} records read in 3 requests)" in d.logtext(), d.logtext()
        assert ctlpeer.wait_until(lambda: f"{SVC} pod-0 up weight=5" in d.status(), 10), \
            (d.status(), d.logtext())
        # and the watch follows from the revision of that read
        e.put(f"/peak/svc/{SVC}", record(SVC, 6))
        assert ctlpeer.wait_until(lambda: f"{SVC} pod-0 up weight=6" in d.status(), 20), \
            (d.status(), d.logtext())
    finally:
        if d:
            d.stop()
            d.proc.wait(10)
        e.stop()
