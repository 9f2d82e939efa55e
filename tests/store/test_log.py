"""The small-object log (issue 20, src/store/slog.h) on one pod on loopback: small PUTs are
appended to DATA/log with one fdatasync per group (peak_store_log_syncs_total), never as
files; start-up rebuilds the index from the segments (GET after a restart, overwrites and
deletes too) and drops a torn or damaged tail with a log line; a SIGKILL during concurrent
small PUTs leaves every acknowledged object whole and no partial one; segments roll over
at --log-segment; a large PUT over a log object (and back) leaves one copy."""
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import CONFIG, OBJECT_NAME, PEAK, read_log, wait_for
from peaktest import free_port

HERE = os.path.dirname(os.path.abspath(__file__))


def body(key):  # as putburst.py makes them
    return (hashlib.sha256(key.encode()).digest() * 32)[:1024]


class Solo:
    """One pod holding every slice, on [::1]:port, started and stopped by its PID."""

    def __init__(self, tmp, *extra):
        self.tmp, self.extra = tmp, list(extra)
        self.cfg = tmp / "solo.yaml"
        self.cfg.write_text(CONFIG.split("    endpoints:")[0] +
                            '    endpoints:\n      - {id: s1, address: "2001:db8:104::1"}\n')
        self.port, self.mport, self.data = free_port(), free_port(), tmp / "data"
        self.logpath, self.proc = tmp / "pod.log", None

    def start(self):
        start = self.logpath.stat().st_size if self.logpath.exists() else 0
        self.log = open(self.logpath, "a")
        self.proc = subprocess.Popen(
            [PEAK, "store", "serve", "--config", str(self.cfg), "--id", "s1", "--data",
             str(self.data), "--listen", f"[::1]:{self.port}", "--metrics",
             f"[::1]:{self.mport}", *self.extra], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: "serving" in self.text()[start:] or self.proc.poll() is not None,
                 "the pod", 20)
        assert self.proc.poll() is None, self.text()
        return self.text()[start:]

    def text(self):
        return self.logpath.read_text()

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def metrics(self):
        text = urllib.request.urlopen(f"http://[::1]:{self.mport}/metrics",
                                      timeout=10).read().decode()
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines() if line and not line.startswith("#")}

    def request(self, method, key, data=None, path=None):
        """One request on its own connection: (status, headers {lowercase: value}, body)."""
        s = socket.create_connection(("::1", self.port), timeout=20)
        head = f"{method} {path or '/o/' + key} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        if data is not None:
            head += f"Content-Length: {len(data)}\r\n"
        s.sendall(head.encode() + b"\r\n" + (data or b""))
        out = b""
        while True:
            k = s.recv(65536)
            if not k:
                break
            out += k
        s.close()
        head, _, rest = out.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        hdrs = {n.strip().lower(): v.strip()
                for n, _, v in (line.partition(":") for line in lines[1:])}
        return int(lines[0].split()[1]), hdrs, rest

    def putburst(self, *args):
        return [os.environ.get("PYTHON", "/usr/bin/python3"), os.path.join(HERE, "putburst.py"),
                "::1", str(self.port), *args]

    def object_files(self):
        return [f for f in os.listdir(self.data) if OBJECT_NAME.match(f)]


@pytest.fixture
def solo(tmp_path):
    pods = []

    def make(*extra):
        pod = Solo(tmp_path, *extra)
        pods.append(pod)
        return pod
    yield make
    for pod in pods:
        rc = pod.stop()
        assert rc in (0, -signal.SIGKILL), pod.text()


def test_group_of_small_puts_costs_one_log_flush(solo):
    pod = solo()
    pod.start()
    n = 32
    m0 = pod.metrics()
    r = subprocess.run(pod.putburst("burst", str(n), "burst"), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == [201] * n, out
    m1 = pod.metrics()
    d = {k: m1[k] - m0.get(k, 0) for k in ("peak_store_log_syncs_total",
                                           "peak_store_log_records_total",
                                           "peak_store_dir_syncs_total",
                                           "peak_store_commits_total")}
    print(f"{n} concurrent small PUTs: {d}")
    assert d["peak_store_log_records_total"] == n and d["peak_store_commits_total"] == n, d
    assert 1 <= d["peak_store_log_syncs_total"] < n, d  # one flush per group, not per PUT
    assert d["peak_store_dir_syncs_total"] == 0, d  # no file was made
    assert not pod.object_files()
    objs = read_log(pod.data)[0]
    got = {v[0].decode(): v[1] for v in objs.values()}
    for key in out["keys"]:
        assert got[key] == body(key)
        status, hdrs, data = pod.request("GET", key)
        assert status == 200 and data == body(key) and int(hdrs["x-peak-version"]) > 0
        status, hdrs, data = pod.request("HEAD", key)
        assert status == 200 and hdrs["content-length"] == "1024" and not data


def test_restart_rebuilds_the_index_with_overwrites_and_deletes(solo):
    pod = solo()
    pod.start()
    assert pod.request("PUT", "a", b"first")[0] == 201
    assert pod.request("PUT", "a", b"second, longer")[0] == 204  # an overwrite
    assert pod.request("PUT", "b", b"doomed")[0] == 201
    assert pod.request("PUT", "c", b"")[0] == 201  # an empty body is an object too
    assert pod.request("DELETE", "b")[0] == 204
    assert pod.request("GET", "b")[0] == 404
    assert pod.stop() == 0
    text = pod.start()
    assert "store: log: 2 object(s) in 1 segment(s)" in text, text
    assert pod.request("GET", "a")[::2] == (200, b"second, longer")
    assert pod.request("GET", "c")[::2] == (200, b"")
    status, hdrs, _ = pod.request("GET", "b")
    assert status == 404 and int(hdrs["x-peak-deleted"]) > 0  # the tombstone stays
    assert pod.metrics()["peak_store_objects"] == 2
    # the listing shows the log's objects and the delete's tombstone, as for files
    status, _, listing = pod.request("GET", "", path="/s/")
    lines = sorted(line.split()[1:] for line in listing.decode().splitlines())
    assert status == 200 and [ln[0] for ln in lines] == ["a", "b", "c"], lines
    assert lines[1][2:] == ["D"] and len(lines[0]) == len(lines[2]) == 2, lines
    # put again after the delete: back, and the tombstone gone, across a restart too
    assert pod.request("PUT", "b", b"again")[0] == 201
    assert not os.listdir(pod.data / "tomb")
    assert pod.stop() == 0
    pod.start()
    assert pod.request("GET", "b")[::2] == (200, b"again")
    assert not pod.object_files()


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_torn_tail_is_dropped_at_start(solo, damage):
    pod = solo()
    pod.start()
    keys = [f"torn-{i}" for i in range(5)]
    for k in keys:  # one after another: one record, one flush each
        assert pod.request("PUT", k, body(k))[0] == 201
    assert pod.stop() == 0
    seg = pod.data / "log" / "seg-00000001"
    size = seg.stat().st_size
    rec = size // len(keys)
    if damage == "truncate":  # a crash mid-append: the last record cut short
        os.truncate(seg, size - rec // 2)
    else:  # a damaged byte in the last record's body: its check fails
        with open(seg, "r+b") as f:
            f.seek(size - 100)
            b = f.read(1)
            f.seek(size - 100)
            f.write(bytes([b[0] ^ 0x40]))
    text = pod.start()
    assert f"seg-00000001: torn or damaged record at offset {4 * rec}" in text, text
    assert pod.metrics()["peak_store_log_torn_total"] == 1
    for k in keys[:4]:
        assert pod.request("GET", k)[::2] == (200, body(k))
    assert pod.request("GET", keys[4])[0] == 404  # never acknowledged, so gone whole
    assert seg.stat().st_size == 4 * rec
    # the log goes on from the cut: the key again, then a clean restart
    assert pod.request("PUT", keys[4], body(keys[4]))[0] == 201
    assert pod.stop() == 0
    text = pod.start()
    assert "torn or damaged record" not in text and "store: log: 5 object(s)" in text, text
    assert pod.request("GET", keys[4])[::2] == (200, body(keys[4]))


def test_sigkill_during_concurrent_small_puts(solo):
    pod = solo()
    pod.start()
    p = subprocess.Popen(pod.putburst("flood", "8", "800", "flood"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    acked = []
    try:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
        deadline = time.time() + 60
        while len(acked) < 60:
            line = p.stdout.readline()
            assert line and time.time() < deadline, f"only {len(acked)} PUTs acknowledged"
            acked.append(line.split()[1])
        records = pod.metrics()["peak_store_log_records_total"]
        assert records >= 60  # the PUTs go to the log
        pod.stop(signal.SIGKILL)
        assert pod.proc.returncode == -signal.SIGKILL
        rest, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    acked += [line.split()[1] for line in rest.splitlines() if line.startswith("ack ")]
    assert len(acked) < 800, "every PUT finished before the kill: nothing was in flight"
    text = pod.start()
    objs, nsegs, torn = read_log(pod.data)
    got = {v[0].decode(): v[1] for v in objs.values()}
    print(f"SIGKILL after {len(acked)} acknowledged small PUTs: {len(got)} objects in "
          f"{nsegs} segment(s) after the restart; "
          f"{'a torn tail dropped' if 'torn or damaged record' in text else 'no torn tail'}")
    assert not torn  # start-up cut any torn tail
    missing = [k for k in acked if k not in got]
    assert not missing, f"{len(missing)} acknowledged object(s) lost: {missing[:5]}"
    for key, data in got.items():
        assert data == body(key), f"{key}: {len(data)} bytes, not its body"
    assert not pod.object_files() and not [f for f in os.listdir(pod.data)
                                           if f.startswith(".tmp-")]
    for key in acked[:: max(1, len(acked) // 20)]:
        assert pod.request("GET", key)[::2] == (200, body(key))
    assert pod.metrics()["peak_store_objects"] == len(got)


def test_segments_roll_and_large_objects_replace_log_ones(solo):
    pod = solo("--log-segment", "4096", "--log-max", "2048")
    pod.start()
    keys = [f"roll-{i}" for i in range(12)]
    for k in keys:
        assert pod.request("PUT", k, body(k))[0] == 201
    nsegs = read_log(pod.data)[1]
    assert nsegs >= 3, nsegs  # 12 records of about 1.1 KiB, 4 KiB segments
    big = os.urandom(10000)  # over --log-max: a file
    assert pod.request("PUT", keys[0], big)[0] == 204
    assert [len(pod.object_files()), keys[0] in
            {v[0].decode() for v in read_log(pod.data)[0].values()}] == [1, False]
    assert pod.request("GET", keys[0])[::2] == (200, big)
    assert pod.stop() == 0
    text = pod.start()
    assert f"store: log: 11 object(s) in {nsegs} segment(s)" in text, text
    assert pod.request("GET", keys[0])[::2] == (200, big)
    # and back: a small PUT over the file leaves the log's copy only
    assert pod.request("PUT", keys[0], b"small again")[0] == 204
    assert not pod.object_files()
    assert pod.stop() == 0
    pod.start()
    for k in keys:
        assert pod.request("GET", k)[::2] == (200, b"small again" if k == keys[0] else body(k))
    assert pod.metrics()["peak_store_objects"] == len(keys)


def test_compaction_rewrites_mostly_dead_segments(solo):
    # tombstones expire at once: only the log's delete record keeps gone-0 deleted
    pod = solo("--log-segment", "4096", "--tombstone-ttl", "1")
    pod.start()
    # records of 1074 bytes (6-byte keys), three to a segment: seg 1 is keep-0, keep-1 and
    # gone-0; seg 2 starts with churn-0, then the delete of gone-0, churn-1, churn-2
    for k in ["keep-0", "keep-1", "gone-0", "churn-0"]:
        assert pod.request("PUT", k, body(k))[0] == 201
    assert pod.request("DELETE", "gone-0")[0] == 204
    churn = [f"churn-{i}" for i in range(6)]
    final = {}
    for rnd in range(4):  # overwrites: every segment but the last ends up dead
        for k in churn:
            final[k] = body(f"{k}/{rnd}")
            assert pod.request("PUT", k, final[k])[0] in (201, 204)
    wait_for(lambda: pod.metrics()["peak_store_log_compactions_total"] >= 3, "compactions")
    m = pod.metrics()
    print(f"after the churn: {m['peak_store_log_segments']:.0f} segment(s), "
          f"{m['peak_store_log_compactions_total']:.0f} compaction(s), "
          f"{m['peak_store_log_compacted_bytes_total']:.0f} byte(s) freed")
    assert "compacted:" in pod.text()
    segs = sorted(os.listdir(pod.data / "log"))
    # seg 1 stays (two of its three records live): gone-0's put is still in it, so the
    # delete record had to be copied out of seg 2 when seg 2 was compacted away
    assert "seg-00000001" in segs and "seg-00000002" not in segs, segs
    assert body("gone-0") in (pod.data / "log" / "seg-00000001").read_bytes()

    def check():
        for k in ["keep-0", "keep-1"]:
            assert pod.request("GET", k)[::2] == (200, body(k))
        for k, v in final.items():
            assert pod.request("GET", k)[::2] == (200, v)
        assert pod.request("GET", "gone-0")[0] == 404
        assert pod.metrics()["peak_store_objects"] == 2 + len(churn)
    check()
    wait_for(lambda: not os.listdir(pod.data / "tomb"), "the tombstone to expire")
    assert pod.stop() == 0
    pod.start()
    check()  # the index rebuilt from the compacted segments: nothing lost, nothing back
    objs = read_log(pod.data)[0]
    assert sorted(v[0].decode() for v in objs.values()) == sorted(["keep-0", "keep-1", *churn])
