"""peak h3 ingress (the Proposed system) carried its small streams at a crawl under 1% loss
(issue 16: audio p99 280 ms, up to 950 ms in some runs, against 136 ms straight to the pod):
its upstream QUIC connections are long-lived, made while the path took ~50 us, and ngtcp2
0.12's congestion control caps the window at 2.89 x the best delivery rate x the least RTT the
connection ever saw, with no sliding window. Once the bench's relay added 5 ms each way the
cap stayed at ~46 KB (4.5 MB/s at 10 ms) for every upload through that upstream, while the
client's fresh connection to the ingress had no such cap.

Now the ingress moves such a connection to a new local port when the path's RTT has grown far
above the least it saw (RFC 9000 §9.4: a new path starts a new RTT estimate and congestion
state). Checked on the bench's testbed (bench/h3/run.py's namespaces, the relay with delay and
no loss): after the delay is added and an upload crosses it, the ingress logs the renewal,
the upstream connections' least RTT in their qlog rises from the sub-millisecond one to the
delayed path's (the old code's never rose again), and the uploads' checksums are right.
"""
import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

from peaktest import PEAK

SRC = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
DELAY_MS = 5  # one way, per crossing of the router: the ingress-pod RTT grows by 10 ms

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


h3run = load("h3run_rg_renew", os.path.join(SRC, "bench", "h3", "run.py"))


class QlogBed(h3run.Bed):
    """The bench's testbed, with the ingress writing qlog into qdir."""

    qdir = None

    def start(self, k, argv, log):
        if argv[:2] == ["h3", "ingress"]:
            argv = argv + ["--qlog", str(self.qdir)]
        return super().start(k, argv, log)


def events(path):
    """The records of a JSON-SEQ qlog file."""
    for line in Path(path).read_text(errors="replace").splitlines():
        line = line.strip().lstrip("\x1e")
        if line:
            try:
                yield json.loads(line)
            except ValueError:
                pass


def renewals(log):
    """The audio upstream's path renewals the ingress logged so far."""
    return len(re.findall(r"upstream \[2001:db8:a1::1\]:\d+: RTT [0-9.]+ ms, least seen "
                          r"[0-9.]+ ms: moved to a new local port", log.read_text()))


def test_ingress_upstream_path_renewed_when_rtt_grows(tmp_path):
    h3run.directbed.PEAK = h3run.peaktest.PEAK = PEAK
    bed = QlogBed(f"rgpr{os.getpid() % 100000}", tmp_path)
    bed.qdir = tmp_path / "qlog"
    bed.qdir.mkdir()
    a = type("A", (), dict(audio=2, audio_size=256 * 1024, video=1, video_size=1024 * 1024,
                           small_size=1024, timeout_ms=30000, connections=1, peak=PEAK,
                           quick=False))()
    log = tmp_path / "ingress-proposed.log"
    try:
        bed.up(["proposed"])
        b = h3run.Bench(a, bed, ["proposed"])
        b.make_files()
        b.wait_serving("proposed")
        # the upstream connections' least RTT is the veths' (well under a millisecond)
        r = b.client("proposed", b.files)
        assert r["ok"], r
        before = renewals(log)
        bed.loss(0, DELAY_MS)  # the relay: no loss, 5 ms each way
        try:
            for _ in range(2):
                r = b.client("proposed", b.files)
                assert r["ok"], r
            # the audio upstream's renewal since the delay: by the uploads' samples or an idle
            # health check (one before it, on a loaded host's inflated samples, counts not)
            h3run.directbed.wait_for(lambda: renewals(log) > before, 20,
                                     "the audio upstream's path renewed")
            r = b.client("proposed", b.files)  # and streams still go through it
            assert r["ok"], r
        finally:
            bed.lossless()
    finally:
        bed.down()  # the ingress stops: its qlog files are complete
    # the ingress's upstream connections (its client side): the busier one carried the audio
    # or the video; both must know the delayed path's RTT by now
    ups = [q for q in bed.qdir.glob("*-client.sqlog") if q.stat().st_size > 20000]
    assert len(ups) == 2, sorted(p.name for p in bed.qdir.iterdir())
    for q in ups:
        mins = [e["data"]["min_rtt"] for e in events(q)
                if e.get("name") == "recovery:metrics_updated" and "min_rtt" in e["data"]]
        renewed = [e for e in events(q) if e.get("name") == "peak:path_renewed"]
        assert renewed, f"{q.name}: no path renewal in the qlog"
        # ms in ngtcp2's qlog: once the veths' RTT was seen (0 on a quiet host), the old
        # code's least RTT never rose again; now it follows the delayed path (and falls back
        # once the delay is gone, as a least RTT does). On a host so loaded (ASan) that the
        # connection's least RTT was never under the delayed path's, there is nothing to rise
        # from: the renewal above is then what tells the code apart.
        delayed = 2 * DELAY_MS * 0.8
        below = [i for i, m in enumerate(mins) if m < delayed]
        if below:
            after = mins[below[0]:]
            assert max(after) >= delayed, (q.name, sorted(set(after)))
    assert "moved to a new local port" in log.read_text()
