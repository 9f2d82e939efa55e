"""An agent with one --controller address found the new leader seconds after it led.

Seen (tests/controlplane/test_ha_under_load.py): two controllers share the agents' one
address (--listen [::]:4000, bound by whichever leads). The leader was killed; the standby
led 2.4 s later, but the agents linked to it only at 3.1 s: their retries to a refused
address doubled (100, 200, 400, 800, 1600 ms; then 3200 and 5000), so one whose retry fell
just before the new leader bound the address could wait seconds more, with no controller to
take a pod's failure meanwhile. With several addresses the ceiling was already 500 ms.

Now, for a minute after a link that carried maps is lost (the longest lease TTL), the
retries of a single address stop doubling at 500 ms, as with several.

Here: a fake controller sends the agent a map (the link is up), then closes the link; each
later connection is accepted and closed after the hello, so the agent logs every wait it
chooses ("retrying in N ms"). The waits must stop at 500 ms; before the fix they doubled to
800 and 1600."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import agent_ns, wait_until  # noqa: E402


def waits(ns):
    return [int(x) for x in re.findall(r"retrying in (\d+) ms", ns.log.read_text())]


def test_retries_after_a_lost_link_stay_within_500_ms(tmp_path):
    with agent_ns(tmp_path, "rgbo") as ns:
        agent = ns.start_agent()
        c = ns.accept()
        c.send("map a.svc.example.", "ep a1 0/8", "end")
        assert wait_until(lambda: "slice routes" in ns.log.read_text()), ns.log.read_text()
        c.close()  # the leader dies
        assert wait_until(lambda: "controller gone" in ns.log.read_text())
        for _ in range(5):  # a controller that takes the connection, not the hello
            ns.accept().close()
        assert wait_until(lambda: len(waits(ns)) >= 6), ns.log.read_text()
        w = waits(ns)
        assert w[:4] == [100, 200, 400, 500], w
        assert max(w) == 500, w
        assert agent.poll() is None
