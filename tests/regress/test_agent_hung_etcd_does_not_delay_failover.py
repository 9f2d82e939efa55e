"""`peak agent --store etcd` made its etcd requests on its main loop, each waiting up to 1 s
(FOLLOW_TIMEOUT_MS) per member tried: an etcd that accepts a connection and never answers
(hung, or a black hole behind a proxy) stopped the agent's health checks, pidfd watches and
controller link for a second per member, and a pod that died meanwhile was taken out only
once the request gave up. The follower now runs on a thread of its own and hands its
records to the loop through an eventfd.

Topology (tests/cluster/test_agent.py): one node, pod-a and pod-b, no controller; the
agent's --etcd names three "members" that are listening sockets of this test inside the
node's namespace: each accepts, reads the request and answers nothing, so every request of
the agent waits out its timeout on each of them in turn (3 s), then 0.5 s until the next.

Right after such a round begins (its first connection accepted), pod-a goes silent (its
packets dropped): the agent must log it down while that round's request is still
unanswered, i.e. while a connection of the round is still open. That is an order, not a
time: with the requests on the loop the loop is stuck in the request until its last
connection is closed, so the down line can only come after. The delay from the drop, in
the agent's check periods, is printed."""
import os
import select
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
from agentns import in_netns  # noqa: E402
from test_agent import PEAK, cl, config  # noqa: E402,F401
from test_failover import owners, start, start_pods, wait_until, watches  # noqa: E402

HC_MS = 30  # the agent's --hc-interval (its default), given explicitly
MEMBERS = 3


class SilentEtcd:
    """n listening sockets in a namespace that accept, read and never answer. A request
    tries the member in use, then the next ones in turn (etcd_call), so it is a round of n
    connections, one per member, and a round begins on the member the last one ended on."""

    def __init__(self, ns, n=MEMBERS):
        self.ls = [in_netns(ns, lambda: socket.create_server(("::1", 0),
                                                             family=socket.AF_INET6))
                   for _ in range(n)]
        for s in self.ls:
            s.setblocking(False)
        self.urls = ",".join(f"http://[::1]:{s.getsockname()[1]}" for s in self.ls)
        self.conns = {}  # the open ones: socket -> its accept's number (from 0)
        self.accepts = 0
        self.last = None  # the listener of the last accept

    def step(self, timeout):
        """Accepts, reads and closes at their end for up to timeout seconds; returns the
        accept number of a round's first connection if one was accepted, else None."""
        first = None
        r, _, _ = select.select(self.ls + list(self.conns), [], [], timeout)
        for s in r:
            if s in self.ls:
                try:
                    c, _ = s.accept()
                except BlockingIOError:
                    continue
                c.setblocking(False)
                if self.last is None or s is self.last:
                    first = self.accepts
                self.last = s
                self.conns[c] = self.accepts
                self.accepts += 1
            else:
                self.read(s)
        return first

    def read(self, c):
        """Reads what c has; closes it at its end."""
        while True:
            try:
                d = c.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                d = b""
            if not d:
                del self.conns[c]
                c.close()
                return

    def pending(self, first):
        """Whether a connection of the round that began with accept number first is open
        now (each one's end, if it came, read first)."""
        for c in list(self.conns):
            self.read(c)
        return any(first <= k < first + len(self.ls) for k in self.conns.values())

    def close(self):
        for s in self.ls + list(self.conns):
            s.close()


def test_hung_etcd_does_not_delay_a_pods_failover(cl):
    cl.cfg.write_text(config(cl.tag))
    start_pods(cl)
    etcd = SilentEtcd(cl.n)
    try:
        agent = start(cl, cl.n, PEAK, "agent", "--config", str(cl.cfg), "--node", "node1",
                      "--hc-interval", str(HC_MS), "--store", "etcd", "--etcd", etcd.urls)

        def settle():
            etcd.step(0.02)  # (accepting meanwhile: the agent's requests wait as they would)
            return all(owners(cl).values()) and watches(agent) == 2
        assert wait_until(settle, 30), agent.log.read_text()
        # the next request's first connection: the round has 3 s to go
        deadline = time.monotonic() + 30
        first = None
        while first is None:
            assert time.monotonic() < deadline, "the agent sends etcd no request"
            first = etcd.step(0.01)
        t0 = time.monotonic()
        subprocess.run(["ip", "netns", "exec", cl.a, "nft", "add table inet pksilent; add "
                        "chain inet pksilent in { type filter hook input priority 0; "
                        "policy drop; }"], check=True)
        deadline = time.monotonic() + 30
        while "endpoint pod-a is down" not in agent.log.read_text():
            assert time.monotonic() < deadline, agent.log.read_text()
            etcd.step(0.005)
        pending = etcd.pending(first)
        secs = time.monotonic() - t0
        print(f"pod-a down {secs * 1000:.0f} ms after it went silent "
              f"({secs * 1000 / HC_MS:.1f} check periods of {HC_MS} ms), "
              f"etcd's request {'still' if pending else 'no longer'} pending")
        assert pending, ("the pod's failover waited for the agent's etcd request:\n" +
                         agent.log.read_text())
        log = agent.log.read_text()
        assert "endpoint pod-a is down after 3 missed checks" in log, log
        assert wait_until(lambda: owners(cl)["2001:db8:100:1::a"] == [], 10)
    finally:
        etcd.close()  # the agent's request ends at once: it stops without waiting it out
