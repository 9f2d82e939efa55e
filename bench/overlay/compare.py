#!/usr/bin/python3
"""Compares `peak overlay` with the tunnels users would pick instead, on one two-site
namespace testbed (root): one TCP flow's throughput (iperf3), the tunnel processes' CPU
seconds per Gbit, and ping RTT min/mean through each of
  ipv4       the IPv4 path underneath, no tunnel (the limit)
  ipv6       native IPv6 routed over the same links (no tunnel)
  vxlan      kernel VXLAN, unencrypted (the kernel's cost: no process to charge CPU to)
  wireguard  wireguard-go (user space, TUN; Debian wireguard-go + wireguard-tools)
  yggdrasil  Yggdrasil 0.4, two nodes peered over the IPv4 link (Debian yggdrasil)
  peak       peak overlay, AES-256-GCM
  peak-fast  peak overlay between trusted peers: OVW_DATA_PLAIN through the kernel fast path
             (BPF lwt encap, tc decap; unencrypted, like VXLAN)
  peak-busy  peak overlay, AES-256-GCM, with busy-poll: --busy-poll microseconds
  peak-ref   peak overlay, AES-256-GCM, run from the binary --peak-ref names (another build,
             e.g. the code before a change, measured in the same runs)
Each flow runs from gateway gA to gateway gB; the peers are set up, measured and torn down
one after the other, in a rotated order each run, so they never share the CPU.
The RTT is measured twice: --pings echoes 10 ms apart (the CPUs idle between them, and on
this VM every step of a path that follows an idle spell runs 4 to 5 times slower: the IPv4
path's minimum is about 35 us here against 7 us when the echoes are 1 ms apart), then as
many --warm-interval apart (default 1 ms, the path warm: what the tunnel itself adds).

    gA  wan 10.0.1.2 fd01:1::2 ---- r (router) ---- 10.0.2.2 fd01:2::2 wan  gB
        lo fd00:a::1 (site A's prefix fd00:a::/64)    lo fd00:b::1 (site B's fd00:b::/64)

Writes JSON (default bench/results/overlay.json) and prints a Markdown table of the medians.
A peer whose package is missing is skipped with the reason; any other failure of a peer's
setup is an error in the JSON and makes the exit status 1.
Usage: bench/overlay/compare.py [--secs S] [--runs N] [--pings N] [--only a,b] [--out F]
                               [--busy-poll US] [--peak-ref BIN] [--warm-interval S]"""
import argparse
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests" / "overlay"))
os.environ.setdefault("PEAK_BIN", str(HERE.parent.parent / "build" / "peak"))
import ovbed  # noqa: E402
from ovbed import PEAK, Bed, nsx, sh  # noqa: E402  (the namespace helpers)

PEERS = ("ipv4", "ipv6", "vxlan", "wireguard", "yggdrasil", "peak", "peak-fast", "peak-busy",
         "peak-ref")
LABELS = {"ipv4": "IPv4 path, no tunnel", "ipv6": "native IPv6, no tunnel",
          "vxlan": "kernel VXLAN (unencrypted)", "wireguard": "wireguard-go",
          "yggdrasil": "Yggdrasil 0.4", "peak": "peak overlay (AES-256-GCM)",
          "peak-fast": "peak overlay, trusted peers: BPF fast path (unencrypted)",
          "peak-busy": "peak overlay (AES-256-GCM), busy-poll",
          "peak-ref": "peak overlay (AES-256-GCM), reference binary"}
OPTS = {"busy_poll": 50, "peak_ref": None, "warm": "0.001"}  # --busy-poll, --peak-ref,
# --warm-interval
NEEDS = {"wireguard": ("wireguard-go", "wg"), "yggdrasil": ("yggdrasil",)}
PACKAGES = {"wireguard": "wireguard-go wireguard-tools", "yggdrasil": "yggdrasil"}


class SetupError(Exception):
    pass


def wait(what, fn, timeout=15.0, every=0.05):
    """fn() until true, within timeout seconds; SetupError otherwise."""
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise SetupError(f"timed out waiting for {what}")
        time.sleep(every)


def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


class TwoSites(Bed):
    def build(self):
        for name in ("ga", "r", "gb"):
            self.add_ns(name)
        for k in ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"):
            nsx(self.n("r"), "sysctl", "-qw", k)
        for i, s in ((1, "a"), (2, "b")):
            g = "g" + s
            self.veth(g, "wan", "r", "r" + s)
            sh("ip", "-n", self.n(g), "addr", "add", f"10.0.{i}.2/24", "dev", "wan")
            sh("ip", "-n", self.n(g), "addr", "add", f"fd01:{i}::2/64", "dev", "wan", "nodad")
            sh("ip", "-n", self.n("r"), "addr", "add", f"10.0.{i}.1/24", "dev", "r" + s)
            sh("ip", "-n", self.n("r"), "addr", "add", f"fd01:{i}::1/64", "dev", "r" + s,
               "nodad")
            sh("ip", "-n", self.n(g), "route", "add", "default", "via", f"10.0.{i}.1")
            sh("ip", "-n", self.n(g), "-6", "route", "add", "fd01::/16", "via", f"fd01:{i}::1")
            sh("ip", "-n", self.n(g), "addr", "add", f"fd00:{s}::1/128", "dev", "lo")

    def run_in(self, ns, *args, log=None):
        """A process in namespace ns (ip netns exec execs it: the pid is the program's)."""
        p = subprocess.Popen(["ip", "netns", "exec", self.n(ns), *args],
                             stdout=subprocess.DEVNULL,
                             stderr=open(log, "w") if log else subprocess.DEVNULL)
        self.extra.append(p)
        return p

    def kill_extra(self):
        for p in self.extra:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.extra = []


# Each setup brings one peer up and returns (destination address in gB, ping family flag,
# [pids to charge CPU to], teardown function).

def up_ipv4(b):
    return "10.0.2.2", "-4", [], lambda: None


def up_ipv6(b):
    return "fd01:2::2", "-6", [], lambda: None


def up_vxlan(b):
    for i, s, o in ((1, "a", 2), (2, "b", 1)):
        n = b.n("g" + s)
        sh("ip", "-n", n, "link", "add", "vx0", "type", "vxlan", "id", "42", "local",
           f"10.0.{i}.2", "remote", f"10.0.{o}.2", "dstport", "4789", "dev", "wan")
        sh("ip", "-n", n, "link", "set", "vx0", "up")
        sh("ip", "-n", n, "addr", "add", f"fd02::{i}/64", "dev", "vx0", "nodad")

    def down():
        for s in "ab":
            sh("ip", "-n", b.n("g" + s), "link", "del", "vx0", check=False)
    return "fd02::2", "-6", [], down


def up_wireguard(b):
    # wireguard-go's control socket is /var/run/wireguard/<ifname>.sock, outside the
    # namespace: the names carry the pid so that parallel runs do not meet
    names = {s: f"wg{os.getpid() % 100000}{s}" for s in "ab"}
    keys = {}
    for s in "ab":
        priv = sh("wg", "genkey").stdout.strip()
        (b.tmp / f"wg{s}.key").write_text(priv + "\n")
        keys[s] = sh("wg", "pubkey", input=priv + "\n").stdout.strip()
    procs = []
    for i, s, o in ((1, "a", "b"), (2, "b", "a")):
        ns, ifn = b.n("g" + s), names[s]
        env_log = b.tmp / f"wg{s}.log"
        p = subprocess.Popen(["ip", "netns", "exec", ns, "wireguard-go", "-f", ifn],
                             stdout=subprocess.DEVNULL, stderr=open(env_log, "w"),
                             env=dict(os.environ, WG_PROCESS_FOREGROUND="1",
                                      LOG_LEVEL="error"))
        b.extra.append(p)
        procs.append(p)
        sock = pathlib.Path(f"/var/run/wireguard/{ifn}.sock")
        wait(f"wireguard-go {ifn}", lambda: sock.exists() or p.poll() is not None)
        if p.poll() is not None:
            raise SetupError(f"wireguard-go exited: {env_log.read_text()[-300:]}")
        oi = 2 if s == "a" else 1
        nsx(ns, "wg", "set", ifn, "private-key", str(b.tmp / f"wg{s}.key"), "listen-port",
            "51821", "peer", keys[o], "allowed-ips", f"fd03::{oi}/128", "endpoint",
            f"10.0.{oi}.2:51821")
        sh("ip", "-n", ns, "addr", "add", f"fd03::{i}/64", "dev", ifn, "nodad")
        sh("ip", "-n", ns, "link", "set", ifn, "up")

    def down():
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
    return "fd03::2", "-6", [p.pid for p in procs], down


def up_yggdrasil(b):
    procs, addr = [], {}
    for i, s in ((1, "a"), (2, "b")):
        conf = json.loads(sh("yggdrasil", "-genconf", "-json").stdout)
        conf.update({"AdminListen": "none", "MulticastInterfaces": [], "IfName": "ygg0",
                     "Listen": ["tcp://10.0.2.2:12345"] if s == "b" else [],
                     "Peers": ["tcp://10.0.2.2:12345"] if s == "a" else []})
        f = b.tmp / f"ygg{s}.json"
        f.write_text(json.dumps(conf))
        addr[s] = sh("yggdrasil", "-useconffile", str(f), "-address").stdout.strip()
    for s in "ba":  # the listener first
        log = b.tmp / f"ygg{s}.log"
        p = b.run_in("g" + s, "yggdrasil", "-useconffile", str(b.tmp / f"ygg{s}.json"),
                    "-logto", str(log), log=None)
        procs.append(p)
        wait(f"yggdrasil in g{s}", lambda: p.poll() is not None or "ygg0" in sh(
            "ip", "-n", b.n("g" + s), "-br", "link").stdout)
        if p.poll() is not None:
            raise SetupError(f"yggdrasil exited: {log.read_text()[-300:]}")

    def down():
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
    return addr["b"], "-6", [p.pid for p in procs], down


def up_peak(b, trusted=False, busy_poll=0, binary=None):
    if binary:  # ovbed starts the daemons from its PEAK
        ovbed.PEAK = binary
    try:
        return start_peak(b, trusted, busy_poll)
    finally:
        ovbed.PEAK = PEAK


def start_peak(b, trusted, busy_poll):
    keys = {}
    for s in "ab":
        k = b.tmp / f"{s}.key"
        k.unlink(missing_ok=True)  # a new key each run (--genkey never overwrites)
        sh(PEAK, "overlay", "--genkey", str(k))
        keys[s] = sh(PEAK, "overlay", "--pubkey", str(k)).stdout.strip()
    for i, s, o, oi in ((1, "a", "b", 2), (2, "b", "a", 1)):
        (b.tmp / f"{s}.yaml").write_text(
            f"tun: ov0\nmtu: 1400\naddress: fd00:{s}::1\n"
            + (f"busy-poll: {busy_poll}\n" if busy_poll else "")
            + f"gateway:\n  listen: 0.0.0.0:51820\n  private-key-file: {b.tmp / (s + '.key')}\n"
            f"  keepalive: 1\n  peers:\n    - name: {o}\n      public-key: {keys[o]}\n"
            f"      endpoint: 10.0.{oi}.2:51820\n      prefixes: [fd00:{o}::/64]\n"
            + ("      trusted: true\n" if trusted else ""))
    for s in "ab":
        b.start(s)
        if trusted and "fast path on" not in b.logs[s].read_text():
            raise SetupError(f"g{s}: no fast path: {b.logs[s].read_text()[-300:]}")

    def down():
        for s in "ab":
            b.stop(s)
    return "fd00:b::1", "-6", [b.procs[s].pid for s in "ab"], down


def up_peak_fast(b):
    return up_peak(b, trusted=True)


def up_peak_busy(b):
    return up_peak(b, busy_poll=OPTS["busy_poll"])


def up_peak_ref(b):
    if not OPTS["peak_ref"]:
        raise SetupError("peak-ref needs --peak-ref BIN")
    return up_peak(b, binary=OPTS["peak_ref"])


UP = {"ipv4": up_ipv4, "ipv6": up_ipv6, "vxlan": up_vxlan, "wireguard": up_wireguard,
      "yggdrasil": up_yggdrasil, "peak": up_peak, "peak-fast": up_peak_fast,
      "peak-busy": up_peak_busy, "peak-ref": up_peak_ref}


def ping(b, addr, fam, count, interval="0.01"):
    out = nsx(b.n("ga"), "ping", fam, "-n", "-q", "-c", str(count), "-i", interval, addr,
              check=False).stdout
    last = out.strip().splitlines()[-1] if out.strip() else ""
    if "=" not in last:
        raise SetupError(f"ping {addr}: no answers")
    f = last.split("=")[1].split("/")
    return float(f[0]) * 1000, float(f[1]) * 1000  # min, avg in us


def iperf(b, addr, secs, pids):
    srv = b.run_in("gb", "iperf3", "-s", "-1")
    wait("iperf3 server", lambda: ":5201" in nsx(b.n("gb"), "ss", "-ltn").stdout)
    cpu0 = sum(cpu_s(p) for p in pids)
    r = nsx(b.n("ga"), "iperf3", "-J", "-t", str(secs), "-c", addr, check=False,
            timeout=secs + 30)
    cpu1 = sum(cpu_s(p) for p in pids)
    srv.wait(timeout=10)
    try:
        bps = json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"]
    except (ValueError, KeyError) as e:
        raise SetupError(f"iperf3 to {addr}: {r.stdout[-300:]} {r.stderr[-300:]}") from e
    return bps / 1e9, cpu1 - cpu0


def measure(b, peer, secs, pings):
    missing = [t for t in NEEDS.get(peer, ()) if not shutil.which(t)]
    if missing:
        return {"skipped": f"{' and '.join(missing)} not installed (Debian "
                           f"{PACKAGES[peer]}; scripts/deps.sh)"}
    down = lambda: None  # noqa: E731
    try:
        addr, fam, pids, down = UP[peer](b)
        wait(f"{peer}: first ping", lambda: nsx(
            b.n("ga"), "ping", fam, "-n", "-c", "1", "-W", "1", addr,
            check=False).returncode == 0, timeout=20)
        rmin, ravg = ping(b, addr, fam, pings)
        wmin, wavg = ping(b, addr, fam, pings, OPTS["warm"])
        gbit, cpu = iperf(b, addr, secs, pids)
        return {"gbit": gbit, "rtt_min_us": rmin, "rtt_avg_us": ravg,
                "rtt_warm_min_us": wmin, "rtt_warm_avg_us": wavg,
                "cpu_s": cpu if pids else None,
                "cpu_s_per_gbit": cpu / max(gbit * secs, 1e-9) if pids else None,
                "processes": len(pids)}
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: B036  (also the testbed's pytest.fail on a timeout)
        err = e.stderr if isinstance(e, subprocess.CalledProcessError) else ""
        return {"error": f"{type(e).__name__}: {e} {err or ''}".strip()[-500:]}
    finally:
        down()
        b.kill_extra()


def medians(runs):
    """{peer: {field: median over the runs that measured it}}"""
    out = {}
    for peer in PEERS:
        rows = [r[peer] for r in runs if peer in r]
        if not rows:
            continue
        ok = [r for r in rows if "gbit" in r]
        if not ok:
            out[peer] = rows[0]
            continue
        m = {"runs": len(ok)}
        for k in ("gbit", "rtt_min_us", "rtt_avg_us", "rtt_warm_min_us", "rtt_warm_avg_us",
                  "cpu_s_per_gbit"):
            v = [r[k] for r in ok if r.get(k) is not None]
            m[k] = statistics.median(v) if v else None
        out[peer] = m
    return out


def table(med):
    base = med.get("ipv4", {}).get("rtt_min_us")
    wbase = med.get("ipv4", {}).get("rtt_warm_min_us")
    L = ["| path | TCP Gbit/s | CPU s per Gbit (tunnel processes) | RTT min / mean us | "
         "added RTT min us | warm RTT min / mean us | warm added RTT min us |",
         "|---|---:|---:|---:|---:|---:|---:|"]
    for peer in PEERS:
        m = med.get(peer)
        if m is None:
            continue
        if "gbit" not in m:
            L.append(f"| {LABELS[peer]} | {m.get('skipped') or 'error: ' + m['error']} "
                     "| | | | | |")
            continue
        cpu = f"{m['cpu_s_per_gbit']:.2f}" if m["cpu_s_per_gbit"] is not None else "-"
        add = f"{m['rtt_min_us'] - base:+.0f}" if base is not None else "-"
        wmin = m.get("rtt_warm_min_us")  # None in JSON written before the warm series
        warm = f"{wmin:.0f} / {m['rtt_warm_avg_us']:.0f}" if wmin is not None else "-"
        wadd = f"{wmin - wbase:+.0f}" if wmin is not None and wbase is not None else "-"
        L.append(f"| {LABELS[peer]} | {m['gbit']:.2f} | {cpu} | {m['rtt_min_us']:.0f} / "
                 f"{m['rtt_avg_us']:.0f} | {add} | {warm} | {wadd} |")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--secs", type=int, default=5, help="seconds per TCP flow")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pings", type=int, default=200, help="echoes 10 ms apart per path")
    ap.add_argument("--only", default=",".join(p for p in PEERS if p not in ("peak-busy",
                                                                               "peak-ref")))
    ap.add_argument("--busy-poll", type=int, default=50, help="peak-busy's busy-poll, us")
    ap.add_argument("--peak-ref", help="peak-ref's binary")
    ap.add_argument("--warm-interval", default="0.001",
                    help="seconds between the warm series' echoes (ping -i; below 0.002 "
                    "needs root)")
    ap.add_argument("--out", default=str(HERE.parent / "results" / "overlay.json"))
    a = ap.parse_args()
    OPTS.update(busy_poll=a.busy_poll, peak_ref=a.peak_ref, warm=a.warm_interval)
    peers = [p for p in a.only.split(",") if p]
    unknown = set(peers) - set(PEERS)
    if unknown:
        ap.error(f"unknown peers: {', '.join(sorted(unknown))}")
    t0 = time.monotonic()
    b = TwoSites(pathlib.Path(tempfile.mkdtemp(prefix="ovcmp")), "oc")
    b.extra = []
    runs = []
    try:
        b.build()
        for i in range(a.runs):
            order = peers[i % len(peers):] + peers[:i % len(peers)]
            r = {}
            for peer in order:
                r[peer] = measure(b, peer, a.secs, a.pings)
                print(f"run {i + 1}/{a.runs} {peer}: {json.dumps(r[peer])}", file=sys.stderr)
            runs.append(r)
    finally:
        b.kill_extra()
        b.cleanup()
        shutil.rmtree(b.tmp, ignore_errors=True)
    med = medians(runs)
    doc = {"command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
           "secs": a.secs, "runs": a.runs, "pings": a.pings, "peers": peers,
           "warm_interval_s": float(a.warm_interval),
           "labels": LABELS, "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                                         "load_before": os.getloadavg()[0]},
           "wall_s": round(time.monotonic() - t0, 1), "each": runs, "median": med}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
    print(table(med))
    return 1 if any("error" in m for m in med.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
