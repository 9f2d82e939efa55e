"""The resiliency slave in network namespaces (root): three public sites on one IPv4 router;
the A-B underlay link is cut (nftables drop in the router, both ways) under a UDP echo
stream and a paced TCP stream from hA to hB. A and B give up the direct path and relay
through C (within about a second: the gap is measured and printed, not asserted, the
machine is shared) and echoes flow while relayed, the TCP stream survives, and when the
link is restored both ends go direct again (C relays nothing more). Probe traffic stays
within the budget, link-state reports (OVW_LINKSTATE) included. Last, relay packets sealed with A's key and injected on the IPv4 path:
to a destination no site serves, or relayed from a source no site serves, are dropped and
counted at C, beside a good one C forwards.

    hA fd00:a::2      hB fd00:b::2      hC fd00:c::2
    gA 10.0.1.2       gB 10.0.2.2       gC 10.0.3.2
      +--------------- r ---------------+      (r drops 10.0.1.2 <-> 10.0.2.2 when cut)
"""
import contextlib
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from ovbed import nsx, wait_for
from pubbed import ADDR, SITES, PubBed
from test_overlay_ns import TCP_SERVER

DEAD_MS = 600
BUDGET = 1000

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


class ResilBed(PubBed):
    def cut(self, on):
        if on:
            nsx(self.n("r"), "nft", "-f", "-", input=(
                "table ip cut {\n chain cutfw {\n  type filter hook forward priority 0;\n"
                f"  ip saddr {ADDR['a']} ip daddr {ADDR['b']} drop\n"
                f"  ip saddr {ADDR['b']} ip daddr {ADDR['a']} drop\n" " }\n}\n"))
        else:
            nsx(self.n("r"), "nft", "delete", "table", "ip", "cut")

    def stop_all_clean(self):
        """Stops every site's daemon: each exits 0 with no sanitizer report in its log."""
        for s in SITES:
            assert self.stop(s) == 0, self.logs[s].read_text()
            log = self.logs[s].read_text()
            assert "AddressSanitizer" not in log and "runtime error" not in log, log

    def path(self, s, peer):
        """'direct', 'down via X' or None, from the resiliency slave's show lines."""
        m = re.search(rf"^path {peer} (\S+) via (\S+) ", self.ctl(s, "show", "peers").stdout,
                      re.M)
        if not m:
            return None
        return m.group(1) if m.group(1) == "direct" else f"{m.group(1)} via {m.group(2)}"


@contextlib.contextmanager
def running_bed(tmp_path, prefix, resil):
    """A ResilBed (namespaces named from prefix) with the resiliency section resil and every
    site's daemon started; its namespaces removed however the test ends."""
    b = ResilBed(tmp_path, prefix)
    try:
        b.build(resil=resil)
        for s in SITES:
            b.start(s)
        yield b
    finally:
        b.cleanup()


@pytest.fixture
def bed(tmp_path):
    with running_bed(tmp_path, "rs",
                     f"resiliency:\n  dead-ms: {DEAD_MS}\n  budget: {BUDGET}\n") as b:
        yield b


ECHO = r"""
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", 7000))
print("ready", flush=True)
while True:
    d, a = s.recvfrom(64)
    s.sendto(d, a)
"""

# Sends a numbered datagram every 10 ms until the file argv[2] exists; prints the monotonic
# times the echoes came back at and those the datagrams were sent at (CLOCK_MONOTONIC is the
# machine's, the same in every namespace).
PROBE = r"""
import json, os, select, socket, struct, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setblocking(False)
nxt = time.monotonic(); seq = 0; got = []; sent_t = []
print("started", flush=True)
while not os.path.exists(sys.argv[2]):
    if time.monotonic() >= nxt:
        s.sendto(struct.pack("!I", seq), (sys.argv[1], 7000)); seq += 1; nxt += 0.01
        sent_t.append(time.monotonic())
    if select.select([s], [], [], max(0.0, nxt - time.monotonic()))[0]:
        try:
            s.recv(64); got.append(time.monotonic())
        except BlockingIOError:
            pass
print(json.dumps({"sent": seq, "got": got, "sent_t": sent_t}))
"""

# 16 KiB every 20 ms until the file argv[2] exists: a stream in flight during the cut
TCP_CLIENT = r"""
import os, socket, sys, time
c = socket.create_connection((sys.argv[1], 5001), timeout=30)
n = 0; chunk = bytes(range(256)) * 64
while not os.path.exists(sys.argv[2]):
    c.sendall(chunk); n += 1; time.sleep(0.02)
c.shutdown(socket.SHUT_WR)
print(n, c.makefile().readline().strip())
"""


# Seals overlay packets as the gateway does (src/overlay/wire.h) from a sender's private key
# to a receiver's public key under a new epoch, and sends them to the receiver's gateway:
# argv: SENDER_KEY_FILE RECEIVER_PUB ADDR then TYPE:INNER_HEX... (counters 0, 1, ...)
SEAL = r"""
import hashlib, hmac, socket, sys, time
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
priv = X25519PrivateKey.from_private_bytes(bytes.fromhex(open(sys.argv[1]).read().strip()))
spub = priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
rpub = bytes.fromhex(sys.argv[2])
shared = priv.exchange(X25519PublicKey.from_public_bytes(rpub))
prk = hmac.new(b"peak-overlay-v1", shared, hashlib.sha256).digest()
epoch = time.time_ns() + 10**9  # newer than the sender's own: a new epoch
key = hmac.new(prk, spub + rpub + epoch.to_bytes(8, "big") + b"\x01", hashlib.sha256).digest()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for ctr, item in enumerate(sys.argv[4:]):
    t, inner = item.split(":")
    hdr = bytes([int(t), 0, 0, 0]) + spub[:8] + epoch.to_bytes(8, "big") + ctr.to_bytes(8, "big")
    nonce = bytes(4) + ctr.to_bytes(8, "big")
    u.sendto(hdr + AESGCM(key).encrypt(nonce, bytes.fromhex(inner), hdr), (sys.argv[3], 51820))
"""


def ipv6(src, dst):
    """An IPv6 header with no payload (next header 59), as hex."""
    return (bytes([0x60, 0, 0, 0, 0, 0, 59, 64]) + socket.inet_pton(socket.AF_INET6, src)
            + socket.inet_pton(socket.AF_INET6, dst)).hex()


def metric(b, s, name):
    return b.metrics(s).get(name, 0)


def test_cut_link_relays_through_c_and_returns(bed):
    b = bed
    t0 = time.monotonic()
    for src, dst in (("a", "b"), ("b", "a"), ("a", "c"), ("b", "c")):
        wait_for(f"ping h{src} -> h{dst}", lambda: b.ping_ok(src, dst), timeout=10)
    assert b.path("a", "b") == "direct" and b.path("b", "a") == "direct"

    echo = subprocess.Popen(["ip", "netns", "exec", b.n("hb"), sys.executable, "-c", ECHO],
                            stdout=subprocess.PIPE, text=True)
    srv = subprocess.Popen(["ip", "netns", "exec", b.n("hb"), sys.executable, "-c", TCP_SERVER],
                           stdout=subprocess.PIPE, text=True)
    probe = tcp = None
    try:
        assert echo.stdout.readline().strip() == "ready"
        assert srv.stdout.readline().strip() == "listening"
        stop = b.tmp / "stop"
        probe = subprocess.Popen(["ip", "netns", "exec", b.n("ha"), sys.executable, "-c", PROBE,
                                  "fd00:b::2", str(stop)], stdout=subprocess.PIPE, text=True)
        tcp = subprocess.Popen(["ip", "netns", "exec", b.n("ha"), sys.executable, "-c",
                                TCP_CLIENT, "fd00:b::2", str(stop)],
                               stdout=subprocess.PIPE, text=True)
        assert probe.stdout.readline().strip() == "started"
        time.sleep(1.0)  # the stream runs direct first (not a race: nothing waits on it)
        relay_before = metric(b, "c", "peak_overlay_gw_relay_forwarded_total")
        cut_at = time.monotonic()
        b.cut(True)
        wait_for("a relays to b through c", lambda: b.path("a", "b") == "down via c", timeout=5)
        wait_for("b relays to a through c", lambda: b.path("b", "a") == "down via c", timeout=5)
        relayed_at = time.monotonic()
        detected = relayed_at - cut_at
        wait_for("c relays", lambda: metric(b, "c", "peak_overlay_gw_relay_forwarded_total")
                 > relay_before + 50, timeout=10)
        time.sleep(max(0.0, relayed_at + 1.0 - time.monotonic()))  # relayed under traffic
        restored_at = time.monotonic()
        b.cut(False)
        wait_for("a direct again", lambda: b.path("a", "b") == "direct", timeout=10)
        wait_for("b direct again", lambda: b.path("b", "a") == "direct", timeout=10)
        back = time.monotonic() - restored_at
        time.sleep(0.2)  # the stream goes on direct (nothing waits on it)
        stop.write_text("")
        out, _ = probe.communicate(timeout=30)
        res = json.loads(out.strip().splitlines()[-1])
        tcp_out, _ = tcp.communicate(timeout=60)
    finally:
        for p in (probe, tcp, echo, srv):
            if p and p.poll() is None:
                p.kill()
                p.wait()

    got = res["got"]
    during = [t for t in got if cut_at < t < restored_at]
    relayed = [t for t in got if relayed_at < t < restored_at]
    window = [cut_at] + [t for t in got if cut_at < t < restored_at + 0.5]
    gap = max(y - x for x, y in zip(window, window[1:]))
    print(f"\nresil: cut detected by both ends (as seen by polling) in {detected:.2f} s; "
          f"longest echo gap {gap * 1000:.0f} ms; {len(during)} echoes during the "
          f"{restored_at - cut_at:.1f} s cut; {len(got)}/{res['sent']} echoed in all; "
          f"direct again {back:.2f} s after the link came back")
    # echoes flowed through C during the cut, once both ends relayed (1 s of 10 ms echoes);
    # the gap is a figure (target 1 s), printed, not asserted: the machine is shared
    assert len(relayed) > 20, res

    # the TCP stream crossed the cut whole
    n, total, digest = tcp_out.split()
    data = bytes(range(256)) * 64 * int(n)
    assert (int(total), digest) == (len(data), hashlib.sha256(data).hexdigest())

    ma, mb, mc = b.metrics("a"), b.metrics("b"), b.metrics("c")
    assert ma["peak_overlay_gw_relay_sent_total"] > 0 and mb["peak_overlay_gw_relay_sent_total"] > 0
    assert ma["peak_overlay_gw_relay_received_total"] > 0
    assert mb["peak_overlay_gw_relay_received_total"] > 0
    assert ma["peak_overlay_resil_paths_down_total"] >= 1
    assert ma["peak_overlay_resil_paths_relayed"] == 0
    assert mb["peak_overlay_resil_paths_relayed"] == 0
    for m in (ma, mb, mc):
        assert m['peak_overlay_gw_dropped_total{reason="source"}'] == 0
        assert m['peak_overlay_gw_dropped_total{reason="relay"}'] == 0

    # direct again: C relays nothing more
    fwd = metric(b, "c", "peak_overlay_gw_relay_forwarded_total")
    for _ in range(5):
        assert b.ping_ok("a", "b") and b.ping_ok("b", "a")
    assert metric(b, "c", "peak_overlay_gw_relay_forwarded_total") == fwd

    # the probe budget: each gateway's probes, echoes and link-state reports to a peer at
    # most half the pair's bits/s (80 bytes each probe on the wire, the reports counted by
    # their bytes) plus two 8-packet bursts, summed over its 2 peers
    elapsed = time.monotonic() - t0
    for s in SITES:
        m = b.metrics(s)
        ls = m["peak_overlay_resil_linkstate_sent_total"]
        assert ls >= 2, (s, ls)  # every 10 s to each live peer, or when what it hears changed
        sent = (m["peak_overlay_gw_probes_sent_total"] - ls) * 80 + m[
            "peak_overlay_resil_linkstate_sent_bytes_total"]
        assert sent <= 2 * (BUDGET / 16 * elapsed + 16 * 80), (s, sent, elapsed)
        print(f"{s}: {sent} probe bytes in {elapsed:.1f} s to 2 peers, "
              f"{m['peak_overlay_resil_linkstate_sent_bytes_total']} of them link-state")
    # bad relays, sealed with A's key to C on the IPv4 path: one to a destination no site
    # serves and one relayed from a source no site serves are dropped and counted, beside a
    # good one that C forwards (so the sealing is right); last: C now has A in a new epoch
    before = b.metrics("c")
    nsx(b.n("r"), sys.executable, "-c", SEAL, str(b.tmp / "a.key"), b.keys["c"], ADDR["c"],
        "6:" + ipv6("fd00:a::2", "fd00:b::2"), "6:" + ipv6("fd00:a::2", "fd00:d::1"),
        "7:" + ipv6("fd00:d::2", "fd00:c::2"))
    fwd = "peak_overlay_gw_relay_forwarded_total"
    drops = lambda m, r: m[f'peak_overlay_gw_dropped_total{{reason="{r}"}}']
    wait_for("bad relays counted", lambda: (lambda m: (
        m[fwd] - before[fwd], drops(m, "relay") - drops(before, "relay"),
        drops(m, "source") - drops(before, "source")) == (1, 1, 1))(b.metrics("c")))
    b.stop_all_clean()
