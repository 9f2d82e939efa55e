"""Endpoints added and removed at run time (peak controller-ctl add, del, batch): the pods of
a scale-up go through the controller's control socket, are stored in etcd with their
addresses ("add" lines of the service's record), and two `peak dns --store etcd` replicas
take them from the store's watch with no reload of their file. A bad batch is refused with
its line number and changes nothing; a reload and a restart of the controller keep the
endpoints added at run time, with the same slices; del removes them everywhere. On the code
before this, controller-ctl has no add, del or batch and the first assertion fails."""
import re
import signal
import subprocess

import ctlpeer
import peaktest
from ctlpeer import SVC

KEY = "/peak/svc/" + SVC


def ctl(tmp_path, *args, stdin=None):
    return subprocess.run([ctlpeer.PEAK, "controller-ctl", "--control", str(tmp_path / "c.sock"),
                           *args], capture_output=True, text=True, timeout=10, input=stdin)


def controller(tmp_path, etcd, name="ctl", cfg=None):
    c = ctlpeer.Controller(str(tmp_path), cfg, ("--store", "etcd", "--etcd", etcd.url,
                                                "--control", str(tmp_path / "c.sock")),
                          name=name)
    assert ctlpeer.wait_until(lambda: "leading (store etcd)" in c.log(), 10), c.log()
    return c


def replicas(tmp_path, etcd, n=2):
    out = []
    for i in range(n):
        d = tmp_path / f"dns{i}"
        d.mkdir()
        out.append(peaktest.Server(d, ctlpeer.config(),
                                   extra=("--store", "etcd", "--etcd", etcd.url)))
    return out


def held(status, ep):
    """The slices endpoint ep of SVC holds in a peak dns status, or None if it is absent."""
    m = re.search(rf"^{re.escape(SVC)} {ep} up weight=\d+ slices=(\d+)$", status, re.M)
    return int(m.group(1)) if m else None


def ctl_slices(tmp_path):
    """Endpoint -> slices from the controller's status."""
    r = ctl(tmp_path, "status")
    assert r.returncode == 0, r
    return {x.split()[1]: int(x.split()[-1]) for x in r.stdout.splitlines()
            if x.startswith(SVC + " ")}


def test_batch_reaches_both_replicas_without_a_reload(tmp_path, etcd):
    c = controller(tmp_path, etcd, cfg=ctlpeer.config())
    ds = []
    try:
        ds = replicas(tmp_path, etcd)
        for d in ds:
            assert ctlpeer.wait_until(lambda: "following /peak/svc/" in d.logtext(), 10)
        batch = tmp_path / "scale-up.txt"
        batch.write_text(f"add {SVC} pod-3 2001:db8:100::a 1 node1\n"
                         f"add {SVC} pod-4 2001:db8:100::b 2\n")
        r = ctl(tmp_path, "batch", str(batch))
        assert r.returncode == 0 and "added 2, removed 0 in 1 services" in r.stdout, r
        rec = etcd.get(KEY)
        assert f"add {SVC} pod-3 2001:db8:100::a 1 node1\n" in rec, rec
        assert f"add {SVC} pod-4 2001:db8:100::b 2\n" in rec, rec
        want = ctl_slices(tmp_path)
        assert want["pod-4"] > want["pod-3"] > 0, want
        for d in ds:  # the controller's slices, from the store's watch
            assert ctlpeer.wait_until(
                lambda: all(held(d.status(), e) == n for e, n in want.items()), 5), \
                (d.status(), want)
            assert "reloaded" not in d.logtext()
            for _ in range(40):
                d.query(SVC, "AAAA")
            assert d.metrics().get(
                f'peak_dns_steered_answers_total{{service="{SVC}",endpoint="pod-4"}}', 0) > 0
        # removal: pod-3 leaves the controller, the record and both replicas
        r = ctl(tmp_path, "del", SVC, "pod-3")
        assert r.returncode == 0 and "added 0, removed 1 in 1 services" in r.stdout, r
        assert "pod-3" not in etcd.get(KEY)
        for d in ds:
            assert ctlpeer.wait_until(lambda: held(d.status(), "pod-3") is None and
                                      held(d.status(), "pod-4"), 5), d.status()
        r = ctl(tmp_path, "del", SVC, "pod-0")  # the file's: refused
        assert r.returncode == 2 and "in the configuration file" in r.stdout, r
    finally:
        for d in ds:
            d.stop()
        c.stop()


def test_bad_batch_refused_with_its_line_and_nothing_applied(tmp_path, etcd):
    c = controller(tmp_path, etcd, cfg=ctlpeer.config())
    try:
        rev = etcd.mod_revision(KEY)
        before = ctl_slices(tmp_path)
        good = f"add {SVC} pod-3 2001:db8:100::a 1\n"
        cases = [  # (the batch, the line, what the reason says)
            (good + f"add {SVC} pod-4 2001:db8::zz 1\n", 2, "ADDRESS an IPv6 address"),
            (good + "\n" + good, 2, "an empty line"),
            (good + "add nope.svc.example. pod-4 2001:db8:100::b 1\n", 2, "no service"),
            (good + good, 2, "named twice"),
            (good + f"add {SVC} pod-0 2001:db8:100::b 1\n", 2, "pod-0 of " + SVC + " exists"),
            (good + f"del {SVC} pod-1\n", 2, "in the configuration file"),
            (good + f"del {SVC} pod-9\n", 2, "no endpoint pod-9"),
            (f"weight {SVC} pod-1 3\n", 1, "only add and del"),
        ]
        for text, line, why in cases:
            r = ctl(tmp_path, "batch", "-", stdin=text)
            out = r.stdout + r.stderr
            assert r.returncode == 2, (text, r)
            assert f"stdin:{line}:" in out or f"line {line}:" in out, (text, out)
            assert why in out, (text, out)
        # the controller's own checks answer "line N" of the batch as sent, nothing applied
        r = ctl(tmp_path, "batch", "-", stdin=good + f"del {SVC} pod-1\n")
        assert "error: line 2: " in r.stdout and "(nothing applied)" in r.stdout, r
        assert etcd.mod_revision(KEY) == rev
        assert ctl_slices(tmp_path) == before
        assert "batch of 2 lines refused: line 2:" in c.log()
    finally:
        c.stop()


def test_reload_and_restart_keep_runtime_endpoints(tmp_path, etcd):
    c = controller(tmp_path, etcd, cfg=ctlpeer.config())
    try:
        r = ctl(tmp_path, "add", SVC, "pod-3", "2001:db8:100::a", "1")
        assert r.returncode == 0, r
        want = ctl_slices(tmp_path)
        assert want.get("pod-3", 0) > 0, want
        n = c.log().count("configuration reloaded")
        c.proc.send_signal(signal.SIGHUP)
        assert ctlpeer.wait_until(lambda: c.log().count("configuration reloaded") > n, 10)
        assert ctl_slices(tmp_path) == want, c.log()
        assert "reload: 0 of 1 services changed" in c.log()
    finally:
        assert c.stop() == 0
    c = controller(tmp_path, etcd, name="ctl2")  # the same file: pod-3 comes from etcd
    try:
        assert ctl_slices(tmp_path) == want, c.log()
        assert f"{SVC}: assignment from the store (etcd)" in c.log()
        # the file now lists pod-3 itself: the file's entry is kept, the marker goes
        with open(c.cfg, "a") as f:
            f.write('      - {id: pod-3, address: "2001:db8:100::a"}\n')
        n = c.log().count("configuration reloaded")
        c.proc.send_signal(signal.SIGHUP)
        assert ctlpeer.wait_until(lambda: c.log().count("configuration reloaded") > n, 10)
        assert ctl_slices(tmp_path) == want
        assert "now in the file" in c.log()
        assert ctlpeer.wait_until(lambda: f"add {SVC} pod-3" not in etcd.get(KEY), 5)
        r = ctl(tmp_path, "del", SVC, "pod-3")
        assert r.returncode == 2 and "in the configuration file" in r.stdout, r
    finally:
        c.stop()


def test_standby_follows_and_takes_over_runtime_endpoints(tmp_path, etcd):
    """A hot standby applies the leader's batch from the watch (its copy holds the pods
    added, with their slices) and, leading after the leader stops, keeps them: its copy,
    not a fresh read, and the same slices."""
    lead = controller(tmp_path, etcd, cfg=ctlpeer.config())
    sdir = tmp_path / "standby"
    sdir.mkdir()
    sb = ctlpeer.Controller(str(sdir), ctlpeer.config(),
                            ("--store", "etcd", "--etcd", etcd.url,
                             "--control", str(sdir / "c.sock")), name="standby")
    try:
        assert ctlpeer.wait_until(lambda: "a standby" in sb.log(), 10), sb.log()
        n = sb.log().count("the stored state changed: adopted")
        r = ctl(tmp_path, "batch", "-", stdin=f"add {SVC} pod-3 2001:db8:100::a 1\n"
                                              f"add {SVC} pod-4 2001:db8:100::b 1 node1\n")
        assert r.returncode == 0, r
        want = ctl_slices(tmp_path)
        assert ctlpeer.wait_until(
            lambda: sb.log().count("the stored state changed: adopted") > n, 10), sb.log()
        assert lead.stop() == 0  # revokes its lease: the standby leads at once
        assert ctlpeer.wait_until(lambda: "leading (store etcd)" in sb.log(), 10), sb.log()
        assert "(the standby's copy, current)" in sb.log(), sb.log()
        assert ctl_slices(sdir) == want
        assert f"add {SVC} pod-4 2001:db8:100::b 1 node1\n" in etcd.get(KEY)
    finally:
        lead.stop()
        sb.stop()


def test_damaged_stored_line_said_and_the_rest_kept(tmp_path, etcd):
    """A run-time endpoint's line in the stored record that does not parse (a damaged or
    foreign value): the controller that adopts the store refuses that record with the line
    and the reason, leads on, and makes up no endpoint from it."""
    c = controller(tmp_path, etcd, cfg=ctlpeer.config())
    try:
        r = ctl(tmp_path, "add", SVC, "pod-3", "2001:db8:100::a", "1")
        assert r.returncode == 0, r
    finally:
        assert c.stop() == 0
    rec = etcd.get(KEY)
    assert f"add {SVC} pod-3 2001:db8:100::a" in rec, rec
    etcd.put(KEY, rec.replace("2001:db8:100::a", "not-an-address"))
    c = controller(tmp_path, etcd, name="ctl2")
    try:
        assert re.search(rf"{re.escape(KEY)}: refused: line \d+: ", c.log()), c.log()
        got = ctl_slices(tmp_path)
        assert "pod-3" not in got and sum(got.values()) > 0, got
    finally:
        assert c.stop() == 0
