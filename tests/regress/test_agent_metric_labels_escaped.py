"""The agent's metrics printed label values unescaped.

Seen: endpoint ids (and service names) went into the agent's Prometheus labels as they
were, so an id holding a double quote or a backslash broke the exposition format for every
scraper (a quote ends the label value early).

Here: endpoint ids may no longer hold either (the configuration refuses them, checked
first), but a service name may: its presentation form escapes a quote in a label as \\".
The samples must carry the value escaped as the exposition format says (\\\\, \\")."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import CONFIG, PEAK, agent_ns, wait_until  # noqa: E402


def test_label_values_are_escaped(tmp_path):
    with agent_ns(tmp_path, "rglb") as ns:
        ns.cfg.write_text(CONFIG.replace("{id: b1,", "{id: 'b\\1\"x',"))
        r = subprocess.run([PEAK, "agent", "--check", "--config", str(ns.cfg), "--node",
                            "node1"], capture_output=True, text=True)
        assert r.returncode == 2 and "b1" not in r.stdout, r.stderr  # such ids are refused
        ns.cfg.write_text(CONFIG.replace("name: b.svc.example.", "name: 'b\\\"q.svc.example.'"))
        r = subprocess.run([PEAK, "agent", "--check", "--config", str(ns.cfg), "--node",
                            "node1"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        agent = ns.start_agent("--metrics", "[::1]:9100")
        ns.accept().close()  # running, metrics endpoint up
        # the name prints as b\"q.svc.example.; in a label: b\\\"q.svc.example.
        want = 'peak_agent_endpoint_healthy{service="b\\\\\\"q.svc.example.",endpoint="b1"} 1'
        assert wait_until(lambda: want in ns.metrics_text().splitlines()), \
            [ln for ln in ns.metrics_text().splitlines() if "healthy" in ln]
        assert agent.poll() is None
