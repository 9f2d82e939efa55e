"""Anycast members found in the DHT (root): the bed of test_anycast.py, but no gateway knows
any peer and site A is not told who serves fd00:ac::/64. B and C are certified for it and
list it under dht.anycast, so each puts a signed anycast record under the prefix's anycast
key; A's anycast slave (the prefix configured without sites) looks the members up there,
its gateway learns both sites, and it picks among them as among configured members: C, which
publishes the router's delaying forwarder as its locator, is 40 ms further away, so new
flows go to B; with gB's daemon stopped, new flows go to C. Garbage put under the anycast key
through the independent DHT node is refused and counted.

    hA fd00:a::2      hB fd00:b::2 fd00:ac::1      hC fd00:c::2 fd00:ac::1
    gA 10.0.1.2       gB 10.0.2.2                  gC 10.0.3.2 (locator 10.0.9.1: +20 ms)
      +--------------------------- r ---------------------------+--- dn (dhtnode)
"""
import hashlib
import ipaddress
import os
import re
import sys

import dhtnodes
import pytest
from dhtpubbed import PORT, DhtPubBed
from ovbed import nsx, sh, wait_for
from test_anycast import FLOWS, anycast_members, anycast_running, serve_anycast

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

AC = "fd00:ac::/64"


def anycast_key(prefix):
    """The DHT key (an InfoHash, hex) of an anycast prefix, as src/overlay/dhtrec.h says."""
    net = ipaddress.IPv6Network(prefix)
    raw = b"peak-ov1" + b"a" + bytes([net.prefixlen]) + net.network_address.packed
    return hashlib.sha1(raw).hexdigest()


class AnyDhtBed(DhtPubBed):
    def build(self):
        super().build(
            "abc", hosts="abc",
            prefixes=lambda s: [f"fd00:{s}::/64"] + ([AC] if s != "a" else []),
            dht_extra=lambda s: f"  anycast: [{AC}]\n" if s != "a" else "",
            extra=lambda s: "resiliency:\n  dead-ms: 600\n" + (
                f"anycast:\n  - prefix: {AC}\n" if s == "a" else ""),
            locator=lambda s: f"{'10.0.9.1' if s == 'c' else self.addr(s)}:{PORT}")
        sh("ip", "-n", self.n("r"), "addr", "add", "10.0.9.1/32", "dev", "lo")
        # the gateways' UDP between gA and gC only through the forwarder (their DHT nodes
        # still talk directly)
        nsx(self.n("r"), "nft", "-f", "-", input=(
            "table ip slow {\n chain slowfw {\n  type filter hook forward priority 0;\n"
            f"  ip saddr 10.0.1.2 ip daddr 10.0.3.2 udp dport {PORT} drop\n"
            f"  ip saddr 10.0.3.2 ip daddr 10.0.1.2 udp sport {PORT} drop\n" " }\n}\n"))
        serve_anycast(self)

    def members(self):
        return anycast_members(self)


@pytest.fixture
def bed(tmp_path):
    with anycast_running(AnyDhtBed(tmp_path, "acd"), dht=True) as b:
        yield b


def test_anycast_members_from_the_dht(bed):
    b = bed
    nb, nc = b.peer_name("b"), b.peer_name("c")
    assert "sites" not in (b.tmp / "a.yaml").read_text()
    dhtnodes.put(b.dhtnode, anycast_key(AC), "this-is-not-a-record")
    # A learns both members from their anycast records, and measures them
    wait_for("both members found and measured", lambda: (lambda m: set(m) == {nb, nc} and all(
        h and r for h, r in m.values()))(b.members()), timeout=40)
    m = b.members()
    assert m[nb][1] < m[nc][1], m
    met = b.metrics("a")
    assert met["peak_overlay_dht_anycast_members_total"] >= 2, met
    assert b.metrics("b")["peak_overlay_dht_anycast_puts_total"] >= 1
    assert "members from the DHT" in b.logs["a"].read_text()
    # the garbage: refused by A's next lookups (every 5 s), the members unchanged
    wait_for("the garbage refused", lambda: b.metrics("a").get(
        'peak_overlay_dht_values_refused_total{reason="malformed"}', 0) >= 1, timeout=20)
    assert set(b.members()) == {nb, nc}
    flows = nsx(b.n("ha"), sys.executable, "-c", FLOWS, "6", timeout=60).stdout.split()
    assert flows == ["b"] * 6, flows
    # gA restarted: B and C, which know it, send to it at once, so it looks them up by id,
    # which hands it their records of fd00:ac::/64 too: learned as peers, but the route
    # stays the anycast slave's (it was replaced by a route to one member)
    b.stop("a")
    b.start("a")
    wait_for("both members found and measured again", lambda: (lambda m: set(m) == {nb, nc}
             and all(h and r for h, r in m.values()))(b.members()), timeout=40)
    routes = b.ctl("a", "show", "routes").stdout
    assert re.search(r"^fd00:ac::/64 anycast anycast$", routes, re.M), routes
    # gB gone: it turns unhealthy, and new flows go to C
    b.stop("b")
    wait_for("b unhealthy", lambda: not b.members()[nb][0], timeout=15)
    flows = nsx(b.n("ha"), sys.executable, "-c", FLOWS, "3", timeout=60).stdout.split()
    assert flows == ["c"] * 3, flows
    met = b.metrics("a")
    assert met[f'peak_overlay_anycast_packets_total{{prefix="{AC}",site="{nc}"}}'] >= 3, met
