"""bench/overlay/compare.py's peak row failed with "KeyError: 'a'" (CI, ASan build's
overlay-compare smoke run). The shared overlay bed (tests/overlay/ovbed.py) split its
daemon start into spawn(site) and ready(site); the bench's two-site bed already had a
method named spawn (a process in a namespace), which shadowed the bed's, so starting a
gateway ran nothing and its log was never recorded. The bench's method is now run_in.

Here: the comparison bench for the peak overlay alone, one second, in every build (the
whole-bench smoke run is in the ASan build only): the peak row has figures, no error."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
COMPARE = pathlib.Path(__file__).resolve().parents[2] / "bench" / "overlay" / "compare.py"


def test_peak_row_measured(tmp_path):
    out = tmp_path / "cmp.json"
    p = subprocess.run([sys.executable, str(COMPARE), "--secs", "1", "--runs", "1", "--pings",
                        "3", "--only", "peak", "--out", str(out)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, (p.stdout + p.stderr)[-2000:]
    m = json.loads(out.read_text())["median"]["peak"]
    assert "error" not in m and m["gbit"] > 0 and m["rtt_min_us"] > 0, m
