"""Agents under Leases (--store kubernetes), as under etcd leases in --store etcd
(tests/controlplane/test_agent_lease.py): the leader keeps a coordination.k8s.io/v1 Lease
demo/peak-controller-node-NODE (label peak.dev/node-of=peak-controller, holderIdentity
NODE) renewed for each node whose agent is connected; when a node's agent link drops and
its Lease is not renewed for its leaseDurationSeconds, its endpoints go down and their
slices move; a takeover gives the agents one agent TTL to reconnect and moves only the
slices of those that do not. Against the fake API server (kubeapi.py: the documented wire
format of Lease lists with a label selector, PUTs guarded by resourceVersion); no API
server runs here.

    fake agents n0, n1, n2 --> c1 (leader) / c2 (standby) --GET/PUT/POST--> kubeapi.Api"""
import os
import signal
import subprocess
import time

import ctlpeer
import hapair
import kubeapi
import peaktest
from ctlpeer import SVC

TTL_S = 2
NS, NAME = "demo", "peak-controller"


def config(neps=3):
    eps = "\n".join(f'      - {{id: pod-{i}, address: "2001:db8:100::{i + 1:x}", node: n{i}}}'
                    for i in range(neps))
    nodes = ", ".join(f"{{name: n{i}}}" for i in range(neps))
    return ctlpeer.config(neps).replace("services:", f"nodes: [{nodes}]\nservices:") \
        .split("    endpoints:\n")[0] + "    endpoints:\n" + eps + "\n"


def args(tmp, api, port, name, extra=()):
    tok = hapair.token_file(tmp, api.token)
    return ("--store", "kubernetes", "--kube-api", api.url, "--kube-token-file", tok,
            "--kube-namespace", NS, "--lease-ttl", str(TTL_S), "--listen", f"[::1]:{port}",
            "--control", os.path.join(tmp, f"{name}.sock"), *extra)


def controller(tmp, api, name, port, cfg=None):
    return ctlpeer.Controller(str(tmp), cfg, args(str(tmp), api, port, name), name=name)


def node_leases(api):
    with api.lock:
        return {n: o for (r, ns, n), o in api.nsobjs.items()
                if r == "leases" and ns == NS and n.startswith(NAME + "-node-")}


def test_a_node_whose_agent_goes_loses_its_slices_after_the_ttl(tmp_path, api):
    port = peaktest.free_port()
    c = controller(tmp_path, api, "c1", port, config())
    try:
        assert ctlpeer.wait_until(lambda: "leading (store kubernetes)" in c.log(), 10), c.log()
        a0, a1, a2 = ctlpeer.agents(port)
        want = {f"{NAME}-node-n{i}" for i in range(3)}
        assert ctlpeer.wait_until(lambda: set(node_leases(api)) == want, 5), node_leases(api)
        lz = node_leases(api)[f"{NAME}-node-n1"]
        assert lz["spec"]["holderIdentity"] == "n1", lz
        assert lz["spec"]["leaseDurationSeconds"] == TTL_S, lz
        assert lz["metadata"]["labels"] == {"peak.dev/node-of": NAME}, lz
        rv = lz["metadata"]["resourceVersion"]  # renewed while the agent is connected
        assert ctlpeer.wait_until(
            lambda: node_leases(api)[f"{NAME}-node-n1"]["metadata"]["resourceVersion"] != rv, 10)
        assert ctlpeer.slices(a0.maps[SVC])["pod-1"] > 0
        a1.close()  # the node's agent is gone; its Lease is not renewed any more
        t0 = time.monotonic()
        _, m = a0.read_map(timeout=TTL_S + 30)  # (a deadline for a hung leader only)
        took = time.monotonic() - t0
        print(f"n1's slices moved {took:.2f} s after its agent's link dropped (TTL {TTL_S} s)")
        assert "pod-1" not in m and set(ctlpeer.slices(m)) == {"pod-0", "pod-2"}, m
        # not before its Lease's TTL (a lower bound: a loaded machine only adds to it; the
        # upper end is printed above, not bounded)
        assert took >= TTL_S - 0.5, took
        assert "node n1 gone" in c.log() and "node n0 gone" not in c.log(), c.log()
        # the agent comes back: its Lease is renewed again, pod-1 is up after its hello
        rv = node_leases(api)[f"{NAME}-node-n1"]["metadata"]["resourceVersion"]
        m, a1 = ctlpeer.connect_map(port, time.monotonic() + 30, "n1")
        _, m = a0.read_map(timeout=30)
        assert ctlpeer.slices(m).get("pod-1", 0) > 0, m
        assert node_leases(api)[f"{NAME}-node-n1"]["metadata"]["resourceVersion"] != rv
        for a in (a0, a1, a2):
            a.close()
    finally:
        assert c.stop() == 0


def test_a_takeover_moves_only_the_slices_of_agents_that_do_not_come_back(tmp_path, api):
    p1, p2 = peaktest.free_port(), peaktest.free_port()
    c1 = controller(tmp_path, api, "c1", p1, config())
    c2 = None
    try:
        assert ctlpeer.wait_until(lambda: "leading (store kubernetes)" in c1.log(), 10), \
            c1.log()
        c2 = controller(tmp_path, api, "c2", p2)
        assert "a standby" in c2.log(), c2.log()
        a0, a1, a2 = ctlpeer.agents(p1)
        live = a0.maps[SVC]
        assert ctlpeer.wait_until(lambda: len(node_leases(api)) == 3, 5)
        c1.proc.send_signal(signal.SIGKILL)  # its agents' Leases are renewed no more
        c1.proc.wait(5)
        # (the agents reconnect within the new leader's grace of one agent TTL: the test's
        # few connects take milliseconds of it; the deadline is for a hung standby)
        deadline = time.monotonic() + TTL_S + 30
        m0, b0 = ctlpeer.connect_map(p2, deadline, "n0")  # n0 and n1 come back; n2 does not
        m1, b1 = ctlpeer.connect_map(p2, deadline, "n1")
        assert m0 == live and m1 == live, "the takeover moved slices"
        assert ctlpeer.wait_until(lambda: "agents connected" in c2.log(), TTL_S + 30), c2.log()
        _, m = b0.read_map(timeout=TTL_S + 30)
        assert set(ctlpeer.slices(m)) == {"pod-0", "pod-1"}, m
        assert "node n2 gone" in c2.log() and "node n1 gone" not in c2.log() \
            and "node n0 gone" not in c2.log(), c2.log()
        for a in (a0, a1, a2, b0, b1):
            a.close()
    finally:
        c1.stop()
        if c2:
            assert c2.stop() == 0


def test_foreign_leases_are_ignored_and_bad_ttls_refused(tmp_path, api):
    # a Lease with the label that is no node's (holder not its name's node), and one
    # whose spec is of the wrong shape: logged, nothing judged from them, no crash
    api.nsobj_set("leases", NS, f"{NAME}-node-n0", {
        "metadata": {"labels": {"peak.dev/node-of": NAME}},
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 2}})
    api.nsobj_set("leases", NS, "odd", {
        "metadata": {"labels": {"peak.dev/node-of": NAME}}, "spec": "x"})
    port = peaktest.free_port()
    c = controller(tmp_path, api, "c1", port, config())
    try:
        assert ctlpeer.wait_until(lambda: "leading (store kubernetes)" in c.log(), 10), c.log()
        assert ctlpeer.wait_until(lambda: "not a node's" in c.log(), 5), c.log()
        a0, a1, a2 = ctlpeer.agents(port)
        # n0's Lease is taken over by the leader for its connected agent (a PUT)
        assert ctlpeer.wait_until(lambda: node_leases(api)[f"{NAME}-node-n0"]["spec"]
                                  ["holderIdentity"] == "n0", 5), node_leases(api)
        rv = node_leases(api)[f"{NAME}-node-n0"]["metadata"]["resourceVersion"]
        assert ctlpeer.wait_until(lambda: node_leases(api)[f"{NAME}-node-n0"]["metadata"]
                                  ["resourceVersion"] != rv, 5)  # (lists went by)
        assert "gone" not in c.log(), c.log()
        assert c.log().count("Lease demo/odd: not a node's") == 1, c.log()  # once a version
        for a in (a0, a1, a2):
            a.close()
    finally:
        assert c.stop() == 0
    r = subprocess.run([ctlpeer.PEAK, "controller", "--config", c.cfg, "--store",
                        "kubernetes", "--kube-api", api.url, "--lease-ttl", "4",
                        "--agent-ttl", "1", "--listen", f"[::1]:{port}"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--agent-ttl 1 is less than half" in r.stdout + r.stderr, r
