"""Agents under leases (--store etcd): the leader keeps PREFIX nodes/NODE under a lease of
the agent TTL for each node whose agent is connected. When a node's agent link drops and
its registration lapses, its endpoints go down and their slices move; a takeover gives the
agents one agent TTL to reconnect and moves only the slices of those that do not.

Fake agents (ctlpeer.Agent), one node each: pod-i on node ni."""
import signal
import time

import ctlpeer
import peaktest
from ctlpeer import SVC

TTL_S = 2


def config(neps=3):
    eps = "\n".join(f'      - {{id: pod-{i}, address: "2001:db8:100::{i + 1:x}", node: n{i}}}'
                    for i in range(neps))
    nodes = ", ".join(f"{{name: n{i}}}" for i in range(neps))
    return f"""
zone:
  name: svc.example.
  ns:
    - {{name: ns1.svc.example., address: "2001:db8:53::1"}}
  soa: {{primary: ns1.svc.example., contact: hostmaster.svc.example., serial: 7, minimum: 20}}
nodes: [{nodes}]
services:
  - name: {SVC}
    prefixes: [2001:db8:5::/64]
    slice: 72
    endpoints:
{eps}
"""


def controller(tmp, etcd, name, port, cfg=None):
    return ctlpeer.Controller(str(tmp), cfg, ("--store", "etcd", "--etcd", etcd.url,
                                               "--listen", f"[::1]:{port}", "--control",
                                               str(tmp / f"{name}.sock")), name=name)


def test_a_node_whose_agent_goes_loses_its_slices_after_the_ttl(tmp_path, etcd):
    port = peaktest.free_port()
    c = controller(tmp_path, etcd, "c1", port, config())
    try:
        assert ctlpeer.wait_until(lambda: "leading (store etcd)" in c.log(), 10), c.log()
        a0, a1, a2 = ctlpeer.agents(port)
        assert ctlpeer.wait_until(
            lambda: {"/peak/nodes/n0", "/peak/nodes/n1", "/peak/nodes/n2"} <=
            set(etcd.keys()), 5), etcd.keys()
        assert ctlpeer.slices(a0.maps[SVC])["pod-1"] > 0
        a1.close()  # the node's agent is gone; its registration runs out after the TTL
        t0 = time.monotonic()
        _, m = a0.read_map(timeout=TTL_S + 4)
        took = time.monotonic() - t0
        print(f"n1's slices moved {took:.2f} s after its agent's link dropped (TTL {TTL_S} s)")
        assert "pod-1" not in m and set(ctlpeer.slices(m)) == {"pod-0", "pod-2"}, m
        assert TTL_S - 0.5 <= took < TTL_S + 2.5, took
        assert "node n1 gone" in c.log(), c.log()
        assert "/peak/nodes/n1" not in etcd.keys()
        assert ctlpeer.wait_until(
            lambda: f"health {SVC} pod-1 down" in etcd.get("/peak/svc/" + SVC), 3)
        # the agent comes back: after its hello (and no report of pod-1 down) pod-1 is up
        m, a1 = ctlpeer.connect_map(port, time.monotonic() + 5, "n1")
        _, m = a0.read_map(timeout=5)
        assert ctlpeer.slices(m).get("pod-1", 0) > 0, m
        for a in (a0, a1, a2):
            a.close()
    finally:
        assert c.stop() == 0


def test_a_takeover_moves_only_the_slices_of_agents_that_do_not_come_back(tmp_path, etcd):
    p1, p2 = peaktest.free_port(), peaktest.free_port()
    c1 = controller(tmp_path, etcd, "c1", p1, config())
    c2 = None
    try:
        assert ctlpeer.wait_until(lambda: "leading (store etcd)" in c1.log(), 10), c1.log()
        c2 = controller(tmp_path, etcd, "c2", p2)
        assert "a standby" in c2.log(), c2.log()
        a0, a1, a2 = ctlpeer.agents(p1)
        live = a0.maps[SVC]
        assert ctlpeer.wait_until(lambda: "/peak/nodes/n2" in etcd.keys(), 5)
        c1.proc.send_signal(signal.SIGKILL)  # its agents' registrations run out with it
        c1.proc.wait(5)
        deadline = time.monotonic() + TTL_S + 5
        m0, b0 = ctlpeer.connect_map(p2, deadline, "n0")  # n0 and n1 come back; n2 does not
        m1, b1 = ctlpeer.connect_map(p2, deadline, "n1")
        assert m0 == live and m1 == live, "the takeover moved slices"
        assert ctlpeer.wait_until(lambda: "agents connected" in c2.log(), TTL_S + 3), c2.log()
        _, m = b0.read_map(timeout=3)
        assert set(ctlpeer.slices(m)) == {"pod-0", "pod-1"}, m
        assert "node n2 gone" in c2.log() and "node n1 gone" not in c2.log() \
            and "node n0 gone" not in c2.log(), c2.log()
        assert "/peak/nodes/n0" in etcd.keys() and "/peak/nodes/n1" in etcd.keys()
        for a in (a0, a1, a2, b0, b1):
            a.close()
    finally:
        c1.stop()
        if c2:
            assert c2.stop() == 0

