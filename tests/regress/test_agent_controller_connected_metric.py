"""peak_agent_controller_connected stayed 1 after the controller link dropped.

Seen: the agent set the metric to 1 when it connected and never back to 0, so a dashboard
showed every agent connected while the controller was gone.

Here: a fake controller accepts the agent (metric 1), then closes the link and stops
listening; the metric must go back to 0 while the agent retries."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import agent_ns, wait_until  # noqa: E402

KEY = "peak_agent_controller_connected"


def test_metric_back_to_0_when_the_controller_goes(tmp_path):
    with agent_ns(tmp_path, "rgcc") as ns:
        agent = ns.start_agent("--metrics", "[::1]:9100")
        c = ns.accept()
        assert wait_until(lambda: ns.metrics()[KEY] == 1)
        ns.srv.close()  # no controller from now on: reconnects are refused
        c.close()
        assert wait_until(lambda: "retrying in" in ns.log.read_text())
        assert wait_until(lambda: ns.metrics()[KEY] == 0, 5), ns.metrics()[KEY]
        assert agent.poll() is None
