"""peak controller --source kubernetes against a fake API server speaking the documented
wire format (kubeapi.py): Services with PEAK annotations and their EndpointSlices become the
controller's services, listed then watched (events split across chunks, bookmarks); an
endpoint added or removed moves only its share; a terminating one drains before it is gone;
410 Gone relists; a 401 re-reads the token; invalid annotations and malformed objects are
logged and skipped while the rest keeps working."""
import os
import re

import ctlpeer
import kubeapi
from kubeapi import endpoint, endpointslice, service

SVC = "api.svc.example."
ANN = {"peak.dev/prefixes": "2001:db8:5::/64", "peak.dev/slice": "72",
       "peak.dev/name": SVC, "peak.dev/port": "8080"}
BASE = """
zone:
  name: svc.example.
  ns:
    - {name: ns1.svc.example., address: "2001:db8:53::1"}
services: []
"""


def pods(n, **kw):
    return [endpoint(f"pod-{i}", f"2001:db8:100::{i + 1:x}", **kw) for i in range(n)]


def start(tmp, api, extra=()):
    tok = os.path.join(tmp, "token")
    with open(tok, "w") as f:
        f.write(api.token + "\n")
    mport = ctlpeer.peaktest.free_port()
    ctl = ctlpeer.Controller(
        str(tmp), BASE,
        ("--source", "kubernetes", "--kube-api", api.url, "--kube-token-file", tok,
         "--kube-secret-dir", os.path.join(tmp, "secrets"), "--metrics", f"[::1]:{mport}",
         "--state", "none", *extra))
    ctl.mport = mport
    ctl.token = tok
    return ctl


def wait_map(agent, pred, timeout=15):
    """Reads maps until pred(map of SVC) holds; returns that map."""
    m = agent.maps.get(SVC)
    if m is not None and pred(m):
        return m
    while True:
        svc, m = agent.read_map(timeout)
        if svc == SVC and pred(m):
            return m


def test_services_endpoints_drain_relist(tmp_path, api):
    api.put("services", service("api", annotations=ANN))
    api.put("services", service("bad", annotations={**ANN, "peak.dev/slice": "abc",
                                                     "peak.dev/name": "bad.svc.example."}))
    api.put("services", service("plain"))  # no PEAK annotations: not PEAK's
    api.put("endpointslices", endpointslice("api-x1", "api", pods(3)))
    api.put("endpointslices", endpointslice("api-v4", "api", [endpoint("v4", "10.0.0.1")],
                                            family="IPv4"))
    ctl = start(tmp_path, api)
    try:
        a = ctlpeer.Agent(ctl.port)
        m0 = wait_map(a, lambda m: len(m) == 3)
        n0 = ctlpeer.slices(m0)
        assert sum(n0.values()) == 256 and set(n0) == {"pod-0", "pod-1", "pod-2"}
        log = ctl.log()
        assert len(re.findall(r"service demo/bad left out: .*slice", log)) == 1, log
        assert "demo/plain" not in log
        # the list was paged (2 a page), then watched from its resourceVersion
        lists = [q for k, p, q in api.requests if k == "get" and p.endswith("/services")]
        assert any("continue" in q for q in lists), api.requests
        assert ctlpeer.wait_until(lambda: len([1 for r in api.requests if r[0] == "watch"]) >= 2)
        w = [q for k, p, q in api.requests if k == "watch"]
        assert all(q["allowWatchBookmarks"] == "true" and q["resourceVersion"]
                         for q in w)

        # an endpoint added takes only its share: the others lose, never swap; changes of
        # Services that are not PEAK's (and of their slices) just before apply nothing
        assert ctlpeer.wait_until(lambda: "services applied" in ctl.log())  # the first
        applied = ctl.log().count("services applied")
        api.put("services", service("plain", annotations={"other": "1"}))
        api.put("endpointslices", endpointslice("plain-x", "plain", pods(2)))
        api.put("endpointslices", endpointslice("api-x1", "api", pods(4)))
        m1 = wait_map(a, lambda m: "pod-3" in m)
        # (the log line follows the maps)
        assert ctlpeer.wait_until(lambda: ctl.log().count("services applied") > applied)
        assert ctl.log().count("services applied") == applied + 1, ctl.log()
        n1 = ctlpeer.slices(m1)
        assert sum(n1.values()) == 256 and n1["pod-3"] == 64
        for ep in ("pod-0", "pod-1", "pod-2"):
            assert set(m1[ep]) <= set(b for b in blocks(m0[ep])), ep

        # terminating: pod-1 drains (its slices move, only its) before it is gone
        eps = pods(4)
        eps[1] = endpoint("pod-1", "2001:db8:100::2", ready=False, serving=True,
                          terminating=True)
        api.put("endpointslices", endpointslice("api-x1", "api", eps))
        m2 = wait_map(a, lambda m: "pod-1" not in m)
        assert sum(ctlpeer.slices(m2).values()) == 256
        for ep in ("pod-0", "pod-2", "pod-3"):
            assert covers(m2[ep], m1[ep]), ep
        assert ctlpeer.wait_until(
            lambda: ctlpeer.metric(ctl.mport, "peak_controller_endpoint_healthy",
                                   "pod-1") == "0")
        assert "pod-1 terminating: draining" in ctl.log()
        # gone: nothing moves any more, it leaves the metrics
        nmaps = a.nmaps
        api.put("endpointslices", endpointslice("api-x1", "api", pods(4)[:1] + pods(4)[2:]))
        assert ctlpeer.wait_until(
            lambda: ctlpeer.metric(ctl.mport, "peak_controller_endpoint_slices",
                                   "pod-1") is None)
        if a.nmaps > nmaps:
            assert a.maps[SVC] == m2

        # a malformed object on the watch is refused, naming it; the stream goes on
        api.raw("endpointslices", b'{"type":"ADDED","object":{"metadata":'
                                  b'{"name":"NOT A NAME","namespace":"demo"}}}')
        api.raw("endpointslices", b'{"type":"ADDED",')
        assert ctlpeer.wait_until(lambda: "'NOT A NAME' refused" in ctl.log()), ctl.log()

        # the stream breaks in the middle of a line: resumed from the last version seen,
        # the event comes whole
        api.break_next("endpointslices")
        api.put("endpointslices", endpointslice("api-x1", "api", pods(5)[:1] + pods(5)[2:]))
        m25 = wait_map(a, lambda m: "pod-4" in m)
        assert sum(ctlpeer.slices(m25).values()) == 256
        assert "endpointslices watch broke" in ctl.log()

        # 410 Gone: the client lists again, and later changes still arrive
        api.expire()
        assert ctlpeer.wait_until(lambda: ctl.log().count("listed 4 services") >= 2 or
                                  ctl.log().count("listed 3 services") >= 2), ctl.log()
        assert "ERROR 410" in ctl.log()
        eps = pods(6)
        del eps[1]
        api.put("endpointslices", endpointslice("api-x1", "api", eps))
        m3 = wait_map(a, lambda m: "pod-5" in m)
        assert sum(ctlpeer.slices(m3).values()) == 256
        assert ctl.proc.poll() is None
    finally:
        print(ctl.log()[-6000:])  # shown when the test fails
        assert ctl.stop() == 0


def blocks(bl):
    return bl


def covers(big, small):
    """Whether the slices of blocks small are all inside those of blocks big."""
    def s(bl):
        return {x for st, l2 in bl for x in range(st, st + (1 << l2))}
    return s(small) <= s(big)


def test_token_rotation_and_401(tmp_path, api):
    api.put("services", service("api", annotations=ANN))
    api.put("endpointslices", endpointslice("api-x1", "api", pods(2)))
    ctl = start(tmp_path, api)
    try:
        a = ctlpeer.Agent(ctl.port)
        wait_map(a, lambda m: len(m) == 2)
        # (a watch that starts after the expire below, from the newest version, would not
        # end: the put after it would come through with the old token)
        assert ctlpeer.wait_until(lambda: api.watching("services", "endpointslices"))
        # the token expires: the API refuses it (401), the kubelet writes the new one
        api.token = "t1"
        with open(ctl.token, "w") as f:
            f.write("t1\n")
        api.expire()  # the watches end: what follows needs the new token
        api.put("endpointslices", endpointslice("api-x1", "api", pods(3)))
        wait_map(a, lambda m: len(m) == 3)
        assert "token %s read again" % ctl.token in ctl.log()
        assert ctlpeer.wait_until(lambda: api.watching("services", "endpointslices"))
        # a new token behind the same size and time stamp: only the 401 makes the client
        # read the file again (it would otherwise keep the old token)
        st = os.stat(ctl.token)
        with open(ctl.token, "w") as f:
            f.write("t2\n")
        os.utime(ctl.token, ns=(st.st_atime_ns, st.st_mtime_ns))
        api.token = "t2"
        api.expire()
        api.put("endpointslices", endpointslice("api-x1", "api", pods(4)))
        wait_map(a, lambda m: len(m) == 4, timeout=10)
        assert "401: reading the token again" in ctl.log()
    finally:
        print(ctl.log()[-6000:])  # shown when the test fails
        assert ctl.stop() == 0


def test_key_secret_and_bad_secret(tmp_path, api):
    hop = "00112233445566778899aabbccddeeff"
    key = "0f0e0d0c0b0a09080706050403020100"
    api.secret("demo", "api-keys", {"hop-secret": hop + "\n", "key": key})
    ann = {**ANN, "peak.dev/rule": "select=hop,host=src", "peak.dev/key-secret": "api-keys"}
    api.put("services", service("api", annotations=ann))
    api.put("services", service("nokey", annotations={
        **ann, "peak.dev/name": "nokey.svc.example.", "peak.dev/key-secret": "missing"}))
    api.put("services", service("inann", annotations={
        **ANN, "peak.dev/name": "k.svc.example.", "peak.dev/rule": "select=key,key=0011"}))
    api.put("endpointslices", endpointslice("api-x1", "api", pods(2)))
    ctl = start(tmp_path, api)
    try:
        a = ctlpeer.Agent(ctl.port)
        wait_map(a, lambda m: len(m) == 2)
        path = os.path.join(tmp_path, "secrets", "demo.api-keys.hop")
        assert ctlpeer.wait_until(lambda: os.path.exists(path))
        assert open(path).read().strip() == hop
        assert os.stat(path).st_mode & 0o777 == 0o600
        log = ctl.log()
        assert "service demo/nokey left out: its Secret cannot be read" in log
        assert "service demo/inann left out: peak.dev/rule" in log
        assert hop not in log and "0011" not in log and key not in log
        # another change applies the view again: the Secret read is reused (30 s)
        api.put("endpointslices", endpointslice("api-x1", "api", pods(3)))
        wait_map(a, lambda m: len(m) == 3)
        secrets = [p for k, p, q in api.requests if "/secrets/" in p]
        assert secrets.count("/api/v1/namespaces/demo/secrets/api-keys") == 1, secrets
    finally:
        print(ctl.log()[-6000:])  # shown when the test fails
        assert ctl.stop() == 0


def test_bad_options(tmp_path):
    cfg = os.path.join(tmp_path, "peak.yaml")
    with open(cfg, "w") as f:
        f.write(BASE)
    import subprocess
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    r = subprocess.run([ctlpeer.PEAK, "controller", "--config", cfg, "--source",
                        "kubernetes", "--check"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "KUBERNETES_SERVICE_HOST" in r.stderr
    r = subprocess.run([ctlpeer.PEAK, "controller", "--config", cfg, "--source", "k8s",
                        "--check"], capture_output=True, text=True)
    assert r.returncode == 2 and "not file or kubernetes" in r.stderr
    r = subprocess.run([ctlpeer.PEAK, "controller", "--config", cfg, "--source",
                        "kubernetes", "--kube-api", "ftp://x", "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--kube-api" in r.stderr
    r = subprocess.run([ctlpeer.PEAK, "controller", "--config", cfg, "--source",
                        "kubernetes", "--kube-api", "http://[::1]:1", "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_every_pod_terminating_keeps_the_last(tmp_path, api):
    """All of a Service's pods terminating: all but the last drain; the last keeps every
    slice (nothing could take them) and no refusal is logged at every change."""
    api.put("services", service("api", annotations=ANN))
    api.put("endpointslices", endpointslice("api-x1", "api", pods(2)))
    ctl = start(tmp_path, api)
    try:
        a = ctlpeer.Agent(ctl.port)
        wait_map(a, lambda m: len(m) == 2)
        api.put("endpointslices", endpointslice("api-x1", "api", pods(2, ready=False,
                                                                      serving=True,
                                                                      terminating=True)))
        m = wait_map(a, lambda m: len(m) == 1)
        assert sum(ctlpeer.slices(m).values()) == 256
        for i in range(3):  # more changes of the view
            api.put("services", service("api", annotations={**ANN, "x": str(i)}))
        assert ctlpeer.wait_until(lambda: ctl.log().count("services applied") >= 3)
        assert "refused" not in ctl.log(), ctl.log()
        assert len(a.maps[SVC]) == 1
    finally:
        print(ctl.log()[-6000:])  # shown when the test fails
        assert ctl.stop() == 0
