"""Migration with slices (issue 20): a third pod joins a two-pod store; the new pod's
slices (assign_add on the initial assignment: minimal movement) move to it. It pulls their
objects from the old owners in the background (held back to 150 objects a second here, so
the move takes a while) and, until done, fetches a key it misses from the key's old owner.
Checked: the new pod's data dir ends with exactly the objects whose slices its logged blocks
hold (the files of the old pods counted before and after), no object is lost, reads issued
all through the move by a separate reader all succeed, some of them through the
read-through, and the progress shows in the log and the metrics.

Tombstones: keys of the moving slices deleted at the new pod early in the move stay
deleted, for a read during the move and after it. As seen before them: the new pod,
lacking the object, answered the DELETE 404 and kept nothing, so the next read fetched the
object back from its old owner (read-through) and the background pull restored it. Topology as in
conftest.py, with three pod namespaces, the third started by join()."""
import ipaddress
import os
import re
import subprocess
import threading

import pytest

from conftest import NAME, OBJECT_NAME, PORT, Net, obj_bytes, wait_for

N = 300
EXTRA = 60  # objects obj-N.. the reader leaves alone: those of the new pod's get deleted
PULL_RATE = 80  # objects a second: about a second and a half for the new pod's ~120
BULK = os.environ.get("STORE_BULK", os.path.join(os.path.dirname(os.environ.get(
    "PEAK_BIN", "build/peak")), "tests", "store_bulk"))
SERVICE = ipaddress.ip_network("2001:db8:8::/64")


@pytest.fixture(scope="module")
def net3(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    n = Net(tmp_path_factory.mktemp("storemig"), npods=3, late=1)
    try:
        n.up()
        yield n
    finally:
        n.down()
    for pod in n.pods.values():
        assert pod.proc.returncode == 0, pod.logtext()


def bulk(net, *args, stdout=None):
    return subprocess.Popen(["ip", "netns", "exec", net.cl, BULK, f"[::1]:{net.dns.port}",
                             str(PORT), NAME, *args], stdout=stdout or subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def objects(pod):
    return {f for f in pod.files() if OBJECT_NAME.match(f)}


def slice_held(name, blocks):
    """Whether the object file's slice (its first 8 hex digits) lies in one of the blocks."""
    addr = SERVICE.network_address + (int(name[:8], 16) << 56)
    return any(addr in ipaddress.ip_network(b) for b in blocks)


HTTP_CODE = """
import http.client, sys
for arg in sys.argv[2:]:
    method, key = arg.split(" ")
    c = http.client.HTTPConnection(sys.argv[1], 8080, timeout=10)
    c.request(method, "/o/" + key)
    print(c.getresponse().status)
"""


def key_of(path):
    data = obj_bytes(path.parent, path.name)
    return data[6:6 + (data[4] << 8 | data[5])].decode()


def delete_early(net, before, out):
    log = net.tmp / "s3.log"
    wait_for(lambda: log.exists() and "serving" in log.read_text(), "s3 to serve")
    blocks = re.findall(r"store: s3 holds (\S+)", log.read_text())
    out["extra"] = sorted(f for f in before["s2"] if slice_held(f, blocks) and
                          int(key_of(net.pods["s2"].data / f)[4:]) >= N)[-5:]
    out["doomed"] = [key_of(net.pods["s2"].data / f) for f in out["extra"]]
    out["codes"] = net.py(HTTP_CODE, "2001:db8:104::3", *[f"DELETE {k}" for k in out["doomed"]],
                          f"GET {out['doomed'][0]}").split()


def test_join_moves_exactly_the_new_slices_and_reads_never_fail(net3, tmp_path):
    p = bulk(net3, "put", str(N + EXTRA))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    before = {pid: objects(pod) for pid, pod in net3.pods.items()}
    assert sum(len(v) for v in before.values()) == N + EXTRA
    assert not (before["s1"] & before["s2"])

    stop = tmp_path / "stop"
    deleted = {"extra": [], "doomed": [], "codes": []}
    reader = bulk(net3, "get", str(N), str(stop))
    try:
        # the reader is under way (it has resolved and read) before the pod joins
        wait_for(lambda: reader.poll() is not None or net3.pods["s1"].metrics().get(
            'peak_store_requests_total{method="GET",status="200"}', 0) > 10, "first reads")
        # as soon as the new pod serves (before its slices' routes move, which takes a
        # while), delete the extra keys of its slices that it pulls last (s2's, greatest
        # names) at its own address, then read one: nothing comes back
        deleter = threading.Thread(target=delete_early, args=(net3, before, deleted))
        deleter.start()
        (new,) = net3.join(["--pull-rate", str(PULL_RATE)])
        deleter.join(timeout=60)
        extra, doomed, codes = deleted["extra"], deleted["doomed"], deleted["codes"]
        assert len(doomed) >= 3, extra
        assert codes == ["204"] * len(doomed) + ["404"], codes
        wait_for(lambda: "store: migration done" in new.logtext(), "the migration", 60)
        # and a little after, a whole round of reads against the final routes
        rounds = new.metrics().get('peak_store_requests_total{method="GET",status="200"}', 0)
        wait_for(lambda: new.metrics().get(
            'peak_store_requests_total{method="GET",status="200"}', 0) > rounds + 50,
            "reads after the move")
    finally:
        stop.write_text("")
        out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err[-3000:]
    ops = int(out.split()[1])
    assert ops > N, out

    blocks = new.blocks()
    assert blocks
    want = {f for f in before["s1"] | before["s2"] if slice_held(f, blocks)} - set(extra)
    got = objects(new)
    assert got == want, (len(got), len(want))
    assert set(new.tombs()) == set(extra)
    codes = net3.py(HTTP_CODE, "2001:db8:104::3", *[f"GET {k}" for k in doomed]).split()
    assert codes == ["404"] * len(doomed), codes
    r = net3.store("get", NAME, doomed[-1])
    assert r.returncode == 1 and b"404" in r.stderr, r.stderr
    # the new pod's share of three: at least a fifth, at most half of the objects
    assert N // 5 <= len(want) <= (N + EXTRA) // 2, len(want)
    # the old pods kept what they had (nothing lost), and took nothing from the new one
    assert objects(net3.pods["s1"]) == before["s1"]
    assert objects(net3.pods["s2"]) == before["s2"]

    m = new.metrics()
    log = new.logtext()
    print(f"moved {len(got)} of {N} (share {N / 3:.0f}); reader: {ops} reads, 0 failed; "
          f"read through {m['peak_store_migrate_readthrough_total']:.0f}")
    assert m["peak_store_repair_pulled_total"] == len(want), m
    assert m["peak_store_repair_pending"] == 0, m
    assert m["peak_store_repair_failed_total"] == 0, m
    assert m["peak_store_repair_bytes_total"] > 16 * len(want)
    assert m["peak_store_migrate_readthrough_total"] > 0, "no read went through: " + log
    # the walk's pulls and the read-throughs ride kept connections, a few per old owner
    # (listing pages, the walk's, one per fetch thread), not one per object
    print(f"peer connections {m['peak_store_peer_connections_total']:.0f}")
    assert m["peak_store_peer_connections_total"] <= 2 * (2 + 1 + 4) + 4, m
    assert "store: migration: s1: page 1" in log
    assert f"store: migration done: {len(want)} object(s) pulled" in log

    # every object reads back after the move, the moved ones from the new pod
    p = bulk(net3, "get", str(N))
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err


def test_joined_must_name_an_endpoint(net3, tmp_path):
    r = subprocess.run(["ip", "netns", "exec", net3.ns[0], os.environ.get("PEAK_BIN", "peak"),
                        "store", "serve", "--config", str(net3.config), "--id", "s1",
                        "--data", str(tmp_path / "d"), "--joined", "nope"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r.stderr
    assert "--joined id is not an endpoint" in r.stderr
