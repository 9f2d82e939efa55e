"""peak agent --source kubernetes and peak dns --source kubernetes: both read their services
(the annotations of Services, keys from their Secret) and endpoints (EndpointSlices) from the
API through the controller's own client (src/k8s/), with no service in the file, against the
fake API server speaking the documented wire format (kubeapi.py; no API server runs here).

  [k8s-src-PID] lo: the fake API (::1), the agent (node node1)
                d0 fd00:1::1/64 -- veth -- d1: the pods' addresses are on-link gateways
                behind d0 (nothing answers; health checks are far apart: no changes)

The agent routes its node's endpoints (nodeName node1: not node2's) from the API; a change of
the Service's annotations (its prefix) moves its routes; a Service with invalid annotations
and a malformed object on the watch are refused with a log line while a later change still
applies; after a 410 Gone it lists again and changes still arrive. peak dns answers APL and
AAAA from the API's services (one with its keys from a Secret), follows an annotation change,
leaves out an invalid Service and serves a terminating pod no more. On the code before this, both commands refuse --source (a
usage error): every test fails at its start."""
import ipaddress
import json
import os
import subprocess
import sys

import pytest

import kubeapi
import peaktest
from kubeapi import ANN, BASE, SVC, endpoint, endpointslice, pods, service

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import in_netns, ip, node_ns, wait_until  # noqa: E402

PEAK = peaktest.PEAK


def token(tmp, api):
    p = os.path.join(tmp, "token")
    with open(p, "w") as f:
        f.write(api.token + "\n")
    return p


def kube_opts(tmp, api):
    return ("--source", "kubernetes", "--kube-api", api.url, "--kube-token-file",
            token(str(tmp), api), "--kube-secret-dir", os.path.join(str(tmp), "secrets"))


@pytest.fixture
def ns():
    with node_ns(f"k8s-src-{os.getpid()}") as name:
        yield name


def routes(name):
    """PEAK's routes in the namespace: {gateway: [destinations]}."""
    out = ip("-j", "-n", name, "-6", "route", "show", "table", "main", "proto", "0xa5").stdout
    by = {}
    for r in json.loads(out):
        by.setdefault(r.get("gateway"), []).append(ipaddress.ip_network(r["dst"]))
    return by


def routed(name, prefix, gws):
    """Whether the routes go exactly to gws, each inside prefix, and none elsewhere."""
    r = routes(name)
    p = ipaddress.ip_network(prefix)
    return set(r) == set(gws) and all(d.subnet_of(p) for ds in r.values() for d in ds)


def test_agent_routes_its_nodes_endpoints_from_the_api(tmp_path, ns):
    api = in_netns(ns, kubeapi.Api)  # listening on the namespace's loopback
    agent = None
    try:
        api.put("services", service("api", annotations=ANN))
        api.put("endpointslices", endpointslice(
            "api-x1", "api", pods((0, "node1"), (1, "node1"), (2, "node2"))))
        cfg = tmp_path / "peak.yaml"
        cfg.write_text(BASE)
        log = tmp_path / "agent.log"
        agent = subprocess.Popen(
            ["ip", "netns", "exec", ns, PEAK, "agent", "--config", str(cfg), "--node",
             "node1", "--interval", "100", "--hc-interval", "60000", "--hc-timeout", "60000",
             *kube_opts(tmp_path, api)],
            stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        text = log.read_text
        # node1's two pods, not node2's, with the Service's prefix; no YAML services
        assert wait_until(lambda: routed(ns, "fd00:a::/64", {"fd00:1::a0", "fd00:1::a1"}),
                          timeout=20), (routes(ns), text())
        assert "agent: kubernetes: listed 1 services" in text(), text()

        # the Service's annotation changes: its routes move to the new prefix
        api.put("services", service("api", annotations={**ANN,
                                                        "peak.dev/prefixes": "fd00:c::/64"}))
        assert wait_until(lambda: routed(ns, "fd00:c::/64", {"fd00:1::a0", "fd00:1::a1"}),
                          timeout=20), (routes(ns), text())

        # invalid annotations and a malformed object: logged, the rest keeps working
        api.put("services", service("bad", annotations={
            **ANN, "peak.dev/slice": "abc", "peak.dev/name": "bad.svc.example."}))
        api.raw("endpointslices", b'{"type":"ADDED","object":{"metadata":'
                                  b'{"name":"NOT A NAME","namespace":"demo"}}}')
        api.raw("endpointslices", b'{"type":"ADDED",')
        assert wait_until(lambda: "agent: kubernetes: service demo/bad left out" in text()
                          and "'NOT A NAME' refused" in text()
                          and "not an event" in text(), timeout=20), text()
        api.put("endpointslices", endpointslice(
            "api-x1", "api", pods((0, "node1"), (1, "node1"), (2, "node2"), (3, "node1"))))
        assert wait_until(lambda: routed(ns, "fd00:c::/64",
                                         {"fd00:1::a0", "fd00:1::a1", "fd00:1::a3"}),
                          timeout=20), (routes(ns), text())
        assert agent.poll() is None

        # 410 Gone: listed again, and later changes still arrive
        lists = text().count("listed 2 services")
        api.expire()
        assert wait_until(lambda: "ERROR 410" in text() and
                          text().count("listed 2 services") > lists, timeout=20), text()
        api.put("endpointslices", endpointslice(
            "api-x1", "api", pods((1, "node1"), (2, "node2"), (3, "node1"))))
        assert wait_until(lambda: routed(ns, "fd00:c::/64", {"fd00:1::a1", "fd00:1::a3"}),
                          timeout=20), (routes(ns), text())
        # the Service removed: its routes go (the file has none either)
        api.delete("services", "demo", "api")
        assert wait_until(lambda: routes(ns) == {}, timeout=20), (routes(ns), text())
        assert agent.poll() is None
    finally:
        if agent:
            peaktest.stop_process(agent)
        api.close()


def test_agent_takes_the_controllers_maps_across_cluster_changes(tmp_path, ns):
    """Both the controller and the agent --source kubernetes: the link still carries the
    maps. A weight the operator sets on the controller (pod-0 to 0) moves pod-0's routes away
    (the agent's own plan would keep them), and stays so after a change of the cluster's view
    that both apply (pod-3 added on node1): the agent's routes are the controller's map."""
    api = in_netns(ns, kubeapi.Api)
    procs = []
    try:
        api.put("services", service("api", annotations=ANN))
        api.put("endpointslices", endpointslice(
            "api-x1", "api", pods((0, "node1"), (1, "node1"), (2, "node2"))))
        cfg = tmp_path / "peak.yaml"
        cfg.write_text(BASE)
        port, ctl = peaktest.free_port(), str(tmp_path / "ctl.sock")
        clog, alog = tmp_path / "ctl.log", tmp_path / "agent.log"
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", ns, PEAK, "controller", "--config", str(cfg), "--listen",
             f"[::1]:{port}", "--control", ctl, "--state", "none", "--no-handover",
             *kube_opts(tmp_path, api)], stdout=open(clog, "w"), stderr=subprocess.STDOUT))
        assert wait_until(lambda: "agents on" in clog.read_text(), timeout=20), clog.read_text()
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", ns, PEAK, "agent", "--config", str(cfg), "--node",
             "node1", "--controller", f"[::1]:{port}", "--interval", "100", "--hc-interval",
             "60000", "--hc-timeout", "60000", "--no-handover", *kube_opts(tmp_path, api)],
            stdout=subprocess.DEVNULL, stderr=open(alog, "w")))
        logs = lambda: clog.read_text() + alog.read_text()  # noqa: E731
        assert wait_until(lambda: routed(ns, "fd00:a::/64", {"fd00:1::a0", "fd00:1::a1"}),
                          timeout=20), (routes(ns), logs())
        r = subprocess.run([PEAK, "controller-ctl", "--control", ctl, "weight", SVC, "pod-0",
                            "0"], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stdout + r.stderr
        assert wait_until(lambda: routed(ns, "fd00:a::/64", {"fd00:1::a1"}), timeout=20), \
            (routes(ns), logs())
        applied = alog.read_text().count("agent: kubernetes: 1 services applied")
        api.put("endpointslices", endpointslice(
            "api-x1", "api", pods((0, "node1"), (1, "node1"), (2, "node2"), (3, "node1"))))
        assert wait_until(lambda: alog.read_text().count(
            "agent: kubernetes: 1 services applied") > applied and routed(
                ns, "fd00:a::/64", {"fd00:1::a1", "fd00:1::a3"}), timeout=20), \
            (routes(ns), logs())
        assert all(p.poll() is None for p in procs), logs()
    finally:
        for p in reversed(procs):
            peaktest.stop_process(p)
        api.close()


def aaaa(d, name=SVC):
    r = d.query(name, "AAAA")
    return {str(a) for rr in r.answer for a in rr}


def test_dns_answers_from_the_apis_services(tmp_path, api):
    api.put("services", service("api", annotations={**ANN, "peak.dev/answers": "2"}))
    api.put("services", service("bad", annotations={
        **ANN, "peak.dev/rule": "key=00", "peak.dev/name": "bad.svc.example."}))
    api.put("endpointslices", endpointslice(
        "api-x1", "api", pods((0, "node1"), (1, "node2"))))
    # keys from a Secret: the hop secret written 0600 for peak dns too, never logged
    hop, key = "00112233445566778899aabbccddeeff", "0f0e0d0c0b0a09080706050403020100"
    api.secret("demo", "keyed-keys", {"hop-secret": hop + "\n", "key": key})
    api.put("services", service("keyed", annotations={
        **ANN, "peak.dev/name": "keyed.svc.example.", "peak.dev/prefixes": "fd00:d::/64",
        "peak.dev/rule": "select=hop,host=src", "peak.dev/key-secret": "keyed-keys"}))
    api.put("endpointslices", endpointslice("keyed-x1", "keyed", pods((5, "node1"))))
    d = peaktest.Server(tmp_path, BASE, extra=kube_opts(tmp_path, api))
    try:
        # the API's service answers (the file has none), inside its prefix
        got = aaaa(d)
        assert got and all(ipaddress.ip_address(a) in ipaddress.ip_network("fd00:a::/64")
                           for a in got), got
        apl = d.query(SVC, "APL").to_text()
        assert "fd00:a:0:0:0:0:0:0/64" in apl or "fd00:a::/64" in apl, apl
        assert "dns: kubernetes: service demo/bad left out" in d.logtext(), d.logtext()
        assert "dns: kubernetes: listed 3 services" in d.logtext(), d.logtext()
        got = aaaa(d, "keyed.svc.example.")
        assert got and all(ipaddress.ip_address(a) in ipaddress.ip_network("fd00:d::/64")
                           for a in got), got
        path = os.path.join(str(tmp_path), "secrets", "demo.keyed-keys.hop")
        assert open(path).read().strip() == hop
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert hop not in d.logtext() and key not in d.logtext()

        # an annotation change is followed through the watch
        api.put("services", service("api", annotations={
            **ANN, "peak.dev/answers": "2", "peak.dev/prefixes": "fd00:c::/64"}))
        assert wait_until(lambda: aaaa(d) and all(
            ipaddress.ip_address(a) in ipaddress.ip_network("fd00:c::/64")
            for a in aaaa(d)), timeout=20), d.logtext()

        # a terminating pod drains: marked down, it gets no more answers' share
        eps = pods((0, "node1"), (1, "node2"))
        eps[1] = endpoint("pod-1", "fd00:1::a1", node="node2", ready=False, serving=True,
                          terminating=True)
        api.put("endpointslices", endpointslice("api-x1", "api", eps))
        assert wait_until(lambda: f"{SVC} pod-1 down weight=1 slices=0" in d.status(),
                          timeout=20), d.status()
        assert f"{SVC} pod-0 up" in d.status(), d.status()

        # 410 Gone: listed again; a later change still arrives
        api.expire()
        assert wait_until(lambda: "ERROR 410" in d.logtext() and
                          d.logtext().count("listed 3 services") >= 2, timeout=20), d.logtext()
        api.delete("services", "demo", "api")
        assert wait_until(lambda: d.query(SVC, "AAAA").rcode() != 0, timeout=20), \
            d.logtext()
        assert d.proc.poll() is None
    finally:
        d.stop()

