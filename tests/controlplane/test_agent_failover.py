"""A real peak agent given both controllers of an etcd-backed pair (--controller A,B): it
keeps to the one that leads (the standby does not listen) and, when that one dies, reaches
the new leader and gets the same map, keeping its routes meanwhile.

  [NS] lo: etcd 127.0.0.1, controller c1 [::1]:P1 (leads), c2 [::1]:P2 (standby),
           the agent (--controller [::1]:P1,[::1]:P2)
       d0 fd00:1::1/64 -- veth -- d1: the endpoints' addresses are on-link gateways

Everything runs in one namespace (agentns.py), which the fixture deletes."""
import os
import signal
import subprocess
import time

import pytest

import agentns
import etcdproc
import peaktest

PEAK = peaktest.PEAK
TTL_S = 2
SVC = "b.svc.example."


class Ctl:
    """peak controller inside the namespace, --store etcd, its log in tmp."""

    def __init__(self, ns, tmp, name, etcd, port):
        self.sock = str(tmp / f"{name}.sock")
        self.log_path = tmp / f"{name}.log"
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, PEAK, "controller", "--config", str(ns.cfg),
             "--listen", f"[::1]:{port}", "--store", "etcd", "--etcd", etcd.url,
             "--control", self.sock], stdout=self.logf, stderr=subprocess.STDOUT)

    def log(self):
        return self.log_path.read_text()

    def ctl(self, *cmd):
        return subprocess.run([PEAK, "controller-ctl", "--control", self.sock, *cmd],
                              capture_output=True, text=True, timeout=10)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.logf.close()


@pytest.fixture
def testbed(tmp_path):
    if not os.path.exists(etcdproc.ETCD):
        pytest.skip("etcd is not installed (scripts/deps.sh installs etcd-server)")
    with agentns.agent_ns(tmp_path, "cpaf") as ns:
        etcd = etcdproc.Etcd(str(tmp_path / "etcd"), netns=ns.name)
        ctls = []
        try:
            etcd.wait()
            yield ns, etcd, ctls
        finally:
            for c in ctls:
                c.stop(signal.SIGKILL)
            etcd.stop()


def test_agent_follows_the_leader_and_keeps_the_map(tmp_path, testbed):
    ns, etcd, ctls = testbed
    p1, p2 = peaktest.free_port(), peaktest.free_port()
    c1 = Ctl(ns, tmp_path, "c1", etcd, p1)
    ctls.append(c1)
    assert agentns.wait_until(lambda: "leading (store etcd)" in c1.log(), 10), c1.log()
    c2 = Ctl(ns, tmp_path, "c2", etcd, p2)
    ctls.append(c2)
    assert agentns.wait_until(lambda: "a standby" in c2.log(), 10), c2.log()
    ns.start_agent(controller=f"[::1]:{p2},[::1]:{p1}")  # the standby first: it refuses
    log = lambda: ns.log.read_text()  # noqa: E731
    assert agentns.wait_until(lambda: f"connected to controller [::1]:{p1}" in log(), 10), log()
    # a map only the leader's link can give: b2 loses its slices to the others
    r = c1.ctl("weight", SVC, "b2", "0")
    assert r.returncode == 0, r
    assert agentns.wait_until(
        lambda: "ep b2 " not in (etcd.get("/peak/svc/" + SVC) or "ep b2 "), 5)
    assert agentns.wait_until(lambda: not any(g == "fd00:1::b2" for _, g in ns.routes()), 5)
    before = ns.routes()
    assert before and any(g == "fd00:1::b3" for _, g in before), before

    c1.proc.send_signal(signal.SIGKILL)  # a crash: the lease runs out, c2 takes over
    t0 = time.monotonic()
    c1.proc.wait(5)
    assert agentns.wait_until(lambda: f"connected to controller [::1]:{p2}" in log(),
                              TTL_S + 5), log()
    took = time.monotonic() - t0
    print(f"agent on the new leader {took:.2f} s after the crash (lease TTL {TTL_S} s)")
    assert took < TTL_S + 2.5, took
    assert "leading (store etcd): the stored state adopted" in c2.log(), c2.log()
    assert ns.routes() == before, "the routes changed across the takeover"
    # the link is c2's: a change made there reaches the agent's routes
    r = c2.ctl("weight", SVC, "b3", "0")
    assert r.returncode == 0, r
    assert agentns.wait_until(lambda: not any(g == "fd00:1::b3" for _, g in ns.routes()), 5)
    assert ns.agent.poll() is None


def test_agent_tries_each_controller_before_the_backoff(tmp_path, testbed):
    """With no controller listening, the agent tries each address in turn and only then
    waits (the backoff doubles per round, not per address)."""
    ns, etcd, ctls = testbed
    p1, p2 = peaktest.free_port(), peaktest.free_port()
    ns.srv.close()  # the fake controller's port: nothing listens there
    ns.start_agent(controller=f"[::1]:{p1},[::1]:{p2},[::1]:{ns.port}")
    c = Ctl(ns, tmp_path, "c1", etcd, p2)
    ctls.append(c)
    log = lambda: ns.log.read_text()  # noqa: E731
    assert agentns.wait_until(lambda: f"connected to controller [::1]:{p2}" in log(), 10), log()
    c.stop()  # SIGTERM: the lease is revoked; nobody listens any more
    assert agentns.wait_until(lambda: "retrying in" in log(), 5), log()
    assert f"retrying in 0 ms at [::1]:{ns.port}" in log(), log()
    assert ns.agent.poll() is None


def test_a_bad_controller_list_is_a_usage_error(tmp_path):
    ok = "[::1]:4000"
    for ctl in (f"{ok},", f"{ok},,{ok}", f",{ok}", f"{ok},nonsense", ",".join([ok] * 9)):
        p = subprocess.run([PEAK, "agent", "--config", "/nonexistent", "--node", "n",
                            "--controller", ctl], capture_output=True, text=True, timeout=10)
        assert p.returncode == 2 and "--controller" in p.stderr, (ctl, p)
    p = subprocess.run([PEAK, "agent", "--config", "/nonexistent", "--node", "n",
                        *sum((["--controller", ok] for _ in range(9)), [])],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "up to 8" in p.stderr, p
