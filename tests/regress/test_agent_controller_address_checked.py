"""An agent with a --controller that is not ADDR:PORT spun a CPU forever.

Seen: `peak agent --controller nonsense` started; each turn of its loop tried to connect,
failed to parse the address before setting the next retry time, and so polled with a
timeout of 0: one core at 100% for as long as it ran, and no word of why.

Now the command line checks the address (and that --node can be said in a hello): a usage
error, exit 2, before anything starts."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import agent_ns, wait_until  # noqa: E402


def test_a_bad_controller_address_is_a_usage_error(tmp_path):
    with agent_ns(tmp_path, "rgca") as ns:
        for addr in ("nonsense", "[::1]", "::1:4000", "[::1]:99999"):
            agent = ns.start_agent(controller=addr)
            # a usage error, exit 2, is the mechanism (the old code never exited); the
            # deadline is for a loaded machine's ASan start, not a bound on it
            assert wait_until(lambda: agent.poll() is not None, 30), \
                (addr, ns.log.read_text())
            assert agent.returncode == 2
            assert "--controller" in ns.log.read_text()


def test_a_node_name_no_hello_can_carry_is_a_usage_error(tmp_path):
    with agent_ns(tmp_path, "rgcn") as ns:
        agent = ns.start_agent("--node", "node 1", controller="[::1]:4000")
        assert wait_until(lambda: agent.poll() is not None, 30)
        assert agent.returncode == 2
        assert "cannot be said in a hello" in ns.log.read_text()
