"""Each reload of the agent leaked one socket per local endpoint.

Seen: every SIGHUP reload leaked the health check in flight of each local endpoint (hc_setup
freed the checks without closing their sockets), so an agent reloaded often ran out of file
descriptors; and the reload did not check its allocations.

Here: five local endpoints whose checks never complete (nothing answers behind d0; a check
starts every 100 ms and none times out, so each endpoint soon has all HC_PROBES = 8 slots in
flight), several reloads, and then as many checks in flight (SYN-SENT sockets to the service
port) and open descriptors (/proc/PID/fd) as before them."""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import agent_ns, wait_until  # noqa: E402


def test_reloads_leak_no_descriptors(tmp_path):
    with agent_ns(tmp_path, "rgfd") as ns:
        # checks that stay in flight (SYN-SENT) for their whole timeout: no connect timeout
        agent = ns.start_agent("--hc-interval", "100", "--hc-timeout", "60000",
                               "--hc-connect-timeout", "0")

        def fds():
            return len(os.listdir(f"/proc/{agent.pid}/fd"))

        def checks():
            return len(subprocess.run(["ip", "netns", "exec", ns.name, "ss", "-Htn", "state",
                                       "syn-sent", "dport", "=", ":8080"],
                                      capture_output=True, text=True).stdout.splitlines())

        assert wait_until(lambda: "connected to controller" in ns.log.read_text())
        assert wait_until(lambda: checks() == 5 * 8)
        before = fds()
        for i in range(1, 5):
            agent.send_signal(signal.SIGHUP)
            assert wait_until(lambda: ns.log.read_text().count("agent: reloaded") >= i or
                              agent.poll() is not None)
            assert agent.poll() is None, ns.log.read_text()
            # once it has reconnected (a reload drops the link) and restarted its checks
            assert wait_until(lambda: checks() == 5 * 8 and fds() == before, 15), \
                (i, checks(), before, fds())
