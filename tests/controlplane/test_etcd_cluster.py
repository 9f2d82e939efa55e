"""Three etcd members on loopback, two controllers given all three (--etcd URL,URL,URL):
killing the member the controllers talk to loses nothing (they go on with the next member,
the leader keeps the lead and stores changes), and the leader's handover still works on the
remaining two members."""
import shutil
import signal
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
