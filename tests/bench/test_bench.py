"""The benchmark drivers on a tiny run: bench/ingress/run.py for 2 s per cell (every system,
one closed-loop and one open-loop cell; a pod killed, a pod added, a small flood), bench/dns/run.sh for 2 s, then
bench/report.py; the report must parse and every system must have non-zero figures."""
import importlib.util
import ipaddress
import json
import os
import re
import subprocess

import pytest

SRC = os.environ.get("PEAK_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
PEAK = os.environ.get("PEAK_BIN", os.path.join(SRC, "build", "peak"))
OBJ = os.environ.get("FILTER_OBJ", os.path.join(SRC, "build", "filter.bpf.o"))
FLOOD = os.environ.get("FLOOD_BIN", os.path.join(SRC, "build", "bench", "flood"))
SYSTEMS = ["direct", "PEAK", "DNS-steered", "nginx L7", "HAProxy L4", "HAProxy L7"]

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, XDP)")


def ingress_bench():
    spec = importlib.util.spec_from_file_location(
        "ingress_run", os.path.join(SRC, "bench", "ingress", "run.py"))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def test_each_run_draws_its_own_clients():
    """Steady-state run r's emulated clients come from their own /52 of the clients' /48, so
    the medians over runs sample how clients hash over the pods (not one draw, repeated);
    each holds the 256 clients of the largest cell (peak load wants more /64s than clients)."""
    m = ingress_bench()
    all_src = ipaddress.IPv6Network(m.SOURCES)
    nets = [ipaddress.IPv6Network(m.run_sources(r)) for r in range(5)]
    assert len(set(nets)) == 5
    for n in nets:
        assert n.subnet_of(all_src) and 2 ** (64 - n.prefixlen) > 256


@ROOT_ONLY
def test_drivers_and_report(tmp_path):
    out = tmp_path / "ingress.json"
    p = subprocess.run(["/usr/bin/python3", os.path.join(SRC, "bench/ingress/run.py"),
                        "--runs", "1", "--duration", "2", "--concurrency", "16", "--rates",
                        "2000", "--new-conn", "0", "--scenarios", "kill,add,flood",
                        "--flood-pps", "5000", "--flood-bin", FLOOD,
                        "--scenario-seconds", "3", "--heal-seconds", "0.5", "--peak", PEAK,
                        "--filter-obj", OBJ, "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    d = json.loads(out.read_text())
    assert len(d["steady"]) == 2 * 6 and len(d["scenarios"]) == 3 * 6
    for r in d["steady"]:
        assert r["ok"] > 0 and r["failed"] == 0, (r["system"], r["errors"])
        assert r["cluster_cpu_s"] > 0 and r["cluster_rss_kib"] > 0
        assert r["sources"] == ingress_bench().run_sources(0)
    dns = tmp_path / "dns.md"
    p = subprocess.run(["sh", os.path.join(SRC, "bench/dns/run.sh"), "2"], cwd=SRC,
                       env={**os.environ, "OUT": str(dns), "PEAK": PEAK},
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    p = subprocess.run(["/usr/bin/python3", os.path.join(SRC, "bench/report.py"), "--in",
                        str(out), "--dns", str(dns), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    report = (tmp_path / "REPORT.md").read_text()
    # the headline table: every system with a positive rate and ratios
    head = report.split("## Headline")[1].split("\n## ")[0]
    for s in SYSTEMS:
        m = re.search(rf"^\| {re.escape(s)} \| (\d+) \| ([0-9.]+) \| ([0-9.]+) \|", head, re.M)
        assert m and int(m.group(1)) > 0 and float(m.group(2)) > 0, (s, head)
    for svg in ("latency-cdf.svg", "rps.svg", "cpu.svg", "outage-kill.svg"):
        text = (tmp_path / svg).read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text
        assert "gnuplot_plot_6" in text  # six systems plotted
    assert "peak dns" in report.split("## DNS")[1]
    if os.access("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", os.W_OK):  # the capped runs
        m = re.search(r"queries/s with each server capped: static ([0-9.]+)", report)
        assert m and float(m.group(1)) > 0, report.split("## DNS")[1]
    assert re.search(r"\| kill \| PEAK \| \d+ \|", report)
    # the legacy clients' cached addresses: some on the killed pod, failed over by routes
    kill = {r["system"]: r for r in d["scenarios"] if r["scenario"] == "kill"}
    assert kill["legacy"]["clients"] == 32 and kill["legacy"]["clients_on_failed_pod"] > 0
    assert kill["legacy"]["outage"]["still_down"] == 0
    assert re.search(r"\| kill \| DNS-steered \| \d+ \| .* \| \d+/32 \|$", report, re.M)
    assert d["steady_agent_downs"] == 0  # no false failover under the steady load
    # a pod added: PEAK moves slices to it with a handover, the proxies reload; PEAK's and
    # the DNS-steered clients' connections all survive (1-2 of 32 broke in about 1 CI run in
    # 3: this scenario starts within the drain of the spare killed after the previous
    # system's, and connections opened then were reset when it ended, see
    # tests/regress/test_drain_routes_not_announced.py; an attempt unanswered for 1 s, not
    # 250 ms, counts as broken: a loaded machine's stall is no broken connection)
    for s in ("PEAK", "DNS-steered"):
        row = rf"^\| {s} \| [1-9]\d* \| 0 \| 0 \| ([0-9.]+ s|never \(in the run\)) \|"
        add = {r["system"]: r for r in d["scenarios"] if r["scenario"] == "add"}
        assert re.search(row, report, re.M), (report.split("## A pod added")[1][:2000],
                                              {k: v["errors"] for k, v in add.items()})
    flood = report.split("## A flood")[1].split("\n## ")[0]
    for s in SYSTEMS:
        assert re.search(rf"^\| {re.escape(s)} \| [1-9]\d* \| \d+ \|", flood, re.M), flood
    assert (tmp_path / "outage-kill.svg").exists()


@ROOT_ONLY
def test_filter_bench(tmp_path):
    """bench/filter/run.py --quick: every table complete with non-zero figures, and the
    report folded into REPORT.md by bench/report.py."""
    out = tmp_path / "filter.md"
    p = subprocess.run(["/usr/bin/python3", os.path.join(SRC, "bench/filter/run.py"), "--quick",
                        "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    text = out.read_text()
    assert re.search(r"^src/src +\d+ +\d+ +\d+ +\d+ +\d+ +\d+$", text, re.M), text
    assert "unexpected verdict" not in text
    for section in ("## Drop path per core, native XDP", "## Packets per second per core"):
        table = text.split(section)[1].split("\n## ")[0]
        pps = re.findall(r"^\| [^|]+ \| (none|peak|nftables) \| (\d+) \| \d+% \| (\d+) \|",
                         table, re.M)
        assert len(pps) == 9 and all(int(n) > 0 and int(ns) > 0 for _, n, ns in pps), table
    cost = re.findall(r"^\| (none|peak|peak-native|nftables) \| (\d+) \| [0-9.]+ \| \d+ \| "
                      r"\d+ \| 0 \|$", text, re.M)
    assert [s for s, _ in cost] == ["none", "peak", "peak-native", "nftables"], text
    assert all(int(r) > 0 for _, r in cost)
    flood = text.split("## Legitimate p99")[1]
    # served through the flood: no request failed (sent also counts those in flight when
    # the run ended: a loaded machine's stall at the end leaves some, which is no failure)
    m = re.search(r"^\| peak \| [1-9]\d* \| \d+ \| \d+ \| [0-9.]+ \| [0-9, ]+ \| (\d+)/(\d+) \| "
                  r"(\d+) \|$", flood, re.M)
    assert m and int(m.group(1)) > 0 and int(m.group(3)) == 0, flood
    p = subprocess.run(["/usr/bin/python3", os.path.join(SRC, "bench/report.py"), "--filter",
                        str(out), "--out", str(tmp_path), "--dns", str(tmp_path / "none.md")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "## The XDP filter against nftables" in (tmp_path / "REPORT.md").read_text()
