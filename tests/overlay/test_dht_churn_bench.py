"""The DHT churn bench (bench/overlay/dht_churn.py) in its bounded smoke variant (root):
12 DHT nodes (4 gateways, 8 dhtnodes), 3 of the dhtnodes killed, lookups over the listed
prefix length (`lookup: lengths`, one get each before the kill). It exits 0 and writes its
JSON with the three rounds of every site looking every other up, each prefix lookup timed
from the gateways' logs; before the kill and in the cold round after it every lookup is
answered (the pings wait up to 30 s: a loaded machine's
ASan daemons). Lookups answer early (dht.c: a hit's get is not waited for), and each early
answer is confirmed or corrected at the lookup's end: the counters add up. The share within 2 s, the issue's target, is not checked here: the bench's
own full run gives it (64 nodes, a quarter killed)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
CHURN = pathlib.Path(__file__).resolve().parents[2] / "bench" / "overlay" / "dht_churn.py"


def test_dht_churn_bench_runs(tmp_path):
    out = tmp_path / "churn.json"
    # the gateways look up over the one length their sites publish (dht: lookup: lengths):
    # the binary search runs in test_overlay_dht.py
    p = subprocess.run([sys.executable, str(CHURN), "--quick", "--wait", "30", "--lookup",
                        "lengths", "--out", str(out)], capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    d = json.loads(out.read_text())
    assert (d["nodes"], d["gateways"], d["dhtnodes"], d["killed"]) == (12, 4, 8, 3)
    rounds = {r["round"]: r for r in d["rounds"]}
    assert list(rounds) == ["before", "killed", "after"]
    for r in rounds.values():
        assert r["lookups"] == 12 and 0 <= r["within_2s"] <= r["answered"] <= 12, r
        assert r["found_lookups"] > 0, r  # the pings went through DHT lookups
        # the lookups timed in the gateways' logs (a route also comes from an id lookup)
        assert 0 < r["prefix_lookups"] <= 24, r
        assert r["lookup_p50_ms"] is not None and r["lookup_max_ms"] >= r["lookup_p50_ms"], r
    # one get a prefix lookup: the /64 (the binary search takes 4 or more here)
    assert rounds["before"]["gets_per_found"] < 2, rounds["before"]
    assert rounds["before"]["answered"] == 12, rounds["before"]
    assert rounds["after"]["answered"] == 12, rounds["after"]
    assert "| killed | 12 |" in p.stdout and "target 99% of lookups" in p.stdout
    # a lookup over one length is one get: answered at its first value that verifies, not
    # at the get's end (which waits for OpenDHT to give up on the killed nodes)
    assert d["early_answers"] > 0, d
    assert sum(r["early_answers"] for r in rounds.values()) <= d["early_answers"], d
    assert 0 <= d["corrected_answers"] <= d["early_answers"], d
    # the rounds' lookups timed, each with its gets (the debug line per get, read once every
    # get has ended) and its end (after an early answer, the end comes later)
    for r in rounds.values():
        g = r["get_figures"]
        assert g and g["gets"] >= r["prefix_lookups"] and g["gets_per_lookup"] >= 1, r
        assert r["lookup_end_p99_ms"] >= r["lookup_p50_ms"] and r["corrected"] >= 0, r
