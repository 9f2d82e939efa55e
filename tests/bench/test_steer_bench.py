"""The steering bench (bench/steer/run.py) on a smoke run: one row (SSA clients, --steer
metrics) of a few seconds on the namespace testbed, the slow pod in its CPU cgroup and every
pod spending --work-us per request; its JSON and table must be well formed (no target is
asserted on a run of seconds)."""
import json
import os
import subprocess

import pytest

SRC = os.environ.get("PEAK_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
PEAK = os.environ.get("PEAK_BIN", os.path.join(SRC, "build", "peak"))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups)")
def test_smoke_row(tmp_path):
    out, table = tmp_path / "steer.json", tmp_path / "steer.md"
    p = subprocess.run(["/usr/bin/python3", os.path.join(SRC, "bench", "steer", "run.py"),
                        "--smoke", "--peak", PEAK, "--clients-kind", "ssa", "--modes",
                        "metrics", "--out", str(out), "--table", str(table)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert len(rows) == 1
    r = rows[0]
    assert (r["kind"], r["mode"], r["quota_us"], r["work_us"]) == ("ssa", "metrics", 25000, 2000)
    assert r["ok"] > 0 and r["failed"] >= 0
    assert sorted(r["pods"]) == ["n1p1", "n1p2", "n2p1", "n2p2"]
    assert all(v["effective_weight"] for v in r["pods"].values())
    assert sorted(r["pod_p99_us"]) == sorted(r["pods"]) and all(r["pod_p99_us"].values())
    assert r["slow_series"] and all(len(s) == 3 for s in r["slow_series"])
    md = table.read_text()
    assert md.startswith("## ") and "`bench/steer/run.py --smoke" in md
    assert "| ssa | metrics | 300 |" in md
