"""Issue 18, scale bench: the controller saved its whole live state in one etcd
transaction, one compare and one put per service. etcd's defaults (--max-txn-ops 128,
--max-request-bytes 1.5 MiB) refuse such a request past about 127 services with HTTP 400,
and the controller retried it forever: with 300 services nothing was ever stored. A save is
now cut into transactions etcd takes, each guarded by the lead and its keys' revisions."""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "controlplane"))
import ctlpeer  # noqa: E402
import etcdproc  # noqa: E402

N = 300


def config():
    base = ctlpeer.config(neps=2, svc="s0.svc.example.")
    head, svc = base.split("services:\n")
    out = [head, "services:\n"]
    for i in range(N):
        out.append(svc.replace("s0.svc.example.", f"s{i}.svc.example.")
                   .replace("2001:db8:5::/64", f"2001:db8:5:{i:x}::/64"))
    return "".join(out)


@pytest.mark.skipif(not shutil.which(etcdproc.ETCD), reason="etcd is not installed")
def test_300_services_are_stored(tmp_path):
    e = etcdproc.Etcd(str(tmp_path / "etcd"))  # etcd's default limits
    ctl = None
    try:
        e.wait()
        ctl = ctlpeer.Controller(str(tmp_path), config(), ("--store", "etcd", "--etcd", e.url,
                                                           "--lease-ttl", "10", "--agent-ttl", "5"))
        assert ctlpeer.wait_until(lambda: "leading (store etcd)" in ctl.log(), 30), ctl.log()
        assert ctlpeer.wait_until(lambda: len(e.keys("/peak/svc/")) == N, 30), \
            (len(e.keys("/peak/svc/")), ctl.log()[-2000:])
        stored = e.keys("/peak/svc/")
        assert all(v.startswith(f"map {k[len('/peak/svc/'):]}\n") for k, v in stored.items())
    finally:
        if ctl:
            assert ctl.stop() == 0
        e.stop()
