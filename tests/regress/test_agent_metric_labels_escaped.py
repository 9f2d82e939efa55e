"""The agent's metrics printed label values unescaped.

Seen: endpoint ids (and service names) went into the agent's Prometheus labels as they
were, so an id holding a double quote or a backslash broke the exposition format for every
scraper (a quote ends the label value early).

Here: an endpoint whose id holds both, if the configuration accepts such an id at all; its
samples must carry the value escaped as the exposition format says (\\\\, \\")."""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import CONFIG, PEAK, agent_ns, wait_until  # noqa: E402


def test_label_values_are_escaped(tmp_path):
    with agent_ns(tmp_path, "rglb") as ns:
        ns.cfg.write_text(CONFIG.replace("{id: b1,", "{id: 'b\\1\"x',"))
        r = subprocess.run([PEAK, "agent", "--check", "--config", str(ns.cfg), "--node",
                            "node1"], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"the configuration refuses such ids: {r.stderr.strip()}")
        agent = ns.start_agent("--metrics", "[::1]:9100")
        ns.accept().close()  # running, metrics endpoint up
        want = 'peak_agent_endpoint_healthy{service="b.svc.example.",endpoint="b\\\\1\\"x"} 1'
        assert wait_until(lambda: want in ns.metrics_text().splitlines()), \
            [ln for ln in ns.metrics_text().splitlines() if "b1" in ln or "x" in ln]
        assert agent.poll() is None
