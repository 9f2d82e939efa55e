"""Slice handover with forwarding (issue 19 part 2), on the namespace testbed (testbed.py: a
router with BIRD, 2 nodes with agents and BIRD, pods, peak dns, the controller):

    [C] keep-alive clients --- [R] router --- [N1] n1p1 n1p2    [N2] n2p1 n2p2 (+ n2p3 spare)

Each phase opens long-lived keep-alive connections (one per client source, a request every
40 ms on each), makes one change and counts the connections that broke (a request not
answered 200 on its connection):
  1. a pod is added (slices move to n2p3 from both nodes): 0 broken;
  2. a weight is changed (slices move away from n1p1): 0 broken;
  3. a pod is drained (operator's health down; its process lives): 0 broken, and its clients
     are still answered by it (forwarded) while the window lasts;
  4. a pod dies: exactly its clients' connections break (nothing to hand over);
  5. the same weight change with the controller restarted with --no-handover: some break.
The agents' metrics count the handovers and the packets forwarded. Needs root.

No phase races a fixed sleep: each waits until the controller logged its change, both agents
route the map it now holds (their per-endpoint slice counts equal its status), the router
carries the agents' routes, and every open connection was answered several more times.
Bounds are for a loaded CI machine (two suites at once, one an ASan build, on 2 cores): the
agents' health checks wait 1 s for an answer, not 100 ms (three slow answers in a row took a
live pod out mid-phase, with no handover, and its clients' connections broke), and a
request waits 5 s for its answer (a reset or a close still counts at once)."""
import ctypes
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import ssaref  # noqa: E402
from ctlpeer import wait_until  # noqa: E402
import testbed  # noqa: E402

PEAK = os.environ.get("PEAK_BIN", os.path.join(os.path.dirname(__file__), "../../build/peak"))
CLIENTS = 64
METRICS = "[::1]:9109"
LIBC = ctypes.CDLL("libc.so.6", use_errno=True)


def in_ns(name):
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if LIBC.setns(fd, 0x40000000):
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


def source(k):
    return f"2001:db8:c0:{k + 1:x}::1"


def address(k):
    return ssaref.address(testbed.PREFIX, testbed.KEY, source(k), 78)


def test_address_as_peak_computes_it():
    out = subprocess.run([PEAK, "ssa", "compute", "--prefix", testbed.PREFIX, "--descriptor",
                          f"v=ssa1; slice=78; select=src; host=src; key={testbed.KEY}",
                          "--source", source(5)], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == address(5)


def request(s):
    """One request on an open keep-alive connection; the endpoint that answered, or None."""
    s.sendall(b"GET / HTTP/1.1\r\nHost: api\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        b = s.recv(4096)
        if not b:
            return None
        data += b
    head, body = data.split(b"\r\n\r\n", 1)
    n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(body) < n:
        b = s.recv(4096)
        if not b:
            return None
        body += b
    m = re.search(rb"X-Peak-Endpoint: (\S+)", head)
    return m.group(1).decode() if b" 200 " in head.split(b"\r\n")[0] and m else None


class Clients:
    """One keep-alive connection per client source, each in its own thread (in the clients'
    namespace), a request every 40 ms until stop(). first[k]: the endpoint that answered
    first; last[k] the last one; broken: clients whose connection failed."""

    def __init__(self, tb, addrs):
        self.tb, self.addrs, self.stopping = tb, addrs, threading.Event()
        self.first, self.last, self.broken, self.ok, self.why = {}, {}, set(), {}, {}
        self.threads = [threading.Thread(target=self.run, args=(k,)) for k in addrs]
        for t in self.threads:
            t.start()
        assert wait_until(lambda: len(self.first) + len(self.broken) == len(addrs), 30)
        assert not self.broken and len(self.first) == len(addrs), "clients did not connect"

    def answered(self, n, timeout=30):
        """Until every connection still open was answered n more times (a broken one stops
        counting); False on timeout."""
        since = dict(self.ok)
        return wait_until(lambda: all(k in self.broken or self.ok.get(k, 0) >= since[k] + n
                                      for k in self.addrs), timeout)

    def run(self, k):
        in_ns(f"{self.tb.tag}-c")
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.IPPROTO_IPV6, 75, 1)  # IPV6_FREEBIND: AnyIP sources
            s.settimeout(5)
            s.bind((source(k), 0))
            s.connect((self.addrs[k], testbed.PORT))
            while not self.stopping.is_set():
                ep = request(s)
                if ep is None:
                    raise OSError("no answer")
                self.first.setdefault(k, ep)
                self.last[k] = ep
                self.ok[k] = self.ok.get(k, 0) + 1
                self.stopping.wait(0.04)
        except OSError as e:
            self.why[k] = f"{e} after {self.ok.get(k, 0)} answers, last from {self.last.get(k)}"
            self.broken.add(k)
        finally:
            s.close()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join()
        for k in sorted(self.broken):
            print(f"client {k} ({self.addrs[k]}): {self.why[k]}")
        return self.broken

    def on(self, ep):
        return {k for k, e in self.first.items() if e == ep}


def ctl(tb, *cmd):
    r = subprocess.run(["ip", "netns", "exec", tb.r(), PEAK, "controller-ctl", "--control",
                        os.path.join(tb.dir, "ctl.sock"), *cmd], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def applied(tb):
    """Both agents route the map the controller holds: for every endpoint, the slices its
    node's agent routes to it equal the slices the controller's status gives it."""
    held = {}
    for line in ctl(tb, "status").splitlines():
        f = line.split()
        if len(f) == 7 and f[5] == "slices":
            held[f[1]] = int(f[6])
    routed = {}
    for i in (1, 2):
        for ep, n in re.findall(r'^peak_agent_endpoint_slices\{service="[^"]*",'
                                r'endpoint="([^"]+)"\} (\d+)$', agent_metrics(tb, i), re.M):
            routed[ep] = int(n)
    return bool(held) and held == routed


def settle(tb, c, log, text, since=0, timeout=30):
    """Until the controller logged text (past byte since of its log: the size before the
    change, as a line of the same text an earlier change wrote must not count), both agents
    route its new map, the router carries their routes, and then every open connection was
    answered 10 more times (requests on the moved routes)."""
    assert tb.wait_log(log, text, timeout, since), text
    assert wait_until(lambda: applied(tb), timeout, 0.1), "the agents did not route the new map"
    assert tb.wait_carried(timeout), "the router did not carry the agents' routes"
    assert c is None or c.answered(10, timeout), "connections stalled"


def agent_metrics(tb, i):
    out = {}

    def read():
        in_ns(tb.node(i))
        with urllib.request.urlopen(f"http://{METRICS}/metrics", timeout=5) as r:
            out["text"] = r.read().decode()

    t = threading.Thread(target=read)
    t.start()
    t.join()
    return out.get("text", "")


def metric(text, name, label):
    m = re.search(rf"^{name}{{{label}}} (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_handover():
    t0 = time.time()

    def step(what):
        print(f"{time.time() - t0:5.1f} s: {what}")

    work = tempfile.mkdtemp(prefix="peak-ho-")
    tb = testbed.Testbed(f"ho{os.getpid() % 10000}", work, PEAK, nodes=2, pods=2, spare=(2, 3),
                         ctl_args=["--control", os.path.join(work, "ctl.sock"),
                                   "--handover-ms", "6000"],
                         agent_args=["--metrics", METRICS, "--hc-timeout", "1000"])
    try:
        tb.up()
        assert tb.wait_log("controller.log", f"{tb.pod_id(*tb.spare)} down", 30)
        step("up")
        assert tb.wait_converged(30), "the router did not learn the slices"
        # the start is over: the four serving pods up, the spare down, their map routed
        up = {tb.pod_id(i, j) for i, j in tb.all_pods() if (i, j) != tb.spare}
        assert wait_until(lambda: {line.split()[1] for line in ctl(tb, "status").splitlines()
                                   if " up " in line} == up, 30, 0.1), ctl(tb, "status")
        settle(tb, None, "controller.log", f"{tb.pod_id(*tb.spare)} down")
        step("converged")
        addrs = {k: address(k) for k in range(CLIENTS)}

        step("addresses")
        # 1. a pod added: slices move to n2p3 from pods on both nodes
        c = Clients(tb, addrs)
        at = tb.log_size("controller.log")
        tb.serve(*tb.spare)
        settle(tb, c, "controller.log", "n2p3 up: ", at)
        assert c.stop() == set(), "connections broke when a pod was added"
        assert sum(c.ok.values()) > 3 * CLIENTS

        step("1 done")
        # 2. a weight changed: n1p1 gives slices up
        c = Clients(tb, addrs)
        at = tb.log_size("controller.log")
        ctl(tb, "weight", testbed.SERVICE, "n1p2", "3")
        settle(tb, c, "controller.log", "n1p2 weight 3: ", at)
        assert c.stop() == set(), "connections broke when a weight changed"

        step("2 done")
        # 3. a pod drained (its process lives): its clients stay with it, forwarded
        c = Clients(tb, addrs)
        mine = c.on("n2p2")
        at = tb.log_size("controller.log")
        ctl(tb, "health", testbed.SERVICE, "n2p2", "down")
        settle(tb, c, "controller.log", "n2p2 down (drained): ", at)
        assert c.stop() == set(), "connections broke when a pod was drained"
        assert mine and all(c.last[k] == "n2p2" for k in mine)
        at = tb.log_size("controller.log")
        ctl(tb, "health", testbed.SERVICE, "n2p2", "up")
        settle(tb, None, "controller.log", "n2p2 up: ", at)

        step("3 done")
        # 4. a pod dies: nothing to hand over, its connections break (and only those)
        c = Clients(tb, addrs)
        mine = c.on("n1p1")
        at = tb.log_size("controller.log")
        tb.kill_pod(1, 1)
        settle(tb, c, "controller.log", "n1p1 down: ", at)
        assert mine and c.stop() == mine
        with open(os.path.join(work, "controller.log"), "rb") as f:
            f.seek(at)
            ctl_log = f.read().decode()
        assert "handover n1p1 -> " not in ctl_log.split("n1p1 down: ", 1)[1]

        # the agents counted the handovers and the packets they forwarded
        m = [agent_metrics(tb, i) for i in (1, 2)]
        started = [metric(t, "peak_agent_handovers_total", 'event="started"') for t in m]
        done = [metric(t, "peak_agent_handovers_total", 'event="completed"') for t in m]
        fwd = sum(metric(t, "peak_agent_handover_packets_total", f'way="{w}"') or 0
                  for t in m for w in ("to_old_local", "to_old_node", "received"))
        assert all(started) and all(done) and fwd > 0, m

        step("4 done")
        # 5. the same kind of change without handovers: connections on moved slices break
        tb.stop_controller()
        tb.start_controller(["--no-handover"], log="controller-nh.log")
        for i in (1, 2):  # each agent says hello to the new controller and gets its maps
            log = os.path.join(work, f"agent-n{i}.log")
            deadline = time.time() + 30
            while open(log).read().count("connected to controller") < 2:
                assert time.time() < deadline, f"agent {i} did not reconnect"
                time.sleep(0.05)
        settle(tb, None, "controller-nh.log", "agent of node node2 connected")
        c = Clients(tb, addrs)
        ctl(tb, "weight", testbed.SERVICE, "n1p2", "1")
        settle(tb, c, "controller-nh.log", "n1p2 weight 1: ")
        broken = c.stop()
        print(f"--no-handover: {len(broken)} of {CLIENTS} connections broke on a weight change")
        assert broken, "without handovers some connections should break"
    finally:
        tb.down()
