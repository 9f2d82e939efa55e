"""Test helpers shared by the suites: run 'peak dns' on loopback (optionally inside a network
namespace) on free ports with a control socket and metrics, stopped by its own PID."""
import collections
import os
import random
import signal
import socket
import subprocess
import time
import urllib.request

import dns.message
import dns.query
import pytest

PEAK = os.environ.get("PEAK_BIN", "build/peak")
K = "000102030405060708090a0b0c0d0e0f"

BASE_CONFIG = f"""
zone:
  name: svc.example.
  ns:
    - {{name: ns1.svc.example., address: "2001:db8:53::1"}}
    - {{name: ns2.elsewhere.example.}}
  soa: {{primary: ns1.svc.example., contact: hostmaster.svc.example., serial: 7, minimum: 20}}
  ttl: {{apl: 3600, txt: 1800, aaaa: 30}}
services:
  - name: api.svc.example.
    prefixes: [2001:db8:5::/64]
    slice: 78
    select: src
    host: src
    key: {K}
    endpoints:
      - {{id: pod-a, address: "2001:db8:100::a"}}
      - {{id: pod-b, address: "2001:db8:100::b"}}
      - {{id: pod-c, address: "2001:db8:100::c"}}
  - name: web.deep.svc.example.
    prefixes: [2001:db8:6::/64]
    slice: 72
    answers: 1
    endpoints:
      - {{id: w1, address: "2001:db8:101::1", weight: 1}}
      - {{id: w2, address: "2001:db8:101::2", weight: 2}}
      - {{id: w3, address: "2001:db8:101::3", weight: 3}}
      - {{id: w4, address: "2001:db8:101::4", weight: 4}}
  - name: big.svc.example.
    prefixes: [{", ".join(f"2001:db8:7:{i:x}::/64" for i in range(60))}]
    slice: 70
    select: src
    host: src
    fanout: 4
    answers: 3
    key: {K}
    endpoints:
      - {{id: b1, address: "2001:db8:102::1"}}
      - {{id: b2, address: "2001:db8:102::2"}}
"""


_given = collections.deque(maxlen=256)  # the ports free_port returned last


def _below_ephemeral():
    """The ports free_port draws from: those under the kernel's ephemeral range."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return (10000, low) if low > 12000 else None


def free_port():
    """A port free for UDP and TCP on ::1 and 127.0.0.1 (the servers here listen on both),
    drawn from below the ephemeral range: a port the kernel hands out for bind(0) can be
    taken as the source port of an outgoing connection (an etcd member dialing its peers)
    before the server meant to listen on it starts. No SO_REUSEADDR on the probes: a port
    held by a TIME_WAIT connection is not free."""
    span = _below_ephemeral()
    for _ in range(200):
        socks = [socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)]
        try:
            socks[0].bind(("::1", random.randrange(*span) if span else 0))
            port = socks[0].getsockname()[1]
            if port in _given:  # handed out lately, maybe not listened on yet
                continue
            for fam, kind, addr in ((socket.AF_INET6, socket.SOCK_STREAM, "::1"),
                                    (socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1"),
                                    (socket.AF_INET, socket.SOCK_DGRAM, "127.0.0.1")):
                socks.append(socket.socket(fam, kind))
                socks[-1].bind((addr, port))
            _given.append(port)
            return port
        except OSError:
            continue
        finally:
            for x in socks:
                x.close()
    raise RuntimeError("no free port")


class Server:
    def __init__(self, tmp, config=BASE_CONFIG, extra=(), netns=None):
        self.dir = tmp
        self.netns = netns
        self.exec = ["ip", "netns", "exec", netns] if netns else []
        self.config = tmp / "peak.yaml"
        self.config.write_text(config)
        self.port = free_port()
        self.mport = free_port()
        self.control = str(tmp / "dns.ctl")
        self.log = open(tmp / "dns.log", "w+")
        self.proc = subprocess.Popen(
            [*self.exec, PEAK, "dns", "--config", str(self.config), "--listen", f"[::1]:{self.port}",
             "--listen", f"127.0.0.1:{self.port}", "--threads", "2", "--control",
             self.control, "--metrics", f"127.0.0.1:{self.mport}", "--tcp-idle", "1",
             *extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while True:
            try:
                self.ready()
                break
            except Exception:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("peak dns did not start: " + self.logtext())
                time.sleep(0.05)

    def ready(self):
        if not self.netns:
            self.query("svc.example.", "SOA", timeout=0.2)
            return
        out = subprocess.run([*self.exec, "kdig", "@::1", "-p", str(self.port), "+short",
                              "+timeout=1", "+retry=0", "svc.example.", "SOA"],
                             capture_output=True, text=True, timeout=5).stdout
        if "svc.example." not in out:
            raise RuntimeError("not ready")

    def logtext(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def query(self, name, rdtype, timeout=2.0, where="::1", tcp=False, **kw):
        q = dns.message.make_query(name, rdtype, **kw)
        if tcp:
            return dns.query.tcp(q, where, port=self.port, timeout=timeout)
        return dns.query.udp(q, where, port=self.port, timeout=timeout)

    def ctl(self, *args):
        return subprocess.run([*self.exec, PEAK, "dns-ctl", "--control", self.control, *args],
                              capture_output=True, text=True, timeout=10)

    def status(self):
        """The control socket's 'status' reply, read straight from the socket (no dns-ctl
        process: faster where a test polls it). Not for a server in another namespace."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(self.control)
            s.sendall(b"status\n")
            data = b""
            while not data.endswith(b"ok\n"):
                d = s.recv(65536)
                if not d:
                    break
                data += d
        return data.decode()

    def metrics(self):
        url = f"http://127.0.0.1:{self.mport}/metrics"
        if self.netns:
            text = subprocess.run([*self.exec, "curl", "-s", url], capture_output=True,
                                  text=True, timeout=10, check=True).stdout
        else:
            with urllib.request.urlopen(url, timeout=5) as r:
                text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def signal(self, sig=signal.SIGHUP):
        self.proc.send_signal(sig)

    def stop(self):
        stop_process(self.proc, timeout=5)
        self.log.close()


def stop_process(proc, timeout=10):
    """Ends a process the test started: SIGTERM, then SIGKILL if it has not exited within
    timeout seconds. Returns its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def sanitized(binary=None):
    """Whether binary (default PEAK_BIN) is an ASan/UBSan build: bench harness smoke runs
    check the Python harness once, in the plain build, to keep make test in its budget."""
    binary = binary or os.environ.get("PEAK_BIN", "build/peak")
    r = subprocess.run(["ldd", binary], capture_output=True, text=True)
    return "libasan" in r.stdout or "libubsan" in r.stdout
