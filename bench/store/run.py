#!/usr/bin/python3
"""The object store (issue 20) three ways, on the namespace testbed of tests/store (conftest
Net: a client namespace with peak dns, one namespace per pod), in one run:

  peak    clients compute each object's address (peak_store_put/get of peak.h) and go
          straight to the pod that holds its slice
  nginx   nginx in its own namespace with `hash $request_uri consistent` over the pods'
          unicast addresses (keep-alive upstreams, request and response streamed), the
          usual proxy answer: one extra hop
  ketama  the client picks the pod with libketama's continuum (bench_store.c) and connects
          to its unicast address (as memcached clients do)

  [cl] clients, peak dns ---- [a] s1   [b] s2   [c] s3   [d] s4 (joins later)
    |  (forwards between all)     pods: AnyIP 2001:db8:8::/64 and 2001:db8:104::i on lo
  [px] nginx 2001:db8:aa:ee::2

Every system runs the same pods (`peak store serve`, replicas=1; for nginx and ketama each
pod is the only endpoint of its own configuration, so it takes any key) and the same
workload from --workers closed-loop client processes, each keeping its connections
(--conn keepalive, the default: PEAK through the library's pool, which reuses a connection
for any key whose address the pod's X-Peak-Routes hold; nginx one connection, ketama one
per pod) or opening one per request (--conn close): PUT then GET of --small objects of
--small-size bytes, then of --large objects of --large-size bytes. Small objects (up to 4
KiB) with kept connections go --depth requests at a time per worker (default 16),
pipelined (bench_store.c's BENCH_STORE_DEPTH), the same client behaviour toward each
system's entry point: PEAK and ketama write each request on the connection of its pod
(PEAK: the pod whose route hints hold the key's computed address), nginx on its one
connection (--spread: --depth connections, one request on each, as nginx works on a
connection's requests one at a time); --depth 1 is the library's calls, one request at a
time. A small GET round reads its keys --get-passes times (default 4), so with the default
20,000 objects each round lasts seconds, not a tenth of one. Measured per phase:
throughput, p50/p99 latency, and cluster CPU per request (scheduler run time of the pods,
nginx's processes, peak dns), and the client workers' CPU per request (their user and
system time, client_cpu_us_per_req).

PEAK's pods run one of two ways (--map): under `peak controller` (the default, the
realistic setup, as tests/store/test_live.py runs them: --controller, a shared key; the
pods learn their slices from the controller's maps and send route hints, X-Peak-Routes, so
a client keeps one connection per pod), or on the configuration's static map (no route
hints: a client reuses a connection only for the same slice). Under the controller all
four pods start, s4 is drained (health down) before the workload, and the client's routes
follow each pod's logged blocks as an agent's would.

Then a fourth pod is added and the objects it takes are counted against the least
possible, the objects whose slices it now owns (PEAK), with reads of every small object
going on meanwhile:
  peak    --map controller: s4's health goes up and the controller gives it its share;
          --map static: s4 joins (--joined s4); either way by the minimal-movement
          assignment; it pulls its slices'
          objects and reads a miss through from the old owner; moved = objects in s4's
          data directory after the migration, minimum = objects s4 answers for (HEAD not
          421), failed = reads that failed during the move; under the controller the old
          owners then drop what moved (--drop-delay 2, once s4 confirms each copy): dropped,
          drop_seconds, and one more round of reads after (its failures counted too);
          round_connections = the connections the pods accepted in each read round,
          peer_connections = those the pods opened to each other (walk, read-throughs,
          drop confirmations)
  nginx   reloaded with s4 as a fourth server; moved = objects another pod answers for
          than before; with no migration each moved object's read fails (404)
  ketama  the same with the client's ring of four (moved from bench_store ketama-moved)

Writes JSON (--out, default bench/results/store.json); bench/report.py makes the report's
store section. --quick: a few seconds, for the smoke test. Root only.

Every figure is the median of --runs testbeds (default 3), each running the systems one
after another, their order rotated from run to run.

Usage: bench/store/run.py [--quick] [--runs N] [--small N] [--large N] [--small-size B]
                          [--large-size B] [--workers N] [--systems LIST]
                          [--conn keepalive|close] [--map controller|static]
                          [--depth D] [--spread] [--get-passes N] [--strace] [--out FILE]

--strace: every client worker runs under `strace -f -c`, and each phase adds the system
calls its workers made per request (syscalls_per_req, and per call in syscalls; process
start-up included, a few dozen calls a worker). strace slows the clients: its runs give
the counts, not the rates."""
import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import pathlib
import resource

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "store"))
from conftest import CONFIG, NAME, OBJECT_NAME, PORT, Net, Pod, ip, wait_for  # noqa: E402
from demo import HEAD_CODE  # noqa: E402
from test_live import CTL, CTL_PORT, Controller, blocks_now, maps, reroute  # noqa: E402

# the ingress bench's CPU accounting (scheduler run times per process and its children)
_spec = importlib.util.spec_from_file_location("ingress_run",
                                               os.path.join(ROOT, "bench", "ingress", "run.py"))
_ingress = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ingress)
proc_cpu, descendants = _ingress.proc_cpu, _ingress.descendants

BENCH = os.environ.get("BENCH_STORE", os.path.join(ROOT, "build", "bench", "bench_store"))
PX = "2001:db8:aa:ee::2"
NGINX_PORT = 8081
SYSTEMS = ["peak", "nginx", "ketama"]
# the solo pods' idle timeout, above nginx's upstream keepalive_timeout: else nginx reuses
# a connection the pod is closing (a PUT's body cannot be retried: 502), and a busy
# machine's pauses made that happen in one run of three
SOLO_TIMEOUT_MS = 30000


def log(*a):
    print("bench-store:", *a, file=sys.stderr, flush=True)


def ep_addr(i):
    return f"2001:db8:104::{i}"


def solo_config(i):
    """A configuration in which pod s{i} is the only endpoint: it owns every slice."""
    return (CONFIG.split("    endpoints:")[0] +
            f'    endpoints:\n      - {{id: s{i}, address: "{ep_addr(i)}"}}\n')


def nginx_conf(d, pods):
    # max_fails=0: an upstream error must not send a key to another pod (a 404 there)
    ups = "".join(f"    server [{ep_addr(i)}]:{PORT} max_fails=0;\n" for i in pods)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(d, "nginx-" + sub), exist_ok=True)
    return f"""user root;
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
daemon off;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {d}/nginx-client_body;
  proxy_temp_path {d}/nginx-proxy;
  fastcgi_temp_path {d}/nginx-fastcgi;
  uwsgi_temp_path {d}/nginx-uwsgi;
  scgi_temp_path {d}/nginx-scgi;
  client_max_body_size 0;
  # a kept client connection serves any number of requests (1000 by default, then
  # nginx closes it under the client's pipelined requests), and so does an upstream one
  keepalive_requests 1000000;
  upstream pods {{
    hash $request_uri consistent;
{ups}    keepalive 256;
    keepalive_timeout 5s;
    keepalive_requests 1000000;
  }}
  server {{
    listen [{PX}]:{NGINX_PORT} backlog=4096;
    location / {{
      proxy_pass http://pods;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_buffering off;
    }}
  }}
}}
"""


class Bench:
    def __init__(self, args, tmp):
        self.args, self.tmp = args, tmp
        if args.map == "controller":
            key = tmp / "ctl.key"
            key.write_text("0123456789abcdef0123456789abcdef\n")
            key.chmod(0o600)
            self.net = Net(tmp, npods=4, replicas=1, pod_extra=[
                "--controller", f"[{CTL}]:{CTL_PORT}", "--key-file", str(key),
                "--drop-delay", "2"])
        else:
            self.net = Net(tmp, npods=4, replicas=1, late=1)
        self.ctl = None
        self.px = self.net.cl[:-3] + "-px"
        self.solo = {}
        self.nginx = None
        self.small_keys = {}

    # -- the testbed --------------------------------------------------------------------

    def up(self):
        self.net.up()
        ip("netns", "add", self.px)
        ip("-n", self.px, "link", "set", "lo", "up")
        ip("-n", self.net.cl, "link", "add", "vpx", "type", "veth", "peer", "name", "p0",
           "netns", self.px)
        ip("-n", self.net.cl, "addr", "add", "2001:db8:aa:ee::1/64", "dev", "vpx", "nodad")
        ip("-n", self.px, "addr", "add", f"{PX}/64", "dev", "p0", "nodad")
        ip("-n", self.net.cl, "link", "set", "vpx", "up")
        ip("-n", self.px, "link", "set", "p0", "up")
        ip("-n", self.px, "-6", "route", "add", "default", "via", "2001:db8:aa:ee::1")
        if self.args.map == "controller":
            ip("-n", self.net.cl, "addr", "add", f"{CTL}/128", "dev", "lo")

    # -- the controller (--map controller) -------------------------------------------------

    def ctl_start(self):
        """Starts peak controller once PEAK's pods run, waits for their hellos, drains s4
        (health down: its slices go to s1-s3) and routes each pod's blocks to it."""
        pods = self.net.pods
        self.ctl = Controller(self.net)
        for pod in pods.values():
            wait_for(lambda: "connected to controller" in pod.logtext(), f"{pod.id} linked",
                     60)
        wait_for(lambda: self.ctl.log_path.read_text().count("(authenticated)") >= len(pods),
                 "the pods' hellos", 60)
        before = {pid: maps(pod) for pid, pod in pods.items()}
        self.ctl.ctl("health", NAME, "s4", "down")
        for pid, pod in pods.items():
            wait_for(lambda: maps(pod) > before[pid] and "0 slice(s) here" in pod.logtext()
                     if pid == "s4" else maps(pod) > before[pid], f"{pid}'s map", 60)
        reroute(self.net, ("s1", "s2", "s3"))

    def ctl_stop(self):
        if self.ctl:
            self.ctl.stop()
            self.ctl = None

    def down(self):
        self.ctl_stop()
        self.nginx_stop()
        for pod in self.solo.values():
            pod.stop()
        self.net.down()
        subprocess.run(["ip", "netns", "del", self.px], capture_output=True)

    def cluster_pids(self, system):
        if system == "peak":
            pods = [p.proc.pid for p in self.net.pods.values() if p.proc.poll() is None]
            return pods + [self.net.dns.proc.pid]
        pids = [p.proc.pid for p in self.solo.values() if p.proc.poll() is None]
        if system == "nginx" and self.nginx:
            pids += descendants([self.nginx.pid])
        return pids

    def cpu(self, system):
        return sum(proc_cpu(p) for p in self.cluster_pids(system))

    def conns(self, system):
        """The connections PEAK's running pods have accepted (their metrics), else None."""
        if system != "peak":
            return None
        return sum(p.metrics().get("peak_store_connections_total", 0)
                   for p in self.net.pods.values() if p.proc.poll() is None)

    def dropped(self):
        """The objects PEAK's running pods dropped after a move (their metrics)."""
        return sum(p.metrics().get("peak_store_dropped_total", 0)
                   for p in self.net.pods.values() if p.proc.poll() is None)

    def peer_conns(self):
        """The connections PEAK's running pods opened to each other (walks, read-throughs,
        drop confirmations), from their metrics."""
        return sum(p.metrics().get("peak_store_peer_connections_total", 0)
                   for p in self.net.pods.values() if p.proc.poll() is None)

    # -- nginx and the solo pods ---------------------------------------------------------

    def nginx_start(self, pods):
        conf = self.tmp / "nginx.conf"
        conf.write_text(nginx_conf(self.tmp, pods))
        if self.nginx:
            workers = set(descendants([self.nginx.pid])) - {self.nginx.pid}
            subprocess.run(["ip", "netns", "exec", self.px, "nginx", "-c", str(conf), "-s",
                            "reload"], check=True, capture_output=True)
            # the reload is done when the old workers have gone and new ones run
            deadline = time.time() + 20
            while True:
                now = set(descendants([self.nginx.pid])) - {self.nginx.pid}
                if now and not now & workers:
                    break
                if time.time() > deadline:
                    raise RuntimeError("nginx did not reload")
                time.sleep(0.05)
            return
        self.nginx = subprocess.Popen(["ip", "netns", "exec", self.px, "nginx", "-c",
                                       str(conf)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        code = ("import socket,sys,time\nd=time.time()+20\nwhile True:\n try:\n"
                f"  socket.create_connection(('{PX}',{NGINX_PORT}),1).close();break\n"
                " except OSError:\n  time.sleep(0.05)\n  if time.time()>d: sys.exit(1)\n")
        self.net.py(code)

    def nginx_stop(self):
        if self.nginx and self.nginx.poll() is None:
            self.nginx.terminate()
            try:
                self.nginx.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        self.nginx = None

    def solo_start(self, system, i):
        cfg = self.tmp / f"solo-s{i}.yaml"
        cfg.write_text(solo_config(i))
        pod = Pod(self.net.ns[i - 1], f"s{i}", cfg, self.tmp / f"data-{system}-s{i}",
                  self.tmp / f"{system}-s{i}.log", max_body=1 << 30,
                  extra=["--timeout", str(SOLO_TIMEOUT_MS)])
        pod.start()
        self.solo[i] = pod

    def solo_stop(self):
        for pod in self.solo.values():
            pod.stop()
            shutil.rmtree(pod.data, ignore_errors=True)
        self.solo = {}

    # -- the workload ---------------------------------------------------------------------

    def target(self, system, pods=(1, 2, 3)):
        if system == "peak":
            return ["peak", f"[::1]:{self.net.dns.port}", str(PORT), NAME]
        if system == "nginx":
            return ["nginx", PX, str(NGINX_PORT)]
        return ["ketama", str(PORT), ",".join(ep_addr(i) for i in pods)]

    def phase(self, system, op, first, count, size, pods=(1, 2, 3), tag=None, load=False):
        """W workers share keys [first, first+count); returns the phase's figures and
        {key: (status, pod)}. load: a workload phase, with --depth, --spread and (GET)
        --get-passes; a move's read rounds read each key once, a request at a time."""
        w = max(1, min(self.args.workers, count))
        env = dict(os.environ, BENCH_STORE_CONN=self.args.conn)
        if load:
            env.update(BENCH_STORE_DEPTH=str(self.args.depth),
                       BENCH_STORE_SPREAD=str(int(self.args.spread)),
                       BENCH_STORE_PASSES=str(self.args.get_passes))
        tag = tag or f"{system}-{op}-{size}"
        conns0 = self.conns(system)
        cpu0, t0 = self.cpu(system), time.time()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        procs = []
        for k in range(w):
            a, b = first + count * k // w, first + count * (k + 1) // w
            st = (["strace", "-f", "-c", "-o", str(self.tmp / f"{tag}-{k}.strace")]
                  if self.args.strace else [])
            procs.append((self.tmp / f"{tag}-{k}.out", subprocess.Popen(
                ["ip", "netns", "exec", self.net.cl, *st, BENCH, *self.target(system, pods),
                 op, f"{a}:{b}", str(size), str(self.tmp / f"{tag}-{k}.out")],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)))
        errs = []
        for _, p in procs:
            _, err = p.communicate(timeout=3600)
            errs += err.splitlines()[:3]
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, reaped above
        client = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
        secs, cpu = time.time() - t0, self.cpu(system) - cpu0
        conns = None if conns0 is None else int(self.conns(system) - conns0)
        lat, keys, failed = [], {}, 0
        for path, _ in procs:
            for line in path.read_text().splitlines():
                i, us, status, pod = line.split()
                lat.append(float(us))
                keys[int(i)] = (int(status), pod)
                failed += int(status) not in ((200,) if op == "get" else (201, 204))
        lat.sort()
        n = len(lat)
        res = {"ops": n, "failed": failed, "seconds": round(secs, 3),
               "rps": round(n / secs, 1) if secs else 0.0,
               "p50_us": lat[n // 2] if n else None,
               "p99_us": lat[min(n - 1, n * 99 // 100)] if n else None,
               "cpu_us_per_req": round(cpu * 1e6 / n, 1) if n else None,
               "client_cpu_us_per_req": round(client * 1e6 / n, 1) if n else None,
               "workers": w, "size": size}
        if conns is not None:  # accepted by the pods: with route hints about one a pod
            res["connections"] = conns
        if self.args.strace and n:
            calls = strace_calls(self.tmp / f"{tag}-{k}.strace" for k in range(w))
            res["syscalls_per_req"] = round(sum(calls.values()) / n, 2)
            res["syscalls"] = {c: round(v / n, 2) for c, v in
                               sorted(calls.items(), key=lambda x: -x[1]) if v / n >= 0.05}
        if errs:
            res["errors"] = errs[:5]
        log(f"{system:6} {op} {count} x {size} B: {res['rps']:.0f}/s, p50 "
            f"{res['p50_us']:.0f} us, p99 {res['p99_us']:.0f} us, cpu "
            f"{res['cpu_us_per_req']} us/req, client cpu {res['client_cpu_us_per_req']} "
            f"us/req, {failed} failed"
            + (f", {conns} connections" if conns is not None else "")
            + (f", {res['syscalls_per_req']} syscalls/req {res['syscalls']}"
               if "syscalls_per_req" in res else ""))
        for e in errs[:3]:  # why requests failed, also in a move's read rounds
            log(f"  {e}")
        return res, keys

    def workload(self, system):
        a = self.args
        out = {}
        for cls, first, count, size in (("small", 0, a.small, a.small_size),
                                        ("large", a.small, a.large, a.large_size)):
            if not count:
                continue
            put, _ = self.phase(system, "put", first, count, size, load=True)
            get, keys = self.phase(system, "get", first, count, size, load=True)
            out[cls] = {"put": put, "get": get}
            if cls == "small":
                self.small_keys = keys  # which pod answered each, before a pod is added
        return out

    # -- adding a pod ----------------------------------------------------------------------

    def peak_move(self):
        """s4 joins while reads of every small object go on; returns the move's figures."""
        a, net = self.args, self.net
        failed = reads = rounds = 0
        round_conns = []
        peer0 = self.peer_conns()
        t0 = time.time()
        if a.map == "controller":
            s4 = net.pods["s4"]
            done0 = s4.logtext().count("store: migration done")
            nmaps = maps(s4)
            self.ctl.ctl("health", NAME, "s4", "up")
            wait_for(lambda: maps(s4) > nmaps and blocks_now(s4), "s4's map with its slices",
                     60)
            reroute(net, ("s4",))
        else:
            done0 = 0
            (s4,) = net.join()
        while True:
            done = s4.logtext().count("store: migration done") > done0
            res, _ = self.phase("peak", "get", 0, a.small, a.small_size, tag=f"move-{rounds}")
            reads, failed, rounds = reads + res["ops"], failed + res["failed"], rounds + 1
            round_conns.append(res.get("connections"))
            if done:
                break
            if time.time() - t0 > 600:
                raise RuntimeError("the migration did not finish")
        secs = time.time() - t0
        moved = len([f for f in s4.files() if OBJECT_NAME.match(f)])  # files and log
        held = int(net.py(HEAD_CODE, str(a.small + a.large), ep_addr(4), str(PORT),
                          timeout=600))
        out = {"moved": moved, "minimum": held, "ideal": (a.small + a.large) / 4,
               "objects": a.small + a.large, "reads": reads, "failed_reads": failed,
               "seconds": round(secs, 2), "read_rounds": rounds,
               # accepted by the pods in each read round (clients' and the pods' own to
               # each other), and those the pods opened to each other during the move
               "round_connections": round_conns,
               "peer_connections": int(self.peer_conns() - peer0)}
        if a.map == "controller":
            # the old owners drop what moved (--drop-delay 2 here) once s4 confirms each
            # copy; then one more round of reads, which must not fail either
            t1 = time.time()
            wait_for(lambda: self.dropped() >= moved, "the old owners' drops", 300)
            out["dropped"] = int(self.dropped())
            out["drop_seconds"] = round(time.time() - t1, 2)
            res, _ = self.phase("peak", "get", 0, a.small, a.small_size, tag="after-drop")
            out["reads"] += res["ops"]
            out["failed_reads"] += res["failed"]
            out["round_connections"].append(res.get("connections"))
        return out

    def proxy_move(self, system, before):
        """The fourth pod added to nginx's servers or the client's ring; every small object
        read once through it."""
        a = self.args
        self.solo_start(system, 4)
        if system == "nginx":
            self.nginx_start((1, 2, 3, 4))
        res, keys = self.phase(system, "get", 0, a.small, a.small_size, pods=(1, 2, 3, 4),
                               tag=f"{system}-move")
        total = a.small + a.large
        if system == "ketama":
            addrs = [",".join(ep_addr(i) for i in p) for p in ((1, 2, 3), (1, 2, 3, 4))]
            moved = int(subprocess.run([BENCH, "ketama-moved", *addrs, str(total)],
                                       capture_output=True, text=True, check=True).stdout)
        else:
            # the small objects answered by another pod than at PUT, scaled to all objects
            # (the large ones are a different sample of the same hash)
            small_moved = sum(1 for k, (st, pod) in keys.items()
                              if st != 200 or pod != before.get(k, (0, pod))[1])
            moved = round(small_moved * total / a.small)
        return {"moved": moved, "minimum": None, "ideal": total / 4, "objects": total,
                "reads": res["ops"], "failed_reads": res["failed"]}


def run_once(args, order):
    """One testbed, the systems in this order; {system: figures}."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="peak-bench-store-"))
    b = Bench(args, tmp)
    out = {}
    try:
        b.up()
        log(f"testbed up ({tmp})")
        peak_pods = list(b.net.pods.values())
        if order[0] != "peak":
            for pod in peak_pods:  # they hold the port the solo pods want
                pod.stop()
        for system in order:
            if system == "peak":
                for pod in peak_pods:
                    if pod.proc.poll() is not None:
                        pod.start()
                if args.map == "controller":
                    b.ctl_start()
                r = b.workload("peak")
                r["move"] = b.peak_move()
                b.ctl_stop()
                for pod in b.net.pods.values():
                    pod.stop()
            else:
                for i in (1, 2, 3):
                    b.solo_start(system, i)
                if system == "nginx":
                    b.nginx_start((1, 2, 3))
                r = b.workload(system)
                r["move"] = b.proxy_move(system, b.small_keys)
                b.nginx_stop()
                b.solo_stop()
            log(f"{system:6} move: {r['move']}")
            out[system] = r
    finally:
        b.down()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def strace_calls(paths):
    """{syscall: calls} summed over `strace -c` summaries (their table rows)."""
    calls = {}
    for path in paths:
        for line in pathlib.Path(path).read_text().splitlines():
            f = line.split()
            # % time, seconds, usecs/call, calls, [errors,] syscall
            if len(f) >= 5 and f[-1] != "total" and f[3].isdigit() and f[0][0].isdigit():
                calls[f[-1]] = calls.get(f[-1], 0) + int(f[3])
    return calls


def aggregate(runs, systems):
    """Per system, the median over the runs of each phase's figures (failures summed), and
    the first run's move (the same keys move each time)."""
    out = {}
    for system in systems:
        rs = [r[system] for r in runs]
        agg = {"move": rs[0]["move"]}
        for cls in ("small", "large"):
            if cls not in rs[0]:
                continue
            agg[cls] = {}
            for op in ("put", "get"):
                ph = [r[cls][op] for r in rs]
                a = dict(ph[0])
                for f in ("rps", "p50_us", "p99_us", "cpu_us_per_req", "client_cpu_us_per_req",
                          "seconds"):
                    a[f] = statistics.median(x[f] for x in ph)
                for f in ("connections", "syscalls_per_req"):
                    if f in a:
                        a[f] = statistics.median(x[f] for x in ph)
                a["failed"] = sum(x["failed"] for x in ph)
                a["ops"] = sum(x["ops"] for x in ph) // len(ph)
                a["rps_runs"] = [x["rps"] for x in ph]
                agg[cls][op] = a
        out[system] = agg
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds: the smoke test")
    ap.add_argument("--small", type=int, default=20000)
    ap.add_argument("--large", type=int, default=60)
    ap.add_argument("--small-size", type=int, default=1024)
    ap.add_argument("--large-size", type=int, default=1 << 20)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--conn", choices=("keepalive", "close"), default="keepalive",
                    help="client connections: kept by each worker, or one per request")
    ap.add_argument("--map", choices=("controller", "static"), default="controller",
                    help="PEAK's pods under peak controller (route hints) or on a static map")
    ap.add_argument("--depth", type=int, default=16,
                    help="requests each worker keeps in flight, pipelined (objects up to "
                    "4 KiB, kept connections; 1: one at a time through the library)")
    ap.add_argument("--spread", action="store_true",
                    help="nginx's client sends its --depth requests on as many connections "
                    "instead of pipelining them on one")
    ap.add_argument("--get-passes", type=int, default=4,
                    help="a small GET round reads its keys this many times")
    ap.add_argument("--strace", action="store_true",
                    help="count the client workers' system calls per request (strace -c)")
    ap.add_argument("--runs", type=int, default=3,
                    help="testbeds, one after another, the systems' order rotated")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "store.json"))
    args = ap.parse_args()
    if args.quick:
        args.small, args.large, args.large_size, args.workers = 60, 2, 256 << 10, 2
        args.runs, args.get_passes = 1, 1
    if os.geteuid() != 0:
        print("bench/store: needs root (network namespaces)", file=sys.stderr)
        return 2
    systems = args.systems.split(",")
    result = {"workload": {"small": args.small, "small_size": args.small_size,
                           "large": args.large, "large_size": args.large_size,
                           "workers": args.workers, "quick": args.quick, "runs": args.runs,
                           "depth": args.depth, "spread": args.spread,
                           "get_passes": args.get_passes,
                           "map": args.map, "strace": args.strace,
                           "connection": ("kept by each worker" if args.conn == "keepalive"
                                          else "one per request (client side)")},
              "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "systems": {}, "runs": []}
    for k in range(args.runs):
        order = systems[k % len(systems):] + systems[:k % len(systems)]
        log(f"run {k + 1} of {args.runs}: {', '.join(order)}")
        result["runs"].append(run_once(args, order))
    result["systems"] = aggregate(result["runs"], systems)
    bad = False
    for system, r in result["systems"].items():
        for cls in ("small", "large"):
            for op in ("put", "get"):
                bad |= cls in r and r[cls][op]["failed"] > 0
    pk = result["systems"].get("peak")
    if pk:
        bad |= pk["move"]["failed_reads"] > 0 or pk["move"]["moved"] != pk["move"]["minimum"]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    log(f"wrote {args.out}" + (" (with failures)" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
