"""Fixtures of the client tests: two network namespaces joined by a veth pair, a client
with 2001:db8:aa:bb::1 that runs peak dns on its loopback, and a pod that accepts the
whole service range (AnyIP). Namespaces are removed even when a test fails.

  [pkc*-c] v0 2001:db8:aa:bb::1/64 ---- veth ---- v1 2001:db8:aa:bb::2/64 [pkc*-p]
           lo ::1: peak dns                            lo: local 2001:db8:5::/64 ... (AnyIP)
           2001:db8::/32 via ::2
"""
import os
import random
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peaktest import BASE_CONFIG, K, PEAK, Server  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = "2001:db8:aa:bb::1"
POD = "2001:db8:aa:bb::2"
PREFIXES = ["2001:db8:5::/64", "2001:db8:6::/64", "2001:db8:8::/64", "2001:db8:9::/64",
            "2001:db8:5:1::/64", "2001:db8:6:1::/64"] + \
    [f"2001:db8:7:{i:x}::/64" for i in range(60)]


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Net:
    def __init__(self):
        tag = f"pkc{os.getpid() % 10000}{random.randrange(1000)}"
        self.cl, self.pod = tag + "-c", tag + "-p"
        self.procs = []

    def up(self):
        ip("netns", "add", self.cl)
        ip("netns", "add", self.pod)
        ip("-n", self.cl, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns",
           self.pod)
        for ns, dev, addr in ((self.cl, "v0", CLIENT), (self.pod, "v1", POD)):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", addr + "/64", "dev", dev, "nodad")
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", self.cl, "-6", "route", "add", "2001:db8::/32", "via", POD, "dev", "v0")
        for p in PREFIXES:
            ip("-n", self.pod, "-6", "route", "add", "local", p, "dev", "lo")

    def run(self, *cmd, ns=None, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 30)
        return subprocess.run(["ip", "netns", "exec", ns or self.cl, *cmd], **kw)

    def pod_server(self, port, *addrs):
        p = subprocess.Popen(["ip", "netns", "exec", self.pod, "/usr/bin/python3",
                              os.path.join(HERE, "podserver.py"), str(port), *addrs],
                             stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        assert p.stdout.readline().strip() == "listening"
        return p

    def down(self):
        for p in self.procs:
            p.kill()
            p.wait()
        for ns in (self.cl, self.pod):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture(scope="module")
def net():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    n = Net()
    try:
        n.up()
        yield n
    finally:
        n.down()


CLIENT_CONFIG = BASE_CONFIG + f"""
  - name: obj.svc.example.
    prefixes: [2001:db8:8::/64]
    slice: 76
    select: obj
    host: src
    key: {K}
    endpoints: [{{id: o1, address: "2001:db8:104::1"}}]
  - name: hop.svc.example.
    prefixes: [2001:db8:9::/64]
    slice: 72
    select: hop
    host: hop
    period: 30
    key: {K}
    secret-file: SECRET
    endpoints: [{{id: h1, address: "2001:db8:105::1"}}]
  - name: pow.svc.example.
    prefixes: [2001:db8:5:1::/64]
    slice: 78
    select: src
    host: src
    pow: 12
    nonce: 16
    key: {K}
    endpoints: [{{id: p1, address: "2001:db8:106::1"}}]
  - name: fan.svc.example.
    prefixes: [2001:db8:6:1::/64]
    slice: 72
    select: src
    host: src
    fanout: 4
    key: {K}
    endpoints: [{{id: f1, address: "2001:db8:107::1"}}]
  - name: noroute.svc.example.
    prefixes: ["fd00:99::/64"]
    slice: 72
    endpoints: [{{id: n1, address: "2001:db8:108::1"}}]
"""


@pytest.fixture(scope="module")
def dns_server(net, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("client")
    secret = tmp / "hop.secret"
    secret.write_text("f0e0d0c0b0a090807060504030201000\n")
    s = Server(tmp, config=CLIENT_CONFIG.replace("SECRET", str(secret)), netns=net.cl)
    s.secret = str(secret)
    yield s
    s.stop()
    assert s.proc.returncode == 0, s.logtext()
