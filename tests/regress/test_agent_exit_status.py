"""The agent exited 2, the usage status, for run-time failures too.

Seen: `peak agent` exited 2 when its metrics endpoint could not bind, a --once sync failed
or its BIRD configuration could not be written,
the status that means a usage error or bad input, so a supervisor could not tell a broken
configuration from a failure of the moment. Now: 1 for run-time failures, 2 for usage and for
a configuration that does not load or does not name the node."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import PEAK, agent_ns  # noqa: E402


def run(ns, *args):
    return subprocess.run(["ip", "netns", "exec", ns.name, PEAK, "agent", *args],
                          capture_output=True, text=True, timeout=30)


def test_runtime_failure_is_1_bad_input_is_2(tmp_path):
    with agent_ns(tmp_path, "rgex") as ns:
        # run time: the metrics address is not one of this namespace's
        r = run(ns, "--config", str(ns.cfg), "--node", "node1", "--metrics",
                "[2001:db8::99]:9100")
        assert r.returncode == 1, r.stderr
        # run time: the BIRD configuration cannot be written where asked
        r = run(ns, "--bird-config", str(tmp_path / "no-such-dir" / "bird.conf"), "--node",
                "node1", "--bgp-neighbor", "fd00:1::1", "--local-as", "65001", "--peer-as",
                "65000", "--router-id", "10.0.0.1")
        assert r.returncode == 1, r.stderr
        # bad input: a node the file does not know, a file that does not load, an option
        r = run(ns, "--config", str(ns.cfg), "--node", "node9", "--once")
        assert r.returncode == 2, r.stderr
        bad = tmp_path / "bad.yaml"
        bad.write_text("services: [\n")
        r = run(ns, "--config", str(bad), "--node", "node1", "--once")
        assert r.returncode == 2, r.stderr
        r = run(ns, "--config", str(ns.cfg), "--node", "node1", "--no-such-option")
        assert r.returncode == 2, r.stderr
