"""The demo as a test (root): every client reaches a pod at its own computed address through
routes learned by BGP; a killed pod's clients are served again at the same addresses; an
added pod takes exactly its share of slices, and only connections on moved slices break."""
import os
import re
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_demo():
    p = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "demo.py")], capture_output=True,
                       text=True, timeout=120, env=os.environ)
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    print(out)
    assert "1. 200 of 200 clients reached a pod" in out and "(200 distinct)" in out
    m = re.search(r"its (\d+) clients were served again after ([\d.]+) s \(median\), ([\d.]+) s "
                  r"\(max\); (\d+) of \d+ recovered; (\d+) of \d+ kept their address", out)
    n, median, worst, recovered, kept = m.groups()
    assert int(recovered) == int(kept) == int(n) > 0
    assert float(median) < 2.0  # about 0.6 s here; the target (1 s) is reported by the demo
    m = re.search(r"(\d+) of 16384 slices moved \([\d.]+%: its share among (\d+) live pods", out)
    moved, live = int(m.group(1)), int(m.group(2))
    assert moved in (16384 // live, 16384 // live + 1)  # exactly the newcomer's share
    m = re.search(r"(\d+) of (\d+) open connections broke", out)
    broken, total = int(m.group(1)), int(m.group(2))
    assert broken <= total * (moved / 16384) * 1.5 + 5  # only those on moved slices
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "pkd" not in ns  # everything torn down
