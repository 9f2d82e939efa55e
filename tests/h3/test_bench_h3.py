"""The HTTP/3 benchmark's harness (bench/h3/run.py --quick: tiny files, one run; here with one
upload of Proposed and of Legacy under 5% loss and 5 ms delay, so that the lossy path and the
per-stream stall measure are exercised too) and its section of the report (bench/report.py):
the JSON is complete for every system this build can run, every checksum passed, the router
dropped packets, and the tables and plots are made from it. No speed is asserted. A system
whose uploads fail must show as failed, not as a figure. The stall measure
(bench/h3/stall.py) is checked on made-up traces where the answer is known."""
import importlib.util
import json
import os
import re
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peaktest import sanitized  # noqa: E402

SRC = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
PEAK = os.environ.get("PEAK_BIN", os.path.join(SRC, "build", "peak"))
RUN = os.path.join(SRC, "bench", "h3", "run.py")
LOSSY = os.path.join(SRC, "bench", "h3", "lossy.py")
STALL = os.path.join(SRC, "bench", "h3", "stall.py")
# the relay in C (bench/h3/lossy.c), built beside the peak under test
LOSSY_C = os.path.join(os.path.dirname(os.path.abspath(PEAK)), "bench", "lossy")
RELAYS = {"py": ["/usr/bin/python3", LOSSY], "c": [LOSSY_C]}


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


h3run = load("h3run", RUN)
stall = load("stall", STALL)
lossy_mod = load("lossy", LOSSY)
report = load("report", os.path.join(SRC, "bench", "report.py"))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
def test_quick_run_and_report(tmp_path):
    if sanitized():
        pytest.skip("the harness is checked in the plain build (make test's time budget)")
    out = tmp_path / "h3.json"
    skipped = h3run.skip_reasons(PEAK, h3run.SYSTEMS)
    lossy = ["proposed"] + ([] if "legacy" in skipped else ["legacy"])
    p = subprocess.run(["/usr/bin/python3", RUN, "--quick", "--loss-runs", "1", "--loss", "5",
                        "--loss-systems", ",".join(lossy),
                        "--peak", PEAK, "--out", str(out)],
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    d = json.loads(out.read_text())
    # every system runs unless this build lacks what it needs, and then says why
    assert sorted(d["systems"]) == sorted(s for s in h3run.SYSTEMS if s not in skipped)
    assert {"proposed", "peak-direct"} <= set(d["systems"])
    assert d["skipped"] == skipped
    for s in skipped:
        assert f"{s}: skipped: " in p.stdout
    n = d["files"]["audio"][0] + d["files"]["video"][0]
    for s in d["systems"]:
        r, x = d["results"][s], d["summary"][s]
        assert len(r["mixed"]) == len(r["setup"]) == 1, s
        if s in lossy:
            lo = r["loss"][0] if r["loss"] else {}
            assert len(r["loss"]) == 1 and lo["ok"], (s, lo.get("rc"), lo.get("err"),
                                                      lo.get("failed_streams"),
                                                      lo.get("streams_ok"))
            assert x["loss_audio_samples"] == d["files"]["audio"][0]
            # the per-stream stall measure had what it needs: the client's qlog (QUIC) or
            # its TCP progress file (HTTP/2, PEAK_H3_PROGRESS), every stream's pieces, most
            # acknowledged by the end, and the relay's drops of the client's data packets
            # (5% of about 190: none at all has odds under 1e-4)
            st = r["loss"][0]["stall"]
            assert "error" not in st and st["streams"] == n, st
            assert st["pieces"] >= d["files"]["total_bytes"] // 1500, st
            assert st["pieces_acked"] >= 0.9 * st["pieces"], st
            assert st["drops"] > 0 and len(st["records"]) <= st["isolated"] <= st["drops"], st
            ls = x["loss_stall"]
            assert ls["client_drops"] == st["drops"] and ls["drops"] == len(st["records"])
            assert ls["stalled_ms"] == st["stalled_ms"] == 5 and st["window_ms"] >= 2
            ex = x["loss_hol_excess"]  # None when no drop (or no control point) was judged
            assert ex is None or ex == ls["stalled_share"] - \
                x["loss_stall_control"]["stalled_share"], x
            for rec in st["records"] + st["control"]:
                assert rec["victim_type"] in ("audio/ogg", "video/mp4"), rec
                assert rec["others"] and all(v >= 0 for _, _, v in rec["others"]), rec
        else:
            assert r["loss"] == [] and x["loss_audio_p99_ms"] is None
            assert x["loss_stall"] is None
        m = r["mixed"][0]
        assert m["ok"] and m["streams"] == m["streams_ok"] == n, (s, m)
        assert len(m["audio_ms"]) == d["files"]["audio"][0]
        assert m["connections"] == (2 if s == "peak-direct" else 1)
        assert m["cluster_cpu_s"] > 0 and m["goodput_mbps"] > 0
        assert x["checksums_ok"], (s, r)
        assert x["ttfb_ms"] > x["setup_1rtt_ms"] > 0
        if r["setup"][0]["early"] == "accepted":
            assert x["ttfb_0rtt_ms"] > 0
    for s in ("proposed", "peak-direct"):  # QUIC both: resumed, the request sent as 0-RTT
        u = d["results"][s]["setup"][0]
        assert u["resumed"] and not u["resumed_1rtt"] and u["early"] in ("accepted", "rejected"), u
    # 5% of several hundred packets forwarded (256 KiB client to ingress and again ingress to
    # pods, and the acknowledgements): none dropped at all would take odds under 1e-6
    assert d["loss_pct"] == 5 and d["loss_dropped_packets"] > 0
    # through the lossy path (bench/h3/lossy.py): delayed 5 ms each way, so ping's round
    # trip through it is at least 10 ms; every packet dropped, sent or still queued
    lp = d["loss_path"]
    assert d["loss_delay_ms"] == 5 and lp["rtt_ms"] >= 10, lp
    assert lp["received"] == lp["dropped"] + lp["overflow"] + lp["sent"] + lp["queued"], lp
    assert lp["dropped"] == d["loss_dropped_packets"] and lp["write_errors"] == 0, lp
    # (which congestion control QUIC runs is checked in tests/h3/test_cc.c: the report's
    # quic_cc is derived from the same sysctl, so comparing the two here could not fail)
    assert d["versions"]["quic_cc"]
    # the table printed, one row per system
    for s in d["systems"]:
        assert any(line.startswith(s + " ") and line.endswith("yes")
                   for line in p.stdout.splitlines()), p.stdout
    lines, plots = report.h3_section(str(out), str(tmp_path))
    text = "\n".join(lines)
    assert text.startswith("## HTTP/3")
    for s in d["systems"]:
        assert f"| {report.H3_NAMES[s]} | " in text and "all ok |" in text
    assert "FAILED" not in text
    assert [f for f, _ in plots] == ["h3-goodput.svg", "h3-loss.svg"]
    for f, _ in plots:
        svg = (tmp_path / f).read_text()
        assert "<svg" in svg and "gnuplot_plot_2" in svg
    relay = "lossy.c" if d["loss_path"].get("relay") == "c" else "lossy.py"
    assert f"Under 5% random loss (bench/h3/{relay}" in text and "delayed 5 ms each way" in text
    if any(d["summary"][s].get("loss_stall") for s in d["systems"]):  # the per-stream table
        assert "Head-of-line blocking, measured per stream" in text


def test_failed_upload_is_not_a_figure():
    """What the client prints for a stream whose checksum did not match, or that got no
    201, makes the run fail: no goodput, checksums_ok false, FAILED in the report."""
    good = ("stream=0 file=a0.ogg type=audio/ogg status=201 backend=pod-a checksum=ok "
            "bytes=10 sha256=ab time_ms=1.5\n")
    bad = ("stream=4 file=v0.mp4 type=video/mp4 status=201 backend=pod-v checksum=MISMATCH "
           "bytes=10 sha256=cd time_ms=2.0\n"
           "stream=8 file=v1.mp4 type=video/mp4 status=415 backend=pod-a checksum=- "
           "bytes=10 sha256=ef time_ms=2.0\n")
    summary = "upload: 3 streams, 1 ok, 2 failed, 30 bytes in 0.010 s, handshake 1.2 ms\n"
    streams, conns = h3run.parse_upload(good + bad + summary)
    assert [s["ok"] for s in streams] == [True, False, False]
    assert conns == [{"streams": 3, "ok": 1, "failed": 2, "bytes": 30, "s": 0.01,
                      "handshake_ms": 1.2, "resumed": False, "early": None}]
    _, conns = h3run.parse_upload(summary.replace("ms\n", "ms (resumed) (0-RTT accepted)\n"))
    assert conns[0]["resumed"] and conns[0]["early"] == "accepted"
    mixed = {"ok": False, "goodput_mbps": None, "cpu_ms_per_mb": 1.0, "audio_ms": [1.5],
             "connections": 1}
    setup = {"ok": True, "ttfb_ms": 2.0, "setup_1rtt_ms": 1.0}
    x = h3run.summarize({"proposed": {"mixed": [mixed], "setup": [setup], "loss": []}})
    assert not x["proposed"]["checksums_ok"] and x["proposed"]["goodput_mbps"] is None
    assert h3run.percentile([5, 1, 3, 2, 4], 99) == 5 and h3run.percentile([], 99) is None
    assert h3run.excess({"stalled_share": 0.75}, {"stalled_share": 0.25}) == 0.5
    assert h3run.excess({"stalled_share": None}, {"stalled_share": 0.25}) is None
    assert h3run.percentile(list(range(1, 101)), 50) == 50


def ping(ns, dst, count, wait_s=2):
    """ping's received count and average round trip (ms, None if nothing came back)."""
    p = subprocess.run(["ip", "netns", "exec", ns, "ping", "-6", "-c", str(count), "-i", "0.2",
                        "-W", str(wait_s), dst], capture_output=True, text=True, timeout=60)
    got = int(re.search(r"(\d+) received", p.stdout).group(1))
    m = re.search(r"= [0-9.]+/([0-9.]+)/", p.stdout)
    return got, float(m.group(1)) if m else None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
@pytest.mark.parametrize("relay", ["py", "c"])
def test_lossy_path_delays_and_drops(tmp_path, relay):
    """bench/h3/lossy.py, and its twin in C (bench/h3/lossy.c), on a router between two
    namespaces, steered by run.py's rules: every crossing is delayed (a ping's round trip
    crosses twice), 100% loss drops everything, counts it and logs each drop (the pings:
    ICMPv6 from the client to the server), and taking the rules out gives the plain path
    back."""
    if relay == "c" and not os.access(LOSSY_C, os.X_OK):
        pytest.skip(f"{LOSSY_C} is not built (bench/meson.build, not in a fuzz build)")
    tag = f"h3lp{relay}{os.getpid() % 100000}"
    ns = {k: f"{tag}{k}" for k in "crs"}
    procs = []

    def lossy(*args):
        f = open(tmp_path / f"lossy{len(procs)}.log", "w+")
        p = subprocess.Popen(["ip", "netns", "exec", ns["r"], *RELAYS[relay],
                              "--dev", f"{tag}t", *args], stdout=f, stderr=subprocess.STDOUT)
        procs.append((p, f))
        deadline = time.monotonic() + 20
        while "lossy: ready" not in (tmp_path / f"lossy{len(procs) - 1}.log").read_text():
            assert p.poll() is None and time.monotonic() < deadline, f.name
            time.sleep(0.02)
        h3run.ip_batch(h3run.lossy_rules("add", f"{tag}t", [f"{tag}c0", f"{tag}s0"]), ns["r"],
                       ("-6",))
        return p, f

    def stop(p, f):
        h3run.ip_batch(h3run.lossy_rules("del", f"{tag}t", [f"{tag}c0", f"{tag}s0"]), ns["r"],
                       ("-6",))
        p.terminate()
        p.wait(10)
        f.seek(0)
        return json.loads(re.search(r"^lossy: (\{.*\})$", f.read(), re.M).group(1))

    try:
        h3run.ip_batch([f"netns add {n}" for n in ns.values()])
        for k, net in (("c", "c"), ("s", "d")):
            h3run.ip_batch([f"link add {tag}{k}0 netns {ns['r']} type veth peer name {tag}{k}1 "
                            f"netns {ns[k]}"])
            h3run.ip_batch([f"addr add fd00:{net}::1/64 dev {tag}{k}0 nodad",
                            f"link set {tag}{k}0 up", "link set lo up"], ns["r"])
            h3run.ip_batch([f"addr add fd00:{net}::2/64 dev {tag}{k}1 nodad",
                            f"link set {tag}{k}1 up", f"route add default via fd00:{net}::1"],
                           ns[k])
        subprocess.run(["ip", "netns", "exec", ns["r"], "sysctl", "-qw",
                        "net.ipv6.conf.all.forwarding=1"], check=True)
        deadline = time.monotonic() + 20  # the links up, the neighbours known
        while ping(ns["c"], "fd00:d::2", 1, wait_s=1)[0] != 1:
            assert time.monotonic() < deadline, "no ping through the plain path in 20 s"
        got, rtt = ping(ns["c"], "fd00:d::2", 3)
        # the plain path (its round trip printed, not bounded: a loaded machine stretches it)
        print(f"plain path: {rtt} ms")
        assert got == 3, got
        p, f = lossy("--loss", "0", "--delay-ms", "25")
        got, rtt = ping(ns["c"], "fd00:d::2", 3)
        n = stop(p, f)
        assert got == 3 and rtt >= 50, rtt  # 25 ms on the way there and back
        assert n["received"] >= 6 and n["sent"] + n["queued"] == n["received"], n
        assert n["dropped"] == n["overflow"] == n["write_errors"] == 0, n
        p, f = lossy("--loss", "100", "--delay-ms", "0", "--drops", str(tmp_path / "drops"))
        t0 = time.monotonic_ns()
        got, _ = ping(ns["c"], "fd00:d::2", 3, wait_s=1)
        t1 = time.monotonic_ns()
        n = stop(p, f)
        assert got == 0 and n["dropped"] >= 3 and n["sent"] == 0, n
        drops = stall.read_drops(tmp_path / "drops")
        assert len(drops) == n["dropped"], drops
        pings = [d for d in drops if d[1:4] == ("fd00:c::2", "fd00:d::2", "58")]
        # the relay's clock is the benchmark's (CLOCK_MONOTONIC): the pings' drops fall
        # within the pings' time
        assert len(pings) >= 3 and all(t0 <= d[0] <= t1 for d in pings), (t0, t1, drops)
        assert all(d[4] >= 48 and d[5] == "-" for d in pings), pings
        # the rules are out (read from the router, not from a round trip: with them in and
        # the relay's device gone the pings take the main table too), the plain path again
        rules = subprocess.run(["ip", "-n", ns["r"], "-6", "rule", "show"], capture_output=True,
                               text=True, check=True).stdout
        assert "lookup 200" not in rules and f"iif {tag}t" not in rules, rules
        got, rtt = ping(ns["c"], "fd00:d::2", 3)
        print(f"plain path again: {rtt} ms")
        assert got == 3, got
    finally:
        for p, f in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            f.close()
        for n in ns.values():
            subprocess.run(["ip", "netns", "del", n], capture_output=True, timeout=30)


MS = 1_000_000


def rr_pieces(streams, t0, t1, step, delay):
    """Pieces sent round robin over streams every step ns from t0 to t1, each acknowledged
    delay(stream, t_sent) ns after it left."""
    out, t, i = [], t0, 0
    while t < t1:
        k = streams[i % len(streams)]
        out.append((k, t, t + delay(k, t)))
        t += step
        i += 1
    return out


def test_stall_tells_head_of_line_blocking():
    """On made-up traces with a known answer: one loss at td repaired 30 ms later. Over one
    byte stream (TCP) every stream's pieces sent after it wait for the repair; over QUIC only
    the stream that lost does. The measure finds the others stalled in the first case, not
    in the second, names the stream that lost, and finds no stall away from the drop."""
    types = {"a": "audio/ogg", "b": "audio/ogg", "v": "video/mp4"}
    td, repair, base = 100 * MS, 130 * MS, 10 * MS

    def tcp(k, t):  # sent from td until the repair: acknowledged with it
        return max(base, repair + base - t) if td <= t < repair else base

    def quic(k, t):
        return tcp(k, t) if k == "v" else base

    for delay, hol in ((tcp, True), (quic, False)):
        pieces = rr_pieces(["a", "b", "v"], 0, 300 * MS, MS // 10, delay)
        recs = stall.stalls(pieces, types, [td], 15 * MS)
        assert len(recs) == 1
        others = {k: v for k, _, v in recs[0]["others"]}
        assert len(others) == 2
        if hol:
            assert all(v >= 15 for v in others.values()), recs
        else:
            assert recs[0]["victim"] == "v" and recs[0]["victim_type"] == "video/mp4"
            assert others == {"a": 0, "b": 0}, recs
        x = stall.summary(recs, 5)
        assert x["drops"] == 1 and x["pairs"] == 2
        assert x["audio_pairs"] == sum(types[k] == "audio/ogg" for k in others)
        assert x["stalled_share"] == (1.0 if hol else 0.0)
        # control points keep away from the drop: nothing stalls there
        pts = stall.control_points(pieces, [td], 15 * MS)
        assert pts and all(not td - 15 * MS <= t <= td + 45 * MS for t in pts), pts
        ctl = stall.stalls(pieces, types, pts, 15 * MS)
        assert ctl and stall.summary(ctl, 5)["stalled_share"] == 0.0
    # a drop with another near is not judged: the streams stalled there may have lost
    # their own packet
    assert stall.isolated([td, td + 10 * MS, 300 * MS], 15 * MS) == [300 * MS]
    assert stall.isolated([td, td + 20 * MS, 300 * MS], 15 * MS) == [td, 300 * MS]
    assert stall.isolated([td, td + 31 * MS], 15 * MS) == [td, td + 31 * MS]
    # one stream alone around the drop: nothing to compare, not judged
    assert stall.stalls([("a", t, t + base) for t in range(0, 200 * MS, MS)], types, [td],
                        15 * MS) == []
    assert stall.summary([], 5)["stalled_share"] is None


def test_stall_reads_qlog_and_tcp_progress(tmp_path):
    """The pieces and their in-order acknowledgement times from a client's qlog (a lost
    packet of stream 0 holds stream 0's later piece until its retransmission is
    acknowledged, not stream 4's) and from the HTTP/2 client's TCP progress lines (a piece
    is acknowledged when the cumulative counter passes its end)."""
    def rec(name, data, t=None):
        r = {"name": name, "data": data}
        if t is not None:
            r["time"] = t
        return "\x1e" + json.dumps(r) + "\n"

    def sent(t, pn, frames):
        return rec("transport:packet_sent", {"header": {"packet_type": "1RTT",
                   "packet_number": pn}, "frames": [
            {"frame_type": "stream", "stream_id": s, "offset": o, "length": n}
            for s, o, n in frames]}, t)

    def ack(t, ranges):
        return rec("transport:packet_received", {"header": {"packet_type": "1RTT"},
                   "frames": [{"frame_type": "ack", "acked_ranges": ranges}]}, t)

    q = tmp_path / "x-client.sqlog"
    q.write_text(rec("peak:clock", {"start_monotonic_ns": 1000 * MS}, 0.5) +
                 rec("http:request_headers", {"stream_id": 0, "content_type": "audio/ogg"},
                     1.0) +
                 rec("http:request_headers", {"stream_id": 4, "content_type": "video/mp4"},
                     1.0) +
                 sent(2, 0, [(0, 0, 1000)]) + sent(3, 1, [(0, 1000, 1000)]) +
                 sent(4, 2, [(4, 0, 1000)]) + sent(5, 3, [(0, 2000, 500), (4, 1000, 500)]) +
                 ack(12, [[2, 3], [0]]) +  # 1 lost: stream 0's 1000..2000
                 sent(20, 4, [(0, 1000, 1000)]) +  # its retransmission: not a new piece
                 ack(30, [[4]]) + '{"cut short')
    pieces, types = stall.quic_pieces(q, "c0")
    assert types == {"c0:0": "audio/ogg", "c0:4": "video/mp4"}
    got = sorted((k, (s - 1000 * MS) // MS, (a - 1000 * MS) // MS) for k, s, a in pieces)
    assert got == [("c0:0", 2, 12), ("c0:0", 3, 30), ("c0:0", 5, 30),
                   ("c0:4", 4, 12), ("c0:4", 5, 12)], got
    q.write_text(sent(2, 0, [(0, 0, 1000)]))
    with pytest.raises(ValueError):
        stall.quic_pieces(q)  # no peak:clock: its times cannot be lined up
    p = tmp_path / "progress.txt"
    p.write_text("T 10 100 100 100\nD 11 1 3000 2800\nD 12 3 5800 2800\n"
                 "T 13 5800 3000 100\nT 20 5800 5800 1600\nT 40 5800 5800 5800\n")
    pieces, types = stall.tcp_pieces(p, {1: "audio/ogg", 3: "video/mp4"})
    assert types == {"h2:1": "audio/ogg", "h2:3": "video/mp4"}
    assert sorted(pieces) == [("h2:1", 13, 20), ("h2:1", 13, 40), ("h2:3", 20, 40),
                              ("h2:3", 20, 40)], pieces


def test_lossy_drop_lines(tmp_path):
    """What the relay writes of a dropped packet: its addresses, protocol, length and
    destination port, read back with the benchmark's filter (the client's data packets to
    one port, in the upload's time span)."""
    import ipaddress
    head = (bytes([0x60, 0, 0, 0, 0x05, 0x00, 17, 64]) +
            ipaddress.IPv6Address("fd00:c::2").packed +
            ipaddress.IPv6Address("fd00:e::2").packed + (50000).to_bytes(2, "big") +
            (4433).to_bytes(2, "big"))
    assert lossy_mod.drop_line(5, head, 1280) == "5 fd00:c::2 fd00:e::2 17 1280 4433"
    assert lossy_mod.drop_line(6, b"\x45" + bytes(43), 60) == "6 - - - 60 -"
    lossy_mod.write_drops(tmp_path / "d", [(5, head, 1280), (7, head, 1280), (8, head, 80),
                                          (9, head[:40], 1280)])
    drops = stall.read_drops(tmp_path / "d")
    assert len(drops) == 4
    assert stall.client_drops(drops, "fd00:c::2", ("fd00:e::2",), "17", 4433, 0, 7) == [5, 7]
    assert stall.client_drops(drops, "fd00:c::2", ("fd00:e::2",), "6", 4433, 0, 99) == []
    assert stall.touching(drops, "fd00:c::2", "17", 0, 99) == [5, 7, 8, 9]
