r"""PEAK over the overlay: a PEAK cluster (tests/integration/testbed.py: router R with BIRD, one
node with its agent, BIRD and the XDP filter on its uplink, two pods, peak dns, controller)
whose site runs `peak overlay` on a gateway host gk attached to the router, and a client site
with IPv4 only toward the outside, behind a NAT, whose hosts have IPv6 from the overlay prefix
fd00:c::/48 only. What test_peak_over_overlay.py and the demo (demo_overlay.py) share.

  hc fd00:c::2/64 (the client host; later also fd00:c:0:1::2, deprecated)
   | lan (IPv6 from the overlay prefix only; MTU 1500)
  gc fd00:c::1  `peak overlay` (site c), IPv6 default route into ov0
   | wan 192.0.2.2 (IPv4 only: IPv6 disabled on it)
  natc 192.0.2.1 | 198.51.100.2, 203.0.113.1 (nftables masquerade, nothing unsolicited in)
   |         \--- dn 203.0.113.2: dhtnode :4222 (dht mode)
  gk 198.51.100.1:51820 `peak overlay` (site k), fd00:c::/48 dev ov0, IPv6 forwarding,
   |                    TCP MSS of SYNs from ov0 clamped to 1340 (nftables)
   | clu 2001:db8:ff:a::2, default via R
  R 2001:db8:ff:a::1, fd00:c::/48 via gk  ---  node 1 (XDP filter on its uplink)  ---  pods
   \--- peak dns 2001:db8:ff:d::2

Two ways for the sites to know each other: `static` (gateway peers: gc's peer k serves
2001:db8:5::/64 and 2001:db8:ff:d::/64 at 198.51.100.1:51820; gk's peer c has fd00:c::/48
and no endpoint, learned from c's packets through the NAT) or `dht` (no peers: k's
certified DHT record carries the service prefix and the DNS server's prefix, c's
fd00:c::/48; both bootstrap from an independent dhtnode on dn).

Every namespace name starts with the bed's tag and the PID; cleanup() stops every process it
started (by PID) and removes them all, also after a failure."""
import os
import pathlib
import re
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "integration"))
import dhtnodes  # noqa: E402
import testbed  # noqa: E402
from ovbed import PEAK, Bed, nsx, sh, wait_for  # noqa: E402
from test_overlay_dht import DHT_PORT, NETWORK  # noqa: E402

FILTER_OBJ = os.environ.get("FILTER_OBJ", os.path.join(os.path.dirname(PEAK), "filter.bpf.o"))
PORT = 51820
CLIENT = "fd00:c::2"       # the client host's overlay address, the one it uses
OTHER = "fd00:c:0:1::2"    # another address of the client site (the wrong-source check)
SERVICE_PREFIXES = [testbed.PREFIX, "2001:db8:ff:d::/64"]  # the service and its DNS server
AGENT_METRICS = "[::1]:9110"
MSS_CLAMP = ("table inet peak-overlay {\n chain forward {\n"
             "  type filter hook forward priority mangle;\n"
             '  iifname "ov0" tcp flags syn tcp option maxseg size > 1340 '
             "tcp option maxseg size set 1340\n }\n}\n")
DESCRIPTOR = (f"v=ssa1; slice=78; select=src; host=src; fanout=1; key={testbed.KEY}")


class PeakOverlayBed(Bed):
    def __init__(self, tmp, tag, mode="static"):
        super().__init__(pathlib.Path(tmp), tag)
        assert mode in ("static", "dht")
        self.mode, self.dhtnode = mode, None
        self.tb = testbed.Testbed(f"{self.p}k", str(self.tmp), PEAK, nodes=1, pods=2,
                                  filter_obj=FILTER_OBJ, agent_args=["--metrics", AGENT_METRICS])

    def build(self):
        """The cluster (started, not yet converged), the two sites and their daemons."""
        self.tb.up()
        for n in ("gk", "natc", "gc", "hc", "dn"):
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
        self.veth("natc", "ndn", "dn", "eth0")
        ipb = {
            "gk": ["addr add 2001:db8:ff:a::2/64 dev clu nodad", "link set clu up",
                   "route add default via 2001:db8:ff:a::1",
                   "addr add 198.51.100.1/24 dev wan",
                   "route add 203.0.113.0/24 via 198.51.100.2"],
            "natc": ["addr add 198.51.100.2/24 dev nout", "addr add 192.0.2.1/24 dev nin",
                     "addr add 203.0.113.1/24 dev ndn"],
            "dn": ["addr add 203.0.113.2/24 dev eth0", "route add default via 203.0.113.1"],
            "gc": ["addr add 192.0.2.2/24 dev wan", "route add default via 192.0.2.1",
                   "addr add fd00:c::1/64 dev lan nodad",
                   "addr add fd00:c:0:1::1/64 dev lan nodad"],
            "hc": [f"addr add {CLIENT}/64 dev lan nodad", "route add default via fd00:c::1"],
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
                         '  ip saddr 192.0.2.0/24 oifname != "nin" masquerade\n }\n}\n'
                         "table ip filter {\n chain input {\n"
                         "  type filter hook input priority 0;\n"
                         '  iifname != "nin" ct state new drop\n }\n}\n')
        nsx(self.n("natc"), "nft", "-f", str(rules))
        # the pods take their MSS from the client's SYN: clamped to what the overlay's MTU
        # carries (1400 - 40 - 20), since the gateway host's ICMPv6 packet too big to a
        # service address would meet the node's filter, which drops it (its source follows
        # no rule), and path MTU discovery would fail
        nsx(self.n("gk"), "nft", "-f", "-", input=MSS_CLAMP)
        pub, site = {}, {}
        for s in ("k", "c"):
            key = self.tmp / f"{s}.key"
            sh(PEAK, "overlay", "--genkey", str(key))
            pub[s] = sh(PEAK, "overlay", "--pubkey", str(key)).stdout.strip()
            site[s] = sh(PEAK, "overlay", "--site-id", str(key)).stdout.strip()
        self.ids = {s: site[s][:8] for s in site}  # names learned peers: dht-<id>
        head = ("tun: ov0\naddress: {addr}\nicmp-rate: 100\ngateway:\n"
                "  listen: 0.0.0.0:{port}\n  private-key-file: {key}\n  keepalive: 1\n")
        own = {"k": SERVICE_PREFIXES, "c": ["fd00:c::/48"]}
        addr = {"k": "2001:db8:ff:a::2", "c": "fd00:c::1"}
        locator = {"k": "198.51.100.1", "c": "192.0.2.2"}
        if self.mode == "dht":
            auth = self.tmp / "auth.key"
            sh(PEAK, "overlay", "--genkey", str(auth))
            auth_pub = sh(PEAK, "overlay", "--authority-pub", str(auth)).stdout.strip()
        for s, o in (("k", "c"), ("c", "k")):
            text = head.format(addr=addr[s], port=PORT, key=self.tmp / f"{s}.key")
            if self.mode == "static":
                text += (f"  peers:\n    - name: {o}\n      public-key: {pub[o]}\n"
                         f"      prefixes: [{', '.join(own[o])}]\n")
                if o == "k":  # c is behind its NAT: k learns its mapping from its packets
                    text += f"      endpoint: {locator[o]}:{PORT}\n"
            else:
                pfx = [a for p in own[s] for a in ("--prefix", p)]
                cert = sh(PEAK, "overlay", "--certify", str(auth), "--site", site[s],
                          *pfx).stdout.strip()
                text += (f"dht:\n  port: {DHT_PORT}\n  network: {NETWORK}\n"
                         f"  bootstrap: [203.0.113.2:{DHT_PORT}]\n  authority: {auth_pub}\n"
                         f"  certificate: {cert}\n  prefixes: [{', '.join(own[s])}]\n"
                         f"  locator: {locator[s]}:{PORT}\n")
            (self.tmp / f"{s}.yaml").write_text(text)
        if self.mode == "dht":
            self.dhtnode = dhtnodes.start(self.n("dn"), DHT_PORT, NETWORK)
        for s in ("k", "c"):
            self.start(s, route=False)
        sh("ip", "-n", self.n("gk"), "-6", "route", "add", "fd00:c::/48", "dev", "ov0")
        # the client site has no other IPv6 path: everything not its own goes to the overlay
        sh("ip", "-n", self.n("gc"), "-6", "route", "add", "default", "dev", "ov0")

    def peer(self, s):
        """The name site s's peer has at the other gateway (its peers' metrics label)."""
        return s if self.mode == "static" else f"dht-{self.ids[s]}"

    def wait_ready(self, timeout=30):
        """The router learned every slice by BGP, peak dns serves the service (asked from the
        cluster's client network) and the agent attached the filter; static:
        gk learned c's NAT mapping from c's keepalives; dht: both records are in the DHT and
        the client host's first packets to the DNS server got through (DHT lookups, k
        learning c's mapping). Returns the seconds that first answer took (dht) or 0."""
        wait_for("the router's slice routes", self.tb.converged, timeout)
        # peak dns has the service's records once the controller gave them: asked natively
        # from the cluster's own client network, not over the overlay
        wait_for("peak dns serving the service", lambda: nsx(
            f"{self.tb.tag}-c", PEAK, "resolve", testbed.SERVICE, "--server",
            f"[{testbed.DNS_ADDR}]:53", "--timeout", "300", check=False).returncode == 0,
            timeout)
        wait_for("the XDP filter", lambda: self.tb.wait_log(
            "agent-n1.log", "XDP filter attached to uplink", 0.1), timeout)
        if self.mode == "static":
            wait_for("gk to learn c's mapping", lambda: self.metrics("k").get(
                'peak_overlay_peer_endpoint_known{peer="c"}') == 1, timeout)
            return 0
        for s in ("k", "c"):
            wait_for(f"g{s}'s record in the DHT", lambda: self.metrics(s).get(
                'peak_overlay_dht_puts_total{result="ok"}', 0) > 0, timeout)
        t = time.monotonic()
        wait_for("a first answer from peak dns's host over the overlay", lambda: self.client(
            "ping", "-6", "-n", "-c", "1", "-W", "1", testbed.DNS_ADDR).returncode == 0,
            timeout, every=0)
        return time.monotonic() - t

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

    def echo(self, dst, lines=100):
        """Sends `lines` lines to peak serve at [dst]:8080 from the client host in one write
        and counts the lines of its answer (each 'ID DESTINATION SOURCE'), which spans
        several full-sized TCP segments; the answers naming CLIENT as the source."""
        code = ("import socket, sys\n"
                "s = socket.create_connection((sys.argv[1], 8080), timeout=5)\n"
                "n = int(sys.argv[2]); s.sendall(b'x\\n' * n); got = b''\n"
                "try:\n"
                "    while got.count(b'\\n') < n:\n"
                "        d = s.recv(65536)\n"
                "        if not d: break\n"
                "        got += d\n"
                "except socket.timeout:\n"
                "    pass\n"
                "sys.stdout.write(got.decode())\n")
        out = self.client("python3", "-c", code, dst, str(lines), timeout=30).stdout
        return sum(1 for ln in out.splitlines() if ln.split()[-1:] == [CLIENT])

    def cleanup(self):
        try:
            for s in list(self.procs):
                self.stop(s)
            if self.dhtnode:
                dhtnodes.stop(self.dhtnode)
            super().cleanup()
        finally:
            self.tb.down()
