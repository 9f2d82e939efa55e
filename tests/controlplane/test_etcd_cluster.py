"""Three etcd members on loopback, two controllers given all three (--etcd URL,URL,URL):
killing the member the controllers talk to loses nothing (they go on with the next member,
the leader keeps the lead and stores changes), and the leader's handover still works on the
remaining two members."""
import shutil
import signal
import subprocess
import time

import pytest

import ctlpeer
import etcdproc
import peaktest
from ctlpeer import SVC

KEY = "/peak/svc/" + SVC


@pytest.fixture
def members(tmp_path):
    if not shutil.which(etcdproc.ETCD):
        pytest.skip("etcd is not installed (scripts/deps.sh installs etcd-server)")
    ms = etcdproc.cluster(str(tmp_path / "etcd"))
    try:
        yield ms
    finally:
        for m in ms:
            m.stop()


def stored(members, key=KEY):
    """key's value as the first member that answers has it (None: none does)."""
    for m in members:
        try:
            return m.get(key)
        except OSError:  # dead, or no quorum yet (HTTP 503)
            continue
    return None


def leader_map(port, deadline, report=None):
    """The first map a leader gives a new agent (which then reports pod-1 down if asked,
    as an agent reports what is down after its hello)."""
    while True:
        try:
            a = ctlpeer.Agent(port)
            _, m = a.read_map(timeout=1)
            if report:
                a.send(report)
            return m, a
        except (ConnectionRefusedError, ConnectionResetError, EOFError, TimeoutError):
            assert time.monotonic() < deadline, "no controller leads"
            time.sleep(0.05)


def test_one_member_of_three_dies_service_goes_on(tmp_path, members):
    port = peaktest.free_port()
    urls = ",".join(m.url for m in members)
    common = ("--store", "etcd", "--etcd", urls, "--listen", f"[::1]:{port}")
    c1 = ctlpeer.Controller(str(tmp_path), ctlpeer.config(), common, name="c1")
    c2 = None
    try:
        assert ctlpeer.wait_until(lambda: "leading (store etcd)" in c1.log(), 10), c1.log()
        c2 = ctlpeer.Controller(str(tmp_path), None, common, name="c2")
        a = ctlpeer.Agent(port)
        a.read_map()
        members[0].proc.send_signal(signal.SIGKILL)  # the member both talk to first
        members[0].proc.wait(5)
        t0 = time.monotonic()
        down = f"health {SVC} pod-1 down\n"
        a.send(down)
        # the change is stored once etcd has a raft leader again: a save that did not
        # reach etcd is tried again, and if the lead was lost meanwhile the agent
        # reconnects to whichever leads and reports again
        ok = ctlpeer.wait_until(lambda: "pod-1 down" in (stored(members[1:]) or ""), 6)
        if not ok:
            a.close()
            _, a = leader_map(port, t0 + 10, down)
        assert ctlpeer.wait_until(lambda: "pod-1 down" in (stored(members[1:]) or ""), 10)
        print(f"stored {time.monotonic() - t0:.2f} s after the member died")
        m, b = leader_map(port, time.monotonic() + 5)
        assert "pod-1" not in m
        b.close()
        live = m
        # the leader's handover works on the two members left
        lk = ""
        for mb in members[1:]:
            try:
                lk = mb.get("/peak/leader") or ""
                break
            except OSError:
                continue
        leader = c1 if f"/{c1.proc.pid} " in lk else c2
        assert f"/{leader.proc.pid} " in lk, lk
        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait(5)
        t1 = time.monotonic()
        m, b = leader_map(port, t1 + 2 + 4)
        print(f"takeover on two members: {time.monotonic() - t1:.2f} s")
        assert m == live
        b.close()
        a.close()
    finally:
        c1.stop()
        if c2:
            c2.stop()


def test_standby_watch_past_a_compaction_reads_afresh(tmp_path, members):
    """The standby's watch breaks (its member dies: a raft follower, so etcd elects
    nothing) while the standby is stopped; meanwhile the leader stores changes and the
    history is compacted past the standby's revision. The resumed watch is refused by etcd
    (compacted): the standby reads the state afresh and holds the latest."""
    st = [m.call("/v3/maintenance/status", {}) for m in members]
    lead = [i for i, x in enumerate(st) if x["header"]["member_id"] == x["leader"]]
    assert len(lead) == 1, st
    follower = members[(lead[0] + 1) % 3]
    rest = [m for m in members if m is not follower]
    port = peaktest.free_port()
    common = ("--store", "etcd", "--listen", f"[::1]:{port}")
    c1 = ctlpeer.Controller(str(tmp_path), ctlpeer.config(),
                            (*common, "--etcd", ",".join(m.url for m in rest)), name="c1")
    c2 = None
    try:
        assert ctlpeer.wait_until(lambda: "leading (store etcd)" in c1.log(), 10), c1.log()
        c2 = ctlpeer.Controller(
            str(tmp_path), None,
            (*common, "--etcd", ",".join(m.url for m in [follower, *rest]), "--control",
             str(tmp_path / "c2.sock")), name="c2")
        a = ctlpeer.Agent(port)
        a.read_map()
        a.send(f"health {SVC} pod-1 down\n")
        a.read_map()
        assert ctlpeer.wait_until(lambda: "the stored state changed: adopted" in c2.log(), 5)
        c2.proc.send_signal(signal.SIGSTOP)
        try:
            follower.proc.send_signal(signal.SIGKILL)
            follower.proc.wait(5)
            for ep, state in (("pod-1", "up"), ("pod-2", "down")):
                a.send(f"health {SVC} {ep} {state}\n")
                a.read_map(timeout=10)
            assert ctlpeer.wait_until(lambda: "pod-2 down" in (stored(rest) or ""), 10)
            rev = max(int(m.call("/v3/kv/range", {"key": etcdproc.b64("x")})
                          ["header"]["revision"]) for m in rest)
            rest[0].call("/v3/kv/compaction", {"revision": str(rev), "physical": True})

            def compacted(m):  # each member applies the compaction on its own time
                try:
                    m.call("/v3/kv/range", {"key": etcdproc.b64("x"), "revision": str(rev - 1)})
                    return False
                except OSError:  # "required revision has been compacted"
                    return True

            assert ctlpeer.wait_until(lambda: all(compacted(m) for m in rest), 10)
            n = c2.log().count("the stored state changed: adopted")
        finally:
            c2.proc.send_signal(signal.SIGCONT)
        assert ctlpeer.wait_until(
            lambda: c2.log().count("the stored state changed: adopted") > n, 10), c2.log()
        # as a cancelled watch, or as the gateway's error: either way a fresh read
        assert ("etcd: history compacted past revision" in c2.log() or
                "the watch ended: etcdserver: mvcc: required revision has been compacted"
                in c2.log()), c2.log()
        p = subprocess.run([ctlpeer.PEAK, "controller-ctl", "--control",
                            str(tmp_path / "c2.sock"), "status"],
                           capture_output=True, text=True, timeout=10)
        assert f"{SVC} pod-2 down" in p.stdout and f"{SVC} pod-1 up" in p.stdout, p.stdout
        a.close()
    finally:
        c1.stop()
        if c2:
            c2.stop()
