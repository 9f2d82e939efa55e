#!/usr/bin/python3
"""DHT lookups while a quarter of the DHT's nodes die (root; issue 17's target: 64 DHT nodes
with a quarter killed still answer 99% of lookups within 2 s).

The DHT: SITES public sites, each a `peak overlay` gateway with its own OpenDHT node, and
NODES - SITES independent OpenDHT nodes (Debian's `dhtnode`) in one namespace of their own,
every node bootstrapping through the first. Each gateway publishes its prefix (signed,
certified by one authority) and finds the others' there: a lookup starts when a packet goes
to a destination no route covers, and the packet waits for it (the pending queue). The
round trip of a ping between two sites whose caches are both cold (from and to the sites'
host addresses fd00:N::2, on the gateways themselves) is two lookups, the sender's of the
destination and the destination's of the sender (for the reply), plus the (veth) path;
each prefix lookup's own time comes from the gateways' logs (`--verbose`): the time its
answer routed the packets, early or at its end (dht.c), and each of its gets' (its length,
start, first value, end), so each round also says where the lookups spent their time.

Rounds, each with the gateways' route caches cold (`cache-ttl` expired, checked through
their `routes_expired` counters): every site pings every other site once, all sites at
once. Round "before": no node killed. Round "killed": right after SIGKILL of a quarter of
all nodes (taken at random among the dhtnodes: the gateways are the sites looked up), when
the survivors' routing tables still hold the dead. Round "after": the next cold round. A
ping counts as answered within 2 s when it came back within 2 s; unanswered pings are
counted apart (a ping waits at most --wait seconds). A lookup counts by its own time.

    g01 10.0.1.2 ... gNN 10.0.N.2            dn 10.0.250.2: dhtnode :4222, :4223, ...
      +----------------- r -------------------+

Writes JSON (default bench/results/overlay-dht-churn.json) and prints Markdown tables.
Usage: bench/overlay/dht_churn.py [--nodes N] [--sites N] [--lookup bsearch|walk|lengths]
                                  [--seed S] [--quick] [--out F]"""
import argparse
import concurrent.futures
import json
import os
import pathlib
import platform
import random
import re
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests" / "overlay"))
os.environ.setdefault("PEAK_BIN", str(HERE.parent.parent / "build" / "peak"))
import dhtnodes  # noqa: E402
from ovbed import PEAK, Bed, nsx, sh, wait_for  # noqa: E402

PORT = 51820
DHT_PORT = 4222
NETWORK = 4712
CACHE_TTL = 5  # s: each round starts once every gateway's routes have expired
TARGET_S, TARGET_SHARE = 2.0, 0.99


def progress(msg):
    print(f"dht_churn: {msg}", file=sys.stderr, flush=True)


class ChurnBed(Bed):
    def __init__(self, tmp, sites, dhtnodes, lookup):
        super().__init__(tmp, "dc")
        self.sites = [f"{i:02x}" for i in range(1, sites + 1)]
        self.ndht, self.lookup = dhtnodes, lookup
        self.dht = {}  # port -> Popen

    def peak(self, *args):
        return sh(PEAK, "overlay", *args).stdout.strip()

    def build(self):
        for name in ["r", "dn"] + [f"g{s}" for s in self.sites]:
            self.add_ns(name)
        nsx(self.n("r"), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.dn_uplink("10.0.250")
        auth = self.tmp / "auth.key"
        self.peak("--genkey", str(auth))
        auth_pub = self.peak("--authority-pub", str(auth))
        for i, s in enumerate(self.sites, 1):
            g = f"g{s}"
            self.veth(g, "wan", "r", "r" + s)
            sh("ip", "-n", self.n(g), "addr", "add", f"10.0.{i}.2/24", "dev", "wan")
            sh("ip", "-n", self.n(g), "route", "add", "default", "via", f"10.0.{i}.1")
            sh("ip", "-n", self.n("r"), "addr", "add", f"10.0.{i}.1/24", "dev", "r" + s)
            # the site's host address, on the gateway itself (no host namespace)
            sh("ip", "-n", self.n(g), "addr", "add", f"fd00:{s}::2/128", "dev", "lo", "nodad")
            key = self.tmp / f"{s}.key"
            self.peak("--genkey", str(key))
            site_id = self.peak("--site-id", str(key))
            cert = self.peak("--certify", str(auth), "--site", site_id, "--prefix",
                             f"fd00:{s}::/64")
            (self.tmp / f"{s}.yaml").write_text(
                f"tun: ov0\naddress: fd00:{s}::1\nicmp-rate: 100\n"
                f"gateway:\n  listen: 0.0.0.0:{PORT}\n  private-key-file: {key}\n"
                f"  keepalive: 1\n"
                f"dht:\n  port: {DHT_PORT}\n  network: {NETWORK}\n"
                f"  bootstrap: [10.0.250.2:{DHT_PORT}]\n"
                f"  authority: {auth_pub}\n  certificate: {cert}\n"
                f"  prefixes: [fd00:{s}::/64]\n  locator: 10.0.{i}.2:{PORT}\n"
                f"  lookup: {self.lookup}\n  negative-ttl: 1\n  cache-ttl: {CACHE_TTL}\n"
                + ("  lengths: [64]\n" if self.lookup == "lengths" else ""))

    def start_dhtnodes(self):
        """The independent nodes, one process each (bound in dn, the first the bootstrap)."""
        for k in range(self.ndht):
            port = DHT_PORT + k
            self.dht[port] = dhtnodes.start(
                self.n("dn"), port, NETWORK, bootstrap=f"10.0.250.2:{DHT_PORT}" if k else None,
                wait=not k)
        dhtnodes.wait_bound(self.n("dn"), list(self.dht))

    def kill_dhtnodes(self, ports):
        for p in ports:
            proc = self.dht.pop(p)
            proc.kill()  # SIGKILL: no goodbye to the DHT
            proc.wait()
        gone = [f":{p} " for p in ports]  # (the kernel unbinds them as the process dies)
        wait_for("the killed nodes' ports unbound", lambda: not any(
            g in nsx(self.n("dn"), "ss", "-uln").stdout for g in gone))

    def cleanup(self):
        for s in list(self.procs):
            self.stop(s)
        for proc in self.dht.values():
            dhtnodes.stop(proc)
        self.dht.clear()
        super().cleanup()


def ping_ms(b, src, dst, wait_s):
    """One ping from site src's host address to site dst's: its round trip in ms, or None."""
    r = nsx(b.n(f"g{src}"), "ping", "-6", "-n", "-c", "1", "-W", str(wait_s), "-I",
            f"fd00:{src}::2", f"fd00:{dst}::2", check=False)
    m = re.search(r"time=([\d.]+) ms", r.stdout)
    return float(m.group(1)) if m else None


def counter(b, s, name):
    return b.metrics(s).get(name, 0)


def cold(b):
    """Waits until no gateway holds a route from the DHT (each expires after cache-ttl)."""
    for s in b.sites:
        wait_for(f"g{s}'s routes expire", lambda: "dht-route " not in b.ctl(
            s, "show", "peers").stdout, timeout=CACHE_TTL * 5 + 30)


LOOKUP_RE = re.compile(r"overlay: dht: lookup \S+: (?:found|none) in (\d+) ms"
                       r"(?:, \d+ gets \(\d+ speculative\), #(\d+))?")
FINAL_RE = re.compile(r"overlay: dht: lookup \S+: (confirmed|corrected) in (\d+) ms, \d+ gets "
                      r"\(\d+ speculative\), #(\d+)")
GET_RE = re.compile(r"overlay: dht: lookup #(\d+) get /(\d+): started at (\d+) ms, (\d+) "
                    r"value\(s\), first in (\d+|-) ms, ended in (\d+) ms( \(superseded\))?")


def quantile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else None


def get_figures(lookups, gets):
    """Where a round's lookups spend their time, from the gateways' debug lines: lookups
    {(site, #): ms}, gets {(site, #): [(length, start, values, first, end, superseded)]}
    (ms from the lookup's start for start, from the get's for first and end). A lookup's
    critical get is the one of its own (not superseded) gets that ended last: it waited for
    that get's end (an absent answer needs it) or, a hit, for its first value."""
    own = [g for k in lookups for g in gets.get(k, []) if not g[5]]
    absent = [g[4] for g in own if not g[2]]
    hits = [g[3] for g in own if g[2] and g[3] is not None]
    crit = {"absent": 0, "hit": 0}
    crit_start, slow = [], {"lookups": 0, "absent": 0, "hit": 0, "start_ms": []}
    for k, ms in lookups.items():
        mine = [g for g in gets.get(k, []) if not g[5]]
        if not mine:
            continue
        c = max(mine, key=lambda g: g[1] + (g[4] if not g[2] else g[3] or g[4]))
        kind = "hit" if c[2] else "absent"
        crit[kind] += 1
        crit_start.append(c[1])
        if ms > TARGET_S * 1000:
            slow["lookups"] += 1
            slow[kind] += 1
            slow["start_ms"].append(c[1])
    return {"gets": len(own),
            "superseded": sum(1 for k in lookups for g in gets.get(k, []) if g[5]),
            "gets_per_lookup": round(len(own) / len(lookups), 2) if lookups else None,
            "absent_gets": len(absent), "absent_end_p50_ms": quantile(absent, 0.5),
            "absent_end_p90_ms": quantile(absent, 0.9),
            "absent_end_max_ms": max(absent) if absent else None,
            "absent_over_1s": sum(1 for t in absent if t > 1000),
            "hit_gets": len(hits), "hit_first_p50_ms": quantile(hits, 0.5),
            "hit_first_p90_ms": quantile(hits, 0.9),
            "hit_first_max_ms": max(hits) if hits else None,
            "hit_first_over_1s": sum(1 for t in hits if t > 1000),
            "critical_absent": crit["absent"], "critical_hit": crit["hit"],
            "critical_start_p50_ms": quantile(crit_start, 0.5),
            "over_2s": slow["lookups"], "over_2s_critical_absent": slow["absent"],
            "over_2s_critical_hit": slow["hit"],
            "over_2s_critical_start_p50_ms": quantile(slow["start_ms"], 0.5)}


def gets_of_rounds(b, rows, logpos):
    """Once every get has ended (those of lookups answered early run on after their round):
    each round's get figures from the get lines of its lookups, and each lookup's final
    time (its end, after an early answer)."""
    getlog, final = {}, {}
    for s in b.sites:
        with open(b.logs[s], "rb") as f:
            f.seek(logpos[s])
            text = f.read().decode(errors="replace")
        for seq, ln, start, nval, first, end, sup in GET_RE.findall(text):
            getlog.setdefault((s, int(seq)), []).append(
                (int(ln), int(start), int(nval), None if first == "-" else int(first),
                 int(end), bool(sup)))
        for what, ms, seq in FINAL_RE.findall(text):
            final[(s, int(seq))] = (what, int(ms))
    for row in rows:
        timed = row.pop("timed")
        row["get_figures"] = get_figures(timed, getlog) if timed else None
        ends = sorted(final[k][1] if k in final else ms for k, ms in timed.items())
        row["lookup_end_p50_ms"], row["lookup_end_p99_ms"] = (quantile(ends, 0.5),
                                                              quantile(ends, 0.99))
        row["corrected"] = sum(1 for k in timed if final.get(k, ("",))[0] == "corrected")
        if row["round"] == "killed":  # each lookup: time, gets (length, start, values, first, end)
            row["lookup_gets"] = [[ms] + [list(g[:5]) for g in getlog.get(k, []) if not g[5]]
                                  for k, ms in sorted(timed.items())]
        if row["get_figures"]:
            progress(f"round {row['round']}'s gets: {json.dumps(row['get_figures'])}")


def lookup_round(b, name, wait_s):
    """Every site pings every other site once, all at once: the pings' round trips (each
    waits for two lookups: the sender's of the destination, then the destination's of the
    sender, for its reply), and each prefix lookup's own time, from the gateways' logs
    ("overlay: dht: lookup ...: found in N ms", --verbose; none from a binary without it)."""
    logpos = {s: b.logs[s].stat().st_size for s in b.sites}
    found0 = {s: counter(b, s, 'peak_overlay_dht_lookups_total{result="found"}')
              for s in b.sites}
    gets0 = {s: counter(b, s, "peak_overlay_dht_gets_total") for s in b.sites}
    spec0 = {s: counter(b, s, "peak_overlay_dht_speculative_gets_total") for s in b.sites}
    early0 = {s: counter(b, s, "peak_overlay_dht_early_answers_total") for s in b.sites}
    pairs = [(a, z) for a in b.sites for z in b.sites if a != z]
    random.shuffle(pairs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as ex:
        times = list(ex.map(lambda p: ping_ms(b, p[0], p[1], wait_s), pairs))
    found = sum(counter(b, s, 'peak_overlay_dht_lookups_total{result="found"}') - found0[s]
                for s in b.sites)
    gets = sum(counter(b, s, "peak_overlay_dht_gets_total") - gets0[s] for s in b.sites)
    spec = sum(counter(b, s, "peak_overlay_dht_speculative_gets_total") - spec0[s]
               for s in b.sites)
    early = sum(counter(b, s, "peak_overlay_dht_early_answers_total") - early0[s]
                for s in b.sites)
    own, timed = [], {}
    for s in b.sites:
        with open(b.logs[s], "rb") as f:
            f.seek(logpos[s])
            text = f.read().decode(errors="replace")
        for ms, seq in LOOKUP_RE.findall(text):
            own.append(int(ms))
            if seq:
                timed[(s, int(seq))] = int(ms)
    own.sort()
    oq = (lambda p: own[min(len(own) - 1, int(p * len(own)))] if own else None)
    got = sorted(t for t in times if t is not None)
    within = sum(1 for t in got if t <= TARGET_S * 1000)
    q = (lambda p: got[min(len(got) - 1, int(p * len(got)))] if got else None)
    row = {"round": name, "lookups": len(pairs), "answered": len(got),
           "within_2s": within, "share_within_2s": round(within / len(pairs), 4),
           "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": got[-1] if got else None,
           "found_lookups": found, "gets_per_found": round(gets / found, 2) if found else None,
           "speculative_per_found": round(spec / found, 2) if found else None,
           "early_answers": int(early),
           "prefix_lookups": len(own),
           "lookups_within_2s": sum(1 for t in own if t <= TARGET_S * 1000),
           "lookup_share_within_2s": round(sum(1 for t in own if t <= TARGET_S * 1000)
                                           / len(own), 4) if own else None,
           "lookup_p50_ms": oq(0.5), "lookup_p99_ms": oq(0.99),
           "lookup_max_ms": own[-1] if own else None, "timed": timed}
    progress(f"round {name}: {within}/{len(pairs)} answered within 2 s, p50 {row['p50_ms']} ms,"
             f" p99 {row['p99_ms']} ms, {row['gets_per_found']} gets per found lookup"
             f" ({row['speculative_per_found']} speculative), {row['early_answers']} answered"
             f" early; prefix lookups themselves:"
             f" {row['lookups_within_2s']}/{row['prefix_lookups']} within 2 s,"
             f" p99 {row['lookup_p99_ms']} ms")
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=64, help="DHT nodes in all (64)")
    ap.add_argument("--sites", type=int, default=16, help="of them gateways (16)")
    ap.add_argument("--lookup", choices=("bsearch", "walk", "lengths"), default="bsearch",
                    help="the gateways' lookup (bsearch, the default of peak overlay; "
                    "lengths: over the one length the sites publish, /64)")
    ap.add_argument("--wait", type=int, default=10, help="longest wait for one ping, s (10)")
    ap.add_argument("--seed", type=int, default=1, help="which nodes die (1)")
    ap.add_argument("--quick", action="store_true",
                    help="12 nodes, 4 sites: checks the harness, its figures mean nothing")
    ap.add_argument("--out", default=str(HERE.parent / "results" / "overlay-dht-churn.json"))
    a = ap.parse_args()
    if a.quick:
        a.nodes, a.sites = 12, 4
    if os.geteuid() != 0:
        sys.exit("dht_churn: needs root (network namespaces)")
    if not 2 <= a.sites < a.nodes or a.sites > 200:
        sys.exit("dht_churn: need 2 <= --sites < --nodes and --sites <= 200")
    random.seed(a.seed)
    kill = a.nodes // 4
    if kill > a.nodes - a.sites:
        sys.exit("dht_churn: a quarter of the nodes is more than the dhtnodes")
    b = ChurnBed(pathlib.Path(tempfile.mkdtemp(prefix="dht-churn.")), a.sites,
                 a.nodes - a.sites, a.lookup)
    rows, t0 = [], time.monotonic()
    try:
        progress(f"{a.sites} gateways and {a.nodes - a.sites} dhtnodes in namespaces")
        b.build()
        b.start_dhtnodes()
        for s in b.sites:
            b.spawn(s)
        for s in b.sites:
            b.ready(s, route=False, timeout=60)
            sh("ip", "-n", b.n(f"g{s}"), "-6", "route", "add", "fd00::/16", "dev", "ov0")
        for s in b.sites:  # every site's record is out (acknowledged by some node)
            wait_for(f"g{s} published", lambda: counter(
                b, s, 'peak_overlay_dht_puts_total{result="ok"}') > 0, timeout=60)
        progress("every gateway published its record")
        logpos = {s: b.logs[s].stat().st_size for s in b.sites}
        rows.append(lookup_round(b, "before", a.wait))
        cold(b)
        dead = sorted(random.sample(sorted(b.dht), kill))
        b.kill_dhtnodes(dead)
        progress(f"killed {kill} of {a.nodes} nodes (dhtnodes on ports {dead})")
        rows.append(lookup_round(b, "killed", a.wait))
        cold(b)
        rows.append(lookup_round(b, "after", a.wait))
        superseded = sum(counter(b, s, "peak_overlay_dht_superseded_gets_total")
                         for s in b.sites)
        early = sum(counter(b, s, "peak_overlay_dht_early_answers_total") for s in b.sites)
        corrected = sum(counter(b, s, "peak_overlay_dht_corrected_answers_total")
                        for s in b.sites)
        for s in b.sites:  # every get ends, superseded ones too: no buffer is lost
            wait_for(f"g{s}'s gets end", lambda: "dht gets-in-flight 0" in b.ctl(
                s, "show", "peers").stdout, timeout=60)
        progress(f"every get ended ({superseded:.0f} superseded in all); {early:.0f} lookups"
                 f" answered early, {corrected:.0f} of them corrected at their end")
        gets_of_rounds(b, rows, logpos)
        for s in b.sites:
            assert b.stop(s) == 0, b.logs[s].read_text()
    finally:
        b.cleanup()
    res = {"nodes": a.nodes, "gateways": a.sites, "dhtnodes": a.nodes - a.sites,
           "killed": kill, "early_answers": int(early), "corrected_answers": int(corrected),
           "lookup": a.lookup, "cache_ttl_s": CACHE_TTL, "rounds": rows,
           "target": f"{TARGET_SHARE:.0%} of lookups answered within {TARGET_S:.0f} s",
           "met": all(r["share_within_2s"] >= TARGET_SHARE for r in rows),
           "lookups_met": all((r["lookup_share_within_2s"] or 0) >= TARGET_SHARE for r in rows),
           "seconds": round(time.monotonic() - t0, 1), "machine": platform.node(),
           "command": " ".join(["bench/overlay/dht_churn.py"] + sys.argv[1:])}
    pathlib.Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"{a.nodes} DHT nodes ({a.sites} gateways), {kill} killed; lookup {a.lookup}\n")
    print("| round | lookups | within 2 s | p50 ms | p99 ms | max ms | gets per lookup |"
          " of them speculative | prefix lookups answered early |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['round']} | {r['lookups']} | {r['within_2s']} ({r['share_within_2s']:.1%})"
              f" | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['gets_per_found']}"
              f" | {r['speculative_per_found']} | {r['early_answers']} |")
    print("\nThe prefix lookups themselves (from the gateways' logs; answered: when the"
          " packets went, early or at the end; ended: the lookup's end):\n")
    print("| round | lookups | answered within 2 s | p50 ms | p99 ms | max ms |"
          " ended p50 / p99 ms | early answers corrected |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        share = r["lookup_share_within_2s"]
        print(f"| {r['round']} | {r['prefix_lookups']} | {r['lookups_within_2s']}"
              f" ({share:.1%}) | {r['lookup_p50_ms']} | {r['lookup_p99_ms']}"
              f" | {r['lookup_max_ms']} | {r['lookup_end_p50_ms']} / {r['lookup_end_p99_ms']}"
              f" | {r['corrected']} |" if share is not None else f"| {r['round']} | - |")
    print("\nTheir gets (the lines `lookup #N get /LEN: ...`): an absent answer waits for the"
          " get's end, a hit for its first value; a lookup's critical get is the one it waited"
          " for last:\n")
    print("| round | gets per lookup | absent: end p50 / p90 / max ms | absent > 1 s |"
          " hit: first value p50 / p90 / max ms | hit > 1 s | critical absent / hit |"
          " lookups > 2 s: critical absent / hit, critical start p50 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        g = r["get_figures"]
        if not g:
            print(f"| {r['round']} | - |")
            continue
        print(f"| {r['round']} | {g['gets_per_lookup']} | {g['absent_end_p50_ms']} /"
              f" {g['absent_end_p90_ms']} / {g['absent_end_max_ms']} |"
              f" {g['absent_over_1s']}/{g['absent_gets']} | {g['hit_first_p50_ms']} /"
              f" {g['hit_first_p90_ms']} / {g['hit_first_max_ms']} |"
              f" {g['hit_first_over_1s']}/{g['hit_gets']} | {g['critical_absent']} /"
              f" {g['critical_hit']} | {g['over_2s']}: {g['over_2s_critical_absent']} /"
              f" {g['over_2s_critical_hit']}, {g['over_2s_critical_start_p50_ms']} |")
    print(f"\n{res['early_answers']} prefix lookups answered early in all,"
          f" {res['corrected_answers']} of them corrected at their end")
    print(f"\ntarget {res['target']}: pings (two lookups each) "
          f"{'met' if res['met'] else 'not met'}, lookups "
          f"{'met' if res['lookups_met'] else 'not met'}")


if __name__ == "__main__":
    main()
