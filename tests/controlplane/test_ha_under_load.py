"""Controller high availability under client load (issue 18: "kill the leader of two under
load"): the namespace testbed (tests/integration/testbed.py: router with BIRD, two nodes
with agents and BIRD, four pods running peak serve, peak dns, a client namespace), with a
real etcd on the router's loopback and two controllers on one prefix, both given the same
--listen [::]:4000 (only the leader binds it; the agents reconnect to whichever leads).
peak load runs from the client namespace against the service, for a bounded time, while
the leader is killed with SIGKILL. Then:

  - the standby leads (its log line, and peak_controller_leader 1 on its metrics);
  - no slice moved: the stored assignment (PREFIX svc/SERVICE in etcd) and every node's
    slice routes are the same before and after;
  - no request failed: every request peak load sent is accounted for as ok or unfinished
    (in flight when the run ended), none failed.

No wall-clock bound is asserted: the gap from the kill to the agents' link with the new
leader is printed (a loaded ASan run takes longer; the lease TTL is 2 s)."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

import agentns
import etcdproc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import testbed  # noqa: E402

PEAK = os.path.abspath(os.environ.get("PEAK_BIN", os.path.join(HERE, "..", "..", "build",
                                                               "peak")))
ETCD_URL = "http://127.0.0.1:2379"  # on the router namespace's own loopback
METRICS = {"c1": 9101, "c2": 9102}
LOAD_S = 12  # the load's duration: the kill comes once it runs, the takeover well inside


class NsEtcd(etcdproc.Etcd):
    """etcd run by the testbed in the router namespace (stopped by its down(), by PID); the
    get/keys helpers of etcdproc, their requests made inside that namespace."""

    def __init__(self, tb):
        self.url, self.netns = ETCD_URL, tb.r()
        data = os.path.join(tb.dir, "etcd")
        self.proc = tb.run(tb.r(), etcdproc.ETCD, "--name", "t", "--data-dir", data,
                           "--listen-client-urls", ETCD_URL, "--advertise-client-urls",
                           ETCD_URL, "--listen-peer-urls", "http://127.0.0.1:2380",
                           "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                           "--initial-cluster", "t=http://127.0.0.1:2380",
                           "--log-level", "warn", log="etcd.log")
        self.logf = open(os.path.join(tb.dir, "etcd.log"))


class HaTestbed(testbed.Testbed):
    """The testbed with --store etcd: etcd, then c1 (leads), then c2 (a standby), all in
    the router namespace."""

    def start_controller(self, extra=(), log="controller.log"):
        self.etcd = NsEtcd(self)
        self.etcd.wait()
        self.ctls = {}
        for name in ("c1", "c2"):
            self.ctls[name] = self.run(
                self.r(), self.peak, "controller", "--config", self.cfg, "--listen",
                "[::]:4000", "--dns-control", self.dns_ctl, "--key-file", self.key,
                "--store", "etcd", "--etcd", ETCD_URL, "--control",
                os.path.join(self.dir, f"{name}.sock"), "--metrics",
                f"[::1]:{METRICS[name]}", log=f"{name}.log")
            want = "leading (store etcd)" if name == "c1" else "a standby"
            assert self.wait_log(f"{name}.log", want, 20), self.read(f"{name}.log")
        self.ctl_proc = self.ctls["c1"]

    def read(self, log):
        with open(os.path.join(self.dir, log), errors="replace") as f:
            return f.read()

    def metric(self, name, metric):
        def get():
            url = f"http://[::1]:{METRICS[name]}/metrics"
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read().decode()
        text = agentns.in_netns(self.r(), get)
        line = [x for x in text.splitlines() if x.startswith(metric + " ")]
        return float(line[0].split()[1]) if line else None


def stored_map(tb):
    """The stored assignment of the service: its map and ep lines (weights and health
    records aside)."""
    v = tb.etcd.get("/peak/svc/" + testbed.SERVICE) or ""
    return [x for x in v.splitlines() if x.startswith(("map ", "ep ", "end"))]


def slice_routes(tb):
    return {i: tb.node_routes(i) for i in range(1, tb.nodes + 1)}


@pytest.fixture
def tb(tmp_path):
    yield from etcdproc.bed(HaTestbed, "ha", tmp_path, PEAK, nodes=2, pods=2)


def test_leader_killed_under_load_fails_no_request_and_moves_nothing(tb):
    assert tb.wait_converged(30), "the router did not learn the slices"
    assert tb.wait_carried(30), "the router does not carry the agents' routes"
    for i in (1, 2):  # both agents on c1's link (the standby does not listen)
        assert tb.wait_log(f"agent-n{i}.log", "connected to controller", 20)
    assert tb.until(lambda: len(stored_map(tb)) > 2, 10), "nothing stored"
    map0, routes0 = stored_map(tb), slice_routes(tb)
    assert all(routes0.values()), routes0
    assert tb.metric("c1", "peak_controller_leader") == 1
    assert tb.metric("c2", "peak_controller_leader") == 0
    since = {i: tb.log_size(f"agent-n{i}.log") for i in (1, 2)}
    load = subprocess.Popen(
        ["ip", "netns", "exec", f"{tb.tag}-c", PEAK, "load", testbed.SERVICE, "--server",
         f"[{testbed.DNS_ADDR}]:53", "--port", str(testbed.PORT), "--sources",
         "2001:db8:c0::/48", "--clients", "64", "--concurrency", "16", "--new-conn",
         "--duration",
         str(LOAD_S), "--timeout", "5000", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the load runs once the pods hold its connections
        assert tb.until(lambda: any(
            subprocess.run(["ip", "netns", "exec", tb.pod(i, j), "ss", "-Htn", "state",
                            "established", f"( sport = :{testbed.PORT} )"],
                           capture_output=True, text=True).stdout.strip()
            for i, j in tb.all_pods()), 20), "the load reaches no pod"
        c1 = tb.ctls["c1"]
        t_kill = time.time()
        os.kill(c1.pid, signal.SIGKILL)  # a crash: no lease revoked, the TTL runs out
        c1.wait(5)
        assert tb.wait_log("c2.log", "leading (store etcd): the stored state adopted", 30), \
            tb.read("c2.log")
        for i in (1, 2):
            assert tb.wait_log(f"agent-n{i}.log", "connected to controller", 30,
                               since[i]), tb.read(f"agent-n{i}.log")
        out, err = load.communicate(timeout=LOAD_S + 60)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    assert load.returncode == 0, err
    r = json.loads(out)
    lead = log_time(tb, "c2.log", "leading (store etcd)", t_kill)
    link = [log_time(tb, f"agent-n{i}.log", "connected to controller", t_kill) for i in (1, 2)]
    print(f"takeover under load (lease TTL 2 s): kill -9 to the standby's 'leading' "
          f"{lead - t_kill:.2f} s, to the agents' link with it (their first map follows) "
          f"{', '.join(f'{t - t_kill:.2f} s' for t in link if t)} (node1, node2); peak load "
          f"{r['sent']} sent, {r['ok']} ok, {r['failed']} failed, {r['unfinished']} unfinished")
    assert tb.metric("c2", "peak_controller_leader") == 1
    assert stored_map(tb) == map0, "the new leader moved slices (stored map)"
    assert slice_routes(tb) == routes0, "the agents' slice routes changed"
    assert r["ok"] > 0, r
    assert r["sent"] == r["ok"] + r["failed"] + r["unfinished"], r
    assert r["failed"] == 0, (r["errors"], r.get("outage"))


def log_time(tb, log, text, after):
    """The wall time of the first line of a daemon's log holding text, logged at or after
    wall time after (millisecond stamps); None if none."""
    import datetime
    with open(os.path.join(tb.dir, log), errors="replace") as f:
        for ln in f:
            if text not in ln:
                continue
            try:
                t = datetime.datetime.strptime(ln.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
            except ValueError:
                continue
            t = t.replace(tzinfo=datetime.timezone.utc).timestamp()
            if t >= after - 0.001:
                return t
    return None
