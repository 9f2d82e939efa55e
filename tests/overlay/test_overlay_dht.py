"""The DHT slave end to end in network namespaces (root): three sites whose gateways know no
peer at all publish their prefixes on OpenDHT (our own nodes in the gateways plus an
independent `dhtnode`, which the others bootstrap through) and find each other there. B is
public; A and C sit behind home-router NATs (port-preserving masquerade, unsolicited packets
from outside dropped) and know only their private addresses.

- A and C reach B (A by the binary search, C by the zero-the-last-set-bit walk); B finds
  them back by their sender ids (holding their first packets meanwhile); B's mapping
  keepalives tell each its public address, which it republishes in the DHT.
- A finds C's public mapping, sends to it and puts its record under C's id key; C, listening
  there, sends to A at the same time: both NATs open (hole punching), and the hosts behind
  A and C ping and exchange UDP directly.
- A rogue site M certified by another authority claims B's prefix, and garbage is put under
  B's key through dhtnode: both are refused and counted, and B's prefix stays B's.
- A destination nobody registered gets ICMPv6 no route, and the miss is remembered.
- C's mappings expire after its cache-ttl (5 s) and are looked up again.

    hA fd00:a::2          hB fd00:b::2          hC fd00:c::2
      | lan                 | lan                 | lan
    gA 192.168.1.2        gB 10.0.2.2           gC 192.168.3.2 (walk)    gM 10.0.4.2 (rogue)
      |                     |                     |                        |
    natA 10.0.1.2           |                   natC 10.0.3.2              |
      +-------------------------------- r ---------------------------------+
                                        | 10.0.9.1
                                       dn 10.0.9.2: dhtnode :4222 (a namespace of its own:
                                          bound to 0.0.0.0 on the multihomed router, it
                                          would answer from another address than NATs expect)
"""
import hashlib
import ipaddress
import os
import re
import subprocess
import sys

import dhtnodes
import pytest
from ovbed import PEAK, Bed, nsx, sh, wait_for

PORT = 51820
DHT_PORT = 4222
NETWORK = 4711
SITES = ("a", "b", "c", "m")
HOSTS = ("a", "b", "c")
NATED = ("a", "c")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


def prefix_key(prefix):
    """The DHT key (an InfoHash, hex) of a prefix, as src/overlay/dhtrec.h defines it."""
    net = ipaddress.IPv6Network(prefix)
    raw = b"peak-ov1" + b"p" + bytes([net.prefixlen]) + net.network_address.packed
    return hashlib.sha1(raw).hexdigest()


class DhtBed(Bed):
    def __init__(self, tmp):
        super().__init__(tmp, "d")
        self.dhtnode = None

    def peak(self, *args):
        return sh(PEAK, "overlay", *args).stdout.strip()

    def build(self):
        for name in (["r", "dn"] + [f"h{s}" for s in HOSTS] + [f"g{s}" for s in SITES]
                     + [f"nat{s}" for s in NATED]):
            self.add_ns(name)
        nsx(self.n("r"), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.dn_uplink("10.0.9")
        for i, s in enumerate(SITES, 1):
            g = f"g{s}"
            if s in HOSTS:
                self.site_lan(s)
            if s in NATED:
                nat = f"nat{s}"
                nsx(self.n(nat), "sysctl", "-qw", "net.ipv4.ip_forward=1")
                self.veth(g, "wan", nat, "nin")
                sh("ip", "-n", self.n(nat), "addr", "add", f"192.168.{i}.1/24", "dev", "nin")
                sh("ip", "-n", self.n(g), "addr", "add", f"192.168.{i}.2/24", "dev", "wan")
                sh("ip", "-n", self.n(g), "route", "add", "default", "via", f"192.168.{i}.1")
                self.veth(nat, "nout", "r", "r" + s)
                sh("ip", "-n", self.n(nat), "addr", "add", f"10.0.{i}.2/24", "dev", "nout")
                sh("ip", "-n", self.n(nat), "route", "add", "default", "via", f"10.0.{i}.1")
                # unsolicited packets are dropped before conntrack confirms them: an
                # accepted one would hold the tuple the gateway's own packets need next,
                # and masquerade would move their port
                nsx(self.n(nat), "nft", "-f", "-", input=(
                    "table ip nat {\n chain post {\n"
                    "  type nat hook postrouting priority 100;\n"
                    '  oifname "nout" masquerade\n }\n}\n'
                    "table ip filter {\n chain input {\n"
                    "  type filter hook input priority 0;\n"
                    '  iifname "nout" ct state new drop\n }\n}\n'))
            else:
                self.veth(g, "wan", "r", "r" + s)
                sh("ip", "-n", self.n(g), "addr", "add", f"10.0.{i}.2/24", "dev", "wan")
                sh("ip", "-n", self.n(g), "route", "add", "default", "via", f"10.0.{i}.1")
            sh("ip", "-n", self.n("r"), "addr", "add", f"10.0.{i}.1/24", "dev", "r" + s)
        auth, rogue = self.tmp / "auth.key", self.tmp / "rogue.key"
        self.peak("--genkey", str(auth))
        self.peak("--genkey", str(rogue))
        auth_pub = self.peak("--authority-pub", str(auth))
        rogue_pub = self.peak("--authority-pub", str(rogue))
        self.pubs = {}
        for i, s in enumerate(SITES, 1):
            key = self.tmp / f"{s}.key"
            self.peak("--genkey", str(key))
            site_id = self.peak("--site-id", str(key))
            self.pubs[s] = site_id[:64]  # the X25519 key, then the Ed25519 one
            # the rogue claims B's prefix, certified by an authority nobody else trusts
            prefix = "fd00:b::/64" if s == "m" else f"fd00:{s}::/64"
            cert = self.peak("--certify", str(rogue if s == "m" else auth), "--site", site_id,
                             "--prefix", prefix)
            locator = f"192.168.{i}.2" if s in NATED else f"10.0.{i}.2"
            (self.tmp / f"{s}.yaml").write_text(
                f"tun: ov0\naddress: fd00:{'e' if s == 'm' else s}::1\nicmp-rate: 100\n"
                f"gateway:\n  listen: 0.0.0.0:{PORT}\n  private-key-file: {key}\n"
                f"  keepalive: 1\n"
                f"dht:\n  port: {DHT_PORT}\n  network: {NETWORK}\n"
                f"  bootstrap: [10.0.9.2:{DHT_PORT}]\n"
                f"  authority: {rogue_pub if s == 'm' else auth_pub}\n"
                f"  certificate: {cert}\n  prefixes: [{prefix}]\n"
                f"  locator: {locator}:{PORT}\n"
                f"  lookup: {'walk' if s == 'c' else 'bsearch'}\n  negative-ttl: 2\n"
                + ("  cache-ttl: 5\n" if s == "c" else ""))

    def start_dhtnode(self):
        """An independent OpenDHT node (Debian's dhtnode) in dn."""
        self.dhtnode = dhtnodes.start(self.n("dn"), DHT_PORT, NETWORK, answers=True)

    def cleanup(self):
        for s in list(self.procs):
            self.stop(s)
        if self.dhtnode:
            dhtnodes.stop(self.dhtnode)
        super().cleanup()


@pytest.fixture
def bed(tmp_path):
    b = DhtBed(tmp_path)
    try:
        b.build()
        b.start_dhtnode()
        for s in SITES:
            b.start(s, route=s in HOSTS)
        yield b
    finally:
        b.cleanup()


UDP_ECHO = r"""
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", 5002)); s.settimeout(60)
print("listening", flush=True)
d, a = s.recvfrom(2048); s.sendto(d[::-1], a)
"""

UDP_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.settimeout(0.5)
for _ in range(100):  # (50 s: for the look-ups of a loaded machine's ASan daemons)
    s.sendto(b"over the dht", (sys.argv[1], 5002))
    try:
        print(s.recvfrom(2048)[0].decode()); break
    except socket.timeout:
        pass
"""


def test_sites_find_each_other_through_opendht(bed):
    b = bed
    for s in SITES:  # every site's records are out (acknowledged by some node)
        wait_for(f"g{s} published",
                 lambda: b.metrics(s).get('peak_overlay_dht_puts_total{result="ok"}', 0) > 0)
    # garbage under B's prefix key, put through the independent node
    # (stored before anyone looks B up: A's lookup, which ends at B's record, must meet it)
    dhtnodes.put(b.dhtnode, prefix_key('fd00:b::/64'), "this-is-not-a-record")

    # A and C find B; B finds them back by id and tells each its public mapping
    for s in NATED:
        wait_for(f"h{s} -> hb", lambda: b.ping_ok(s, "b"), timeout=15)
        assert b.ping_ok("b", s)
        wait_for(f"g{s} learns its mapping",
                 lambda: b.metrics(s).get("peak_overlay_gw_mapping_changes_total", 0) >= 1)
        i = SITES.index(s) + 1
        assert re.search(rf"peer \S+ sees us at 10\.0\.{i}\.2:\d+", b.logs[s].read_text())
        wait_for(f"g{s} republishes with its mapping",
                 lambda: b.metrics(s).get("peak_overlay_dht_locators") == 2)
    ma, mb, mc = b.metrics("a"), b.metrics("b"), b.metrics("c")
    assert ma['peak_overlay_dht_lookups_total{result="found"}'] >= 1  # binary search
    assert mc['peak_overlay_dht_lookups_total{result="found"}'] >= 1  # the walk
    # B learns the NATed sites by looking their ids up when their first packet comes, or
    # from the punch record each puts on B's id key, whichever is first (a run saw no id
    # lookup: the records came first)
    assert mb["peak_overlay_dht_id_lookups_total"] + mb["peak_overlay_dht_punch_heard_total"] >= 1
    assert mb["peak_overlay_gw_held_packets_total"] >= 1  # first packets kept, not lost
    # the rogue's record and the garbage were refused, and B's prefix is B's (a get's refusals
    # are counted when the get ends, which may come after the hit that answered the lookup)
    for reason in ("certificate", "malformed"):
        key = f'peak_overlay_dht_values_refused_total{{reason="{reason}"}}'
        wait_for(f"gA's refusals ({reason})", lambda: b.metrics("a").get(key, 0) >= 1,
                 timeout=30)
    assert "refused" in b.logs["a"].read_text()
    r = b.ctl("a", "show", "routes")
    assert r.returncode == 0, r
    assert f"fd00:b::/64 gateway dht-{b.pubs['b'][:8]}\n" in r.stdout, r.stdout
    assert "::/0 dht lookup\n" in r.stdout
    assert re.search(r"^dht-route fd00:b::/64 ttl-s \d+$", b.ctl("a", "show", "peers").stdout,
                     re.M)
    assert b.metrics("m").get("peak_overlay_gw_rx_packets_total", 0) == 0  # never sent to

    # A and C, both behind NAT: A finds C's mapping and punches; C hears it and sends too
    wait_for("ha -> hc through both NATs", lambda: b.ping_ok("a", "c"), timeout=20)
    assert b.ping_ok("c", "a")
    assert b.metrics("a")["peak_overlay_dht_punch_puts_total"] >= 1
    assert b.metrics("c")["peak_overlay_dht_punch_heard_total"] >= 1
    # direct: each sees the other at its NAT's public address, not through B
    peers = b.ctl("c", "show", "peers").stdout
    assert re.search(rf"^peer dht-{b.pubs['a'][:8]} 10\.0\.1\.2:\d+ ", peers, re.M), peers
    peers = b.ctl("a", "show", "peers").stdout
    assert re.search(rf"^peer dht-{b.pubs['c'][:8]} 10\.0\.3\.2:\d+ ", peers, re.M), peers
    # and UDP from A to C across both NATs
    srv = subprocess.Popen(["ip", "netns", "exec", b.n("hc"), sys.executable, "-c", UDP_ECHO],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "listening"
        out = nsx(b.n("ha"), sys.executable, "-c", UDP_CLIENT, "fd00:c::2", timeout=90).stdout
        assert out.strip() == "thd eht revo"
        assert srv.wait(timeout=30) == 0
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()

    # nobody registered fd00:d::/64: the lookup misses, ICMPv6 no route, remembered (ping
    # ends at the ICMPv6 error: -W is a deadline for a look-up that never ends)
    r = nsx(b.n("ha"), "ping", "-6", "-n", "-c", "1", "-W", "20", "fd00:d::1", check=False)
    assert r.returncode != 0 and "nreachable" in r.stdout, r.stdout
    wait_for("miss counted",
             lambda: b.metrics("a").get('peak_overlay_dht_lookups_total{result="miss"}', 0) >= 1)
    r = nsx(b.n("ha"), "ping", "-6", "-n", "-c", "1", "-W", "20", "fd00:d::1", check=False)
    assert "nreachable" in r.stdout, r.stdout
    assert b.metrics("a")["peak_overlay_dht_negative_hits_total"] >= 1

    # C keeps what it found 5 s: then the route goes, and the next packet looks it up again
    found = b.metrics("c")['peak_overlay_dht_lookups_total{result="found"}']
    wait_for("a route of C expires",
             lambda: b.metrics("c")["peak_overlay_dht_routes_expired_total"] >= 1, timeout=30)
    wait_for("hc -> hb after the expiry", lambda: b.ping_ok("c", "b"), timeout=30)
    assert b.metrics("c")['peak_overlay_dht_lookups_total{result="found"}'] > found

    for s in SITES:
        assert b.stop(s) == 0, b.logs[s].read_text()
        log = b.logs[s].read_text()
        assert not re.search(r" (error|crit|alert|emerg) ", log), log
        assert "AddressSanitizer" not in log and "runtime error" not in log, log
