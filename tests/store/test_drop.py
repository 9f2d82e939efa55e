"""Old owners drop the objects a move took away (issue 20). Three pods under peak controller
(--drop-delay 1: a second after a new map's walk), R=1; s3 is drained while 200 objects are
written to s1 and s2, then comes back while a reader reads every object round after round.
s3 pulls its slices' objects; s1 and s2 then delete their copies of them, each only after
s3 answered a HEAD for it with a copy as new (so the space returns and no copy is left
twice), and no read fails meanwhile. A flap (s3 up, then down again as soon as the first
copies were dropped, mid-move) loses nothing: s1 and s2 pull back from s3 what they had
dropped, s3 drops its copies once they confirm, and every object ends on exactly the pod
its slice says. The routes follow each pod's logged blocks, as an agent moves them.

  [cl] client, peak dns, peak controller [2001:db8:aa:ff::1]:7000 (lo)
    |  v0 -- [a] s1    v1 -- [b] s2    v2 -- [c] s3      (pods: --controller, routes via cl)
"""
import shutil
import signal
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from conftest import NAME, obj_bytes, wait_for
from test_live import blocks_now, controlled_testbed, maps, reroute
from test_migrate import bulk, key_of, objects, slice_held

N = 200
GETS = 'peak_store_requests_total{method="GET",status="200"}'


@pytest.fixture()
def live(tmp_path):
    yield from controlled_testbed(tmp_path, "--drop-delay", "1")


@pytest.fixture()
def live_slow(tmp_path):
    """The drops 6 s after the walk: time to delete some moved keys at their new owner."""
    yield from controlled_testbed(tmp_path, "--drop-delay", "6")


def body_bytes(pod):
    """The bodies' bytes of the pod's objects (their size less the 'PKS1' header and key)."""
    total = 0
    for f in objects(pod):
        h = obj_bytes(pod.data, f)
        total += len(h) - 6 - (h[4] << 8 | h[5])
    return total


def metric(pod, name):
    return pod.metrics().get(name, 0)


def health(net, ctl, pid, state, movers):
    """Sets pid's health and waits until every pod applied the map; reroutes movers."""
    before = {p: maps(pod) for p, pod in net.pods.items()}
    ctl.ctl("health", NAME, pid, state)
    for p, pod in net.pods.items():
        wait_for(lambda: maps(pod) > before[p], f"{p}'s map after {pid} {state}", 60)
    reroute(net, movers)


OLD = ("s1", "s2")  # the old owners: they hold every object while s3 is drained


def old_total(pods, name):
    """A metric summed over the old owners."""
    return sum(metric(pods[p], name) for p in OLD)


def drain_and_write(net, ctl):
    """Waits for the three pods to link, drains s3, writes N objects to s1 and s2; returns
    the objects by pod."""
    pods = net.pods
    for pod in pods.values():
        wait_for(lambda: "connected to controller" in pod.logtext(), f"{pod.id} linked")
    wait_for(lambda: ctl.log_path.read_text().count("(authenticated)") >= 3, "3 hellos")
    health(net, ctl, "s3", "down", OLD)
    p = bulk(net, "put", str(N))
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    return {pid: objects(pod) for pid, pod in pods.items()}


def start(net, ctl):
    """drain_and_write, checking that s3 holds nothing and s1 and s2 all N objects."""
    before = drain_and_write(net, ctl)
    assert "0 slice(s) here" in net.pods["s3"].logtext()
    assert not before["s3"] and len(before["s1"] | before["s2"]) == N
    return before


def reads_past(reader, pod, count, what):
    """Waits until pod answered more than count GETs, or the reader ended."""
    wait_for(lambda: reader.poll() is not None or metric(pod, GETS) > count, what)


@contextmanager
def reading(net, tmp_path):
    """Reads the N objects round after round while the with block runs (once the first
    reads came through); then checks that none failed. Yields the reader (.proc), whose
    summary line is in .out afterwards."""
    stop = tmp_path / "stop"
    reader = SimpleNamespace(proc=bulk(net, "get", str(N), str(stop)), out=None)
    try:
        reads_past(reader.proc, net.pods["s1"], 10, "first reads")
        yield reader
    finally:
        stop.write_text("")
        out, err = reader.proc.communicate(timeout=120)
    assert reader.proc.returncode == 0, out + err
    assert " failed 0 " in out, out
    reader.out = out


def test_old_owners_drop_what_moved_once_confirmed(live, tmp_path):
    net, ctl = live
    pods = net.pods
    before = start(net, ctl)
    with reading(net, tmp_path) as reader:
        bytes0 = {pid: body_bytes(pods[pid]) for pid in OLD}
        health(net, ctl, "s3", "up", ("s3",))
        held = blocks_now(pods["s3"])
        moved = {f for f in before["s1"] | before["s2"] if slice_held(f, held)}
        assert 0 < len(moved) < N
        wait_for(lambda: old_total(pods, "peak_store_dropped_total") >= len(moved),
                 "the drops", 60)
        reads_past(reader.proc, pods["s3"], metric(pods["s3"], GETS) + 30,
                   "reads after the drops")
    assert objects(pods["s3"]) == moved
    for pid in OLD:
        m = pods[pid].metrics()
        gone = before[pid] & moved
        assert objects(pods[pid]) == before[pid] - moved, pid
        assert m["peak_store_dropped_total"] == len(gone), (pid, m)
        assert m["peak_store_drop_unconfirmed"] == 0, (pid, m)
        # the disk space came back: the bodies left are the old less the dropped
        assert body_bytes(pods[pid]) == bytes0[pid] - m["peak_store_dropped_bytes_total"]
        assert m["peak_store_objects"] == len(before[pid]) - len(gone), (pid, m)
        assert "store: drop: " in pods[pid].logtext()
        assert not pods[pid].tombs(), "a drop is not a delete: no tombstone"
    print(f"moved {len(moved)} of {N}; dropped by s1 "
          f"{len(before['s1'] & moved)}, s2 {len(before['s2'] & moved)}; "
          f"reader: {reader.out.strip()}")


def test_a_flap_loses_nothing(live, tmp_path):
    net, ctl = live
    pods = net.pods
    before = start(net, ctl)
    with reading(net, tmp_path) as reader:
        health(net, ctl, "s3", "up", ("s3",))
        # the flap: s3 leaves again as soon as the old owners began dropping its slices'
        # copies (mid-move: some dropped, the rest still being confirmed)
        wait_for(lambda: old_total(pods, "peak_store_dropped_total") > 0, "the first drop", 60)
        health(net, ctl, "s3", "down", OLD)
        assert "0 slice(s) here" in pods["s3"].logtext().rsplit("new map", 1)[1]
        # s1 and s2 pull back what they dropped, then s3 drops all it held
        wait_for(lambda: not objects(pods["s3"]), "s3 to drop its copies", 60)
        reads_past(reader.proc, pods["s1"], metric(pods["s1"], GETS) + 30,
                   "reads after the flap")
    after = {pid: objects(pod) for pid, pod in pods.items()}
    assert after["s1"] | after["s2"] == before["s1"] | before["s2"], "objects lost"
    assert not after["s1"] & after["s2"]
    for pid in OLD:
        assert after[pid] == {f for f in after[pid] if slice_held(f, blocks_now(pods[pid]))}
    m3 = pods["s3"].metrics()
    assert m3["peak_store_dropped_total"] > 0 and m3["peak_store_drop_unconfirmed"] == 0, m3
    # every object reads back
    p = bulk(net, "get", str(N))
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err


def test_no_drop_without_the_holders_confirmation(live, tmp_path):
    """The last copy never goes: s3 gets its slices back but is killed (SIGKILL) before it
    pulled anything, so it cannot confirm; s1 and s2 keep every object (their drop passes
    count them unconfirmed). s3 starts again, pulls its slices' objects from them, and
    their next pass (1 s, 2 s, ... after) drops the copies it confirms."""
    net, ctl = live
    pods = net.pods
    before = drain_and_write(net, ctl)
    pods["s3"].stop(signal.SIGKILL)
    shutil.rmtree(pods["s3"].data)  # not even an old copy there
    mapped = {p: maps(pods[p]) for p in OLD}
    ctl.ctl("health", NAME, "s3", "up")
    for p in OLD:
        wait_for(lambda: maps(pods[p]) > mapped[p], f"{p}'s map", 60)
        wait_for(lambda: "kept until their holders confirm" in pods[p].logtext(),
                 f"{p}'s first drop pass", 60)
    assert {p: objects(pods[p]) for p in OLD} == {p: before[p] for p in OLD}
    unconfirmed = old_total(pods, "peak_store_drop_unconfirmed")
    assert unconfirmed > 0
    assert old_total(pods, "peak_store_dropped_total") == 0
    pods["s3"].start()
    wait_for(lambda: "store: migration done" in pods["s3"].logtext(), "s3's walk", 60)
    wait_for(lambda: all(metric(pods[p], "peak_store_drop_unconfirmed") == 0 for p in OLD),
             "the drops after s3 came back", 60)
    moved = objects(pods["s3"])
    assert len(moved) == unconfirmed
    for p in OLD:
        assert objects(pods[p]) == before[p] - moved, p
    assert sum(len(objects(pod)) for pod in pods.values()) == N


def test_a_copy_deleted_at_its_new_owner_is_dropped_too(live_slow, tmp_path):
    """Keys deleted at their new owner after the move, before the old owners' drop pass:
    the new owner answers their HEAD 404 with its tombstone's time (X-Peak-Deleted), newer
    than the old copy, so the old owners drop those copies as well (the tombstone itself
    never reaches them: they are outside the key's replica set). Before, such a copy stayed,
    asked about every minute."""
    net, ctl = live_slow
    pods = net.pods
    before = drain_and_write(net, ctl)
    done0 = pods["s3"].logtext().count("store: migration done")
    health(net, ctl, "s3", "up", ("s3",))
    wait_for(lambda: pods["s3"].logtext().count("store: migration done") > done0,
             "s3's walk", 60)
    moved = objects(pods["s3"])
    doomed = sorted(moved)[:5]
    for f in doomed:
        r = net.store("delete", NAME, key_of(pods["s3"].data / f))
        assert r.returncode == 0, r.stderr
    assert all(metric(pods[p], "peak_store_dropped_total") == 0 for p in OLD), \
        "dropped before the deletes: the test's delay is too short for this machine"
    wait_for(lambda: old_total(pods, "peak_store_dropped_total") >= len(moved), "the drops", 60)
    for p in OLD:
        assert metric(pods[p], "peak_store_drop_unconfirmed") == 0, p
        assert objects(pods[p]) == before[p] - moved, p
    assert objects(pods["s3"]) == moved - set(doomed)
    assert set(pods["s3"].tombs()) == set(doomed)
