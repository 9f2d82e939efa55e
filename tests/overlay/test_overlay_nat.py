"""The overlay across the three NAT kinds (root; tests/overlay/nat_matrix.py draws the
eight-site bed: two public sites, two each behind full-cone, address-restricted and
symmetric NATs built with nftables, OpenDHT in every gateway).

- The NAT matrix: every ordered pair of sites pings and opens a TCP connection; public sites
  are reached directly, NATed ones at their NAT's mapping, NATed pairs punch (a symmetric NAT
  on one side included: the other side learns its per-destination port from its first
  authenticated packet), and the two symmetric sites, which no hole can be punched for, reach
  each other (ping and the TCP echo) through a relay, a site whose NAT is not
  endpoint-dependent, that `show peers` names. The matrix is printed (pytest -s shows it).
- No relay (test_no_relay_unreachable, last: it cuts site 7 off from every relay): the old
  behaviour stands, the reason said (ICMPv6 address unreachable to the host, `show peers`
  state unreachable:both-nats-endpoint-dependent, the gauge, a warning), never a silent loss.
- Mobility (test_locator_moves): a site's public address changes under traffic; its peers
  behind every kind of NAT follow it (the gaps are printed), a TCP connection survives.
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from nat_matrix import (KIND, RELAYED, SITES, TCP_SERVER, UNPUNCHABLE, MatrixBed, can_relay,
                        check, edm, expect_relayed, print_matrix, run_matrix)
from ovbed import move_address, nsx, sh, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    b = MatrixBed(tmp_path_factory.mktemp("nat"))
    t0 = time.monotonic()
    try:
        b.build()
        print(f"bed built ({time.monotonic() - t0:.1f} s)")
        b.start_dhtnode()
        b.start_all()
        print(f"daemons ready ({time.monotonic() - t0:.1f} s)")
        yield b
    finally:
        b.cleanup()


def test_nat_matrix(bed):
    b = bed
    m = run_matrix(b, deadline_s=25)
    print_matrix(b, m)
    assert not check(m), "\n".join(check(m))
    relays = {b.ids[r]: r for r in SITES if can_relay(r)}
    for (s, o), c in m.items():
        if expect_relayed(s, o):  # through a site whose NAT is not endpoint-dependent
            r = RELAYED.search(c["line"])
            assert r and r.group(1).removeprefix("dht-") in relays, c

    def same_relay():  # both ends pick the lowest id they both can use, without talking
        r7, r8 = (RELAYED.search(b.peer_line(s, o)) for s, o in (("7", "8"), ("8", "7")))
        return r7 and r8 and r7.group(1) == r8.group(1)
    assert wait_for("7 and 8 relay through the same site", same_relay, timeout=10)
    for s in SITES:
        mt = b.metrics(s)
        sym = edm(s)
        assert mt["peak_overlay_gw_nat_endpoint_dependent"] == (1 if sym else 0), s
        # the kind as the site judged it from its peers' reports (awaited: a loaded machine's
        # reports may come after the matrix's last answer)
        want = "endpoint-dependent" if sym else "endpoint-independent"
        assert wait_for(f"g{s} judges its NAT", lambda: b.nat_seen(s) == want, timeout=30)
        unreach = sum(v for k, v in mt.items()
                      if k.startswith("peak_overlay_peer_unreachable{"))
        assert unreach == 0, (s, unreach)
        if sym:
            assert mt["peak_overlay_gw_nat_relayed_total"] >= 1, s
            log = b.logs[s].read_text()
            assert "no hole can be punched" in log and " is relayed via dht-" in log
        if KIND[s] == "double":  # relayed to the endpoint-dependent sites, found by trying
            assert mt["peak_overlay_gw_nat_relayed_total"] >= 1, s
            assert "no answer to our packets, and its NAT maps ports per destination" in \
                b.logs[s].read_text()
    assert sum(b.metrics(r)["peak_overlay_gw_relay_forwarded_total"]
               for r in relays.values()) >= 2
    # a relayed site answers, if not directly: its route is kept, not dropped as silent and
    # looked up again every 5 s (3 s plus two keepalive periods) while pings go through
    silent = {s: b.metrics(s)["peak_overlay_dht_routes_silent_total"] for s in ("7", "8")}
    r = nsx(b.n("h7"), "ping", "-6", "-n", "-c", "30", "-i", "0.2", "fd00:8::2", check=False)
    assert int(re.search(r"(\d+) received", r.stdout).group(1)) >= 27, r.stdout
    for s in ("7", "8"):
        assert b.metrics(s)["peak_overlay_dht_routes_silent_total"] == silent[s], s
    # a symmetric site published its NAT's kind once, not a new port per peer and keepalive
    for s in ("7", "8", "10"):
        assert b.metrics(s)["peak_overlay_gw_mapping_changes_total"] <= 3, s
    for s in SITES:
        log = b.logs[s].read_text()
        assert not re.search(r" (error|crit|alert|emerg) ", log), log
        assert "AddressSanitizer" not in log and "runtime error" not in log, log


def test_double_nat_relayed(bed):
    """A double-NAT pair relayed (issue 21): site 10, behind a home NAT and a carrier NAT
    with fully-random ports, and site 7, behind a symmetric NAT: both endpoint-dependent, no
    hole can be punched. Both ends relay through the same site R (not endpoint-dependent); a
    TCP connection from h10 to h7 echoes 1 KiB every 50 ms for 3 s and is kept throughout,
    and it went through R: R's forwarded relay packets, 10's relayed sends and 7's relayed
    receipts all grow by at least its echoes."""
    b = bed
    relays = {"dht-" + b.ids[r]: r for r in SITES if can_relay(r)}

    def same_relay():
        a, c = (RELAYED.search(b.peer_line(s, o)) for s, o in (("10", "7"), ("7", "10")))
        return a and c and a.group(1) == c.group(1) and a.group(1)
    assert wait_for("h10 -> h7", lambda: b.ping_ok("10", "7"), timeout=20)
    via = wait_for("10 and 7 relay through the same site", same_relay, timeout=20)
    r = relays[via]
    counts = (lambda: (b.metrics(r)["peak_overlay_gw_relay_forwarded_total"],
                       b.metrics("10")["peak_overlay_gw_nat_relayed_total"],
                       b.metrics("7")["peak_overlay_gw_relay_received_total"]))
    before = counts()
    srv = subprocess.Popen(["ip", "netns", "exec", b.n("h7"), sys.executable, "-c", TCP_SERVER],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "listening"
        tick = subprocess.run(["ip", "netns", "exec", b.n("h10"), sys.executable, "-c", TICKER,
                               "fd00:7::2", "3"], capture_output=True, text=True, timeout=60)
    finally:
        srv.kill()
        srv.wait()
    assert tick.returncode == 0, tick.stderr  # the connection was kept throughout
    n = int(tick.stdout.split()[0])
    after = counts()
    grown = [a - b for a, b in zip(after, before)]
    print(f"h10 -> h7 relayed via site {r}: TCP kept, {n} echoes; relay forwarded "
          f"{grown[0]:.0f}, 10 relayed {grown[1]:.0f}, 7 received relayed {grown[2]:.0f}")
    assert n >= 10 and all(g >= n for g in grown), (n, grown)
    assert same_relay() == via


TICKER = r"""
import signal, socket, sys, time
c = socket.create_connection((sys.argv[1], 5003), timeout=10)
stop = [False]
signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
msg = b"x" * 1024; worst = 0.0; n = 0; end = time.monotonic() + float(sys.argv[2])
while not stop[0] and time.monotonic() < end:
    t = time.monotonic(); c.sendall(msg); got = b""
    while len(got) < len(msg):
        d = c.recv(65536)
        if not d: raise SystemExit("closed")
        got += d
    worst = max(worst, time.monotonic() - t); n += 1
    time.sleep(0.05)
print(n, f"{worst:.3f}", flush=True)
"""


class Pinger:
    """ping -D from site s's host to site o's, every 0.1 s until stop(); its reply times
    (Unix time) read as they come."""

    def __init__(self, b, s, o):
        self.p = subprocess.Popen(["ip", "netns", "exec", b.n(f"h{s}"), "ping", "-6", "-n", "-D",
                                   "-i", "0.1", "-w", "300", f"fd00:{o}::2"],
                                  stdout=subprocess.PIPE, text=True)
        self.times = []
        self.t = threading.Thread(target=self.read, daemon=True)
        self.t.start()

    def read(self):
        for line in self.p.stdout:
            self.times.extend(reply_times(line))

    def since(self, t):
        return sum(1 for x in self.times if x > t)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        self.p.wait(timeout=10)
        self.t.join(timeout=10)


def reply_times(out):
    """The Unix times of a `ping -D` run's replies."""
    return [float(t) for t in re.findall(r"^\[([\d.]+)\] \d+ bytes from", out, re.M)]


def largest_gap(times, start, end):
    """The largest time between replies around [start, end] (the end of the run counts)."""
    around = sorted([t for t in times if start - 1 <= t <= end] + [end])
    return max(b - a for a, b in zip(around, around[1:])) if len(around) > 1 else end - start


def junk_to_old_address_dropped(b, s, old, new):
    """A datagram from g1 to NATed site s's old address, then one to its new one (r still
    knows the old address's link address for seconds): only the second reaches the gateway
    (counted malformed). The bed's port forwards once took the first too, and the gateway
    answered from the old address through the NAT's conntrack: a peer probing a stale
    record then had two paths to the site alive, a roaming storm (see the commit)."""
    mal = 'peak_overlay_gw_dropped_total{reason="malformed"}'
    n = b.metrics(s)[mal]
    for addr in (old, new):  # the old address first, on the same path: it would be first
        nsx(b.n("g1"), sys.executable, "-c", "import socket, sys; socket.socket(socket.AF_INET, "
            "socket.SOCK_DGRAM).sendto(b'junk', (sys.argv[1], 51820))", addr)
    assert wait_for("the junk to the new address", lambda: b.metrics(s)[mal] > n, timeout=10)
    assert b.metrics(s)[mal] == n + 1, "the NAT forwarded a packet to its old address"


# who moves: (namespace, device, old address, new address, link bounced): site 3's NAT gets
# another public address (its link goes down and up, as a router reconnecting does: the
# kernel forgets its masquerade mappings), site 2's public gateway gets another address
MOVES = {"3": ("nat3", "nout", "10.0.3.2", "10.0.3.3", True),
         "2": ("g2", "wan", "10.0.2.2", "10.0.2.3", False)}


@pytest.mark.parametrize("mover", ["3", "2"])
def test_locator_moves(bed, mover):
    """A site's public IPv4 address changes while its host pings sites 1 (public), 4 (full
    cone), 5 (restricted) and 7 (symmetric), site 1 pings it, and a TCP connection to site 5
    ticks every 50 ms. The site keeps its prefix; the public and full-cone peers roam on its
    first authenticated packet from the new address; the restricted and symmetric ones,
    whose NATs drop that packet, hear its new record on their id keys (it republishes at
    once and puts it there when a peer tells it its new address) and send to the new
    address, which opens their NATs.

    Asserted: every ping answered again after the move (the traffic runs until it is, not
    for a fixed window a loaded machine may not fit the move into), the TCP connection kept,
    and the mechanism's counters and log lines. The gaps (the issue's target: 1 s) are
    printed; bench/overlay measures them."""
    b = bed
    ns, dev, old, new, bounce = MOVES[mover]
    peers = ("1", "4", "5", "7")
    for o in peers:
        assert wait_for(f"h{mover} -> h{o}", lambda: b.ping_ok(mover, o), timeout=20)
    assert wait_for(f"h1 -> h{mover}", lambda: b.ping_ok("1", mover), timeout=20)
    probes = sum(b.metrics(s).get("peak_overlay_gw_locator_probes_total", 0) for s in ("5", "7"))
    steady = [s for s in SITES if s != mover and not edm(s)]
    changes = {s: b.metrics(s)["peak_overlay_gw_mapping_changes_total"] for s in steady}
    srv = subprocess.Popen(["ip", "netns", "exec", b.n("h5"), sys.executable, "-c", TCP_SERVER],
                           stdout=subprocess.PIPE, text=True)
    procs, pings = [], {}
    try:
        assert srv.stdout.readline().strip() == "listening"
        tick = subprocess.Popen(["ip", "netns", "exec", b.n(f"h{mover}"), sys.executable, "-c",
                                 TICKER, "fd00:5::2", "300"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(tick)
        for s, o in [(mover, o) for o in peers] + [("1", mover)]:
            pings[(s, o)] = Pinger(b, s, o)
        # the ticker and the pings are running (the ticker's connection answered once, every
        # ping answered), then a second and a half of traffic before the move
        assert wait_for("traffic flowing", lambda: b.metrics(mover).get(
            'peak_overlay_peer_rx_packets_total{peer="dht-%s"}' % b.ids["5"], 0) > 0
            and all(pg.times for pg in pings.values()) and tick.poll() is None, timeout=30)
        start = time.time()
        assert wait_for("1.5 s of replies", lambda: all(pg.since(start + 1.5)
                                                        for pg in pings.values()), timeout=30)
        assert tick.poll() is None
        moved_at = time.time()
        move_address(b.n(ns), dev, old, new, bounce)
        b.addr[mover] = new
        if bounce:  # the NAT forwards to its gateway only what comes to its new address now
            junk_to_old_address_dropped(b, mover, old, new)
        # every pair answered again, 10 replies each since the move (a second of traffic)
        assert wait_for("every ping answered again after the move", lambda: all(
            pg.since(moved_at) >= 10 for pg in pings.values()), timeout=60), \
            {k: pg.since(moved_at) for k, pg in pings.items()}
        until = time.time()
        # the mechanism, awaited with the traffic still going (it stops at the end of this
        # block: what the traffic brings must be in first)
        assert wait_for("the move's punches", lambda: b.metrics(mover)[
            "peak_overlay_dht_move_punches_total"] >= 4, timeout=30)
        assert wait_for("the new locator seen", lambda: f"sees us at {new}:51820" in
                        b.logs[mover].read_text(), timeout=30)
        assert wait_for("the locator probes", lambda: sum(
            b.metrics(s).get("peak_overlay_gw_locator_probes_total", 0)
            for s in ("5", "7")) > probes, timeout=30)
        # and as long as a fixed run of the traffic used to last after the move (g6's
        # following below came after it), as a minimum, not a window to fit in
        wait_for("3.5 s of traffic after the move", lambda: time.time() >= moved_at + 3.5,
                 timeout=30)
        tick.send_signal(signal.SIGTERM)
        out, err = tick.communicate(timeout=30)
        assert tick.returncode == 0, err  # the TCP connection was kept throughout
        # the sites that did not move kept their public mapping and their NAT's kind: no
        # two paths to the mover alive at once, its packets from the old and the new address
        # (each roam answered, each answer roaming the other end: thousands of mapping
        # changes a second, sites judging their NATs endpoint-dependent and dropping out as
        # relays, as a port forward to the old address once did here)
        for s in steady:
            m = b.metrics(s)
            assert m["peak_overlay_gw_mapping_changes_total"] <= changes[s] + 1, s
            assert m["peak_overlay_gw_nat_endpoint_dependent"] == 0, s
        n, worst = out.split()
        gaps = {}
        for k, pg in pings.items():
            pg.stop()
            gaps[k] = largest_gap(pg.times, moved_at, until)
        print(f"site {mover} moved ({old} -> {new}): TCP to h5 kept, {n} echoes, worst "
              f"{float(worst):.2f} s; largest gap between ping replies: "
              + ", ".join(f"h{s}->h{o} {g:.2f} s" for (s, o), g in gaps.items()))
    finally:
        for pg in pings.values():
            if pg.p.poll() is None:
                pg.p.kill()
            pg.p.wait()
        for p in procs + [srv]:
            if p.poll() is None:
                p.kill()
            p.wait()
    # the record moved too: site 6 (restricted), idle meanwhile, follows, and the site keeps
    # its prefix (g6 hears it at its next look-up of the record: 30 s is a deadline for a
    # record never moved, not a figure; 10 s from the end of a fixed 5 s run was near it)
    t6 = time.time()
    assert wait_for(f"g6 follows site {mover}",
                    lambda: f" {new}:51820 " in b.peer_line("6", mover), timeout=30)
    print(f"g6 followed {time.time() - moved_at:.1f} s after the move "
          f"({time.time() - t6:.1f} s of waiting here)")
    assert b.ping_ok("6", mover)


def cut_relays(b):
    """site 7's NAT's table that drops every gateway packet to and from the sites that could
    relay for it (can_relay)"""
    addrs = ", ".join(b.addr[r] for r in SITES if can_relay(r))
    return ("table ip relaycut {\n chain cut {\n  type filter hook forward priority -10;\n"
            f"  ip daddr {{ {addrs} }} udp dport 51820 drop\n"
            f"  ip saddr {{ {addrs} }} udp sport 51820 drop\n }}\n}}\n")


def test_no_relay_unreachable(bed):
    """Regression check of the behaviour without a relay: site 7's NAT drops every gateway
    packet to and from the sites that could relay (1 to 6); once they have been silent for
    three keepalive periods none is usable, and site 8 is unreachable again with the reason
    said (the host gets ICMPv6 address unreachable at once, `show peers` and the gauge say
    why, a warning is logged once). The cut is then undone and the relay comes back."""
    b = bed
    nat7 = b.n("nat7")
    sh("ip", "netns", "exec", nat7, "nft", "-f", "-", input=cut_relays(b))
    try:
        assert wait_for("g7 has no relay for site 8",
                        lambda: UNPUNCHABLE in b.peer_line("7", "8"), timeout=20)
        # the host is told at once (the route may be looked up again first: 8 is silent)
        assert wait_for("h7 told site 8 is unreachable", lambda: "Address unreachable" in nsx(
            b.n("h7"), "ping", "-6", "-n", "-c", "1", "-W", "1", "fd00:8::2",
            check=False).stdout, timeout=20)
        mt = b.metrics("7")
        assert mt['peak_overlay_peer_unreachable{peer="dht-%s",'
                  'reason="both-nats-endpoint-dependent"}' % b.ids["8"]] == 1
        assert mt["peak_overlay_gw_unpunchable_total"] >= 1
        assert "no relay is usable" in b.logs["7"].read_text()
    finally:
        sh("ip", "netns", "exec", nat7, "nft", "delete", "table", "ip", "relaycut")
    assert wait_for("g7 relays to site 8 again",
                    lambda: RELAYED.search(b.peer_line("7", "8")), timeout=20)
    assert wait_for("h7 -> h8 relayed", lambda: b.ping_ok("7", "8"), timeout=20)


def test_relay_loses_far_site(bed):
    """Relay reachability: the two symmetric sites are relayed through R (the lowest id both
    can use); then site 8's NAT drops every UDP packet to and from R, so R stops hearing 8
    while 7 still hears R. R refuses 7's relay requests for 8 (it has not heard 8 lately) and
    tells 7 (OVW_RELAY_LOST); 7 takes the next relay at once, the one 8 takes too (it no longer
    hears R), and h7 reaches h8 again. (Before: 7 kept R, which forwarded into the cut.)"""
    b = bed
    relays = {b.ids[r]: r for r in SITES if can_relay(r)}
    assert wait_for("h7 -> h8 relayed", lambda: b.ping_ok("7", "8"), timeout=20)
    # settled: both ends on the lowest id of all (after the test above, relays come back
    # one by one, and a lower id taken later would look like a move)
    low = "dht-" + min(relays)

    def settled():
        m7, m8 = (RELAYED.search(b.peer_line(s, o)) for s, o in (("7", "8"), ("8", "7")))
        return m7 and m8 and m7.group(1) == m8.group(1) == low
    t_settle = time.monotonic()
    assert wait_for(f"7 and 8 relay through {low}", settled, timeout=30)
    print(f"7 and 8 settled on {low} in {time.monotonic() - t_settle:.1f} s")
    m = RELAYED.search(b.peer_line("7", "8"))
    r = relays[m.group(1).removeprefix("dht-")]
    cut = (f"table ip farcut {{\n chain cut {{\n  type filter hook forward priority -10;\n"
           f"  ip daddr {b.addr[r]} meta l4proto udp drop\n"
           f"  ip saddr {b.addr[r]} meta l4proto udp drop\n }}\n}}\n")
    lost = b.metrics("7").get("peak_overlay_gw_relay_lost_received_total", 0)
    sh("ip", "netns", "exec", b.n("nat8"), "nft", "-f", "-", input=cut)
    # 7 learns that R lost 8 from its packets through R: a ping stream meanwhile (until 7
    # moved: killed below, its -w only a bound for a hung test)
    ping = subprocess.Popen(["ip", "netns", "exec", b.n("h7"), "ping", "-6", "-n", "-q", "-i",
                             "0.2", "-w", "300", "fd00:8::2"], stdout=subprocess.DEVNULL)
    try:
        def moved():
            m2 = RELAYED.search(b.peer_line("7", "8"))
            return m2 and m2.group(1) != m.group(1)
        # (R judges 8 unheard after its own timers, which an ASan build on a loaded machine
        # runs late: 20 s fell short once; 60 s is a deadline, not a figure)
        assert wait_for(f"7 leaves relay {r} for another", moved, timeout=60)
        out = nsx(b.n("h7"), "ping", "-6", "-n", "-c", "20", "-i", "0.2", "fd00:8::2",
                  check=False).stdout
        assert int(re.search(r"(\d+) received", out).group(1)) >= 15, out
        assert b.metrics(r)["peak_overlay_gw_relay_lost_sent_total"] >= 1
        assert b.metrics("7")["peak_overlay_gw_relay_lost_received_total"] > lost
        assert f"relay dht-{b.ids[r]} does not hear peer dht-{b.ids['8']}" in \
            b.logs["7"].read_text()
    finally:
        ping.kill()
        ping.wait()
        sh("ip", "netns", "exec", b.n("nat8"), "nft", "delete", "table", "ip", "farcut")
    assert wait_for("h7 -> h8 after the cut", lambda: b.ping_ok("7", "8"), timeout=20)
