"""Issue 19 merge: a pod that died inside a handover window that named it kept receiving
the connection starts for its slices: the tc program sends SYNs of moved slices to the new
owner until the window's deadline (5 s by default), so when the pod that had just come back
(and taken its share by a handover) was killed again, its node answered resets for the rest
of the window. The ingress bench's kill scenario found it: run after another system's
scenario had restarted the pod, PEAK or the DNS-steered clients saw ~2.1 s of 'refused'
(238 failed requests; 1-2 clients still down at the end). An agent now ends every handover
naming an endpoint it takes down. Here: the kill scenario twice for PEAK's clients, the
second one inside the window opened when the first one's pod came back."""
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peaktest import sanitized  # noqa: E402

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PEAK = os.environ.get("PEAK_BIN", os.path.join(SRC, "build", "peak"))
OBJ = os.environ.get("FILTER_OBJ", os.path.join(os.path.dirname(PEAK), "filter.bpf.o"))


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_kill_inside_a_handover_window(tmp_path):
    if sanitized(PEAK):
        pytest.skip("checked in the plain build (the bench harness; make test's budget)")
    out = tmp_path / "ingress.json"
    p = subprocess.run(["/usr/bin/python3", os.path.join(SRC, "bench/ingress/run.py"),
                        "--runs", "1", "--duration", "0.5", "--concurrency", "16", "--rates",
                        "1000", "--new-conn", "0", "--scenarios", "kill,kill",
                        "--scenario-seconds", "3", "--heal-seconds", "0.2", "--systems",
                        "peak", "--peak", PEAK, "--filter-obj", OBJ, "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    kills = [r for r in json.loads(out.read_text())["scenarios"] if r["scenario"] == "kill"]
    assert len(kills) == 2
    # resets until the agent sees the death (ms), not to the window's end (5 s): the bound
    # is half the window, which a loaded machine does not reach (1 s was closer to the
    # figure than to the bug); the gap itself is printed
    for r in kills:
        print(f"kill inside a handover window: longest gap {r['outage']['gap_max_ms']} ms")
        assert r["outage"]["still_down"] == 0 and r["outage"]["gap_max_ms"] < 2500, \
            (r["outage"], r["errors"], p.stderr[-2000:])
