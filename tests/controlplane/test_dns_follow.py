"""peak dns replicas that follow etcd (--store etcd): two peak dns on loopback read the
state the leading controller stores under /peak/svc/ and follow it through /v3/watch, with
no --dns-control link to the controller. A change made on the controller shows in both
replicas' state and AAAA answers within a bound; values under the prefix that are not a
service's lines are refused with a log line and change nothing."""
import subprocess
import time

import ctlpeer
import peaktest
from ctlpeer import SVC

BOUND_S = 0.5  # the target is 100 ms: the measured figure is printed


def replicas(tmp_path, etcd, n=2):
    out = []
    for i in range(n):
        d = tmp_path / f"dns{i}"
        d.mkdir()
        out.append(peaktest.Server(d, ctlpeer.config(),
                                   extra=("--store", "etcd", "--etcd", etcd.url)))
    return out


def steered(dns, ep):
    """AAAA answers the replica steered to endpoint ep so far (its metrics)."""
    return dns.metrics().get(
        f'peak_dns_steered_answers_total{{service="{SVC}",endpoint="{ep}"}}', 0)


def test_two_replicas_follow_the_controller(tmp_path, etcd):
    c = ctlpeer.Controller(str(tmp_path), ctlpeer.config(),
                           ("--store", "etcd", "--etcd", etcd.url, "--control",
                            str(tmp_path / "c.sock")))
    ds = []
    try:
        assert ctlpeer.wait_until(lambda: "leading (store etcd)" in c.log(), 10), c.log()
        ds = replicas(tmp_path, etcd)
        a = ctlpeer.Agent(c.port)
        a.read_map()
        for d in ds:  # both steer to pod-1 before
            assert ctlpeer.wait_until(lambda: (d.query(SVC, "AAAA"), steered(d, "pod-1"))[1],
                                      5)
        for step, (cmd, want) in enumerate([
                (("health", SVC, "pod-1", "down"), f"{SVC} pod-1 down weight=1 slices=0"),
                (("weight", SVC, "pod-0", "3"), f"{SVC} pod-0 up weight=3"),
                (("health", SVC, "pod-1", "up"), f"{SVC} pod-1 up weight=1")]):
            t0 = time.monotonic()  # the command, its store in etcd, both replicas' watch
            r = subprocess.run([ctlpeer.PEAK, "controller-ctl", "--control",
                                str(tmp_path / "c.sock"), *cmd],
                               capture_output=True, text=True, timeout=10)
            assert r.returncode == 0, r
            t1 = time.monotonic()  # the controller stored the change before its reply
            assert ctlpeer.wait_until(lambda: all(want in d.status() for d in ds),
                                      BOUND_S, step=0.005), [d.status() for d in ds]
            t2 = time.monotonic()
            print(f"change {step + 1} ({' '.join(cmd)}) in both replicas "
                  f"{(t2 - t1) * 1000:.0f} ms after controller-ctl returned "
                  f"({(t2 - t0) * 1000:.0f} ms after it started)")
            if step == 0:  # neither replica steers to pod-1 any more
                for d in ds:
                    before = steered(d, "pod-1")
                    for _ in range(20):
                        assert d.query(SVC, "AAAA").answer
                    assert steered(d, "pod-1") == before
        assert ds[0].status() == ds[1].status()
        a.close()
    finally:
        for d in ds:
            d.stop()
        assert c.stop() == 0


def test_a_foreign_value_is_refused_and_the_rest_kept(tmp_path, etcd):
    etcd.put("/peak/svc/" + SVC, f"map {SVC}\nep pod-0 0/8\nend\nhealth {SVC} pod-1 down\n")
    (d,) = replicas(tmp_path, etcd, 1)
    try:
        assert ctlpeer.wait_until(lambda: f"{SVC} pod-1 down" in d.status(), 3), d.status()
        # garbage, then lines of another service: both refused, pod-1 stays down
        for bad in ("\x00\xffgarbage", f"map other.example.\nend\n"):
            etcd.put("/peak/svc/" + SVC, bad)
            assert ctlpeer.wait_until(
                lambda: d.logtext().count("refused") >= 1 + (bad[0] == "m"), 3), d.logtext()
            assert f"{SVC} pod-1 down" in d.status()
        assert d.query(SVC, "AAAA").answer
        assert d.proc.poll() is None
    finally:
        d.stop()
