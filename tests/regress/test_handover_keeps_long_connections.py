"""Issue 19: long-lived connections broke when a handover window ended. The agents ended a
handover at its deadline (--handover-ms) whatever the old owner's connections were doing:
from then on the new owner's node no longer forwarded the packets of the old owner's
connections, its pod answered them with resets, and every keep-alive connection held past
the window on a moved slice broke. Now the deadline is honoured only for idle flows: past
it a handover lasts while the old owner's connections carry packets (at most an hour), and
ends once they are idle for the window's length, taking the tc program off the uplink.

Topology (tests/integration/testbed.py; the clients of tests/cluster/test_handover.py):

    [C] 64 keep-alive clients --- [R] router (BIRD) --- [N1] n1p1 n1p2   [N2] n2p1 n2p2

A weight change moves slices to n1p2 from the three other pods with a 1 s window; every
connection is held, a request every 40 ms, until 2.5 s after the window's deadline."""
import os
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import testbed  # noqa: E402
from test_handover import CLIENTS, Clients, address, ctl  # noqa: E402

PEAK = os.environ.get("PEAK_BIN", os.path.join(HERE, "..", "..", "build", "peak"))
WINDOW_MS = 1000


def agent_logs(tb):
    return "".join(open(os.path.join(tb.dir, f"agent-n{i}.log")).read() for i in (1, 2))


def windows_open(tb):
    """Handovers the agents started and have not ended."""
    logs = agent_logs(tb)
    return logs.count(" started: ") - logs.count(" ended (")


def settled(tag, window_ms):
    """A testbed of two nodes of two pods (controller --handover-ms window_ms) up, its routes
    converged and the handovers of its pods' coming up over. The caller downs it."""
    work = tempfile.mkdtemp(prefix=f"peak-{tag}-")
    tb = testbed.Testbed(f"{tag}{os.getpid() % 10000}", work, PEAK, nodes=2, pods=2,
                         ctl_args=["--control", os.path.join(work, "ctl.sock"),
                                   "--handover-ms", str(window_ms)])
    try:
        tb.up()
        assert tb.wait_converged(), "the router did not learn the slices"
        # the pods' coming up moved slices too: those windows end first
        deadline = time.time() + 30
        while (windows_open(tb) or " started: " not in agent_logs(tb)) and \
                time.time() < deadline:
            time.sleep(0.05)
        assert not windows_open(tb)
    except BaseException:
        tb.down()
        raise
    return tb


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_connection_held_past_the_window_survives():
    tb = settled("hl", WINDOW_MS)
    try:
        n_started = agent_logs(tb).count(" started: ")
        n_off, n_idle = (agent_logs(tb).count(x) for x in ("handover program off", "went idle"))
        c = Clients(tb, {k: address(k) for k in range(CLIENTS)})
        moved = {k for k in c.first if c.first[k] != "n1p2"}
        ctl(tb, "weight", testbed.SERVICE, "n1p2", "3")
        assert tb.wait_log("controller.log", "n1p2 weight 3: ", 10)
        # the window starts when an agent says so (the hold below counts from there: a
        # loaded machine's late start must not shorten it)
        deadline = time.time() + 30
        while agent_logs(tb).count(" started: ") == n_started:
            assert time.time() < deadline, "no handover started"
            time.sleep(0.01)
        t_start = time.time()
        assert tb.wait_converged(30)
        # well past the deadline on every node, the connections still going
        while time.time() < t_start + WINDOW_MS / 1000 + 2.5:
            assert not c.broken, f"a connection broke: {c.why} ({time.time() - t_start:.2f} s)"
            time.sleep(0.05)
        broken = c.stop()
        assert moved and broken == set(), f"{len(broken)} of {CLIENTS} connections broke"
        # once the connections are gone, the windows close and each node takes the program
        # off its uplink
        deadline = time.time() + 3 * WINDOW_MS / 1000 + 30  # (for a hung agent only)
        while agent_logs(tb).count("handover program off") < n_off + 2 and \
                time.time() < deadline:
            time.sleep(0.05)
        logs = agent_logs(tb)
        assert logs.count("went idle") > n_idle, logs[-3000:]
        assert logs.count("handover program off") == n_off + 2, logs[-3000:]
    finally:
        tb.down()
