"""The HTTP/3 benchmark's harness (bench/h3/run.py --quick: tiny files, one run; here with one
upload of Proposed under 5% loss and 5 ms delay, so that the lossy path is exercised too) and
its section of the report (bench/report.py): the JSON is complete for every system this
build can run, every checksum passed, the router dropped packets, and the tables and plots
are made from it. No speed is asserted. A system whose uploads fail must show as failed, not as a
figure."""
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


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


h3run = load("h3run", RUN)
report = load("report", os.path.join(SRC, "bench", "report.py"))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
def test_quick_run_and_report(tmp_path):
    if sanitized():
        pytest.skip("the harness is checked in the plain build (make test's time budget)")
    out = tmp_path / "h3.json"
    p = subprocess.run(["/usr/bin/python3", RUN, "--quick", "--loss-runs", "1", "--loss", "5",
                        "--loss-systems", "proposed",
                        "--peak", PEAK, "--out", str(out)],
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    d = json.loads(out.read_text())
    skipped = h3run.skip_reasons(PEAK, h3run.SYSTEMS)
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
        if s == "proposed":
            assert len(r["loss"]) == 1 and r["loss"][0]["ok"], r["loss"]
            assert x["loss_audio_samples"] == d["files"]["audio"][0]
        else:
            assert r["loss"] == [] and x["loss_audio_p99_ms"] is None
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
    assert "Under 5% random loss (bench/h3/lossy.py" in text and "delayed 5 ms each way" in text


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
    assert h3run.percentile(list(range(1, 101)), 50) == 50


def ping(ns, dst, count, wait_s=2):
    """ping's received count and average round trip (ms, None if nothing came back)."""
    p = subprocess.run(["ip", "netns", "exec", ns, "ping", "-6", "-c", str(count), "-i", "0.2",
                        "-W", str(wait_s), dst], capture_output=True, text=True, timeout=60)
    got = int(re.search(r"(\d+) received", p.stdout).group(1))
    m = re.search(r"= [0-9.]+/([0-9.]+)/", p.stdout)
    return got, float(m.group(1)) if m else None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
def test_lossy_path_delays_and_drops(tmp_path):
    """bench/h3/lossy.py on a router between two namespaces, steered by run.py's rules: every
    crossing is delayed (a ping's round trip crosses twice), 100% loss drops everything and
    counts it, and taking the rules out gives the plain path back."""
    tag = f"h3lp{os.getpid() % 100000}"
    ns = {k: f"{tag}{k}" for k in "crs"}
    procs = []

    def lossy(*args):
        f = open(tmp_path / f"lossy{len(procs)}.log", "w+")
        p = subprocess.Popen(["ip", "netns", "exec", ns["r"], "/usr/bin/python3", LOSSY,
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
        assert got == 3 and rtt < 25, rtt  # the plain path
        p, f = lossy("--loss", "0", "--delay-ms", "25")
        got, rtt = ping(ns["c"], "fd00:d::2", 3)
        n = stop(p, f)
        assert got == 3 and rtt >= 50, rtt  # 25 ms on the way there and back
        assert n["received"] >= 6 and n["sent"] + n["queued"] == n["received"], n
        assert n["dropped"] == n["overflow"] == n["write_errors"] == 0, n
        p, f = lossy("--loss", "100", "--delay-ms", "0")
        got, _ = ping(ns["c"], "fd00:d::2", 3, wait_s=1)
        n = stop(p, f)
        assert got == 0 and n["dropped"] >= 3 and n["sent"] == 0, n
        got, rtt = ping(ns["c"], "fd00:d::2", 3)
        assert got == 3 and rtt < 25, rtt  # the rules are out: the plain path again
    finally:
        for p, f in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            f.close()
        for n in ns.values():
            subprocess.run(["ip", "netns", "del", n], capture_output=True, timeout=30)
