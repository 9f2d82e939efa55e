"""make demo-overlay (tests/overlay/demo_overlay.py), run whole and bounded (root): it ends by
itself with exit 0, every one of the 12 ordered pairs of its four sites is reached, the two
NATed sites talk hole-punched through both NATs (not relayed), the public ones are reached
directly, RTTs and a throughput line are printed, and none of its namespaces is left; then
its PEAK-over-the-overlay part: the IPv4-only client site resolves over the overlay to the
address the rule gives its overlay address, the pod sees that source, the XDP filter passed
packets and rejected the other address's, and none of that part's namespaces is left; then
its bridge part: the native host and the overlay site reach each other."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
DEMO = pathlib.Path(__file__).resolve().parent / "demo_overlay.py"


def test_demo_overlay():
    # without the NAT matrix: test_overlay_nat.py runs and checks it (its own meson test)
    p = subprocess.run([sys.executable, str(DEMO), "--secs", "1", "--pings", "3", "--no-matrix"],
                       capture_output=True, text=True, timeout=180)
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
    peak = re.search(r"^PEAK over the overlay: .*namespaces (\S+)\*$", out, re.M).group(1)
    m = re.search(r"^  peak resolve .*: (\S+) from fd00:c::2 \(.*computed here: (\S+)\)$", out,
                  re.M)
    assert m and m.group(1) == m.group(2), out
    assert re.search(rf"^  peak connect: pod n1p\d answered at {m.group(1)}, saw source "
                     r"fd00:c::2$", out, re.M), out
    assert re.search(r"^  XDP filter on node 1 passed [1-9]\d* packets", out, re.M), out
    assert re.search(r"^  fd00:c:0:1::2 to fd00:c::2's address \S+: no answer, the filter "
                     r"rejected [1-9]", out, re.M), out
    assert "PEAK over the overlay: ok" in out, out
    bridge = re.search(r"^bridge: .*namespaces (\S+)\*$", out, re.M).group(1)
    assert re.search(r"^  2001:db8:77::2 -> fd00:a::2: answered$", out, re.M), out
    assert "bridge: ok" in out, out
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in left and peak not in left and bridge not in left, left
