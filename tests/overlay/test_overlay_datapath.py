"""The gateway's data path on the 3-site namespace bed of test_overlay_ns.py (root), sites A
(with busy-poll: 200) and B.

USO on the TUN device: host hA sends 2000 UDP datagrams to hB with UDP_SEGMENT (40 datagrams of 1000 bytes per
send call); the kernel hands gA each send whole as one UDP super-packet (TUN_F_USO6,
VIRTIO_NET_HDR_GSO_UDP_L4), which gA cuts into the datagrams (io.h ovio_uso_next). So gA
reads its TUN device far fewer times than datagrams pass (without USO the kernel cut them
before the TUN device: one read each), counts the super-packets, and hB's kernel takes
every datagram, its UDP checksum verified, each with its own number and payload.

busy-poll: pings through A make its loop poll without sleeping after each pass (counted);
B, without the key, never does."""
import os
import subprocess
import sys

import pytest
from ovbed import nsx, wait_for
from test_overlay_ns import NatBed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

N, SEG, PER_SEND = 2000, 1000, 40

# datagram i: its number (4 bytes) then SEG - 4 bytes of (i + k) & 0xff
DGRAM = f"""
def dgram(i):
    return i.to_bytes(4, "big") + bytes((i + k) & 0xff for k in range({SEG} - 4))
"""

RECEIVER = DGRAM + f"""
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
s.bind(("::", 5002))
print("listening", flush=True)
s.settimeout(30)
good = bad = 0
seen = set()
while good < {N}:
    try:
        d = s.recv(65536)
    except TimeoutError:
        break
    s.settimeout(3)  # once they flow, 3 s without one ends it
    i = int.from_bytes(d[:4], "big")
    if len(d) == {SEG} and i < {N} and i not in seen and d == dgram(i):
        seen.add(i)
        good += 1
    else:
        bad += 1
print(good, bad, flush=True)
"""

SENDER = DGRAM + f"""
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_UDP, 103, {SEG})  # UDP_SEGMENT
for first in range(0, {N}, {PER_SEND}):
    s.sendto(b"".join(dgram(i) for i in range(first, first + {PER_SEND})), ("fd00:b::2", 5002))
"""


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    b = NatBed(tmp_path_factory.mktemp("dp"), "u")
    try:
        b.build()
        with open(b.tmp / "a.yaml", "a") as f:
            f.write("busy-poll: 200\n")
        for s in ("a", "b"):
            b.start(s)
        yield b
    finally:
        b.cleanup()


def test_udp_super_packets_cut_by_the_gateway(bed):
    b = bed
    wait_for("ping a -> b", lambda: b.ping_ok("a", "b"))
    assert "no USO offload" not in b.logs["a"].read_text()
    m0 = b.metrics("a")
    rcv = subprocess.Popen(["ip", "netns", "exec", b.n("hb"), sys.executable, "-c", RECEIVER],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert rcv.stdout.readline().strip() == "listening"
        nsx(b.n("ha"), sys.executable, "-c", SENDER, timeout=60)
        good, bad = map(int, rcv.stdout.readline().split())
        assert rcv.wait(timeout=10) == 0
    finally:
        if rcv.poll() is None:
            rcv.kill()
            rcv.wait()
    m1 = b.metrics("a")
    reads = m1["peak_overlay_tun_reads_total"] - m0["peak_overlay_tun_reads_total"]
    uso = m1.get("peak_overlay_tun_rx_uso_total", 0) - m0.get("peak_overlay_tun_rx_uso_total", 0)
    # every datagram whole and right (a wrong UDP checksum would make hB's kernel drop it);
    # a few may be lost on a loaded machine, none corrupted
    assert bad == 0 and good >= N * 9 // 10, (good, bad)
    assert reads < N // 5, f"{reads} TUN reads for {good} datagrams ({uso} super-packets)"
    assert uso >= 1


def test_busy_poll_only_where_configured(bed):
    b = bed
    wait_for("ping a -> b", lambda: b.ping_ok("a", "b"))
    a0 = b.metrics("a")["peak_overlay_busy_polls_total"]
    for _ in range(5):
        b.ping_ok("a", "b")
    assert b.metrics("a")["peak_overlay_busy_polls_total"] > a0
    assert b.metrics("b")["peak_overlay_busy_polls_total"] == 0
