"""A pod's reported connections were off by the agent's own health checks in flight.

Seen: tests/cluster/test_failover.py held three connections to a pod and waited for the
agent to report 3; a CI run sampled other values for 10 s. The agent took its checks off the
pod's count by how many it saw connected on its own side, which is not what the pod's
kernel holds: a check whose handshake completed on the agent's side but not on the pod's
(the last ACK lost or dropped, the pod's accept queue full) is no socket of the pod's yet
(a half-open request), and was taken off all the same, so the pod's real connections were
under-reported by the checks in flight.

Here: the pod's namespace drops the handshake's last ACK (and any data) on the checked
port, so every check stays half-open on the pod's side and connected on the agent's; three
connections held to another port of the pod must be reported as 3 in every round. The fix
looks up the pod's side of each check by its addresses and ports (sock_diag, one hash
lookup) and takes off only those the pod's kernel counts."""
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import CONFIG, agent_ns, in_netns, ip, wait_until  # noqa: E402

KEY = 'peak_agent_endpoint_connections{service="b.svc.example.",endpoint="b1"}'
SYNCS = ('peak_agent_syncs_total{result="ok"}', 'peak_agent_syncs_total{result="error"}')
FAILED = 'peak_agent_health_checks_total{result="fail"}'

SERVER = """
import socket, sys
checked = socket.create_server(("::", 8080), family=socket.AF_INET6, backlog=64)
held = socket.create_server(("::", 8081), family=socket.AF_INET6)
print("up", flush=True)
conns = [held.accept()[0] for _ in range(3)]
print("held", flush=True)
sys.stdin.read()
"""


def test_load_counts_the_pods_connections_not_the_agents_checks(tmp_path):
    with agent_ns(tmp_path, "rgown") as ns:
        pod = ns.name + "p"
        server = None
        holders = []
        try:
            ip("netns", "add", pod)
            ip("-n", ns.name, "link", "add", "p0", "type", "veth", "peer", "name", "p1",
               "netns", pod)
            ip("-n", ns.name, "addr", "add", "fd00:2::1/64", "dev", "p0", "nodad")
            ip("-n", ns.name, "link", "set", "p0", "up")
            ip("-n", ns.name, "route", "add", "fd00:3::b1/128", "via", "fd00:2::2", "dev", "p0")
            ip("-n", pod, "addr", "add", "fd00:2::2/64", "dev", "p1", "nodad")
            ip("-n", pod, "addr", "add", "fd00:3::b1/128", "dev", "p1", "nodad")
            ip("-n", pod, "link", "set", "p1", "up")
            ip("-n", pod, "link", "set", "lo", "up")
            # the checked port completes no handshake on the pod's side: its last ACK, and
            # the request behind it, are dropped (the SYN still makes a half-open request)
            subprocess.run(["ip", "netns", "exec", pod, "nft", "-f", "-"], check=True, text=True,
                           input="table ip6 t {\n chain c {\n  type filter hook input priority 0\n"
                                 "  tcp dport 8080 tcp flags & (syn | ack) == ack drop\n }\n}\n")
            ns.cfg.write_text(CONFIG.replace(
                '{id: b1, address: "fd00:1::b1", node: node1}',
                f'{{id: b1, address: "fd00:3::b1", node: node1, netns: {pod}}}'))
            server = subprocess.Popen(["ip", "netns", "exec", pod, "/usr/bin/python3", "-c",
                                       SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True)
            assert server.stdout.readline() == "up\n"
            holders = in_netns(ns.name, lambda: [socket.create_connection(
                ("fd00:3::b1", 8081), timeout=5) for _ in range(3)])
            assert server.stdout.readline() == "held\n"
            # checks every 30 ms, each in flight for its whole 300 ms timeout: several at once (no
            # connect timeout: the other endpoints' checks then fail at 300 ms too, so three
            # failures come after b1's first load rounds, as the sampling below assumes)
            agent = ns.start_agent("--metrics", "[::1]:9100", "--hc-interval", "30",
                                   "--hc-timeout", "300", "--hc-connect-timeout", "0")
            assert wait_until(lambda: "metrics on" in ns.log.read_text() or agent.poll()), \
                ns.log.read_text()
            assert wait_until(lambda: ns.metrics().get(FAILED, 0) >= 3, 20), ns.metrics()
            def rounds(m):  # a load round per sync, whatever its result (these routes fail)
                return sum(m.get(k, 0) for k in SYNCS)
            syncs = rounds(ns.metrics())
            seen = []
            # ten load rounds (one per sync, every 100 ms), each one must say 3
            def sample():
                m = ns.metrics()
                seen.append(m.get(KEY))
                return rounds(m) >= syncs + 10 or agent.poll() is not None
            assert wait_until(sample, 30), ({k: v for k, v in ns.metrics().items()
                                              if "syncs" in k or "connections" in k}, seen[-5:])
            assert agent.poll() is None
            assert seen and all(v == 3 for v in seen), seen
        finally:
            for h in holders:
                h.close()
            if server and server.poll() is None:
                server.kill()
                server.wait()
            subprocess.run(["ip", "netns", "del", pod], capture_output=True)
