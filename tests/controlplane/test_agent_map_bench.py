"""bench/controlplane/agent_map.py runs (a small map: 200 endpoints added at run time) and
prints its figure line: the benchmark the README quotes keeps working."""
import os
import re
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "controlplane",
                      "agent_map.py")


def test_agent_map_bench_quick():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    r = subprocess.run([sys.executable, SCRIPT, "200"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^200 endpoints \([\d.]+ MB of lines\): routed [\d.]+ s after the first "
                     r"line$", r.stdout, re.M), r.stdout
