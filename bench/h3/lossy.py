#!/usr/bin/python3
"""A lossy, delayed path in user space: this kernel has neither netem nor sch_fq.

Opens a TUN device (IFF_TUN, no packet information), and writes every packet it reads back
into the same device after --delay-ms, dropping --loss percent of them at random first. The
router of bench/h3/run.py steers what it forwards through the device with policy routing
(packets from its veths: a table whose default route is the device; packets from the device:
the main table), so every packet crossing the router is delayed once and may be lost once,
whatever its protocol (TCP and QUIC alike). The kernel hands the device single packets (it
has no offloads: a GSO packet is segmented before it), so a loss is one wire packet, never a
whole 64 KB aggregate. The delay is constant, so the order is kept.

Bounded: at most --queue packets wait (beyond it a packet is dropped and counted apart).
Prints 'lossy: ready DEV' once the device exists; on SIGTERM or SIGINT prints one line
'lossy: {json}' with its counters (received, dropped, overflow, sent, write_errors, and
queued: still waiting then) and exits 0. With --drops FILE it also writes one line per packet
dropped at random: 'T_NS SRC DST PROTO LEN DPORT' (T_NS: CLOCK_MONOTONIC nanoseconds when the
packet was read, the clock peak h3's clients time their packets by; SRC, DST: the IPv6
addresses; PROTO: the next header, 6 TCP, 17 UDP; LEN: the packet's bytes; DPORT: the TCP or
UDP destination port, '-' for other protocols), so that the benchmark can ask which streams a
drop stalled.

Usage (root, in the router's namespace): lossy.py --dev NAME [--loss PCT] [--delay-ms MS]
                                                  [--seed N] [--queue N] [--drops FILE]"""
import argparse
import collections
import fcntl
import ipaddress
import json
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def drop_line(t_ns, head, length):
    """'T_NS SRC DST PROTO LEN DPORT' for a dropped packet from its first 44 bytes (an IPv6
    header, then TCP's or UDP's ports; '-' for what it lacks)."""
    if len(head) >= 40 and head[0] >> 4 == 6:
        src = ipaddress.IPv6Address(head[8:24]).compressed
        dst = ipaddress.IPv6Address(head[24:40]).compressed
        port = int.from_bytes(head[42:44], "big") if head[6] in (6, 17) and len(head) >= 44 \
            else "-"
        return f"{t_ns} {src} {dst} {head[6]} {length} {port}"
    return f"{t_ns} - - - {length} -"


def write_drops(path, drops):
    with open(path, "w") as f:
        for d in drops:
            f.write(drop_line(*d) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dev", required=True, help="the TUN device's name (15 characters)")
    ap.add_argument("--loss", type=float, default=1.0, help="percent dropped at random (1)")
    ap.add_argument("--delay-ms", type=float, default=5.0, help="one-way delay added (5)")
    ap.add_argument("--seed", type=int, default=None, help="the drops' random seed")
    ap.add_argument("--queue", type=int, default=50000, help="packets waiting at most")
    ap.add_argument("--drops", default=None, help="write the random drops here, one a line")
    a = ap.parse_args()
    if not 0 <= a.loss <= 100 or a.delay_ms < 0 or a.queue < 1 or len(a.dev) > 15:
        ap.error("--loss 0..100, --delay-ms >= 0, --queue >= 1, --dev up to 15 characters")
    rng = random.Random(a.seed)
    p, delay = a.loss / 100, a.delay_ms / 1000
    fd = open_tun(a.dev)
    n = {"received": 0, "dropped": 0, "overflow": 0, "sent": 0, "write_errors": 0}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print(f"lossy: ready {a.dev} loss {a.loss}% delay {a.delay_ms} ms", flush=True)
    drops = []  # (monotonic ns, packet head): formatted at the end, off the packet path
    q = collections.deque()  # (due, packet), due in order: the delay is constant
    po = select.poll()
    po.register(fd, select.POLLIN)
    mono, rd, wr, rand = time.monotonic, os.read, os.write, rng.random
    while not stop:
        now = mono()
        wait = 200 if not q else max(0, (q[0][0] - now) * 1000)
        try:
            po.poll(wait)
        except InterruptedError:
            continue
        now = mono()
        while True:
            try:
                pkt = rd(fd, 65536)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            n["received"] += 1
            if p and rand() < p:
                n["dropped"] += 1
                if a.drops is not None:
                    drops.append((int(now * 1e9), pkt[:44], len(pkt)))
            elif len(q) >= a.queue:
                n["overflow"] += 1
            else:
                q.append((now + delay, pkt))
        now = mono()
        while q and q[0][0] <= now:
            try:
                wr(fd, q.popleft()[1])
                n["sent"] += 1
            except OSError:
                n["write_errors"] += 1
    n["queued"] = len(q)  # still waiting when stopped: neither sent nor dropped
    if a.drops is not None:
        write_drops(a.drops, drops)
    print("lossy: " + json.dumps(n), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
