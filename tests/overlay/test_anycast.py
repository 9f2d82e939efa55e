"""The anycast slave in network namespaces (root): fd00:ac::1 is served by hosts at sites B
and C; sites A and C reach each other only through a UDP forwarder in the router that holds
every packet 20 ms (this kernel has no netem), so B is the nearer by measured RTT. New flows
from hA go to B; when gB's daemon is killed under a stream the stream's flow moves to C (the
gap is measured and printed, not asserted: the machine is shared); when gB is back, a new
flow goes to B again while the moved flow stays on C.

    hA fd00:a::2      hB fd00:b::2 fd00:ac::1      hC fd00:c::2 fd00:ac::1
    gA 10.0.1.2       gB 10.0.2.2                  gC 10.0.3.2
      +--------------- r (10.0.9.1: gA's way to gC, +20 ms) ---+
"""
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from ovbed import nsx, sh, wait_for
from pubbed import ADDR, SITES, SLOW_FORWARDER, PubBed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


SERVE = r"""
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("fd00:ac::1", 7000))
print("ready", flush=True)
while True:
    d, a = s.recvfrom(64)
    s.sendto(sys.argv[1].encode() + b" " + d, a)
"""

# One socket (one flow) sending every 10 ms for argv[1] seconds or until SIGTERM; prints
# (time, site) of each answer (CLOCK_MONOTONIC: the same in every namespace).
STREAM = r"""
import json, select, signal, socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.setblocking(False)
end = time.monotonic() + float(sys.argv[1]); nxt = time.monotonic(); got = []
stop = [False]
signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
print("started", flush=True)
while not stop[0] and time.monotonic() < end:
    if time.monotonic() >= nxt:
        s.sendto(b"x", ("fd00:ac::1", 7000)); nxt += 0.01
    if select.select([s], [], [], max(0.0, nxt - time.monotonic()))[0]:
        try:
            got.append((time.monotonic(), s.recv(64).split()[0].decode()))
        except BlockingIOError:
            pass
print(json.dumps(got))
"""

# argv[1] new flows (sockets), one datagram each (retried): which site answered each
FLOWS = r"""
import socket, sys
out = []
for i in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.settimeout(0.3)
    for _ in range(10):
        s.sendto(b"x", ("fd00:ac::1", 7000))
        try:
            out.append(s.recv(64).split()[0].decode()); break
        except socket.timeout:
            pass
    else:
        out.append("none")
print(" ".join(out))
"""


class AnyBed(PubBed):
    def build(self):
        super().build(
            resil="resiliency:\n  dead-ms: 600\n",
            endpoint=lambda s, o: "10.0.9.1" if (s, o) == ("a", "c") else ADDR[o],
            prefixes=lambda o: f"fd00:{o}::/64" + (", fd00:ac::/64" if o != "a" else ""),
            extra=lambda s: ("anycast:\n  - prefix: fd00:ac::/64\n    sites: [b, c]\n"
                             if s == "a" else ""))
        sh("ip", "-n", self.n("r"), "addr", "add", "10.0.9.1/32", "dev", "lo")
        # gA and gC only through the forwarder: gC's own packets to gA are dropped, so gC
        # learns gA's endpoint from gA's packets (the forwarder's socket) and answers there
        nsx(self.n("r"), "nft", "-f", "-", input=(
            "table ip slow {\n chain slowfw {\n  type filter hook forward priority 0;\n"
            f"  ip saddr {ADDR['a']} ip daddr {ADDR['c']} drop\n"
            f"  ip saddr {ADDR['c']} ip daddr {ADDR['a']} drop\n" " }\n}\n"))
        serve_anycast(self)

    def members(self):
        return anycast_members(self)


def serve_anycast(b):
    """hB and hC serve fd00:ac::1, their gateways routing fd00:ac::/64 to them."""
    for s in ("b", "c"):
        sh("ip", "-n", b.n(f"h{s}"), "addr", "add", "fd00:ac::1/64", "dev", "lan", "nodad")
        sh("ip", "-n", b.n(f"g{s}"), "-6", "route", "add", "fd00:ac::/64", "via",
           f"fd00:{s}::2", "dev", "lan")


def anycast_members(b):
    """{site name at A: (healthy, rtt_us or None)} from gA's anycast show lines."""
    out = b.ctl("a", "show", "peers").stdout
    rows = re.findall(r"^anycast fd00:ac::/64 (\S+) (\S+) rtt-us (\S+)", out, re.M)
    return {site: (state == "healthy", None if rtt == "-" else int(rtt))
            for site, state, rtt in rows}


@contextlib.contextmanager
def anycast_running(b, dht=False):
    """Builds bed b, with its DHT node if dht, and runs the router's forwarder (gC 20 ms
    further from gA), the anycast servers on hB and hC, and every site's gateway; all of
    it ends, and b is cleaned up, when the block does."""
    procs = []
    try:
        b.build()
        if dht:
            b.start_dhtnode()
        for ns, *argv in (["r", SLOW_FORWARDER, ADDR["c"], "10.0.3.1", "0.02"],
                          ["hb", SERVE, "b"], ["hc", SERVE, "c"]):
            p = subprocess.Popen(["ip", "netns", "exec", b.n(ns), sys.executable, "-c", *argv],
                                 stdout=subprocess.PIPE, text=True)
            procs.append(p)
            assert p.stdout.readline().strip() == "ready"
        for s in SITES:
            b.start(s)
        yield b
    finally:
        for p in procs:
            p.kill()
            p.wait()
        b.cleanup()


@pytest.fixture
def bed(tmp_path):
    with anycast_running(AnyBed(tmp_path, "ac")) as b:
        yield b


def test_anycast_nearest_sticky_failover(bed):
    b = bed
    # both members healthy and measured; B is the nearer (C is 40 ms further away)
    wait_for("both members measured", lambda: (lambda m: len(m) == 2 and all(
        h and r for h, r in m.values()))(b.members()), timeout=15)
    m = b.members()
    assert m["b"][1] < m["c"][1], m
    flows = nsx(b.n("ha"), sys.executable, "-c", FLOWS, "6", timeout=60).stdout.split()
    assert flows == ["b"] * 6, flows

    # the stream runs until it has shown what it is for (conditions below, not a fixed 7 s
    # that a loaded machine's kill, restart and health checks may outlast)
    stream = subprocess.Popen(["ip", "netns", "exec", b.n("ha"), sys.executable, "-c", STREAM,
                               "300"], stdout=subprocess.PIPE, text=True)
    to_b, to_c = (f'peak_overlay_anycast_packets_total{{prefix="fd00:ac::/64",site="{x}"}}'
                  for x in "bc")
    try:
        b0 = b.metrics("a").get(to_b, 0)
        assert stream.stdout.readline().strip() == "started"
        # the stream runs on B first: 50 of its packets sent there
        wait_for("the stream on B", lambda: b.metrics("a").get(to_b, 0) >= b0 + 50, timeout=30)
        killed_at = time.monotonic()
        b.stop("b")  # gB's daemon dies: its TUN and routes go with it
        wait_for("b unhealthy", lambda: not b.members()["b"][0], timeout=10)
        b.start("b")
        wait_for("b healthy again", lambda: b.members()["b"][0], timeout=15)
        back_at = time.monotonic()
        # a new flow goes to the nearest again: B
        flows = nsx(b.n("ha"), sys.executable, "-c", FLOWS, "2", timeout=60).stdout.split()
        assert flows == ["b", "b"], flows
        # the stream's flow went on after B was back: 50 more of its packets, all to C
        # (its answers are checked below)
        c0 = b.metrics("a").get(to_c, 0)
        wait_for("the stream on after B is back", lambda: b.metrics("a").get(to_c, 0) >= c0 + 50,
                 timeout=30)
        stream.send_signal(signal.SIGTERM)
        out, _ = stream.communicate(timeout=60)
    finally:
        if stream.poll() is None:
            stream.kill()
            stream.wait()
    got = json.loads(out.strip().splitlines()[-1])
    before = [s for t, s in got if t < killed_at]
    after = [(t, s) for t, s in got if t > killed_at]
    assert before and set(before) == {"b"}, before
    first_c = next(t for t, s in after if s == "c")
    last_b = max([t for t, s in got if s == "b" and t < first_c])
    gap = first_c - last_b
    print(f"\nanycast: failover gap {gap * 1000:.0f} ms (last answer from B to first from C); "
          f"{len(got)} answers")
    # the gap is a figure (target 1 s), printed, not asserted: the machine is shared
    # the moved flow stays on C though B is back
    late = [s for t, s in got if t > back_at]
    assert late and set(late) == {"c"}, late
    ma = b.metrics("a")
    assert ma["peak_overlay_anycast_flows_moved_total"] >= 1
    assert ma['peak_overlay_anycast_packets_total{prefix="fd00:ac::/64",site="c"}'] > 0
    assert ma["peak_overlay_anycast_flows_evicted_total"] == 0
    for s in SITES:
        assert b.stop(s) == 0, b.logs[s].read_text()
        log = b.logs[s].read_text()
        assert "AddressSanitizer" not in log and "runtime error" not in log, log
