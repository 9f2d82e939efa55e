"""PEAK over the overlay: a PEAK cluster (tests/integration/testbed.py: router R with BIRD, one
node with its agent, BIRD and the XDP filter on its uplink, two pods, peak dns, controller)
whose site runs `peak overlay` on a gateway host gk attached to the router, and a client site
with IPv4 only toward the outside, behind a NAT, whose hosts have IPv6 from the overlay prefix
fd00:c::/48 only. What test_peak_over_overlay.py and the demo (demo_overlay.py) share.

  hc fd00:c::2/64 (the client host; later also fd00:c:0:1::2, deprecated)
   | lan (IPv6 from the overlay prefix only, default route mtu 1400)
  gc fd00:c::1  `peak overlay` (site c; its peer k serves 2001:db8:5::/64 and
   |               2001:db8:ff:d::/64, routed into ov0)
   | wan 192.0.2.2 (IPv4 only: IPv6 disabled on it)
  natc 192.0.2.1 | 198.51.100.2 (nftables masquerade, nothing unsolicited in)
   |
  gk 198.51.100.1:51820 `peak overlay` (site k; its peer c: fd00:c::/48, no endpoint: learned)
   | clu 2001:db8:ff:a::2, default via R; fd00:c::/48 dev ov0; IPv6 forwarding
  R 2001:db8:ff:a::1, fd00:c::/48 via gk  ---  node 1 (XDP filter on its uplink)  ---  pods
   \\--- peak dns 2001:db8:ff:d::2

Every namespace name starts with the bed's tag and the PID; cleanup() stops every process it
started (by PID) and removes them all, also after a failure."""
import os
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "integration"))
import testbed  # noqa: E402
from ovbed import PEAK, Bed, nsx, sh, wait_for  # noqa: E402

FILTER_OBJ = os.environ.get("FILTER_OBJ", os.path.join(os.path.dirname(PEAK), "filter.bpf.o"))
PORT = 51820
CLIENT = "fd00:c::2"       # the client host's overlay address, the one it uses
OTHER = "fd00:c:0:1::2"    # another address of the client site (the wrong-source check)
SERVICE_PREFIXES = [testbed.PREFIX, "2001:db8:ff:d::/64"]  # the service and its DNS server
AGENT_METRICS = "[::1]:9110"
DESCRIPTOR = (f"v=ssa1; slice=78; select=src; host=src; fanout=1; key={testbed.KEY}")


class PeakOverlayBed(Bed):
    def __init__(self, tmp, tag):
        super().__init__(pathlib.Path(tmp), tag)
        self.tb = testbed.Testbed(f"{self.p}k", str(self.tmp), PEAK, nodes=1, pods=2,
                                  filter_obj=FILTER_OBJ, agent_args=["--metrics", AGENT_METRICS])

    def build(self):
        """The cluster (started, not yet converged), the two sites and their daemons."""
        self.tb.up()
        for n in ("gk", "natc", "gc", "hc"):
            self.add_ns(n)
        r = self.tb.r()
        # the cluster's gateway host on the cluster network
        sh("ip", "-n", r, "link", "add", "to-ovgw", "type", "veth", "peer", "name", "clu",
           "netns", self.n("gk"))
        sh("ip", "-n", r, "addr", "add", "2001:db8:ff:a::1/64", "dev", "to-ovgw", "nodad")
        sh("ip", "-n", r, "link", "set", "to-ovgw", "up")
        sh("ip", "-n", r, "-6", "route", "add", "fd00:c::/48", "via", "2001:db8:ff:a::2")
        self.veth("gk", "wan", "natc", "nout")
        self.veth("natc", "nin", "gc", "wan")
        self.veth("gc", "lan", "hc", "lan")
        ipb = {
            "gk": ["addr add 2001:db8:ff:a::2/64 dev clu nodad", "link set clu up",
                   "route add default via 2001:db8:ff:a::1",
                   "addr add 198.51.100.1/24 dev wan"],
            "natc": ["addr add 198.51.100.2/24 dev nout", "addr add 192.0.2.1/24 dev nin"],
            "gc": ["addr add 192.0.2.2/24 dev wan", "route add default via 192.0.2.1",
                   "addr add fd00:c::1/64 dev lan nodad",
                   "addr add fd00:c:0:1::1/64 dev lan nodad"],
            "hc": [f"addr add {CLIENT}/64 dev lan nodad",
                   # the overlay's MTU, so that the pods' segments fit it (their MSS comes
                   # from the client's SYN)
                   "route add default via fd00:c::1 mtu 1400"],
        }
        for n, lines in ipb.items():
            sh("ip", "-n", self.n(n), "-batch", "-", input="\n".join(lines) + "\n")
        nsx(self.n("gk"), "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        nsx(self.n("gc"), "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1",
            "net.ipv6.conf.wan.disable_ipv6=1")
        nsx(self.n("natc"), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        rules = self.tmp / "natc.nft"
        rules.write_text("table ip nat {\n chain post {\n"
                         "  type nat hook postrouting priority 100;\n"
                         '  oifname "nout" masquerade\n }\n}\n'
                         "table ip filter {\n chain input {\n"
                         "  type filter hook input priority 0;\n"
                         '  iifname "nout" ct state new drop\n }\n}\n')
        nsx(self.n("natc"), "nft", "-f", str(rules))
        pub = {}
        for s in ("k", "c"):
            key = self.tmp / f"{s}.key"
            sh(PEAK, "overlay", "--genkey", str(key))
            pub[s] = sh(PEAK, "overlay", "--pubkey", str(key)).stdout.strip()
        common = "icmp-rate: 100\ngateway:\n  listen: 0.0.0.0:{port}\n  private-key-file: {key}\n" \
                 "  keepalive: 1\n  peers:\n"
        (self.tmp / "k.yaml").write_text(
            "tun: ov0\naddress: 2001:db8:ff:a::2\n"
            + common.format(port=PORT, key=self.tmp / "k.key")
            + f"    - name: c\n      public-key: {pub['c']}\n      prefixes: [fd00:c::/48]\n")
        (self.tmp / "c.yaml").write_text(
            "tun: ov0\naddress: fd00:c::1\n"
            + common.format(port=PORT, key=self.tmp / "c.key")
            + f"    - name: k\n      public-key: {pub['k']}\n"
            f"      endpoint: 198.51.100.1:{PORT}\n"
            f"      prefixes: [{', '.join(SERVICE_PREFIXES)}]\n")
        for s in ("k", "c"):
            self.start(s, route=False)
        sh("ip", "-n", self.n("gk"), "-6", "route", "add", "fd00:c::/48", "dev", "ov0")
        for p in SERVICE_PREFIXES:
            sh("ip", "-n", self.n("gc"), "-6", "route", "add", p, "dev", "ov0")

    def wait_ready(self, timeout=30):
        """The router learned every slice by BGP, the agent attached the filter, and gk
        learned c's NAT mapping from c's keepalives."""
        wait_for("the router's slice routes", self.tb.converged, timeout)
        wait_for("the XDP filter", lambda: self.tb.wait_log(
            "agent-n1.log", "XDP filter attached to uplink", 0.1), timeout)
        wait_for("gk to learn c's mapping", lambda: self.metrics("k").get(
            'peak_overlay_peer_endpoint_known{peer="c"}') == 1, timeout)

    def agent_metrics(self):
        out = nsx(self.tb.node(1), "curl", "-sf", f"http://{AGENT_METRICS}/metrics",
                  check=False).stdout
        return {k: float(v) for k, _, v in (ln.rpartition(" ") for ln in out.splitlines()
                                             if ln and not ln.startswith("#"))}

    def filter_counts(self):
        """(passed, rejected) packets of the node's XDP filter so far."""
        m = self.agent_metrics()

        def v(*names):
            return sum(m.get(f'peak_agent_filter_packets_total{{verdict="{n}"}}', 0)
                       for n in names)
        return (v("known_good", "assumed_good", "possibly_bad"),
                v("reject_slice", "reject_host", "reject_fanout", "reject_pow"))

    def client(self, *args, **kw):
        return nsx(self.n("hc"), *args, check=False, **kw)

    def resolve(self):
        """`peak resolve` in the client host against peak dns over the overlay:
        (destination, source) or None."""
        r = self.client(PEAK, "resolve", testbed.SERVICE, "--server",
                        f"[{testbed.DNS_ADDR}]:53", timeout=30)
        m = re.match(r"(\S+) from (\S+)", r.stdout)
        return (m.group(1), m.group(2)) if r.returncode == 0 and m else None

    def connect(self):
        """`peak connect` (resolve, compute, connect) and one HTTP request: the serve
        headers {Endpoint, Destination, Source}, or {} with 'error'."""
        req = "GET / HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n"
        r = self.client(PEAK, "connect", testbed.SERVICE, str(testbed.PORT), "--server",
                        f"[{testbed.DNS_ADDR}]:53", input=req, timeout=30)
        h = dict(re.findall(r"X-Peak-(\w+): (\S+)", r.stdout))
        if not h:
            h["error"] = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        return h

    def rule(self, src):
        """The address the service's rule gives source src (computed here, not over DNS)."""
        return sh(PEAK, "ssa", "compute", "--prefix", testbed.PREFIX, "--descriptor",
                  DESCRIPTOR, "--source", src).stdout.strip()

    def add_other(self):
        """Gives the client host its second address, deprecated so that nothing picks it as
        a source unless asked to (curl --interface)."""
        sh("ip", "-n", self.n("hc"), "addr", "add", f"{OTHER}/64", "dev", "lan", "nodad",
           "preferred_lft", "0")

    def http(self, src, dst, wait=3):
        """One HTTP GET from src to [dst]:8080 in the client host: the serve headers or {}."""
        r = self.client("curl", "-si", "--max-time", str(wait), "--interface", src,
                        f"http://[{dst}]:{testbed.PORT}/")
        return dict(re.findall(r"X-Peak-(\w+): (\S+)", r.stdout)) if r.returncode == 0 else {}

    def cleanup(self):
        try:
            super().cleanup()
        finally:
            self.tb.down()
