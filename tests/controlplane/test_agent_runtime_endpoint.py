"""A pod added at run time is routed by the agent of its node (issue 18): a pod no file
lists starts in a namespace of the node, `peak controller-ctl add` adds it, the controller
(--store etcd) tells the agent (an "add" line before the map), the agent logs and routes its
slices, and a client whose rule address lies in them reaches that pod; `del` removes it and
its slices go back to the file's pods, the whole range routed all along.

  [*-c] c0 2001:db8:aa:N::1/48 -- veth -- n0 2001:db8:aa:ffff::1/48 [*-n] node1: etcd,
                                           va 2001:db8:100:1::1/64 -- ::a [*-a] pod-a    controller,
                                           vb 2001:db8:100:2::1/64 -- ::b [*-b] pod-b    agent
                                           ve 2001:db8:100:3::1/64 -- ::e [*-e] pod-e (run time)

pod-e has no netns in the controller's records (an address-only pod): it accepts the
service's range itself (its own AnyIP route), as a file's pod without netns must.
On the code before this, the agent refuses the map's "ep pod-e" line (unknown endpoint) and
no route points at pod-e: the first wait fails."""
import ipaddress
import os
import re
import subprocess
import sys
import time

import pytest

import etcdproc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from test_agent import PEAK, SOURCES, cl, config, covers_exactly, ip  # noqa: E402,F401
from test_failover import probe, rule, start, start_pods, wait_until  # noqa: E402

SVC = "api.svc.example."
POD_E = "2001:db8:100:3::e"


def pod_e_namespace(cl, e_ns):
    """A namespace e_ns for pod-e, which no file lists: POD_E on a veth from node1's
    namespace, the service's prefix local (AnyIP) in it."""
    ip("netns", "add", e_ns)
    ip("-n", e_ns, "link", "set", "lo", "up")
    ip("-n", cl.n, "link", "add", "ve", "type", "veth", "peer", "name", "eth0", "netns", e_ns)
    ip("-n", cl.n, "addr", "add", "2001:db8:100:3::1/64", "dev", "ve", "nodad")
    ip("-n", cl.n, "link", "set", "ve", "up")
    ip("-n", e_ns, "addr", "add", POD_E + "/64", "dev", "eth0", "nodad")
    ip("-n", e_ns, "link", "set", "eth0", "up")
    ip("-n", e_ns, "-6", "route", "add", "default", "via", "2001:db8:100:3::1")
    ip("-n", e_ns, "-6", "route", "add", "local", "2001:db8:5::/64", "dev", "lo")


def serve_pod_e(e_ns, tmp_path):
    """pod-e's 'peak serve' on port 8080 in e_ns, once it listens (its log in tmp_path)."""
    pod_e = subprocess.Popen(["ip", "netns", "exec", e_ns, PEAK, "serve", "--port", "8080",
                              "--id", "pod-e"], stdout=subprocess.DEVNULL,
                             stderr=open(tmp_path / "pod-e.log", "w"))
    assert wait_until(lambda: "serve: pod-e on port 8080" in (tmp_path / "pod-e.log").read_text())
    return pod_e


def slices_via(c, gw):
    """Slices (/78) the node routes to gw."""
    return sum(1 << (78 - ipaddress.ip_network(d).prefixlen)
               for d, g, _ in c.routes() if g == gw)


def test_runtime_pod_routed_reached_and_removed(cl, tmp_path):
    if not os.path.exists(etcdproc.ETCD):
        pytest.skip("etcd is not installed (scripts/deps.sh installs etcd-server)")
    cl.cfg.write_text(config(cl.tag))
    e_ns = cl.tag + "-e"
    etcd = None
    pod_e = None
    try:
        pod_e_namespace(cl, e_ns)
        etcd = etcdproc.Etcd(str(tmp_path / "etcd"), netns=cl.n).wait()
        sock = str(tmp_path / "c.sock")
        ctl = start(cl, cl.n, PEAK, "controller", "--config", str(cl.cfg), "--listen",
                    "[::1]:4000", "--store", "etcd", "--etcd", etcd.url, "--control", sock)
        assert wait_until(lambda: "leading (store etcd)" in ctl.log.read_text()), \
            ctl.log.read_text()
        start_pods(cl)
        pod_e = serve_pod_e(e_ns, tmp_path)
        agent = start(cl, cl.n, PEAK, "agent", "--config", str(cl.cfg), "--node", "node1",
                      "--controller", "[::1]:4000", "--metrics", "[::1]:9100")
        alog = agent.log.read_text
        assert wait_until(lambda: "connected to controller" in alog())
        assert wait_until(lambda: covers_exactly(cl.routes(), "2001:db8:5::/64"))
        assert slices_via(cl, POD_E) == 0

        def ctlctl(*args):
            return subprocess.run([PEAK, "controller-ctl", "--control", sock, *args],
                                  capture_output=True, text=True, timeout=10)

        r = ctlctl("add", SVC, "pod-e", POD_E, "1", "node1")
        assert r.returncode == 0 and "added 1, removed 0 in 1 services" in r.stdout, r
        st = ctlctl("status").stdout
        held = {x.split()[1]: int(x.split()[-1].split("=")[-1]) for x in st.splitlines()
                if x.startswith(SVC + " ")}
        assert held.get("pod-e", 0) > 0, st
        # the agent takes it: logged, and pod-e's slices routed to it, as many as the
        # controller assigned, the whole range still covered once
        assert wait_until(lambda: slices_via(cl, POD_E) == held["pod-e"]), (cl.routes(), st)
        assert f"{SVC} pod-e: added at run time ({POD_E}, weight 1, node node1): local, " \
            "routed here" in alog()
        assert "unknown endpoint" not in alog()
        # the handovers of the slices pod-e takes from the live pods came before the map,
        # and named a pod only the add line before them told the agent of
        assert re.search(r"handover pod-[ab] -> pod-e (started|: cannot attach)", alog()), alog()
        assert covers_exactly(cl.routes(), "2001:db8:5::/64")
        # a client whose rule address lies in pod-e's slices reaches pod-e
        nets_e = [ipaddress.ip_network(d) for d, g, _ in cl.routes() if g == POD_E]
        src = next(s for s in SOURCES
                   if any(ipaddress.ip_address(rule(s)) in n for n in nets_e))
        dst = rule(src)
        assert probe(cl, src, dst, {"pod-e"}, time.time(), timeout=10)[0] == "pod-e"
        # the agent checks it as a file's pod: healthy in its metrics
        assert wait_until(lambda: subprocess.run(
            ["ip", "netns", "exec", cl.n, "curl", "-s", "http://[::1]:9100/metrics"],
            capture_output=True, text=True).stdout.count(
            f'peak_agent_endpoint_healthy{{service="{SVC}",endpoint="pod-e"}} 1') == 1)

        # del: pod-e's slices go back to pod-a and pod-b, no route points at it, and the
        # same address is served by one of them
        r = ctlctl("del", SVC, "pod-e")
        assert r.returncode == 0 and "added 0, removed 1 in 1 services" in r.stdout, r
        assert wait_until(lambda: slices_via(cl, POD_E) == 0), cl.routes()
        assert f"{SVC} pod-e: removed (it was added at run time)" in alog()
        assert covers_exactly(cl.routes(), "2001:db8:5::/64")
        assert probe(cl, src, dst, {"pod-a", "pod-b"}, time.time(), timeout=10)[0] in \
            ("pod-a", "pod-b")
        assert agent.poll() is None and ctl.poll() is None
    finally:
        if pod_e:
            pod_e.terminate()
            pod_e.wait()
        if etcd:
            etcd.stop()
        subprocess.run(["ip", "netns", "del", e_ns], capture_output=True)
