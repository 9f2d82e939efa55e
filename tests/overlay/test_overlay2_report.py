"""bench/report.py's section on the overlay's part 2 (issue 21) from small fixture JSONs (no
root, no bench run; gnuplot draws the plots): a row per figure with its median, its target's
verdict, the runs and the command that produced it (rebuilt from the parameters when an
older JSON lacks it); the plots per run; a missing JSON leaves its row and plot out, and
with none of them the section is left out, without error. And the overlay comparison's table
(part 1) with the warm RTT series (pings 1 ms apart) when its JSON has one, without it when not."""
import json
import os
import re
import subprocess
import sys

SRC = os.environ.get("PEAK_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
REPORT = os.path.join(SRC, "bench", "report.py")

INGRESS = {"systems": [], "runs": 1, "steady": [], "duration_s": 1, "wall_s": 1,
           "versions": {"cpus": 2, "cpu": "test", "memory_gib": 1, "os": "test", "kernel": "6",
                        "nginx": "nginx", "haproxy": "haproxy", "bird": "bird"}}

# mcast.py's JSON as written before it recorded its command line
MCAST = {"members": 16, "count": 2000, "size": 256, "target": 0.8, "median_ratio": 0.75,
         "runs": [{"mcast": {"pps": 35000.0, "received": 32000},
                   "uni": {"pps": 50000.0, "received": 30000}, "ratio": 0.7},
                  {"mcast": {"pps": 30000.0, "received": 32000},
                   "uni": {"pps": 40000.0, "received": 31000}, "ratio": 0.75},
                  {"mcast": {"pps": 45000.0, "received": 31990},
                   "uni": {"pps": 50000.0, "received": 32000}, "ratio": 0.9}]}

RELAY = {"command": "bench/overlay/relay.py --secs 5 --runs 2", "secs": 5, "runs": 2,
         "target_ratio": 0.5, "median": {"ratio": 0.6, "direct_gbit": 1.5, "relayed_gbit": 0.9},
         "each": [{"direct": {"gbit": 1.5}, "relayed": {"gbit": 0.9}, "ratio": 0.6},
                  {"direct": {"gbit": 1.4}, "relayed": {"gbit": 0.84}, "ratio": 0.6}]}

GAPS = {"command": "bench/overlay/gaps.py --runs 2", "runs": 2, "beds": "a fresh one per run",
        "machine": {"cpus": 2, "kernel": "6", "load_before": 3.5},
        "resiliency": {"dead_ms": 600, "median_ms": 700.0, "max_ms": 800.0, "target_ms": 2000.0,
                       "met": True,
                       "each": [{"gap_ms": 600.0, "lost_ms": 550, "both_relayed_s": 0.8,
                                 "direct_again_s": 1.2, "budget_limited": 3},
                                {"gap_ms": 800.0, "lost_ms": 700, "both_relayed_s": 0.9,
                                 "direct_again_s": 2.0, "budget_limited": 5}]},
        "anycast": {"median_ms": 1200.0, "max_ms": 1300.0, "target_ms": 1000.0, "met": False,
                    "each": [{"gap_ms": 1100.0, "stop_to_c_ms": 1000.0, "budget_limited": 0},
                             {"gap_ms": 1300.0, "stop_to_c_ms": 1250.0, "budget_limited": 2}]}}

FASTPATH = {"command": "bench/overlay/compare.py --only peak-fast --runs 2", "secs": 5,
            "runs": 2, "pings": 10, "wall_s": 30, "peers": ["peak-fast"],
            "labels": {"peak-fast": "fast path"},
            "machine": {"cpus": 2, "kernel": "6", "load_before": 1.0},
            "each": [{"peak-fast": {"gbit": 10.25}}, {"peak-fast": {"gbit": 10.75}}],
            "median": {"peak-fast": {"gbit": 10.5, "rtt_min_us": 60.0, "rtt_avg_us": 90.0,
                                     "cpu_s_per_gbit": 0.0}}}


def run_report(tmp, docs):
    """report.py on the fixtures in docs ({option: JSON}); every other input missing."""
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    (tmp / "ingress.json").write_text(json.dumps(INGRESS))
    args = [sys.executable, REPORT, "--in", str(tmp / "ingress.json"), "--out", str(out)]
    for opt in ("dns", "filter", "overlay", "dht-churn", "h3", "store", "steer",
                "controlplane", "overlay-fastpath", "overlay-mcast", "overlay-relay",
                "overlay-gaps"):
        path = tmp / f"{opt}.json"
        if opt in docs:
            path.write_text(json.dumps(docs[opt]))
        else:
            path.unlink(missing_ok=True)
        args += [f"--{opt}", str(path)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return out, (out / "REPORT.md").read_text()


def part2(report):
    """The part-2 section's rows: {figure's first words: [cells]}."""
    sec = report.split("## The IPv6 overlay, part 2")[1].split("\n## ")[0]
    rows = {}
    for line in sec.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("figure",) and not cells[0].startswith("-"):
            rows[cells[0].split(":")[0].split(" ")[0]] = cells
    return sec, rows


def svg_ok(path):
    text = path.read_text()
    return text.lstrip().startswith("<?xml") and "<svg" in text


def test_part2_rows_and_plots(tmp_path):
    out, report = run_report(tmp_path, {"overlay-mcast": MCAST, "overlay-relay": RELAY,
                                        "overlay-gaps": GAPS, "overlay-fastpath": FASTPATH})
    sec, rows = part2(report)
    assert set(rows) == {"multicast", "resiliency", "anycast", "BPF", "relayed"}, rows
    # figure, target, median, verdict, runs, command
    assert rows["multicast"][1:] == [
        "at least 0.80", "0.75", "not met", "0.70 / 0.75 / 0.90",
        "`bench/overlay/mcast.py --members 16 --count 2000 --runs 3 --size 256`"]
    assert rows["resiliency"][1:] == ["at most 2000", "700", "met", "600 / 800",
                                      "`bench/overlay/gaps.py --runs 2`"]
    assert rows["anycast"][1:] == ["at most 1000", "1200", "not met", "1100 / 1300",
                                   "`bench/overlay/gaps.py --runs 2`"]
    assert rows["BPF"][1:] == ["at least 10", "10.50", "met", "10.25 / 10.75",
                               f"`{FASTPATH['command']}`"]
    assert rows["relayed"][1:] == ["at least 0.50", "0.60", "met", "0.60 / 0.60",
                                   f"`{RELAY['command']}`"]
    # the gaps' details and the multicast losses per run
    assert "(beds: a fresh one per run; load average 3.5" in sec
    assert "after 0.80 / 0.90 s" in sec and "550 / 700 ms" in sec
    assert "C's first answer 1000 / 1250 ms" in sec and "resiliency 3 / 5; anycast 0 / 2" in sec
    assert re.search(r"multicast lost 0 / 0 / 10, unicast 2000 / 1000 / 0\b", sec), sec
    for svg in ("overlay2-mcast.svg", "overlay2-relay.svg", "overlay2-gaps.svg"):
        assert f"]({svg})" in sec and svg_ok(out / svg), svg
    gaps = (out / "overlay2-gaps.svg").read_text()
    assert "resiliency target" in gaps and "anycast target" in gaps
    # the fast path's own section is still there, before this one
    assert report.index("(bench/overlay/compare.py)") < report.index("overlay, part 2")


def test_missing_json_left_out(tmp_path):
    # the relay bench not run: its row and plot left out, the rest there
    out, report = run_report(tmp_path, {"overlay-mcast": MCAST, "overlay-gaps": GAPS})
    sec, rows = part2(report)
    assert set(rows) == {"multicast", "resiliency", "anycast"}, rows
    assert "overlay2-relay.svg" not in sec and not (out / "overlay2-relay.svg").exists()
    assert "overlay2-gaps.svg" in sec
    # gaps.py with --only anycast: no resiliency row, the plot has anycast alone
    only = dict(GAPS)
    del only["resiliency"]
    out, report = run_report(tmp_path, {"overlay-gaps": only})
    sec, rows = part2(report)
    assert set(rows) == {"anycast"}, rows
    assert "resiliency target" not in (out / "overlay2-gaps.svg").read_text()
    # none of the part-2 JSONs: no section, no error
    for svg in ("overlay2-mcast.svg", "overlay2-gaps.svg"):
        (out / svg).unlink()
    out, report = run_report(tmp_path, {})
    assert "overlay, part 2" not in report and report.startswith("# PEAK benchmark report")
    assert not any(f.name.startswith("overlay2-") for f in out.iterdir())


# compare.py's JSON with the warm series; OLD the same as written before it
COMPARE = {"command": "bench/overlay/compare.py --only ipv4,peak", "secs": 5, "runs": 1,
           "pings": 100, "wall_s": 40, "peers": ["ipv4", "peak"], "warm_interval_s": 0.001,
           "labels": {"ipv4": "IPv4 path", "peak": "peak overlay"},
           "machine": {"cpus": 2, "kernel": "6", "load_before": 1.0},
           "median": {"ipv4": {"gbit": 4.5, "rtt_min_us": 35.0, "rtt_avg_us": 57.0,
                               "rtt_warm_min_us": 8.0, "rtt_warm_avg_us": 17.0,
                               "cpu_s_per_gbit": None},
                      "peak": {"gbit": 2.0, "rtt_min_us": 175.0, "rtt_avg_us": 281.0,
                               "rtt_warm_min_us": 50.0, "rtt_warm_avg_us": 309.0,
                               "cpu_s_per_gbit": 0.29}}}
OLD = {**COMPARE, "median": {p: {k: v for k, v in m.items() if "warm" not in k}
                             for p, m in COMPARE["median"].items()}}
del OLD["warm_interval_s"]


def overlay_rows(report):
    sec = report.split("## The IPv6 overlay against VXLAN")[1].split("\n## ")[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in sec.splitlines()
            if line.startswith("| ")]


def test_overlay_warm_rtt(tmp_path):
    _, report = run_report(tmp_path, {"overlay": COMPARE})
    rows = overlay_rows(report)
    assert rows[0][-2:] == ["warm RTT min / mean us", "warm added RTT min us"]
    peak = [r for r in rows if r[0] == "peak overlay"][0]
    assert peak[4:] == ["+140", "50 / 309", "+42"]
    assert "1 ms apart" in report


def test_overlay_without_warm_rtt(tmp_path):
    _, report = run_report(tmp_path, {"overlay": OLD})
    rows = overlay_rows(report)
    assert rows[0][-1] == "added RTT min us"
    assert [r for r in rows if r[0] == "peak overlay"][0][4:] == ["+140"]
