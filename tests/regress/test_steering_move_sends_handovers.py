"""A steering move (peak controller --steer metrics) sent the agents the new map without
handovers: the slices a saturated pod shed moved to the other pods at once, and the
connections open on them broke, where the same move by an operator's 'weight' is handed
over ('handover SERVICE OLD NEW MS BLOCKS' before the map, issue 19). Seen reading
src/controller/steer_ctl.c (apply() rebalanced and sent the map, no ctlr_handover_send).

A fake agent reports pod-0 saturated (its cgroup throttled all the time) and the others
clear; the first steering round sheds pod-0: the handover lines must come before the map
that moves the slices and name exactly the slices that moved, from pod-0 to the others."""
import time

import ctlpeer
from ctlpeer import SVC


def owner_of(m):
    own = {}
    for ep, blocks in m.items():
        for start, lg in blocks:
            for g in range(start, start + (1 << lg)):
                own[g] = ep
    return own


def test_steering_move_sends_handovers(tmp_path):
    c = ctlpeer.Controller(str(tmp_path), ctlpeer.config(3, slice_len=70),
                           args=("--state", "none", "--steer", "metrics",
                                 "--steer-interval", "100", "--handover-ms", "1500"))
    agent = None
    try:
        agent = ctlpeer.Agent(c.port)
        _, m0 = agent.read_map()
        thr, cpu, hos, t0 = 0, 0, [], time.monotonic()
        deadline = t0 + 30  # (a hung controller; the move comes within a few rounds)
        while True:
            assert time.monotonic() < deadline, c.log()
            now = time.monotonic()
            thr = int((now - t0) * 1e9)  # pod-0 throttled all the time
            cpu = int((now - t0) * 1e8)
            for e in range(3):
                sat = f"sat {thr if e == 0 else 0} 0 128"
                agent.send(f"load {SVC} pod-{e} 5 {cpu} {sat}\n")
            try:
                ln = agent.line(timeout=0.05)
            except (TimeoutError, OSError):
                continue
            if ln.startswith("handover "):
                assert agent.pending is None
                hos.append(ln.split(" "))
            elif ln.startswith("map "):
                agent.pending = {}
                break
        m1 = {}
        while True:
            ln = agent.line()
            if ln == "end":
                break
            w = ln.split(" ")
            assert w[0] == "ep", ln
            m1.setdefault(w[1], []).extend(tuple(int(x) for x in b.split("/")) for b in w[2:])
        assert "(saturated)" in c.log(), c.log()
        b, a = owner_of(m0), owner_of(m1)
        want = {g: (b[g], a[g]) for g in a if b.get(g) != a[g]}
        assert want, "the steering round moved nothing"
        assert hos, "no handover before the map that moved %d slices" % len(want)
        got = {}
        for w in hos:
            assert w[1] == SVC and w[4] == "1500", w
            for blk in w[5:]:
                start, lg = (int(x) for x in blk.split("/"))
                for g in range(start, start + (1 << lg)):
                    got[g] = (w[2], w[3])
        assert got == want
        assert {old for old, _ in got.values()} == {"pod-0"}
    finally:
        if agent:
            agent.close()
        assert c.stop() == 0
