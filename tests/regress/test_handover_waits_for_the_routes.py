"""Issue 19: a handover ended on the new owner's node at its deadline when BGP had not yet
moved the routes there. Until then the old connections' packets still reach the old owner's
node, so the new owner's node saw none of them and took the deadline as the end; when the
routes then moved, their packets came to the new owner's node, no longer forwarded, and its
pod reset them (a fresh-clone CI run on a loaded machine: 8 of 64 keep-alive connections
reset 1.02 s into a 1 s window). Now, on the new owner's node, a handover past its deadline
waits until a packet for the slices has come there by the routes (one more window at most).

Here the router's BIRD is stopped (SIGSTOP) before a weight change moves slices to n1p2, so
the routes cannot move; once the new owner's agent says it waits for them, BIRD goes on
(SIGCONT, inside BGP's 9 s hold time and the window's second length), the routes move,
and every connection survives.

    [C] 64 keep-alive clients --- [R] router (BIRD) --- [N1] n1p1 n1p2   [N2] n2p1 n2p2
"""
import os
import signal
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import testbed  # noqa: E402
from test_handover import CLIENTS, Clients, address, ctl  # noqa: E402
from test_handover_keeps_long_connections import agent_logs, settled, windows_open  # noqa: E402

WINDOW_MS = 3000  # the new owner's node waits one more window for the routes at most
WAITING = "no packet for the slices came here by the routes yet: waiting for them"


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_new_owner_waits_for_the_routes():
    tb = settled("hr", WINDOW_MS)
    bird = None
    try:
        c = Clients(tb, {k: address(k) for k in range(CLIENTS)})
        moved = {k for k in c.first if c.first[k] != "n1p2"}
        with open(os.path.join(tb.dir, "bird-r.pid")) as f:
            bird = int(f.read().split()[0])
        os.kill(bird, signal.SIGSTOP)  # the routes stay where they are
        ctl(tb, "weight", testbed.SERVICE, "n1p2", "3")
        assert tb.wait_log("controller.log", "n1p2 weight 3: ", 10)
        # past its deadline the new owner's agent waits (the old code ended the window)
        assert tb.wait_log("agent-n1.log", WAITING, 30), agent_logs(tb)[-3000:]
        assert not c.broken, c.why
        os.kill(bird, signal.SIGCONT)
        bird = None
        assert tb.wait_converged(30)
        t_conv = time.time()
        # the connections go on past the window, now through the new owner's node
        while time.time() < t_conv + WINDOW_MS / 1000 + 2.5:
            assert not c.broken, f"a connection broke: {c.why}"
            time.sleep(0.05)
        broken = c.stop()
        assert moved and broken == set(), f"{len(broken)} of {CLIENTS} connections broke"
        # and the windows close once the connections are gone
        deadline = time.time() + 3 * WINDOW_MS / 1000 + 30  # (for a hung agent only)
        while windows_open(tb) and time.time() < deadline:
            time.sleep(0.05)
        assert not windows_open(tb), agent_logs(tb)[-3000:]
    finally:
        if bird:
            os.kill(bird, signal.SIGCONT)
        tb.down()
