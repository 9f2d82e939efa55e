"""SIGHUP or SIGTERM killed an agent run with --metrics.

Seen: `peak agent ... --metrics ADDR` died of SIGHUP (exit 129 from a shell) instead of
reloading, and of SIGTERM instead of stopping cleanly: the metrics endpoint's thread was
started before the agent blocked its signals, so that thread inherited them unblocked and the
kernel delivered them there, with their default action.

Here: the agent with --metrics, SIGHUP (a reload is logged, the agent lives on), SIGTERM (it
stops, exit status 0)."""
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import agent_ns, wait_until  # noqa: E402


def test_sighup_reloads_and_sigterm_stops_with_metrics(tmp_path):
    with agent_ns(tmp_path, "rgsm") as ns:
        agent = ns.start_agent("--metrics", "[::1]:9100")
        ns.accept().close()  # running, and past its setup
        assert wait_until(lambda: "peak_agent_slice_routes" in str(ns.metrics()))
        for _ in range(3):  # more than once: each reload must leave the signals blocked
            n = ns.log.read_text().count("agent: reloaded")
            agent.send_signal(signal.SIGHUP)
            assert wait_until(lambda: ns.log.read_text().count("agent: reloaded") > n or
                              agent.poll() is not None)
            assert agent.poll() is None, (agent.returncode, ns.log.read_text())
        assert ns.metrics()["peak_agent_slice_routes"] >= 1
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=10) == 0, ns.log.read_text()
        assert "agent: stopping" in ns.log.read_text()
