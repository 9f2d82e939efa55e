#!/usr/bin/python3
"""PEAK against traditional ingress on the namespace testbed, in one run.

Systems, all reaching the same pods (peak serve) on the same testbed (tests/integration/
testbed.py: router with BIRD, two nodes with agents, BGP and the XDP filter on their uplinks,
two pods each, peak dns, an ingress host):
  direct      clients to pod addresses, dealt round robin (no PEAK part on the path)
  peak        clients resolve through peak dns and compute their address (fanout 2)
  legacy      DNS-steered legacy clients: each asks peak dns for the service's plain AAAA
              from its own address (as a stub resolver on its host does: 'peak load
              --aaaa'), with no SSA computation, and connects to the answer's addresses
              (a retry to the next one); resolved once at the start and kept (TTL 5 s)
  nginx       nginx as an L7 ingress on the ingress host, keep-alive upstreams
  haproxy-l4  HAProxy in TCP mode on the ingress host
  haproxy-l7  HAProxy in HTTP mode on the ingress host, keep-alive upstreams

Work: 'peak load' in the clients' namespace, each emulated client from its own /64, closed
loop at fixed concurrencies and open loop at fixed rates (keep-alive), and a connection per
request at one concurrency; every cell repeated --runs times with the systems' order
rotated. CPU: per process from the scheduler's run times (/proc/PID/task/*/schedstat) for
the cluster side (proxy, agents, BIRD, pods, peak dns; kernel work such as forwarding is
charged to whichever process it ran in), and the whole machine from /proc/stat. Memory:
resident set of the cluster processes. Scenarios under load: a pod killed (its port answers
resets; the clients' one retry comes after --retry-delay ms, or at once in kill-now), a pod silently gone (nftables drops everything it receives), a pod stopped
(SIGSTOP: its process lives, the kernel still completes handshakes for it), a pod added (the
proxies reloaded with it), a SYN flood. Writes JSON (--out); bench/report.py makes the
report.

Each scenario's row also has the load's failed attempts (attempt_failures, times from the
load's start_unix), the failure's wall-clock time (fail_unix) and the agents' and the
controller's route events from the load's start (events), to read its gaps against.

Usage (root): bench/ingress/run.py [--quick] [--runs N] [--duration S] [--scenarios LIST]
              [--scenario-runs N] [--out FILE]"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import testbed  # noqa: E402

SYSTEMS = ["direct", "peak", "legacy", "nginx", "haproxy-l4", "haproxy-l7"]
ING = "2001:db8:ff:e::2"
SOURCES = "2001:db8:c0::/48"


def run_sources(run):
    """The emulated clients of steady-state run `run` (unless --same-sources): their own /52
    in SOURCES, so that each run draws anew how the clients' source /64s hash over the pods'
    slices and the medians over runs sample that draw instead of repeating one (16 fixed
    clients split 1:2 over the two nodes in every run). Client k sends from the k-th /64 of
    it (peak load --sources: fewer than 4,096 clients, 16 runs before the sets repeat)."""
    return f"2001:db8:c0:{run % 16 * 4096:x}::/52"
# A pod added: nothing fails, so an attempt counts as broken when it is reset or closed, or
# unanswered for 1 s: a loaded machine (CI: two suites at once on 2 cores) stalls a request
# past the failure scenarios' 250 ms now and then, which is not a broken connection (a
# packet lost and sent again by TCP is not either; tests/cluster/test_handover.py waits 5 s)
ADD_TIMEOUT_MS = 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


# -- the proxies --------------------------------------------------------------------------

def nginx_conf(tb, d, pods):
    ups = "".join(f"    server [{tb.pod_addr(i, j)}]:{testbed.PORT};\n" for i, j in pods)
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
  keepalive_requests 1000000;
  upstream pods {{
{ups}    keepalive 512;
  }}
  server {{
    listen [{ING}]:80 backlog=4096;
    location / {{
      proxy_pass http://pods;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def haproxy_conf(tb, pods):
    srv = "".join(f"  server {tb.pod_id(i, j)} [{tb.pod_addr(i, j)}]:{testbed.PORT} check\n"
                  for i, j in pods)
    return f"""global
  nbthread 2
  maxconn 8000
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
frontend l4
  mode tcp
  bind [{ING}]:81
  default_backend pods_tcp
backend pods_tcp
  mode tcp
  balance roundrobin
{srv}frontend l7
  mode http
  bind [{ING}]:82
  default_backend pods_http
backend pods_http
  mode http
  balance roundrobin
  http-reuse always
{srv}"""


def serving(tb):
    """The pods that serve from the start (the spare one joins in a scenario)."""
    return [p for p in tb.all_pods() if p != tb.spare]


def target(tb, system):
    """The 'peak load' arguments that aim at a system."""
    if system == "direct":
        return [",".join(f"[{tb.pod_addr(i, j)}]:{testbed.PORT}" for i, j in serving(tb))]
    if system in ("peak", "legacy"):
        return [testbed.SERVICE, "--server", f"[{testbed.DNS_ADDR}]:53", "--port",
                str(testbed.PORT)] + (["--aaaa"] if system == "legacy" else [])
    port = {"nginx": 80, "haproxy-l4": 81, "haproxy-l7": 82}[system]
    return [f"[{ING}]:{port}"]


# -- measuring ----------------------------------------------------------------------------

def utc_now():
    """The time as the daemons' log lines give it (UTC, ms)."""
    import datetime
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def log_time(line):
    """The time.time() of a daemon's log line (its first word, UTC with ms), or None."""
    import datetime
    try:
        t = datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
    except (ValueError, IndexError):
        return None
    return t.replace(tzinfo=datetime.timezone.utc).timestamp()


def descendants(pids):
    """The PIDs given and all their descendants (nginx workers and the like)."""
    children = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                with open(f"/proc/{e}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(e))
            except (OSError, IndexError, ValueError):
                pass
    out, pending = [], list(pids)
    while pending:
        p = pending.pop()
        out.append(p)
        pending.extend(children.get(p, []))
    return out


_THREAD_NS = {}  # (pid, tid) -> the thread's run time when last read, ns


def proc_cpu(pid):
    """CPU time of a process (all its threads), in seconds; 0 if it is gone. From the
    scheduler's nanosecond run times (/proc/PID/task/*/schedstat: the tick-based utime and
    stime are too coarse for a pod serving a few clients over 300 ms). A thread that exited
    counts with its time when last read here, so the figure never goes down between two
    reads (a sum over the live threads alone did when one exited: a negative CPU per
    request); a thread that lived only between two reads is missed."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        for k in [k for k in _THREAD_NS if k[0] == pid]:
            del _THREAD_NS[k]
        return 0.0
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                _THREAD_NS[(pid, t)] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return sum(ns for (p, _), ns in _THREAD_NS.items() if p == pid) / 1e9


def proc_role(pid):
    """What a cluster process is: 'serve', 'agent', 'dns', 'controller' (peak's
    subcommands), 'bird', 'nginx', 'haproxy'."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return "?"
    # nginx rewrites its argv[0] ("nginx: worker process")
    name = os.path.basename(argv[0].decode(errors="replace").split(" ")[0])
    if name == "peak" and len(argv) > 1:
        return argv[1].decode(errors="replace")
    return name.split(":")[0]


def proc_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK_TCK


class Bench:
    def __init__(self, args, workdir):
        self.a, self.dir = args, workdir
        self.peak = os.path.abspath(args.peak)
        self.tb = testbed.Testbed(f"pkb{os.getpid() % 10000}", workdir, self.peak, ingress=True,
                                  filter_obj=args.filter_obj, fanout=2, spare=(2, 3))
        self.proxies = {}

    def up(self):
        tb = self.tb
        tb.up()
        if not tb.wait_converged(30):
            raise RuntimeError("the testbed did not converge (BGP)")
        self.write_proxy_confs(serving(tb))
        self.proxies["nginx"] = tb.run(tb.ing(), "nginx", "-c", self.nginx_cfg, "-p", self.dir,
                                       "-e", os.path.join(self.dir, "nginx-error.log"),
                                       log="nginx.log")
        # master-worker: SIGUSR2 to the master reloads the configuration
        self.proxies["haproxy"] = tb.run(tb.ing(), "haproxy", "-W", "-db", "-f",
                                         self.haproxy_cfg, log="haproxy.log")
        # every system answers before anything is measured
        for s in SYSTEMS:
            if not self.wait_serving(s):
                raise RuntimeError(f"{s} does not answer (logs in {self.dir})")

    def write_proxy_confs(self, pods):
        self.nginx_cfg = os.path.join(self.dir, "nginx.conf")
        with open(self.nginx_cfg, "w") as f:
            f.write(nginx_conf(self.tb, self.dir, pods))
        self.haproxy_cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(self.haproxy_cfg, "w") as f:
            f.write(haproxy_conf(self.tb, pods))

    def reload_proxies(self, pods):
        """What an ingress controller does when the pods change: new upstreams, reload."""
        self.write_proxy_confs(pods)
        testbed.sh("ip", "netns", "exec", self.tb.ing(), "nginx", "-c", self.nginx_cfg, "-p",
                   self.dir, "-e", os.path.join(self.dir, "nginx-error.log"), "-s", "reload")
        os.kill(self.proxies["haproxy"].pid, 10 + 2)  # SIGUSR2

    def pod_pids(self):
        return {p: self.tb.serving[p].pid for p in self.tb.serving}

    def cluster_pids(self):
        return descendants([p.pid for p in self.tb.procs if p.poll() is None])

    def load_cmd(self, system, extra, clients=64, sources=SOURCES):
        """'peak load' in the clients' namespace, aimed at a system, JSON out."""
        tb = self.tb
        return ["ip", "netns", "exec", f"{tb.tag}-c", self.peak, "load", *target(tb, system),
                "--sources", sources, "--clients", str(clients), "--json", *extra]

    def scenario_load(self, system, retry_delay, timeout=250):
        """The scenarios' load, started in the background: 32 connections, one retry after
        retry_delay ms, each attempt given timeout ms."""
        cmd = self.load_cmd(system, ["--concurrency", "32", "--duration",
                                     str(self.a.scenario_seconds), "--retries", "1",
                                     "--retry-delay", str(retry_delay),
                                     "--timeout", str(timeout), "--timeline", "50"], 32)
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def load(self, system, extra, clients=None, sources=SOURCES):
        cmd = self.load_cmd(system, extra, clients or 64, sources)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if p.returncode:
            raise RuntimeError(f"peak load failed: {' '.join(cmd)}: {p.stderr}")
        return json.loads(p.stdout)

    def measured(self, system, extra, clients=None, sources=SOURCES):
        """One run with the CPU of the cluster and of the machine around it."""
        pids = self.cluster_pids()
        c0 = {p: proc_cpu(p) for p in pids}
        m0, t0 = machine_busy(), utc_now()
        r = self.load(system, extra, clients, sources)
        m1 = machine_busy()
        r["wall"] = [t0, utc_now()]  # to read its failures against the cluster's log lines
        roles = {}
        for p, c in c0.items():
            k = proc_role(p)
            roles[k] = roles.get(k, 0) + max(proc_cpu(p) - c, 0)
        cl = sum(roles.values())
        r["cluster_cpu_by_role_s"] = {k: round(v, 3) for k, v in roles.items()}
        ok = max(r["ok"], 1)
        r["cluster_cpu_s"] = cl
        r["machine_cpu_s"] = m1 - m0
        r["cluster_ms_per_1k"] = cl * 1e6 / ok
        r["machine_ms_per_1k"] = (m1 - m0) * 1e6 / ok
        r["cluster_rss_kib"] = sum(proc_rss_kib(p) for p in pids)
        if system in ("nginx", "haproxy-l4", "haproxy-l7"):
            name = "nginx" if system == "nginx" else "haproxy"
            r["proxy_rss_kib"] = sum(proc_rss_kib(p)
                                     for p in descendants([self.proxies[name].pid]))
        r["system"] = system
        return r

    # -- steady state ------------------------------------------------------------------

    def steady(self):
        a, out = self.a, []
        cells = [("closed", c) for c in a.concurrency] + [("open", r) for r in a.rates]
        if a.new_conn:
            cells.append(("new-conn", a.new_conn))
        total = a.runs * len(cells) * len(SYSTEMS)
        done = 0
        for run in range(a.runs):
            for kind, v in cells:
                order = SYSTEMS[run % len(SYSTEMS):] + SYSTEMS[:run % len(SYSTEMS)]
                for s in order:
                    if kind == "open":
                        extra, clients = ["--rate", str(v)], 64
                    else:
                        extra, clients = ["--concurrency", str(v)], max(v, 1)
                        if kind == "new-conn":
                            extra.append("--new-conn")
                    src = SOURCES if a.same_sources or clients >= 4096 else run_sources(run)
                    r = self.measured(s, extra + ["--duration", str(a.duration)], clients, src)
                    r.update(kind=kind, value=v, run=run, sources=src)
                    out.append(r)
                    done += 1
                    log(f"[{done}/{total}] {s:10s} {kind} {v}: {r['rps']:.0f} req/s, "
                        f"p50 {r['latency_us']['p50']:.0f} us, failed {r['failed']}, "
                        f"cluster {r['cluster_ms_per_1k']:.1f} ms/1k")
        return out

    # -- scenarios ---------------------------------------------------------------------

    def wait_serving(self, system, timeout=30):
        """Until a short load sees no failure (the cluster has healed)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = self.load(system, ["--concurrency", "8", "--duration", "0.5", "--timeout",
                                   "500"], 64)
            if r["failed"] == 0 and r["ok"] > 0:
                return True
            time.sleep(0.5)
        return False

    def pod_added(self, system):
        """Load for D s; at 1/4 of it the spare pod starts serving (and, for the proxies, the
        ingress controller's part: new upstream list, reload). Connections broken are the
        attempts that failed (reset, closed, refused, or not answered within ADD_TIMEOUT_MS)
        and were retried; the new pod's share is read from the pods' CPU time, sampled every
        100 ms (see below); 'never' if it ends the run with under a tenth of the other pods'
        mean rate."""
        a, tb = self.a, self.tb
        dur = a.scenario_seconds
        p = self.scenario_load(system, self.a.retry_delay, ADD_TIMEOUT_MS)
        t0 = time.time()
        time.sleep(dur / 4)
        t_add = time.time() - t0
        tb.serve(*tb.spare)
        if system in ("nginx", "haproxy-l4", "haproxy-l7"):
            self.reload_proxies(tb.all_pods())
        samples = []  # (t, {pod: cpu})
        while p.poll() is None and time.time() - t0 < dur:
            samples.append((time.time() - t0, {k: proc_cpu(v) for k, v in self.pod_pids().items()}))
            time.sleep(0.1)
        out, err = p.communicate(timeout=60)
        if p.returncode:
            raise RuntimeError(f"peak load failed: {err}")
        r = json.loads(out)
        # CPU rate per pod over 300 ms windows; the new pod's final rate is its mean over
        # the last second; it takes its share when it first reaches 80% of that
        wins = []
        for i in range(3, len(samples)):
            (ta, ca), (tz, cz) = samples[i - 3], samples[i]
            if ta >= t_add:
                wins.append((tz, {k: (cz[k] - ca.get(k, cz[k])) / (tz - ta) for k in cz}))
        share = None
        last = [w for t, w in wins if t >= wins[-1][0] - 1.0] if wins else []
        final = sum(w.get(tb.spare, 0) for w in last) / len(last) if last else 0
        others = [sum(v for k, v in w.items() if k != tb.spare) / max(len(w) - 1, 1)
                  for w in last]
        if last and final > 0.1 * (sum(others) / len(others)):
            share = next(round(t - t_add, 2) for t, w in wins if w.get(tb.spare, 0) >= 0.8 * final)
        # back to four pods
        tb.kill_pod(*tb.spare)
        if system in ("nginx", "haproxy-l4", "haproxy-l7"):
            self.reload_proxies(serving(tb))
        e = r["errors"]
        r.update(system=system, scenario="add", fail_at_s=t_add, share_s=share,
                 broken=e["reset"] + e["eof"] + e["refused"] + e["timeout"])
        if not self.wait_serving(system):
            log(f"{system} did not heal after add")
        time.sleep(a.heal_seconds)
        log(f"add    {system:10s}: broken {r['broken']}, failed {r['failed']}, new pod at its "
            f"share after {share if share is not None else 'never'} s")
        return r

    def flood(self, system):
        """Legitimate load at a fixed rate (open loop) for D/2 s alone, then D/2 s under a
        flood of TCP SYNs from random sources: for PEAK to random addresses of the service
        prefix (nearly all break the rule: the XDP filter drops them), for direct to the
        pods, for the proxies to their port. Legitimate p99 with and without."""
        a, tb = self.a, self.tb
        half = a.scenario_seconds / 2
        legit = ["--rate", str(a.flood_rate), "--duration", str(half), "--timeout", "1000"]
        r0 = self.load(system, legit, 64)
        if system in ("peak", "legacy"):
            aim = ["--prefix", testbed.PREFIX, "--port", str(testbed.PORT)]
        elif system == "direct":
            aim = ["--dst", ",".join(tb.pod_addr(i, j) for i, j in serving(tb)), "--port",
                   str(testbed.PORT)]
        else:
            aim = ["--dst", ING, "--port", target(tb, system)[0].rsplit(":", 1)[1]]
        fl = subprocess.Popen(["ip", "netns", "exec", f"{tb.tag}-c", self.a.flood_bin, *aim,
                               "--pps", str(a.flood_pps), "--seconds", str(half + 0.5),
                               "--sources", "2001:db8:c0::/48"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.25)
        r1 = self.load(system, legit, 64)
        out, err = fl.communicate(timeout=60)
        if fl.returncode:
            raise RuntimeError(f"flood failed: {err}")
        f = json.loads(out)
        r = {"system": system, "scenario": "flood", "rate": a.flood_rate,
             "flood_pps": f["sent"] / f["seconds"], "flood_errors": f["errors"],
             "before": r0, "during": r1}
        time.sleep(a.heal_seconds)
        log(f"flood  {system:10s}: legit p99 {r0['latency_us']['p99']:.0f} us alone, "
            f"{r1['latency_us']['p99']:.0f} us under {r['flood_pps']:.0f} SYN/s; failed "
            f"{r0['failed']}/{r1['failed']}")
        return r

    def on_pod(self, system, i, j, clients=32):
        """For the name-resolving systems: how many of the scenarios' clients have their
        first (cached) address in slices pod (i, j) serves now (node i's slice routes via
        the pod), and how many clients there are."""
        if system not in ("peak", "legacy"):
            return None
        import ipaddress
        lst = subprocess.run(self.load_cmd(system, ["--list"], clients), capture_output=True,
                             text=True, timeout=60).stdout.split("\n")
        firsts = [ipaddress.ip_address(ln.split()[1].rsplit(":", 1)[0].strip("[]"))
                  for ln in lst if len(ln.split()) > 1]
        out = testbed.sh("ip", "-j", "-n", self.tb.node(i), "-6", "route", "show", "table",
                         "100").stdout
        via = [ipaddress.ip_network(r["dst"]) for r in json.loads(out)
               if r.get("gateway") == self.tb.pod_addr(i, j)]
        return sum(any(a in n for n in via) for a in firsts), len(firsts)

    def pod_out_ms(self, i, j, t_wall):
        """Milliseconds from t_wall (time.time() when the failure was in place) to the first
        line of node i's agent log after the failure began that took pod (i, j) down (0 if
        that came before t_wall); None if there is none."""
        import datetime
        try:
            with open(os.path.join(self.dir, f"agent-n{i}.log")) as f:
                lines = f.readlines()
        except OSError:
            return None
        for line in lines:
            if f"endpoint {self.tb.pod_id(i, j)} is down" not in line:
                continue
            t = datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
            t = t.replace(tzinfo=datetime.timezone.utc).timestamp()
            if t >= t_wall - self.fail_cmd_s - 0.002:
                return round(max(t - t_wall, 0) * 1000, 1)
        return None

    def agent_downs(self):
        """The lines in the agents' logs that took an endpoint down."""
        out = []
        for i in range(1, self.tb.nodes + 1):
            try:
                with open(os.path.join(self.dir, f"agent-n{i}.log")) as f:
                    out += [line.strip() for line in f if " is down" in line]
            except OSError:
                pass
        return out

    EVENTS = (" is down", " is up", "slice routes", "slices moved", "handover", "drain",
              "connections reset")

    def cluster_events(self, since=None):
        """The lines of the agents' and the controller's logs that tell of a route change
        (an endpoint down or up, slice routes written, slices moved, a handover, connections
        reset), each prefixed with its log's name: what a measurement's failures are read
        against. With since (time.time()), only the lines stamped from then on, in time
        order."""
        out = []
        for name in [f"agent-n{i}" for i in range(1, self.tb.nodes + 1)] + ["controller"]:
            try:
                with open(os.path.join(self.dir, name + ".log")) as f:
                    out += [f"{name}: {line.strip()}" for line in f
                            if any(e in line for e in self.EVENTS)]
            except OSError:
                pass
        if since is not None:
            stamped = [(log_time(ln.split(": ", 1)[1]), ln) for ln in out]
            out = [ln for t, ln in sorted(stamped, key=lambda x: x[0] or 0)
                   if t is not None and t >= since]
        return out

    def scenario(self, system, kind):
        """Load for D s; at 1/4 of it pod (1,1) fails (kill: the process dies, its port
        answers resets; kill-now: the same with the retry at once rather than after
        --retry-delay; silent: every packet to it is dropped; stop: its process is stopped by
        SIGSTOP, alive but answering nothing); restored after the run."""
        if kind == "add":
            return self.pod_added(system)
        if kind == "flood":
            return self.flood(system)
        a, tb = self.a, self.tb
        dur = a.scenario_seconds
        pod = tb.pod(1, 1)
        delay = 0 if kind == "kill-now" else a.retry_delay
        on = self.on_pod(system, 1, 1)
        t_load = time.time()
        p = self.scenario_load(system, delay)
        time.sleep(dur / 4)
        t_fail = dur / 4
        killed = kind in ("kill", "kill-now")
        t_wall = time.time()
        self.fail_cmd_s = 0
        if killed:
            tb.kill_pod(1, 1)
        elif kind == "stop":  # 'ip netns exec' execs peak serve: the same PID
            os.kill(tb.serving[(1, 1)].pid, signal.SIGSTOP)
        else:
            testbed.sh("ip", "netns", "exec", pod, "nft", "add table inet pkdrop; "
                       "add chain inet pkdrop in { type filter hook input priority 0; "
                       "policy drop; }")
        self.fail_cmd_s = time.time() - t_wall
        # the failure is in place by now; the command took fail_cmd_ms to run (a loaded
        # machine may take a good part of a second to start 'ip netns exec nft')
        t_done = time.time()
        out, err = p.communicate(timeout=dur + 60)
        if p.returncode:
            raise RuntimeError(f"peak load failed: {err}")
        r = json.loads(out)
        if killed:
            tb.serve(1, 1)
        elif kind == "stop":
            os.kill(tb.serving[(1, 1)].pid, signal.SIGCONT)
        else:
            testbed.sh("ip", "netns", "exec", pod, "nft", "delete table inet pkdrop")
        r.update(system=system, scenario=kind, fail_at_s=t_fail, retry_delay_ms=delay,
                 pod_out_ms=self.pod_out_ms(1, 1, t_done),
                 fail_cmd_ms=round((t_done - t_wall) * 1000, 1),
                 # the failure's command started and was done (wall clock, as the load's
                 # start_unix and its attempt_failures' times, and the events' stamps)
                 fail_unix=[round(t_wall, 4), round(t_done, 4)],
                 events=self.cluster_events(since=t_load - 1))
        if on:
            r["clients_on_failed_pod"], r["clients"] = on
        if not self.wait_serving(system):
            log(f"{system} did not heal after {kind}")
        time.sleep(a.heal_seconds)  # the proxies' checks and the agents settle
        g = r["outage"]
        log(f"{kind:6s} {system:10s}: failed {r['failed']} of {r['sent']}, retries "
            f"{r['retried']}, gaps {g['gaps']} (max {g['gap_max_ms']:.0f} ms), longest "
            f"request {r['latency_us']['max'] / 1000:.0f} ms, still down at the end "
            f"{g['still_down']}, pod out after {r['pod_out_ms']} ms")
        return r

    def scenarios(self):
        out = []
        for kind in self.a.scenarios:
            for n in range(self.a.scenario_runs):
                order = SYSTEMS[n % len(SYSTEMS):] + SYSTEMS[:n % len(SYSTEMS)]
                for s in order:
                    r = self.scenario(s, kind)
                    r["scenario_run"] = n
                    out.append(r)
        return out


def versions():
    def first(*cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"kernel": os.uname().release, "cpus": os.cpu_count(), "cpu": cpu,
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
            "nginx": first("nginx", "-v"), "haproxy": first("haproxy", "-v"),
            "bird": first("bird", "--version"), "os": first("sh", "-c", ". /etc/os-release; "
                                                              "echo $PRETTY_NAME")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="one run of 2 s per cell, concurrencies 16 and 64, one rate")
    ap.add_argument("--runs", type=int, default=3, help="repetitions of every cell (3)")
    ap.add_argument("--duration", type=float, default=5, help="seconds per cell (5)")
    ap.add_argument("--same-sources", action="store_true",
                    help="every steady-state run from the same emulated clients (default: "
                    "each run its own, see run_sources)")
    ap.add_argument("--concurrency", default="1,16,64,256", help="closed-loop cells")
    ap.add_argument("--rates", default="2000,8000", help="open-loop cells, requests/s")
    ap.add_argument("--new-conn", type=int, default=16,
                    help="concurrency of the connection-per-request cell (0: none)")
    ap.add_argument("--scenarios", default="kill,kill-now,silent,stop,add,flood",
                    help="comma-separated, '' for none")
    ap.add_argument("--retry-delay", type=int, default=25,
                    help="ms before a client's one retry in the failure scenarios (25; "
                         "kill-now retries at once)")
    ap.add_argument("--scenario-seconds", type=float, default=8)
    ap.add_argument("--scenario-runs", type=int, default=1,
                    help="repetitions of every scenario per system, the systems' order "
                    "rotated (1)")
    ap.add_argument("--flood-pps", type=int, default=50000, help="SYNs per second (50000)")
    ap.add_argument("--flood-rate", type=int, default=2000,
                    help="legitimate requests/s during the flood (2000)")
    ap.add_argument("--flood-bin", default=os.path.join(ROOT, "build", "bench", "flood"))
    ap.add_argument("--heal-seconds", type=float, default=3)
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--peak", default=os.path.join(ROOT, "build", "peak"))
    ap.add_argument("--filter-obj", default=os.path.join(ROOT, "build", "filter.bpf.o"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "ingress.json"))
    a = ap.parse_args()
    if a.quick:
        a.runs, a.duration, a.concurrency, a.rates = 1, 2, "16,64", "4000"
        a.scenario_seconds, a.heal_seconds = 3, 0.5
    a.concurrency = [int(x) for x in a.concurrency.split(",") if x]
    a.rates = [int(x) for x in a.rates.split(",") if x]
    a.scenarios = [x for x in a.scenarios.split(",") if x]
    for x in a.scenarios:
        if x not in ("kill", "kill-now", "silent", "stop", "add", "flood"):
            ap.error(f"--scenarios: unknown '{x}' (kill, kill-now, silent, stop, add, flood)")
    if any(s not in SYSTEMS for s in a.systems.split(",")):
        ap.error(f"--systems: choose from {','.join(SYSTEMS)}")
    SYSTEMS[:] = a.systems.split(",")
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces, XDP)")
    for tool in ("nginx", "haproxy", "nft", "bird"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            ap.error(f"{tool} is not installed (make bench installs it)")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="peak-bench-") as d:
        b = Bench(a, d)
        try:
            log("testbed up")
            b.up()
            d0, e0 = len(b.agent_downs()), len(b.cluster_events())
            steady = b.steady()
            res = {"versions": versions(), "runs": a.runs, "duration_s": a.duration,
                   "systems": SYSTEMS, "steady": steady,
                   # health checks that took a serving pod down under the steady load:
                   # false failovers (every pod serves throughout)
                   "steady_agent_downs": len(b.agent_downs()) - d0,
                   "steady_agent_down_lines": b.agent_downs()[d0:],
                   # every route change the cluster logged under the steady load
                   "steady_route_lines": b.cluster_events()[e0:],
                   "scenarios": b.scenarios()}
        except Exception:
            for name in sorted(os.listdir(d)):  # the daemons' last words
                if name.endswith(".log"):
                    with open(os.path.join(d, name), errors="replace") as f:
                        tail = f.read()[-600:]
                    if tail.strip():
                        log(f"--- {name}\n{tail}")
            raise
        finally:
            b.tb.down()
    res["wall_s"] = round(time.time() - started, 1)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    log(f"wrote {a.out} in {res['wall_s']} s")


if __name__ == "__main__":
    main()
