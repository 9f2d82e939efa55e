#!/usr/bin/python3
"""Control-plane scale (issue 18): the controller and peak dns at --services x --endpoints
(default 10,000 x 100), against a real etcd (Debian etcd-server) on loopback.

Measures, each bounded by --timeout seconds:
  controller start   `peak controller --store etcd`: parse + assign + store, until it logs
                     that it leads and serves its services; CPU seconds and VmHWM
  standby            with --standby, a second controller (a hot standby): its start (one read
                     of the whole state), then for each propagation change the time from the
                     leader's log line of the change to the standby's "the stored state
                     changed: adopted", its CPU per change, and its counts of whole reads and
                     of records applied from the watch (its metrics; absent before they were)
  scale-up           1010 more endpoints (10 more in each of the first 100 services and in
                     grow.svc.example., which had 1). --scaleup-via socket (the default):
                     one batch of add lines on the controller's control socket (what
                     `peak controller-ctl batch FILE` sends), timed from its sending until
                     the controller's reply (it follows the etcd transaction that stored
                     the changed records, with the pods' addresses: scaleup_stored_s) and
                     both replicas answer grow.svc.example. with its 11 addresses, taken
                     from etcd's watch with no reload (scaleup_answered_s). --scaleup-via
                     sighup: the file rewritten, then SIGHUP to the controller and both
                     replicas (as a new file or ConfigMap reaches all three; each parses
                     the whole file), timed from the signals until the controller logged
                     "configuration reloaded" and both replicas answer. scaleup_s is the
                     later of the two. CPU seconds of each process, and the logs' stamps of
                     each step (--skip-scaleup: not run)
  dns load           two `peak dns --store etcd` replicas: until each answers the apex SOA;
                     CPU seconds and VmHWM of each
  propagation        --changes weight changes on the service probe.svc.example. (endpoint
                     p1 toggled between weight 0 and 1, so the AAAA answer holds one address
                     or two), each sent as one line on the controller's control socket (what
                     `peak controller-ctl` sends; --via cli runs controller-ctl instead, whose
                     process start, about 57 shared libraries, is then in the figure): from
                     the command's start until both replicas answer the new state (polled
                     with dnspython); p50/p99, and the split into three legs from the logs'
                     millisecond stamps. The replicas are measured once each logged that it
                     follows the store (its first read done), not while they still answer
                     from their configuration. `controller-ctl status` is timed alone too.
Wall times on a loaded machine are noisy: CPU seconds are reported beside them. One
controller, with a 30 s lease: its work at this scale (or under ASan) outlasts the default
2 s lease, and a lost lead restarts it (failover is measured elsewhere).
Writes bench/results/controlplane.json (or --out). --quick: 200 x 10, 10 changes.
Usage: bench/controlplane/scale.py [--quick] [--services N] [--endpoints N] [--changes N]
       [--via socket|cli] [--standby] [--skip-scaleup] [--scaleup-via socket|sighup]
       [--keep DIR]
The standby's cost per change, bounded (about 2 minutes on 2 cores):
       bench/controlplane/scale.py --services 1000 --endpoints 100 --changes 20 --standby \
           --skip-scaleup --out bench/results/controlplane-standby.json"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import dns.message
import dns.query
import dns.rdatatype

import cplib
from cplib import ROOT, PEAK, etcdproc, log_time, pct, peaktest, readlog, wait_for
PROBE = "probe.svc.example."
GROW, GROW_PODS = "grow.svc.example.", 10
CLK = os.sysconf("SC_CLK_TCK")
ADOPTED = "the stored state changed: adopted"


def progress(msg):
    print(f"[scale] {msg}", file=sys.stderr, flush=True)


def gen_config(nsvc, nep, extra=(0, 0)):
    """The benchmark configuration: services s0..s{nsvc-1}, each a /64 in 2001:db8::/32 with
    /78 slices and nep endpoints; extra = (services, endpoints) adds endpoints to the first
    services (the scale-up); and the probe service the propagation toggles."""
    out = ["zone:", "  name: svc.example.", "  ns:",
           '    - {name: ns1.svc.example., address: "2001:db8:53::1"}',
           "  soa: {primary: ns1.svc.example., contact: hostmaster.svc.example., serial: 1, "
           "minimum: 20}", "services:",
           f"  - name: {PROBE}", "    prefixes: [2001:db8:ffff::/64]", "    slice: 78",
           "    answers: 2", "    endpoints:",
           '      - {id: p0, address: "fd00:ffff::1"}',
           '      - {id: p1, address: "fd00:ffff::2"}',
           f"  - name: {GROW}", "    prefixes: [2001:db8:fffe::/64]", "    slice: 78",
           "    answers: 16", "    endpoints:"]
    # the service the scale-up's answers are seen on: 1 endpoint, 11 after it
    out += [f'      - {{id: g{k}, address: "fd00:fffe::{k + 1:x}"}}'
            for k in range(1 + (GROW_PODS if extra[0] else 0))]
    for x in range(nsvc):
        out += [f"  - name: s{x}.svc.example.", f"    prefixes: [2001:db8:{x:x}::/64]",
                "    slice: 78", "    endpoints:"]
        n = nep + (extra[1] if x < extra[0] else 0)
        out += [f'      - {{id: e{k}, address: "fd00:{x:x}::{k + 1:x}"}}' for k in range(n)]
    return "\n".join(out) + "\n"


class Etcd(etcdproc.Etcd):
    """One etcd member on loopback (etcdproc's helpers) with room for the whole state: the
    controller stores every service in one transaction, which etcd's defaults (128
    operations, 1.5 MiB per request) refuse with HTTP 400 beyond 128 services."""

    def __init__(self, datadir):
        os.makedirs(datadir, exist_ok=True)
        self.port, peer = peaktest.free_port(), peaktest.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        purl = f"http://127.0.0.1:{peer}"
        self.netns = None
        self.logf = open(os.path.join(datadir, "etcd.log"), "w")
        self.proc = subprocess.Popen(
            [etcdproc.ETCD, "--name", "s", "--data-dir", os.path.join(datadir, "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
             "--initial-cluster", f"s={purl}", "--initial-cluster-token",
             f"peak-scale-{os.getpid()}", "--log-level", "warn",
             "--max-txn-ops", "1000000", "--max-request-bytes", str(512 * 2**20),
             "--quota-backend-bytes", str(8 * 2**30)],
            stdout=self.logf, stderr=subprocess.STDOUT)


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        st = f.read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / CLK


def hwm_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def soa_ok(port):
    q = dns.message.make_query("svc.example.", "SOA")
    try:
        r = dns.query.udp(q, "::1", port=port, timeout=0.5)
        return r.rcode() == 0 and bool(r.answer)
    except Exception:
        return False


def probe_count(port, name=PROBE):
    """AAAA addresses the replica gives for the probe service (None if no answer)."""
    q = dns.message.make_query(name, "AAAA")
    try:
        r = dns.query.udp(q, "::1", port=port, timeout=0.5)
    except Exception:
        return None
    return sum(len(rr) for rr in r.answer if rr.rdtype == dns.rdatatype.AAAA)


def last_after(path, what, after):
    """The time of the last line of path holding what, logged at or after wall time after."""
    best = None
    for line in readlog(path).splitlines():
        t = log_time(line)
        if what in line and t is not None and t >= after - 0.001:
            best = t
    return best


def ms_after(path, what, after):
    """Seconds from wall time after to the first line of path holding what at or after it."""
    for line in readlog(path).splitlines():
        t = log_time(line)
        if what in line and t is not None and t >= after - 0.001:
            return round(t - after, 3)
    return None


def breakdown(w0, w1, clog, dlogs, cline):
    """Where one change's time went, from the logs' millisecond stamps: controller-ctl's
    start to the controller's log line of the weight (it then writes etcd), to the later
    of the replicas' "stored state applied" lines, to both answering (the bench's poll)."""
    tc = last_after(clog, cline, w0)
    td = [last_after(lg, "the stored state applied", tc or w0) for lg in dlogs]
    td = max(td) if all(x is not None for x in td) else None
    def ms(a, b):
        return round((b - a) * 1000, 1) if a is not None and b is not None else None
    return {"to_controller_ms": ms(w0, tc), "to_replicas_ms": ms(tc, td),
            "to_answer_ms": ms(td, w1)}


def store_counters(mport):
    """The standby's peak_controller_store_{reads,changes}_total (None: not exported)."""
    with urllib.request.urlopen(f"http://[::1]:{mport}/metrics", timeout=30) as r:
        text = r.read().decode()
    out = {}
    for name in ("reads", "changes"):
        key = f"peak_controller_store_{name}_total "
        line = [x for x in text.splitlines() if x.startswith(key)]
        out[name] = int(line[0].split()[1]) if line else None
    return out


def run(a, tmp):
    res = {"services": a.services, "endpoints": a.endpoints, "changes": a.changes}
    cfg = os.path.join(tmp, "peak.yaml")
    t = time.monotonic()
    with open(cfg, "w") as f:
        f.write(gen_config(a.services, a.endpoints))
    res["config_mb"] = round(os.path.getsize(cfg) / 2**20, 1)
    progress(f"config {a.services} x {a.endpoints}: {res['config_mb']} MB "
             f"in {time.monotonic() - t:.1f} s")
    procs = []
    e = Etcd(os.path.join(tmp, "etcd"))
    try:
        e.wait()
        progress(f"etcd at {e.url}")
        # the controller: parse, assign, store every service in etcd, lead
        csock = os.path.join(tmp, "c.sock")
        clog = os.path.join(tmp, "controller.log")
        t0 = time.monotonic()
        c = cplib.controller(cfg, e.url, clog, "--control", csock, "--lease-ttl", "30",
                             "--agent-ttl", "15")
        procs.append(c)
        # leading, and its services stored and served ("N services from FILE, agents on")
        wait_for(lambda: ("leading" in readlog(clog) and " services from " in readlog(clog))
                 or c.poll() is not None, a.timeout, what="controller start")
        assert c.poll() is None, readlog(clog)[-2000:]
        res["controller_start_s"] = round(time.monotonic() - t0, 2)
        res["controller_start_cpu_s"] = round(cpu_s(c.pid), 2)
        res["controller_hwm_mb"] = round(hwm_mb(c.pid))
        progress(f"controller leading in {res['controller_start_s']} s "
                 f"({res['controller_start_cpu_s']} s CPU, {res['controller_hwm_mb']} MB)")
        sb = None
        if a.standby:  # a hot standby: one read of the whole state at start
            slog = os.path.join(tmp, "standby.log")
            smport = peaktest.free_port()
            t0 = time.monotonic()
            sb = cplib.controller(cfg, e.url, slog, "--lease-ttl", "30", "--agent-ttl", "15",
                                  "--metrics", f"[::1]:{smport}")
            procs.append(sb)
            wait_for(lambda: " services from " in readlog(slog) or sb.poll() is not None,
                     a.timeout, what="standby start")
            assert sb.poll() is None and "a standby" in readlog(slog), readlog(slog)[-2000:]
            res["standby_start_s"] = round(time.monotonic() - t0, 2)
            res["standby_start_cpu_s"] = round(cpu_s(sb.pid), 2)
            res["standby_hwm_mb"] = round(hwm_mb(sb.pid))
            progress(f"standby started in {res['standby_start_s']} s "
                     f"({res['standby_start_cpu_s']} s CPU, {res['standby_hwm_mb']} MB)")
        # two peak dns replicas following etcd
        reps = []
        for i in range(2):
            port = peaktest.free_port()
            log = os.path.join(tmp, f"dns{i}.log")
            t0 = time.monotonic()
            p = cplib.replica(cfg, e.url, log, port)
            procs.append(p)
            reps.append((p, port, log, t0))
        for i, (p, port, log, t0) in enumerate(reps):
            wait_for(lambda: soa_ok(port) or p.poll() is not None, a.timeout,
                     what=f"dns replica {i} ready")
            assert p.poll() is None, readlog(log)[-2000:]
            res[f"dns{i}_load_s"] = round(time.monotonic() - t0, 2)
            res[f"dns{i}_load_cpu_s"] = round(cpu_s(p.pid), 2)
            res[f"dns{i}_hwm_mb"] = round(hwm_mb(p.pid))
            progress(f"dns replica {i} serving in {res[f'dns{i}_load_s']} s "
                     f"({res[f'dns{i}_load_cpu_s']} s CPU, {res[f'dns{i}_hwm_mb']} MB)")
        # both replicas follow the store (their first read done), and show the probe
        wait_for(lambda: all("dns: etcd: following " in readlog(log) for _, _, log, _ in reps),
                 a.timeout, what="replicas follow the store")
        for i, (p, port, log, t0) in enumerate(reps):
            res[f"dns{i}_following_s"] = round(time.monotonic() - t0, 2)
        wait_for(lambda: all(probe_count(port) == 2 for _, port, _, _ in reps), a.timeout,
                 what="replicas answer the probe")
        # what a controller-ctl process costs before it sends anything (exec, libraries)
        cli = []
        for _ in range(min(a.changes, 10)):
            t0 = time.monotonic()
            r = subprocess.run([PEAK, "controller-ctl", "--control", csock, "status"],
                               capture_output=True, text=True, timeout=30)
            if r.returncode:  # (at 10,000 x 100 the controller drops the reader: noted)
                res["cli_status_error"] = f"exit {r.returncode}: {r.stderr.strip()[:200]}"
                break
            cli.append((time.monotonic() - t0) * 1000)
        res["cli_status_p50_ms"] = round(pct(cli, 50), 1) if cli else None
        res["cli_status_p99_ms"] = round(pct(cli, 99), 1) if cli else None
        progress(f"controller-ctl status: p50 {res['cli_status_p50_ms']} ms, "
                 f"p99 {res['cli_status_p99_ms']} ms {res.get('cli_status_error', '')}")
        res["via"] = a.via
        lat, parts, sblag = [], [], []
        if sb:
            # (the metrics page, 800,000 lines at 1000 x 100, is read outside the CPU window)
            sb_count0 = store_counters(smport)
            sb_cpu0 = cpu_s(sb.pid)
        for k in range(a.changes):
            nsb = readlog(slog).count(ADOPTED) if sb else 0
            w = k % 2  # p1's new weight: 0 -> one address, 1 -> two
            want = 1 if w == 0 else 2
            t0, w0 = time.monotonic(), time.time()
            if a.via == "cli":
                r = subprocess.run([PEAK, "controller-ctl", "--control", csock, "weight",
                                    PROBE, "p1", str(w)], capture_output=True, text=True,
                                   timeout=30)
                assert r.returncode == 0, r
            else:
                r = cplib.unix_command(csock, f"weight {PROBE} p1 {w}", timeout=30)
                assert r.endswith("ok\n"), r
            wait_for(lambda: all(probe_count(port) == want for _, port, _, _ in reps),
                     a.timeout, step=0.002, what=f"change {k} in both replicas")
            lat.append((time.monotonic() - t0) * 1000)
            parts.append(breakdown(w0, time.time(), clog, [lg for _, _, lg, _ in reps],
                                   f"{PROBE} p1 weight {w}:"))
            if sb:  # the standby adopted it: from the leader's log line to the standby's
                wait_for(lambda: readlog(slog).count(ADOPTED) > nsb, a.timeout, step=0.01,
                         what=f"change {k} in the standby")
                tc = last_after(clog, f"{PROBE} p1 weight {w}:", w0)
                ts = last_after(slog, ADOPTED, tc or w0)
                if tc is not None and ts is not None:
                    sblag.append((ts - tc) * 1000)
        res["propagation_ms"] = [round(x, 1) for x in lat]
        res["propagation_parts"] = parts
        res["propagation_p50_ms"] = round(pct(lat, 50), 1) if lat else None
        res["propagation_p99_ms"] = round(pct(lat, 99), 1) if lat else None
        progress(f"{len(lat)} changes in both replicas: p50 {res['propagation_p50_ms']} ms, "
                 f"p99 {res['propagation_p99_ms']} ms")
        for key in ("to_controller_ms", "to_replicas_ms", "to_answer_ms"):
            v = [x[key] for x in parts if x.get(key) is not None]
            res[f"{key[:-3]}_p50_ms"] = round(pct(v, 50), 1) if v else None
            res[f"{key[:-3]}_p99_ms"] = round(pct(v, 99), 1) if v else None
        progress(f"where the time goes (p50): the command ({a.via}) to the controller's log line "
                 f"{res['to_controller_p50_ms']} ms, to both replicas' 'applied' line "
                 f"{res['to_replicas_p50_ms']} ms, to both answering {res['to_answer_p50_ms']} ms")
        if sb:
            res["standby_cpu_per_change_ms"] = round(
                (cpu_s(sb.pid) - sb_cpu0) * 1000 / max(1, a.changes), 1)
            cnt = store_counters(smport)
            res["standby_lag_p50_ms"] = round(pct(sblag, 50), 1) if sblag else None
            res["standby_lag_p99_ms"] = round(pct(sblag, 99), 1) if sblag else None
            for name in ("reads", "changes"):
                b0, b1 = sb_count0[name], cnt[name]
                res[f"standby_{name}_at_start"] = b0
                res[f"standby_{name}_in_changes"] = b1 - b0 if b0 is not None else None
            res["standby_hwm_mb"] = round(hwm_mb(sb.pid))
            progress(f"standby: {res['standby_cpu_per_change_ms']} ms CPU per change, adopted "
                     f"{res['standby_lag_p50_ms']} ms (p50) after the leader's log line; whole "
                     f"reads at start {res['standby_reads_at_start']}, during the changes "
                     f"{res['standby_reads_in_changes']}")
        if a.skip_scaleup:
            return res
        # last, as it may hold the controller long: 1000 more endpoints (10 more in each of
        # the first 100 services) and 10 more in the grow service. --scaleup-via socket:
        # one batch on the controller's control socket (what `peak controller-ctl batch`
        # sends); the controller stores the pods with their addresses and the replicas take
        # them from etcd's watch, no file read anywhere. --scaleup-via sighup: the file
        # rewritten, SIGHUP to the controller and both replicas (what a new file, a
        # ConfigMap, brings to all three: each parses the whole file)
        ups, per = min(100, a.services), 10
        res["scaleup_via"] = a.scaleup_via
        batch = [f"add {GROW} g{k} fd00:fffe::{k + 1:x} 1" for k in range(1, 1 + GROW_PODS)]
        for x in range(ups):
            batch += [f"add s{x}.svc.example. e{k} fd00:{x:x}::{k + 1:x} 1"
                      for k in range(a.endpoints, a.endpoints + per)]
        if a.scaleup_via == "sighup":
            with open(cfg + ".new", "w") as f:
                f.write(gen_config(a.services, a.endpoints, (ups, per)))
            os.replace(cfg + ".new", cfg)
        n0 = readlog(clog).count("configuration reloaded")
        cpu0 = [cpu_s(x.pid) for x in [c] + [p for p, _, _, _ in reps]]
        want = 1 + GROW_PODS
        reply = {}
        t0, w0 = time.monotonic(), time.time()
        if a.scaleup_via == "sighup":
            c.send_signal(signal.SIGHUP)
            for p, _, _, _ in reps:
                p.send_signal(signal.SIGHUP)
        else:
            def send():
                reply["text"] = cplib.unix_command(
                    csock, f"batch {len(batch)}\n" + "\n".join(batch), timeout=a.timeout)
                reply["t"] = time.monotonic()
            th = threading.Thread(target=send, daemon=True)
            th.start()
        stored = answered = None
        try:
            deadline = time.monotonic() + a.timeout
            while stored is None or answered is None:
                lg = readlog(clog) if a.scaleup_via == "sighup" else ""
                if "reload refused" in lg or "error" in reply.get("text", ""):
                    break
                if stored is None and a.scaleup_via == "sighup" and \
                        lg.count("configuration reloaded") > n0:
                    stored = time.monotonic() - t0
                if stored is None and "t" in reply:  # the reply follows the etcd write
                    stored = reply["t"] - t0
                if answered is None and all(probe_count(port, GROW) == want
                                            for _, port, _, _ in reps):
                    answered = time.monotonic() - t0
                if time.monotonic() > deadline:
                    raise TimeoutError(f"scale-up: not within {a.timeout} s")
                time.sleep(0.002)
        except TimeoutError as ex:
            res["scaleup_error"] = str(ex)
        assert "error" not in reply.get("text", ""), reply
        assert "reload refused" not in readlog(clog), readlog(clog)[-2000:]
        cpu1 = [cpu_s(x.pid) for x in [c] + [p for p, _, _, _ in reps]]
        res["scaleup_pods"] = ups * per + GROW_PODS
        res["scaleup_how"] = (
            ("one batch of add lines on the controller's control socket; from its sending "
             "until the controller's reply (sent after its transaction wrote the changed "
             "records, with the pods' addresses, to etcd) and both replicas answer the new "
             "pods from etcd's watch" if a.scaleup_via == "socket" else
             "SIGHUP to the controller and both replicas with a configuration holding the "
             "pods added; from the signals until the controller logged 'configuration "
             "reloaded' (its changed records written to etcd) and both replicas answer the "
             "new pods") + f" ({GROW} AAAA: {want} addresses), whichever is later")
        res["scaleup_s"] = round(max(x or 0 for x in (stored, answered)), 3)
        res["scaleup_stored_s"] = round(stored, 3) if stored is not None else None
        res["scaleup_answered_s"] = round(answered, 3) if answered is not None else None
        # from the logs' millisecond stamps (not the bench's polling; a replica logs its
        # reload just after it serves it)
        dline = "dns: reloaded" if a.scaleup_via == "sighup" else "the stored state applied"
        for _, _, lg, _ in reps:
            try:
                wait_for(lambda: ms_after(lg, dline, w0) is not None, 10,
                         what="the replica's reload line")
            except TimeoutError:
                pass
        if a.scaleup_via == "sighup":
            res["scaleup_controller_log_s"] = ms_after(clog, "configuration reloaded", w0)
            res["scaleup_changed_log_s"] = ms_after(clog, "services changed", w0)
        else:  # the first and last service's "endpoints added" lines
            res["scaleup_changed_log_s"] = ms_after(clog, "endpoints added", w0)
            t = last_after(clog, "endpoints added", w0)
            res["scaleup_controller_log_s"] = round(t - w0, 3) if t else None
        for i, (_, _, lg, _) in enumerate(reps):
            res[f"scaleup_dns{i}_log_s"] = ms_after(lg, dline, w0)
            t = last_after(lg, dline, w0)
            res[f"scaleup_dns{i}_last_log_s"] = round(t - w0, 3) if t else None
        res["scaleup_cpu_s"] = round(cpu1[0] - cpu0[0], 3)
        for i in range(len(reps)):
            res[f"scaleup_dns{i}_cpu_s"] = round(cpu1[i + 1] - cpu0[i + 1], 3)
        line = [x for x in readlog(clog).splitlines() if "services changed" in x]
        if a.scaleup_via == "socket":
            line = [reply.get("text", "").splitlines()[0]] if reply.get("text") else []
            line = [" ".join(["-", "-", *line])]
        res["scaleup_controller_line"] = line[-1].split(" ", 2)[2] if line else None
        progress(f"scale-up of {res['scaleup_pods']} pods: stored in {res['scaleup_stored_s']} "
                 f"s, answered by both replicas in {res['scaleup_answered_s']} s (CPU: "
                 f"controller {res['scaleup_cpu_s']} s, replicas {res['scaleup_dns0_cpu_s']} "
                 f"and {res['scaleup_dns1_cpu_s']} s); {res['scaleup_controller_line']}")
        for i, (p, _, _, _) in enumerate(reps):
            res[f"dns{i}_hwm_mb"] = round(hwm_mb(p.pid))
            res[f"dns{i}_alive"] = p.poll() is None
    finally:
        cplib.stop(procs, e)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 x 10, 10 changes")
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=100)
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=600, help="bound of each step, seconds")
    ap.add_argument("--via", choices=("socket", "cli"), default="socket",
                    help="send the changes on the control socket, or by controller-ctl")
    ap.add_argument("--standby", action="store_true",
                    help="run a hot standby controller too and measure what a change costs it")
    ap.add_argument("--skip-scaleup", action="store_true", help="leave out the scale-up")
    ap.add_argument("--scaleup-via", choices=("socket", "sighup"), default="socket",
                    help="add the scale-up's pods with one batch on the controller's control "
                    "socket, or by a new file and SIGHUP to the controller and replicas")
    ap.add_argument("--keep", metavar="DIR", help="keep the logs (etcd, controller, replicas) "
                    "in DIR")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                  "controlplane.json"))
    a = ap.parse_args()
    if a.quick:
        a.services, a.endpoints, a.changes = 200, 10, 10
    if not shutil.which(etcdproc.ETCD):
        print(f"scale.py: {etcdproc.ETCD} missing (apt-get install etcd-server)",
              file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="peak-scale-")
    try:
        res = run(a, tmp)
    except BaseException:
        cplib.show_logs(tmp)  # the logs say why
        raise
    finally:
        cplib.keep_logs(tmp, a.keep)
        shutil.rmtree(tmp, ignore_errors=True)
    res["command"] = " ".join(["bench/controlplane/scale.py", *sys.argv[1:]])
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps({k: v for k, v in res.items()
                      if k not in ("propagation_ms", "propagation_parts")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
