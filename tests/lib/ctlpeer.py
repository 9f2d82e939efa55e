"""Test helpers for 'peak controller': a configuration, the controller started on a free
loopback port (stopped by its own PID), and fake agents speaking the control lines
(include/peak/ctlproto.h) from Python, independently of the C grammar."""
import hashlib
import hmac
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

import peaktest

PEAK = peaktest.PEAK
SVC = "api.svc.example."


def config(neps=3, svc=SVC, slice_len=72):
    eps = "\n".join(f'      - {{id: pod-{i}, address: "2001:db8:100::{i + 1:x}"}}'
                    for i in range(neps))
    return f"""
zone:
  name: svc.example.
  ns:
    - {{name: ns1.svc.example., address: "2001:db8:53::1"}}
  soa: {{primary: ns1.svc.example., contact: hostmaster.svc.example., serial: 7, minimum: 20}}
services:
  - name: {svc}
    prefixes: [2001:db8:5::/64]
    slice: {slice_len}
    endpoints:
{eps}
"""


def wait_until(fn, timeout=10.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return fn()


class Controller:
    """peak controller on [::1]:PORT (port, or a free one) with its log in tmp; its
    configuration is cfg, or tmp/peak.yaml (written from cfg_text if given); extra args
    appended. With wait, until it listens; a start that fails stops it and raises."""

    def __init__(self, tmp, cfg_text=None, args=(), name="ctl", wait=True, port=None,
                 cfg=None):
        self.tmp = tmp
        self.cfg = str(cfg) if cfg is not None else os.path.join(tmp, "peak.yaml")
        if cfg_text is not None:
            with open(self.cfg, "w") as f:
                f.write(cfg_text)
        self.port = port or peaktest.free_port()
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [PEAK, "controller", "--config", self.cfg, "--listen", f"[::1]:{self.port}",
             *args], stdout=self.logf, stderr=subprocess.STDOUT)
        if wait:
            up = wait_until(lambda: "agents on" in self.log() or self.proc.poll() is not None)
            if not up or self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"controller did not start: {self.log()}")

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.logf.close()


def metrics(port):
    with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def metric(port, name, endpoint):
    m = re.search(rf'^{name}{{service="[^"]*",endpoint="{endpoint}"}} (\S+)$', metrics(port),
                  re.M)
    return m and m.group(1)


def tag(key, nonce, node):
    """HMAC-SHA256(key, "peak-ctl-hello-v1" NUL || nonce || node), as ctlauth.h says."""
    return hmac.new(key, b"peak-ctl-hello-v1\0" + nonce + node.encode(),
                    hashlib.sha256).hexdigest()


def proof(key, anonce, cnonce, node):
    """The controller's proof, HMAC-SHA256(key, "peak-ctl-welcome-v1" NUL || agent's nonce ||
    challenge || node), as ctlauth.h says."""
    return hmac.new(key, b"peak-ctl-welcome-v1\0" + anonce + cnonce + node.encode(),
                    hashlib.sha256).hexdigest()


class Agent:
    """A fake agent: says hello (after reading the challenge and with its tag if key is
    given) and collects the maps it is sent. With prove (and a key) the hello carries a nonce
    of the agent's (self.anonce) and the controller's next line is kept in self.welcome."""

    def __init__(self, port, node="node1", key=None, hello=True, rcvbuf=None, prove=False):
        self.s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(5)
        self.s.connect(("::1", port))
        self.buf = b""
        self.maps = {}  # service -> {endpoint: [(start, log2), ...]}
        self.nmaps = 0
        self.cur = None
        self.pending = None
        self.nonce = None
        if key:  # the tag needs the challenge; without a key, hello at once as agents do
            first = self.line()
            assert first.startswith("challenge "), first
            self.nonce = bytes.fromhex(first.split()[1])
        self.anonce = os.urandom(16) if key and prove else None
        self.welcome = None
        if hello:
            t = f" {tag(key, self.nonce, node)}" if key else ""
            n = f" {self.anonce.hex()}" if self.anonce else ""
            self.send(f"hello {node}{t}{n}\n")
            if self.anonce:
                self.welcome = self.line()

    def send(self, text):
        self.s.sendall(text.encode())

    def line(self, timeout=5):
        self.s.settimeout(timeout)
        while b"\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("controller closed the connection")
            self.buf += d
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.decode()

    def closed_by_peer(self, timeout=5):
        """True once the controller closes this connection (lines before are dropped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.line(timeout=max(0.01, deadline - time.monotonic()))
            except EOFError:
                return True
            except (socket.timeout, TimeoutError):
                return False
            except ConnectionResetError:
                return True
        return False

    def read_map(self, timeout=5):
        """Reads lines until a whole map arrived; returns (service, map)."""
        deadline = time.monotonic() + timeout
        while True:
            ln = self.line(timeout=max(0.01, deadline - time.monotonic()))
            w = ln.split(" ")
            if w[0] == "map":
                self.cur, self.pending = w[1], {}
            elif w[0] == "ep" and self.pending is not None:
                self.pending.setdefault(w[1], []).extend(
                    tuple(int(x) for x in b.split("/")) for b in w[2:])
            elif w[0] == "end" and self.pending is not None:
                self.maps[self.cur] = self.pending
                self.nmaps += 1
                self.pending = None
                return self.cur, self.maps[self.cur]

    def close(self):
        self.s.close()


def slices(m):
    """{endpoint: number of slices} of a map."""
    return {ep: sum(1 << l2 for _, l2 in blocks) for ep, blocks in m.items()}


def connect_map(port, deadline, node="node1"):
    """An agent of node that reached a leader and got its first map (the map, the agent)."""
    while True:
        try:
            a = Agent(port, node=node)
            _, m = a.read_map(timeout=max(0.1, deadline - time.monotonic()))
            return m, a
        except (ConnectionRefusedError, ConnectionResetError, EOFError, socket.timeout,
                TimeoutError):
            assert time.monotonic() < deadline, f"{node}: no leader gave a map in time"
            time.sleep(0.05)


def agents(port, n=3):
    """n agents, of nodes n0..n(n-1), each connected and past its first map."""
    out = []
    for i in range(n):
        a = Agent(port, node=f"n{i}")
        a.read_map()
        out.append(a)
    return out


def agent_down_pod1(port):
    """An agent that reports pod-1 down: the map that follows, and the agent."""
    a = Agent(port)
    a.read_map()
    a.send(f"health {SVC} pod-1 down\n")
    _, live = a.read_map()
    return live, a
