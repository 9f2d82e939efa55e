"""The overlay comparison bench's harness (bench/overlay/compare.py), in a bounded smoke run
(root): every peer is set up on the two-site testbed, pinged and measured for one second,
the JSON is well-formed with a figure for each (a peer is skipped only if its package is
missing), and a peer that cannot come up is reported as an error with exit status 1. The
figures themselves are not checked: they depend on the machine's load."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
COMPARE = pathlib.Path(__file__).resolve().parents[2] / "bench" / "overlay" / "compare.py"
PEAK = os.environ.get("PEAK_BIN", "build/peak")


def run(tmp_path, *args, peak=PEAK):
    out = tmp_path / "cmp.json"
    p = subprocess.run([sys.executable, str(COMPARE), "--secs", "1", "--runs", "1",
                        "--pings", "3", "--out", str(out), *args], capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, PEAK_BIN=peak))
    return p, json.loads(out.read_text())


def test_every_peer_measured(tmp_path):
    p, d = run(tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert d["runs"] == 1 and len(d["each"]) == 1
    for peer in ("ipv4", "ipv6", "vxlan", "wireguard", "yggdrasil", "peak", "peak-fast"):
        m = d["median"][peer]
        if "skipped" in m:
            assert "not installed" in m["skipped"], m
            continue
        assert m["gbit"] > 0 and m["rtt_min_us"] > 0 and m["rtt_avg_us"] >= m["rtt_min_us"], m
        # the warm series (echoes 1 ms apart) beside the one 10 ms apart
        assert 0 < m["rtt_warm_min_us"] <= m["rtt_warm_avg_us"], m
        if peer in ("wireguard", "yggdrasil", "peak", "peak-fast"):  # their processes' CPU
            assert m["cpu_s_per_gbit"] is not None and m["cpu_s_per_gbit"] >= 0, m
    assert "peak overlay" in p.stdout and "| path |" in p.stdout
    assert "warm added RTT min us" in p.stdout and d["warm_interval_s"] == 0.001


def test_broken_peer_is_an_error(tmp_path):
    p, d = run(tmp_path, "--only", "peak", peak="/bin/false")
    assert p.returncode == 1
    assert "error" in d["median"]["peak"], d
