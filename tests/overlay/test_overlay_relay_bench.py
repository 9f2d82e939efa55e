"""The relayed-throughput bench (bench/overlay/relay.py) in a bounded smoke run (root): one
run of one second each way on the three-site bed; it exits 0 and writes its JSON with a
direct and a relayed figure, the relayed flow went through gC (gC forwarded its packets)
and the direct one did not. The ratio itself is not checked: it depends on the machine's
load (the bench's own runs give it)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
RELAY = pathlib.Path(__file__).resolve().parents[2] / "bench" / "overlay" / "relay.py"


def test_relay_bench_runs(tmp_path):
    out = tmp_path / "relay.json"
    p = subprocess.run([sys.executable, str(RELAY), "--secs", "1", "--runs", "1", "--out",
                        str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    d = json.loads(out.read_text())
    assert d["runs"] == 1 and len(d["each"]) == 1 and d["target_ratio"] == 0.5
    r = d["each"][0]
    assert r["direct"]["gbit"] > 0 and r["relayed"]["gbit"] > 0, r
    assert r["relayed"]["relay_forwarded"] > 0 and r["direct"]["relay_forwarded"] == 0, r
    assert r["ratio"] == pytest.approx(r["relayed"]["gbit"] / r["direct"]["gbit"], rel=1e-3)
    assert d["median"]["ratio"] == r["ratio"]
    assert "| relayed / direct |" in p.stdout
