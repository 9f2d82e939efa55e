"""Helpers for agent tests that need no pods: one network namespace holding a node agent and
a fake controller (a TCP server in the test process, listening inside the namespace), so a
test can send the agent any line the real controller could, and worse.

  [NS] lo ::1 (agent <-> fake controller, agent metrics on [::1]:9100)
       d0 fd00:1::1/64 -- veth -- d1 (no address): the endpoints' addresses are on-link
       gateways behind d0, and nothing answers for them

Used by tests/regress/test_agent_*.py. Requires root."""
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import time

PEAK = os.environ.get("PEAK_BIN", "build/peak")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

# Two services: a has one endpoint, b four (an unfinished map of a must never be freed as b's).
CONFIG = """
zone: {name: svc.example., ns: [{name: ns1.svc.example.}]}
nodes: [{name: node1}]
services:
  - name: a.svc.example.
    prefixes: ["fd00:a::/64"]
    slice: 72
    port: 8080
    endpoints:
      - {id: a1, address: "fd00:1::a1", node: node1}
  - name: b.svc.example.
    prefixes: ["fd00:b::/64"]
    slice: 72
    port: 8080
    endpoints:
      - {id: b1, address: "fd00:1::b1", node: node1}
      - {id: b2, address: "fd00:1::b2", node: node1}
      - {id: b3, address: "fd00:1::b3", node: node1}
      - {id: b4, address: "fd00:1::b4", node: node1}
"""


def ip(*args):
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def wait_until(fn, timeout=10):
    """Polls fn until it returns true or the deadline passes; returns its last value."""
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() >= deadline:
            return v
        time.sleep(0.02)


def node_netns(name):
    """Adds network namespace name as drawn above: lo up, d0 fd00:1::1/64 -- veth -- d1."""
    ip("netns", "add", name)
    ip("-n", name, "link", "set", "lo", "up")
    ip("-n", name, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
    ip("-n", name, "addr", "add", "fd00:1::1/64", "dev", "d0", "nodad")
    ip("-n", name, "link", "set", "d0", "up")
    ip("-n", name, "link", "set", "d1", "up")


@contextlib.contextmanager
def node_ns(name):
    """node_netns(name) for a with block (skips the test without root); always deleted."""
    if os.geteuid() != 0:
        import pytest
        pytest.skip("network namespaces need root")
    try:
        node_netns(name)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def in_netns(name, fn):
    """Runs fn with the calling thread inside network namespace name (sockets it creates stay
    there), then moves the thread back."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET):
            raise OSError(ctypes.get_errno(), "setns")
        try:
            return fn()
        finally:
            if _libc.setns(own, CLONE_NEWNET):
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


class Conn:
    """One accepted agent connection: lines in, lines out."""

    def __init__(self, sock):
        self.s = sock
        self.s.settimeout(30)  # a deadline: a loaded ASan run's agent may take seconds
        self.buf = b""

    def line(self):
        while b"\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("agent closed the controller link")
            self.buf += d
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.decode()

    def send(self, *lines):
        self.s.sendall("".join(ln + "\n" for ln in lines).encode())

    def close(self):
        self.s.close()


class AgentNS:
    """The namespace, the config file, the fake controller's listening socket, the agent."""

    def __init__(self, tmp_path, prefix):
        self.name = f"{prefix}{os.getpid() % 10000}x"
        self.cfg = tmp_path / "peak.yaml"
        self.log = tmp_path / "agent.log"
        self.agent = None
        self.srv = None

    def up(self, config=CONFIG):
        node_netns(self.name)
        self.cfg.write_text(config)
        self.srv = in_netns(self.name, lambda: socket.create_server(
            ("::1", 0), family=socket.AF_INET6))
        self.srv.settimeout(30)  # a deadline for the agent's connect, not a wait
        self.port = self.srv.getsockname()[1]

    def start_agent(self, *extra, controller=None):
        """The agent, with health checks far apart (nothing answers on d0: no health changes
        during a test) and a fast resync; its controller is the fake one unless controller
        (ADDR:PORT inside the namespace) names another."""
        self.agent = subprocess.Popen(
            ["ip", "netns", "exec", self.name, PEAK, "agent", "--config", str(self.cfg),
             "--node", "node1", "--controller", controller or f"[::1]:{self.port}",
             "--interval", "100", "--hc-interval", "60000", "--hc-timeout", "60000", *extra],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        return self.agent

    def accept(self):
        """The agent's next connection, after its hello."""
        c = Conn(self.srv.accept()[0])
        hello = c.line()
        assert hello == "hello node1", hello
        return c

    def routes(self):
        out = ip("-j", "-n", self.name, "-6", "route", "show", "table", "main", "proto",
                 "0xa5").stdout
        return {(r["dst"], r.get("gateway")) for r in json.loads(out)}

    def metrics(self, port=9100):
        return {k: float(v) for k, v in (ln.rsplit(" ", 1)
                                          for ln in self.metrics_text(port).splitlines()
                                          if ln and not ln.startswith("#"))}

    def metrics_text(self, port=9100):
        def get():
            with socket.create_connection(("::1", port), timeout=5) as s:
                s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
                data = b""
                while d := s.recv(65536):
                    data += d
            return data.decode().split("\r\n\r\n", 1)[1]
        return in_netns(self.name, get)

    def down(self):
        if self.agent and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGKILL)
            self.agent.wait()
        if self.srv:
            self.srv.close()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@contextlib.contextmanager
def agent_ns(tmp_path, prefix):
    if os.geteuid() != 0:
        import pytest
        pytest.skip("network namespaces need root")
    ns = AgentNS(tmp_path, prefix)
    try:
        ns.up()
        yield ns
    finally:
        ns.down()
