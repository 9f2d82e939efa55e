#!/usr/bin/python3
"""make demo-overlay: four IPv6 sites over IPv4, two of them behind NAT, find each other
through OpenDHT and talk directly (root). Each gateway runs `peak overlay` (the ON-master,
its gateway slave and its DHT slave) and knows no peer at all: only the DHT's bootstrap node
(an independent `dhtnode`), its certificate and its prefix. The demo pings every host from
every other, says how each pair's packets go (direct to a public gateway, to a NAT's public
mapping, or hole-punched through both NATs), prints RTTs and one TCP flow's throughput
through both NATs, then stops everything and removes its namespaces. Then the NAT matrix
(tests/overlay/nat_matrix.py, its topology there): ten sites behind every kind of NAT, two
of them behind two NATs in series, how each pair's packets go (direct, punched or relayed)
and how long the first answer took. Then PEAK over the overlay (tests/overlay/peakbed.py,
its topology there): a client site with IPv4 only resolves a PEAK service through peak dns
over the overlay and reaches its pods from its overlay address, the XDP filter passing it
and dropping another address's packets. Last the bridge (tests/overlay/test_bridge.py, its
topology there): a native IPv6 network behind site B's gateway and an overlay site reach
each other, the native router learning the overlay's prefix by BGP.

    hA fd00:a::2      hB fd00:b::2      hC fd00:c::2      hD fd00:d::2
      |                 |                 |                 |
    gA 192.168.1.2    gB 10.0.2.2       gC 192.168.3.2    gD 10.0.4.2
      |                 |                 |                 |
    natA 10.0.1.2       |               natC 10.0.3.2       |      (nftables masquerade)
      +----------------------------- r -----------------------+
                                     | 10.0.9.1
                                    dn 10.0.9.2 dhtnode :4222
Usage: tests/overlay/demo_overlay.py [--secs S] [--pings N] [--peak-only] [--bridge-only]
[--no-matrix] (TCP flow length, default 3; echo requests per pair for the RTTs, default 10;
--peak-only: only the PEAK part; --bridge-only: only the bridge part; --no-matrix: without
the NAT matrix)"""
import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest  # (ovbed's waits end with pytest.fail)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from ovbed import PEAK, nsx, sh  # noqa: E402
from peakbed import CLIENT, OTHER, SERVICE_PREFIXES, PeakOverlayBed  # noqa: E402
import testbed  # noqa: E402  (tests/integration, put on the path by peakbed)
from test_overlay_dht import DHT_PORT, NETWORK, PORT, DhtBed  # noqa: E402  (dhtnode, cleanup)

SITES = ("a", "b", "c", "d")
NATED = ("a", "c")


def until(fn, timeout, every=0.1):
    """fn() until true or timeout seconds; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(every)


class DemoBed(DhtBed):
    """test_overlay_dht.py's bed (its dhtnode and cleanup) with the topology above. A
    subclass may change the sites (SITES, NATED, idx), their uplinks (hops), the NATs' rules
    (nat_rules, ns_rules) and the DHT settings (DHT_EXTRA, lines of its dht: section)."""

    SITES = SITES
    NATED = NATED
    DHT_EXTRA = ""

    def __init__(self, tmp):
        super().__init__(tmp)
        self.p = f"dm{os.getpid() % 10000}"

    def idx(self, s):
        return self.SITES.index(s) + 1

    def nat_rules(self, s):
        """Site s's NAT: a home router, masquerade out, nothing unsolicited in (see
        test_overlay_dht.py for why the drop is before conntrack confirms)."""
        return ("table ip nat {\n chain post {\n"
                "  type nat hook postrouting priority 100;\n"
                '  oifname "nout" masquerade\n }\n}\n'
                "table ip filter {\n chain input {\n"
                "  type filter hook input priority 0;\n"
                '  iifname "nout" ct state new drop\n }\n}\n')

    def public(self, s):
        """The address the other sites see s's packets come from."""
        return f"10.0.{self.idx(s)}.2"

    def hops(self, s):
        """Site s's IPv4 uplink, inside out: one (namespace, its address, the next hop's
        address, prefix length) per link, from gateway g<s> to the router r; the namespaces
        after the gateway are NATs (ns_rules). Here: g<s> on r, or behind one NAT nat<s>."""
        i = self.idx(s)
        if s not in self.NATED:
            return [(f"g{s}", f"10.0.{i}.2", f"10.0.{i}.1", 24)]
        return [(f"g{s}", f"192.168.{i}.2", f"192.168.{i}.1", 24),
                (f"nat{s}", f"10.0.{i}.2", f"10.0.{i}.1", 24)]

    def ns_rules(self, ns, s):
        """The nftables ruleset of NAT namespace ns on site s's uplink (nat_rules(s))."""
        return self.nat_rules(s)

    def ipb(self, ns, lines):
        """Runs ip commands in namespace ns, all in one process (ip -batch)."""
        if lines:
            sh("ip", "-n", self.n(ns), "-batch", "-", input="\n".join(lines) + "\n")

    def build(self):
        """The topology above, with a few ip processes per namespace (one each would
        take seconds on a loaded machine): links first, then addresses and routes."""
        SITES = self.SITES
        nats = [ns for s in SITES for ns, *_ in self.hops(s)[1:]]
        names = ["r", "dn"] + [f"h{s}" for s in SITES] + [f"g{s}" for s in SITES] + nats
        sh("ip", "-batch", "-", input="".join(f"netns add {self.p + n}\n" for n in names))
        for n in names:
            self.ns[n] = self.p + n
        links = {n: [] for n in names}
        cmds = {n: ["link set lo up"] for n in names}
        shell = {n: [] for n in names}

        def veth(a, ia, b, ib):
            links[a].append(f"link add {ia} type veth peer name {ib} netns {self.n(b)}")
            cmds[a].append(f"link set {ia} up")
            cmds[b].append(f"link set {ib} up")

        shell["r"].append("sysctl -qw net.ipv4.ip_forward=1")
        veth("dn", "eth0", "r", "rdn")
        cmds["r"].append("addr add 10.0.9.1/24 dev rdn")
        cmds["dn"] += ["addr add 10.0.9.2/24 dev eth0", "route add default via 10.0.9.1"]
        for s in SITES:
            g, h = f"g{s}", f"h{s}"
            veth(h, "lan", g, "lan")
            cmds[h] += [f"addr add fd00:{s}::2/64 dev lan nodad",
                        f"route add default via fd00:{s}::1"]
            cmds[g].append(f"addr add fd00:{s}::1/64 dev lan nodad")
            shell[g].append("sysctl -qw net.ipv6.conf.all.forwarding=1")
            hops = self.hops(s)
            for k, (ns, addr, nxt, plen) in enumerate(hops):
                last = k == len(hops) - 1
                up = "wan" if k == 0 else "nout"
                peer, pif = ("r", "r" + s) if last else (hops[k + 1][0], "nin")
                veth(ns, up, peer, pif)
                cmds[ns] += [f"addr add {addr}/{plen} dev {up}", f"route add default via {nxt}"]
                cmds[peer].append(f"addr add {nxt}/{plen} dev {pif}")
                if k:  # a NAT
                    rules = self.tmp / f"{ns}.nft"
                    rules.write_text(self.ns_rules(ns, s))
                    shell[ns] += ["sysctl -qw net.ipv4.ip_forward=1", f"nft -f {rules}"]
        for n in names:
            self.ipb(n, links[n])
        for n in names:
            self.ipb(n, cmds[n])
            if shell[n]:
                nsx(self.n(n), "sh", "-ec", "; ".join(shell[n]))
        auth = self.tmp / "auth.key"
        sh(PEAK, "overlay", "--genkey", str(auth))
        auth_pub = sh(PEAK, "overlay", "--authority-pub", str(auth)).stdout.strip()
        self.ids = {}
        for s in SITES:
            key = self.tmp / f"{s}.key"
            sh(PEAK, "overlay", "--genkey", str(key))
            site_id = sh(PEAK, "overlay", "--site-id", str(key)).stdout.strip()
            self.ids[s] = site_id[:8]  # the start of the X25519 key names it at the others
            cert = sh(PEAK, "overlay", "--certify", str(auth), "--site", site_id, "--prefix",
                      f"fd00:{s}::/64").stdout.strip()
            locator = self.hops(s)[0][1]
            (self.tmp / f"{s}.yaml").write_text(
                f"tun: ov0\naddress: fd00:{s}::1\nicmp-rate: 100\n"
                f"gateway:\n  listen: 0.0.0.0:{PORT}\n  private-key-file: {key}\n"
                f"  keepalive: 1\n"
                f"dht:\n  port: {DHT_PORT}\n  network: {NETWORK}\n"
                f"  bootstrap: [10.0.9.2:{DHT_PORT}]\n  authority: {auth_pub}\n"
                f"  certificate: {cert}\n  prefixes: [fd00:{s}::/64]\n"
                f"  locator: {locator}:{PORT}\n  lookup: bsearch\n" + self.DHT_EXTRA)

    def start_all(self):
        """Starts every site's daemon at once, then waits until each is ready (one by one
        takes seconds on a loaded machine)."""
        for s in self.SITES:
            self.spawn(s)
        for s in self.SITES:
            self.ready(s, timeout=30)

    def published(self):
        """True once every site's records were acknowledged by some DHT node."""
        return all(self.metrics(s).get('peak_overlay_dht_puts_total{result="ok"}', 0) > 0
                   for s in self.SITES)

    def ping(self, src, dst, count=1, interval="0.2", wait_s="1"):
        return nsx(self.n(f"h{src}"), "ping", "-6", "-n", "-c", str(count), "-i", interval,
                   "-W", wait_s, f"fd00:{dst}::2", check=False)

    def endpoint(self, s, o):
        """Where gateway s sends to site o: 'ADDR:PORT' from `show peers`, or None."""
        out = self.ctl(s, "show", "peers").stdout
        m = re.search(rf"^peer dht-{self.ids[o]} (\S+) ", out, re.M)
        return m.group(1) if m and m.group(1) != "-" else None


def how(b, s, o, ep):
    """How s's packets reach o, from the endpoint s uses."""
    if ep is None:
        return "?"
    ip = ep.split(":")[0]
    if o not in NATED:
        return f"direct to public gateway {ep}" if ip == b.public(o) else f"via {ep}"
    if ip != b.public(o):
        return f"via {ep} (not {o}'s NAT)"
    if s in NATED:
        return f"hole punched through both NATs, to {ep}"
    return f"to {o}'s NAT mapping {ep} (opened by {o}'s packets)"


class Steps:
    """A demo part's steps: step(ok, text) prints the step, FAILED: before it if not ok;
    .failed counts those."""

    def __init__(self):
        self.failed = 0

    def __call__(self, ok, text):
        self.failed += not ok
        print(f"  {text}" if ok else f"  FAILED: {text}")

    def end(self, part, t0):
        """Prints the part's verdict and time; returns the failed count."""
        print(f"{part}: {'ok' if not self.failed else f'{self.failed} step(s) failed'} "
              f"({time.monotonic() - t0:.0f} s); daemons stopped, namespaces removed")
        return self.failed


def peak_part():
    """PEAK over the overlay (tests/overlay/peakbed.py, DHT mode): a client site with IPv4
    only resolves the PEAK service and reaches its pods through the overlay, the XDP filter
    on. Prints what happened; returns the number of failed steps."""
    t0 = time.monotonic()
    b = PeakOverlayBed(tempfile.mkdtemp(prefix="ovdemo-peak"), "pdm", "dht")
    step = Steps()

    print(f"\nPEAK over the overlay: cluster site k (router, 1 node with the XDP filter on its "
          f"uplink, 2 pods, peak dns) whose gateway publishes {' and '.join(SERVICE_PREFIXES)} "
          f"in the DHT; client site c with IPv4 only, behind a NAT, host {CLIENT} from the "
          f"overlay prefix fd00:c::/48; namespaces {b.p}*")
    try:
        b.build()
        first = b.wait_ready()
        print(f"  cluster up and both records in the DHT ({time.monotonic() - t0:.1f} s); "
              f"first answer from peak dns's host over the overlay {first:.1f} s later "
              "(DHT lookups, k learning c's NAT mapping)")
        passed0, rejected0 = b.filter_counts()
        res = b.resolve()
        want = b.rule(CLIENT)
        step(res and res == (want, CLIENT),
             f"peak resolve {testbed.SERVICE} (APL and TXT from peak dns "
             f"{testbed.DNS_ADDR} over the overlay): {res[0] if res else '-'} from "
             f"{res[1] if res else '-'} (select=src on the overlay address; computed here: "
             f"{want})")
        h = b.connect()
        step(h.get("Source") == CLIENT and h.get("Destination") == want,
             f"peak connect: pod {h.get('Endpoint', '-')} answered at "
             f"{h.get('Destination', '-')}, saw source {h.get('Source', '-')}"
             + (f" ({h['error']})" if "error" in h else ""))
        n = b.echo(want, 100)
        step(n == 100, f"100 lines to the pod in one write: {n} answered (about 4.8 KB back in "
             "full-sized segments: gateway k clamps the MSS of SYNs from the overlay to 1340)")
        passed1, rejected1 = b.filter_counts()
        step(passed1 > passed0, f"XDP filter on node 1 passed {passed1 - passed0:.0f} packets "
             f"of it, rejected {rejected1 - rejected0:.0f}")
        b.add_other()
        other = b.rule(OTHER)
        h = b.http(OTHER, other)
        step(h.get("Source") == OTHER, f"the site's other address {OTHER} to its own address "
             f"{other}: pod {h.get('Endpoint', '-')} answered")
        h = b.http(OTHER, want, wait=2)
        rejected2 = b.filter_counts()[1]
        step(not h and rejected2 > rejected1,
             f"{OTHER} to {CLIENT}'s address {want}: "
             f"{'answered (WRONG)' if h else 'no answer'}, the filter rejected "
             f"{rejected2 - rejected1:.0f} packets (the rule binds the address to the source)")
        m = b.metrics("k")
        rx = m.get('peak_overlay_peer_rx_packets_total{peer="%s"}' % b.peer("c"), 0)
        found = m.get('peak_overlay_dht_lookups_total{result="found"}', 0)
        print(f"  gateway k: {rx:.0f} packets in from site c (AES-256-GCM over UDP/IPv4 "
              f"through c's NAT), dht lookups found {found:.0f}")
    except (Exception, pytest.fail.Exception) as e:  # noqa: BLE001 (reported; cleaned up)
        step(False, str(e))
    finally:
        b.cleanup()
        shutil.rmtree(b.tmp, ignore_errors=True)
    return step.end("PEAK over the overlay", t0)


def bridge_part():
    """The bridge (tests/overlay/test_bridge.py, its topology there): a native IPv6 host
    behind bridge site B and host hA of site A, which knows no peer, reach each other; prints
    what happened; returns the number of failed steps."""
    from test_bridge import NATIVE, NHOST, BridgeBed, peak_routes
    t0 = time.monotonic()
    b = BridgeBed(pathlib.Path(tempfile.mkdtemp(prefix="ovdemo-br")), "bdm")
    step = Steps()

    print(f"\nbridge: site b's gateway bridges the native network {NATIVE} (native router "
          f"nr, native host {NHOST}, no overlay daemon there) into the overlay; site a knows "
          f"no peer and no native prefix; namespaces {b.p}*")
    try:
        b.build()
        b.start_dhtnode()
        b.start("b", route=False)
        b.start("a")
        sh("ip", "-n", b.n("ga"), "-6", "route", "add", "2001:db8::/32", "dev", "ov0")
        routes = re.findall(r"^(\S+ (?:via \S+ )?dev \S+)", peak_routes(b), re.M)
        print(f"  gB's kernel routes (proto 0xa5): {'; '.join(routes)}")
        bgp = until(lambda: re.search(r"^fd00::/16 via 2001:db8:76::1 .*proto bird", nsx(
            b.n("nr"), "ip", "-6", "route", "show").stdout, re.M), 30)
        step(bool(bgp), "the native router learned fd00::/16 by BGP from gB's BIRD "
             "(peak agent --bird-config, kernel table 100)")

        def ping(ns, dst):
            return nsx(b.n(ns), "ping", "-6", "-n", "-c", "1", "-W", "1", dst,
                       check=False).returncode == 0

        t = time.monotonic()
        ok = until(lambda: ping("ha", NHOST), 20, every=0)
        step(bool(ok), f"hA -> {NHOST}: answered after {time.monotonic() - t:.1f} s (gA "
             f"found {NATIVE} in the DHT; the first packet waits for neighbour discovery)")
        route = re.search(rf"^{re.escape(NATIVE)} .*$", b.ctl("a", "show", "routes").stdout,
                          re.M)
        print(f"  gA's route: {route.group(0) if route else '-'}")
        ok = until(lambda: ping("nat", "fd00:a::2"), 10, every=0)
        step(bool(ok), f"{NHOST} -> fd00:a::2: answered")
        out = b.ctl("b", "show", "peers").stdout
        print("  " + "\n  ".join(x for x in out.splitlines() if x.startswith("bridge")))
    except (Exception, pytest.fail.Exception) as e:  # noqa: BLE001 (reported; cleaned up)
        step(False, str(e))
    finally:
        b.cleanup()
        shutil.rmtree(b.tmp, ignore_errors=True)
    return step.end("bridge", t0)


def matrix_part():
    """The NAT matrix (tests/overlay/nat_matrix.py, its topology there): ten sites, public or
    behind full-cone, address-restricted, symmetric and double NATs; every host pings every
    other and echoes 16 KiB over TCP; prints the matrix. Returns the number of pairs that
    went otherwise than expected (or 1 if the bed failed)."""
    from nat_matrix import KIND, MatrixBed, check, print_matrix, run_matrix
    t0 = time.monotonic()
    b = MatrixBed(pathlib.Path(tempfile.mkdtemp(prefix="ovdemo-nat")))
    kinds = ", ".join(f"{s} {k}" for s, k in KIND.items())
    print(f"\nNAT matrix: {len(KIND)} sites ({kinds}); namespaces {b.p}*")
    failed = 0
    try:
        b.build()
        b.start_dhtnode()
        b.start_all()
        print(f"daemons ready ({time.monotonic() - t0:.1f} s)")
        m = run_matrix(b)
        print_matrix(b, m)
        for x in check(m):
            failed += 1
            print("  UNEXPECTED:", x)
    except (Exception, pytest.fail.Exception) as e:  # noqa: BLE001 (reported; cleaned up)
        failed += 1
        print(f"  FAILED: {e}")
    finally:
        b.cleanup()
        shutil.rmtree(b.tmp, ignore_errors=True)
    print(f"NAT matrix: {'as expected' if not failed else f'{failed} unexpected'} "
          f"({time.monotonic() - t0:.0f} s); daemons stopped, namespaces removed")
    return failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--secs", type=int, default=3)
    ap.add_argument("--pings", type=int, default=10, help="echoes per pair for the RTTs")
    ap.add_argument("--peak-only", action="store_true",
                    help="only the PEAK-over-the-overlay part")
    ap.add_argument("--bridge-only", action="store_true", help="only the bridge part")
    ap.add_argument("--no-matrix", action="store_true",
                    help="without the NAT matrix (tests/overlay/nat_matrix.py runs it alone)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("demo-overlay: needs root (network namespaces)", file=sys.stderr)
        return 2
    if a.peak_only:
        return 1 if peak_part() else 0
    if a.bridge_only:
        return 1 if bridge_part() else 0
    t0 = time.monotonic()
    b = DemoBed(pathlib.Path(tempfile.mkdtemp(prefix="ovdemo")))
    failed = unreached = 0
    try:
        print(f"overlay demo: sites {', '.join(SITES)}; {' and '.join(NATED)} behind NAT "
              f"(nftables masquerade); OpenDHT: dhtnode 10.0.9.2:{DHT_PORT} and one node in "
              f"each gateway; namespaces {b.p}*")
        b.build()
        print(f"testbed built ({time.monotonic() - t0:.1f} s)")
        b.start_dhtnode()
        b.start_all()
        print(f"daemons ready ({time.monotonic() - t0:.1f} s)")
        for s in SITES:
            kind = (f"behind NAT {b.public(s)} (gateway 192.168.{b.idx(s)}.2)" if s in NATED
                    else f"public {b.public(s)}")
            print(f"  site {s}: fd00:{s}::/64, {kind}, id {b.ids[s]}")
        ok = until(b.published, 20)
        print(f"published: every site's signed record in the DHT: {'yes' if ok else 'NO'} "
              f"({time.monotonic() - t0:.1f} s after the start)")
        # NATed sites first reach the public ones: they learn their public mappings (the
        # public gateways' keepalives say them) and republish them, which the punch needs
        order = ([(s, o) for s in NATED for o in SITES if o not in NATED]
                 + [(s, o) for s in SITES for o in SITES if s != o])
        reached = {}
        for s, o in order:
            if (s, o) not in reached:
                t = time.monotonic()
                ok = bool(until(lambda: b.ping(s, o).returncode == 0, 25, every=0))
                reached[(s, o)] = (ok, time.monotonic() - t)
        print(f"who reaches whom ({time.monotonic() - t0:.1f} s; ping hX -> hY over IPv6; "
              f"time to the first answer, which includes the DHT lookup; RTT min/avg of "
              f"{a.pings} echoes):")
        for s in SITES:
            for o in SITES:
                if s == o:
                    continue
                ok, first = reached[(s, o)]
                if not ok:
                    unreached += 1
                    print(f"  {s} -> {o}: FAILED (no answer in 25 s)")
                    continue
                out = b.ping(s, o, count=a.pings, interval="0.02").stdout
                m = re.search(r"= ([\d.]+)/([\d.]+)/", out)
                rtt = f"{float(m.group(1)):.2f}/{float(m.group(2)):.2f} ms" if m else "?"
                print(f"  {s} -> {o}: ok, first answer {first:.1f} s, rtt {rtt}, "
                      f"{how(b, s, o, b.endpoint(s, o))}")
        found = 'peak_overlay_dht_lookups_total{result="found"}'
        for s in SITES:
            m = b.metrics(s)
            print(f"  gateway {s}: dht lookups found {m.get(found, 0):.0f}, "
                  f"peers learned {m.get('peak_overlay_gw_learned_peers_total', 0):.0f}, "
                  f"punch records put {m.get('peak_overlay_dht_punch_puts_total', 0):.0f} / "
                  f"heard {m.get('peak_overlay_dht_punch_heard_total', 0):.0f}, "
                  f"own public mapping learned "
                  f"{m.get('peak_overlay_gw_mapping_changes_total', 0):.0f} time(s)")
        print(f"throughput ({time.monotonic() - t0:.1f} s):")
        if reached.get(("a", "c"), (False,))[0]:
            srv = subprocess.Popen(["ip", "netns", "exec", b.n("hc"), "iperf3", "-s", "-1"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                until(lambda: ":5201" in nsx(b.n("hc"), "ss", "-ltn").stdout, 10)
                r = nsx(b.n("ha"), "iperf3", "-J", "-t", str(a.secs), "-c", "fd00:c::2",
                        check=False, timeout=a.secs + 30)
                gbit = json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
                print(f"  one TCP flow ha -> hc through both NATs (hole punched, "
                      f"AES-256-GCM), {a.secs} s: {gbit:.2f} Gbit/s (iperf3)")
            except (ValueError, KeyError, subprocess.TimeoutExpired) as e:
                failed += 1
                print(f"  FAILED ({e})")
            finally:
                if srv.poll() is None:
                    srv.kill()
                srv.wait()
        else:
            failed += 1
            print("  not measured (ha cannot reach hc)")
    finally:
        b.cleanup()
        shutil.rmtree(b.tmp, ignore_errors=True)
    if not a.no_matrix:
        failed += matrix_part()
    failed += peak_part()
    failed += bridge_part()
    n = len(SITES) * (len(SITES) - 1)
    print(f"demo done in {time.monotonic() - t0:.0f} s: {n - unreached}/{n} pairs reached"
          f"{', with failures' if failed or unreached else ''}; daemons stopped, namespaces "
          "removed")
    return 1 if failed or unreached else 0


if __name__ == "__main__":
    sys.exit(main())
