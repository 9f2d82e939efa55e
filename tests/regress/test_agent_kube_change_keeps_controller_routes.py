"""With --source kubernetes, every change of the cluster's view routed the agent's own plan.

Seen (issue 18): the agent reloads its services on every change the Kubernetes API brings;
the reload dropped the controller's maps with the link, so until the controller sent them
again (about 3 ms later) the node routed its own plan: in a busy cluster, on every
EndpointSlice change, slices briefly reached other pods than the controller's assignment.

Here the controller and the agent both --source kubernetes (the fake API, tests/k8s/kubeapi.py);
the operator sets pod-0's weight to 0 on the controller, so the controller routes none of its
slices while the node's own plan gives it a share. `ip -6 monitor route` watches the node
through an EndpointSlice change (pod-3 added on node2: nothing of this node's shape changes)
and a SIGHUP: no route via pod-0 ever appears."""
import os
import signal
import socket
import subprocess
import sys

import pytest

import peaktest

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
sys.path.insert(0, os.path.join(HERE, "..", "k8s"))
import kubeapi  # noqa: E402
from agentns import in_netns, ip, node_ns, wait_until  # noqa: E402
from kubeapi import ANN, BASE, SVC, endpointslice, pods, service  # noqa: E402

PEAK = peaktest.PEAK
POD0 = "fd00:1::a0"


def gateways(name):
    out = ip("-n", name, "-6", "route", "show", "table", "main", "proto", "0xa5").stdout
    return {ln.split()[2] for ln in out.splitlines() if " via " in ln}


def syncs(name):
    """The agent's route syncs so far (its metrics on [::1]:9100 in the namespace)."""
    def get():
        with socket.create_connection(("::1", 9100), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while d := s.recv(65536):
                data += d
        return data.decode()
    key = 'peak_agent_syncs_total{result="ok"} '
    return int(next(ln for ln in in_netns(name, get).splitlines()
                    if ln.startswith(key)).split()[-1])


def via_pod0(path):
    """Route additions the monitor saw via pod-0."""
    return [ln for ln in path.read_text().splitlines()
            if not ln.startswith("Deleted") and f"via {POD0} " in ln]


@pytest.fixture
def ns():
    with node_ns(f"rgkk{os.getpid() % 100000}") as name:
        yield name


def test_cluster_change_and_sighup_keep_the_controllers_routes(tmp_path, ns):
    api = in_netns(ns, kubeapi.Api)
    procs = []
    try:
        api.put("services", service("api", annotations=ANN))
        api.put("endpointslices", endpointslice(
            "api-x1", "api", pods((0, "node1"), (1, "node1"), (2, "node2"))))
        cfg = tmp_path / "peak.yaml"
        cfg.write_text(BASE)
        tok = tmp_path / "token"
        tok.write_text(api.token + "\n")
        kube = ("--source", "kubernetes", "--kube-api", api.url, "--kube-token-file",
                str(tok), "--kube-secret-dir", str(tmp_path / "secrets"))
        port, ctl = peaktest.free_port(), str(tmp_path / "ctl.sock")
        clog, alog = tmp_path / "ctl.log", tmp_path / "agent.log"
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", ns, PEAK, "controller", "--config", str(cfg), "--listen",
             f"[::1]:{port}", "--control", ctl, "--state", "none", "--no-handover", *kube],
            stdout=open(clog, "w"), stderr=subprocess.STDOUT))
        assert wait_until(lambda: "agents on" in clog.read_text(), timeout=20), clog.read_text()
        agent = subprocess.Popen(
            ["ip", "netns", "exec", ns, PEAK, "agent", "--config", str(cfg), "--node",
             "node1", "--controller", f"[::1]:{port}", "--interval", "100", "--hc-interval",
             "60000", "--hc-timeout", "60000", "--no-handover", "--metrics", "[::1]:9100",
             *kube], stdout=subprocess.DEVNULL, stderr=open(alog, "w"))
        procs.append(agent)
        logs = lambda: clog.read_text() + alog.read_text()  # noqa: E731
        assert wait_until(lambda: gateways(ns) == {POD0, "fd00:1::a1"}, timeout=20), logs()
        r = subprocess.run([PEAK, "controller-ctl", "--control", ctl, "weight", SVC, "pod-0",
                            "0"], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stdout + r.stderr
        assert wait_until(lambda: gateways(ns) == {"fd00:1::a1"}, timeout=20), logs()
        mon_out = tmp_path / "monitor.txt"
        mon = subprocess.Popen(["ip", "-n", ns, "-6", "monitor", "route"],
                               stdout=open(mon_out, "w"), stderr=subprocess.DEVNULL)
        try:
            marks = []

            def mark():  # a route of ours reported: the monitor listens (one more each try)
                marks.append(f"fd00:ff:{len(marks)}::/64")
                ip("-n", ns, "-6", "route", "add", marks[-1], "dev", "d0")
                return "fd00:ff:" in mon_out.read_text()
            assert wait_until(mark)
            applied = alog.read_text().count("agent: kubernetes: 1 services applied")
            connected = alog.read_text().count("connected to controller")
            # a change of the cluster's view (a pod on the other node), then a SIGHUP
            api.put("endpointslices", endpointslice(
                "api-x1", "api", pods((0, "node1"), (1, "node1"), (2, "node2"), (3, "node2"))))
            assert wait_until(lambda: alog.read_text().count(
                "agent: kubernetes: 1 services applied") > applied, timeout=20), logs()
            agent.send_signal(signal.SIGHUP)
            assert wait_until(lambda: alog.read_text().count(
                "agent: kubernetes: 1 services applied") > applied + 1, timeout=20), logs()
            # reconnected, and the controller's maps taken again
            assert wait_until(lambda: alog.read_text().count("connected to controller") >=
                              connected + 2, timeout=20), logs()
            s0 = syncs(ns)  # two syncs after it: the node routed its view with the link up
            assert wait_until(lambda: syncs(ns) >= s0 + 2, timeout=20), logs()
            assert wait_until(lambda: gateways(ns) == {"fd00:1::a1"}, timeout=20), logs()
            assert not via_pod0(mon_out), via_pod0(mon_out)
            assert "the controller's maps of 1 services kept" in alog.read_text(), logs()
            assert all(p.poll() is None for p in procs), logs()
        finally:
            mon.send_signal(signal.SIGTERM)
            mon.wait()
    finally:
        for p in reversed(procs):
            peaktest.stop_process(p)
        api.close()
