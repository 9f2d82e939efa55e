"""PEAK over the overlay (issue 21; root): a client site with IPv4 only toward the outside,
behind a NAT, its host numbered from the overlay prefix only, resolves a PEAK SSA service
through `peak dns` reached over the overlay, computes its select=src address from its
overlay address and connects to a pod, which sees that overlay address as the source; the
node's XDP filter passes those packets (its pass counter moves) and drops a packet from
another overlay address of the same site sent to the address computed for the first; a
pod's answer of several full-sized TCP segments arrives (the gateway host clamps the MSS of
SYNs from the overlay: the filter drops ICMPv6 packet too big sent to service addresses).
Once with the sites' gateways configured as each other's peers, once with no peers, the
sites finding each other through OpenDHT (the cluster site's record carries the service
prefix). Topology: tests/overlay/peakbed.py."""
import os

import pytest

from ovbed import nsx
from peakbed import CLIENT, OTHER, PeakOverlayBed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


@pytest.fixture(params=["static", "dht"])
def bed(request, tmp_path):
    b = PeakOverlayBed(tmp_path, "pov", request.param)
    try:
        b.build()
        b.wait_ready()
        yield b
        # both gateways end cleanly on SIGTERM (an ASan build's leak or error would not)
        codes = {s: b.stop(s) for s in ("k", "c")}
        assert codes == {"k": 0, "c": 0}, (codes, (tmp_path / "gk.log").read_text()[-3000:],
                                          (tmp_path / "gc.log").read_text()[-3000:])
    finally:
        b.cleanup()


def test_peak_service_from_ipv4_only_site(bed):
    # the client site has no IPv6 toward the outside: its gateway's uplink has IPv4 only
    # and the client host's only global addresses are from the overlay prefix
    assert "inet6" not in nsx(bed.n("gc"), "ip", "addr", "show", "dev", "wan").stdout
    assert "dev ov0" in nsx(bed.n("gc"), "ip", "-6", "route", "get", "2001:db8:5::1").stdout
    rx0 = bed.metrics("k").get('peak_overlay_peer_rx_packets_total{peer="%s"}' % bed.peer("c"), 0)
    passed0, rejected0 = bed.filter_counts()

    # resolved over the overlay, from the overlay address, as the rule computes it
    res = bed.resolve()
    assert res, "peak resolve over the overlay failed"
    dst, src = res
    assert src == CLIENT
    assert dst == bed.rule(CLIENT)
    # the library connects; the pod sees the client's overlay address
    h = bed.connect()
    assert h.get("Source") == CLIENT, h
    assert h.get("Destination") == dst, h
    assert h.get("Endpoint", "").startswith("n1p"), h
    # an answer of several full-sized segments arrives: the gateway host clamps the MSS of
    # the client's SYN to what the overlay carries
    assert bed.echo(dst, 100) == 100
    passed1, rejected1 = bed.filter_counts()
    assert passed1 > passed0, (passed0, passed1)
    assert bed.metrics("k").get('peak_overlay_peer_rx_packets_total{peer="%s"}' % bed.peer("c"), 0) > rx0

    # the same site's other address: its own address passes, the first one's is dropped
    bed.add_other()
    h = bed.http(OTHER, bed.rule(OTHER))
    assert h.get("Source") == OTHER, h
    assert bed.http(OTHER, dst, wait=2) == {}
    passed2, rejected2 = bed.filter_counts()
    assert rejected2 > rejected1, (rejected1, rejected2)
    # the correct address still passes after that
    assert bed.http(CLIENT, dst).get("Source") == CLIENT
    assert bed.filter_counts()[0] > passed2
