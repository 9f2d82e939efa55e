#!/usr/bin/python3
"""Writes bench/results/REPORT.md and its SVG plots (gnuplot) from the ingress benchmark's
JSON (bench/ingress/run.py), the DNS benchmark's table (bench/dns/run.sh), the filter's
(bench/filter/run.py), the HTTP/3 benchmark's JSON (bench/h3/run.py), and those of the
other benches under bench/results/ that exist (the overlay's: compare.py, its fast-path run,
dht_churn.py, and part 2's mcast.py, relay.py and gaps.py; store, steering, control plane).
Every figure is the median over the runs of its cell; the tables say how many.
Usage: bench/report.py [--in FILE] [--dns FILE] [--filter FILE] [--h3 FILE]
       [--overlay-mcast FILE] [--overlay-relay FILE] [--overlay-gaps FILE] [--out DIR]
(bench/report.py --help lists the rest)"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = {"direct": "direct", "peak": "PEAK", "legacy": "DNS-steered", "nginx": "nginx L7",
         "haproxy-l4": "HAProxy L4", "haproxy-l7": "HAProxy L7"}


def med(rows, f):
    v = [f(r) for r in rows]
    return statistics.median(v) if v else float("nan")


def cells(steady):
    """{(kind, value): {system: [runs]}}"""
    out = {}
    for r in steady:
        out.setdefault((r["kind"], r["value"]), {}).setdefault(r["system"], []).append(r)
    return out


def ratio(a, b):
    return a / b if b else float("nan")


def gnuplot(script, out_dir):
    p = subprocess.run(["gnuplot"], input=script, capture_output=True, text=True, cwd=out_dir)
    if p.returncode:
        raise RuntimeError("gnuplot: " + p.stderr)


def plot_cdf(c, systems, conc, out_dir, runs):
    """Latency CDF of every system at one concurrency (the median run by throughput)."""
    data = []
    for s in systems:
        rows = sorted(c.get(("closed", conc), {}).get(s, []), key=lambda r: r["rps"])
        if not rows:
            continue
        r = rows[len(rows) // 2]
        name = f"cdf-{s}.dat"
        with open(os.path.join(out_dir, name), "w") as f:
            for p, us in r["cdf"]:
                f.write(f"{us / 1000:.4f} {p}\n")
        data.append(f"'{name}' using 1:2 with linespoints title '{NAMES[s]}'")
    gnuplot(f"""set terminal svg size 720,440 dynamic font 'sans,11'
set output 'latency-cdf.svg'
set title 'Latency CDF, {conc} connections, keep-alive (median run of {runs})'
set xlabel 'latency (ms, log scale)'
set ylabel 'fraction of requests'
set logscale x
set key bottom right
set grid
plot {', '.join(data)}
""", out_dir)
    for s in systems:
        try:
            os.unlink(os.path.join(out_dir, f"cdf-{s}.dat"))
        except OSError:
            pass


def plot_lines(c, systems, concs, field, fname, title, ylabel, out_dir):
    with open(os.path.join(out_dir, "lines.dat"), "w") as f:
        for k in concs:
            row = [str(k)] + [f"{med(c[('closed', k)].get(s, []), field):.3f}" for s in systems]
            f.write(" ".join(row) + "\n")
    plots = ", ".join(f"'lines.dat' using 1:{i + 2} with linespoints title '{NAMES[s]}'"
                      for i, s in enumerate(systems))
    gnuplot(f"""set terminal svg size 720,440 dynamic font 'sans,11'
set output '{fname}'
set title '{title}'
set xlabel 'concurrent connections (log scale)'
set ylabel '{ylabel}'
set logscale x 2
set yrange [0:*]
set key outside right
set grid
plot {plots}
""", out_dir)
    os.unlink(os.path.join(out_dir, "lines.dat"))


def plot_timeline(scen, kind, systems, out_dir):
    rows = [r for r in scen if r["scenario"] == kind]
    if not rows:
        return None
    plots = []
    for r in rows:
        name = f"tl-{r['system']}.dat"
        step = r["timeline_ms"] / 1000
        with open(os.path.join(out_dir, name), "w") as f:
            for i, (ok, failed) in enumerate(r["timeline"]):
                f.write(f"{i * step:.3f} {failed / step:.1f} {ok / step:.1f}\n")
        plots.append(f"'{name}' using 1:2 with steps title '{NAMES[r['system']]}'")
    fail_at = rows[0]["fail_at_s"]
    what = {"kill": "killed (resets)", "silent": "silently gone (drops)",
            "stop": "stopped (SIGSTOP)"}[kind]
    fname = f"outage-{kind}.svg"
    gnuplot(f"""set terminal svg size 720,440 dynamic font 'sans,11'
set output '{fname}'
set title 'Failed requests per second, pod {what} at {fail_at:.1f} s (one run)'
set xlabel 'time (s)'
set ylabel 'failed requests/s (after one retry)'
set arrow from {fail_at},graph 0 to {fail_at},graph 1 nohead dashtype 2
set key outside right
set grid
plot {', '.join(plots)}
""", out_dir)
    for r in rows:
        os.unlink(os.path.join(out_dir, f"tl-{r['system']}.dat"))
    return fname


H3_NAMES = {"proposed": "Proposed", "peak-direct": "PEAK-direct",
            "transitioning": "Transitioning", "legacy": "Legacy (HAProxy)", "caddy": "Caddy"}
H3_WHAT = {"proposed": "peak h3 ingress, HTTP/3 in and out",
           "peak-direct": "peak h3 upload --peak straight to the pods, no ingress",
           "transitioning": "peak h3 ingress, HTTP/3 in, HTTP/2 over TLS out",
           "legacy": "HAProxy, HTTP/2 over TLS in and out",
           "caddy": "Caddy, HTTP/3 in, HTTP/2 over TLS out"}


def plot_bars(fname, title, ylabel, labels, series, out_dir, extra=""):
    """A clustered bar chart: labels along x, series [(title, [value per label])]; a missing
    value (None) draws no bar; extra: gnuplot commands before the plot (lines, ranges)."""
    with open(os.path.join(out_dir, "bars.dat"), "w") as f:
        for i, lab in enumerate(labels):
            f.write(f'"{lab}" ' + " ".join("NaN" if v[i] is None else f"{v[i]:.3f}"
                                           for _, v in series) + "\n")
    plots = ", ".join(f"'bars.dat' using {i + 2}:xtic(1) title '{t}'"
                      for i, (t, _) in enumerate(series))
    gnuplot(f"""set terminal svg size 720,440 dynamic font 'sans,11'
set output '{fname}'
set title '{title}'
set ylabel '{ylabel}'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set yrange [0:*]
set key top left
set grid ytics
{extra}plot {plots}
""", out_dir)
    os.unlink(os.path.join(out_dir, "bars.dat"))


def h3_section(path, out_dir):
    """The HTTP/3 section from bench/h3/run.py's JSON: (markdown lines, [(svg, title)])."""
    with open(path) as f:
        d = json.load(f)
    L, plots = [], []
    w = L.append
    systems, x, v = d["systems"], d["summary"], d["versions"]
    fl = d["files"]
    w("## HTTP/3: upload streams routed by content-type (bench/h3/run.py)\n")
    w(f"`{d['command']}`, {d['wall_s']} s. Testbed: client, router, ingress host and two pods "
      "(audio, video), network namespaces joined by veth with MTU 1500; the pods run `peak h3 "
      "backend` (SHA-256 of each body, checked by the client). Per upload "
      f"{fl['audio'][0]} audio files of {fl['audio'][1] // 1024} KiB and {fl['video'][0]} "
      f"video files of {fl['video'][1] // 1024} KiB on one connection (PEAK-direct: one "
      "connection per content type). Figures are medians of "
      f"{d['runs']} runs, systems' order rotated; *goodput* is the bytes over the upload "
      "command's wall time (PEAK-direct's name resolution included); *CPU/MB* is the "
      "scheduler run time of the cluster's processes (ingress or proxy, pods, and peak dns "
      "for PEAK-direct) per MB uploaded; *first byte* is one "
      f"{fl['small']} B request on a new connection, from the first packet to the answer "
      "(1-RTT: handshake, then the request; 0-RTT: resumed with a session ticket, the request "
      "in the first flight). "
      + "; ".join([v.get("peak", "peak ?")] + [v[k] for k in ("haproxy",) if k in v] +
                  [f"Caddy {v['caddy']}" for k in ("caddy",) if k in v])
      + f". Machine: {v['cpus']} CPUs "
      f"({v['cpu']}), Linux {v['kernel']}, shared with other work: absolute figures are "
      "noisy, ratios in the same run are the point.\n")
    for s in systems:
        w(f"- **{H3_NAMES[s]}**: {H3_WHAT[s]}")
    for s, why in d.get("skipped", {}).items():
        w(f"- {H3_NAMES.get(s, s)}: not measured: {why}")
    w("")
    p = x.get("proposed", {})
    w("| system | conns | goodput MB/s | vs Proposed | cluster CPU ms/MB | vs Proposed | "
      "first byte ms | 0-RTT first byte ms | handshake ms | checksums |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")

    def f(val, spec=".1f"):
        return "-" if val is None else format(val, spec)

    def r(a, b):
        return "-" if a is None or not b else f"{a / b:.2f}"
    for s in systems:
        y = x[s]
        w(f"| {H3_NAMES[s]} | {f(y['connections'], '.0f')} | {f(y['goodput_mbps'])} | "
          f"{r(y['goodput_mbps'], p.get('goodput_mbps'))} | {f(y['cpu_ms_per_mb'])} | "
          f"{r(y['cpu_ms_per_mb'], p.get('cpu_ms_per_mb'))} | {f(y['ttfb_ms'], '.2f')} | "
          f"{f(y['ttfb_0rtt_ms'], '.2f')} | {f(y['setup_1rtt_ms'], '.2f')} | "
          f"{'all ok' if y['checksums_ok'] else 'FAILED'} |")
    w("")
    if d.get("loss_runs"):
        delay = d.get("loss_delay_ms")
        relay = d.get("loss_path", {}).get("relay")
        relay = "bench/h3/lossy.c" if relay == "c" else "bench/h3/lossy.py"
        path = (f"{relay}, a TUN device in the router: dropped at random and the rest "
                f"delayed {delay} ms each way, once per crossing of the router (client-ingress "
                f"ping {d.get('loss_path', {}).get('rtt_ms')} ms)" if delay is not None else
                f"nftables `numgen random mod 100 < {d['loss_pct']}` on the router's forward "
                "path, no delay")
        cc = d.get("versions", {})
        w(f"Under {d['loss_pct']}% random loss ({path}; both directions; "
          f"{d.get('loss_dropped_packets', 0)} packets dropped in all): {d['loss_runs']} "
          "mixed uploads per system, completion times of every audio stream pooled. Over "
          "HTTP/2 one TCP connection carries every stream, so a loss on a video stream "
          "stalls the audio ones behind it; over QUIC each stream is delivered on its own. "
          f"Congestion control: TCP {cc.get('tcp_cc', '?')}, QUIC "
          f"{cc.get('quic_cc') or 'cubic'}. Both clients send the bodies round robin, so the "
          "audio streams of one upload finish close together: these figures follow each "
          "connection's throughput under loss more than any one stream's stalls.\n")
        w("| system | audio p50 ms, no loss | audio p99 ms, no loss | audio p50 ms, loss | "
          "audio p99 ms, loss | samples | goodput MB/s, loss | uploads failed |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        for s in systems:
            y = x[s]
            w(f"| {H3_NAMES[s]} | {f(y['audio_p50_ms'])} | {f(y['audio_p99_ms'])} | "
              f"{f(y['loss_audio_p50_ms'])} | {f(y['loss_audio_p99_ms'])} | "
              f"{y['loss_audio_samples']} | {f(y['loss_goodput_mbps'])} | "
              f"{y['loss_failed']} |")
        w("")
        stalls = [s for s in systems if x[s].get("loss_stall")]
        if stalls:
            w("Head-of-line blocking, measured per stream (bench/h3/stall.py): for each drop "
              "with no other drop near it (two round trips before, one after), how long each "
              "other stream of the connection made no progress (bytes acknowledged in order "
              "on its stream: the client's qlog over QUIC, its TCP progress log over HTTP/2). "
              "A stream counts as stalled past the path's one-way delay. The same at points "
              "with no drop near gives the path's own stalls; the excess is what the drops "
              "add. Client leg only; times to 1 ms.\n")
            w("| system | isolated drops judged | stream pairs | others stalled after a drop | "
              "with no drop near | excess | others' stall p50 / p90 ms |")
            w("|---|---:|---:|---:|---:|---:|---|")
            for s in stalls:
                st, ctl = x[s]["loss_stall"], x[s].get("loss_stall_control") or {}
                share = st.get("stalled_share")
                cshare = ctl.get("stalled_share")
                exc = x[s].get("loss_hol_excess")
                w(f"| {H3_NAMES[s]} | {st.get('drops', 0)} | {st.get('pairs', 0)} | "
                  f"{'-' if share is None else f'{share:.0%}'} | "
                  f"{'-' if cshare is None else f'{cshare:.0%}'} | "
                  f"{'-' if exc is None else f'{exc * 100:+.0f} points'} | "
                  f"{f(st.get('others_p50_ms'), '.0f')} / {f(st.get('others_p90_ms'), '.0f')} |")
            w("")
    # the issue's targets, as ratios measured in this run
    t = []

    def target(what, a, b, key, goal, higher=True):
        if a in x and b in x and x[a][key] and x[b][key]:
            q = x[a][key] / x[b][key]
            met = q >= goal if higher else q <= goal
            t.append(f"- {what}: {q:.2f}x (target {'at least' if higher else 'at most'} "
                     f"{goal}x: {'met' if met else 'not met'})")
    target("PEAK-direct goodput over Proposed's", "peak-direct", "proposed", "goodput_mbps", 1.5)
    target("PEAK-direct cluster CPU per MB over Proposed's", "peak-direct", "proposed",
           "cpu_ms_per_mb", 0.5, False)
    target("Transitioning goodput over Caddy's", "transitioning", "caddy", "goodput_mbps", 1.5)
    target("Transitioning cluster CPU per MB over Caddy's", "transitioning", "caddy",
           "cpu_ms_per_mb", 1.0, False)
    if d.get("loss_runs"):
        for q in ("proposed", "peak-direct"):
            target(f"{H3_NAMES[q]} audio p99 under loss over Legacy's (HTTP/2)", q, "legacy",
                   "loss_audio_p99_ms", 0.5, False)
        target("Proposed audio p99 under loss over Transitioning's (HTTP/2 behind the "
               "ingress)", "proposed", "transitioning", "loss_audio_p99_ms", 0.5, False)
    if t:
        w("The issue's targets, as ratios in this run:\n")
        L.extend(t)
        w("")
    labels = [H3_NAMES[s] for s in systems]
    if systems:
        plot_bars("h3-goodput.svg", f"Mixed upload: goodput and cluster CPU (median of "
                  f"{d['runs']})", "MB/s; CPU ms per MB", labels,
                  [("goodput MB/s", [x[s]["goodput_mbps"] for s in systems]),
                   ("cluster CPU ms/MB", [x[s]["cpu_ms_per_mb"] for s in systems])], out_dir)
        plots.append(("h3-goodput.svg", "HTTP/3 goodput and cluster CPU per MB"))
    if systems and d.get("loss_runs"):
        plot_bars("h3-loss.svg", f"Audio stream completion under {d['loss_pct']}% loss "
                  f"({d['loss_runs']} uploads each)", "ms", labels,
                  [("p50", [x[s]["loss_audio_p50_ms"] for s in systems]),
                   ("p99", [x[s]["loss_audio_p99_ms"] for s in systems])], out_dir)
        plots.append(("h3-loss.svg", "Audio stream completion under loss"))
    for fn, title in plots:
        w(f"![{title}]({fn})\n")
    return L, plots


def overlay_section(path, out_dir, title="The IPv6 overlay against VXLAN, wireguard-go and "
                    "Yggdrasil", svg_prefix="overlay"):
    """The overlay comparison (bench/overlay/compare.py's JSON): its table of medians and two
    bar plots (throughput; tunnel CPU per Gbit) named svg_prefix-gbit.svg and -cpu.svg.
    Returns (lines, [(svg, title)])."""
    if not os.path.exists(path):
        return [], []
    with open(path) as f:
        d = json.load(f)
    med, labels = d["median"], d["labels"]
    base = med.get("ipv4", {}).get("rtt_min_us")
    wbase = med.get("ipv4", {}).get("rtt_warm_min_us")
    warm = "warm_interval_s" in d  # the series of echoes 1 ms apart (JSON since it was added)
    L = [f"## {title} (bench/overlay/compare.py)\n",
         f"One TCP flow (iperf3, {d['secs']} s) and {d['pings']} pings 10 ms apart between two "
         "gateway namespaces over a routed veth path; every figure is the median of "
         f"{d['runs']} run(s), the peers in rotated order (`{d['command']}`, {d['wall_s']} s, "
         f"load {d['machine']['load_before']:.1f} on {d['machine']['cpus']} CPUs when it "
         "started). CPU is the tunnel processes' user+system time (the kernel's paths have "
         "none to charge). Added RTT is over the IPv4 path's minimum."
         + (f" Warm RTT: as many pings {d['warm_interval_s'] * 1000:g} ms apart, so that the "
            "CPUs do not idle between them (after an idle spell every step of a path runs "
            "slower on this VM)." if warm else "") + "\n",
         "| path | TCP Gbit/s | CPU s per Gbit | RTT min / mean us | added RTT min us |"
         + (" warm RTT min / mean us | warm added RTT min us |" if warm else ""),
         "|---|---:|---:|---:|---:|" + ("---:|---:|" if warm else "")]
    bars = []
    for peer in d["peers"]:
        m = med.get(peer)
        if m is None:
            continue
        if "gbit" not in m:
            L.append(f"| {labels[peer]} | {m.get('skipped') or 'error: ' + m.get('error', '')}"
                     " | | | |" + (" | |" if warm else ""))
            continue
        cpu = m.get("cpu_s_per_gbit")
        add = f"{m['rtt_min_us'] - base:+.0f}" if base is not None else "-"
        row = (f"| {labels[peer]} | {m['gbit']:.2f} | "
               f"{'-' if cpu is None else f'{cpu:.2f}'} | {m['rtt_min_us']:.0f} / "
               f"{m['rtt_avg_us']:.0f} | {add} |")
        if warm:
            wmin = m.get("rtt_warm_min_us")
            row += (f" {wmin:.0f} / {m['rtt_warm_avg_us']:.0f} | "
                    f"{wmin - wbase:+.0f} |" if wmin is not None and wbase is not None
                    else " - | - |")
        L.append(row)
        bars.append((peer, m["gbit"], cpu))
    L.append("")
    plots = []
    if bars:
        with open(os.path.join(out_dir, "overlay.dat"), "w") as f:
            for peer, g, cpu in bars:
                f.write(f"{peer} {g:.4f} {'NaN' if cpu is None else f'{cpu:.4f}'}\n")
        for col, svg, title, ylab in ((2, f"{svg_prefix}-gbit.svg",
                                       "One TCP flow through each path", "Gbit/s"),
                                      (3, f"{svg_prefix}-cpu.svg", "Tunnel CPU per Gbit",
                                       "CPU s / Gbit")):
            gnuplot(f"""set terminal svg size 720,400 dynamic font 'sans,11'
set output '{svg}'
set title '{title} (median of {d['runs']})'
set ylabel '{ylab}'
set style fill solid 0.6
set boxwidth 0.6
set yrange [0:*]
set xtics rotate by -20
plot 'overlay.dat' using {col}:xtic(1) with boxes notitle
""", out_dir)
            plots.append((svg, title))
        os.unlink(os.path.join(out_dir, "overlay.dat"))
    return L, plots


def load_json(path):
    """The JSON document at path, or None when there is no such file."""
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def overlay2_section(mcast, relay, gaps, fastpath, out_dir):
    """The IPv6 overlay, part 2 (issue 21): each figure against its target with the command
    that produced it, from the JSON of bench/overlay/mcast.py, relay.py and gaps.py (and the
    fast path's run of compare.py, whose own section is above), and SVG plots per run
    (overlay2-mcast.svg, overlay2-relay.svg, overlay2-gaps.svg). A JSON that does not exist
    leaves its rows and plot out; none at all, the section. Returns (lines, [(svg, title)])."""
    m, r, g, fp = (load_json(x) for x in (mcast, relay, gaps, fastpath))
    fpm = (fp or {}).get("median", {}).get("peak-fast", {})
    if not (m or r or g or "gbit" in fpm):
        return [], []
    rows, plots = [], []

    def row(what, target, value, met, runs, cmd):
        rows.append(f"| {what} | {target} | {value} | {'met' if met else 'not met'} | "
                    f"{runs} | `{cmd}` |")
    if m:
        cmd = m.get("command") or (f"bench/overlay/mcast.py --members {m['members']} --count "
                                   f"{m['count']} --runs {len(m['runs'])} --size {m['size']}")
        row(f"multicast fan-out to {m['members']} sites over unicast to the same sites "
            "(datagrams/s delivered)", f"at least {m['target']:.2f}",
            f"{m['median_ratio']:.2f}", m["median_ratio"] >= m["target"],
            " / ".join(f"{x['ratio']:.2f}" for x in m["runs"]), cmd)
    if g and "resiliency" in g:
        x = g["resiliency"]
        row("resiliency: longest echo gap when the direct path is cut (ms)",
            f"at most {x['target_ms']:.0f}", f"{x['median_ms']:.0f}", x["met"],
            " / ".join(f"{e['gap_ms']:.0f}" for e in x["each"]), g["command"])
    if g and "anycast" in g:
        x = g["anycast"]
        row("anycast: failover gap when the nearest gateway dies (ms)",
            f"at most {x['target_ms']:.0f}", f"{x['median_ms']:.0f}", x["met"],
            " / ".join(f"{e['gap_ms']:.0f}" for e in x["each"]), g["command"])
    if "gbit" in fpm:
        per = [e["peak-fast"]["gbit"] for e in fp.get("each", [])
               if "gbit" in e.get("peak-fast", {})]
        row("BPF fast path, one TCP flow (Gbit/s; its section above)", "at least 10",
            f"{fpm['gbit']:.2f}", fpm["gbit"] >= 10, " / ".join(f"{v:.2f}" for v in per),
            fp["command"])
    if r:
        x = r["median"]
        cmd = r.get("command") or f"bench/overlay/relay.py --secs {r['secs']} --runs {r['runs']}"
        row("relayed through a third gateway over direct, one TCP flow (throughput)",
            f"at least {r['target_ratio']:.2f}", f"{x['ratio']:.2f}",
            x["ratio"] >= r["target_ratio"], " / ".join(f"{e['ratio']:.2f}" for e in r["each"]),
            cmd)
    L = ["## The IPv6 overlay, part 2: the issue's targets (bench/overlay/)\n",
         "Issue 21's figures, each the median of its bench's runs (per run beside it), "
         "measured in network namespaces on this shared 2-CPU machine: the spread is its "
         "load. Multicast (`mcast.py`): datagrams per second received at all member sites, "
         "one sender sending to the group (its gateway replicates) against the same sender "
         "sending to each member's own address, back to back. Gaps (`gaps.py`): on the "
         "three public sites of the namespace tests, the longest time without an echo of a "
         "10 ms UDP stream after the router starts dropping the direct path (the resiliency "
         "slave relays through the third site); and from a flow's last answer from the "
         "nearest anycast site to its first from the next when the nearest gateway's daemon "
         "stops. Fast path: its run of `compare.py`, in the section above. Relay "
         "(`relay.py`): one TCP flow (iperf3) direct, and with the router dropping the direct "
         "path so that both ends relay through the third gateway, back to back. Commands run "
         "as root from the source tree with `PEAK_BIN=$PWD/build/peak`.\n",
         "| figure | target | median | verdict | runs | command |",
         "|---|---|---:|---|---|---|"] + rows + [""]
    if g and ("resiliency" in g or "anycast" in g):
        def per(x, key, spec=".0f"):
            return " / ".join(format(e.get(key, float("nan")), spec) for e in x)
        t = [f"Gaps, per run (beds: {g.get('beds', 'one')}; load average "
             f"{g['machine']['load_before']} when the bench started):"]
        if "resiliency" in g:
            x = g["resiliency"]["each"]
            t.append(f"resiliency (`dead-ms: {g['resiliency']['dead_ms']}`): both ends "
                     f"relaying (as polled) after {per(x, 'both_relayed_s', '.2f')} s; echoes "
                     f"lost {per(x, 'lost_ms')} ms worth (10 ms each); direct again "
                     f"{per(x, 'direct_again_s', '.2f')} s after the link came back;")
        if "anycast" in g:
            x = g["anycast"]["each"]
            t.append(f"anycast: from the stop of gB's daemon to C's first answer "
                     f"{per(x, 'stop_to_c_ms')} ms;")
        t.append("sends the probe budget held back at gA during each run (probes and echoes, "
                 "every peer): " + "; ".join(f"{k} {per(g[k]['each'], 'budget_limited')}"
                                              for k in ("resiliency", "anycast") if k in g)
                 + ". A silent peer is given up after `dead-ms` and two unanswered probes, or "
                 "after twice `dead-ms` when the budget held the probes back.\n")
        L.append(" ".join(t))
    if m:
        lost = [m["count"] * m["members"] - x["uni"]["received"] for x in m["runs"]]
        L.append(f"Multicast, per run: {m['count']} datagrams of {m['size']} bytes per site; "
                 "multicast lost " + " / ".join(str(m["count"] * m["members"] - x["mcast"][
                     "received"]) for x in m["runs"]) + ", unicast " +
                 " / ".join(str(v) for v in lost) + " (the unicast sender's datagrams its "
                 "gateway could not take in: counted, not retried).\n")
    if m:
        plot_bars("overlay2-mcast.svg", f"Datagrams/s delivered to {m['members']} sites "
                  f"(median ratio {m['median_ratio']:.2f})", "datagrams/s, all sites",
                  [f"run {i + 1}" for i in range(len(m["runs"]))],
                  [("multicast (gateway replicates)", [x["mcast"]["pps"] for x in m["runs"]]),
                   ("unicast to each site", [x["uni"]["pps"] for x in m["runs"]])], out_dir,
                  "set key below\n")
        plots.append(("overlay2-mcast.svg", "Multicast against unicast fan-out, per run"))
    if r:
        plot_bars("overlay2-relay.svg", f"One TCP flow, direct and relayed (median ratio "
                  f"{r['median']['ratio']:.2f})", "Gbit/s",
                  [f"run {i + 1}" for i in range(len(r["each"]))],
                  [("direct", [e["direct"]["gbit"] for e in r["each"]]),
                   ("relayed through a third gateway", [e["relayed"]["gbit"] for e in r["each"]])],
                  out_dir, "set key below\n")
        plots.append(("overlay2-relay.svg", "Relayed against direct throughput, per run"))
    if g and ("resiliency" in g or "anycast" in g):
        kinds = [(k, t) for k, t in (("resiliency", "resiliency: path cut"),
                                     ("anycast", "anycast: nearest gateway stops")) if k in g]
        n = max(len(g[k]["each"]) for k, _ in kinds)
        series = [(t, [e["gap_ms"] for e in g[k]["each"]] + [None] * (n - len(g[k]["each"])))
                  for k, t in kinds]
        top = max([g[k]["target_ms"] for k, _ in kinds] +
                  [v for _, s in series for v in s if v is not None])
        # the targets: dashed lines, named in the right margin (clear of the bars)
        extra = "".join(f"set arrow from graph 0,first {g[k]['target_ms']} to graph 1,first "
                        f"{g[k]['target_ms']} nohead dashtype 2\nset label '{k} target' at "
                        f"graph 1.01,first {g[k]['target_ms']} left\n"
                        for k, _ in kinds) + (f"set yrange [0:{top * 1.15:.0f}]\n"
                                              "set key below\nset rmargin at screen 0.8\n")
        plot_bars("overlay2-gaps.svg", "Failover gaps per run (dashed: targets)",
                  "ms without an answer",
                  [f"run {i + 1}" for i in range(n)], series, out_dir, extra)
        plots.append(("overlay2-gaps.svg", "Resiliency and anycast gaps, per run"))
    for fn, title in plots:
        L.append(f"![{title}]({fn})\n")
    return L, plots


def dht_churn_section(path):
    """The DHT under churn (bench/overlay/dht_churn.py's JSON): its rounds as a table."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        d = json.load(f)
    L = ["## The overlay's DHT as a quarter of its nodes dies (bench/overlay/dht_churn.py)\n",
         f"{d['nodes']} DHT nodes ({d['gateways']} `peak overlay` gateways, {d['dhtnodes']} "
         f"dhtnodes), {d['killed']} dhtnodes killed with SIGKILL; in each round every site looks "
         f"every other up at once, route caches cold (`{d['command']}`). Target: "
         f"{d['target']}: {'met' if d['met'] else 'not met'}.\n",
         "| round | lookups | within 2 s | p50 ms | p99 ms | max ms | gets per lookup |",
         "|---|---:|---:|---:|---:|---:|---:|"]
    for r in d["rounds"]:
        L.append(f"| {r['round']} | {r['lookups']} | {r['within_2s']} "
                 f"({r['share_within_2s']:.1%}) | {r['p50_ms']} | {r['p99_ms']} | "
                 f"{r['max_ms']} | {r['gets_per_found']} |")
    L.append("")
    return L


def store_section(path, out_dir):
    """The object store section (bench/store/run.py's JSON): a table per object size, the
    pod-added movement, and a throughput plot (store-rps.svg). Returns its lines."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        d = json.load(f)
    wl, sysd = d["workload"], d["systems"]
    names = {"peak": "PEAK (computed address)", "nginx": "nginx hash consistent",
             "ketama": "ketama client"}
    # the connection mode and PEAK's map as the run recorded them (JSON written before
    # either was recorded: a connection per request, a static map)
    conn = wl.get("connection", "one per request (client side)")
    pmap = {"controller": "PEAK's pods under `peak controller` (route hints)",
            "static": "PEAK's pods on a static map (no route hints)"}.get(
                wl.get("map", "static"), wl.get("map"))
    depth = wl.get("depth", 1)  # requests in flight per connection (pipelined), the same
    # for every system; nginx forwards a connection's requests one at a time
    pipe = (f", {depth} pipelined requests in flight on each (the same for every system"
            + ("; nginx also gets a connection per request, --spread" if wl.get("spread")
               else "") + ")" if depth > 1 else "")
    L = ["## Object store: PEAK against nginx and ketama (bench/store/run.py)\n",
         f"{wl['workers']} closed-loop clients, connections {conn}{pipe}; {pmap}; "
         "replicas=1, 3 pods; "
         f"{wl['small']} objects of {wl['small_size']} B and {wl['large']} of "
         f"{wl['large_size']} B; the median of {wl.get('runs', 1)} run(s), the systems' "
         f"order rotated ({d.get('date', '?')}). CPU: the pods', nginx's and peak dns's run "
         "time per request. Ratios: against nginx's median.\n"]
    for cls in ("small", "large"):
        if not any(cls in sysd[s] for s in sysd):
            continue  # a run without this size (--large 0): no empty table
        L += [f"| {cls} | op | req/s | p50 ms | p99 ms | cluster CPU us/req | failed | "
              "req/s vs nginx |", "|---|---|---|---|---|---|---|---|"]
        for s in sysd:
            for op in ("put", "get"):
                r = sysd[s].get(cls, {}).get(op)
                ng = sysd.get("nginx", {}).get(cls, {}).get(op)
                if not r:
                    continue
                L.append(f"| {names.get(s, s)} | {op.upper()} | {r['rps']:.0f} | "
                         f"{r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} | "
                         f"{r['cpu_us_per_req']:.0f} | {r['failed']} | "
                         f"{ratio(r['rps'], ng['rps']) if ng else float('nan'):.2f}x |")
        L.append("")
    L += ["| a fourth pod added | objects moved | minimum (its slices' objects) | ideal (1/4) "
          "| reads during/after | failed reads |", "|---|---|---|---|---|---|"]
    for s in sysd:
        m = sysd[s]["move"]
        L.append(f"| {names.get(s, s)} | {m['moved']} of {m['objects']} | "
                 f"{m['minimum'] if m['minimum'] is not None else '-'} | {m['ideal']:.0f} | "
                 f"{m['reads']} | {m['failed_reads']} |")
    L.append("\nnginx and ketama have no migration: a moved object's read fails (404) until "
             "something copies it; PEAK's new pod pulls exactly its slices' objects and reads "
             "a miss through from the old owner.\n")
    rows = [(f"{cls} {op}", [sysd[s].get(cls, {}).get(op, {}).get("rps", 0) for s in sysd])
            for cls in ("small", "large") for op in ("put", "get")]
    with open(os.path.join(out_dir, "store-rps.dat"), "w") as f:
        for label, v in rows:
            f.write(f'"{label}" ' + " ".join(str(x) for x in v) + "\n")
    cols = ", ".join(f"'store-rps.dat' using {i + 2}:xtic(1) title '{names.get(s, s)}'"
                     for i, s in enumerate(sysd))
    try:
        gnuplot("set terminal svg size 720,400\nset output 'store-rps.svg'\n"
                "set style data histograms\nset style fill solid\nset logscale y\n"
                "set ylabel 'requests/s'\nset title 'Object store throughput'\n"
                f"plot {cols}\n", out_dir)
        L.append("![Object store throughput](store-rps.svg)\n")
    except (RuntimeError, OSError) as e:
        L.append(f"(no plot: {e})\n")
    return L



def controlplane_section(path):
    """Lines of the control-plane scale section from bench/controlplane/scale.py's JSON, or
    none when it has not run."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        r = json.load(f)

    def g(k, unit=""):
        v = r.get(k)
        return "-" if v is None else f"{v}{unit}"
    L = ["## Control plane at scale (bench/controlplane/scale.py)\n",
         f"{r['services']} services x {r['endpoints']} endpoints ({g('config_mb', ' MB')} of "
         "YAML), a real etcd on loopback, the controller with `--store etcd` and two "
         "`peak dns --store etcd` replicas; one run; wall times on a shared machine, CPU "
         f"seconds beside them. Command: `{r.get('command', '')}`.\n",
         "| step | wall | CPU | memory (VmHWM) | target |", "|---|---|---|---|---|",
         f"| controller start (parse, assign, store, lead) | {g('controller_start_s', ' s')} | "
         f"{g('controller_start_cpu_s', ' s')} | {g('controller_hwm_mb', ' MB')} | |",
         f"| scale-up of {g('scaleup_pods')} pods ({r.get('scaleup_how', '')}) | "
         f"{g('scaleup_s', ' s')} | {g('scaleup_cpu_s', ' s')} | | < 1 s |"]
    if r.get("scaleup_stored_s") is not None:  # (the split, when the bench measured it)
        L.append(f"| - of which: stored in etcd (the controller's reply to the batch, or "
                 f"its 'configuration reloaded' line) | "
                 f"{g('scaleup_stored_s', ' s')} | {g('scaleup_cpu_s', ' s')} | | |")
        L.append(f"| - of which: both replicas answer the new pods | "
                 f"{g('scaleup_answered_s', ' s')} | {g('scaleup_dns0_cpu_s', ' s')} and "
                 f"{g('scaleup_dns1_cpu_s', ' s')} | | |")
    for i in (0, 1):
        L.append(f"| peak dns replica {i}: load until serving | {g(f'dns{i}_load_s', ' s')} | "
                 f"{g(f'dns{i}_load_cpu_s', ' s')} | {g(f'dns{i}_hwm_mb', ' MB')} | "
                 "< 1 GiB |")
    L.append(f"| one weight change ({r.get('via', 'controller-ctl')}) until both replicas "
             f"answer it, "
             f"{len(r.get('propagation_ms', []))} changes | p50 {g('propagation_p50_ms', ' ms')}"
             f", p99 {g('propagation_p99_ms', ' ms')} | | | p99 < 100 ms |")
    return L + [""]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--in", dest="inp", default=os.path.join(HERE, "results", "ingress.json"))
    ap.add_argument("--dns", default=os.path.join(HERE, "results", "dns.md"))
    ap.add_argument("--filter", default=os.path.join(HERE, "results", "filter.md"))
    ap.add_argument("--overlay", default=os.path.join(HERE, "results", "overlay.json"))
    ap.add_argument("--dht-churn",
                    default=os.path.join(HERE, "results", "overlay-dht-churn.json"))
    ap.add_argument("--overlay-fastpath",
                    default=os.path.join(HERE, "results", "overlay-fastpath.json"))
    ap.add_argument("--overlay-mcast",
                    default=os.path.join(HERE, "results", "overlay-mcast.json"))
    ap.add_argument("--overlay-relay",
                    default=os.path.join(HERE, "results", "overlay-relay.json"))
    ap.add_argument("--overlay-gaps",
                    default=os.path.join(HERE, "results", "overlay-gaps.json"))
    ap.add_argument("--h3", default=os.path.join(HERE, "results", "h3.json"))
    ap.add_argument("--store", default=os.path.join(HERE, "results", "store.json"))
    ap.add_argument("--steer", default=os.path.join(HERE, "results", "steer.md"))
    ap.add_argument("--controlplane",
                    default=os.path.join(HERE, "results", "controlplane.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args()
    with open(a.inp) as f:
        d = json.load(f)
    os.makedirs(a.out, exist_ok=True)
    systems, runs = d["systems"], d["runs"]
    c = cells(d["steady"])
    concs = sorted(v for k, v in c if k == "closed")
    L = []
    w = L.append
    v = d["versions"]
    w("# PEAK benchmark report\n")
    w("Generated by `make bench` (bench/ingress/run.py, bench/dns/run.sh, bench/report.py). "
      f"Every steady-state figure is the median of {runs} run(s) of {d['duration_s']} s; the "
      "systems' order is rotated between runs. Ratios measured in the same run are the "
      "point; absolute figures depend on the machine.\n")
    w(f"Machine: {v['cpus']} CPUs ({v['cpu']}), {v['memory_gib']} GiB, {v['os']}, Linux "
      f"{v['kernel']}. Peers: {v['nginx']}; {v['haproxy']}; {v['bird']}. Whole run: "
      f"{d['wall_s']} s.\n")
    w("Testbed (tests/integration/testbed.py): clients, a router (BIRD), two nodes (peak "
      "agent, BIRD, the XDP filter on the uplink), two pods per node (peak serve), peak dns, "
      "and an ingress host for nginx and HAProxy, each a network namespace joined by veth "
      "links. The load generator is `peak load`, one event loop, each emulated client "
      "sending from its own /64; every system serves the same four pods. *PEAK* clients "
      "compute their addresses from the service's rule (libpeak); *DNS-steered* clients are "
      "legacy clients: each asks peak dns for the service's plain AAAA from its own address, "
      "as a stub resolver on its host would (`peak load --aaaa`), and connects to the "
      "answer's addresses with no SSA computation (resolved once at the start and kept: "
      "the records' TTL is 5 s).\n")
    w("CPU: *cluster* is the CPU time of the cluster's processes (proxy, agents, BIRD, "
      "peak dns, controller, pods) from the scheduler's run times (/proc/PID/task/*/"
      "schedstat); this kernel has no separate IRQ time accounting, so packet forwarding "
      "(and the XDP filter) is charged to whichever "
      "process was running: mostly the sender of each packet (the load generator for "
      "requests, the pods and proxies for responses). *machine* is all busy CPU from "
      "/proc/stat, the load generator included.\n")

    # headline
    hk = 64 if 64 in concs else (concs[-1] if concs else None)
    if hk is not None:
        h = c[("closed", hk)]
        g = {s: {"rps": med(h.get(s, []), lambda r: r["rps"]),
                 "p50": med(h.get(s, []), lambda r: r["latency_us"]["p50"]),
                 "cl": med(h.get(s, []), lambda r: r["cluster_ms_per_1k"])} for s in systems}
        w(f"## Headline ({hk} connections, keep-alive, median of {runs})\n")
        w("| system | req/s | vs direct | vs nginx | p50 vs direct | cluster CPU us/req | "
          "over direct (us/req) |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        for s in systems:
            x = g[s]
            w(f"| {NAMES[s]} | {x['rps']:.0f} | {ratio(x['rps'], g['direct']['rps']):.2f} | "
              f"{ratio(x['rps'], g['nginx']['rps']) if 'nginx' in g else float('nan'):.2f} | "
              f"{ratio(x['p50'], g['direct']['p50']):.2f} | {x['cl']:.1f} | "
              f"{x['cl'] - g['direct']['cl']:+.1f} |")
        w("")
    # steady state per cell
    w(f"## Closed loop, keep-alive (median of {runs} runs per cell)\n")
    w("| conns | system | req/s | p50 us | p90 us | p99 us | p99.9 us | failed | "
      "cluster CPU ms/1000 req | machine CPU ms/1000 req |")
    w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in concs:
        for s in systems:
            rows = c[("closed", k)].get(s, [])
            lat = lambda key: med(rows, lambda r: r["latency_us"][key])  # noqa: E731
            w(f"| {k} | {NAMES[s]} | {med(rows, lambda r: r['rps']):.0f} | {lat('p50'):.0f} | "
              f"{lat('p90'):.0f} | {lat('p99'):.0f} | {lat('p99.9'):.0f} | "
              f"{med(rows, lambda r: r['failed']):.0f} | "
              f"{med(rows, lambda r: r['cluster_ms_per_1k']):.1f} | "
              f"{med(rows, lambda r: r['machine_ms_per_1k']):.1f} |")
    w("")
    for kind, title in (("open", "Open loop at a fixed rate, keep-alive (latency from when "
                                 "each request was due)"),
                        ("new-conn", "A new connection per request (closed loop)")):
        keys = sorted(v for k, v in c if k == kind)
        if not keys:
            continue
        w(f"## {title}, median of {runs}\n")
        w("| " + ("rate/s" if kind == "open" else "conns") + " | system | req/s | p50 us | "
          "p99 us | p99.9 us | failed | cluster CPU ms/1000 req |")
        w("|---:|---|---:|---:|---:|---:|---:|---:|")
        for k in keys:
            for s in systems:
                rows = c[(kind, k)].get(s, [])
                w(f"| {k} | {NAMES[s]} | {med(rows, lambda r: r['rps']):.0f} | "
                  f"{med(rows, lambda r: r['latency_us']['p50']):.0f} | "
                  f"{med(rows, lambda r: r['latency_us']['p99']):.0f} | "
                  f"{med(rows, lambda r: r['latency_us']['p99.9']):.0f} | "
                  f"{med(rows, lambda r: r['failed']):.0f} | "
                  f"{med(rows, lambda r: r['cluster_ms_per_1k']):.1f} |")
        w("")
    # memory
    if concs:
        k = concs[-1]
        w(f"## Memory at {k} connections (resident, median of {runs})\n")
        w("| system | proxy RSS MiB | all cluster processes MiB |")
        w("|---|---:|---:|")
        for s in systems:
            rows = c[("closed", k)].get(s, [])
            px = med(rows, lambda r: r.get("proxy_rss_kib", 0)) / 1024
            w(f"| {NAMES[s]} | {px:.1f} | "
              f"{med(rows, lambda r: r['cluster_rss_kib']) / 1024:.1f} |")
        w("")
    # CPU by role
    if hk is not None:
        w(f"## Cluster CPU by process at {hk} connections (seconds per run, median)\n")
        roles = sorted({k for r in d["steady"] for k in r.get("cluster_cpu_by_role_s", {})})
        w("| system | " + " | ".join(roles) + " |")
        w("|---|" + "---:|" * len(roles))
        for s in systems:
            rows = c[("closed", hk)].get(s, [])
            w(f"| {NAMES[s]} | " + " | ".join(
                f"{med(rows, lambda r: r.get('cluster_cpu_by_role_s', {}).get(x, 0)):.2f}"
                for x in roles) + " |")
        w("")
    # scenarios
    allscen = d.get("scenarios", [])
    scen = [r for r in allscen if r["scenario"] in ("kill", "kill-now", "silent", "stop")]
    if scen:
        delay = max((r.get("retry_delay_ms", 0) for r in scen), default=0)
        cmd_ms = max((r.get("fail_cmd_ms", 0) for r in scen), default=0)
        w("## Failures under load (one run each)\n")
        w("32 connections, each its own client, one retry per request (to the client's next "
          f"address for PEAK and the DNS-steered clients: the service has fanout 2, and peak dns answers both addresses) {delay} ms after the failure, 250 ms "
          "timeout per attempt. Pod n1p1 "
          "fails a quarter into the run: *kill* stops its process (its port answers resets), "
          "*kill-now* is the same with the retry at once, "
          "*silent* drops every packet it receives (nftables), *stop* stops its process "
          "(SIGSTOP: alive, the kernel still completes TCP handshakes for it, nothing "
          "answers). A *gap* is the time from a "
          "connection's first failed request to the end of its next successful one (so it "
          "includes the 250 ms timeout of a request caught by the failure); "
          "*still down* counts connections with no success since their failure at the end "
          "of the run. *Longest ok* is the longest time a request took that succeeded "
          "(its retry, after a timeout, included): a request caught by the failure and "
          "served by its retry shows here, not as a gap; *served again* is the larger of "
          "the two, the longest a client waited from the failure to a response. *Pod out* "
          "is when the agent took the pod down (its log), counted from when the command "
          f"that made the failure returned (it took up to {cmd_ms:.0f} ms here; 0 if the "
          "pod was out before that): the pidfd "
          "watch for *kill*, the health checks for *silent* (the agents run under every "
          "system; only the PEAK and DNS-steered clients are served by the moved routes). "
          "*On the failed pod*: for the clients that resolve the name, how many "
          "of the 32 had their first (cached) address in a slice the failed pod served; "
          "addresses stay and routes move, so those clients need no new DNS answer (the "
          "DNS-steered clients never ask again during the run).\n")
        w("| scenario | system | requests | failed | retries | gaps | max gap ms | "
          "longest ok ms | served again ms | still down | failures seen from..to s | "
          "pod out ms | on the failed pod |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
        for r in scen:
            o = r["outage"]
            span = f"{o['first_fail_s']:.2f}..{o['last_fail_s']:.2f}" if r["failed"] else "-"
            onp = (f"{r['clients_on_failed_pod']}/{r['clients']}"
                   if "clients_on_failed_pod" in r else "-")
            lmax = r["latency_us"]["max"] / 1000
            out_ms = r.get("pod_out_ms")
            w(f"| {r['scenario']} | {NAMES[r['system']]} | {r['sent']} | {r['failed']} | "
              f"{r['retried']} | {o['gaps']} | {o['gap_max_ms']:.0f} | {lmax:.0f} | "
              f"{max(lmax, o['gap_max_ms']):.0f} | {o['still_down']} | {span} | "
              f"{'-' if out_ms is None else f'{out_ms:.0f}'} | {onp} |")
        w("")
        if "steady_agent_downs" in d:
            w(f"False failovers: the agents' health checks (every 30 ms, 100 ms timeout, 3 "
              f"misses) took a serving pod down {d['steady_agent_downs']} time(s) during "
              f"all the steady-state runs above, under every load.\n")
    add = [r for r in allscen if r["scenario"] == "add"]
    if add:
        w("## A pod added under load (one run each)\n")
        w("Same load; pod n2p3 starts serving a quarter into the run. For the proxies the "
          "run also does what an ingress controller does: a new upstream list and a reload "
          "(nginx -s reload, HAProxy master-worker SIGUSR2). *Broken* counts attempts that "
          "failed (reset, closed, refused, or unanswered for 1 s) and were retried; *at its share* is the "
          "time until the new pod's CPU rate (pods' CPU time sampled every 100 ms, 300 ms "
          "windows) first reaches 80% of its rate over the run's last second; *never* when "
          "that final rate stays under a tenth of the other pods' mean (direct clients keep "
          "their address list; HAProxy in TCP mode keeps its clients' connections on their "
          "old pods; PEAK's and the DNS-steered clients' keep-alive connections stay on their "
          "old pods through the slice handover, so only new connections reach the new pod "
          "within a short run).\n")
        w("| system | requests | broken | failed | new pod at its share after |")
        w("|---|---:|---:|---:|---:|")
        for r in add:
            sh = f"{r['share_s']:.2f} s" if r["share_s"] is not None else "never (in the run)"
            w(f"| {NAMES[r['system']]} | {r['sent']} | {r['broken']} | {r['failed']} | {sh} |")
        w("")
    fl = [r for r in allscen if r["scenario"] == "flood"]
    if fl:
        w("## A flood of non-conforming packets (one run each)\n")
        w(f"Legitimate load at {fl[0]['rate']} requests/s (open loop, 64 clients), alone and "
          "then under a flood of TCP SYNs from random sources of the clients' /48: for PEAK "
          "to random addresses of the service prefix (nearly none conforms to the rule: the "
          "XDP filter on the nodes drops them), for direct to the pods' addresses, for the "
          "proxies to their listening port. The flood generator (bench/flood/flood.c, raw "
          "socket) shares the machine's two CPUs with everything else.\n")
        w("| system | SYN/s sent | p50 us alone | p50 us flood | p99 us alone | "
          "p99 us flood | p99 ratio | failed alone/flood |")
        w("|---|---:|---:|---:|---:|---:|---:|---|")
        for r in fl:
            b, u = r["before"]["latency_us"], r["during"]["latency_us"]
            w(f"| {NAMES[r['system']]} | {r['flood_pps']:.0f} | {b['p50']:.0f} | "
              f"{u['p50']:.0f} | {b['p99']:.0f} | {u['p99']:.0f} | "
              f"{ratio(u['p99'], b['p99']):.2f} | {r['before']['failed']}/"
              f"{r['during']['failed']} |")
        w("")
    # plots
    plots = []
    if hk is not None:
        plot_cdf(c, systems, hk, a.out, runs)
        plots.append(("latency-cdf.svg", f"Latency CDF at {hk} connections"))
    if concs:
        plot_lines(c, systems, concs, lambda r: r["rps"], "rps.svg",
                   f"Requests per second against concurrency (median of {runs})",
                   "requests/s", a.out)
        plots.append(("rps.svg", "Requests per second"))
        plot_lines(c, systems, concs, lambda r: r["cluster_ms_per_1k"], "cpu.svg",
                   f"Cluster CPU per 1000 requests (median of {runs})", "CPU ms / 1000 requests",
                   a.out)
        plots.append(("cpu.svg", "Cluster CPU per request"))
    for kind in ("kill", "silent", "stop"):
        f = plot_timeline(scen, kind, systems, a.out)
        if f:
            plots.append((f, f"Outage timeline, pod {kind}"))
    if plots:
        w("## Plots\n")
        for f, t in plots:
            w(f"![{t}]({f})\n")
    # DNS
    if os.path.exists(a.dns):
        w("## DNS: peak dns against NSD and Knot (bench/dns/run.sh)\n")
        with open(a.dns) as f:
            text = f.read()
        w("\n".join(line if not line.startswith("#") else "#" + line
                    for line in text.splitlines()))
        w("")
    if os.path.exists(a.filter):
        w("## The XDP filter against nftables (bench/filter/run.py)\n")
        with open(a.filter) as f:
            text = f.read()
        w("\n".join(line if not line.startswith("#") else "#" + line
                    for line in text.splitlines()[1:]))
        w("")
    if os.path.exists(a.h3):
        h3_lines, h3_plots = h3_section(a.h3, a.out)
        L.extend(h3_lines)
        plots.extend(h3_plots)
    ov_lines, ov_plots = overlay_section(a.overlay, a.out)
    L.extend(ov_lines)
    for f, t in ov_plots:
        w(f"![{t}]({f})\n")
    plots.extend(ov_plots)
    # the kernel fast path for trusted peers against native IPv6 and VXLAN (issue 21)
    ov_lines, ov_plots = overlay_section(a.overlay_fastpath, a.out,
                                         "The overlay's BPF fast path against native IPv6 and "
                                         "VXLAN", "overlay-fastpath")
    L.extend(ov_lines)
    for f, t in ov_plots:
        w(f"![{t}]({f})\n")
    plots.extend(ov_plots)
    # the rest of the overlay's part 2 (issue 21): its targets, the fast path's included
    ov_lines, ov_plots = overlay2_section(a.overlay_mcast, a.overlay_relay, a.overlay_gaps,
                                          a.overlay_fastpath, a.out)
    L.extend(ov_lines)
    plots.extend(ov_plots)
    L += dht_churn_section(a.dht_churn)
    L += store_section(a.store, a.out)
    # steering by load (bench/steer/run.py writes the table with its command line)
    if os.path.exists(a.steer):
        w("## Steering by load against static weights, one pod throttled (bench/steer/run.py)\n")
        w("One pod of four held by a CPU cgroup quota (the command's --quota-us per 100 ms; "
          "from 2026-12-03 19:00 every pod spends --work-us of CPU on a request); "
          "per row a fresh testbed, a warm-up, then a measured run with probes to each pod for its p99. "
          "'slow / others': the throttled pod's p99 over the median of the others' (target "
          "1.5x); 'settled': no pod's weight moved more than one step over the window.\n")
        with open(a.steer) as f:
            w(f.read())
        w("")
    L += controlplane_section(a.controlplane)
    out = os.path.join(a.out, "REPORT.md")
    with open(out, "w") as f:
        f.write("\n".join(L) + "\n")
    print(f"report: wrote {out} and {len(plots)} plots", file=sys.stderr)


if __name__ == "__main__":
    main()
