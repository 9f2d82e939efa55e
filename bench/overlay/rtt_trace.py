#!/usr/bin/python3
"""Traces echo requests through `peak overlay` step by step (root, perf): compare.py's
two-site bed with `peak overlay` (AES-256-GCM), pings gA -> gB (fd00:b::1) while `perf record`
takes the scheduler's wake-ups and switches, the packet's queueing and receipt on each device
(net:net_dev_queue, net:netif_receive_skb) and the system calls the path makes (epoll_wait,
read, sendmmsg, recvmmsg, writev, and ping's sendto and recvmsg). Each round trip is the
events from ping's sendto to the recvmsg that returns the reply; the most common sequence of
them is printed as a table, one row per step with the least and the median time since the
step before it (microseconds), so that a wait (a timer, a batch held back, a poll timeout, a
hand-off to another thread) shows as one long step. The RTT of the IPv4 path below the
overlay, pinged the same way, is printed first for reference.

Times include the tracing's own cost (about 1 us an event here); compare steps, not totals,
with ping's RTT. `--interval 0.001` shows the path warm; at 10 ms apart (ping's -i 0.01,
compare.py's pace) every step is slower: the CPUs idle between echoes.

Usage: bench/overlay/rtt_trace.py [--count N] [--interval S] [--cpu C] [--out FILE]
  --cpu C pins both daemons and ping to CPU C (no wake-up crosses CPUs); PEAK_BIN chooses
  the binary, as for compare.py"""
import argparse
import collections
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import compare  # noqa: E402  (the bed and the peers' setup)

SYSCALLS = ("epoll_wait", "read", "sendmmsg", "recvmmsg", "writev", "sendto", "recvmsg")
EVENTS = (["sched:sched_switch", "sched:sched_waking", "net:net_dev_queue",
           "net:netif_receive_skb"]
          + [f"syscalls:sys_{d}_{c}" for c in SYSCALLS for d in ("enter", "exit")])
LINE = re.compile(r"\s*(.+?)\s+(\d+)\s+\[\d+\]\s+([\d.]+):\s+(\S+):\s*(.*)")


def events(text):
    """perf script -F comm,pid,cpu,time,event,trace output -> [(us, comm, pid, event, rest)]"""
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            comm, pid, t, ev, rest = m.groups()
            out.append((float(t) * 1e6, comm, int(pid), ev.split(":")[-1], rest))
    return out


def step(e):
    """The name of event e in a round trip's sequence."""
    _, comm, pid, ev, rest = e
    who = f"{comm[:12]}/{pid}"
    if ev == "sched_switch":
        m = re.search(r"next_comm=(.+?) next_pid=(\d+)", rest)
        return f"switch to {m.group(1)[:12]}/{m.group(2)}" if m else ev
    if ev == "sched_waking":
        m = re.search(r"comm=(.+?) pid=(\d+)", rest)
        return f"{who} wakes {m.group(1)[:12]}/{m.group(2)}" if m else ev
    if ev in ("net_dev_queue", "netif_receive_skb"):
        m = re.search(r"dev=(\S+)", rest)
        return f"{who} {ev} {m.group(1) if m else '?'}"
    return f"{who} {ev}"


def trips(evs, pids, ping="ping"):
    """The round trips in evs: from ping's sendto to its recvmsg returning a 64-byte reply,
    with the events of ping and of the processes pids (the daemons) and the switches to them
    (other processes' events, e.g. other work on the machine, are left out)."""
    out, cur = [], None
    for e in evs:
        if e[1] == ping and e[3] == "sys_enter_sendto":
            cur = [e]
            continue
        if cur is None:
            continue
        if e[3] == "sched_switch":  # kept if it switches to ping or a daemon
            m = re.search(r"next_comm=(.+?) next_pid=(\d+)", e[4])
            keep = bool(m) and (int(m.group(2)) in pids or m.group(1) == ping)
        else:
            keep = e[2] in pids or e[1] == ping
        if not keep:
            continue
        cur.append(e)
        if e[1] == ping and e[3] == "sys_exit_recvmsg" and e[4].endswith("0x40"):
            out.append(cur)
            cur = None
    return out


def table(trs):
    """(rows [(step, min us, median us)], total (min, median), n of the sequence, n trips)
    for the most common sequence of steps among the round trips trs."""
    if not trs:
        return [], (0.0, 0.0), 0, 0
    seqs = collections.Counter(tuple(step(e) for e in t) for t in trs)
    seq, n = seqs.most_common(1)[0]
    same = [t for t in trs if tuple(step(e) for e in t) == seq]

    def mm(v):
        v = sorted(v)
        return v[0], v[len(v) // 2]
    rows = [(seq[0], 0.0, 0.0)]
    for i in range(1, len(seq)):
        rows.append((seq[i], *mm(t[i][0] - t[i - 1][0] for t in same)))
    return rows, mm(t[-1][0] - t[0][0] for t in same), n, len(trs)


def show(rows, total, n, ntrips):
    print(f"most common sequence: {n} of {ntrips} round trips; total min {total[0]:.0f} us, "
          f"median {total[1]:.0f} us (with the tracing's cost)")
    print(f"{'min us':>7} {'median':>7}  step")
    for name, lo, med in rows:
        print(f"{lo:7.0f} {med:7.0f}  {name}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=150, help="echo requests")
    ap.add_argument("--interval", default="0.01", help="seconds between them (ping -i)")
    ap.add_argument("--cpu", help="pin both daemons and ping to this CPU")
    ap.add_argument("--out", default="/tmp/ovrtt.data", help="perf's data file")
    a = ap.parse_args()
    if not shutil.which("perf"):
        sys.exit("rtt_trace: perf is not installed (Debian linux-perf)")
    b = compare.TwoSites(pathlib.Path(tempfile.mkdtemp(prefix="ovrtt")), "rt")
    b.extra = []
    pin = ["taskset", "-c", a.cpu] if a.cpu else []
    try:
        b.build()
        print("IPv4 path, no tunnel:", compare.nsx(
            b.n("ga"), *pin, "ping", "-4", "-n", "-q", "-c", str(a.count), "-i", a.interval,
            "10.0.2.2", check=False).stdout.strip().splitlines()[-1])
        addr, fam, pids, down = compare.up_peak(b)
        compare.wait("first ping", lambda: compare.nsx(
            b.n("ga"), "ping", fam, "-n", "-c", "1", "-W", "1", addr,
            check=False).returncode == 0, timeout=20)
        for p in pids if a.cpu else ():
            compare.sh("taskset", "-pc", a.cpu, str(p))
        secs = a.count * float(a.interval) + 2
        perf = subprocess.Popen(["perf", "record", "-q", "-o", a.out, "-e", ",".join(EVENTS)]
                                + (["-C", a.cpu] if a.cpu else ["-a"])
                                + ["--", "sleep", f"{secs:.1f}"], stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # perf's tracepoints on
        r = compare.nsx(b.n("ga"), *pin, "ping", fam, "-n", "-q", "-c", str(a.count), "-i",
                        a.interval, addr, check=False).stdout
        print("peak overlay:", r.strip().splitlines()[-1] if r.strip() else "no answer",
              f"(load average {os.getloadavg()[0]:.1f})")
        perf.wait()
        down()
    finally:
        b.kill_extra()
        b.cleanup()
        shutil.rmtree(b.tmp, ignore_errors=True)
    text = subprocess.run(["perf", "script", "-i", a.out, "-F",
                           "comm,pid,cpu,time,event,trace"], capture_output=True,
                          text=True).stdout
    show(*table(trips(events(text), set(pids))))


if __name__ == "__main__":
    main()
