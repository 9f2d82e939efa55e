"""The object store benchmark's harness (bench/store/run.py --quick, a few hundred small
objects): it runs PEAK, nginx and ketama end to end on the namespace testbed and writes
well-formed results, and what it reports is what happened: every phase counted its
requests, PEAK's added pod took exactly its share, and the systems without migration lost
the reads of the objects that moved. PEAK's pods run under peak controller (the default
--map), so they send route hints: a worker keeps one connection per pod, not one per
slice, which the pods' accepted connections show. After the move the old owners drop the
copies that moved (exactly those), and a read round after that fails nothing. No speed
figure is checked (make bench measures).
It runs in the plain build only: what it checks is the harness (Python and bench_store),
and the pods' code under the sanitizers is what the other store tests run."""
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peaktest import sanitized  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.path.join(HERE, "..", "..", "bench", "store", "run.py")


def test_bench_store_quick(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if sanitized(os.environ.get("PEAK_BIN", "build/peak")):
        pytest.skip("the harness is checked in the plain build")
    out = tmp_path / "store.json"
    p = subprocess.run([sys.executable, RUN, "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "bench-store: peak   get" in p.stderr  # progress lines
    d = json.loads(out.read_text())
    wl = d["workload"]
    assert set(d["systems"]) == {"peak", "nginx", "ketama"}
    assert wl["map"] == "controller" and wl["connection"] == "kept by each worker", wl
    total = wl["small"] + wl["large"]
    for name, s in d["systems"].items():
        for cls, n in (("small", wl["small"]), ("large", wl["large"])):
            for op in ("put", "get"):
                r = s[cls][op]
                assert r["ops"] == n and r["failed"] == 0, (name, cls, op, r)
                assert r["rps"] > 0 and 0 < r["p50_us"] <= r["p99_us"], (name, cls, op, r)
                assert r["cpu_us_per_req"] > 0, (name, cls, op, r)
        m = s["move"]
        assert m["objects"] == total and 0 < m["moved"] < total, (name, m)
    # route hints: each worker needs about one connection per pod (3 pods), where the keys'
    # own addresses would take one per slice, nearly one per key (the static map's case)
    for op in ("put", "get"):
        r = d["systems"]["peak"]["small"][op]
        assert 0 < r["connections"] <= 3 * r["workers"] + 2, (op, r)
    pk = d["systems"]["peak"]["move"]
    assert pk["moved"] == pk["minimum"] and pk["failed_reads"] == 0, pk
    # the old owners dropped exactly the copies that moved, and the round of reads after
    # the drops (counted in failed_reads) lost nothing
    assert pk["dropped"] == pk["moved"], pk
    assert len(pk["round_connections"]) == pk["read_rounds"] + 1, pk
    # no migration behind a proxy or a ring: each moved small object's read fails
    for name in ("nginx", "ketama"):
        m = d["systems"][name]["move"]
        assert m["failed_reads"] > 0, (name, m)
