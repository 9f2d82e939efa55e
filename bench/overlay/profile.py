#!/usr/bin/python3
"""Profiles `peak overlay`'s encrypted path on one TCP flow (root): the two-site bed of
compare.py (gA -> r -> gB), one iperf3 flow gA -> gB through the overlay, and `perf record -g
-e cpu-clock` on each daemon while it runs (this VM has no hardware counters). Writes
OUT/ga.data and OUT/gb.data and prints each daemon's hottest symbols (self and children),
the flow's Gbit/s, the daemons' CPU seconds and how long each was runnable but waiting for a
CPU (/proc/PID/schedstat), TCP retransmissions, UDP receive-buffer drops, iperf3's own CPU share at each end (its -J
cpu_utilization_percent: the sender's and receiver's TCP work) and the TUN and UDP
system-call counters.

Usage: bench/overlay/profile.py [--secs S] [--out DIR] [--no-perf]
  (PEAK_BIN chooses the binary, as for compare.py)"""
import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import compare  # noqa: E402  (the bed, the peers' setup, iperf3)


def schedstat(pid):
    """(seconds on a CPU, seconds runnable but waiting for one) of pid's main thread"""
    run, wait, _ = open(f"/proc/{pid}/schedstat").read().split()
    return int(run) / 1e9, int(wait) / 1e9


def report(data, n=25):
    out = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                          "--percent-limit", "0.7", "--sort", "sym", "-g", "none"],
                         capture_output=True, text=True).stdout
    rows = [x for x in out.splitlines() if x.strip() and not x.startswith("#")]
    return "\n".join(rows[:n])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--secs", type=int, default=8)
    ap.add_argument("--out", default="/tmp/ovprof")
    ap.add_argument("--no-perf", action="store_true", help="only the flow and the counters")
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    b = compare.TwoSites(pathlib.Path(tempfile.mkdtemp(prefix="ovprof")), "op")
    b.extra = []
    perfs = []
    try:
        b.build()
        addr, fam, pids, down = compare.up_peak(b)
        compare.wait("first ping", lambda: compare.nsx(
            b.n("ga"), "ping", fam, "-n", "-c", "1", "-W", "1", addr,
            check=False).returncode == 0, timeout=20)
        rmin, ravg = compare.ping(b, addr, fam, 100)
        if not a.no_perf:
            for s, pid in zip("ab", pids):
                perfs.append(subprocess.Popen(
                    ["perf", "record", "-q", "-g", "-e", "cpu-clock", "-F", "2000", "-p",
                     str(pid), "-o", str(out / f"g{s}.data")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        srv = b.run_in("gb", "iperf3", "-s", "-1")
        compare.wait("iperf3 server", lambda: ":5201" in compare.nsx(
            b.n("gb"), "ss", "-ltn").stdout)
        cpu0 = sum(compare.cpu_s(p) for p in pids)
        sched0 = [schedstat(p) for p in pids]
        r = compare.nsx(b.n("ga"), "iperf3", "-J", "-t", str(a.secs), "-c", addr,
                        timeout=a.secs + 30)
        cpu = sum(compare.cpu_s(p) for p in pids) - cpu0
        sched = {s: [round(x1 - x0, 2) for x0, x1 in zip(s0, schedstat(p))]
                 for s, p, s0 in zip("ab", pids, sched0)}
        srv.wait(timeout=10)
        end = json.loads(r.stdout)["end"]
        gbit = end["sum_received"]["bits_per_second"] / 1e9
        for p in perfs:
            p.send_signal(signal.SIGINT)
            p.wait(timeout=60)
        m = {s: b.metrics(s) for s in "ab"}
        udp_drops = {s: compare.nsx(b.n("g" + s), "nstat", "-az",
                                    "UdpRcvbufErrors").stdout.split()[-2]
                     for s in "ab"}
        down()
    finally:
        for p in perfs:
            if p.poll() is None:
                p.kill()
                p.wait()
        b.kill_extra()
        b.cleanup()
        shutil.rmtree(b.tmp, ignore_errors=True)
    keys = ("peak_overlay_tun_reads_total", "peak_overlay_tun_rx_packets_total",
            "peak_overlay_tun_rx_gso_total", "peak_overlay_tun_writes_total",
            "peak_overlay_tun_tx_packets_total", "peak_overlay_gw_send_calls_total",
            "peak_overlay_gw_tx_packets_total", "peak_overlay_gw_receive_calls_total",
            "peak_overlay_gw_rx_packets_total")
    print(json.dumps({"gbit": round(gbit, 3), "daemon_cpu_s": round(cpu, 2),
                      "cpu_s_per_gbit": round(cpu / max(gbit * a.secs, 1e-9), 3),
                      "rtt_min_us": rmin, "rtt_avg_us": ravg,
                      "daemon_run_wait_s": sched,
                      "tcp_retransmits": end["sum_sent"].get("retransmits"),
                      "udp_rcvbuf_errors": udp_drops,
                      "iperf3_cpu_pct": {k: round(v, 1) for k, v in
                                         end["cpu_utilization_percent"].items()},
                      "load": os.getloadavg()[0],
                      "counters": {s: {k.removeprefix("peak_overlay_"): m[s].get(k)
                                       for k in keys} for s in "ab"}}, indent=1))
    for s in "ab" if not a.no_perf else "":
        print(f"\n== g{s} (sender side: ga seals, gb opens) ==")
        print(report(out / f"g{s}.data"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
