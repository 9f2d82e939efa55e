"""The overlay gateway's kernel fast path (issue 21) in network namespaces (root): a pair of
sites that trust each other's underlay carries ping and a TCP stream through the BPF
programs (lwt encap, tc decap), so the BPF counters grow while the daemon's user-space data
counters do not; with fast-path: off the same pair goes through user space as
OVW_DATA_PLAIN (the oracle); a pair where only one side trusts drops the plain packets and
counts them; a plain packet with a spoofed inner source is dropped in the kernel."""
import os
import subprocess

import pytest
from fpbed import FpBed, counter
from ovbed import nsx, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


@pytest.fixture
def mkbed(tmp_path):
    beds = []

    def make(**kw):
        b = FpBed(tmp_path, "fp")
        beds.append(b)
        b.build(**kw)
        for s in ("a", "b"):
            b.start(s)
        return b

    try:
        yield make
    finally:
        for b in beds:
            b.cleanup()


def tcp_stream(b, nbytes=4 << 20):
    """nbytes from ha to hb over TCP (python on both ends); returns what hb received."""
    srv = subprocess.Popen(
        ["ip", "netns", "exec", b.n("hb"), "python3", "-c",
         "import socket\ns=socket.socket(socket.AF_INET6)\n"
         "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
         "s.bind(('fd00:b::2',5001));s.listen(1);c,_=s.accept();n=0\n"
         "while True:\n d=c.recv(65536)\n if not d: break\n n+=len(d)\nprint(n)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        wait_for("hb listening", lambda: ":1389 " in nsx(b.n("hb"), "cat", "/proc/net/tcp6")
                 .stdout.upper() or "1389" in nsx(b.n("hb"), "ss", "-ltnH").stdout, timeout=10)
        nsx(b.n("ha"), "python3", "-c",
            "import socket\ns=socket.create_connection(('fd00:b::2',5001),timeout=20)\n"
            f"s.sendall(b'z'*{nbytes});s.close()\n", timeout=60)
        out, _ = srv.communicate(timeout=60)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    return int(out.strip() or 0)


def both_ping(b):
    wait_for("a -> b ping", lambda: b.ping_ok("a", "b"), timeout=10)
    wait_for("b -> a ping", lambda: b.ping_ok("b", "a"), timeout=10)


def test_trusted_pair_goes_through_the_kernel(mkbed):
    b = mkbed()
    for s in ("a", "b"):
        log = b.logs[s].read_text()
        assert "is trusted: data to and from it is NOT encrypted" in log
        assert "fast path on for 1 trusted peer(s)" in log, log
    routes = nsx(b.n("ga"), "ip", "-6", "route", "show", "fd00:b::/64").stdout
    assert "encap bpf" in routes, routes
    both_ping(b)
    assert tcp_stream(b) == 4 << 20
    for s in ("a", "b"):
        m = b.metrics(s)
        assert counter(m, "peak_overlay_fastpath_total", counter="tx_packets") > 10, m
        assert counter(m, "peak_overlay_fastpath_total", counter="rx_packets") > 10, m
        # the daemon carried none of the data: neither plain nor sealed
        assert counter(m, "peak_overlay_gw_plain_sent_total") == 0
        assert counter(m, "peak_overlay_gw_plain_received_total") == 0
        assert counter(m, "peak_overlay_tun_rx_packets_total") < 10
    show = b.ctl("a", "show", "peers").stdout
    assert "fastpath on tx " in show, show
    # on exit the routes go
    b.stop("a")
    routes = nsx(b.n("ga"), "ip", "-6", "route", "show", "proto", "0xa6").stdout
    assert routes.strip() == "", routes


def test_fast_path_off_is_the_user_space_oracle(mkbed):
    b = mkbed(fast_path="off")
    assert "fast path on" not in b.logs["a"].read_text()
    both_ping(b)
    assert tcp_stream(b, 1 << 20) == 1 << 20
    for s in ("a", "b"):
        m = b.metrics(s)
        assert counter(m, "peak_overlay_gw_plain_sent_total") > 10
        assert counter(m, "peak_overlay_gw_plain_received_total") > 10
        assert counter(m, "peak_overlay_fastpath_total", counter="tx_packets") == 0


def test_one_sided_trust_drops_plain_and_counts(mkbed):
    b = mkbed(trusted=("a",))  # a sends plain to b; b does not take it
    wait_for("b hears a", lambda: "answering" in b.ctl("b", "show", "peers").stdout, timeout=10)
    assert not b.ping_ok("a", "b")
    wait_for("b counts plain from an untrusted peer", lambda: counter(
        b.metrics("b"), "peak_overlay_gw_dropped_total", reason="plain_untrusted") > 0)
    # b -> a: b seals (it trusts nobody); a takes sealed packets from anyone it knows
    m0 = counter(b.metrics("a"), "peak_overlay_gw_dropped_total", reason="plain_untrusted")
    assert m0 == 0


def test_spoofed_inner_source_dropped_in_kernel(mkbed):
    b = mkbed()
    both_ping(b)
    m0 = b.metrics("b")
    # a's sender id, an inner source outside a's prefixes
    b.inject("a", "b", b.plain_packet("a", "fd00:e::1", "fd00:b::2"), count=5)
    wait_for("b's kernel drops the spoofed source", lambda: counter(
        b.metrics("b"), "peak_overlay_fastpath_total", counter="rx_dropped_source")
        >= counter(m0, "peak_overlay_fastpath_total", counter="rx_dropped_source") + 5)
    # a plain packet with the id of a peer b does not know goes to the daemon: unknown
    b.keys["x"] = "77" * 32
    b.inject("a", "b", b.plain_packet("x", "fd00:a::2", "fd00:b::2"))
    wait_for("b's daemon drops the unknown sender", lambda: counter(
        b.metrics("b"), "peak_overlay_gw_dropped_total", reason="unknown_peer") >= 1)
