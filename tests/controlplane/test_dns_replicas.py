"""Two peak dns replicas following one etcd prefix answer identically after every change
made through the controller's control socket: bench/controlplane/replicas.py --quick (8
changes, health and weight; real etcd, a controller, two replicas on loopback). After each
change both replicas answer with exactly the endpoints up with weight (their AAAA addresses
mapped to endpoints through the controller's stored map) and hold the same state; the bench
fails otherwise. Its figures (from the controller's acknowledgment to both replicas
answering) are printed; the 100 ms target is the bench's report, not asserted here."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import etcdproc
import peaktest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


@pytest.mark.skipif(not shutil.which(etcdproc.ETCD), reason="etcd is not installed")
def test_replicas_converge_to_identical_answers(tmp_path):
    out = tmp_path / "replicas.json"
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "controlplane",
                                                     "replicas.py"), "--quick", "--out",
                        str(out)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PEAK_BIN": peaktest.PEAK})
    assert p.returncode == 0, p.stderr[-4000:]
    r = json.loads(out.read_text())
    assert r["identical"] and len(r["rows"]) == 8, r
    assert all(row["identical"] for row in r["rows"]), r["rows"]
    print(p.stderr.strip().splitlines()[-1])
