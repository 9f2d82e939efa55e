#!/usr/bin/python3
"""The data-path target of issue 19: the same closed-loop keep-alive load to the pods
directly and through PEAK's path (the clients compute SSA addresses; the router and nodes
route them by slice routes learnt over BGP; the XDP filter checks every packet on the
nodes' uplinks), in one run, on the namespace testbed of bench/ingress/run.py (which this
drives with --systems direct,peak and no scenarios, so the two systems are measured
exactly as there: same testbed, same pods, the order rotated per run).

Per concurrency it reports the medians over the runs of: PEAK's throughput over direct's,
p50 over direct's, and the cluster CPU per request that PEAK adds (us; from the scheduler's
run times of every cluster process: pods, agents, BIRD, peak dns; kernel forwarding is
charged to whichever process it ran in) and the same from the whole machine's /proc/stat.
The issue's target: throughput >= 0.98x, p50 <= 1.05x, at most 0.5 us more cluster CPU
per request, at 16, 64 and 256 connections, medians of 5 runs.

--profile SECONDS runs one more cell of that length per system at the highest concurrency
on a fresh testbed with the kernel's BPF run-time statistics on, and reports the ns the
programs on the nodes' uplinks (the XDP filter, its tc programs, the handover program when
attached) ran per request and per packet for each system: PEAK's filter cost, measured
apart from the machine's noise. --perf adds 'perf record -a -g' around PEAK's cell there
and prints the top symbols (the whole machine).

Usage (root): bench/datapath/run.py [--runs 5] [--duration 5] [--concurrency 16,64,256]
                                    [--profile S [--perf]] [--out FILE]"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
TARGET = {"rps": 0.98, "p50": 1.05, "cpu_us": 0.5}


def log(*a):
    print("datapath:", *a, file=sys.stderr, flush=True)


def summarize(steady):
    """Per concurrency, the medians over runs of PEAK against direct measured in the same run:
    {'c': n, 'runs': k, 'rps_ratio', 'p50_ratio', 'cluster_us_added', 'machine_us_added',
    'direct_rps', 'peak_rps', ..., 'met': bool}. A run counts only when both systems served
    requests without failures."""
    cells = {}
    for r in steady:
        if r.get("kind") != "closed":
            continue
        cells.setdefault(r["value"], {}).setdefault(r["run"], {})[r["system"]] = r
    out = []
    for c in sorted(cells):
        pairs = [(v["direct"], v["peak"]) for v in cells[c].values()
                 if "direct" in v and "peak" in v and v["direct"]["ok"] and v["peak"]["ok"]]
        if not pairs:
            continue

        def med(f):
            return statistics.median(f(d, p) for d, p in pairs)
        s = {"c": c, "runs": len(pairs),
             "direct_rps": med(lambda d, p: d["rps"]), "peak_rps": med(lambda d, p: p["rps"]),
             "rps_ratio": med(lambda d, p: p["rps"] / d["rps"]),
             "p50_ratio": med(lambda d, p: p["latency_us"]["p50"] / d["latency_us"]["p50"]),
             "direct_cluster_us": med(lambda d, p: d["cluster_ms_per_1k"]),
             "peak_cluster_us": med(lambda d, p: p["cluster_ms_per_1k"]),
             # ms per 1000 requests is us per request
             "cluster_us_added": med(lambda d, p: p["cluster_ms_per_1k"] -
                                     d["cluster_ms_per_1k"]),
             "machine_us_added": med(lambda d, p: p["machine_ms_per_1k"] -
                                     d["machine_ms_per_1k"]),
             "failed": sum(d["failed"] + p["failed"] for d, p in pairs)}
        s["met"] = (s["rps_ratio"] >= TARGET["rps"] and s["p50_ratio"] <= TARGET["p50"] and
                    s["cluster_us_added"] <= TARGET["cpu_us"])
        out.append(s)
    return out


def detail(steady):
    """Per measured cell, what a failure needs to be read: the system, the run, requests
    ok and failed, the failed attempts by kind (refused, connect, reset, eof, timeout, ...;
    only the kinds that occurred), and when it ran (UTC, as in the daemons' logs)."""
    return [{"system": r["system"], "c": r["value"], "run": r["run"], "ok": r["ok"],
             "failed": r["failed"], "errors": {k: v for k, v in r["errors"].items() if v},
             "wall": r.get("wall")}
            for r in steady if r.get("kind") == "closed"]


def table(rows):
    lines = ["| conns | runs | direct req/s | PEAK req/s | PEAK/direct | p50 PEAK/direct | "
             "cluster us/req direct | PEAK | added | machine us/req added | target met |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in rows:
        lines.append(f"| {s['c']} | {s['runs']} | {s['direct_rps']:.0f} | {s['peak_rps']:.0f} | "
                     f"{s['rps_ratio']:.3f} | {s['p50_ratio']:.3f} | "
                     f"{s['direct_cluster_us']:.1f} | {s['peak_cluster_us']:.1f} | "
                     f"{s['cluster_us_added']:+.2f} | {s['machine_us_added']:+.2f} | "
                     f"{'yes' if s['met'] else 'no'} |")
    return "\n".join(lines)


def node_progs(tb):
    """The BPF programs on the testbed nodes' uplinks (XDP and tc), by id: their names."""
    out = {}
    for i in range(1, tb.nodes + 1):
        r = subprocess.run(["ip", "netns", "exec", tb.node(i), "bpftool", "-j", "net", "show",
                            "dev", "uplink"], capture_output=True, text=True)
        try:
            for d in json.loads(r.stdout or "[]"):
                for kind in ("xdp", "tc"):
                    for p in d.get(kind, []):
                        if "id" in p:
                            out[p["id"]] = p.get("name", "?")
        except ValueError:
            pass
    return out


def prog_stats(ids):
    """run_time_ns and run_cnt of the programs with these ids (kernel.bpf_stats_enabled)."""
    r = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True)
    return {p["id"]: (p.get("run_time_ns", 0), p.get("run_cnt", 0))
            for p in json.loads(r.stdout or "[]") if p["id"] in ids}


CLASSES = {1: "known_good", 2: "assumed_good", 3: "possibly_bad"}  # filter.h FC_* (packets)


def filter_classes(xdp_ids):
    """Packets per conforming class so far, summed over the XDP filters with these ids (their
    'counters' per-CPU array)."""
    out = {v: 0 for v in CLASSES.values()}
    for pid in xdp_ids:
        r = subprocess.run(["bpftool", "-j", "prog", "show", "id", str(pid)],
                           capture_output=True, text=True)
        for m in json.loads(r.stdout or "{}").get("map_ids", []):
            info = json.loads(subprocess.run(["bpftool", "-j", "map", "show", "id", str(m)],
                                             capture_output=True, text=True).stdout or "{}")
            if info.get("name") != "counters":
                continue
            dump = json.loads(subprocess.run(["bpftool", "-j", "map", "dump", "id", str(m)],
                                             capture_output=True, text=True).stdout or "[]")
            for e in dump:
                e = e.get("formatted", e)
                k = e.get("key")
                if isinstance(k, list):
                    k = int.from_bytes(bytes(int(x, 16) for x in k), "little")
                if k in CLASSES:
                    for v in e.get("values", []):
                        val = v.get("value")
                        if isinstance(val, list):
                            val = int.from_bytes(bytes(int(x, 16) for x in val), "little")
                        out[CLASSES[k]] += int(val or 0)
    return out


def profile(a, seconds, conc):
    """The same cell for direct and PEAK on a fresh testbed with BPF run-time statistics on
    (kernel.bpf_stats_enabled, restored after): the ns the programs on the nodes' uplinks
    ran per request and per packet, by program; with a->perf, 'perf record -a -g' around
    PEAK's cell and the report's top symbols."""
    sys.path.insert(0, os.path.join(ROOT, "bench", "ingress"))
    import importlib
    ing = importlib.import_module("run")
    args = argparse.Namespace(peak=a.peak, filter_obj=a.filter_obj)
    res = {}
    with open("/proc/sys/kernel/bpf_stats_enabled") as f:
        was = f.read().strip()
    with tempfile.TemporaryDirectory(prefix="peak-dp-") as d:
        b = ing.Bench(args, d)
        try:
            b.tb.up()
            if not b.tb.wait_converged(30):
                raise RuntimeError("the testbed did not converge")
            # the agents attach the filter once they have their maps: wait for XDP and
            # both tc programs on every node
            deadline = time.time() + 20
            while len(ids := node_progs(b.tb)) < 3 * b.tb.nodes and time.time() < deadline:
                time.sleep(0.2)
            with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
                f.write("1")
            xdp = [pid for pid, name in ids.items() if name in ("?", "peak_filter")]
            for system in ("direct", "peak"):
                s0, k0 = prog_stats(ids), filter_classes(xdp)
                data = os.path.join(d, "perf.data")
                cmd = b.load_cmd(system, ["--concurrency", str(conc), "--duration",
                                          str(seconds)], conc)
                rec = None
                if a.perf and system == "peak":
                    rec = subprocess.Popen(["perf", "record", "-a", "-g", "-o", data, "--",
                                            "sleep", str(seconds)], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
                r = json.loads(subprocess.run(cmd, capture_output=True, text=True,
                                              timeout=seconds + 120).stdout)
                if rec:
                    rec.wait(timeout=120)
                s1, k1 = prog_stats(ids), filter_classes(xdp)
                by = {}
                for pid, name in ids.items():
                    t0, c0 = s0.get(pid, (0, 0))
                    t1, c1 = s1.get(pid, (0, 0))
                    x = by.setdefault(name, [0, 0])
                    x[0] += t1 - t0
                    x[1] += c1 - c0
                ok = max(r["ok"], 1)
                res[system] = {"requests": r["ok"], "rps": r["rps"],
                               "filter_classes": {k: k1[k] - k0[k] for k in k1}, "programs": {
                    n: {"ns_per_request": round(t / ok, 1),
                        "ns_per_run": round(t / c, 1) if c else 0,
                        "runs_per_request": round(c / ok, 2)} for n, (t, c) in by.items()}}
                if rec:
                    rep = subprocess.run(["perf", "report", "-i", data, "--no-children",
                                          "--stdio", "--sort", "symbol", "-g", "none",
                                          "--percent-limit", "0.7"],
                                         capture_output=True, text=True, timeout=300).stdout
                    res["perf_top"] = [ln.rstrip() for ln in rep.splitlines()
                                       if ln.strip() and not ln.startswith("#")]
        finally:
            with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
                f.write(was)
            b.tb.down()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--concurrency", default="16,64,256")
    ap.add_argument("--profile", type=float, default=0,
                    help="seconds of the profiled cell per system (0: none)")
    ap.add_argument("--perf", action="store_true", help="perf record -a -g in the profile")
    ap.add_argument("--skip-steady", action="store_true", help="the profile alone")
    ap.add_argument("--peak", default=os.path.join(ROOT, "build", "peak"))
    ap.add_argument("--filter-obj", default=os.path.join(ROOT, "build", "filter.bpf.o"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "datapath.json"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces, XDP)")
    raw = a.out + ".ingress.json"
    out = {"command": " ".join(sys.argv), "runs": a.runs, "duration_s": a.duration,
           "target": TARGET}
    conc = max(int(x) for x in a.concurrency.split(",") if x)
    if a.profile > 0:
        out["profile"] = prof = profile(a, a.profile, conc)
        print(f"BPF programs on the nodes' uplinks at {conc} connections, {a.profile} s:")
        for system in ("direct", "peak"):
            print(f"  {system:6s} filter classes (packets): {prof[system]['filter_classes']}")
            for n, v in sorted(prof[system]["programs"].items()):
                print(f"  {system:6s} {n:16s} {v['ns_per_request']:8.1f} ns/request "
                      f"({v['runs_per_request']} runs of {v['ns_per_run']} ns)")
        if "perf_top" in prof:
            print("perf (whole machine, PEAK):\n" + "\n".join(prof["perf_top"][:30]))
    if a.skip_steady:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)
        return
    cmd = ["/usr/bin/python3", os.path.join(ROOT, "bench", "ingress", "run.py"), "--systems",
           "direct,peak", "--scenarios", "", "--rates", "", "--new-conn", "0", "--concurrency",
           a.concurrency, "--runs", str(a.runs), "--duration", str(a.duration), "--peak",
           a.peak, "--filter-obj", a.filter_obj, "--out", raw]
    log(" ".join(cmd))
    p = subprocess.run(cmd, timeout=3600)
    if p.returncode:
        sys.exit(f"datapath: the ingress bench failed ({p.returncode})")
    with open(raw) as f:
        res = json.load(f)
    rows = summarize(res["steady"])
    out.update(cells=rows, versions=res.get("versions"), runs_detail=detail(res["steady"]),
               steady_agent_downs=res.get("steady_agent_downs"),
               steady_agent_down_lines=res.get("steady_agent_down_lines"),
               steady_route_lines=res.get("steady_route_lines"))
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print(table(rows))
    log(f"wrote {a.out}")


if __name__ == "__main__":
    main()
