"""The multicast fan-out bench (bench/overlay/mcast.py) in a bounded smoke run (root): 2
member sites, 50 datagrams per site, one run; it exits 0 and writes its JSON with a
multicast and a unicast rate, the multicast run delivered at both members. The ratio itself
is not checked: it depends on the machine's load (the bench's own runs give it)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
MCAST = pathlib.Path(__file__).resolve().parents[2] / "bench" / "overlay" / "mcast.py"


def test_mcast_bench_runs(tmp_path):
    out = tmp_path / "mcast.json"
    p = subprocess.run([sys.executable, str(MCAST), "--members", "2", "--count", "50",
                        "--runs", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    d = json.loads(out.read_text())
    assert d["members"] == 2 and len(d["runs"]) == 1 and d["target"] == 0.8
    r = d["runs"][0]
    assert r["mcast"]["received"] > 0 and r["uni"]["received"] > 0, r
    assert r["mcast"]["pps"] > 0 and r["uni"]["pps"] > 0, r
    assert d["median_ratio"] == pytest.approx(r["mcast"]["pps"] / r["uni"]["pps"], rel=1e-6)
    assert "median multicast/unicast" in p.stdout
