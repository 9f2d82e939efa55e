"""peak controller --store kubernetes against the fake API server (kubeapi.py: Leases and
ConfigMaps with resourceVersion conflicts, the documented wire format; no API server runs
here): two controllers on the same --listen elect one leader through the Lease
coordination.k8s.io/v1 demo/peak-controller, the leader keeps the live assignment in the
ConfigMap demo/peak-controller; killed, the standby takes over within the lease time and
adopts the assignment (the agent gets the same map); a Lease written by another, a
ConfigMap written by an operator or in a later term (409 Conflict) are handled; corrupt
values are refused with a log line and the rest adopted.

    fake agent --> [::1]:PORT <-- whichever controller leads (c1, c2)
                      c1, c2 --GET/PUT/POST--> kubeapi.Api (Lease, ConfigMap)"""
import os
import signal
import subprocess
import time

import ctlpeer
import hapair
import kubeapi
import peaktest
from ctlpeer import SVC, agent_down_pod1, connect_map

TTL_S = 2
NS, NAME = "demo", "peak-controller"


def controller(tmp, api, port, name, cfg=None, extra=(), wait=True):
    tok = hapair.token_file(tmp, api.token)
    return ctlpeer.Controller(
        str(tmp), cfg,
        ("--store", "kubernetes", "--kube-api", api.url, "--kube-token-file", tok,
         "--kube-namespace", NS, "--lease-ttl", str(TTL_S), "--listen", f"[::1]:{port}",
         "--control", os.path.join(tmp, f"{name}.sock"), *extra), name=name, wait=wait)


def pair(tmp, api):
    return hapair.pair(tmp, "kubernetes", (), lambda name, cfg, port:
                       controller(tmp, api, port, name, cfg))


def lease(api):
    return api.nsobj("leases", NS, NAME)


def stored(api):
    cm = api.nsobj("configmaps", NS, NAME)
    return (cm or {}).get("data", {}).get(SVC, "")


def test_standby_takes_over_within_the_lease_and_adopts(tmp_path, api):
    port, c1, c2 = pair(tmp_path, api)
    try:
        sp = lease(api)["spec"]
        assert f"/{c1.proc.pid} " in sp["holderIdentity"], sp
        assert sp["leaseDurationSeconds"] == TTL_S and sp["renewTime"].endswith("Z"), sp
        live, a = agent_down_pod1(port)
        assert ctlpeer.wait_until(lambda: "pod-1 down" in stored(api), 5), stored(api)
        cm = api.nsobj("configmaps", NS, NAME)
        assert cm["metadata"]["annotations"]["peak.dev/leader"] == sp["holderIdentity"]
        # the leader renews: the lease's resourceVersion moves on
        rv = lease(api)["metadata"]["resourceVersion"]
        assert ctlpeer.wait_until(lambda: lease(api)["metadata"]["resourceVersion"] != rv, 10)
        assert ctlpeer.wait_until(lambda: "the stored state changed: adopted" in c2.log(), 5)
        assert "leading" not in c2.log()
        c1.proc.send_signal(signal.SIGKILL)  # a crash: the lease is not released
        t0 = time.monotonic()
        c1.proc.wait(5)
        assert a.closed_by_peer(timeout=10)
        # a deadline for a hung standby only; how long it took is printed below, not bounded
        # (an ASan build on a loaded machine is slower), and the mechanism is asserted: the
        # lease judged expired (not renewed for its TTL), the stored state adopted
        m, a2 = connect_map(port, t0 + TTL_S + 30)
        took = time.monotonic() - t0
        a2.send(f"health {SVC} pod-1 down\n")
        assert m == live, "the new leader moved slices"
        assert "leading (store kubernetes): the stored state adopted" in c2.log()
        assert f"not renewed for {TTL_S * 1000} ms: taking over" in c2.log(), c2.log()
        sp = lease(api)["spec"]
        assert f"/{c2.proc.pid} " in sp["holderIdentity"] and sp["leaseTransitions"] == 1, sp
        print(f"takeover after a crash: {took:.2f} s (lease {TTL_S} s)")
        a2.close()
        a.close()
    finally:
        c1.stop()
        assert c2.stop() == 0


def test_stopped_leader_releases_the_lease(tmp_path, api):
    """SIGTERM: the leader empties holderIdentity, so the standby leads at once: it takes
    the released Lease, not one it judged expired (its log says which; the seconds are
    printed, not bounded)."""
    port, c1, c2 = pair(tmp_path, api)
    try:
        live, a = agent_down_pod1(port)
        assert ctlpeer.wait_until(lambda: "the stored state changed: adopted" in c2.log(), 5)
        t0 = time.monotonic()
        assert c1.stop() == 0
        assert "Lease demo/peak-controller released" in c1.log()
        m, a2 = connect_map(port, t0 + TTL_S + 30)
        took = time.monotonic() - t0
        print(f"takeover after a release: {took:.2f} s (lease {TTL_S} s)")
        assert m == live
        assert "Lease demo/peak-controller taken over" in c2.log(), c2.log()
        assert "taking over" not in c2.log(), c2.log()  # released, not expired
        a2.close()
        a.close()
    finally:
        c1.stop()
        assert c2.stop() == 0


def test_conflicts(tmp_path, api):
    """409s: a Lease taken by another writer (the leader steps down; nobody renews it, so a
    controller takes it over after the lease time); a ConfigMap an operator wrote (the
    leader writes the live state over it), even its term annotation while the Lease is the
    leader's; one written in a later term by the Lease's new holder (the leader steps down
    and writes nothing)."""
    port = peaktest.free_port()
    c1 = controller(tmp_path, api, port, "c1", ctlpeer.config())
    try:
        assert ctlpeer.wait_until(lambda: "leading (store kubernetes)" in c1.log(), 10)
        live, a = agent_down_pod1(port)
        assert ctlpeer.wait_until(lambda: "pod-1 down" in stored(api), 5)
        # an operator's edit of the ConfigMap: the next save writes the live state over it
        cm = api.nsobj("configmaps", NS, NAME)
        cm["data"][SVC] = cm["data"][SVC].replace(" down", " up")
        api.nsobj_set("configmaps", NS, NAME, cm)
        a.send(f"health {SVC} pod-2 down\n")
        _, live = a.read_map()
        assert ctlpeer.wait_until(
            lambda: "pod-2 down" in stored(api) and "pod-1 down" in stored(api), 5), stored(api)
        assert "was written by another writer (409 Conflict)" in c1.log()
        # the Lease taken by another writer: the leader's renewal gets 409 and it steps down
        ls = lease(api)
        ls["spec"].update(holderIdentity="intruder", leaseTransitions=7)
        api.nsobj_set("leases", NS, NAME, ls)
        t0 = time.monotonic()
        assert a.closed_by_peer(timeout=10)
        assert ctlpeer.wait_until(lambda: "the lead is lost" in c1.log(), 10), c1.log()
        # 'intruder' never renews: after the lease time c1 takes over, adopting the map (not
        # before it: a lower bound, which a loaded machine cannot break)
        m, a2 = connect_map(port, t0 + 2 * TTL_S + 30)
        assert time.monotonic() - t0 >= TTL_S - 0.3
        assert "Lease demo/peak-controller of 'intruder' not renewed" in c1.log(), c1.log()
        a2.send(f"health {SVC} pod-1 down\nhealth {SVC} pod-2 down\n")
        assert m == live
        assert lease(api)["spec"]["leaseTransitions"] == 8
        # an operator's edit of the term annotation, while the Lease still names c1 in its
        # term: no leader wrote it (terms come from the Lease), so c1 writes over it and
        # keeps the lead
        cm = api.nsobj("configmaps", NS, NAME)
        cm["metadata"]["annotations"]["peak.dev/term"] = "99"
        api.nsobj_set("configmaps", NS, NAME, cm)
        a2.send(f"health {SVC} pod-1 up\n")
        assert ctlpeer.wait_until(lambda: "no leader wrote it" in c1.log(), 10), c1.log()
        assert ctlpeer.wait_until(lambda: api.nsobj("configmaps", NS, NAME)["metadata"][
            "annotations"]["peak.dev/term"] == "9", 10)
        log = c1.log()
        assert "written in a later term" not in log and log.count("lead is lost") == 1, log
        # a later term for real: another controller took the Lease (leaseTransitions 20)
        # and wrote the ConfigMap in its term 21: c1 steps down and writes nothing
        ls = lease(api)
        ls["spec"].update(holderIdentity="other", leaseTransitions=20)
        api.nsobj_set("leases", NS, NAME, ls)
        cm = api.nsobj("configmaps", NS, NAME)
        cm["metadata"]["annotations"].update({"peak.dev/term": "21",
                                              "peak.dev/leader": "other"})
        before = api.nsobj_set("configmaps", NS, NAME, cm)
        a2.send(f"health {SVC} pod-1 down\n")
        assert a2.closed_by_peer(timeout=10)
        tail = c1.log().split("no leader wrote it")[-1]
        assert "written in a later term" in tail or "the lead is lost" in tail, tail
        assert api.nsobj("configmaps", NS, NAME) == before
        a2.close()
        a.close()
    finally:
        assert c1.stop() == 0


def test_corrupt_values_refused(tmp_path, api):
    """A ConfigMap holding a corrupt record, a foreign service's lines and a non-string:
    each refused with a log line; the good record adopted; the next save replaces them."""
    good = ("map api.svc.example.\nep pod-0 0/7\nep pod-2 128/7\nend\n"
            f"weight {SVC} pod-0 1\nweight {SVC} pod-1 1\nweight {SVC} pod-2 1\n"
            f"health {SVC} pod-1 down\n")
    api.nsobj_set("configmaps", NS, NAME, {"data": {
        SVC: good, "other.svc.example.": "map api.svc.example.\nend\n",
        "junk": "\x01\x02 not lines", "n": 5}})
    port = peaktest.free_port()
    c1 = controller(tmp_path, api, port, "c1", ctlpeer.config())
    try:
        assert ctlpeer.wait_until(lambda: "leading (store kubernetes)" in c1.log(), 10)
        log = c1.log()
        for key in ("other.svc.example.", "junk", "n"):
            assert f"ConfigMap demo/peak-controller: {key}: refused" in log, log
        a = ctlpeer.Agent(port)
        _, m = a.read_map()
        assert m == {"pod-0": [(0, 7)], "pod-2": [(128, 7)]}, m
        assert ctlpeer.wait_until(
            lambda: set(api.nsobj("configmaps", NS, NAME)["data"]) == {SVC}, 5)
        a.close()
    finally:
        assert c1.stop() == 0


def check(cfg, *extra):
    return subprocess.run([ctlpeer.PEAK, "controller", "--config", str(cfg), "--store",
                           "kubernetes", "--kube-api", "http://[::1]:1", *extra, "--check"],
                          capture_output=True, text=True, timeout=10)


def test_bad_options(tmp_path):
    cfg = tmp_path / "peak.yaml"
    cfg.write_text(ctlpeer.config())
    for extra, why in ((("--kube-lease", "Bad_Name"), "--kube-lease"),
                       (("--kube-namespace", "a/b"), "--kube-namespace"),
                       (("--state", "x"), "--state is not for --store kubernetes"),
                       (("--etcd", "http://[::1]:1"), "--etcd is not for")):
        p = check(cfg, *extra)
        assert p.returncode == 2 and why in p.stderr, (extra, p.stderr)
    p = check(cfg)
    assert p.returncode == 0, p.stderr


def test_two_start_together_one_leads(tmp_path, api):
    """Both find no Lease and POST one: the API creates one, the other gets 409
    AlreadyExists and stays a standby; exactly one leads, and the Lease names it."""
    port = peaktest.free_port()
    cfg = tmp_path / "peak.yaml"
    cfg.write_text(ctlpeer.config())
    cs = [controller(tmp_path, api, port, f"r{i}", wait=False) for i in range(2)]
    try:
        # both past their first keepalive (the start line comes after it)
        assert ctlpeer.wait_until(lambda: all("agents on" in c.log() for c in cs), 10)
        leaders = [c for c in cs if "leading (store kubernetes)" in c.log()]
        assert len(leaders) == 1, [c.log() for c in cs]
        assert f"/{leaders[0].proc.pid} " in lease(api)["spec"]["holderIdentity"]
        posts = [r for r in api.requests if r[0] == "post" and r[1].endswith("/leases")]
        assert 1 <= len(posts) <= 2, posts
    finally:
        for c in cs:
            assert c.stop() == 0
