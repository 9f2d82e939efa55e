#!/usr/bin/python3
"""Measures peak overlay on the 3-site namespace testbed of tests/overlay (root): the RTT
added over the IPv4 path underneath (ping, 200 echoes 10 ms apart; min and mean: on a busy
machine the mean is mostly the daemons' wake-up latency) and one TCP flow's throughput
(iperf3, SECONDS each) over the IPv4 path alone (the limit), A->B and A->NAT->C, with the
daemons' CPU time per Gbit. Prints a Markdown table.
Usage: bench/overlay/tunnel.py [SECONDS] (default 5)."""
import json
import os
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests" / "overlay"))
os.environ.setdefault("PEAK_BIN", str(HERE.parent.parent / "build" / "peak"))
import test_overlay_ns as t  # noqa: E402  (the testbed)


def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def rtt(ns, addr, fam):
    out = t.nsx(ns, "ping", fam, "-n", "-q", "-c", "200", "-i", "0.01", addr).stdout
    f = out.strip().splitlines()[-1].split("=")[1].split("/")
    return float(f[0]) * 1000, float(f[1]) * 1000  # min, avg in us


def main():
    secs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    b = t.NatBed(pathlib.Path(tempfile.mkdtemp()), "tb")
    try:
        b.build()
        for s in t.SITES:
            b.start(s)
        t.wait_for("c's mapping", lambda: b.metrics("a").get(
            'peak_overlay_peer_endpoint_known{peer="c"}') == 1)
        for dst in "bc":
            t.wait_for("ping", lambda: b.ping_ok("a", dst))
        base = rtt(b.n("ga"), "10.0.2.2", "-4")
        over = rtt(b.n("ha"), "fd00:b::2", "-6")
        print(f"| path | result |\n|---|---|\n"
              f"| RTT IPv4 gA->gB, min / avg | {base[0]:.0f} / {base[1]:.0f} us |\n"
              f"| RTT overlay hA->hB, min / avg | {over[0]:.0f} / {over[1]:.0f} us "
              f"(+{over[0] - base[0]:.0f} / +{over[1] - base[1]:.0f} us) |")
        # the IPv4 path underneath, gA->gB without a tunnel: the limit on this machine now
        srv = subprocess.Popen(["ip", "netns", "exec", b.n("gb"), "iperf3", "-s", "-1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t.wait_for("iperf3 server", lambda: "5201" in t.nsx(b.n("gb"), "ss", "-ltn").stdout)
        out = t.nsx(b.n("ga"), "iperf3", "-J", "-t", str(secs), "-c", "10.0.2.2",
                    timeout=secs + 30).stdout
        srv.wait(timeout=10)
        gbit = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
        print(f"| TCP IPv4 gA->gB, no tunnel | {gbit:.2f} Gbit/s |")
        for dst, name in (("b", "A->B"), ("c", "A->NAT->C")):
            srv = subprocess.Popen(["ip", "netns", "exec", b.n("h" + dst), "iperf3", "-s", "-1"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t.wait_for("iperf3 server", lambda: "5201" in t.nsx(b.n("h" + dst), "ss",
                                                                 "-ltn").stdout)
            cpu0 = sum(cpu_s(b.procs[s].pid) for s in ("a", dst))
            out = t.nsx(b.n("ha"), "iperf3", "-J", "-t", str(secs), "-c", f"fd00:{dst}::2",
                        timeout=secs + 30).stdout
            cpu1 = sum(cpu_s(b.procs[s].pid) for s in ("a", dst))
            srv.wait(timeout=10)
            gbit = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
            print(f"| TCP {name} | {gbit:.2f} Gbit/s, daemons {(cpu1 - cpu0) / secs:.2f} "
                  f"CPU s/s, {(cpu1 - cpu0) / max(gbit * secs, 1e-9):.2f} CPU s per Gbit |")
    finally:
        b.cleanup()


if __name__ == "__main__":
    main()
