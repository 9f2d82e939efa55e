"""The multicast slave in network namespaces (root): 16 member sites (MCAST_MEMBERS to change
it) and 2 others behind their gateways (mcbed.py). Hosts join ff0e::db8:1 with a real socket
(the kernel's MLD reports reach the gateways' queriers); the sender's gateway learns every
member site from their announcements. A bounded stream from site 50 reaches every member
host whole, and no packet reaches a site that did not join (its gateway gets none: no copy is
sent there). Then member a0's listener leaves (its socket closes: the kernel's MLD leave;
gateway a0's specific queries go unanswered, it announces the leave) and site c0 joins: a
second stream reaches c0 whole and nothing of it reaches a0, the others all of it."""
import os

import pytest
from mcbed import McBed
from ovbed import nsx, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

MEMBERS = int(os.environ.get("MCAST_MEMBERS", "16"))
N = 300


def started(tmp_path, tag, *build, **kw):
    """A McBed built with build/kw and every daemon started, cleaned up after (yield from)."""
    b = McBed(tmp_path, tag)
    try:
        b.build(*build, **kw)
        b.start_all()
        yield b
    finally:
        b.cleanup()


@pytest.fixture
def bed(tmp_path):
    yield from started(tmp_path, "mc", MEMBERS, 2)


def delivered(b, s):
    m = b.metrics(s)
    return (m.get('peak_overlay_mcast_peer_packets_total{result="delivered"}', 0),
            sum(v for k, v in m.items() if k.startswith("peak_overlay_mcast_peer_packets")))


def test_mcast_members_join_leave(bed):
    b = bed
    paths = {s: b.join(s) for s in b.members}
    want = set(b.members)
    wait_for("the sender's gateway knows every member site",
             lambda: b.members_of("50")[1] == want, timeout=60)
    for s in b.members:
        assert b.members_of(s)[0], s  # each member's gateway has its listener
    b.send("one", N)
    wait_for("every member got the first stream",
             lambda: all(len(b.got(paths[s], "one")) >= N for s in b.members), timeout=60)
    for s in b.members:
        assert sorted(b.got(paths[s], "one")) == list(range(N)), s
    m = b.metrics("50")
    assert m['peak_overlay_mcast_lan_packets_total{result="forwarded"}'] == N
    assert m['peak_overlay_mcast_copies_total{result="ok"}'] == N * MEMBERS
    for s in b.others:  # no copy went to a site without listeners
        assert delivered(b, s) == (0, 0), s

    # a0 leaves, c0 joins
    left, joined = b.members[0], b.others[0]
    b.leave(left)
    pc = b.join(joined)
    want = (want - {left}) | {joined}
    wait_for("the sender's gateway has a0 out and c0 in",
             lambda: b.members_of("50")[1] == want, timeout=60)
    assert not b.members_of(left)[0]
    left_before = delivered(b, left)
    b.send("two", N)
    stay = [s for s in b.members if s != left]
    wait_for("every member got the second stream",
             lambda: all(len(b.got(p, "two")) >= N for p in [pc] + [paths[s] for s in stay]),
             timeout=60)
    assert sorted(b.got(pc, "two")) == list(range(N))
    for s in stay:
        assert sorted(b.got(paths[s], "two")) == list(range(N)), s
    assert b.got(paths[left], "two") == []
    assert delivered(b, left) == left_before  # no copy went there any more
    assert delivered(b, b.others[1]) == (0, 0)
    assert b.metrics(left)["peak_overlay_mcast_queries_total"] > 0
    for s in list(b.procs):
        assert b.stop(s) == 0, b.logs[s].read_text()
        log = b.logs[s].read_text()
        assert "AddressSanitizer" not in log and "runtime error" not in log, log


TREE_MEMBERS, FANOUT = 12, 3


@pytest.fixture
def bed_tree(tmp_path):
    yield from started(tmp_path, "mt", TREE_MEMBERS, 2,
                       mc_extra=f"  tree-above: 4\n  tree-fanout: {FANOUT}\n")


def tree_counts(b, s):
    """(tree packets sent, received, plain copies sent, sites unknown) of g<s>."""
    m = b.metrics(s)
    return (m.get('peak_overlay_mcast_tree_packets_total{result="sent"}', 0),
            m.get('peak_overlay_mcast_tree_packets_total{result="received"}', 0),
            m.get('peak_overlay_mcast_copies_total{result="ok"}', 0),
            m.get("peak_overlay_mcast_tree_unknown_total", 0))


def test_mcast_distribution_tree(bed_tree):
    """12 member sites, tree-above 4, fanout 3: the sender's gateway sends each packet to 3
    member gateways only (an OVW_MCAST_TREE packet each, with the 3 sites of its part to pass
    it on to), they pass it on, and every member host gets every packet exactly once; the 2
    other sites get nothing. Over all gateways: 12 tree packets a packet, one per member."""
    b = bed_tree
    paths = {s: b.join(s) for s in b.members}
    wait_for("the sender's gateway knows every member site",
             lambda: b.members_of("50")[1] == set(b.members), timeout=60)
    # every member knows every other (the forwarders find the sites they pass it on to)
    wait_for("every member gateway knows every member site", lambda: all(
        b.members_of(s)[1] >= set(b.members) - {s} for s in b.members), timeout=60)
    b.send("one", N)
    wait_for("every member got the stream",
             lambda: all(len(b.got(paths[s], "one")) >= N for s in b.members), timeout=60)
    for s in b.members:
        assert sorted(b.got(paths[s], "one")) == list(range(N)), s  # each once
    sent, _, copies, _ = tree_counts(b, "50")
    assert (sent, copies) == (N * FANOUT, 0)
    c = {s: tree_counts(b, s) for s in b.members}
    # parts of 4: each of the 3 forwarders passes it on to its 3 sites (tree packets with no
    # site left: a plain copy from them would not be taken, its source is not theirs)
    assert sorted(x[0] for x in c.values()) == [0] * 9 + [N * 3] * 3, c
    assert all(x[1] == N for x in c.values()), c  # each member's gateway got each packet once
    assert all(x[2] == x[3] == 0 for x in c.values()), c
    for s in b.others:
        assert delivered(b, s) == (0, 0), s
        assert tree_counts(b, s)[1] == 0, s
    for s in list(b.procs):
        assert b.stop(s) == 0, b.logs[s].read_text()
        log = b.logs[s].read_text()
        assert "AddressSanitizer" not in log and "runtime error" not in log, log


@pytest.fixture
def bed2(tmp_path):
    # MALI = 2 * 2 s + 1 s = 5 s
    yield from started(tmp_path, "mq", 2, 0, query=2, response_ms=1000)


def test_mcast_querier_mldv1_and_timeout(bed2):
    """Site a1's host speaks MLDv1 only (its report joins, its done leaves after the
    specific queries go unanswered). Site a0's host answers General Queries (MLDv2): its
    group outlives the listening interval; then its reports are dropped by a filter on the
    host (no leave is sent): the group expires there and the sender's gateway drops a0."""
    b = bed2
    a0, a1 = b.members
    nsx(b.n(f"h{a1}"), "sysctl", "-qw", "net.ipv6.conf.lan.force_mld_version=1")
    b.join(a0)
    b.join(a1)
    wait_for("both members known", lambda: b.members_of("50")[1] == {a0, a1}, timeout=30)
    # a0's host answers the queries: more reports than its join's, past the 5 s interval
    r0 = b.metrics(a0)["peak_overlay_mcast_reports_total"]
    wait_for("a0 answered 4 queries", lambda: b.metrics(a0)[
        "peak_overlay_mcast_reports_total"] >= r0 + 4, timeout=30)
    assert b.members_of(a0)[0] and a0 in b.members_of("50")[1]
    # MLDv1 done: a1 leaves
    b.leave(a1)
    wait_for("a1 gone at the sender", lambda: b.members_of("50")[1] == {a0}, timeout=30)
    assert "no listener of ff0e::db8:1 left" in b.logs[a1].read_text()
    # a0's host goes silent (no leave): the group expires after the listening interval
    nsx(b.n(f"h{a0}"), "nft", "-f", "-", input=(
        "table ip6 mute {\n chain out {\n  type filter hook output priority 0;\n"
        "  icmpv6 type { mld-listener-report, mld2-listener-report, mld-listener-done }"
        " drop\n }\n}\n"))
    wait_for("a0 expired at the sender", lambda: b.members_of("50")[1] == set(), timeout=30)
    assert not b.members_of(a0)[0]
    assert b.metrics(a0)["peak_overlay_mcast_queries_total"] >= 4
    for s in list(b.procs):
        assert b.stop(s) == 0, b.logs[s].read_text()
        log = b.logs[s].read_text()
        assert "AddressSanitizer" not in log and "runtime error" not in log, log


@pytest.fixture
def bed_dht(tmp_path):
    yield from started(tmp_path, "mh", 3, 1, dht=True)


def test_mcast_members_through_dht(bed_dht):
    """No gateway knows any peer: membership goes through the DHT only. Members a0..a2 put
    their signed group records under the group's key; the sender's gateway, sending to the
    group, looks its members up there (and learns them as peers), so a stream reaches them
    all and not site c0; a0's listener leaves (its leave record, and its announcement to the
    sender it now knows), and a second stream no longer reaches it."""
    b = bed_dht
    puts = "peak_overlay_dht_puts_total{result=\"ok\"}"
    wait_for("every gateway in the DHT", lambda: all(
        b.metrics(s).get(puts, 0) >= 1 for s in b.sites), timeout=60)
    paths = {s: b.join(s) for s in b.members}
    wait_for("the members' group records put", lambda: all(
        b.metrics(s).get("peak_overlay_dht_group_puts_total", 0) >= 1 for s in b.members),
        timeout=30)
    want = {b.name(s) for s in b.members}

    def found(want):
        b.send("probe", 1, gap=0)  # traffic to the group: it is looked up (every 5 s)
        return b.members_of("50")[1] == want
    wait_for("the sender's gateway found every member in the DHT", lambda: found(want),
             timeout=60, every=0.5)
    assert b.metrics("50")["peak_overlay_dht_group_lookups_total"] >= 1
    b.send("one", N)
    wait_for("every member got the first stream",
             lambda: all(len(b.got(paths[s], "one")) >= N for s in b.members), timeout=60)
    for s in b.members:
        assert sorted(b.got(paths[s], "one")) == list(range(N)), s
    assert delivered(b, b.others[0]) == (0, 0)
    left = b.members[0]
    b.leave(left)
    want.discard(b.name(left))
    wait_for("a0 gone at the sender", lambda: found(want), timeout=60, every=0.5)
    b.send("two", N)
    stay = b.members[1:]
    wait_for("the members left got the second stream",
             lambda: all(len(b.got(paths[s], "two")) >= N for s in stay), timeout=60)
    assert b.got(paths[left], "two") == []
    assert b.metrics(left).get("peak_overlay_dht_group_puts_total", 0) >= 2  # join, leave
    for s in list(b.procs):
        assert b.stop(s) == 0, b.logs[s].read_text()
        log = b.logs[s].read_text()
        assert "AddressSanitizer" not in log and "runtime error" not in log, log
