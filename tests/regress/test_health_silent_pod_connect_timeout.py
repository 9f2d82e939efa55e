"""Issue 19: a silent pod (nftables drops everything it receives, its process lives) was
found only after the checks' whole timeout (100 ms) plus two periods: 146-176 ms at the
defaults, and in the ingress bench's 'silent' scenario its clients, whose requests were
caught, waited for the reset that follows (up to 235 ms; under load some hit their own 250 ms
timeout first, and a longest gap of 489 ms). A check's TCP handshake is completed by the
pod's kernel at once, whatever its server process does; a check that is not even connected
within --hc-connect-timeout (default 40 ms) is now missed then, so a cut-off pod goes after 40
ms plus two periods, while a stopped or slow one still gets the whole timeout for its answer
(tests/cluster/test_silent_failover.py).

Topology (tests/cluster/test_agent.py): one node, pod-a and pod-b, no controller; the agent
at a real-time priority, so its schedule is its own on a loaded machine. The mechanism is
read from the agent's own log line (misses in a row, the span since the first was sent, how
many never connected), not from a wall clock: at the defaults the span lies between 40 + 2 x
22 and 40 + 2 x 37 ms (plus a slack of 25 ms), below the 144 ms the old checks needed at the
least; with --hc-connect-timeout 0 the old mechanism is back."""
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
from test_agent import cl  # noqa: E402,F401
from test_failover import owners, wait_until  # noqa: E402
from test_silent_failover import up_and_checked  # noqa: E402

A, B = "2001:db8:100:1::a", "2001:db8:100:2::b"
DOWN = re.compile(r"endpoint pod-a is down after (\d+) missed checks, the first sent (\d+) ms "
                  r"before(?:; (\d+) not connected within (\d+) ms)?")


def silence(cl):
    """Every packet pod-a receives dropped (its process lives): the bench's 'silent'."""
    subprocess.run(["ip", "netns", "exec", cl.a, "nft", "add table inet pkdrop; add chain "
                    "inet pkdrop in { type filter hook input priority 0; policy drop; }"],
                   check=True)


@pytest.mark.parametrize("connect_ms", [None, 0])
def test_silent_pod_found_by_its_unanswered_handshakes(cl, tmp_path, connect_ms):
    args = ["--hc-connect-timeout", str(connect_ms)] if connect_ms is not None else []
    pods, agent = up_and_checked(cl, *args)
    subprocess.run(["chrt", "-f", "-p", "10", str(agent.pid)], check=True)
    before = owners(cl)
    silence(cl)
    assert wait_until(lambda: "endpoint pod-a is down" in agent.log.read_text(), 10)
    m = DOWN.search(agent.log.read_text())
    assert m, agent.log.read_text()
    misses, span = int(m.group(1)), int(m.group(2))
    print(f"down after {misses} misses over {span} ms ({m.group(3) or 0} not connected)")
    assert misses == 3
    lo, hi = 30 - 30 // 4, 30 - 30 // 4 + 30 // 2  # a jittered period at the defaults
    if connect_ms is None:  # the default, 40 ms: every miss is a handshake not completed
        assert m.group(3) == "3" and m.group(4) == "40", m.group(0)
        assert 40 + 2 * lo <= span <= 40 + 2 * hi + 25, span
    else:  # off: the whole timeout for each check, as before
        assert m.group(3) is None, m.group(0)
        assert span >= 100 + 2 * lo, span
    # the local failover: pod-b serves pod-a's slices
    assert wait_until(lambda: owners(cl)[A] == [], 5)
    assert sorted(owners(cl)[B]) == sorted(before[A] + before[B])
    assert agent.poll() is None
