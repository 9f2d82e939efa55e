"""Regression: a gateway behind an endpoint-dependent ("symmetric") NAT took every peer's view
of its address as a new public mapping. Each of its peers sees another port, and each tells
it at every keepalive, so the mapping flipped between them every second: a new "sees us at"
log line, a mapping change and (with the DHT slave) a republication of every record each
time; seen in the NAT matrix bed (tests/overlay/nat_matrix.py) as a symmetric site's
mapping_changes growing by two a second. Now the gateway concludes its NAT maps per
endpoint, says so (`show peers`: nat endpoint-dependent; a gauge), and keeps its mapping.

    gS 192.168.1.2 -- nat (masquerade fully-random) 10.0.1.2 --+-- r --+ 10.0.2.2 gP1
                                                               |       + 10.0.3.2 gP2
(root; static peers, no DHT: gS knows P1 and P2 at their addresses, they learn it.)
"""
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "overlay"))
from ovbed import PEAK, Bed, nsx, sh, wait_for  # noqa: E402

PORT = 51820
SITES = ("s", "p1", "p2")
PREFIX = {"s": "fd00:1::/64", "p1": "fd00:2::/64", "p2": "fd00:3::/64"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


@pytest.fixture
def bed(tmp_path):
    b = Bed(tmp_path, "rsy")
    try:
        for n in ("r", "nat", "gs", "gp1", "gp2"):
            b.add_ns(n)
        nsx(b.n("r"), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        nsx(b.n("nat"), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        b.veth("gs", "wan", "nat", "nin")
        b.veth("nat", "nout", "r", "r1")
        b.veth("gp1", "wan", "r", "r2")
        b.veth("gp2", "wan", "r", "r3")
        for ns, cmds in {
                "gs": ["addr add 192.168.1.2/24 dev wan", "route add default via 192.168.1.1"],
                "nat": ["addr add 192.168.1.1/24 dev nin", "addr add 10.0.1.2/24 dev nout",
                        "route add default via 10.0.1.1"],
                "r": ["addr add 10.0.1.1/24 dev r1", "addr add 10.0.2.1/24 dev r2",
                      "addr add 10.0.3.1/24 dev r3"],
                "gp1": ["addr add 10.0.2.2/24 dev wan", "route add default via 10.0.2.1"],
                "gp2": ["addr add 10.0.3.2/24 dev wan", "route add default via 10.0.3.1"]}.items():
            sh("ip", "-n", b.n(ns), "-batch", "-", input="\n".join(cmds) + "\n")
        nsx(b.n("nat"), "nft", "-f", "-", input=(
            "table ip nat {\n chain post {\n  type nat hook postrouting priority 100;\n"
            '  oifname "nout" masquerade fully-random\n }\n}\n'
            "table ip filter {\n chain input {\n  type filter hook input priority 0;\n"
            '  iifname "nout" ct state new drop\n }\n}\n'))
        pub = {}
        for s in SITES:
            key = tmp_path / f"{s}.key"
            sh(PEAK, "overlay", "--genkey", str(key))
            pub[s] = sh(PEAK, "overlay", "--pubkey", str(key)).stdout.strip()
        ep = {"p1": "10.0.2.2", "p2": "10.0.3.2"}
        for s in SITES:
            others = ("p1", "p2") if s == "s" else ("s",)
            peers = "".join(
                f"    - name: {o}\n      public-key: {pub[o]}\n"
                + (f"      endpoint: {ep[o]}:{PORT}\n" if o in ep else "")
                + f"      prefixes: [{PREFIX[o]}]\n" for o in others)
            (tmp_path / f"{s}.yaml").write_text(
                f"tun: ov0\naddress: {PREFIX[s].split('/')[0]}1\n"
                f"gateway:\n  listen: 0.0.0.0:{PORT}\n"
                f"  private-key-file: {tmp_path / (s + '.key')}\n"
                f"  keepalive: 1\n  peers:\n" + peers)
        for s in SITES:
            b.start(s, route=False)
        yield b
    finally:
        b.cleanup()


def test_symmetric_nat_mapping_kept(bed):
    b = bed
    # both peers tell gS where they see it, every second, each another port
    wait_for("ten mapping messages at gS",
             lambda: b.metrics("s").get("peak_overlay_gw_mappings_received_total", 0) >= 10,
             timeout=30)
    m = b.metrics("s")
    assert m["peak_overlay_gw_mapping_changes_total"] <= 3, m
    assert m["peak_overlay_gw_nat_endpoint_dependent"] == 1
    r = b.ctl("s", "show", "peers")
    assert re.search(r"^nat endpoint-dependent$", r.stdout, re.M), r.stdout
    ports = set(re.findall(r"sees us at 10\.0\.1\.2:(\d+)", b.logs["s"].read_text()))
    assert len(ports) == 2, ports  # one mapping per peer: the NAT is endpoint-dependent
    # the public peers' own NAT verdict: one peer each tells them, so nothing is concluded
    for s in ("p1", "p2"):
        assert b.metrics(s)["peak_overlay_gw_nat_endpoint_dependent"] == 0
