"""make demo-overlay (tests/overlay/demo_overlay.py), run whole and bounded (root): it ends by
itself with exit 0, every one of the 12 ordered pairs of its four sites is reached, the two
NATed sites talk hole-punched through both NATs (not relayed), the public ones are reached
directly, RTTs and a throughput line are printed, and none of its namespaces is left."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
DEMO = pathlib.Path(__file__).resolve().parent / "demo_overlay.py"


def test_demo_overlay():
    p = subprocess.run([sys.executable, str(DEMO), "--secs", "1", "--pings", "3"], capture_output=True,
                       text=True, timeout=180)
    out = p.stdout
    assert p.returncode == 0, out + p.stderr[-3000:]
    prefix = re.search(r"namespaces (\S+)\*", out).group(1)
    sites = "abcd"
    for s in sites:
        for o in sites:
            if s != o:
                assert re.search(rf"^  {s} -> {o}: ok, first answer [\d.]+ s, rtt [\d.]+/[\d.]+ "
                                 "ms, ", out, re.M), out
    assert re.search(r"^  a -> c: .*hole punched through both NATs, to 10\.0\.3\.2:\d+$", out,
                     re.M), out
    assert re.search(r"^  c -> a: .*hole punched through both NATs, to 10\.0\.1\.2:\d+$", out,
                     re.M), out
    assert re.search(r"^  b -> d: .*direct to public gateway 10\.0\.4\.2:51820$", out, re.M), out
    assert re.search(r"^  b -> a: .*to a's NAT mapping 10\.0\.1\.2:\d+", out, re.M), out
    assert re.search(r"^  one TCP flow ha -> hc .*: [\d.]+ Gbit/s", out, re.M), out
    assert "12/12 pairs reached; daemons stopped, namespaces removed" in out, out
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in left, left
