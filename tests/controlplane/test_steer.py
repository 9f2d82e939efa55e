"""Metrics-based steering (--steer metrics, src/controller/steer.h) with the controller, a
fake agent (tests/lib/ctlpeer.py) whose pods behave as queues of unequal capacity, and a
real peak dns taking the weights on its control socket:

    fake agent --load lines--> peak controller --weight lines--> peak dns (dnspython)
               <--maps--------                 --/metrics (effective weights, reasons)

The loaded pod's effective weight and slices fall by bounded steps and settle; equal loads
change nothing; the configured weights stay the ceiling; peak dns answers follow; a
restarted controller adopts the steered weights and moves nothing; static (the default)
ignores the loads."""
import re
import signal
import time

import dns.message
import dns.query

import ctlpeer
import peaktest
from ctlpeer import SVC

STEP = re.compile(r"(pod-\d) (\d+)->(\d+) \((\w+)\)")


class Pods:
    """Three pods serving TOTAL requests per second shared by their slices, each an M/M/1
    queue of capacity CAP[e]: in flight rate * latency (Little's law), CPU rate * 1 ms."""

    def __init__(self, agent, cap, total=1800.0, quota=None):
        self.a, self.cap, self.total = agent, cap, total
        self.share = {f"pod-{e}": 1 / len(cap) for e in range(len(cap))}
        self.cpu = [0] * len(cap)
        self.t = time.monotonic()
        # quota: requests/s each pod's CPU quota allows (None: the load line has no sat);
        # past 60% of it bursts use a period's quota up: throttled for (rho - 0.6) of the
        # time, its CPU capped at the quota, its connections those of a fast pod (the
        # signals that did not single a throttled pod out)
        self.quota, self.thr = quota, [0] * len(cap)

    def pump(self, duration, period=0.05):
        end = time.monotonic() + duration
        while time.monotonic() < end:
            self.drain()
            now = time.monotonic()
            dt, self.t = now - self.t, now
            for e, c in enumerate(self.cap):
                rate = self.total * self.share[f"pod-{e}"]
                lat = 1 / (c - rate) if rate < 0.95 * c else 20 / c
                sat = ""
                if self.quota:
                    q = self.quota[e]
                    rho = rate / q
                    self.thr[e] += int(min(max(rho - 0.6, 0), 1) * 1e9 * dt)
                    c = min(c, q)
                    sat = f" sat {self.thr[e]} 0 128"
                self.cpu[e] += int(min(rate, c) * 1e6 * dt)
                self.a.send(f"load {SVC} pod-{e} {int(rate * lat * 100)} {self.cpu[e]}{sat}\n")
            time.sleep(period)

    def drain(self):
        try:
            while True:
                _, m = self.a.read_map(timeout=0.001)
                n = ctlpeer.slices(m)
                self.share = {ep: n.get(ep, 0) / 256 for ep in self.share}
        except (TimeoutError, OSError):
            pass


def steps(ctl):
    return [(ep, int(a), int(b), why) for ep, a, b, why in STEP.findall(ctl.log())]


def settled(ctl, quiet=1.0, timeout=15.0):
    """Waits until ctl logged no step for quiet seconds (after the loads stop it may take
    one more on the last ones); returns its steps."""
    deadline = time.monotonic() + timeout
    seen, since = steps(ctl), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = steps(ctl)
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return seen
    raise AssertionError(f"steps still coming after {timeout} s: {seen[-3:]}")


def last_weight(log, ep, upto=None):
    """ep's effective weight after the last step logged (in log[:upto])."""
    return [int(b) for e, _, b, _ in STEP.findall(log[:upto]) if e == ep][-1]


def eff(port, ep):
    return int(ctlpeer.metric(port, "peak_controller_endpoint_effective_weight", ep))


def start(tmp_path, steer=("--steer", "metrics"), dns_srv=None):
    mport = peaktest.free_port()
    args = ["--metrics", f"[::1]:{mport}", *steer]
    if dns_srv:
        args += ["--dns-control", dns_srv.control]
    ctl = ctlpeer.Controller(str(tmp_path), ctlpeer.config(),
                             args=args + ["--steer-interval", "100"])
    return ctl, mport


def test_loaded_pod_sheds_by_steps_and_settles(tmp_path):
    srv = peaktest.Server(tmp_path, config=ctlpeer.config())
    ctl, mport = start(tmp_path, dns_srv=srv)
    try:
        a = ctlpeer.Agent(ctl.port)
        _, m = a.read_map()
        assert ctlpeer.slices(m) == {"pod-0": 86, "pod-1": 85, "pod-2": 85}
        pods = Pods(a, cap=[500, 1000, 1000])
        pods.pump(2.5)
        seen = steps(ctl)
        assert seen, ctl.log()
        for ep, old, new, why in seen:  # bounded steps, within [floor, ceiling]
            assert abs(new - old) <= 100 and 50 <= new <= 1000, seen
        assert {ep for ep, *_ in seen} == {"pod-0"}, seen  # the others stay at the ceiling
        assert seen[0][3] == "shed"
        # settled: 1.5 s more (15 rounds) move pod-0 by at most one step in all
        before = eff(mport, "pod-0")
        n = len(steps(ctl))
        pods.pump(1.5)
        after = eff(mport, "pod-0")
        assert abs(after - before) <= 100 and len(steps(ctl)) - n <= 2, steps(ctl)[n:]
        assert 150 < after < 700, after
        assert eff(mport, "pod-1") == eff(mport, "pod-2") == 1000
        assert ctlpeer.metric(mport, "peak_controller_endpoint_weight", "pod-0") == "1"
        assert ctlpeer.metric(mport, "peak_controller_endpoint_steer_reason", "pod-0") == "1"
        assert pods.share["pod-0"] < 0.3, pods.share
        # peak dns holds the same weights (told after each step: the controller may take
        # one more on the last loads), and its AAAA answers shift away from pod-0
        assert ctlpeer.wait_until(lambda: (
            f"pod-0 up weight={eff(mport, 'pod-0')}" in (st := srv.ctl("status").stdout)
            and "pod-1 up weight=1000" in st)), srv.ctl("status").stdout
        before = srv.metrics()
        for _ in range(300):
            srv.query(SVC, "AAAA")
        got = srv.metrics()
        key = 'peak_dns_steered_answers_total{service="%s",endpoint="%s"}'
        n = {ep: got[key % (SVC, ep)] - before.get(key % (SVC, ep), 0)
             for ep in ("pod-0", "pod-1", "pod-2")}
        share = n["pod-0"] / sum(n.values())
        assert share < after / (after + 2000) + 0.08, (n, after)
        # a restarted controller adopts the steered weights: the same map, nothing moves
        # (the last map and step are read after the stop: one may come after the reads above)
        assert ctl.stop() == 0
        try:
            while True:
                a.read_map(timeout=1)
        except (EOFError, TimeoutError, OSError):
            a.close()
        final = last_weight(ctl.log(), "pod-0")
        ctl, mport = start(tmp_path)
        b = ctlpeer.Agent(ctl.port)
        _, m = b.read_map()
        assert m == a.maps[SVC]
        assert eff(mport, "pod-0") == final
        b.close()
    finally:
        ctl.stop()
        srv.stop()


def test_throttled_pod_sheds_on_saturation(tmp_path):
    """Three pods of the same speed; pod-0's CPU quota allows 300 requests/s where its
    share is 600: it is throttled, does less work and holds a fast pod's connections, so
    only the saturation figure singles it out. It sheds by steps with reason "saturated"
    until clear (about 180/s: a weight near 220), then holds; the others stay at their
    ceilings."""
    ctl, mport = start(tmp_path)
    try:
        a = ctlpeer.Agent(ctl.port)
        a.read_map()
        pods = Pods(a, cap=[1000, 1000, 1000], quota=[300, 5000, 5000])
        pods.pump(0.6)
        assert int(ctlpeer.metric(mport, "peak_controller_endpoint_saturation", "pod-0")) > 10
        assert ctlpeer.metric(mport, "peak_controller_endpoint_saturation", "pod-1") == "0"
        deadline = time.monotonic() + 8  # converged: pod-0 clear of saturation
        while int(ctlpeer.metric(mport, "peak_controller_endpoint_saturation", "pod-0")) >= 3:
            assert time.monotonic() < deadline, steps(ctl)
            pods.pump(0.2)
        pods.pump(0.5)
        seen = steps(ctl)
        assert seen and {ep for ep, *_ in seen} == {"pod-0"}, seen
        assert seen[0][3] == "saturated", seen
        for ep, old, new, why in seen:
            assert abs(new - old) <= 100 and 50 <= new <= 1000, seen
        before, n = eff(mport, "pod-0"), len(steps(ctl))
        pods.pump(1.5)  # settled: 15 rounds move it by at most a step
        after = eff(mport, "pod-0")
        assert abs(after - before) <= 100 and len(steps(ctl)) - n <= 2, steps(ctl)[n:]
        assert 120 < after < 400, (after, seen)
        assert eff(mport, "pod-1") == eff(mport, "pod-2") == 1000
        assert ctlpeer.metric(mport, "peak_controller_endpoint_steer_reason", "pod-0") == "5"
        a.close()
    finally:
        assert ctl.stop() == 0


def test_equal_loads_change_nothing(tmp_path):
    ctl, mport = start(tmp_path)
    try:
        a = ctlpeer.Agent(ctl.port)
        _, m = a.read_map()
        Pods(a, cap=[1000, 1000, 1000]).pump(1.2)
        assert not steps(ctl), ctl.log()
        assert ctlpeer.slices(a.maps[SVC]) == {"pod-0": 86, "pod-1": 85, "pod-2": 85}
        for ep in ("pod-0", "pod-1", "pod-2"):
            assert eff(mport, ep) == 1000
            assert ctlpeer.metric(mport, "peak_controller_endpoint_steer_reason", ep) == "0"
        a.close()
    finally:
        assert ctl.stop() == 0


def test_static_by_default_ignores_loads(tmp_path):
    ctl, mport = start(tmp_path, steer=())
    try:
        a = ctlpeer.Agent(ctl.port)
        a.read_map()
        Pods(a, cap=[300, 1000, 1000]).pump(0.8)
        assert not steps(ctl) and "steering by load" not in ctl.log()
        assert eff(mport, "pod-0") == 1000
        assert "\npeak_controller_steer_metrics 0\n" in ctlpeer.metrics(mport)
        a.close()
    finally:
        assert ctl.stop() == 0


def test_static_state_adopted_by_steering(tmp_path):
    """A controller started with --steer metrics on the state a static one saved (weights
    in configured units) scales the weights: the same map, every pod at its ceiling (not
    at the floor, where it could not shed)."""
    ctl, mport = start(tmp_path, steer=())
    try:
        a = ctlpeer.Agent(ctl.port)
        _, m = a.read_map()
        a.close()
    finally:
        assert ctl.stop() == 0
    ctl, mport = start(tmp_path)
    try:
        a = ctlpeer.Agent(ctl.port)
        assert a.read_map()[1] == m
        Pods(a, cap=[1000, 1000, 1000]).pump(0.5)
        for ep in ("pod-0", "pod-1", "pod-2"):
            assert eff(mport, ep) == 1000
        assert not steps(ctl), ctl.log()
        a.close()
    finally:
        assert ctl.stop() == 0


def test_reload_raising_a_ceiling_keeps_the_fraction(tmp_path):
    """A reload that raises a shed endpoint's configured weight tenfold raises its ceiling:
    its effective weight keeps its fraction of it (not the new ceiling, nor the floor)."""
    ctl, mport = start(tmp_path)
    try:
        a = ctlpeer.Agent(ctl.port)
        a.read_map()
        Pods(a, cap=[500, 1000, 1000]).pump(2.5)
        with open(ctl.cfg) as f:
            text = f.read()
        with open(ctl.cfg, "w") as f:
            f.write(text.replace('"2001:db8:100::1"}', '"2001:db8:100::1", weight: 10}'))
        ctl.proc.send_signal(signal.SIGHUP)
        assert ctlpeer.wait_until(lambda: "configuration reloaded" in ctl.log())
        # the weight at the reload: the last step before it (the controller may step on
        # the last loads until then); after it, the first step starts from ten times that
        w = eff(mport, "pod-0")
        log = ctl.log()
        at = log.index("configuration reloaded")
        w0 = last_weight(log, "pod-0", at)
        assert 50 < w0 < 1000, steps(ctl)
        later = [int(old) for e, old, _, _ in STEP.findall(log[at:]) if e == "pod-0"]
        assert (later[0] if later else w) == w0 * 10, (w, w0, later)
        assert ctlpeer.metric(mport, "peak_controller_endpoint_weight", "pod-0") == "10"
        assert eff(mport, "pod-1") == 1000
        a.close()
    finally:
        assert ctl.stop() == 0


def test_bad_load_lines_change_nothing(tmp_path):
    ctl, mport = start(tmp_path)
    try:
        a = ctlpeer.Agent(ctl.port)
        a.read_map()
        for line in (f"load {SVC} pod-0 1 2 -3", f"load {SVC} pod-0 99 2 3 4",
                     f"load {SVC} nope 500 1", f"load {SVC} pod-0 18446744073709551616 1",
                     f"load {SVC} pod-0 1 2 sat 1 2", f"load {SVC} pod-0 1 2 3 sat 1 2 3 4"):
            a.send(line + "\n")
        a.send(f"load {SVC} pod-1 1 1\n")  # a valid one still lands after them
        assert ctlpeer.wait_until(lambda: ctlpeer.metric(
            mport, "peak_controller_endpoint_connections", "pod-1") == "1")
        log = ctl.log()
        assert log.count("malformed line") == 5 and "not an endpoint" in log, log
        assert ctlpeer.metric(mport, "peak_controller_endpoint_connections", "pod-0") == "0"
        assert not steps(ctl)
        a.close()
    finally:
        assert ctl.stop() == 0


def test_steer_option_checked(tmp_path):
    import subprocess
    cfg = tmp_path / "peak.yaml"
    cfg.write_text(ctlpeer.config())
    for bad in (["--steer", "dynamic"], ["--steer-interval", "10"], ["--steer-interval", "x"]):
        r = subprocess.run([ctlpeer.PEAK, "controller", "--config", str(cfg), "--listen",
                            "[::1]:1", *bad], capture_output=True, text=True, timeout=10)
        assert r.returncode == 2 and "--steer" in r.stderr, (bad, r.stderr)


def test_etcd_takeover_keeps_the_steered_weights(tmp_path, etcd):
    """The leader steers; it crashes; the standby adopts the stored effective weights: the
    agent gets the same map and the same weights show on the new leader."""
    from test_ha import TTL_S, connect_map
    port, mport = peaktest.free_port(), peaktest.free_port()
    common = ("--store", "etcd", "--etcd", etcd.url, "--listen", f"[::1]:{port}",
              "--steer", "metrics", "--steer-interval", "100")
    c1 = ctlpeer.Controller(str(tmp_path), ctlpeer.config(), common, name="c1")
    c2 = None
    try:
        assert ctlpeer.wait_until(lambda: "leading (store etcd)" in c1.log(), 10), c1.log()
        c2 = ctlpeer.Controller(str(tmp_path), None, (*common, "--metrics", f"[::1]:{mport}"),
                                name="c2")
        a = ctlpeer.Agent(port)
        a.read_map()
        pods = Pods(a, cap=[500, 1000, 1000])
        pods.pump(2.0)
        seen = settled(c1)
        assert seen, c1.log()
        pods.drain()
        live, w0 = a.maps[SVC], seen[-1][2]
        assert ctlpeer.wait_until(lambda: eff(mport, "pod-0") == w0, 5)  # c2 follows
        c1.proc.send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        c1.proc.wait(5)
        # what this test checks is the weights adopted, not the takeover's time (test_ha's):
        # a generous deadline, so an etcd stall on a loaded machine that costs the standby its
        # lease too (it campaigns again a TTL later) does not fail it
        m, a2 = connect_map(port, t0 + TTL_S + 15)
        assert m == live, "the new leader moved slices"
        assert eff(mport, "pod-0") == w0
        assert "stored state adopted" in c2.log()
        a2.close()
        a.close()
    finally:
        c1.stop()
        if c2:
            assert c2.stop() == 0


POD = r"""
import socket, sys, time
# the service's listener, never accepting: three connections wait in its accept queue
srv = socket.create_server(("::", 8080), family=socket.AF_INET6, backlog=8)
cl = [socket.create_connection(("::1", 8080)) for _ in range(3)]
print("ready", flush=True)
sys.stdin.readline()  # (moved into the throttled cgroup meanwhile)
while True:
    pass
"""


class Quota:
    """A CPU cgroup holding its processes to 5 ms per 100 ms (v2 cpu.max where the cpu
    controller is on the unified hierarchy, else v1 cfs quota), removed by close."""

    def __init__(self, name):
        import os
        sub = "/sys/fs/cgroup/cgroup.subtree_control"
        if os.path.exists(sub) and "cpu" in open(sub).read().split():
            self.path = f"/sys/fs/cgroup/{name}"
            os.mkdir(self.path)
            self.put("cpu.max", "5000 100000")
        else:
            self.path = f"/sys/fs/cgroup/cpu/{name}"
            os.mkdir(self.path)
            self.put("cpu.cfs_period_us", "100000")
            self.put("cpu.cfs_quota_us", "5000")

    def put(self, f, v):
        with open(f"{self.path}/{f}", "w") as fh:
            fh.write(v)

    def close(self):
        import os
        os.rmdir(self.path)


def test_agent_reports_throttling_and_accept_queue(tmp_path):
    """A real agent and a pod whose process is held to 5% of a core while it spins, and
    whose listener on the service port holds 3 connections it never accepts (backlog 8):
    the agent's load line for it carries 'sat THROTTLED_NS 3 8' with the throttled time
    rising, and its metrics show the same."""
    import os
    import subprocess
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
    from agentns import CONFIG, agent_ns, ip, wait_until
    with agent_ns(tmp_path, "stq") as ns:
        pod, proc, quota = ns.name + "p", None, None
        try:
            ip("netns", "add", pod)
            ip("-n", pod, "link", "set", "lo", "up")
            ns.cfg.write_text(CONFIG.replace('node: node1}\n      - {id: b2',
                                             f'node: node1, netns: {pod}}}\n      - {{id: b2'))
            proc = subprocess.Popen(["ip", "netns", "exec", pod, "/usr/bin/python3", "-c", POD],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert proc.stdout.readline() == "ready\n"
            quota = Quota(f"peak-test-{ns.name}")
            quota.put("cgroup.procs", str(proc.pid))
            proc.stdin.write("go\n")
            proc.stdin.flush()
            ns.start_agent("--metrics", "[::1]:9100")
            c = ns.accept()
            seen = []

            def sat():
                ln = c.line()
                if ln.startswith("load b.svc.example. b1 "):
                    seen.append(ln.split(" "))
                return len(seen) >= 2 and int(seen[-1][-3]) > int(seen[0][-3]) > 0
            assert wait_until(sat, 10), [" ".join(s) for s in seen[-2:]]
            assert seen[-1][-4:] == ["sat", seen[-1][-3], "3", "8"], seen[-1]
            key = '{service="b.svc.example.",endpoint="b1"}'
            m = ns.metrics()
            assert m["peak_agent_endpoint_throttled_seconds_total" + key] > 0
            assert m["peak_agent_endpoint_accept_queue" + key] == 3
            assert m["peak_agent_endpoint_accept_backlog" + key] == 8
            c.close()
        finally:
            if proc:
                proc.kill()
                proc.wait()
            if quota:
                quota.close()
            subprocess.run(["ip", "netns", "del", pod], capture_output=True)


LISTENER = r"""
import socket, sys
srv = socket.create_server(("::", 8080), family=socket.AF_INET6, backlog=8)
print("ready", flush=True)
sys.stdin.readline()
"""


def test_agent_reports_the_pods_own_load_figure(tmp_path):
    """peak agent --app-load-dir DIR: the figure a pod writes to DIR/ENDPOINT-ID goes out in
    its load lines (APP, before 'sat') and to the metrics; a file that is not a figure, one
    not rewritten for more than 10 s, and a FIFO are not reported (a warning each, and the
    agent goes on); a file removed stops the figure; a new one brings it back."""
    import os
    import subprocess
    import sys
    import time
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
    from agentns import CONFIG, agent_ns, ip, wait_until
    app = tmp_path / "app"
    app.mkdir()
    fig = app / "b1"
    with agent_ns(tmp_path, "sta") as ns:
        pod, proc = ns.name + "p", None
        try:
            ip("netns", "add", pod)
            ip("-n", pod, "link", "set", "lo", "up")
            ns.cfg.write_text(CONFIG.replace('node: node1}\n      - {id: b2',
                                             f'node: node1, netns: {pod}}}\n      - {{id: b2'))
            proc = subprocess.Popen(["ip", "netns", "exec", pod, "/usr/bin/python3", "-c",
                                     LISTENER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    text=True)
            assert proc.stdout.readline() == "ready\n"
            fig.write_text("42\n")
            ns.start_agent("--metrics", "[::1]:9100", "--app-load-dir", str(app))
            c = ns.accept()
            seen = []

            def app_field(want):
                """Until a load line of b1 has APP want (None: no APP field)."""
                def check():
                    ln = c.line()
                    if not ln.startswith("load b.svc.example. b1 "):
                        return False
                    f = ln.split(" ")
                    seen.append(ln)
                    got = f[5] if len(f) > 5 and f[5] != "sat" else None
                    return got == want
                assert wait_until(check, 15), (want, seen[-3:])

            app_field("42")
            key = '{service="b.svc.example.",endpoint="b1"}'
            assert ns.metrics()["peak_agent_endpoint_app_load" + key] == 42
            fig.write_text("4x2\n")
            app_field(None)
            assert "peak_agent_endpoint_app_load" + key not in ns.metrics()
            fig.write_text("7\n")
            app_field("7")
            old = time.time() - 60
            os.utime(fig, (old, old))
            app_field(None)
            fig.unlink()
            os.mkfifo(fig)
            app_field(None)
            fig.unlink()
            app_field(None)
            fig.write_text("9223372036854775807")
            app_field("9223372036854775807")
            log = ns.log.read_text()
            assert "b1: " + str(fig) + ": not a figure" in log, log
            assert "not rewritten for more than 10 s" in log, log
            assert log.count("its load figure is reported") == 3, log
            assert ns.agent.poll() is None
            c.close()
        finally:
            if proc:
                proc.kill()
                proc.wait()
            subprocess.run(["ip", "netns", "del", pod], capture_output=True)
