"""Controller high availability with --store etcd: two controllers, one leader elected
through a lease and a transaction on PREFIX leader; the standby neither listens for agents
nor takes operator changes. Both are given the same --listen (on one machine only the
leader binds it; across machines it would be an address the leader holds), so an agent
that reconnects reaches whichever leads. Killing the leader hands over within the lease
TTL, and the new leader adopts the stored assignment: the agent gets the same map."""
import os
import signal
import subprocess
import time

import ctlpeer
import hapair
import peaktest
from ctlpeer import SVC, agent_down_pod1, connect_map

TTL_S = 2


def pair(tmp, etcd):
    return hapair.pair(tmp, "etcd", ("--store", "etcd", "--etcd", etcd.url))


def test_standby_takes_over_within_the_ttl_and_moves_nothing(tmp_path, etcd):
    port, c1, c2 = pair(tmp_path, etcd)
    try:
        live, a = agent_down_pod1(port)
        # the standby follows the stored state and refuses operator changes
        assert ctlpeer.wait_until(lambda: "the stored state changed: adopted" in c2.log(), 5)
        p = subprocess.run([ctlpeer.PEAK, "controller-ctl", "--control",
                            str(tmp_path / "c2.sock"), "health", SVC, "pod-0", "down"],
                           capture_output=True, text=True, timeout=10)
        assert p.returncode != 0 and "standby" in p.stderr + p.stdout, p
        c1.proc.send_signal(signal.SIGKILL)  # a crash: no lease revoked, the TTL runs out
        t0 = time.monotonic()
        c1.proc.wait(5)
        assert a.closed_by_peer(timeout=2)
        m, a2 = connect_map(port, t0 + TTL_S + 2.5)
        took = time.monotonic() - t0
        a2.send(f"health {SVC} pod-1 down\n")  # as an agent reports after its hello
        assert m == live, "the new leader moved slices"
        assert took < TTL_S + 2.5, took
        assert "leading (store etcd): the stored state adopted" in c2.log()
        print(f"takeover after a crash: {took:.2f} s (lease TTL {TTL_S} s)")
        a2.close()
        a.close()
    finally:
        c1.stop()
        assert c2.stop() == 0


def test_stopped_leader_hands_over_at_once(tmp_path, etcd):
    """SIGTERM: the leader revokes its lease, so the standby leads well within the TTL."""
    port, c1, c2 = pair(tmp_path, etcd)
    try:
        live, a = agent_down_pod1(port)
        assert ctlpeer.wait_until(lambda: "the stored state changed: adopted" in c2.log(), 5)
        t0 = time.monotonic()
        assert c1.stop() == 0
        m, a2 = connect_map(port, t0 + TTL_S)
        took = time.monotonic() - t0
        assert m == live
        assert took < TTL_S, took
        print(f"handover after SIGTERM: {took:.2f} s")
        a2.close()
        a.close()
    finally:
        c1.stop()
        assert c2.stop() == 0


def test_one_leader_at_a_time(tmp_path, etcd):
    port, c1, c2 = pair(tmp_path, etcd)
    try:
        leader = etcd.keys().get("/peak/leader", "")
        assert f"/{c1.proc.pid} " in leader, leader
        assert "leading" not in c2.log()
    finally:
        c1.stop()
        assert c2.stop() == 0


def test_leader_without_etcd_steps_down_and_leads_again(tmp_path, etcd):
    """etcd hangs (SIGSTOP): the leader cannot renew its lease, so it steps down before the
    lease can expire (closing its listener: no controller pushes maps while nobody can
    know who leads). When etcd is back it leads again with the stored assignment."""
    port = peaktest.free_port()
    ctl = ctlpeer.Controller(str(tmp_path), ctlpeer.config(),
                             ("--store", "etcd", "--etcd", etcd.url, "--listen",
                              f"[::1]:{port}"))
    try:
        assert ctlpeer.wait_until(lambda: "leading (store etcd)" in ctl.log(), 10)
        live, a = agent_down_pod1(port)
        assert ctlpeer.wait_until(lambda: "pod-1 down" in (etcd.get("/peak/svc/" + SVC) or ""))
        os.kill(etcd.proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            assert a.closed_by_peer(timeout=TTL_S + 1)
            took = time.monotonic() - t0
            assert ctlpeer.wait_until(lambda: "standby: the store did not answer" in ctl.log())
            assert took < TTL_S, took
        finally:
            os.kill(etcd.proc.pid, signal.SIGCONT)
        m, a2 = connect_map(port, time.monotonic() + 3 * TTL_S + 5)
        assert m == live
        assert ctl.proc.poll() is None
        a2.close()
        a.close()
    finally:
        assert ctl.stop() == 0


def test_standby_follows_every_change_through_the_watch(tmp_path, etcd):
    """The standby reads the /v3/watch stream at every 250 ms interval: each change the
    leader stores is adopted by the standby (about 0.27 s here; the bound leaves room for
    a loaded machine), and its status shows it."""
    port, c1, c2 = pair(tmp_path, etcd)
    try:
        a = ctlpeer.Agent(port)
        a.read_map()
        for n, (ep, state) in enumerate([("pod-1", "down"), ("pod-2", "down"),
                                         ("pod-1", "up")], start=1):
            a.send(f"health {SVC} {ep} {state}\n")
            a.read_map()
            t0 = time.monotonic()
            assert ctlpeer.wait_until(
                lambda: c2.log().count("the stored state changed: adopted") >= n, 2.0), n
            print(f"standby adopted change {n} after {time.monotonic() - t0:.3f} s")
        p = subprocess.run([ctlpeer.PEAK, "controller-ctl", "--control",
                            str(tmp_path / "c2.sock"), "status"],
                           capture_output=True, text=True, timeout=10)
        assert f"{SVC} pod-2 down weight 1 slices 0" in p.stdout, p.stdout
        assert f"{SVC} pod-1 up weight 1 slices 128" in p.stdout, p.stdout
        a.close()
    finally:
        c1.stop()
        assert c2.stop() == 0


def test_reload_on_both_then_takeover_keeps_the_new_map(tmp_path, etcd):
    """The operator adds an endpoint and sends SIGHUP to every controller: the leader gives
    the new endpoint its share and stores it; the standby, reloaded too, adopts the stored
    map when it takes over, moving nothing."""
    port, c1, c2 = pair(tmp_path, etcd)
    try:
        a = ctlpeer.Agent(port)
        a.read_map()
        with open(tmp_path / "peak.yaml", "w") as f:
            f.write(ctlpeer.config(4))
        for c in (c2, c1):
            c.proc.send_signal(signal.SIGHUP)
            assert ctlpeer.wait_until(lambda: "configuration reloaded" in c.log(), 5)
        _, grown = a.read_map()
        assert ctlpeer.slices(grown) == {"pod-0": 64, "pod-1": 64, "pod-2": 64, "pod-3": 64}
        assert ctlpeer.wait_until(lambda: "ep pod-3 " in (etcd.get("/peak/svc/" + SVC) or ""))
        c1.proc.send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        c1.proc.wait(5)
        m, a2 = connect_map(port, t0 + TTL_S + 2.5)
        assert m == grown
        a2.close()
        a.close()
    finally:
        c1.stop()
        assert c2.stop() == 0
