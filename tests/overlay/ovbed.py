"""What the overlay's namespace tests share: commands run in namespaces, waits bounded by a
deadline, and the bed itself: namespaces (removed by name at the end), veth links, one
`peak overlay` per gateway namespace g<site> with its metrics and management socket."""
import os
import signal
import subprocess
import time

import pytest

PEAK = os.environ.get("PEAK_BIN", "build/peak")


def sh(*args, check=True, **kw):
    return subprocess.run(args, check=check, capture_output=True, text=True, **kw)


def nsx(ns, *args, check=True, **kw):
    return sh("ip", "netns", "exec", ns, *args, check=check, **kw)


def wait_for(what, fn, timeout=15.0, every=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(every)


def move_address(ns, dev, old, new, bounce=False):
    """Moves namespace ns's IPv4 address on dev from old to new (both /24; the default route
    through the new subnet's .1 put back), as a reconnecting router or a roaming host does;
    bounce: the link goes down and up around it (the kernel forgets its masquerade mappings).
    Then ns's connection tracking is flushed: entries a masquerade does not own (a
    port-forward's, a filter's) would outlive the old address and hold tuples the site's new
    packets need."""
    via = new.rsplit(".", 1)[0] + ".1"
    cmds = [f"addr del {old}/24 dev {dev}", f"addr add {new}/24 dev {dev}"]
    if bounce:
        cmds = [f"link set {dev} down"] + cmds + [f"link set {dev} up"]
    cmds.append(f"route add default via {via}")
    sh("ip", "-n", ns, "-batch", "-", input="\n".join(cmds) + "\n")
    nsx(ns, "conntrack", "-F")


class Bed:
    """Namespaces named tag + pid + name; site s's daemon runs in g<s> on tmp/<s>.yaml."""

    def __init__(self, tmp, tag):
        self.tmp = tmp
        self.p = f"{tag}{os.getpid() % 10000}"
        self.ns = {}
        self.procs = {}
        self.logs = {}

    def n(self, name):
        return self.ns[name]

    def add_ns(self, name):
        full = self.p + name
        sh("ip", "netns", "add", full)
        self.ns[name] = full
        nsx(full, "ip", "link", "set", "lo", "up")

    def veth(self, a, ia, b, ib):
        sh("ip", "-n", self.n(a), "link", "add", ia, "type", "veth", "peer", "name", ib,
           "netns", self.n(b))
        sh("ip", "-n", self.n(a), "link", "set", "dev", ia, "up")
        sh("ip", "-n", self.n(b), "link", "set", "dev", ib, "up")

    def site_lan(self, s):
        """Site s's LAN: host h<s> (fd00:<s>::2/64, default route via the gateway) linked to
        gateway g<s> (fd00:<s>::1/64, forwarding IPv6), both namespaces made already."""
        h, g = f"h{s}", f"g{s}"
        self.veth(h, "lan", g, "lan")
        sh("ip", "-n", self.n(h), "addr", "add", f"fd00:{s}::2/64", "dev", "lan", "nodad")
        sh("ip", "-n", self.n(h), "-6", "route", "add", "default", "via", f"fd00:{s}::1")
        sh("ip", "-n", self.n(g), "addr", "add", f"fd00:{s}::1/64", "dev", "lan", "nodad")
        nsx(self.n(g), "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")

    def dn_uplink(self, net):
        """The DHT node's namespace dn (made already) on router r: net.2/24 (net: the first
        three bytes of an IPv4 address), r at net.1, its default route."""
        self.veth("dn", "eth0", "r", "rdn")
        sh("ip", "-n", self.n("r"), "addr", "add", f"{net}.1/24", "dev", "rdn")
        sh("ip", "-n", self.n("dn"), "addr", "add", f"{net}.2/24", "dev", "eth0")
        sh("ip", "-n", self.n("dn"), "route", "add", "default", "via", f"{net}.1")

    def spawn(self, s):
        """Starts site s's daemon (see ready)."""
        log = self.tmp / f"g{s}.log"
        self.logs[s] = log
        self.procs[s] = subprocess.Popen(
            ["ip", "netns", "exec", self.n(f"g{s}"), PEAK, "overlay", "--config",
             str(self.tmp / f"{s}.yaml"), "--metrics", "127.0.0.1:9100", "--verbose",
             "--control", str(self.tmp / f"{s}.sock")],
            stdout=subprocess.DEVNULL, stderr=open(log, "w"))

    def ready(self, s, route=True, timeout=15.0):
        """Waits until site s's daemon is ready and (route) sends fd00::/16 from its gateway
        namespace into the overlay."""
        log = self.logs[s]
        wait_for(f"g{s} ready", lambda: "overlay: ready" in log.read_text()
                 or self.procs[s].poll() is not None, timeout=timeout)
        assert self.procs[s].poll() is None, log.read_text()
        if route:
            sh("ip", "-n", self.n(f"g{s}"), "-6", "route", "add", "fd00::/16", "dev", "ov0")

    def start(self, s, route=True):
        """Starts site s's daemon and waits until it is ready (spawn, then ready)."""
        self.spawn(s)
        self.ready(s, route)

    def ping_ok(self, src, dst):
        """One ping from host h<src> to fd00:<dst>::2 answered within a second."""
        return nsx(self.n(f"h{src}"), "ping", "-6", "-n", "-c", "1", "-W", "1",
                   f"fd00:{dst}::2", check=False).returncode == 0

    def ctl(self, s, *args):
        return sh(PEAK, "overlay-ctl", "--control", str(self.tmp / f"{s}.sock"), *args,
                  check=False)

    def metrics(self, s):
        out = nsx(self.n(f"g{s}"), "curl", "-sf", "http://127.0.0.1:9100/metrics",
                  check=False).stdout
        m = {}
        for line in out.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                m[k] = float(v)
        return m

    def stop(self, s):
        p = self.procs.pop(s)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return None

    def cleanup(self):
        for s in list(self.procs):
            self.stop(s)
        # every namespace in one ip process (one each takes seconds on a loaded machine);
        # -force goes on past one already gone
        sh("ip", "-force", "-batch", "-", check=False,
           input="".join(f"netns del {full}\n" for full in self.ns.values()))
