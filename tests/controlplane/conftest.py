"""The control plane beyond one machine: the controller's etcd store and its high
availability, against a real etcd (Debian's etcd-server) on loopback. Helpers come from
tests/lib (ctlpeer.py: the controller and a fake agent), tests/cluster (agentns.py: a real
agent in a network namespace) and etcdproc.py here."""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))

import etcdproc  # noqa: E402


@pytest.fixture
def etcd(tmp_path):
    if not shutil.which(etcdproc.ETCD):
        pytest.skip("etcd is not installed (scripts/deps.sh installs etcd-server)")
    e = etcdproc.Etcd(str(tmp_path / "etcd"))
    try:
        e.wait()
        yield e
    finally:
        e.stop()
