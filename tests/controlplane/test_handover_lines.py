"""The controller's handovers (issue 19 part 2): when slices move away from a live endpoint (a
weight changed, an operator's drain, a pod coming up) every agent is told 'handover SERVICE
OLD NEW MS BLOCKS' before the map that moves them, with exactly the moved slices; a pod an
agent reports down (dead: nothing to hand over) gets none, and --no-handover sends none."""
import os
import subprocess

import ctlpeer
from ctlpeer import PEAK, SVC


def ctl(sock, *cmd):
    return subprocess.run([PEAK, "controller-ctl", "--control", sock, *cmd],
                          capture_output=True, text=True, timeout=10)


def until_map(agent):
    """Lines up to and including the next map's end: (handover lines, the map)."""
    hos = []
    while True:
        ln = agent.line()
        if ln.startswith("handover "):
            assert agent.pending is None, "a handover inside a map: " + ln
            hos.append(ln.split(" "))
        elif ln.startswith("map "):
            agent.cur, agent.pending = ln.split(" ")[1], {}
        elif ln.startswith("ep ") and agent.pending is not None:
            w = ln.split(" ")
            agent.pending.setdefault(w[1], []).extend(
                tuple(int(x) for x in b.split("/")) for b in w[2:])
        elif ln == "end":
            m, agent.pending = agent.pending, None
            return hos, m


def owner_of(m):
    own = {}
    for ep, blocks in m.items():
        for start, lg in blocks:
            for g in range(start, start + (1 << lg)):
                own[g] = ep
    return own


def moved_by(hos):
    got = {}
    for w in hos:
        assert w[0] == "handover" and w[1] == SVC
        for b in w[5:]:
            start, lg = (int(x) for x in b.split("/"))
            for g in range(start, start + (1 << lg)):
                assert g not in got, "a slice handed over twice"
                got[g] = (w[2], w[3])
    return got


def check(before, after, hos, ms):
    """The handovers name exactly the slices that moved, each from its old to its new owner."""
    b, a = owner_of(before), owner_of(after)
    want = {g: (b[g], a[g]) for g in a if b.get(g) != a[g]}
    assert want and moved_by(hos) == want
    assert all(w[4] == str(ms) for w in hos)


def test_handovers(tmp_path):
    sock = os.path.join(tmp_path, "ctl.sock")
    c = ctlpeer.Controller(str(tmp_path), ctlpeer.config(3, slice_len=70),
                           args=("--control", sock, "--state", "none", "--handover-ms", "1500"))
    agent = None
    try:
        agent = ctlpeer.Agent(c.port)
        _, m0 = agent.read_map()
        # a weight change: pod-0 gives up slices to the two others, which hold on
        assert ctl(sock, "weight", SVC, "pod-0", "3").returncode == 0
        hos, m1 = until_map(agent)
        check(m0, m1, hos, 1500)
        assert {w[2] for w in hos} <= {"pod-1", "pod-2"} and {w[3] for w in hos} == {"pod-0"}
        # the operator drains pod-1 (its pod lives on): its slices are handed over
        assert ctl(sock, "health", SVC, "pod-1", "down").returncode == 0
        hos, m2 = until_map(agent)
        check(m1, m2, hos, 1500)
        assert {w[2] for w in hos} == {"pod-1"}
        # it comes back: it takes its share from the live others, handed over
        assert ctl(sock, "health", SVC, "pod-1", "up").returncode == 0
        hos, m3 = until_map(agent)
        check(m2, m3, hos, 1500)
        assert {w[3] for w in hos} == {"pod-1"}
        # an agent reports pod-2 down: a dead pod has nothing to hand over
        agent.send(f"health {SVC} pod-2 down\n")
        hos, m4 = until_map(agent)
        assert hos == [] and "pod-2" not in m4
        assert "handover pod-0 -> pod-1: " in c.log()  # logged OLD -> NEW
    finally:
        if agent:
            agent.close()
        assert c.stop() == 0


def test_no_handover(tmp_path):
    sock = os.path.join(tmp_path, "ctl.sock")
    c = ctlpeer.Controller(str(tmp_path), ctlpeer.config(2, slice_len=70),
                           args=("--control", sock, "--state", "none", "--no-handover"))
    agent = None
    try:
        agent = ctlpeer.Agent(c.port)
        agent.read_map()
        assert ctl(sock, "weight", SVC, "pod-0", "3").returncode == 0
        hos, m = until_map(agent)
        assert hos == [] and m
    finally:
        if agent:
            agent.close()
        assert c.stop() == 0
