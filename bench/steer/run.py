#!/usr/bin/python3
"""Metrics-based steering against static weights on the namespace testbed (issue 18).

The testbed (tests/integration/testbed.py: router with BIRD and the controller, two nodes
with agents, two pods each running peak serve, peak dns, a clients' namespace). One pod,
n1p1, is held by a CPU quota (--quota-us per 100 ms, below): cgroup v2 cpu.max "QUOTA
100000" where the cpu controller is on the unified hierarchy, else (hybrid hosts, such as
this one) cgroup v1 cpu.cfs_quota_us QUOTA of cpu.cfs_period_us 100000. The others run at
full speed.

For each kind of client (--clients-kind: ssa, legacy, or both) and each mode (--steer
static, then metrics; the controller is restarted with it on the testbed's state, so
nothing moves), on a fresh testbed:
- ssa: 'peak load' drives SSA clients (each computes its address from its own /64 through
  the service's APL), a connection per request, open loop at --rate;
- legacy: each emulated client asks peak dns for the service's AAAA (with its /64 in the
  Client Subnet option, as its resolver would; dnspython, a plain A/AAAA lookup) and
  sends to the first address; 'peak load' gets those addresses as its per-client list.
  During the warm-up the clients resolve again every AAAA TTL (5 s), as their cache would
  expire; the measured run uses the answers taken at its start.
A warm-up of --warm seconds (steering converges), then a measured run of
max(--duration, --settle) seconds, during which:
- four probes (one 'peak load' each, --probe-rate requests/s, a connection per request)
  send straight to each pod's own address: each pod's p99 under the share it carries;
- the controller's effective weights are read every 0.5 s: shares "settled" when no pod's
  weight moved by more than one step (100 of 1000) over the --settle window.
Reported per row: p50/p99 of all requests, failures, each pod's p99, the slow pod's p99
over the median of the others' (target: within 1.5x), its slices and effective weight,
steering changes, settled.

Usage (root): bench/steer/run.py [--smoke] [--rate R] [--warm S] [--duration S]
[--settle S] [--clients-kind ssa|legacy|both] [--modes static,metrics] [--quota-us US]
[--work-us US] [--out F] [--table F]
--quota-us: the slow pod's quota per 100 ms (default 25000: a quarter of a core, the
issue's figure, with the 100 ms period Kubernetes gives a CPU limit).
--work-us: the CPU time every pod spends on a request (peak serve --work-us; default
2000), an application's work. Without it a quarter core is no bottleneck here: peak serve
alone spends some 20 to 50 us of CPU on a request with its connection, so a quarter core
serves 5000 requests/s or more, while these 2-core machines drive at most about 1200/s
through the testbed. With 2 ms a request a quarter core serves at most 125/s (12 in a
100 ms period): at the default --rate 400 (100/s per pod at equal shares, plus its
probe's 10/s) the slow pod needs 88% of its quota on average, so Poisson bursts use a
period's quota up in about a third of the periods, and the four pods need 0.8 of a core
together. (3 ms a request at 400/s, 1.2 cores, left the full-speed pods waiting for CPU
on these 2 cores once the slow one had shed: their p99 went to seconds.)
--smoke: a few seconds per row (checks the harness, not the targets). Writes JSON to
--out (default bench/results/steer.json) and a table to stdout; the table with the command
and the load average goes on top of --table (default bench/results/steer.md, which
bench/report.py includes), above the runs already there."""
import argparse
import json
import statistics
import threading
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import testbed  # noqa: E402

SLOW = (1, 1)
SOURCES = "2001:db8:c0::/48"
QUOTA_US, PERIOD_US, WORK_US = 25000, 100000, 2000
STEP = 100  # steer.h: STEER_STEP_PM of a ceiling of 1000
TTL_S = 5   # testbed.py: ttl aaaa

# Run in the clients' namespace: AAAA for client k's /64 (2001:db8:c0:K::/64, the k-th of
# --sources as 'peak load' numbers them), through the Client Subnet option.
RESOLVE = r"""
import json, sys
import dns.edns, dns.message, dns.query
n, name, server = int(sys.argv[1]), sys.argv[2], sys.argv[3]
out = []
for k in range(n):
    ecs = dns.edns.ECSOption(f"2001:db8:c0:{k:x}::", 64)
    q = dns.message.make_query(name, "AAAA", use_edns=0, options=[ecs])
    r = dns.query.udp(q, server, timeout=2)
    a = [x.address for rr in r.answer if rr.rdtype == 28 for x in rr]
    out.append(a[0] if a else None)
print(json.dumps(out))
"""


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


class Throttle:
    """A CPU cgroup holding one process to QUOTA_US per PERIOD_US (removed by close)."""

    def __init__(self, name, pid, quota_us=QUOTA_US):
        v2 = "/sys/fs/cgroup"
        if os.path.exists(f"{v2}/cgroup.subtree_control") and \
                "cpu" in open(f"{v2}/cgroup.subtree_control").read().split():
            self.path = f"{v2}/{name}"
            os.mkdir(self.path)
            self.write("cpu.max", f"{quota_us} {PERIOD_US}")
        else:
            self.path = f"/sys/fs/cgroup/cpu/{name}"
            os.mkdir(self.path)
            self.write("cpu.cfs_period_us", str(PERIOD_US))
            self.write("cpu.cfs_quota_us", str(quota_us))
        self.root = os.path.dirname(self.path)
        self.write("cgroup.procs", str(pid))

    def write(self, f, v):
        with open(os.path.join(self.path, f), "w") as fh:
            fh.write(v)

    def close(self):
        """Moves what is left back to the parent, then removes the group."""
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                pids = f.read().split()
            for p in pids:
                try:
                    with open(os.path.join(self.root, "cgroup.procs"), "w") as fh:
                        fh.write(p)
                except OSError:
                    pass
            os.rmdir(self.path)
        except OSError as e:
            log(f"cgroup {self.path}: {e}")


def metrics(tb, port):
    out = testbed.sh("ip", "netns", "exec", tb.r(), "curl", "-s",
                     f"http://[::1]:{port}/metrics").stdout
    return out


def ep_value(text, name, ep):
    m = re.search(rf'^{name}{{service="[^"]*",endpoint="{ep}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def restart_controller(tb, mode, mport):
    """Stops the testbed's controller (by its PID) and starts one with --steer mode on the
    same configuration, key and state; waits until both agents are connected again."""
    for p in tb.procs:
        if p.poll() is None and "controller" in p.args:
            p.terminate()
            p.wait(10)
    log_name = f"controller-{mode}.log"
    tb.run(tb.r(), tb.peak, "controller", "--config", tb.cfg, "--listen", "[::]:4000",
           "--dns-control", tb.dns_ctl, "--key-file", tb.key, "--steer", mode,
           "--metrics", f"[::1]:{mport}", log=log_name)
    deadline = time.time() + 20
    while time.time() < deadline:
        with open(os.path.join(tb.dir, log_name)) as f:
            if f.read().count("connected (authenticated)") >= tb.nodes:
                return log_name
        time.sleep(0.1)
    raise RuntimeError("the agents did not reconnect")


def load_cmd(tb, peak, target, rate, seconds, clients=256, port=True):
    cmd = ["ip", "netns", "exec", f"{tb.tag}-c", peak, "load", target]
    if port:
        cmd += ["--server", f"[{testbed.DNS_ADDR}]:53", "--port", str(testbed.PORT)]
    else:  # (addresses: the Host header a client of the service sends)
        cmd += ["--host", testbed.SERVICE.rstrip(".")]
    if clients:
        cmd += ["--sources", SOURCES, "--clients", str(clients)]
    return cmd + ["--rate", str(rate), "--new-conn", "--timeout", "2000",
                  "--duration", str(seconds), "--json"]


def finish(p, seconds):
    out, err = p.communicate(timeout=seconds + 60)
    if p.returncode:
        raise RuntimeError(f"peak load: {err}")
    return json.loads(out)


def resolve_legacy(tb, n=256):
    """Each legacy client's first AAAA answer, as 'peak load' list items."""
    p = subprocess.run(["ip", "netns", "exec", f"{tb.tag}-c", "/usr/bin/python3", "-c",
                        RESOLVE, str(n), testbed.SERVICE, testbed.DNS_ADDR],
                       capture_output=True, text=True, timeout=60)
    if p.returncode:
        raise RuntimeError(f"resolve: {p.stderr}")
    addrs = json.loads(p.stdout)
    if None in addrs:
        raise RuntimeError("a legacy client got no AAAA answer")
    return ",".join(f"[{x}]:{testbed.PORT}" for x in addrs)


def load(tb, a, kind, seconds):
    """Client load for seconds: SSA clients in one run; legacy ones in runs of one AAAA TTL,
    resolving again before each."""
    if kind == "ssa":
        return finish(subprocess.Popen(load_cmd(tb, a.peak, testbed.SERVICE, a.rate, seconds),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True), seconds)
    end = time.time() + seconds
    while time.time() < end - 0.5:
        t = min(TTL_S, end - time.time())
        finish(subprocess.Popen(load_cmd(tb, a.peak, resolve_legacy(tb), a.rate, t, port=False),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), t)


class Weights(threading.Thread):
    """Reads every pod's effective weight from the controller every 0.5 s until stopped."""

    def __init__(self, tb, mport):
        super().__init__(daemon=True)
        self.tb, self.mport, self.stop, self.seen = tb, mport, threading.Event(), []
        self.sat = {}  # per pod: the saturation figures read (per mille)

    def run(self):
        while not self.stop.wait(0.5):
            m = metrics(self.tb, self.mport)
            for i, j in self.tb.all_pods():
                ep = self.tb.pod_id(i, j)
                self.sat.setdefault(ep, []).append(
                    ep_value(m, "peak_controller_endpoint_saturation", ep))
            self.seen.append((time.time(), {
                self.tb.pod_id(i, j): ep_value(m, "peak_controller_endpoint_effective_weight",
                                               self.tb.pod_id(i, j))
                for i, j in self.tb.all_pods()}))

    def changes(self, window):
        """How many of the reads over the last window seconds found a weight changed."""
        w = [s for t, s in self.seen if self.seen and t >= self.seen[-1][0] - window]
        return sum(1 for a, b in zip(w, w[1:]) if a != b)

    def settled(self, window):
        """No pod's weight moved by more than one step over the last window seconds."""
        if not self.seen:
            return False
        last = self.seen[-1][0]
        w = [s for t, s in self.seen if t >= last - window]
        for ep in w[0]:
            v = [s[ep] for s in w if s[ep] is not None]
            if not v or max(v) - min(v) > STEP:
                return False
        return True


def run_mode(a, kind, mode, tmp):
    tag = f"st{os.getpid() % 10000}{kind[0]}{mode[0]}"
    tb = testbed.Testbed(tag, tmp, a.peak, nodes=2, pods=2,
                         serve_args=["--work-us", str(a.work_us)] if a.work_us else [])
    thr = None
    load0 = os.getloadavg()[0]
    try:
        tb.up()
        if not tb.wait_converged(30):
            raise RuntimeError("the testbed did not converge")
        mport = testbed_free_port()
        clog = restart_controller(tb, mode, mport)
        thr = Throttle(f"peak-bench-{tag}", tb.serving[SLOW].pid, a.quota_us)
        slow = tb.pod_id(*SLOW)
        log(f"{kind} {mode}: warm-up {a.warm} s at {a.rate}/s")
        load(tb, a, kind, a.warm)
        m0 = metrics(tb, mport)
        span = max(a.duration, a.settle)
        log(f"{kind} {mode}: measuring {span} s")
        target = testbed.SERVICE if kind == "ssa" else resolve_legacy(tb)
        main = subprocess.Popen(load_cmd(tb, a.peak, target, a.rate, span, port=kind == "ssa"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        probes = {tb.pod_id(i, j): subprocess.Popen(
            load_cmd(tb, a.peak, f"[{tb.pod_addr(i, j)}]:{testbed.PORT}", a.probe_rate, span,
                     clients=0, port=False),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i, j in tb.all_pods()}
        wt = Weights(tb, mport)
        wt.start()
        r = finish(main, span)
        pods = {ep: finish(p, span) for ep, p in probes.items()}
        wt.stop.set()
        wt.join()
        m1 = metrics(tb, mport)
        with open(os.path.join(tmp, clog)) as f:
            steer_log = [ln.strip() for ln in f if " steering:" in ln]
        changes = len(steer_log)
        p99 = {ep: q["latency_us"]["p99"] for ep, q in pods.items()}
        others = statistics.median(v for ep, v in p99.items() if ep != slow)
        return {
            "kind": kind, "mode": mode, "rate": a.rate, "quota_us": a.quota_us,
            "work_us": a.work_us,
            "seconds": span, "ok": r["ok"], "failed": r["failed"], "p50_us": r["latency_us"]["p50"],
            "p99_us": r["latency_us"]["p99"], "pod_p99_us": p99,
            "probe_failed": {ep: q["failed"] for ep, q in pods.items()},
            "slow_over_others": p99[slow] / others if others else float("nan"),
            "slow_slices": ep_value(m1, "peak_controller_endpoint_slices", slow),
            "slow_weight_before": ep_value(m0, "peak_controller_endpoint_effective_weight",
                                           slow),
            "slow_weight": ep_value(m1, "peak_controller_endpoint_effective_weight", slow),
            "slow_saturation": ep_value(m1, "peak_controller_endpoint_saturation", slow),
            "steering_changes": changes, "steering_log": steer_log,
            "saturation_mean": {ep: statistics.mean(v) for ep, v in wt.sat.items() if v},
            "slow_series": [[round(t - wt.seen[0][0], 1), w[slow], s] for (t, w), s in
                            zip(wt.seen, wt.sat.get(slow, []))],
            "settle_s": a.settle, "settled": wt.settled(a.settle),
            "window_changes": wt.changes(a.settle),
            "loadavg": [load0, os.getloadavg()[0]],
            "pods": {tb.pod_id(i, j): {
                k: ep_value(m1, f"peak_controller_endpoint_{k}", tb.pod_id(i, j))
                for k in ("slices", "effective_weight", "connections", "saturation")}
                for i, j in tb.all_pods()},
        }
    finally:
        tb.down()
        if thr:
            thr.close()


def testbed_free_port():
    import socket
    s = socket.socket(socket.AF_INET6)
    s.bind(("::1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def table(rows):
    slow = "n%dp%d" % SLOW
    out = ["| clients | mode | rate/s | ok | failed | p50 ms | p99 ms | slow pod p99 ms | "
           "others' p99 ms | slow / others | within 1.5x | slow pod: slices of 16384 | "
           "its effective weight | steering changes | changes in the window | settled | "
           "load average |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r["pod_p99_us"]
        oth = "/".join(f"{v / 1000:.1f}" for ep, v in sorted(p.items()) if ep != slow)
        out.append(
            f"| {r['kind']} | {r['mode']} | {r['rate']} | {r['ok']} | {r['failed']} | "
            f"{r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} | {p[slow] / 1000:.1f} | "
            f"{oth} | {r['slow_over_others']:.2f} | "
            f"{'yes' if r['slow_over_others'] <= 1.5 else 'no'} | {r['slow_slices']:.0f} | "
            f"{r['slow_weight']:.0f} | {r['steering_changes']} | {r['window_changes']} | "
            f"{'yes' if r['settled'] else 'no'} ({r['settle_s']:g} s) | "
            f"{r['loadavg'][0]:.1f} to {r['loadavg'][1]:.1f} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peak", default=os.path.join(ROOT, "build", "peak"))
    ap.add_argument("--rate", type=int, default=400)
    ap.add_argument("--warm", type=float, default=120)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--settle", type=float, default=30,
                    help="seconds over which no weight may move more than a step")
    ap.add_argument("--probe-rate", type=int, default=10)
    ap.add_argument("--quota-us", type=int, default=QUOTA_US,
                    help="the slow pod's CPU quota per 100 ms period (default 25000: a "
                         "quarter of a core)")
    ap.add_argument("--work-us", type=int, default=WORK_US,
                    help="CPU time each pod spends on a request (peak serve --work-us; "
                         "default 2000)")
    ap.add_argument("--clients-kind", choices=("ssa", "legacy", "both"), default="both")
    ap.add_argument("--modes", default="static,metrics",
                    help="which rows: static, metrics or both (comma-separated)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "steer.json"))
    ap.add_argument("--table", default=os.path.join(ROOT, "bench", "results", "steer.md"))
    a = ap.parse_args()
    if a.smoke:
        a.warm, a.duration, a.settle, a.rate, a.probe_rate = 3, 2, 2, 300, 20
    kinds = ("ssa", "legacy") if a.clients_kind == "both" else (a.clients_kind,)
    started, load = time.time(), os.getloadavg()
    rows = []
    for kind in kinds:
        for mode in [m for m in ("static", "metrics") if m in a.modes.split(",")]:
            with tempfile.TemporaryDirectory(prefix="peak-steer-") as tmp:
                rows.append(run_mode(a, kind, mode, tmp))
    with open(a.out, "w") as f:
        json.dump(rows, f, indent=1)
    t = table(rows)
    cmd = "bench/steer/run.py " + " ".join(sys.argv[1:])
    old = ""
    if os.path.exists(a.table):
        with open(a.table) as f:
            old = f.read()
    with open(a.table, "w") as f:  # the new run on top, the earlier ones below
        f.write(f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}: "
                f"`{cmd}`\n\nLoad average (1 min) {load[0]:.1f} at the start, "
                f"{os.getloadavg()[0]:.1f} at the end; {os.cpu_count()} cores.\n\n{t}\n"
                + (f"\n{old}" if old else ""))
    print(t)


if __name__ == "__main__":
    main()
