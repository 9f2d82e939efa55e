"""Fixtures of the object store tests: a client namespace running peak dns, and two pod
namespaces, each running one 'peak store serve' pod with an AnyIP route for the service's
whole prefix. The client routes each pod's half of the slices (the configuration's initial
assignment: s1 holds slices 0-127, s2 128-255) to that pod. Namespaces are removed and pods
killed (by PID) even when a test fails.

  [pks*-cl] v0 2001:db8:aa:bb::1/64 ---- a0 2001:db8:aa:bb::2/64 [pks*-a] store s1
           v1 2001:db8:aa:cc::1/64 ---- b0 2001:db8:aa:cc::2/64 [pks*-b] store s2
           lo ::1: peak dns              lo: local 2001:db8:8::/64 (AnyIP) in both pods
           2001:db8:8::/65 via bb::2, 2001:db8:8:0:8000::/65 via cc::2
"""
import ipaddress
import hashlib
import json
import os
import pathlib
import random
import re
import struct
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peaktest import K, PEAK, Server  # noqa: E402

PORT = 8080
MAX_BODY = 4 << 20
METRICS_PORT = 9100
TIMEOUT_MS = 1500
NAME = "store.svc.example."

def config(npods=2, replicas=1):
    """The store service's configuration: npods endpoints s1.. and the rule's replicas."""
    eps = "".join(f'      - {{id: s{i + 1}, address: "2001:db8:104::{i + 1}"}}\n'
                  for i in range(npods))
    rep = f"    replicas: {replicas}\n" if replicas != 1 else ""
    return CONFIG.split("    endpoints:")[0] + rep + "    endpoints:\n" + eps


CONFIG = f"""
zone:
  name: svc.example.
  ns:
    - {{name: ns1.svc.example., address: "2001:db8:53::1"}}
  soa: {{primary: ns1.svc.example., contact: hostmaster.svc.example., serial: 7, minimum: 20}}
  ttl: {{apl: 3600, txt: 1800, aaaa: 30}}
services:
  - name: {NAME}
    prefixes: [2001:db8:8::/64]
    slice: 72
    select: obj
    host: src
    port: {PORT}
    key: {K}
    endpoints:
      - {{id: s1, address: "2001:db8:104::1"}}
      - {{id: s2, address: "2001:db8:104::2"}}
"""

OBJECT_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{64}$")
LOG_REC = struct.Struct(">4sBBHIIQQ")  # a log record's header (src/store/slog.h)


def read_log(data):
    """The small-object log of data dir `data` as the pod's index sees it: {object name:
    (key, body, version)}, the newest record of a name winning and a delete record hiding
    it; each segment is read up to its first torn or damaged record. Also returns the
    number of segments and whether any had such a tail: (objects, nsegs, torn)."""
    recs, nsegs, torn = [], 0, False
    d = pathlib.Path(data) / "log"
    for seg in sorted(d.glob("seg-*")) if d.exists() else []:
        nsegs += 1
        b, off = seg.read_bytes(), 0
        while off < len(b):
            if off + LOG_REC.size > len(b):
                torn = True
                break
            magic, typ, flags, kl, bl, sl, seq, ver = LOG_REC.unpack_from(b, off)
            end = off + LOG_REC.size + kl + bl
            if (magic != b"PKL1" or end + 12 > len(b) or b[end + 8:end + 12] != b"PKC1" or
                    hashlib.sha256(b[off:end]).digest()[:8] != b[end:end + 8]):
                torn = True
                break
            key = b[off + LOG_REC.size:off + LOG_REC.size + kl]
            if typ == 1:
                name = f"{sl:08x}-" + hashlib.sha256(key).hexdigest()
                recs.append((seq, name, (key, b[off + LOG_REC.size + kl:end], ver)))
            else:
                recs.append((seq, key.decode(), None))
            off = end + 12
    objs = {}
    for seq, name, obj in sorted(recs, key=lambda r: r[0]):
        if obj is None:
            objs.pop(name, None)
        else:
            objs[name] = obj
    return objs, nsegs, torn


def obj_bytes(data, name):
    """Object `name` of data dir `data` as a file holds it ("PKS1", key length, key, body),
    whether it is a file or in the small-object log; None if it is neither."""
    path = pathlib.Path(data) / name
    if path.exists():
        return path.read_bytes()
    obj = read_log(data)[0].get(name)
    if obj is None:
        return None
    return b"PKS1" + len(obj[0]).to_bytes(2, "big") + obj[0] + obj[1]


def wait_for(cond, what, timeout=30):
    """Polls cond until it holds; fails the test after timeout seconds."""
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def ip(*args):
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    assert r.returncode == 0, f"ip {' '.join(args)}: {r.stderr}"


class Pod:
    """One 'peak store serve' in a namespace; started and stopped by its own PID."""

    def __init__(self, ns, pid, config, data, logpath, max_body=MAX_BODY, extra=()):
        self.ns, self.id, self.config, self.data, self.logpath = ns, pid, config, data, logpath
        self.max_body, self.extra = max_body, list(extra)
        self.proc = None

    def start(self):
        self.log = open(self.logpath, "a+")
        start = self.log.seek(0, 2)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, PEAK, "store", "serve", "--config",
             str(self.config), "--id", self.id, "--data", str(self.data), "--max-body",
             str(self.max_body), "--timeout", str(TIMEOUT_MS), *self.extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while "serving" not in self.logtext()[start:]:
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("peak store did not start: " + self.logtext())
            time.sleep(0.02)

    def logtext(self):
        self.log.flush()
        with open(self.logpath) as f:
            return f.read()

    def stop(self, sig=None):
        if self.proc and self.proc.poll() is None:
            if sig:
                self.proc.send_signal(sig)
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def files(self):
        """The data dir's objects and temps: its files (not the tombstone and log
        directories) and the objects in its small-object log (read them with obj_bytes)."""
        return sorted({f for f in os.listdir(self.data) if f not in ("tomb", "log")} |
                      set(read_log(self.data)[0]))

    def tombs(self):
        """The names of the pod's tombstones (deletes it keeps, data/tomb)."""
        d = self.data / "tomb"
        return sorted(f for f in os.listdir(d) if not f.startswith(".")) if d.exists() else []

    def blocks(self):
        """The prefixes of this pod's slices, as its start-up log lists them."""
        return re.findall(rf"store: {self.id} holds (\S+)", self.logtext())

    def metrics(self):
        """The pod's --metrics page as {'name{labels}': value}."""
        code = ("import urllib.request,sys;sys.stdout.write(urllib.request.urlopen("
                f"'http://[::1]:{METRICS_PORT}/metrics',timeout=5).read().decode())")
        r = subprocess.run(["ip", "netns", "exec", self.ns, "/usr/bin/python3", "-c", code],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                for line in r.stdout.splitlines() if line and not line.startswith("#")}

    def rss_peak_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))


class Net:
    """The client namespace and npods pod namespaces (pod i on veth v{i}, 2001:db8:aa:i::/64).
    The client routes each pod's slice blocks, as its log lists them, to it; with more than
    two pods it also forwards between the pods' endpoint addresses (2001:db8:104::i on their
    lo), which repair uses. The last `late` pods are left out of the configuration and not
    started until join() adds them. pod_extra: more arguments for every pod."""

    def __init__(self, tmp, npods=2, replicas=1, max_body=MAX_BODY, late=0, pod_extra=()):
        tag = f"pks{os.getpid() % 10000}{random.randrange(1000)}"
        self.cl = tag + "-cl"
        self.ns = [f"{tag}-{chr(ord('a') + i)}" for i in range(npods)]
        self.a, self.b = self.ns[0], self.ns[1]
        self.tmp, self.npods, self.replicas, self.max_body = tmp, npods, replicas, max_body
        self.late = late
        self.pod_extra = list(pod_extra)
        self.pods = {}
        self.dns = None

    def up(self):
        for ns in [self.cl] + self.ns:
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        nets = self.nets = (["bb", "cc"] if self.npods == 2
                            else [f"{i + 1:x}" for i in range(self.npods)])
        for i, pns in enumerate(self.ns):
            dev, peer, net = f"v{i}", f"{chr(ord('a') + i)}0", nets[i]
            ip("-n", self.cl, "link", "add", dev, "type", "veth", "peer", "name", peer,
               "netns", pns)
            ip("-n", self.cl, "addr", "add", f"2001:db8:aa:{net}::1/64", "dev", dev, "nodad")
            ip("-n", pns, "addr", "add", f"2001:db8:aa:{net}::2/64", "dev", peer, "nodad")
            ip("-n", self.cl, "link", "set", dev, "up")
            ip("-n", pns, "link", "set", peer, "up")
            ip("-n", pns, "-6", "route", "add", "local", "2001:db8:8::/64", "dev", "lo")
            ip("-n", pns, "-6", "route", "add", "default", "via", f"2001:db8:aa:{net}::1")
        if self.npods > 2:
            # pods reach each other's endpoint address (repair) through the client namespace
            ip("netns", "exec", self.cl, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
            for i, pns in enumerate(self.ns):
                ip("-n", pns, "addr", "add", f"2001:db8:104::{i + 1}/128", "dev", "lo")
                ip("-n", self.cl, "-6", "route", "add", f"2001:db8:104::{i + 1}/128", "via",
                   f"2001:db8:aa:{nets[i]}::2")
        text = CONFIG if (self.npods, self.replicas) == (2, 1) else config(
            self.npods - self.late, self.replicas)
        self.config = self.tmp / "store.yaml"
        self.config.write_text(text)
        self.dns = Server(self.tmp, config=text, netns=self.cl)
        for i, ns in enumerate(self.ns[:self.npods - self.late]):
            pid = f"s{i + 1}"
            pod = Pod(ns, pid, self.config, self.tmp / f"data-{pid}", self.tmp / f"{pid}.log",
                      self.max_body, ["--metrics", f"[::1]:{METRICS_PORT}", *self.pod_extra])
            pod.start()
            self.pods[pid] = pod
        for i, pod in enumerate(self.pods.values()):
            for block in pod.blocks():
                ip("-n", self.cl, "-6", "route", "add", block, "via",
                   f"2001:db8:aa:{nets[i]}::2")

    def join(self, extra=()):
        """Starts the late pods with a configuration that lists them all (--joined, in
        order), then routes their slice blocks to them: more specific than, or replacing,
        the routes of the blocks they came from. Returns the new pods."""
        text = config(self.npods, self.replicas)
        self.config = self.tmp / "store-joined.yaml"
        self.config.write_text(text)
        late = [f"s{i + 1}" for i in range(self.npods - self.late, self.npods)]
        joined = [a for pid in late for a in ("--joined", pid)]
        new = []
        for i in range(self.npods - self.late, self.npods):
            pid = f"s{i + 1}"
            pod = Pod(self.ns[i], pid, self.config, self.tmp / f"data-{pid}",
                      self.tmp / f"{pid}.log", self.max_body,
                      ["--metrics", f"[::1]:{METRICS_PORT}", *joined, *extra])
            pod.start()
            self.pods[pid] = pod
            new.append(pod)
            for block in pod.blocks():
                self.route_move(block, f"2001:db8:aa:{self.nets[i]}::2")
        return new

    def route_move(self, block, via):
        """Routes block via a new pod, as its agent would: the old owners' routes inside it
        (more specific, so they would win) are withdrawn, after the block's own route is
        in place, so no address of the block is ever without a route (a read then would
        fail with 'Network is unreachable', which is the test's doing, not the store's)."""
        net = ipaddress.ip_network(block)
        routes = json.loads(subprocess.run(["ip", "-j", "-n", self.cl, "-6", "route"],
                                           capture_output=True, text=True, check=True).stdout)
        ip("-n", self.cl, "-6", "route", "replace", block, "via", via)
        for rt in routes:
            dst = rt.get("dst", "default")
            if dst == "default" or ":" not in dst:
                continue
            if "/" not in dst:
                dst += "/128"
            if ipaddress.ip_network(dst) != net and ipaddress.ip_network(dst).subnet_of(net):
                ip("-n", self.cl, "-6", "route", "del", dst)

    def store(self, *args, timeout=60, **kw):
        """Runs 'peak store ...' in the client namespace against our peak dns."""
        return subprocess.run(["ip", "netns", "exec", self.cl, PEAK, "store", *args,
                               "--server", f"[::1]:{self.dns.port}", "--port", str(PORT)],
                              capture_output=True, timeout=timeout, **kw)

    def py(self, code, *args, timeout=30):
        """Runs a Python snippet in the client namespace; returns its stdout."""
        r = subprocess.run(["ip", "netns", "exec", self.cl, "/usr/bin/python3", "-c", code,
                            *args], capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def down(self):
        for pod in self.pods.values():
            pod.stop()
        if self.dns:
            self.dns.stop()
        for ns in [self.cl] + self.ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    n = Net(tmp_path_factory.mktemp("store"))
    try:
        n.up()
        yield n
    finally:
        n.down()
    for pid, pod in n.pods.items():
        assert pod.proc.returncode == 0, pod.logtext()
