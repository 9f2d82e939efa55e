#!/usr/bin/python3
"""The overlay's NAT matrix (root): ten sites, two public, two behind each of three kinds
of NAT built with nftables and two behind two NATs in series, find each other through
OpenDHT and every host pings every other over IPv6 and opens a TCP connection to it. The
matrix says, for each ordered pair, how the first packets went (direct to a public gateway,
to a NAT's public mapping, or punched through both NATs), how long the first answer took
(the DHT lookups included), or why the pair is relayed: no hole can be punched when both
NATs map ports per destination (known from the sites' records), or when one does and the
other filters by port (found by trying: nothing answers for three keepalive periods), so
the gateways send through a relay, a site whose NAT is not endpoint-dependent (`show peers`
state `relayed via NAME`; without a usable relay a pair of endpoint-dependent NATs is
unreachable, ICMPv6 address unreachable to the host and state
unreachable:both-nats-endpoint-dependent).

NAT kinds (RFC 4787 terms), in the NAT namespace natN between gN (192.168.N.2) and r:
  full cone   endpoint-independent mapping (port-preserving masquerade) and filtering
              (UDP 51820 from anyone is forwarded to the gateway)
  restricted  endpoint-independent mapping, address-dependent filtering: UDP 51820 is
              forwarded only from addresses the gateway sent to lately (a dynamic nft set)
  symmetric   endpoint-dependent mapping (masquerade fully-random: a random port per
              destination), only replies come in (conntrack)
  double      a home NAT hnatN (port-preserving masquerade) into a carrier network, then a
              carrier NAT natN (port-preserving masquerade): endpoint-independent mapping,
              address-and-port-dependent filtering (only replies come in)
  double-random  the same, the carrier NAT with fully-random ports: endpoint-dependent
Nothing unsolicited reaches a NAT itself (ct state new drop on its input).

    h1..h10 fd00:N::2 (each on its own LAN behind gN fd00:N::1, `peak overlay` + OpenDHT)
    g1 10.0.1.2   g2 10.0.2.2                      public
    g3, g4   -> nat3, nat4 (10.0.N.2)              full cone
    g5, g6   -> nat5, nat6                         restricted
    g7, g8   -> nat7, nat8                         symmetric
    g9  192.0.2.2  -> hnat9  198.51.100.2  -> nat9  203.0.113.2    double
    g10 192.0.2.18 -> hnat10 198.51.100.18 -> nat10 203.0.113.18   double-random
      (each link a /28; the next hop is .1 or .17)
      all uplinks (10.0.N.1, 203.0.113.1 and .17) on r; r 10.0.9.1 -- dn 10.0.9.2 dhtnode

Usage: tests/overlay/nat_matrix.py [--keep] (prints the matrix; exit 0 if it is as expected;
--keep: the daemons' logs and configurations are kept)"""
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from demo_overlay import DemoBed  # noqa: E402  (batched build helpers, dhtnode, cleanup)
from ovbed import nsx  # noqa: E402
from test_overlay_dht import PORT  # noqa: E402

KIND = {"1": "public", "2": "public", "3": "full-cone", "4": "full-cone",
        "5": "restricted", "6": "restricted", "7": "symmetric", "8": "symmetric",
        "9": "double", "10": "double-random"}
SITES = tuple(KIND)
NATED = tuple(s for s in SITES if KIND[s] != "public")
DOUBLE = tuple(s for s in SITES if KIND[s].startswith("double"))
ABBR = {"public": "pub", "full-cone": "cone", "restricted": "rstr", "symmetric": "sym",
        "double": "2nat", "double-random": "2nat-r"}
# what the sites' NATs are, as seen from outside (RFC 4787): endpoint-dependent mapping (a
# port per destination), and port-dependent filtering (only from the address and port sent to)
EDM = {"symmetric", "double-random"}
PORT_FILTER = {"double"}
UNPUNCHABLE = "unreachable:both-nats-endpoint-dependent"
RELAYED = re.compile(r"state relayed via (\S+)$")


def edm(s):
    """True if site s's NAT maps ports per destination (endpoint-dependent)."""
    return KIND[s] in EDM


def can_relay(r):
    """True if site r can relay for the pairs that are relayed (each has an endpoint-dependent
    site, which reaches r only if r's NAT neither maps per destination nor filters by port)."""
    return KIND[r] not in EDM and KIND[r] not in PORT_FILTER


def expect_relayed(s, o):
    """The pairs no hole can be punched for, relayed: both NATs endpoint-dependent, or one
    endpoint-dependent and the other filtering by port (the port the first maps for the
    second cannot be known, so the second's NAT never lets its packets in)."""
    return (edm(s) and edm(o)) or (edm(s) and KIND[o] in PORT_FILTER) or (
        edm(o) and KIND[s] in PORT_FILTER)


def nat_rules(kind, i):
    """The nftables ruleset of site i's NAT (kind: full-cone, restricted, symmetric, or
    masquerade: port-preserving, only replies in). A port forward takes only packets to the
    NAT's own address (fib daddr type local): one to an address it had before a move is no
    longer its (forwarded, the gateway answered from the old address through conntrack, and
    a peer probing a stale DHT record kept two paths alive: see test_locator_moves)."""
    gw = f"192.168.{i}.2"
    drop_new = ("table ip filter {\n chain input {\n  type filter hook input priority 0;\n"
                '  iifname "nout" ct state new drop\n }\n}\n')
    if kind in ("symmetric", "masquerade"):
        how = " fully-random" if kind == "symmetric" else ""
        return ("table ip nat {\n chain post {\n  type nat hook postrouting priority 100;\n"
                f'  oifname "nout" masquerade{how}\n }}\n}}\n' + drop_new)
    if kind == "full-cone":
        return ("table ip nat {\n chain pre {\n  type nat hook prerouting priority -100;\n"
                f'  iifname "nout" fib daddr type local udp dport {PORT} dnat to {gw}\n }}\n'
                " chain post {\n  type nat hook postrouting priority 100;\n"
                '  oifname "nout" masquerade\n }\n}\n' + drop_new)
    assert kind == "restricted"
    return ("table ip nat {\n"
            " set seen {\n  type ipv4_addr; size 1024; flags dynamic,timeout; timeout 120s;\n }\n"
            " chain out {\n  type filter hook forward priority 0;\n"
            '  oifname "nout" update @seen { ip daddr }\n }\n'
            " chain pre {\n  type nat hook prerouting priority -100;\n"
            f'  iifname "nout" fib daddr type local udp dport {PORT} ip saddr @seen '
            f'dnat to {gw}\n }}\n'
            " chain post {\n  type nat hook postrouting priority 100;\n"
            '  oifname "nout" masquerade\n }\n}\n' + drop_new)


class MatrixBed(DemoBed):
    """DemoBed (its batched build, ipb, ping, dhtnode, cleanup) on the topology above."""

    SITES = SITES
    NATED = NATED
    DHT_EXTRA = "  negative-ttl: 1\n"

    def __init__(self, tmp):
        super().__init__(tmp)
        self.p = f"nm{os.getpid() % 10000}"
        # where s's packets come from
        self.addr = {s: self.hops(s)[-1][1] for s in SITES}

    def public(self, s):
        return self.addr[s]

    def hops(self, s):
        """A double-NATed site's uplink: gateway, home NAT hnat<s> (port-preserving
        masquerade) into a carrier network, carrier NAT nat<s> to r, each link a /28 of its
        documentation range (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24); the others'
        as DemoBed's."""
        if s not in DOUBLE:
            return super().hops(s)
        k = 16 * DOUBLE.index(s)
        return [(f"g{s}", f"192.0.2.{k + 2}", f"192.0.2.{k + 1}", 28),
                (f"hnat{s}", f"198.51.100.{k + 2}", f"198.51.100.{k + 1}", 28),
                (f"nat{s}", f"203.0.113.{k + 2}", f"203.0.113.{k + 1}", 28)]

    def nat_rules(self, s):
        return nat_rules(KIND[s], s)

    def ns_rules(self, ns, s):
        """A double NAT's home NAT masquerades (port-preserving), its carrier NAT too, or
        with fully-random ports (double-random); the other NATs as nat_rules."""
        if s not in DOUBLE:
            return self.nat_rules(s)
        if ns.startswith("hnat") or KIND[s] == "double":
            return nat_rules("masquerade", s)
        return nat_rules("symmetric", s)

    def peer_lines(self, s):
        """Gateway s's `show peers` lines: {site: line}."""
        out = self.ctl(s, "show", "peers").stdout
        lines = {}
        for o in SITES:
            m = re.search(rf"^peer dht-{self.ids[o]} .*$", out, re.M)
            lines[o] = m.group(0) if m else ""
        return lines

    def peer_line(self, s, o):
        """Gateway s's `show peers` line for site o, or ''."""
        return self.peer_lines(s)[o]

    def nat_seen(self, s):
        m = re.search(r"^nat (\S+)$", self.ctl(s, "show", "peers").stdout, re.M)
        return m.group(1) if m else "?"


def first_answer(b, s, o, deadline_s):
    """Pings fd00:o::2 from hs every 0.2 s until the first answer or deadline_s: (answered,
    seconds to it, ping's output)."""
    t = time.monotonic()
    r = nsx(b.n(f"h{s}"), "ping", "-6", "-n", "-c", "1", "-i", "0.2", "-w", str(deadline_s),
            f"fd00:{o}::2", check=False)
    return r.returncode == 0, time.monotonic() - t, r.stdout


def how(b, s, o, line):
    """How s's packets reach o, from gateway s's peer line for o."""
    if UNPUNCHABLE in line:
        return "unreachable: both NATs endpoint-dependent and no relay usable"
    r = RELAYED.search(line)
    if r:
        return "relayed via " + r.group(1)
    m = re.match(r"peer \S+ (\S+) ", line)
    if not m or m.group(1) == "-":
        return "?"
    ip = m.group(1).split(":")[0]
    if ip != b.public(o):
        return f"via {m.group(1)} (not {o}'s public address)"
    if o not in NATED:
        return "direct"
    return "punched" if s in NATED else "mapping"


TCP_SERVER = r"""
import socket, threading
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 5003)); s.listen(64)
print("listening", flush=True)
def echo(c):
    with c:
        while True:
            d = c.recv(65536)
            if not d: return
            c.sendall(d)
while True:
    c, _ = s.accept(); threading.Thread(target=echo, args=(c,), daemon=True).start()
"""

TCP_CLIENT = r"""
import os, socket, sys
data = os.urandom(16384)
for dst in sys.argv[1:]:
    try:
        c = socket.create_connection((dst, 5003), timeout=5)
        c.sendall(data); c.shutdown(socket.SHUT_WR); back = b""
        while True:
            d = c.recv(65536)
            if not d: break
            back += d
        print(dst, "ok" if back == data else f"short {len(back)}", flush=True)
    except OSError as e:
        print(dst, "failed", e, flush=True)
"""


def tcp_matrix(b, pairs):
    """A TCP connection with 16 KiB echoed for each (s, o) of pairs; {(s, o): 'ok' | why}."""
    servers = [subprocess.Popen(["ip", "netns", "exec", b.n(f"h{s}"), sys.executable, "-c",
                                 TCP_SERVER], stdout=subprocess.PIPE, text=True)
               for s in b.SITES]
    res = {}
    try:
        for p in servers:
            assert p.stdout.readline().strip() == "listening"
        clients = {s: subprocess.Popen(
            ["ip", "netns", "exec", b.n(f"h{s}"), sys.executable, "-c", TCP_CLIENT]
            + [f"fd00:{o}::2" for (x, o) in pairs if x == s],
            stdout=subprocess.PIPE, text=True) for s in b.SITES}
        for s, c in clients.items():
            out, _ = c.communicate(timeout=60)
            for line in out.splitlines():
                dst, _, r = line.partition(" ")
                res[(s, dst.split(":")[1])] = r
    finally:
        for p in servers:
            p.kill()
            p.wait()
    return res


def run_matrix(b, deadline_s=15, log=print):
    """Brings every pair together and returns {(s, o): dict(ok, secs, how, tcp)}."""
    t0 = time.monotonic()
    ok = _until(b.published, 20)
    log(f"every site's signed record in the DHT: {'yes' if ok else 'NO'} "
        f"({time.monotonic() - t0:.1f} s)")
    # NATed sites first reach the public ones: those tell each its public mapping (and so
    # whether its NAT maps per destination), which it republishes in the DHT
    warm = {}
    threads = [threading.Thread(target=lambda s=s, o=o: warm.__setitem__(
        (s, o), first_answer(b, s, o, deadline_s))) for s in NATED for o in SITES
        if o not in NATED]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    def published_kind():
        for s in SITES:
            m = b.metrics(s)
            is_edm = m.get("peak_overlay_gw_nat_endpoint_dependent", 0) == 1
            if is_edm != edm(s) or (s in NATED and m.get(
                    "peak_overlay_dht_locators", 0) < 2):
                return False
        return True
    ok = _until(published_kind, 10)
    log(f"public sites reached, mappings learned and republished: {'yes' if ok else 'NO'} "
        f"({time.monotonic() - t0:.1f} s)")
    res = {}
    pairs = [(s, o) for s in SITES for o in SITES if s != o]
    threads = [threading.Thread(target=lambda s=s, o=o: res.__setitem__(
        (s, o), first_answer(b, s, o, deadline_s))) for (s, o) in pairs if (s, o) not in warm]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    res.update(warm)
    log(f"every pair pinged ({time.monotonic() - t0:.1f} s)")
    tcp = tcp_matrix(b, [p for p in pairs if res[p][0]])
    log(f"TCP connections done ({time.monotonic() - t0:.1f} s)")
    lines = {s: b.peer_lines(s) for s in SITES}
    out = {}
    for p in pairs:
        s, o = p
        ok, secs, text = res[p]
        out[p] = {"ok": ok, "secs": secs, "how": how(b, s, o, lines[s][o]), "line": lines[s][o],
                  "tcp": tcp.get(p, "-"), "icmp_unreach": "Address unreachable" in text}
    return out


def _until(fn, timeout, every=0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(every)


def print_matrix(b, m, log=print):
    """The matrix: a row per source, a column per destination."""
    w = 15
    log("NAT matrix (row: from, column: to; how the first packets went, seconds to the "
        "first answer, T: a TCP connection echoed 16 KiB):")
    log(" " * 10 + "".join(f"{s + ' ' + ABBR[KIND[s]]:<{w}}" for s in SITES))
    for s in SITES:
        cells = []
        for o in SITES:
            if s == o:
                cells.append(f"{'-':<{w}}")
                continue
            c = m[(s, o)]
            if c["ok"]:
                h = "relayed" if c["how"].startswith("relayed") else c["how"]
                cell = f"{h} {c['secs']:.1f}s {'T' if c['tcp'] == 'ok' else 't!'}"
                cells.append(f"{cell:<{w}}")
            elif c["how"].startswith("unreachable"):
                cells.append(f"{'UNREACHABLE':<{w}}")
            else:
                cells.append(f"{'FAILED':<{w}}")
        log(f"{s + ' ' + ABBR[KIND[s]]:<10}" + "".join(cells))
    for (s, o), c in sorted(m.items()):
        if c["how"].startswith("relayed"):
            why = ("both NATs endpoint-dependent" if edm(s) and edm(o) else
                   "one NAT endpoint-dependent, the other filtering by port")
            log(f"  {s} -> {o}: {c['how']} ({why})")
        if not c["ok"]:
            log(f"  {s} -> {o}: {c['how']}"
                f"{'; the host got ICMPv6 address unreachable' if c['icmp_unreach'] else ''}")
    for s in SITES:
        log(f"  gateway {s} ({KIND[s]}): its NAT as peers see it: {b.nat_seen(s)}")


def check(m):
    """What the matrix must show; a list of complaints."""
    bad = []
    for (s, o), c in sorted(m.items()):
        if not c["ok"] or c["tcp"] != "ok":
            bad.append(f"{s} -> {o}: not reached: {c}")
            continue
        if expect_relayed(s, o):
            if not c["how"].startswith("relayed via "):
                bad.append(f"{s} -> {o}: expected relayed, got {c}")
            continue
        want = "direct" if o not in NATED else ("punched" if s in NATED else "mapping")
        if c["how"] != want:
            bad.append(f"{s} -> {o}: {c['how']}, expected {want}")
    return bad


def main():
    if os.geteuid() != 0:
        print("nat_matrix: needs root (network namespaces)", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    b = MatrixBed(pathlib.Path(tempfile.mkdtemp(prefix="ovnat")))
    try:
        print(f"NAT matrix: {len(SITES)} sites, namespaces {b.p}*")
        b.build()
        b.start_dhtnode()
        b.start_all()
        print(f"daemons ready ({time.monotonic() - t0:.1f} s)")
        m = run_matrix(b)
        print_matrix(b, m)
        bad = check(m)
        for x in bad:
            print("  UNEXPECTED:", x)
    finally:
        b.cleanup()
        if "--keep" in sys.argv:
            print(f"logs kept in {b.tmp}")
        else:
            shutil.rmtree(b.tmp, ignore_errors=True)
    print(f"done in {time.monotonic() - t0:.0f} s: {'as expected' if not bad else 'FAILED'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
