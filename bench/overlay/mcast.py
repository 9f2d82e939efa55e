#!/usr/bin/python3
"""Multicast fan-out against unicast to the same sites in one run (root; issue 21's target:
multicast at least 80% of unicast, in packets per second delivered). On the bed of
tests/overlay/mcbed.py with MEMBERS member sites (default 16), host h50 sends, as fast as one
socket can:
  multicast  K datagrams to ff0e::db8:1: its gateway copies each to every member site
  unicast    the same K datagrams to each member host's own address (K * MEMBERS sends:
             the application replicates)
Every member host's receiver counts the datagrams of each run and the time of the last one
(CLOCK_MONOTONIC, the same in every namespace). The rate of a run is the datagrams received
at all members over the time from the first send to the last receipt. The two runs go back
to back, in alternating order, RUNS times; the median of the ratios is the figure. Losses
(when a socket or the sending gateway falls behind) are counted, not retried.

With --tree-above T (and --fanout F, default 4) every gateway sends a group of more than T
member sites through the distribution tree (slave_mcast.c): the sender's gateway sends F
copies, the member gateways pass them on; the sending gateway's copies per packet are
recorded beside the rates.

Writes JSON (default bench/results/overlay-mcast.json, or overlay-mcast-tree.json with
--tree-above) and prints a Markdown table.
Usage: bench/overlay/mcast.py [--members M] [--count K] [--runs N] [--size B]
       [--tree-above T [--fanout F]] [--out F]"""
import argparse
import json
import os
import pathlib
import platform
import signal
import statistics
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests" / "overlay"))
os.environ.setdefault("PEAK_BIN", str(HERE.parent.parent / "build" / "peak"))
from mcbed import GROUP, UPORT, McBed  # noqa: E402
from ovbed import wait_for  # noqa: E402

TARGET = 0.8

# Joins GROUP, counts datagrams per run tag with the time of the first and last; on SIGTERM
# prints {tag: [count, first, last]}.
BRECV = r"""
import json, signal, socket, struct, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("::", int(sys.argv[2])))
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, socket.inet_pton(
    socket.AF_INET6, sys.argv[1]) + struct.pack("@I", socket.if_nametoindex("lan")))
runs = {}
def done(*_):
    print(json.dumps(runs), flush=True); sys.exit(0)
signal.signal(signal.SIGTERM, done)
print("ready", flush=True)
while True:
    d = s.recv(2048); t = time.monotonic()
    tag = d.split(b":", 1)[0].decode()
    r = runs.get(tag)
    if r: r[0] += 1; r[2] = t
    else: runs[tag] = [1, t, t]
"""

# Sends K datagrams "TAG:SEQ pad" (size bytes) to each address (or the group), unpaced;
# prints the monotonic time of the first send and of the end, and how often a send had to
# wait for room.
BSEND = r"""
import socket, sys, time
tag, k, size, dsts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex("lan"))
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 8)
t0 = time.monotonic(); retries = 0
for i in range(k):
    d = f"{tag}:{i} ".encode().ljust(size, b"x")
    for a in dsts:
        while True:
            try:
                s.sendto(d, (a, 7001)); break
            except (BlockingIOError, OSError):
                retries += 1
                time.sleep(0.0005)
print(t0, time.monotonic(), retries)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=16)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--tree-above", type=int, default=None,
                    help="member sites above which the distribution tree is used")
    ap.add_argument("--fanout", type=int, default=4, help="the tree's fan-out (2..64)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.out is None:
        a.out = str(HERE.parent / "results" / ("overlay-mcast-tree.json" if a.tree_above is not
                                               None else "overlay-mcast.json"))
    extra = ("" if a.tree_above is None else
             f"  tree-above: {a.tree_above}\n  tree-fanout: {a.fanout}\n")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mcbench"))
    b = McBed(tmp, "mb")
    recv = {}
    rows = []
    try:
        b.build(a.members, 0, mc_extra=extra)
        b.start_all()
        for s in b.members:
            p = subprocess.Popen(["ip", "netns", "exec", b.n(f"h{s}"), sys.executable, "-c",
                                  BRECV, GROUP, str(UPORT)], stdout=subprocess.PIPE, text=True)
            recv[s] = p
            assert p.stdout.readline().strip() == "ready"
        wait_for("every member known at the sender",
                 lambda: b.members_of("50")[1] == set(b.members), timeout=60)
        uni = ",".join(f"fd00:{s}::2" for s in b.members)
        starts, sends, taken, copies = {}, {}, {}, {}
        # neighbours fixed: the kernel's neighbour discovery (its first solicitations go
        # unanswered here: a first packet waits 1 s per hop, and the held packets then come
        # all at once) is not what is measured
        for s in ["50"] + b.members:
            mac = {x: json.loads(subprocess.run(
                ["ip", "-n", b.n(f"{x}{s}"), "-j", "link", "show", "lan"], capture_output=True,
                text=True, check=True).stdout)[0]["address"] for x in "hg"}
            subprocess.run(["ip", "-n", b.n(f"g{s}"), "-6", "neigh", "replace", f"fd00:{s}::2",
                            "lladdr", mac["h"], "dev", "lan", "nud", "permanent"], check=True)
            subprocess.run(["ip", "-n", b.n(f"h{s}"), "-6", "neigh", "replace", f"fd00:{s}::1",
                            "lladdr", mac["g"], "dev", "lan", "nud", "permanent", "router"],
                           check=True)

        for r in range(a.runs):
            for kind in (("mcast", "uni") if r % 2 == 0 else ("uni", "mcast")):
                tag = f"{kind}{r}"
                dst = GROUP if kind == "mcast" else uni
                m0 = b.metrics("50")
                out = subprocess.run(["ip", "netns", "exec", b.n("h50"), sys.executable, "-c",
                                      BSEND, tag, str(a.count), str(a.size), dst],
                                     capture_output=True, text=True, check=True, timeout=600)
                t0, t1, retries = out.stdout.split()
                starts[tag] = float(t0)
                sends[tag] = (float(t1) - float(t0), int(retries))
                # drained: what the member gateways hand their LANs stopped growing
                last = [-1]

                def settled():
                    m = 0
                    for s in b.members:
                        x = b.metrics(s)
                        m += x.get("peak_overlay_tun_tx_packets_total", 0) + x.get(
                            'peak_overlay_mcast_peer_packets_total{result="delivered"}', 0)
                    same = m == last[0]
                    last[0] = m
                    return same
                wait_for("the run drained", settled, timeout=60, every=0.5)
                m1 = b.metrics("50")
                # what the sender's gateway took in (from its TUN, or its packet socket)
                key = ("peak_overlay_tun_rx_packets_total" if kind == "uni" else
                       'peak_overlay_mcast_lan_packets_total{result="forwarded"}')
                taken[tag] = m1.get(key, 0) - m0.get(key, 0)
                out_keys = ('peak_overlay_mcast_copies_total{result="ok"}',
                            'peak_overlay_mcast_tree_packets_total{result="sent"}')
                copies[tag] = sum(m1.get(k, 0) - m0.get(k, 0) for k in out_keys)
        res = {}
        for s, p in recv.items():
            p.send_signal(signal.SIGTERM)
            out, _ = p.communicate(timeout=30)
            res[s] = json.loads(out.strip().splitlines()[-1])
        for r in range(a.runs):
            row = {}
            for kind in ("mcast", "uni"):
                tag = f"{kind}{r}"
                got = [res[s].get(tag, [0, 0, 0]) for s in b.members]
                n = sum(g[0] for g in got)
                end = max(g[2] for g in got if g[0]) if n else starts[tag]
                row[kind] = {"received": n, "sent_per_site": a.count,
                             "seconds": end - starts[tag], "send_seconds": sends[tag][0],
                             "send_retries": sends[tag][1],
                             "sender_gateway_took": taken[tag],
                             "sender_gateway_sent": copies[tag],
                             "pps": n / (end - starts[tag]) if n else 0.0}
            row["ratio"] = row["mcast"]["pps"] / row["uni"]["pps"] if row["uni"]["pps"] else 0
            rows.append(row)
    finally:
        for p in recv.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        b.cleanup()
    ratio = statistics.median(r["ratio"] for r in rows)
    doc = {"command": " ".join(["bench/overlay/mcast.py"] + sys.argv[1:]),
           "members": a.members, "count": a.count, "size": a.size, "runs": rows,
           "tree_above": a.tree_above, "fanout": a.fanout if a.tree_above is not None else None,
           "median_ratio": ratio, "target": TARGET, "host": platform.node(),
           "loadavg": os.getloadavg()}
    pathlib.Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")
    print("| run | multicast pkt/s delivered (lost) | unicast pkt/s delivered (lost) | ratio |")
    print("|---|---|---|---|")
    for i, r in enumerate(rows):
        tot = a.count * a.members
        print(f"| {i} | {r['mcast']['pps']:.0f} ({tot - r['mcast']['received']}) | "
              f"{r['uni']['pps']:.0f} ({tot - r['uni']['received']}) | {r['ratio']:.2f} |")
    sent = statistics.median(r["mcast"]["sender_gateway_sent"] / max(1, r["mcast"][
        "sender_gateway_took"]) for r in rows)
    print(f"\nmedian multicast/unicast: {ratio:.2f} (target at least {TARGET}); "
          f"{a.members} member sites, {a.count} datagrams of {a.size} bytes per site; the "
          f"sending gateway sent {sent:.1f} copies a packet"
          + ("" if a.tree_above is None else
             f" (distribution tree above {a.tree_above} members, fan-out {a.fanout})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
