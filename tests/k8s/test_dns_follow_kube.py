"""peak dns --store kubernetes: replicas that follow the ConfigMap the leading controller
--store kubernetes writes, through the fake API server (kubeapi.py: the documented wire
format of a ConfigMap collection's list and watch with fieldSelector=metadata.name=NAME;
no API server runs here, and this has not been run against a live cluster).

    controller-ctl --> c (--store kubernetes) --PUT--> kubeapi.Api ConfigMap demo/peak-controller
                            dns0, dns1 <--list, then watch (chunked)--'

A change made on the controller shows in both replicas (the time printed), carried by the
watch (one list per replica, no polling); a value that is not a service's lines, data
that is not an object and a line that is not an event are refused with a log line and
change nothing; a watch broken in the middle of a line resumes, an ERROR 410 relists."""
import subprocess
import time

import ctlpeer
import hapair
import kubeapi
import peaktest
from ctlpeer import SVC

NS, NAME = "demo", "peak-controller"
CM_PATH = f"/api/v1/namespaces/{NS}/configmaps"
# a deadline, not the figure (printed): that the change is carried by the watch, not by a
# poll, is asserted by the requests (one list per replica), which no loaded machine changes
BOUND_S = 10.0


def token(tmp, api):
    return hapair.token_file(tmp, api.token)


def replica(tmp, api, i):
    d = tmp / f"dns{i}"
    d.mkdir()
    return peaktest.Server(d, ctlpeer.config(), extra=(
        "--store", "kubernetes", "--kube-api", api.url, "--kube-token-file",
        token(str(tmp), api), "--kube-namespace", NS))


def status(d):
    r = subprocess.run([ctlpeer.PEAK, "dns-ctl", "--control", d.control, "status"],
                       capture_output=True, text=True, timeout=10)
    return r.stdout


def lists(api):
    return [q for w, p, q in api.requests if w == "get" and p == CM_PATH]


def watches(api):
    return [q for w, p, q in api.requests if w == "watch" and p == CM_PATH]


def put_cm(api, data):
    api.nsobj_set("configmaps", NS, NAME, {"data": data})


def test_two_replicas_follow_the_controllers_configmap(tmp_path, api):
    c = ctlpeer.Controller(str(tmp_path), ctlpeer.config(), (
        "--store", "kubernetes", "--kube-api", api.url, "--kube-token-file",
        token(str(tmp_path), api), "--kube-namespace", NS, "--lease-ttl", "2",
        "--control", str(tmp_path / "c.sock")))
    ds = []
    try:
        assert ctlpeer.wait_until(lambda: "leading (store kubernetes)" in c.log(), 10), c.log()
        a = ctlpeer.Agent(c.port)
        a.read_map()
        ds = [replica(tmp_path, api, i) for i in range(2)]
        for step, (cmd, want) in enumerate([
                (("health", SVC, "pod-1", "down"), f"{SVC} pod-1 down weight=1 slices=0"),
                (("weight", SVC, "pod-0", "3"), f"{SVC} pod-0 up weight=3"),
                (("health", SVC, "pod-1", "up"), f"{SVC} pod-1 up weight=1")]):
            r = subprocess.run([ctlpeer.PEAK, "controller-ctl", "--control",
                                str(tmp_path / "c.sock"), *cmd],
                               capture_output=True, text=True, timeout=10)
            assert r.returncode == 0, r
            t1 = time.monotonic()
            assert ctlpeer.wait_until(lambda: all(want in status(d) for d in ds), BOUND_S,
                                      step=0.01), [status(d) for d in ds] + [c.log()]
            print(f"change {step + 1} ({' '.join(cmd)}) in both replicas "
                  f"{(time.monotonic() - t1) * 1000:.0f} ms after controller-ctl returned")
            if step == 0:
                for d in ds:
                    assert ctlpeer.wait_until(lambda: "kubernetes: the stored state applied"
                                              in d.logtext(), 10), d.logtext()
        assert status(ds[0]) == status(ds[1])
        # carried by the watch, of that ConfigMap only: one list per replica
        assert len(lists(api)) == 2, lists(api)
        for q in lists(api) + watches(api):
            assert q.get("fieldSelector") == f"metadata.name={NAME}", q
        assert all(q.get("allowWatchBookmarks") == "true" for q in watches(api))
        a.close()
    finally:
        for d in ds:
            d.stop()
        assert c.stop() == 0


def test_bad_values_are_refused_and_the_watch_recovers(tmp_path, api):
    down = f"map {SVC}\nep pod-0 0/8\nend\nhealth {SVC} pod-1 down\n"
    up = f"map {SVC}\nep pod-0 0/8\nend\n"
    put_cm(api, {SVC: down})
    d = replica(tmp_path, api, 0)
    try:
        assert ctlpeer.wait_until(lambda: f"{SVC} pod-1 down" in status(d), 5), d.logtext()
        # another service's lines, then garbage: refused, pod-1 stays down
        for n, bad in enumerate(("map other.example.\nend\n", "\x01garbage\n")):
            put_cm(api, {SVC: bad})
            assert ctlpeer.wait_until(lambda: d.logtext().count(": refused: ") == n + 1, 5), \
                d.logtext()
            assert f"{SVC} pod-1 down" in status(d)
        put_cm(api, {SVC: 7})  # (only nsobj_set can store this: the API refuses it)
        assert ctlpeer.wait_until(lambda: "not a string" in d.logtext(), 5), d.logtext()
        put_cm(api, [SVC])
        assert ctlpeer.wait_until(lambda: "data is not an object" in d.logtext(), 5)
        api.raw("configmaps", b"{not an event")
        assert ctlpeer.wait_until(lambda: "not an event" in d.logtext(), 5), d.logtext()
        assert f"{SVC} pod-1 down" in status(d)
        # a watch that breaks in the middle of a line: resumed from the last version
        nw = len(watches(api))
        api.break_next("configmaps")
        put_cm(api, {SVC: up})
        assert ctlpeer.wait_until(lambda: f"{SVC} pod-1 up" in status(d), 10), d.logtext()
        assert len(watches(api)) > nw and len(lists(api)) == 1, api.requests
        # ERROR 410: listed again, and what changed meanwhile is applied
        api.expire()
        put_cm(api, {SVC: down})
        assert ctlpeer.wait_until(lambda: f"{SVC} pod-1 down" in status(d), 10), d.logtext()
        assert ctlpeer.wait_until(lambda: len(lists(api)) == 2, 5), api.requests
        assert d.query(SVC, "AAAA").answer
        assert d.proc.poll() is None
    finally:
        d.stop()


def test_bad_options_exit_2(tmp_path):
    cfg = tmp_path / "peak.yaml"
    cfg.write_text(ctlpeer.config())
    for args, why in [
            (("--store", "kubernetes", "--kube-api", "ftp://x"), "--kube-api"),
            (("--store", "kubernetes", "--kube-api", "http://[::1]:1", "--kube-namespace",
              "Bad_NS"), "--kube-namespace"),
            (("--store", "kubernetes", "--kube-api", "http://[::1]:1", "--kube-lease", "-x"),
             "--kube-lease"),
            (("--kube-api", "http://[::1]:1"), "go with --store kubernetes"),
            (("--store", "nosuch"), "not etcd or kubernetes")]:
        r = subprocess.run([ctlpeer.PEAK, "dns", "--config", str(cfg), "--listen",
                            "[::1]:0", *args], capture_output=True, text=True, timeout=10)
        assert r.returncode == 2 and why in r.stderr, (args, r)
