"""The gateway's batched sending and path MTU, on the 3-site namespace bed of
test_overlay_ns.py (root). A TCP stream A->B leaves gA in far fewer send calls than packets
(sendmmsg, UDP GSO) and far fewer reads from the TUN device (TSO super-packets cut by the
gateway); gB takes it in far fewer receive calls (recvmmsg, UDP GRO) and writes it into its
TUN device in far fewer writes (segments of one flow merged into GSO super-packets); the
stream's hash shows all of it is right. Then the IPv4 path gA->gB is narrowed to 1400
bytes: an inner packet that no longer fits gets ICMPv6 packet too big from gA with the
tunnel's MTU (1400 - 72 = 1328: IPv4, UDP, our header and tag), hA's kernel takes it, smaller
packets still pass, and a TCP stream A->B adapts and arrives whole."""
import hashlib
import os
import subprocess
import sys

import pytest
from ovbed import nsx, sh, wait_for
from test_overlay_ns import SITES, TCP_CLIENT, TCP_SERVER, NatBed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


@pytest.fixture
def bed(tmp_path):
    b = NatBed(tmp_path, "m")
    try:
        b.build()
        for s in SITES:
            b.start(s)
        yield b
    finally:
        b.cleanup()


def tcp_stream(b, dst):
    srv = subprocess.Popen(["ip", "netns", "exec", b.n("h" + dst), sys.executable, "-c",
                            TCP_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "listening"
        out = nsx(b.n("ha"), sys.executable, "-c", TCP_CLIENT, f"fd00:{dst}::2",
                  timeout=60).stdout
        data = bytes(range(256)) * 8192
        assert out.strip() == f"{len(data)} {hashlib.sha256(data).hexdigest()}"
        assert srv.wait(timeout=10) == 0
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()


def ping(b, size):
    return nsx(b.n("ha"), "ping", "-6", "-n", "-c", "1", "-W", "1", "-M", "do", "-s",
               str(size), "fd00:b::2", check=False)


def test_batched_sends_and_path_mtu(bed):
    b = bed
    wait_for("ping a -> b", lambda: b.ping_ok("a", "b"))

    # batching: a 2 MiB stream goes out in several packets per send call
    m0, r0 = b.metrics("a"), b.metrics("b")
    tcp_stream(b, "b")
    m1, r1 = b.metrics("a"), b.metrics("b")
    pkts = m1["peak_overlay_gw_tx_packets_total"] - m0["peak_overlay_gw_tx_packets_total"]
    calls = (m1["peak_overlay_gw_send_calls_total"]
             - m0["peak_overlay_gw_send_calls_total"])
    assert pkts > 1400 and calls * 2 <= pkts, (pkts, calls)
    # and TCP left hA as super-packets (TSO), read whole from the TUN device and cut there
    reads = m1["peak_overlay_tun_reads_total"] - m0["peak_overlay_tun_reads_total"]
    assert m1["peak_overlay_tun_rx_gso_total"] > m0["peak_overlay_tun_rx_gso_total"]
    assert reads * 2 <= pkts, (reads, pkts)
    # and gB writes the stream's segments into its TUN device merged (GSO), not one by one
    got = r1["peak_overlay_tun_tx_packets_total"] - r0["peak_overlay_tun_tx_packets_total"]
    writes = r1["peak_overlay_tun_writes_total"] - r0["peak_overlay_tun_writes_total"]
    assert got > 1400 and writes * 2 <= got, (writes, got)
    recvs = (r1["peak_overlay_gw_receive_calls_total"]
             - r0["peak_overlay_gw_receive_calls_total"])
    assert recvs * 2 <= got, (recvs, got)  # recvmmsg, UDP GRO

    # the IPv4 path to gB narrows to 1400 bytes: 1300 bytes of ping (1348 inner) no longer
    # fit, and gA says so with the tunnel's MTU
    assert ping(b, 1300).returncode == 0
    sh("ip", "-n", b.n("ga"), "route", "add", "10.0.2.2/32", "via", "10.0.1.1", "mtu", "lock",
       "1400")
    wait_for("packet too big at hA", lambda: "mtu 1328" in sh(
        "ip", "-n", b.n("ha"), "-6", "route", "get", "fd00:b::2").stdout
        or (ping(b, 1300) and False), timeout=10)
    m = b.metrics("a")
    assert m["peak_overlay_gw_pmtu_changes_total"] >= 1
    assert m["peak_overlay_gw_too_big_total"] >= 1
    assert m["peak_overlay_icmp_too_big_sent_total"] >= 1
    r = ping(b, 1300)
    assert r.returncode != 0 and "1328" in r.stdout + r.stderr, r
    assert ping(b, 1328 - 48).returncode == 0  # exactly the tunnel MTU still passes
    log = b.logs["a"].read_text()
    assert "path MTU to peer b (10.0.2.2) is 1400: tunnel MTU 1328" in log, log

    # TCP follows the smaller MTU and the stream arrives whole
    tcp_stream(b, "b")

    for s in SITES:  # a clean exit, and nothing the sanitizers saw
        assert b.stop(s) == 0, b.logs[s].read_text()
        log = b.logs[s].read_text()
        assert "AddressSanitizer" not in log and "runtime error" not in log, log
