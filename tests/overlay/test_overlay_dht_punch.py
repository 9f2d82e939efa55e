"""Two sites behind NAT reach each other directly (root): gateways A and C sit behind their
own nftables masquerade and know only their private addresses; B is public. Pinging B, A and C
learn from B's mapping keepalives how B sees them, and republish that public mapping in the
DHT. The NATs are home routers: masquerade (port-preserving) and unsolicited packets from
outside dropped. Then A looks C up, finds C's mapping, sends to it and puts its own record under C's id
key; C, listening there, sends to A's mapping at the same time, so both NATs open and the
hosts behind A and C ping each other with no relay.

    hA fd00:a::2            hB fd00:b::2            hC fd00:c::2
      | lan                   | lan                   | lan
    gA 192.168.1.2          gB 10.0.2.2             gC 192.168.3.2
      |                       |                       |
    natA 10.0.1.2 (masq.)     |                     natC 10.0.3.2 (masq.)
      +------------------------- r --------------------------+
                                  | 10.0.9.1
                                 dn 10.0.9.2 (dhtnode :4222; a namespace of its own: a
                                    node bound to 0.0.0.0 on the multihomed router would
                                    answer from another address than the NAT expects)
"""
import os
import re
import subprocess

import pytest
from ovbed import PEAK, Bed, nsx, sh, wait_for

PORT = 51820
DHT_PORT = 4222
NETWORK = 4712
SITES = ("a", "b", "c")
NATED = ("a", "c")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


class PunchBed(Bed):
    def __init__(self, tmp):
        super().__init__(tmp, "p")
        self.dhtnode = None

    def peak(self, *args):
        return sh(PEAK, "overlay", *args).stdout.strip()

    def build(self):
        names = ["r", "dn"] + [f"h{s}" for s in SITES] + [f"g{s}" for s in SITES]
        for name in names + [f"nat{s}" for s in NATED]:
            self.add_ns(name)
        nsx(self.n("r"), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.veth("dn", "eth0", "r", "rdn")
        sh("ip", "-n", self.n("r"), "addr", "add", "10.0.9.1/24", "dev", "rdn")
        sh("ip", "-n", self.n("dn"), "addr", "add", "10.0.9.2/24", "dev", "eth0")
        sh("ip", "-n", self.n("dn"), "route", "add", "default", "via", "10.0.9.1")
        for i, s in enumerate(SITES, 1):
            h, g = f"h{s}", f"g{s}"
            self.veth(h, "lan", g, "lan")
            sh("ip", "-n", self.n(h), "addr", "add", f"fd00:{s}::2/64", "dev", "lan", "nodad")
            sh("ip", "-n", self.n(h), "-6", "route", "add", "default", "via", f"fd00:{s}::1")
            sh("ip", "-n", self.n(g), "addr", "add", f"fd00:{s}::1/64", "dev", "lan", "nodad")
            nsx(self.n(g), "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
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
                # a home router: masquerade, and unsolicited packets from outside dropped
                # before conntrack confirms them (an accepted one would hold the tuple
                # the gateway's own reply then needs: masquerade would move its port)
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
        auth = self.tmp / "auth.key"
        self.peak("--genkey", str(auth))
        auth_pub = self.peak("--authority-pub", str(auth))
        self.pubs = {}
        for i, s in enumerate(SITES, 1):
            key = self.tmp / f"{s}.key"
            self.peak("--genkey", str(key))
            self.pubs[s] = self.peak("--pubkey", str(key))
            cert = self.peak("--certify", str(auth), "--site",
                             self.peak("--site-id", str(key)), "--prefix", f"fd00:{s}::/64")
            locator = f"192.168.{i}.2" if s in NATED else f"10.0.{i}.2"
            (self.tmp / f"{s}.yaml").write_text(
                f"tun: ov0\naddress: fd00:{s}::1\nicmp-rate: 100\n"
                f"gateway:\n  listen: 0.0.0.0:{PORT}\n  private-key-file: {key}\n"
                f"  keepalive: 1\n"
                f"dht:\n  port: {DHT_PORT}\n  network: {NETWORK}\n"
                f"  bootstrap: [10.0.9.2:{DHT_PORT}]\n  authority: {auth_pub}\n"
                f"  certificate: {cert}\n  prefixes: [fd00:{s}::/64]\n"
                f"  locator: {locator}:{PORT}\n")

    def start_dhtnode(self):
        self.dhtnode = subprocess.Popen(
            ["ip", "netns", "exec", self.n("dn"), "dhtnode", "-s", "-n", str(NETWORK), "-p",
             str(DHT_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("dhtnode bound", lambda: f":{DHT_PORT} " in nsx(
            self.n("dn"), "ss", "-uln").stdout)

    def cleanup(self):
        for s in list(self.procs):
            self.stop(s)
        if self.dhtnode:
            self.dhtnode.terminate()
            try:
                self.dhtnode.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.dhtnode.kill()
                self.dhtnode.wait()
        super().cleanup()


@pytest.fixture
def bed(tmp_path):
    b = PunchBed(tmp_path)
    try:
        b.build()
        b.start_dhtnode()
        for s in SITES:
            b.start(s)
        yield b
    finally:
        b.cleanup()


def test_two_nated_sites_punch_through(bed):
    b = bed
    for s in SITES:
        wait_for(f"g{s} published",
                 lambda: b.metrics(s).get('peak_overlay_dht_puts_total{result="ok"}', 0) > 0)
    # through the public site, each NATed gateway learns its public mapping
    for s in NATED:
        wait_for(f"h{s} -> hb", lambda: b.ping_ok(s, "b"), timeout=15)
        wait_for(f"g{s} learns its mapping",
                 lambda: b.metrics(s).get("peak_overlay_gw_mapping_changes_total", 0) >= 1)
        wait_for(f"g{s} republishes with its mapping",
                 lambda: b.metrics(s).get("peak_overlay_dht_locators") == 2)
        assert re.search(rf"peer \S+ sees us at 10\.0\.{SITES.index(s) + 1}\.2:\d+",
                         b.logs[s].read_text())
    # A and C behind their NATs: A finds C's mapping, both send, both NATs open
    wait_for("ha -> hc through both NATs", lambda: b.ping_ok("a", "c"), timeout=20)
    assert b.ping_ok("c", "a")
    assert b.metrics("a")["peak_overlay_dht_punch_puts_total"] >= 1
    assert b.metrics("c")["peak_overlay_dht_punch_heard_total"] >= 1
    # direct: each sees the other at its NAT's public address, not through B
    peers_c = b.ctl("c", "show", "peers").stdout
    assert re.search(rf"^peer dht-{b.pubs['a'][:8]} 10\.0\.1\.2:\d+ ", peers_c, re.M), peers_c
    peers_a = b.ctl("a", "show", "peers").stdout
    assert re.search(rf"^peer dht-{b.pubs['c'][:8]} 10\.0\.3\.2:\d+ ", peers_a, re.M), peers_a
    for s in SITES:
        assert b.stop(s) == 0, b.logs[s].read_text()
        log = b.logs[s].read_text()
        assert not re.search(r" (error|crit|alert|emerg) ", log), log
        assert "AddressSanitizer" not in log and "runtime error" not in log, log
