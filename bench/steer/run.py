#!/usr/bin/python3
"""Metrics-based steering against static weights on the namespace testbed (issue 18).

The testbed (tests/integration/testbed.py: router with BIRD and the controller, two nodes
with agents, two pods each running peak serve, peak dns, a clients' namespace). One pod,
n1p1, is held to a quarter of a core: cgroup v2 cpu.max "25000 100000" where the cpu
controller is on the unified hierarchy, else (hybrid hosts, such as this one) cgroup v1
cpu.cfs_quota_us 25000 of cpu.cfs_period_us 100000. The others run at full speed. For each
mode (--steer static, then metrics; the controller is restarted with it on the testbed's
state, so nothing moves) 'peak load' drives SSA clients (each computes its address from its
own /64 through the service's APL; a connection per request, open loop at --rate): a warm-up
of --warm seconds (steering converges), then a measured run of --duration seconds. Reported
per mode: p50/p99 of all requests, failures, the slow pod's slices and effective weight.
Not measured here: each pod's own p99 ('peak load' reports latency per run, not per
destination), and legacy clients through AAAA answers.

Usage (root): bench/steer/run.py [--smoke] [--rate R] [--warm S] [--duration S] [--out F]
--smoke: a few seconds per mode, for tests (tests/bench). Writes JSON to --out (default
bench/results/steer.json) and a table to stdout."""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import testbed  # noqa: E402

SLOW = (1, 1)
SOURCES = "2001:db8:c0::/48"
QUOTA_US, PERIOD_US = 25000, 100000


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


class Throttle:
    """A CPU cgroup holding one process to QUOTA_US per PERIOD_US (removed by close)."""

    def __init__(self, name, pid):
        v2 = "/sys/fs/cgroup"
        if os.path.exists(f"{v2}/cgroup.subtree_control") and \
                "cpu" in open(f"{v2}/cgroup.subtree_control").read().split():
            self.path = f"{v2}/{name}"
            os.mkdir(self.path)
            self.write("cpu.max", f"{QUOTA_US} {PERIOD_US}")
        else:
            self.path = f"/sys/fs/cgroup/cpu/{name}"
            os.mkdir(self.path)
            self.write("cpu.cfs_period_us", str(PERIOD_US))
            self.write("cpu.cfs_quota_us", str(QUOTA_US))
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


def load(tb, peak, rate, seconds):
    cmd = ["ip", "netns", "exec", f"{tb.tag}-c", peak, "load", testbed.SERVICE, "--server",
           f"[{testbed.DNS_ADDR}]:53", "--port", str(testbed.PORT), "--sources", SOURCES,
           "--clients", "256", "--rate", str(rate), "--new-conn", "--timeout", "2000",
           "--duration", str(seconds), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if p.returncode:
        raise RuntimeError(f"peak load: {p.stderr}")
    return json.loads(p.stdout)


def run_mode(a, mode, tmp):
    tag = f"st{os.getpid() % 10000}{mode[0]}"
    tb = testbed.Testbed(tag, tmp, a.peak, nodes=2, pods=2)
    thr = None
    try:
        tb.up()
        if not tb.wait_converged(30):
            raise RuntimeError("the testbed did not converge")
        mport = testbed_free_port()
        clog = restart_controller(tb, mode, mport)
        thr = Throttle(f"peak-bench-{tag}", tb.serving[SLOW].pid)
        slow = tb.pod_id(*SLOW)
        log(f"{mode}: warm-up {a.warm} s at {a.rate}/s")
        load(tb, a.peak, a.rate, a.warm)
        m0 = metrics(tb, mport)
        log(f"{mode}: measuring {a.duration} s")
        r = load(tb, a.peak, a.rate, a.duration)
        m1 = metrics(tb, mport)
        with open(os.path.join(tmp, clog)) as f:
            changes = f.read().count(" steering:")
        return {
            "mode": mode, "rate": a.rate, "ok": r["ok"], "failed": r["failed"],
            "p50_us": r["latency_us"]["p50"], "p99_us": r["latency_us"]["p99"],
            "slow_slices": ep_value(m1, "peak_controller_endpoint_slices", slow),
            "slow_weight_before": ep_value(m0, "peak_controller_endpoint_effective_weight",
                                           slow),
            "slow_weight": ep_value(m1, "peak_controller_endpoint_effective_weight", slow),
            "steering_changes": changes,
            "pods": {tb.pod_id(i, j): {
                k: ep_value(m1, f"peak_controller_endpoint_{k}", tb.pod_id(i, j))
                for k in ("slices", "effective_weight", "connections")}
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peak", default=os.path.join(ROOT, "build", "peak"))
    ap.add_argument("--rate", type=int, default=3000)
    ap.add_argument("--warm", type=float, default=20)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "steer.json"))
    a = ap.parse_args()
    if a.smoke:
        a.warm, a.duration, a.rate = 3, 2, 500
    rows = []
    for mode in ("static", "metrics"):
        with tempfile.TemporaryDirectory(prefix="peak-steer-") as tmp:
            rows.append(run_mode(a, mode, tmp))
    with open(a.out, "w") as f:
        json.dump(rows, f, indent=1)
    print("| mode | rate/s | ok | failed | p50 ms | p99 ms | slow pod: slices of 16384 | "
          "its effective weight | steering changes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['rate']} | {r['ok']} | {r['failed']} | "
              f"{r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} | {r['slow_slices']:.0f} | "
              f"{r['slow_weight']:.0f} | {r['steering_changes']} |")


if __name__ == "__main__":
    main()
