"""Regression: an idle peer behind NAT never followed a site that moved (issue 21, mobility).
Site B's gateway changed its IPv4 address while B and C (behind a home-router NAT) had been
idle long enough for their DHT routes to expire (cache-ttl) while their keepalives went on.
B learned its new address from site A and put its new record under the id key only of the
sites in its route cache: none. C's NAT dropped B's packets from the new address, C kept
sending to the old one and never looked B up again: C's `show peers` kept the old endpoint
for good (the old code never followed within 30 s; the fixed one in 0.05 to 1.09 s, printed).
Now a site that moved punches every peer it has an endpoint for, answers each peer's first
packet since at once, and a peer silent for two keepalive periods and 0.5 s is looked up
again by its id, backing off up to 60 s (the second test: it never did).

    hA fd00:a::2   hB fd00:b::2   hC fd00:c::2
    gA 10.0.1.2    gB 10.0.2.2    gC 192.168.3.2 -- natC 10.0.3.2 (masquerade, nothing
      |              | -> .3        |               unsolicited let in)
      +------------- r -------------+-- dn 10.0.9.2 dhtnode

(root; every gateway runs OpenDHT, keepalive 1 s, cache-ttl 5 s.)
"""
import datetime
import os
import re
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "overlay"))
from demo_overlay import DemoBed  # noqa: E402
from ovbed import move_address, nsx, sh, wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

OLD, NEW = "10.0.2.2", "10.0.2.3"


class MoveBed(DemoBed):
    SITES = ("a", "b", "c")
    NATED = ("c",)
    DHT_EXTRA = "  cache-ttl: 5\n  negative-ttl: 1\n"

    def __init__(self, tmp):
        super().__init__(tmp)
        self.p = f"mv{os.getpid() % 10000}"

    def peer(self, s, o):
        """Gateway s's view of site o from `show peers`: (endpoint, state), or None."""
        out = self.ctl(s, "show", "peers").stdout
        m = re.search(rf"^peer dht-{self.ids[o]} (\S+) .* state (\S+)", out, re.M)
        return (m.group(1), m.group(2)) if m else None

    def routed(self, s, prefix):
        return f"dht-route {prefix} " in self.ctl(s, "show", "peers").stdout


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    b = MoveBed(tmp_path_factory.mktemp("move"))
    try:
        b.build()
        b.start_dhtnode()
        b.start_all()
        yield b
    finally:
        b.cleanup()


def log_time(line):
    """The Unix time of a daemon's log line (its UTC ISO stamp with milliseconds)."""
    stamp = line.split(" ", 1)[0].rstrip("Z")
    return datetime.datetime.fromisoformat(stamp).replace(
        tzinfo=datetime.timezone.utc).timestamp()


def established(b):
    """Every pair answering, B seen by A and C at its address, C by B at its NAT's."""
    views = {(s, o): b.peer(s, o) for s in b.SITES for o in b.SITES if s != o}
    return (all(v and v[1] == "answering" for v in views.values())
            and views[("a", "b")][0].startswith(OLD + ":")
            and views[("c", "b")][0].startswith(OLD + ":")
            and views[("b", "c")][0].startswith(b.public("c") + ":"))


def test_idle_peer_follows_moved_site(bed):
    b = bed
    wait_for("every record published", b.published, timeout=30)
    # C first reaches the public sites (they tell it its NAT's mapping, which it
    # republishes), then A reaches B: every pair knows the other
    for s, o in (("c", "a"), ("c", "b"), ("a", "b"), ("b", "c")):
        assert wait_for(f"h{s} -> h{o}", lambda: b.ping_ok(s, o), timeout=30)
    # the pair through C's NAT established both ways (C's first packets race B's through
    # the NAT: the state, not a time, says it settled)
    assert wait_for("every pair answering at its address", lambda: established(b), timeout=30)
    # then idle: B's and C's routes to each other expire; the keepalives go on
    assert wait_for("the idle pair's routes expired", lambda: not b.routed(
        "b", "fd00:c::/64") and not b.routed("c", "fd00:b::/64"), timeout=30)
    assert b.peer("c", "b")[1] == "answering" and b.peer("b", "c")[1] == "answering"
    punches = b.metrics("b").get("peak_overlay_dht_move_punches_total", 0)
    moved_at = time.time()
    move_address(b.n("gb"), "wan", OLD, NEW)
    # C, idle, follows (the old code never did: 30 s is a deadline, not the figure)
    assert wait_for("C follows B to its new address", lambda: (
        b.peer("c", "b") or ("",))[0] == f"{NEW}:51820", timeout=30), b.peer("c", "b")
    log_c = b.logs["c"].read_text()
    first = re.search(rf"^(\S+) \S+ overlay: gateway: peer dht-{b.ids['b']} is at "
                      rf"{re.escape(NEW)}:51820.*$", log_c, re.M)
    assert first, log_c
    # B moved its record to every peer it has an endpoint for (A and C), routes or not
    assert b.metrics("b")["peak_overlay_dht_move_punches_total"] >= punches + 2
    assert wait_for("hC -> hB after the move", lambda: b.ping_ok("c", "b"), timeout=20)
    assert wait_for("hB -> hC after the move", lambda: b.ping_ok("b", "c"), timeout=20)
    mc = b.metrics("c")
    # the figures, from the daemons' logs: B told its new address (by A), C's first packet to
    # the new locator (it goes out as C takes B's record: the punch's or a re-resolve's),
    # and C's endpoint for B moved (B's packets let in)
    told = re.search(rf"^\S+ \S+ overlay: gateway: peer \S+ sees us at {re.escape(NEW)}:",
                     b.logs["b"].read_text(), re.M)
    sent = re.search(rf"^\S+ \S+ overlay: dht: (fd00:b::/64 -> {re.escape(NEW)}|silent peer "
                     rf"dht-{b.ids['b']} re-resolved: {re.escape(NEW)}:).*$", log_c, re.M)
    assert told and sent, (told, sent)
    print(f"after the move: B told its address {log_time(told.group(0)) - moved_at:.2f} s, "
          f"C's first packet to it {log_time(sent.group(0)) - moved_at:.2f} s "
          f"({'punch' if '->' in sent.group(0) else 're-resolve'}), C's endpoint moved "
          f"{log_time(first.group(0)) - moved_at:.2f} s; C's re-resolves "
          f"{mc.get('peak_overlay_dht_reresolves_total', 0):.0f} (newer records taken "
          f"{mc.get('peak_overlay_dht_reresolved_newer_total', 0):.0f}), punches heard "
          f"{mc.get('peak_overlay_dht_punch_heard_total', 0):.0f}")
    for s in b.SITES:
        log = b.logs[s].read_text()
        assert "AddressSanitizer" not in log and "runtime error" not in log, log


CUT = """table ip mvcut {
 chain cut {
  type filter hook forward priority -10;
  ip daddr %s udp dport 51820 drop
  ip saddr %s udp sport 51820 drop
 }
}
"""


def test_silent_peer_reresolved_with_backoff(bed):
    """C's NAT drops every gateway packet to and from B: once B has been silent two
    keepalive periods and 0.5 s, C looks B up again by its id, then after 2.5 s, 5 s, ...
    (no record newer than C's: its endpoint for B stays); the cut undone, B answers again."""
    b = bed
    assert wait_for("hC -> hB", lambda: b.ping_ok("c", "b"), timeout=30)
    assert wait_for("C hears B", lambda: (b.peer("c", "b") or ("", ""))[1] == "answering",
                    timeout=20)
    addr_b = b.peer("c", "b")[0].split(":")[0]
    before = b.metrics("c")
    ep = b.peer("c", "b")[0]
    sh("ip", "netns", "exec", b.n("natc"), "nft", "-f", "-", input=CUT % (addr_b, addr_b))
    try:
        # the first look-up 2.5 s after B's last packet, the second 2.5 s later, the third
        # 5 s after that: three within 20 s (a deadline), never one a tick
        assert wait_for("C re-resolves silent B", lambda: b.metrics("c").get(
            "peak_overlay_dht_reresolves_total", 0) >= before.get(
            "peak_overlay_dht_reresolves_total", 0) + 3, timeout=30)
        t0 = time.monotonic()
        n0 = b.metrics("c")["peak_overlay_dht_reresolves_total"]
        # backing off: the next one is 10 s after the third (2.5 s without the back-off)
        wait_for("4 s more", lambda: time.monotonic() >= t0 + 4, timeout=10)
        assert b.metrics("c")["peak_overlay_dht_reresolves_total"] == n0
        # B did not move: C keeps its endpoint (B may have put a newer record meanwhile, with
        # the same locator: it republishes whenever a peer echoes its mapping, so the count of
        # newer records found is no measure of a move; a CI run saw one)
        assert b.peer("c", "b")[0] == ep
    finally:
        nsx(b.n("natc"), "nft", "delete", "table", "ip", "mvcut", check=False)
    assert wait_for("hC -> hB after the cut", lambda: b.ping_ok("c", "b"), timeout=30)
    assert wait_for("C hears B again", lambda: b.peer("c", "b")[1] == "answering",
                    timeout=20)
