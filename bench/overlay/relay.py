#!/usr/bin/python3
"""Relayed against direct throughput of `peak overlay` in one run (root; issue 21's target:
relayed at least 50% of direct). On the three public sites of tests/overlay/pubbed.py, one
TCP flow (iperf3, SECS each) from host hA to host hB:
  direct    gA -> gB, as usual
  relayed   the router drops gA <-> gB (both ways): the resiliency slave gives up the direct
            path and both ends relay through gC (OVW_RELAY to gC, which forwards OVW_RELAYED
            to the far end: the same forwarding that serves two sites whose NATs cannot be
            punched, see test_overlay_nat.py)
with the daemons' CPU seconds per Gbit (gA, gB, and gC when it relays). The two are measured
back to back in each run, in alternating order, and the ratio of each run is reported; the
median over the runs is the figure.

    hA fd00:a::2      hB fd00:b::2      hC fd00:c::2
    gA 10.0.1.2       gB 10.0.2.2       gC 10.0.3.2
      +--------------- r ---------------+      (r drops 10.0.1.2 <-> 10.0.2.2: relayed)

Writes JSON (default bench/results/overlay-relay.json) and prints a Markdown table.
Usage: bench/overlay/relay.py [--secs S] [--runs N] [--out F]"""
import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests" / "overlay"))
os.environ.setdefault("PEAK_BIN", str(HERE.parent.parent / "build" / "peak"))
from ovbed import nsx, wait_for  # noqa: E402
from pubbed import SITES  # noqa: E402
from test_resil import ResilBed  # noqa: E402  (three public sites, cut A-B at the router)

TARGET = 0.5


def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def daemon_pids(b):
    """The peak processes of the sites ('ip netns exec' execs, so the Popen pid is peak's)."""
    return {s: b.procs[s].pid for s in SITES}


def iperf(b, secs):
    """One TCP flow hA -> hB for secs: (Gbit/s received, retransmits, CPU s of each daemon)."""
    srv = subprocess.Popen(["ip", "netns", "exec", b.n("hb"), "iperf3", "-s", "-1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("iperf3 server", lambda: ":5201" in nsx(b.n("hb"), "ss", "-ltn").stdout)
        pids = daemon_pids(b)
        cpu0 = {s: cpu_s(p) for s, p in pids.items()}
        out = nsx(b.n("ha"), "iperf3", "-J", "-t", str(secs), "-c", "fd00:b::2",
                  timeout=secs + 60).stdout
        cpu1 = {s: cpu_s(p) for s, p in pids.items()}
        srv.wait(timeout=20)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    d = json.loads(out)
    gbit = d["end"]["sum_received"]["bits_per_second"] / 1e9
    retr = d["end"]["sum_sent"].get("retransmits")
    return gbit, retr, {s: cpu1[s] - cpu0[s] for s in SITES}


def both_relayed(b):
    return b.path("a", "b") == "down via c" and b.path("b", "a") == "down via c"


def both_direct(b):
    return b.path("a", "b") == "direct" and b.path("b", "a") == "direct"


def measure(b, mode, secs, restore=True):
    """One flow in mode; restore: after a relayed one, undo the cut and wait until both ends
    are direct again (not after the last measurement)."""
    if mode == "relayed":
        b.cut(True)
        # the resiliency slave judges a path only while it is used: traffic makes it so
        ping = subprocess.Popen(["ip", "netns", "exec", b.n("ha"), "ping", "-6", "-n", "-q",
                                 "-i", "0.05", "fd00:b::2"], stdout=subprocess.DEVNULL)
        try:
            wait_for("both ends relay through c", lambda: both_relayed(b), timeout=30)
        finally:
            ping.kill()
            ping.wait()
    relayed_before = b.metrics("c").get("peak_overlay_gw_relay_forwarded_total", 0)
    gbit, retr, cpu = iperf(b, secs)
    fwd = b.metrics("c").get("peak_overlay_gw_relay_forwarded_total", 0) - relayed_before
    if mode == "relayed":
        if not both_relayed(b):
            raise RuntimeError("a path came back during the relayed flow")
    if mode == "relayed" and restore:
        b.cut(False)
        ping = subprocess.Popen(["ip", "netns", "exec", b.n("ha"), "ping", "-6", "-n", "-q",
                                 "-i", "0.05", "fd00:b::2"], stdout=subprocess.DEVNULL)
        try:
            wait_for("both ends direct again", lambda: both_direct(b), timeout=30)
        finally:
            ping.kill()
            ping.wait()
    total = sum(cpu.values())
    return {"gbit": round(gbit, 4), "retransmits": retr, "relay_forwarded": int(fwd),
            "cpu_s": {s: round(v, 3) for s, v in cpu.items()},
            "cpu_s_per_gbit": round(total / max(gbit * secs, 1e-9), 3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(HERE.parent / "results" / "overlay-relay.json"))
    a = ap.parse_args()
    b = ResilBed(pathlib.Path(tempfile.mkdtemp()), "rl")
    each = []
    t0 = time.monotonic()
    try:
        b.build(resil="resiliency:\n  dead-ms: 600\n")
        for s in SITES:
            b.start(s)
        wait_for("hA -> hB", lambda: b.ping_ok("a", "b"), timeout=20)
        wait_for("hA -> hC", lambda: b.ping_ok("a", "c"), timeout=20)
        for i in range(a.runs):
            order = ("direct", "relayed") if i % 2 == 0 else ("relayed", "direct")
            last = i == a.runs - 1
            r = {m: measure(b, m, a.secs, restore=not (last and m == order[1]))
                 for m in order}
            r["ratio"] = round(r["relayed"]["gbit"] / max(r["direct"]["gbit"], 1e-9), 4)
            each.append(r)
            print(f"run {i + 1}: direct {r['direct']['gbit']:.2f} Gbit/s, relayed "
                  f"{r['relayed']['gbit']:.2f} Gbit/s, ratio {r['ratio']:.2f}", flush=True)
    finally:
        b.cleanup()
    med = {m: statistics.median(r[m]["gbit"] for r in each) for m in ("direct", "relayed")}
    ratio = statistics.median(r["ratio"] for r in each)
    cpg = {m: statistics.median(r[m]["cpu_s_per_gbit"] for r in each)
           for m in ("direct", "relayed")}
    res = {"bench": "overlay-relay",
           "command": " ".join(["bench/overlay/relay.py"] + sys.argv[1:]), "secs": a.secs,
           "runs": a.runs, "target_ratio": TARGET,
           "machine": {"nproc": os.cpu_count(), "kernel": platform.release()},
           "median": {"direct_gbit": med["direct"], "relayed_gbit": med["relayed"],
                      "ratio": ratio, "direct_cpu_s_per_gbit": cpg["direct"],
                      "relayed_cpu_s_per_gbit": cpg["relayed"]},
           "each": each, "elapsed_s": round(time.monotonic() - t0, 1)}
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"\n| hA -> hB, one TCP flow (median of {a.runs}) | Gbit/s | daemons' CPU s per Gbit |"
          f"\n|---|---|---|\n| direct | {med['direct']:.2f} | {cpg['direct']:.2f} |"
          f"\n| relayed through gC | {med['relayed']:.2f} | {cpg['relayed']:.2f} |"
          f"\n| relayed / direct | {ratio:.2f} (target >= {TARGET:.2f}) | |")


if __name__ == "__main__":
    main()
