"""Regression: the resiliency slave chose as relay a peer that had died long before. A peer
the site does not send to is never judged down (only peers in use are), so a dead gateway
kept its old probe RTT and stayed the "best" relay: when the A-B path was cut, A sent B's
packets through C, whose daemon had been gone for seconds, and lost them all (`path b down
via c`). Now a relay must have been heard from within three keepalive periods: with C silent,
A says no peer can relay (`down via -`, counted as no_relay); once C is back, A relays
through it.

    hA fd00:a::2      hB fd00:b::2      hC fd00:c::2
    gA 10.0.1.2       gB 10.0.2.2       gC 10.0.3.2 (stopped, then started again)
      +--------------- r ---------------+      (r drops 10.0.1.2 <-> 10.0.2.2)
(root; three public sites, keepalive 1 s: silent 3.5 s is no relay.)
"""
import os
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "overlay"))
from ovbed import wait_for  # noqa: E402
from test_resil import ResilBed  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


@pytest.fixture
def bed(tmp_path):
    b = ResilBed(tmp_path, "rsk")
    try:
        b.build(resil="resiliency:\n  dead-ms: 600\n")
        for s in ("a", "b", "c"):
            b.start(s)
        yield b
    finally:
        b.cleanup()


def last_rx_ms(b, s, peer):
    m = re.search(rf"^peer {peer} .* last-rx-ms (\d+)", b.ctl(s, "show", "peers").stdout, re.M)
    return int(m.group(1)) if m else None


def test_dead_peer_is_no_relay(bed):
    b = bed
    # A sends nothing to C (a peer in use that goes silent is judged down: not this case),
    # but its idle probes measure C's RTT: C would be the relay of choice
    wait_for("a measures c", lambda: re.search(r"^path c direct via - rtt-us \d+",
                                                  b.ctl("a", "show", "peers").stdout, re.M))
    assert b.stop("c") == 0
    wait_for("c silent for 4 s at a", lambda: (last_rx_ms(b, "a", "c") or 0) > 4000,
             timeout=20)
    ping = subprocess.Popen(["ip", "netns", "exec", b.n("ha"), "ping", "-6", "-n", "-q", "-i",
                             "0.1", "-w", "60", "fd00:b::2"], stdout=subprocess.DEVNULL)
    try:
        wait_for("a sends to b", lambda: b.path("a", "b") == "direct", timeout=10)
        b.cut(True)
        wait_for("a has b down", lambda: (b.path("a", "b") or "").startswith("down"),
                 timeout=10)
        assert b.path("a", "b") == "down via -"  # was: down via c (dead)
        assert b.metrics("a")["peak_overlay_resil_no_relay_total"] >= 1
        # C back: a relay came
        b.start("c")
        wait_for("a relays through c", lambda: b.path("a", "b") == "down via c", timeout=20)
    finally:
        ping.kill()
        ping.wait()
    for s in ("a", "b", "c"):
        assert b.stop(s) == 0, b.logs[s].read_text()
