"""Fixtures of the NSS module tests (root): the client tests' two namespaces, with the
client's /etc replaced by `ip netns exec` (it bind-mounts /etc/netns/NAME/* over /etc):
nsswitch.conf says `hosts: files peak dns`, resolv.conf points at `peak dns` on the client's
loopback port 53, and the module is a copy in a temporary directory found through
LD_LIBRARY_PATH. The pod accepts the whole service range (AnyIP) and runs `peak serve`.

  [pkn*-c] v0 2001:db8:aa:bb::1/64 ---- veth ---- v1 2001:db8:aa:bb::2/64 [pkn*-p]
           lo ::1: peak dns on port 53                 lo: local 2001:db8:5::/64 (AnyIP)
           2001:db8::/32 via ::2                       peak serve --port 8080 --id pod-a
           /etc/netns/pkn*-c/{nsswitch.conf,resolv.conf,hosts}

Namespaces, /etc/netns entries and processes are removed even when a test fails.
"""
import os
import random
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peaktest import BASE_CONFIG, K, PEAK  # noqa: E402

MODULE = os.environ.get("NSS_MODULE", "build/libnss_peak.so.2")
CLIENT = "2001:db8:aa:bb::1"
POD = "2001:db8:aa:bb::2"
PORT = 8080
# SPEC.md section 8, first vector: api.svc.example. of BASE_CONFIG for this client
RULE_ADDR = "2001:db8:5:0:a94a:ac01:8d:78fe"
HOP_SECRET = "f0e0d0c0b0a090807060504030201000"
OTHER_SERVICES = f"""
  - name: hop.svc.example.
    prefixes: [2001:db8:9::/64]
    slice: 72
    select: hop
    host: hop
    period: 30
    key: {K}
    secret-file: SECRET
    endpoints: [{{id: h1, address: "2001:db8:105::1"}}]
  - name: obj.svc.example.
    prefixes: [2001:db8:8::/64]
    slice: 76
    select: obj
    host: src
    key: {K}
    endpoints: [{{id: o1, address: "2001:db8:104::1"}}]
"""
HOSTS = "127.0.0.1 localhost\n::1 localhost\n2001:db8:aa:bb::77 legacy-files.test\n"


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def nsswitch(hosts_line):
    """The machine's nsswitch.conf with its hosts line replaced."""
    try:
        with open("/etc/nsswitch.conf") as f:
            lines = [x for x in f.read().splitlines() if not x.startswith("hosts:")]
    except OSError:
        lines = []
    return "\n".join(lines + [hosts_line]) + "\n"


def sanitizer_env(module):
    """An ASan-built module needs the ASan runtime first in the process (LD_PRELOAD): the
    programs under test are not instrumented. Leaks are checked (getent has none of its
    own); Python's runs turn that off (see Net.env_py)."""
    out = subprocess.run(["ldd", module], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "libasan" in line and "=>" in line:
            return {"LD_PRELOAD": line.split("=>")[1].split()[0],
                    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1:verify_asan_link_order=0"}
    return {}


def wait_until(what, fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


class Net:
    def __init__(self, tmp):
        tag = f"pkn{os.getpid() % 10000}{random.randrange(1000)}"
        self.cl, self.pod = tag + "-c", tag + "-p"
        self.tmp = tmp
        self.etc = f"/etc/netns/{self.cl}"
        self.procs = []
        self.libdir = tmp / "lib"
        self.conf = tmp / "nss.conf"
        self.env = {}
        self.env_py = {}

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
        ip("-n", self.pod, "-6", "route", "add", "local", "2001:db8:5::/64", "dev", "lo")
        os.makedirs(self.etc)
        self.write_etc("hosts: files peak dns", "nameserver ::1\noptions timeout:1 attempts:1\n")
        with open(os.path.join(self.etc, "hosts"), "w") as f:
            f.write(HOSTS)
        self.libdir.mkdir()
        shutil.copy(MODULE, self.libdir / "libnss_peak.so.2")
        self.conf.write_text("# the module's timeout, ms\ntimeout 500\n")
        self.env = dict(os.environ, LD_LIBRARY_PATH=str(self.libdir),
                        PEAK_NSS_CONF=str(self.conf), **sanitizer_env(MODULE))
        # the interpreter keeps memory to the end on purpose: its leaks are not the module's
        self.env_py = dict(self.env)
        if "ASAN_OPTIONS" in self.env_py:
            self.env_py["ASAN_OPTIONS"] = self.env_py["ASAN_OPTIONS"].replace(
                "detect_leaks=1", "detect_leaks=0")

    def write_etc(self, hosts_line, resolv):
        with open(os.path.join(self.etc, "nsswitch.conf"), "w") as f:
            f.write(nsswitch(hosts_line))
        with open(os.path.join(self.etc, "resolv.conf"), "w") as f:
            f.write(resolv)

    def run(self, *cmd, ns=None, module=True, **kw):
        """Runs cmd in the client namespace (its /etc in place), with the module found."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 30)
        if module:
            kw.setdefault("env", self.env)
        return subprocess.run(["ip", "netns", "exec", ns or self.cl, *cmd], **kw)

    def start(self, *cmd, ns=None, module=False):
        log = open(self.tmp / f"proc{len(self.procs)}.log", "w")
        p = subprocess.Popen(["ip", "netns", "exec", ns or self.cl, *cmd],
                             env=self.env if module else None, stdout=log,
                             stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(p)
        return p

    def listening(self, ns, port, udp=False):
        out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Hln", "-u" if udp else "-t",
                              f"sport = :{port}"], capture_output=True, text=True).stdout
        return bool(out.strip())

    def down(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for ns in (self.cl, self.pod):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.etc, ignore_errors=True)
        try:
            os.rmdir("/etc/netns")  # only if no one else uses it
        except OSError:
            pass


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("network and mount namespaces need root")
    n = Net(tmp_path_factory.mktemp("nss"))
    try:
        n.up()
        n.secret = n.tmp / "hop.secret"
        n.secret.write_text(HOP_SECRET + "\n")
        n.secret.chmod(0o600)
        n.config = n.tmp / "peak.yaml"
        n.config.write_text(BASE_CONFIG + OTHER_SERVICES.replace("SECRET", str(n.secret)))
        cfg = n.config
        dns = n.start(PEAK, "dns", "--config", str(cfg), "--listen", "[::1]:53")
        serve = n.start(PEAK, "serve", "--port", str(PORT), "--id", "pod-a", ns=n.pod)
        wait_until("peak dns", lambda: dns.poll() is not None or n.listening(n.cl, 53, True))
        wait_until("peak serve", lambda: serve.poll() is not None or n.listening(n.pod, PORT))
        assert dns.poll() is None and serve.poll() is None, "peak dns or peak serve exited"
        yield n
    finally:
        n.down()
