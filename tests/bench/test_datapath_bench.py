"""The data-path bench (bench/datapath/run.py) on a tiny run: direct and PEAK at 16
connections for 1 s, once; its JSON and table must be well formed. Its judgment is checked
on made-up figures, so a PEAK path that is slower, slower to answer or dearer in CPU is
reported as missing the target (no speed is asserted on this machine)."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

SRC = os.environ.get("PEAK_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
PEAK = os.environ.get("PEAK_BIN", os.path.join(SRC, "build", "peak"))
OBJ = os.environ.get("FILTER_OBJ", os.path.join(SRC, "build", "filter.bpf.o"))
sys.path.insert(0, os.path.join(SRC, "tests", "lib"))
from peaktest import sanitized  # noqa: E402

spec = importlib.util.spec_from_file_location("datapath", os.path.join(SRC, "bench", "datapath",
                                                                       "run.py"))
dp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dp)


def cell(system, run, rps, p50, cl_us, failed=0):
    return {"kind": "closed", "value": 64, "run": run, "system": system, "rps": rps,
            "ok": int(rps), "failed": failed, "latency_us": {"p50": p50},
            "cluster_ms_per_1k": cl_us, "machine_ms_per_1k": cl_us + 1}


@pytest.mark.parametrize("peak, met", [
    ((1000, 100, 17.2), True),    # as fast, as quick, +0.2 us
    ((930, 100, 17.0), False),    # 0.93x throughput
    ((1000, 110, 17.0), False),   # p50 1.1x
    ((1000, 100, 18.8), False),   # +1.8 us per request
])
def test_judgment(peak, met):
    steady = []
    for run in range(3):
        steady += [cell("direct", run, 1000, 100, 17.0), cell("peak", run, *peak)]
    rows = dp.summarize(steady)
    assert len(rows) == 1 and rows[0]["runs"] == 3 and rows[0]["met"] is met, rows
    assert "| 64 | 3 |" in dp.table(rows)


def test_failed_runs_do_not_count():
    steady = [cell("direct", 0, 1000, 100, 17.0), cell("peak", 0, 0, 100, 17.0)]
    steady[1]["ok"] = 0
    assert dp.summarize(steady) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, XDP)")
def test_tiny_run(tmp_path):
    if sanitized(PEAK):
        pytest.skip("checked in the plain build (the bench harness; make test's budget)")
    out = tmp_path / "datapath.json"
    p = subprocess.run(["/usr/bin/python3", os.path.join(SRC, "bench/datapath/run.py"),
                        "--runs", "1", "--duration", "1", "--concurrency", "16", "--peak",
                        PEAK, "--filter-obj", OBJ, "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    d = json.loads(out.read_text())
    assert [c["c"] for c in d["cells"]] == [16] and d["cells"][0]["runs"] == 1
    c = d["cells"][0]
    # a failure names which system failed how, and what the cluster changed meanwhile
    why = {"runs": d["runs_detail"], "agent_downs": d["steady_agent_down_lines"],
           "route_changes": d["steady_route_lines"]}
    assert [r["system"] for r in why["runs"]] == ["direct", "peak"], why
    assert c["direct_rps"] > 0 and c["peak_rps"] > 0 and c["failed"] == 0, why
    assert d["steady_agent_downs"] == 0, why  # no false failover under the load
    assert c["peak_cluster_us"] > 0 and isinstance(c["met"], bool)
    assert "| 16 | 1 |" in p.stdout
