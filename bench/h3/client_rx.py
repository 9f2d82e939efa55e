#!/usr/bin/python3
"""The HTTP/3 client's receive path with and without UDP GRO: CPU per MB and receive calls per
MB for a bulk response (issue 16).

'peak h3 backend --page FILE' on [::1] answers GET / with FILE (1 MiB, the page limit);
'peak h3 get --metrics' fetches it --runs times with UDP GRO on the client's socket, and as
many times with PEAK_H3_NO_GRO=1 and PEAK_H3_NO_MMSG=1 (one datagram per receive call), the
two interleaved. The
client's CPU (user + system, getrusage of the finished child, the handshake included) and its
receive calls (peak_h3_client_udp_receive_calls_total) are summed per mode and divided by the
MB received. The fixed cost of a run (process start, handshake) dominates 1 MiB, so each mode
also GETs /healthz as often, and the marginal column is (CPU of the page GETs - CPU of the
/healthz GETs) per MB. Loopback only; the certificates are made in a temporary directory; the backend is
stopped by its PID.

    python3 bench/h3/client_rx.py [--peak build/peak] [--runs 30]
"""
import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time


def certs(d):
    tmpl = {"ca.tmpl": 'cn = "bench CA"\nca\ncert_signing_key\nexpiration_days = 2\n',
            "srv.tmpl": 'cn = "localhost"\nip_address = "::1"\ntls_www_server\nsigning_key\n'
                        'encryption_key\nexpiration_days = 2\n'}
    for k, v in tmpl.items():
        with open(os.path.join(d, k), "w") as f:
            f.write(v)

    def ct(*a):
        subprocess.run(["certtool", *a], check=True, capture_output=True, cwd=d, timeout=60)
    ct("--generate-privkey", "--key-type", "ecdsa", "--outfile", "ca.key")
    ct("--generate-self-signed", "--load-privkey", "ca.key", "--template", "ca.tmpl",
       "--outfile", "ca.pem")
    ct("--generate-privkey", "--key-type", "ecdsa", "--outfile", "srv.key")
    ct("--generate-certificate", "--load-privkey", "srv.key", "--load-ca-certificate",
       "ca.pem", "--load-ca-privkey", "ca.key", "--template", "srv.tmpl", "--outfile",
       "srv.pem")


def prom(path):
    return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1])
            for ln in open(path).read().splitlines() if ln and not ln.startswith("#")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peak", default="build/peak")
    ap.add_argument("--runs", type=int, default=30)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="h3rx") as d:
        certs(d)
        page = os.path.join(d, "page.html")
        with open(page, "wb") as f:
            f.write(os.urandom(1 << 20))
        log = open(os.path.join(d, "be.log"), "w+")
        be = subprocess.Popen([a.peak, "h3", "backend", "--listen", "[::1]:0", "--cert",
                               os.path.join(d, "srv.pem"), "--key", os.path.join(d, "srv.key"),
                               "--type", "audio/*", "--page", page], stdout=log,
                              stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 10
            port = None
            while not port:
                if time.time() > deadline or be.poll() is not None:
                    sys.exit("backend did not start: " + open(log.name).read())
                m = re.search(r"listening on \[::1\]:(\d+)", open(log.name).read())
                port = m and m.group(1)
                time.sleep(0.02)
            url = f"https://[::1]:{port}/"
            tot = {m: {"cpu": 0.0, "calls": 0.0, "dgrams": 0.0, "bytes": 0.0, "base": 0.0}
                   for m in ("gro", "no-gro")}
            for _ in range(a.runs):
                for mode, path in (("gro", ""), ("no-gro", ""), ("gro", "healthz"),
                                   ("no-gro", "healthz")):
                    env = dict(os.environ)
                    env.pop("PEAK_H3_NO_GRO", None)
                    env.pop("PEAK_H3_NO_MMSG", None)
                    if mode == "no-gro":
                        env["PEAK_H3_NO_GRO"] = env["PEAK_H3_NO_MMSG"] = "1"
                    mf = os.path.join(d, "m.prom")
                    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    p = subprocess.run([a.peak, "h3", "get", url + path, "--ca",
                                        os.path.join(d, "ca.pem"), "--metrics", mf],
                                       env=env, capture_output=True, timeout=60)
                    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    if p.returncode:
                        sys.exit(f"get failed: {p.stdout!r} {p.stderr!r}")
                    m = prom(mf)
                    t = tot[mode]
                    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                    if path:
                        t["base"] += cpu
                        continue
                    t["cpu"] += cpu
                    t["calls"] += m["peak_h3_client_udp_receive_calls_total"]
                    t["dgrams"] += m["peak_h3_client_udp_datagrams_received_total"]
                    t["bytes"] += m["peak_h3_client_udp_bytes_received_total"]
            print(f"{a.runs} GETs of 1 MiB per mode, client side:")
            print(f"{'mode':8} {'cpu_ms_per_MB':>14} {'marginal_cpu_ms_per_MB':>23} "
                  f"{'recv_calls_per_MB':>18} {'datagrams_per_call':>19}")
            for mode, t in tot.items():
                mb = t["bytes"] / 1e6
                print(f"{mode:8} {1000 * t['cpu'] / mb:14.2f} "
                      f"{1000 * (t['cpu'] - t['base']) / mb:23.2f} {t['calls'] / mb:18.1f} "
                      f"{t['dgrams'] / t['calls']:19.1f}")
        finally:
            be.terminate()
            be.wait(timeout=10)


if __name__ == "__main__":
    main()
