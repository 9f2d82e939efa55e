"""Regression: a site behind a symmetric NAT (endpoint-dependent mapping) and one behind a
NAT that filters by port (port-preserving masquerade, only replies in: a home router, or the
NAT matrix's double-NAT site 9) never reached each other. The symmetric NAT maps another
port toward the second site than any peer saw, and the second NAT lets in only the address
and port it sent to, so no hole can be punched; the gateway relayed only pairs whose NATs
were both endpoint-dependent, and here sent on directly: every packet lost, nothing said.
Now, with one NAT endpoint-dependent and our packets unanswered for as long as a peer counts
as heard (three keepalive periods), the pair is relayed through a site whose NAT is not
endpoint-dependent, both ways.

    hA hD (public: 10.0.1.2, 10.0.4.2)   hB -> gB 192.168.2.2 -> natB 10.0.2.2 (masquerade)
                                         hC -> gC 192.168.3.2 -> natC 10.0.3.2 (fully-random)
      all on r, with dn 10.0.9.2 dhtnode; no NAT lets anything unsolicited reach itself
(root; C needs two public peers to find its NAT endpoint-dependent.)
"""
import os
import re
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "overlay"))
from demo_overlay import DemoBed  # noqa: E402
from nat_matrix import RELAYED, first_answer, nat_rules, tcp_matrix  # noqa: E402
from ovbed import wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


class PortFilterBed(DemoBed):
    SITES = ("a", "b", "c", "d")
    NATED = ("b", "c")
    DHT_EXTRA = "  negative-ttl: 1\n"

    def __init__(self, tmp):
        super().__init__(tmp)
        self.p = f"rpf{os.getpid() % 10000}"

    def nat_rules(self, s):
        return nat_rules("symmetric" if s == "c" else "masquerade", self.idx(s))

    def peer_line(self, s, o):
        m = re.search(rf"^peer dht-{self.ids[o]} .*$", self.ctl(s, "show", "peers").stdout,
                      re.M)
        return m.group(0) if m else ""


@pytest.fixture
def bed(tmp_path):
    b = PortFilterBed(tmp_path)
    try:
        b.build()
        b.start_dhtnode()
        b.start_all()
        yield b
    finally:
        b.cleanup()


def test_symmetric_and_port_filtering_nats_relayed(bed):
    b = bed
    wait_for("every record in the DHT", b.published, timeout=30)
    # B and C reach the public sites: C learns that its NAT maps per destination and says
    # so in its record, before B looks it up
    for s in ("b", "c"):
        for o in ("a", "d"):
            assert first_answer(b, s, o, 25)[0], (s, o)

    def c_says_edm():
        m = b.metrics("c")
        return (m.get("peak_overlay_gw_nat_endpoint_dependent") == 1
                and m.get("peak_overlay_dht_locators", 0) >= 2)
    wait_for("c's record says endpoint-dependent", c_says_edm, timeout=20)
    assert b.metrics("b")["peak_overlay_gw_nat_endpoint_dependent"] == 0
    t = time.monotonic()
    ok, secs, out = first_answer(b, "b", "c", 25)
    assert ok, out  # before: never answered
    assert first_answer(b, "c", "b", 25)[0]
    # relayed both ways, through a public site (the lowest id both hear)
    relays = {"dht-" + b.ids[r]: r for r in ("a", "d")}
    for s, o in (("b", "c"), ("c", "b")):
        m = wait_for(f"{s} relays to {o}", lambda: RELAYED.search(b.peer_line(s, o)),
                     timeout=10)
        assert m.group(1) in relays, b.peer_line(s, o)
    assert "no answer to our packets, and its NAT maps ports per destination" in \
        b.logs["b"].read_text()
    assert "no answer to our packets, and our NAT maps ports per destination" in \
        b.logs["c"].read_text()
    fwd = sum(b.metrics(r)["peak_overlay_gw_relay_forwarded_total"] for r in ("a", "d"))
    tcp = tcp_matrix(b, [("b", "c"), ("c", "b")])
    assert tcp == {("b", "c"): "ok", ("c", "b"): "ok"}, tcp
    assert sum(b.metrics(r)["peak_overlay_gw_relay_forwarded_total"]
               for r in ("a", "d")) > fwd + 20  # the TCP echoes went through the relay
    for s in ("b", "c"):
        mt = b.metrics(s)
        assert mt["peak_overlay_gw_nat_relayed_total"] > 0, s
        assert mt["peak_overlay_gw_relay_received_total"] > 0, s
        assert mt['peak_overlay_gw_dropped_total{reason="relayed"}'] == 0, s
    print(f"b -> c first answered after {secs:.1f} s ({time.monotonic() - t:.1f} s both "
          f"ways), relayed via {relays[m.group(1)]}")
