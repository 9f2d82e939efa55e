#!/usr/bin/python3
"""A server's receive path with and without recvmmsg: receive calls and CPU per MB on a backend
that several clients upload to at once (issue 16).

'peak h3 backend --metrics' on [::1]; --clients 'peak h3 upload' processes, started together,
each send one --mb MB file (audio/ogg) on a connection of their own. Per run the backend's CPU
(user + system, /proc/PID/stat) and its receive counters (peak_h3_udp_receive_calls_total,
..._messages_received_total, ..._datagrams_received_total) are read before and after; the
modes, 'mmsg' (up to 8 messages per recvmmsg call) and 'no-mmsg' (PEAK_H3_NO_MMSG=1: one per
call), each on a backend of its own, alternate --runs times. UDP GRO is on in both. Loopback
only; the certificates are made in a temporary directory; the backends are stopped by PID.

    python3 bench/h3/server_rx.py [--peak build/peak] [--runs 5] [--clients 8] [--mb 4]
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from client_rx import certs  # noqa: E402

NAMES = ("receive_calls_total", "messages_received_total", "datagrams_received_total")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for ln in text.splitlines():
        for n in NAMES:
            if ln.startswith("peak_h3_udp_" + n + "{"):
                out[n] = float(ln.rsplit(" ", 1)[1])
    return out


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        st = f.read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


def backend(a, d, mode):
    env = dict(os.environ)
    env.pop("PEAK_H3_NO_MMSG", None)
    if mode == "no-mmsg":
        env["PEAK_H3_NO_MMSG"] = "1"
    mport = free_port()
    log = open(os.path.join(d, f"be-{mode}.log"), "w+")
    be = subprocess.Popen([a.peak, "h3", "backend", "--listen", "[::1]:0", "--cert",
                           os.path.join(d, "srv.pem"), "--key", os.path.join(d, "srv.key"),
                           "--type", "audio/*", "--metrics", f"127.0.0.1:{mport}"],
                          stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 10
    port = None
    while not port:
        if time.time() > deadline or be.poll() is not None:
            be.kill()
            sys.exit("backend did not start: " + open(log.name).read())
        m = re.search(r"listening on \[::1\]:(\d+)", open(log.name).read())
        port = m and m.group(1)
        time.sleep(0.02)
    return be, port, mport


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peak", default="build/peak")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--mb", type=int, default=4)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="h3srx") as d:
        certs(d)
        body = os.path.join(d, "body")
        with open(body, "wb") as f:
            f.write(os.urandom(a.mb << 20))
        bes = {}
        try:
            for mode in ("mmsg", "no-mmsg"):
                bes[mode] = backend(a, d, mode)
            tot = {m: dict.fromkeys(("cpu", "mb") + NAMES, 0.0) for m in bes}
            for _ in range(a.runs):
                for mode, (be, port, mport) in bes.items():
                    m0, c0 = scrape(mport), cpu_s(be.pid)
                    argv = [a.peak, "h3", "upload", f"https://[::1]:{port}/upload", "--ca",
                            os.path.join(d, "ca.pem"), "--file", body + ":audio/ogg"]
                    ps = [subprocess.Popen(argv, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT)
                          for _ in range(a.clients)]
                    for p in ps:
                        out = p.communicate(timeout=120)[0]
                        if p.returncode:
                            sys.exit(f"upload failed: {out!r}")
                    m1, c1 = scrape(mport), cpu_s(be.pid)
                    t = tot[mode]
                    t["cpu"] += c1 - c0
                    t["mb"] += a.clients * (a.mb << 20) / 1e6
                    for n in NAMES:
                        t[n] += m1[n] - m0[n]
            load = " ".join(open("/proc/loadavg").read().split()[:3])
            print(f"{a.runs} runs of {a.clients} concurrent uploads of {a.mb} MiB per mode, "
                  f"backend side (load average {load}):")
            print(f"{'mode':8} {'cpu_ms_per_MB':>14} {'recv_calls_per_MB':>18} "
                  f"{'messages_per_call':>18} {'datagrams_per_call':>19}")
            for mode, t in tot.items():
                c = t["receive_calls_total"]
                print(f"{mode:8} {1000 * t['cpu'] / t['mb']:14.2f} {c / t['mb']:18.1f} "
                      f"{t['messages_received_total'] / c:18.2f} "
                      f"{t['datagrams_received_total'] / c:19.2f}")
        finally:
            for be, _, _ in bes.values():
                be.terminate()
                be.wait(timeout=10)


if __name__ == "__main__":
    main()
