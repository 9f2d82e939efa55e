#!/usr/bin/python3
"""HTTP/3 stream routing by content-type: the same uploads through five systems, in one run.

Testbed (network namespaces over veth, MTU 1500; every name starts with the run's tag,
'h3b' and the PID; all deleted at the end, every process stopped by its PID):

  [c] client fd00:c::2 ---- fd00:c::1 [r] router (forwards; the lossy path sits here)
                                fd00:e::1 | fd00:a1::1 | fd00:a2::1
      [i] ingress host fd00:e::2 ------------'          |           |
      [a] audio pod fd00:a1::2, AnyIP 2001:db8:a1::/64 -'           |
      [v] video pod fd00:a2::2, AnyIP 2001:db8:a2::/64 -------------'
  peak dns on ::1 in [c] (the zone of tests/h3/directbed.py: audio.svc.example's
  content-type map, the services' descriptors).

Each pod runs 'peak h3 backend' on UDP 4433 (audio/* or video/*), and with --proto h2 on
TCP 4434. Systems:
  proposed       peak h3 ingress (UDP 4433 on [i]), HTTP/3 in and HTTP/3 out to the pods
  peak-direct    peak h3 upload --peak: the client computes each type's pod address from
                 DNS and goes straight to it, one connection per type; no ingress
  transitioning  peak h3 ingress --upstream-proto h2 (UDP 4435): HTTP/3 in, HTTP/2 out
  legacy         HAProxy (TCP 443): HTTP/2 over TLS in, routed by content-type, HTTP/2
                 over TLS out; the client is peak h3 upload --proto h2
  caddy          Caddy (UDP+TCP 8443): HTTP/3 in, header matcher on Content-Type, HTTP/2
                 over TLS out
Every ingress runs one thread (peak h3 ingress is one event loop; HAProxy nbthread 1; Caddy
GOMAXPROCS=1). The last three need HTTP/2 in peak h3 (backend --proto h2, ingress
--upstream-proto h2, upload --proto h2): when this build lacks a part, the systems that need
it are skipped with the reason printed.

Per system, medians of --runs: goodput of a mixed upload on one connection (--audio N x
--audio-size, --video N x --video-size; the command's wall time, name resolution included
for peak-direct), time to the first response byte of one small request on a new
connection (1-RTT), the same resumed with 0-RTT (--session-file/--early-data) where the
system takes it, the handshake times, and the cluster's CPU per MB (scheduler run time of
the ingress, proxy and backend processes, and peak dns for peak-direct). Then, with every
packet the router forwards going through a lossy, delayed path (bench/h3/lossy.c, built as
build/bench/lossy, or its slower twin bench/h3/lossy.py with --relay py: a TUN
device in the router: --loss percent dropped at random, the rest delayed --delay-ms once per
crossing of the router; this kernel has no netem), --loss-runs mixed uploads per system: p50
and p99 of the audio streams' completion times, and how long the other streams stalled after
each isolated drop of the client's data packets, against control points with no drop near
(bench/h3/stall.py: head-of-line blocking on the client's leg, from the client's qlog over
QUIC and its PEAK_H3_PROGRESS file over HTTP/2). The congestion control of both stacks is
recorded: the kernel's TCP (net.ipv4.tcp_congestion_control) and peak h3's QUIC (the same
by default, PEAK_H3_CC to choose).
With --connections N the clean mixed upload of every system spreads its files over up to N
connections per target ('peak h3 upload --connections N': N per type for peak-direct, N to
the ingress for the others); the lossy uploads keep one.
Prints a table, writes JSON (--out); bench/report.py makes the HTTP/3 section of REPORT.md.

Usage (root): bench/h3/run.py [--quick] [--runs N] [--loss-runs N] [--systems LIST]
              [--relay c|py] [--connections N] [--out FILE]"""
import argparse
import concurrent.futures
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "h3"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import directbed  # noqa: E402
import peaktest  # noqa: E402

sys.path.insert(0, HERE)
import stall  # noqa: E402


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


# the ingress benchmark's CPU accounting (scheduler run times, processes' descendants) and
# versions
ingress_bench = _load("ingress_bench", os.path.join(ROOT, "bench", "ingress", "run.py"))

SYSTEMS = ["proposed", "peak-direct", "transitioning", "legacy", "caddy"]
ING = "fd00:e::2"
CLIENT = "fd00:c::2"
H3_PORT, H2_PORT, TRANS_PORT, HAPROXY_PORT, CADDY_PORT = 4433, 4434, 4435, 443, 8443
POD = {"a": "2001:db8:a1::1", "v": "2001:db8:a2::1"}


T0 = time.monotonic()


def log(*a):
    print(f"h3bench: {time.monotonic() - T0:6.1f}s", *a, file=sys.stderr, flush=True)


# -- what the client printed --------------------------------------------------------------

SUMMARY = re.compile(r"^upload: (\d+) streams, (\d+) ok, (\d+) failed, (\d+) bytes in "
                     r"([0-9.]+) s, handshake ([0-9.]+) ms(.*)$")


def parse_upload(out):
    """The stream lines and per-connection summaries of 'peak h3 upload' (one summary per
    connection: PEAK-direct prints one per content-type group). A stream counts as ok only
    with status 201 and checksum=ok."""
    streams, conns = [], []
    for line in out.splitlines():
        if line.startswith("stream="):
            s = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            s["ok"] = s.get("status") == "201" and s.get("checksum") == "ok"
            s["time_ms"] = float(s.get("time_ms", 0))
            streams.append(s)
            continue
        m = SUMMARY.match(line)
        if m:
            rest = m.group(7)
            conns.append({"streams": int(m.group(1)), "ok": int(m.group(2)),
                          "failed": int(m.group(3)), "bytes": int(m.group(4)),
                          "s": float(m.group(5)), "handshake_ms": float(m.group(6)),
                          "resumed": "resumed" in rest,
                          "early": ("accepted" if "0-RTT accepted" in rest else
                                    "rejected" if "0-RTT rejected" in rest else None)})
    return streams, conns


def percentile(v, p):
    """Nearest-rank percentile of v (None if empty)."""
    if not v:
        return None
    v = sorted(v)
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


# -- capabilities -------------------------------------------------------------------------

def h2_support(peak):
    """Which HTTP/2 parts this peak has, from its --help: {'backend', 'ingress', 'upload'}.
    The three run at once (a sanitizer build takes a second or more to start)."""
    pats = {"backend": r"--proto\b", "ingress": r"--upstream-proto[^\n]*h2",
            "upload": r"--proto\b"}
    procs = {sub: subprocess.Popen([peak, "h3", sub, "--help"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True) for sub in pats}
    have = set()
    for sub, p in procs.items():
        out, _ = p.communicate(timeout=30)
        if re.search(pats[sub], out):
            have.add(sub)
    return have


def skip_reasons(peak, systems):
    """{system: why it cannot run here} for the systems asked."""
    h2 = h2_support(peak)
    need = {"transitioning": ("backend", "ingress"), "legacy": ("backend", "upload"),
            "caddy": ("backend",)}
    tools = {"legacy": "haproxy", "caddy": "caddy"}
    out = {}
    for s in systems:
        miss = [p for p in need.get(s, ()) if p not in h2]
        if miss:
            out[s] = ("this peak has no HTTP/2 in " + ", ".join(f"'peak h3 {p}'" for p in miss)
                      + " (--proto h2 / --upstream-proto h2 not in its --help)")
        elif s in tools and not shutil.which(tools[s]):
            out[s] = f"{tools[s]} is not installed"
    return out


# -- the peers' configurations ------------------------------------------------------------

def haproxy_conf(d, ca):
    """HAProxy 2.6 as the Legacy ingress: HTTP/2 over TLS in, routed by the content-type's
    prefix (case-insensitive), HTTP/2 over TLS to the pods (certificate checked against the
    test CA), 400 for anything else."""
    srv = f"ssl verify required ca-file {ca} alpn h2 proto h2 check inter 1s"
    audio, video = ("{ req.hdr(content-type) -m beg -i %s/ }" % t for t in ("audio", "video"))
    return f"""global
  nbthread 1
  maxconn 1000
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend media
  bind [{ING}]:{HAPROXY_PORT} ssl crt {d}/haproxy.pem alpn h2
  http-request deny deny_status 400 unless {audio} || {video}
  use_backend audio if {audio}
  use_backend video if {video}
backend audio
  server pod-audio [{POD['a']}]:{H2_PORT} {srv}
backend video
  server pod-video [{POD['v']}]:{H2_PORT} {srv}
"""


def caddy_conf(d, ca):
    """Caddy 2.6 as an independent Transitioning ingress: HTTP/3 (and 1.1, 2) in, a header
    matcher on Content-Type, reverse_proxy over HTTP/2 with TLS to the pods (its HTTP/3
    upstream transport does not work in this version), 400 for anything else."""
    def proxy(pod):
        return (f"reverse_proxy https://[{POD[pod]}]:{H2_PORT} {{\n"
                f"\t\t\ttransport http {{\n\t\t\t\ttls_trusted_ca_certs {ca}\n"
                f"\t\t\t\tversions 2\n\t\t\t}}\n\t\t}}")
    return f"""{{
	admin off
	auto_https disable_redirects
	default_sni audio.svc.example
	servers {{
		protocols h1 h2 h3
	}}
}}
https://:{CADDY_PORT} {{
	bind {ING}
	tls {d}/svc.pem {d}/svc.key
	@audio header Content-Type audio/*
	@video header Content-Type video/*
	handle @audio {{
		{proxy('a')}
	}}
	handle @video {{
		{proxy('v')}
	}}
	handle {{
		respond 400
	}}
}}
"""


# -- the testbed --------------------------------------------------------------------------

def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def ip_batch(cmds, ns=None, family=()):
    """ip commands, one a line, run by one ip process (in namespace ns if given; family:
    ("-6",) for IPv6 rules)."""
    p = subprocess.run(["ip", *family, *(["-n", ns] if ns else []), "-batch", "-"],
                       input="\n".join(cmds) + "\n", capture_output=True, text=True, timeout=30)
    if p.returncode:
        raise RuntimeError(f"ip -batch: {p.stderr.strip()}")


def lossy_rules(op, dev, ifaces, table=200):
    """The 'ip -6 -batch' lines that steer (op "add") what a router forwards from ifaces
    through bench/h3/lossy.py's TUN device dev, or stop it ("del"; the device's route goes
    with the device): from ifaces, a table whose default route is dev; from dev, the main
    table. The local table comes first, so the router's own traffic stays as it was."""
    cmds = [f"rule {op} iif {i} lookup {table} pref {table}" for i in ifaces]
    cmds.append(f"rule {op} iif {dev} lookup main pref {table - 100}")
    if op == "add":
        cmds = [f"link set {dev} up", f"route add default dev {dev} table {table}"] + cmds
    return cmds


class Bed(directbed.Bed):
    """directbed's certificates, process handling and teardown, on a topology with a router
    between every host (so that one lossy path delays and drops on every path)."""

    def run(self, k, argv, logname, env=None):
        """Starts argv in namespace k, its output into logname; returns the Popen."""
        f = open(self.dir / logname, "w+")
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[k], *argv], stdout=f,
                             stderr=subprocess.STDOUT, env=env)
        self.procs.append((p, f))
        return p

    def wait_log(self, p, logname, pattern, timeout=20):
        path = self.dir / logname

        def seen():
            if p.poll() is not None:
                raise RuntimeError(f"{logname}: exited: {path.read_text()[-1500:]}")
            return re.search(pattern, path.read_text())
        directbed.wait_for(seen, timeout, f"{logname}: {pattern}")

    def up(self, systems):
        """The namespaces and links (one 'ip -batch' per namespace: on a loaded machine each
        process started costs), the certificates, the servers of the systems asked, and
        peak dns."""
        links = (("c", "c"), ("i", "e"), ("a", "a1"), ("v", "a2"))
        self.ns = {k: f"{self.tag}{k}" for k in "criav"}  # down() deletes them all
        ip_batch([f"netns add {n}" for n in self.ns.values()])
        ip_batch([f"link add {self.tag}{k}0 mtu 1500 netns {self.ns['r']} type veth peer name "
                  f"{self.tag}{k}1 mtu 1500 netns {self.ns[k]}" for k, _ in links])
        ip_batch(["link set lo up"] +
                 [f"addr add fd00:{net}::1/64 dev {self.tag}{k}0 nodad" for k, net in links] +
                 [f"link set {self.tag}{k}0 up" for k, _ in links] +
                 [f"route add 2001:db8:{net}::/64 via fd00:{net}::2" for k, net in links[2:]],
                 self.ns["r"])
        for k, net in links:
            ip_batch(["link set lo up", f"addr add fd00:{net}::2/64 dev {self.tag}{k}1 nodad",
                      f"link set {self.tag}{k}1 up", f"route add default via fd00:{net}::1"] +
                     ([f"route add local 2001:db8:{net}::/64 dev lo"] if k in "av" else []),
                     self.ns[k])
        ip("netns", "exec", self.ns["r"], "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        log("namespaces up")
        self.certs()
        log("certificates made")
        d = self.dir
        tls = ["--cert", str(d / "svc.pem"), "--key", str(d / "svc.key")]
        self.pids = {s: [] for s in systems}
        h3_pods, h2_pods = [], []
        for k, types in (("a", "audio/*"), ("v", "video/*")):
            if {"proposed", "peak-direct"} & set(systems):
                p, _ = self.start(k, ["h3", "backend", "--listen", f"[::]:{H3_PORT}", *tls,
                                      "--type", types, "--id", f"pod-{k}-h3"], f"pod-{k}-h3.log")
                h3_pods.append(p.pid)
            if {"transitioning", "legacy", "caddy"} & set(systems):
                p, _ = self.start(k, ["h3", "backend", "--proto", "h2", "--listen",
                                      f"[::]:{H2_PORT}", *tls, "--type", types, "--id",
                                      f"pod-{k}-h2"], f"pod-{k}-h2.log")
                h2_pods.append(p.pid)
        routes = ",".join(f"{t}/*={{proto}}://[{POD[k]}]:{{port}}"
                          for k, t in (("a", "audio"), ("v", "video")))
        if "proposed" in systems:
            p, path = self.start("i", ["h3", "ingress", "--listen", f"[::]:{H3_PORT}", *tls,
                                       "--upstream-ca", str(self.ca), "--id", "proposed",
                                       "--route", routes.format(proto="h3", port=H3_PORT)],
                                 "ingress-proposed.log")
            self.wait_log(p, "ingress-proposed.log", r"(?s)upstream \S+ up\b.*upstream \S+ up\b")
            self.pids["proposed"] = [p.pid] + h3_pods
        if "peak-direct" in systems:
            self.pids["peak-direct"] = list(h3_pods)  # and peak dns, below
        if "transitioning" in systems:
            p, path = self.start("i", ["h3", "ingress", "--listen", f"[::]:{TRANS_PORT}", *tls,
                                       "--upstream-ca", str(self.ca), "--id", "transitioning",
                                       "--upstream-proto", "h2", "--route",
                                       routes.format(proto="h2", port=H2_PORT)],
                                 "ingress-transitioning.log")
            self.wait_log(p, "ingress-transitioning.log",
                          r"(?s)upstream \S+ up\b.*upstream \S+ up\b")
            self.pids["transitioning"] = [p.pid] + h2_pods
        if "legacy" in systems:
            (d / "haproxy.pem").write_text((d / "svc.pem").read_text() +
                                           (d / "svc.key").read_text())
            (d / "haproxy.cfg").write_text(haproxy_conf(d, self.ca))
            p = self.run("i", ["haproxy", "-W", "-db", "-f", str(d / "haproxy.cfg")],
                         "haproxy.log")
            self.pids["legacy"] = [p.pid] + h2_pods
        if "caddy" in systems:
            (d / "Caddyfile").write_text(caddy_conf(d, self.ca))
            env = dict(os.environ, GOMAXPROCS="1", HOME=str(d),
                       XDG_DATA_HOME=str(d / "caddy-data"),
                       XDG_CONFIG_HOME=str(d / "caddy-config"))
            p = self.run("i", ["caddy", "run", "--config", str(d / "Caddyfile"), "--adapter",
                               "caddyfile"], "caddy.log", env=env)
            self.wait_log(p, "caddy.log", "serving initial configuration")
            self.pids["caddy"] = [p.pid] + h2_pods
        log("servers up")
        self.dns = peaktest.Server(self.dir, config=directbed.CONFIG, netns=self.ns["c"])
        log("peak dns up")
        if "peak-direct" in systems:
            self.pids["peak-direct"].append(self.dns.proc.pid)
        return self

    def loss(self, pct, delay_ms, seed=None, relay=None):
        """Sends every packet the router forwards through a lossy relay (relay: its argv
        before the options, bench/h3/lossy.py by default; a TUN device in the router: it
        drops pct% at random and delays the rest by delay_ms, once per crossing of the router;
        this kernel has no netem), which logs its drops into drops.txt. Policy routing steers
        it: what comes in on a veth looks up a table whose default route is the device, what
        comes back out of the device the main table."""
        r, dev = self.ns["r"], f"{self.tag}t"
        argv = (relay or [sys.executable, os.path.join(HERE, "lossy.py")]) + \
            ["--dev", dev, "--loss", str(pct), "--delay-ms", str(delay_ms), "--drops",
             str(self.dir / "drops.txt")] + (["--seed", str(seed)] if seed is not None else [])
        self.lossy = self.run("r", argv, "lossy.log")
        self.wait_log(self.lossy, "lossy.log", r"lossy: ready")
        ip_batch(lossy_rules("add", dev, [f"{self.tag}{k}0" for k in "ciav"]), r, ("-6",))
        # what the path adds, seen from the client: ping's round trip to the ingress host
        p = subprocess.run(["ip", "netns", "exec", self.ns["c"], "ping", "-6", "-c", "5", "-i",
                            "0.2", "-W", "2", ING], capture_output=True, text=True, timeout=30)
        m = re.search(r"= [0-9.]+/([0-9.]+)/", p.stdout)
        self.path_rtt_ms = float(m.group(1)) if m else None
        log(f"lossy path: {pct}% loss, {delay_ms} ms each way; client-ingress ping "
            f"{self.path_rtt_ms} ms")

    def lossless(self):
        """Takes the lossy path out (the rules first, then the relay) and returns its
        counters (received, dropped, overflow, sent, write_errors, queued)."""
        r = self.ns["r"]
        ip_batch(lossy_rules("del", f"{self.tag}t", [f"{self.tag}{k}0" for k in "ciav"]), r,
                 ("-6",))
        self.lossy.terminate()
        self.lossy.wait(timeout=30)
        m = re.search(r"^lossy: (\{.*\})$", (self.dir / "lossy.log").read_text(), re.M)
        return json.loads(m.group(1)) if m else {}


# -- measuring ----------------------------------------------------------------------------

class Bench:
    def __init__(self, a, bed, systems):
        self.a, self.bed, self.systems = a, bed, systems
        self.files = []  # (path, type)

    def make_files(self):
        d = self.bed.dir
        for i in range(self.a.audio):
            self.files.append((self.write(d / f"a{i}.ogg", self.a.audio_size), "audio/ogg"))
        for i in range(self.a.video):
            self.files.append((self.write(d / f"v{i}.mp4", self.a.video_size), "video/mp4"))
        self.small = [(self.write(d / "small.ogg", self.a.small_size), "audio/ogg")]
        self.total = sum(os.path.getsize(p) for p, _ in self.files)

    @staticmethod
    def write(path, size):
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        return path

    def client(self, system, files, extra=(), timeout_ms=None, env=None):
        """One 'peak h3 upload' from the client host against a system; returns what it
        printed, parsed, with its exit status, wall time and the monotonic clock's readings
        (ns) around it."""
        b = self.bed
        if system == "peak-direct":
            target = [directbed.NAME, "--peak", "--server", f"[::1]:{b.dns.port}", "--port",
                      str(H3_PORT)]
        else:
            port = {"proposed": H3_PORT, "transitioning": TRANS_PORT, "legacy": HAPROXY_PORT,
                    "caddy": CADDY_PORT}[system]
            target = [f"https://[{ING}]:{port}/upload"]
            if system == "legacy":
                target += ["--proto", "h2"]
        tmo = timeout_ms or self.a.timeout_ms
        argv = ["ip", "netns", "exec", b.ns["c"], self.a.peak, "h3", "upload", *target,
                "--ca", str(b.ca), "--timeout", str(tmo), *extra]
        for p, t in files:
            argv += ["--file", f"{p}:{t}"]
        t0 = time.monotonic_ns()
        p = subprocess.run(argv, capture_output=True, text=True, timeout=tmo / 1000 + 30,
                           env=dict(os.environ, **env) if env else None)
        t1 = time.monotonic_ns()
        streams, conns = parse_upload(p.stdout)
        ok = (p.returncode == 0 and len(streams) == len(files) and
              all(s["ok"] for s in streams))
        return {"rc": p.returncode, "wall_s": (t1 - t0) / 1e9, "t0_ns": t0, "t1_ns": t1,
                "streams": streams, "conns": conns, "ok": ok,
                "err": (p.stderr.strip()[-400:] if not ok else "")}

    def cluster_cpu(self, system):
        pids = ingress_bench.descendants(self.bed.pids[system])
        return {p: ingress_bench.proc_cpu(p) for p in pids}

    def mixed(self, system, loss=False, run=0):
        """The mixed upload on one connection (two for PEAK-direct, one per type), with the
        cluster CPU it cost. Under loss the client also keeps what the per-stream stall
        measure needs (bench/h3/stall.py): its qlog over QUIC, its TCP progress file over
        HTTP/2."""
        extra, env, trace = (), None, None
        if self.a.connections > 1 and not loss:
            extra = ("--connections", str(self.a.connections))
        if loss:
            trace = self.bed.dir / f"trace-{system}-{run}"
            trace.mkdir()
            if system == "legacy":
                env = {"PEAK_H3_PROGRESS": str(trace / "progress.txt")}
            else:
                extra = ("--qlog", str(trace))
        c0 = self.cluster_cpu(system)
        r = self.client(system, self.files, extra, env=env)
        c1 = self.cluster_cpu(system)
        cpu = sum(max(c1.get(p, v) - v, 0) for p, v in c0.items())
        mb = self.total / 1e6
        audio = [s["time_ms"] for s in r["streams"] if s.get("type", "").startswith("audio/")
                 and s["ok"]]
        out = {"ok": r["ok"], "rc": r["rc"], "err": r["err"], "bytes": self.total,
               "streams": len(r["streams"]), "streams_ok": sum(s["ok"] for s in r["streams"]),
               "wall_s": r["wall_s"], "goodput_mbps": mb / r["wall_s"] if r["ok"] else None,
               "client_s": max((c["s"] for c in r["conns"]), default=None),
               "cluster_cpu_s": cpu, "cpu_ms_per_mb": cpu * 1e3 / mb,
               "audio_ms": audio, "connections": len(r["conns"]),
               # what went wrong, when something did: each failed stream's line fields
               "failed_streams": [{k: s.get(k) for k in ("type", "status", "checksum",
                                                          "backend")}
                                  for s in r["streams"] if not s["ok"]]}
        if trace:
            out.update(trace=str(trace), t0_ns=r["t0_ns"], t1_ns=r["t1_ns"],
                       stream_types={s["stream"]: s.get("type") for s in r["streams"]})
        # the first answer on the connection: handshake, then the first stream to finish
        if r["conns"] and r["streams"]:
            out["first_answer_ms"] = (min(c["handshake_ms"] for c in r["conns"]) +
                                      min(s["time_ms"] for s in r["streams"]))
        return out

    def setup(self, system, run):
        """One small request on a new connection, a full handshake (1-RTT), which stores its
        session ticket; then the same resumed from that ticket, the request in 0-RTT. Time
        to the first response byte: handshake plus the stream's time for 1-RTT (the request
        leaves when the handshake completes); the stream's time alone when its 0-RTT was
        accepted (it left with the first flight). The answer is one small frame, so its
        first byte and its last arrive together."""
        sess = self.bed.dir / f"session-{system}-{run}"
        r = self.client(system, self.small, ["--session-file", str(sess)])
        if r["rc"] == 2:  # a client that takes no --session-file (usage error)
            r = self.client(system, self.small)
        out = {"ok": r["ok"], "err": r["err"]}
        if r["ok"] and r["conns"]:
            c = r["conns"][0]
            out.update(setup_1rtt_ms=c["handshake_ms"], resumed_1rtt=c["resumed"],
                       ttfb_ms=c["handshake_ms"] + r["streams"][0]["time_ms"])
        if not sess.exists():
            out.update(early=None, early_err="no session ticket stored")
            return out
        z = self.client(system, self.small, ["--session-file", str(sess), "--early-data"])
        c = z["conns"][0] if z["conns"] else {}
        out.update(early=c.get("early"), resumed=c.get("resumed"), early_ok=z["ok"])
        if not z["ok"]:
            out["early_err"] = z["err"][-200:] or f"exit {z['rc']}"
        elif c.get("early") == "accepted":
            out.update(setup_0rtt_ms=c["handshake_ms"], ttfb_0rtt_ms=z["streams"][0]["time_ms"])
        elif c.get("resumed"):
            out.update(setup_0rtt_ms=c["handshake_ms"],
                       ttfb_0rtt_ms=c["handshake_ms"] + z["streams"][0]["time_ms"])
        return out

    def wait_serving(self, system, timeout=30):
        deadline = time.time() + timeout
        while True:
            r = self.client(system, self.small, timeout_ms=5000)
            if r["ok"]:
                return
            if time.time() > deadline:
                raise RuntimeError(f"{system} does not serve: exit {r['rc']}: {r['err']}")
            time.sleep(0.2)

    def order(self, run):
        s = self.systems
        return s[run % len(s):] + s[:run % len(s)]

    def clean_runs(self, s, run, res):
        """One system's mixed upload and connection-setup probes of one run."""
        m = self.mixed(s)
        m["run"] = run
        res[s]["mixed"].append(m)
        log(f"run {run} {s:13s}: {m['streams_ok']}/{m['streams']} ok, "
            f"{m['goodput_mbps'] or 0:.1f} MB/s, cluster {m['cpu_ms_per_mb']:.1f} "
            f"ms CPU/MB" + (f" FAILED: {m['err']}" if not m["ok"] else ""))
        u = self.setup(s, run)
        res[s]["setup"].append(u)
        log(f"run {run} {s:13s}: first byte {u.get('ttfb_ms', 0):.2f} ms (1-RTT), "
            f"0-RTT {u.get('early')}{'' if u['ok'] else ' FAILED: ' + u['err']}")

    def loss_run(self, s, run, res):
        m = self.mixed(s, loss=True, run=run)
        m["run"] = run
        res[s]["loss"].append(m)
        log(f"loss {run} {s:13s}: audio p99 {percentile(m['audio_ms'], 99) or 0:.1f} ms, "
            f"{m['streams_ok']}/{m['streams']} ok")

    def each(self, fn, systems, run, res):
        """fn for every system, one after the other in the run's order; with --quick all at
        once (a sanitizer build on a loaded machine spends seconds starting each client;
        the figures of a quick run mean nothing anyway, the CPU of shared pods counts
        twice)."""
        order = [s for s in self.order(run) if s in systems]
        if not self.a.quick:
            for s in order:
                fn(s, run, res)
            return
        with concurrent.futures.ThreadPoolExecutor(len(order)) as ex:
            list(ex.map(lambda s: fn(s, run, res), order))

    def all(self):
        a, res = self.a, {s: {"mixed": [], "setup": [], "loss": []} for s in self.systems}
        # every system at once: nothing is measured yet
        with concurrent.futures.ThreadPoolExecutor(len(self.systems)) as ex:
            list(ex.map(self.wait_serving, self.systems))
        log("every system serves")
        for run in range(a.runs):
            self.each(self.clean_runs, self.systems, run, res)
        if a.loss_runs and (a.loss or a.delay_ms):
            self.bed.loss(a.loss, a.delay_ms, a.seed, a.relay_argv)
            try:
                for run in range(a.loss_runs):
                    self.each(self.loss_run, a.loss_systems, run, res)
            finally:
                self.lossy_counters = self.bed.lossless()
            log(f"lossy path: {self.lossy_counters}")
            drops = stall.read_drops(self.bed.dir / "drops.txt")
            for s in a.loss_systems:
                for m in res[s]["loss"]:
                    self.stalls(s, m, drops)
        return res

    def stalled_ms(self):
        """How long a stream must wait beyond the usual to count as stalled: the path's
        one-way delay, half its round trip as configured (ping's varies with the machine's
        load; a repair takes at least the round trip)."""
        return max(float(self.a.delay_ms), 1.0)

    def window_ms(self):
        """The stall measure's window after a drop: the path's round trip (ping's, through
        the relay), at least 2 ms."""
        return max(self.bed.path_rtt_ms or 0, 2.0)

    def stalls(self, system, m, drops):
        """The per-stream stalls after each drop of one loss run's client packets (see
        bench/h3/stall.py), into m['stall']: the drops seen, the pieces the client sent and
        had acknowledged, and one record per drop judged."""
        trace = Path(m.pop("trace"))
        port = {"proposed": H3_PORT, "peak-direct": H3_PORT, "transitioning": TRANS_PORT,
                "legacy": HAPROXY_PORT, "caddy": CADDY_PORT}[system]
        proto = "6" if system == "legacy" else "17"
        dsts = ("2001:db8:a1:", "2001:db8:a2:") if system == "peak-direct" else (ING,)
        td = stall.client_drops(drops, CLIENT, dsts, proto, port, m["t0_ns"], m["t1_ns"])
        types = {int(k): v for k, v in m.pop("stream_types").items() if k.lstrip("-").isdigit()}
        pieces, ptypes = [], {}
        try:
            if system == "legacy":
                pieces, ptypes = stall.tcp_pieces(trace / "progress.txt", types)
            else:
                for i, q in enumerate(sorted(trace.glob("*.sqlog"))):
                    p, t = stall.quic_pieces(q, f"c{i}")
                    pieces += p
                    ptypes.update(t)
        except (OSError, ValueError) as e:
            m["stall"] = {"error": str(e), "drops": len(td)}
            return
        w, thr = self.window_ms(), self.stalled_ms()
        alone = stall.isolated(td, int(w * 1e6))
        recs = stall.stalls(pieces, ptypes, alone, int(w * 1e6))
        near = stall.touching(drops, CLIENT, proto, m["t0_ns"], m["t1_ns"])
        ctl = stall.stalls(pieces, ptypes, stall.control_points(pieces, near, int(w * 1e6)),
                           int(w * 1e6))
        keep = ("victim", "victim_type", "others")
        m["stall"] = {"drops": len(td), "isolated": len(alone), "pieces": len(pieces),
                      "pieces_acked": sum(a is not None for _, _, a in pieces),
                      "streams": len(ptypes), "window_ms": w, "stalled_ms": thr,
                      "records": [{k: r[k] for k in keep} for r in recs],
                      "control": [{k: r[k] for k in keep} for r in ctl]}
        x, c = stall.summary(recs, thr), stall.summary(ctl, thr)
        log(f"stall {m['run']} {system:13s}: {len(td)} client drops, {len(alone)} isolated, "
            f"{x['drops']} judged, "
            f"other streams stalled p50 {fmt(x['others_p50_ms'])} p90 "
            f"{fmt(x['others_p90_ms'])} ms, share > {thr:.1f} ms "
            f"{fmt(x['stalled_share'], '.2f')}; {c['drops']} control points: p50 "
            f"{fmt(c['others_p50_ms'])} p90 {fmt(c['others_p90_ms'])} ms, share "
            f"{fmt(c['stalled_share'], '.2f')}")


def summarize(res):
    """Medians over the runs, and the audio streams' percentiles pooled over the loss
    runs."""
    out = {}
    for s, r in res.items():
        mx, su, lo = r["mixed"], r["setup"], r["loss"]
        st = [m["stall"] for m in lo if "stall" in m]
        recs = [x for t in st for x in t.get("records", ())]
        ctl = [x for t in st for x in t.get("control", ())]
        w = max((t["stalled_ms"] for t in st if "stalled_ms" in t), default=None)
        audio = [t for m in lo for t in m["audio_ms"]]
        clean = [t for m in mx for t in m["audio_ms"]]
        out[s] = {
            "goodput_mbps": med([m["goodput_mbps"] for m in mx]),
            "cpu_ms_per_mb": med([m["cpu_ms_per_mb"] for m in mx if m["ok"]]),
            "first_answer_ms": med([m.get("first_answer_ms") for m in mx if m["ok"]]),
            "ttfb_ms": med([u.get("ttfb_ms") for u in su]),
            "setup_1rtt_ms": med([u.get("setup_1rtt_ms") for u in su]),
            "setup_0rtt_ms": med([u.get("setup_0rtt_ms") for u in su]),
            "ttfb_0rtt_ms": med([u.get("ttfb_0rtt_ms") for u in su]),
            "early_accepted": sum(u.get("early") == "accepted" for u in su),
            "connections": med([m["connections"] for m in mx]),
            "audio_p50_ms": percentile(clean, 50), "audio_p99_ms": percentile(clean, 99),
            "loss_audio_p50_ms": percentile(audio, 50),
            "loss_audio_p99_ms": percentile(audio, 99),
            "loss_audio_samples": len(audio),
            "loss_goodput_mbps": med([m["goodput_mbps"] for m in lo]),
            "loss_failed": sum(not m["ok"] for m in lo),
            # per-stream stalls after the client's dropped packets (bench/h3/stall.py)
            "loss_stall": dict(stall.summary(recs, w),
                               client_drops=sum(t.get("drops", 0) for t in st),
                               isolated=sum(t.get("isolated", 0) for t in st),
                               errors=[t["error"] for t in st if "error" in t]) if st else None,
            # the same at times with no drop near: the path's own jitter
            "loss_stall_control": stall.summary(ctl, w) if st else None,
            # what the drops add to it: head-of-line blocking, in points of share
            "loss_hol_excess": excess(stall.summary(recs, w),
                                      stall.summary(ctl, w)) if st else None,
            "checksums_ok": all(m["ok"] for m in mx) and all(u["ok"] for u in su),
        }
    return out


def excess(after, control):
    """The share of other streams stalled after a drop less the share stalled at the
    control points (None without both)."""
    a, c = after.get("stalled_share"), control.get("stalled_share")
    return None if a is None or c is None else a - c


def fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def table(d):
    """The summary as a text table."""
    cols = ["system", "goodput MB/s", "CPU ms/MB", "1st byte ms", "0-RTT 1st byte",
            "handshake ms", "loss audio p50", "loss audio p99", "loss MB/s",
            "HOL stall p50", "HOL stall p90", "stalled", "no drop: stalled", "excess", "ok"]
    rows = []
    for s in d["systems"]:
        x = d["summary"][s]
        rows.append([s, fmt(x["goodput_mbps"]), fmt(x["cpu_ms_per_mb"]),
                     fmt(x["ttfb_ms"], ".2f"), fmt(x["ttfb_0rtt_ms"], ".2f"),
                     fmt(x["setup_1rtt_ms"], ".2f"), fmt(x["loss_audio_p50_ms"]),
                     fmt(x["loss_audio_p99_ms"]), fmt(x["loss_goodput_mbps"]),
                     *hol_cells(x["loss_stall"]), hol_cells(x["loss_stall_control"])[2],
                     fmt(x["loss_hol_excess"] * 100 if x["loss_hol_excess"] is not None
                         else None, "+.0f"), "yes" if x["checksums_ok"] else "NO"])
    w = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(cols))]
    for r in rows:
        lines.append("  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(r)))
    for s, why in d["skipped"].items():
        lines.append(f"{s}: skipped: {why}")
    lines.append("HOL stall: after each data packet of the client's dropped by the relay "
                 "(those with no other drop near), how "
                 "long the other streams' pieces waited for their in-order acknowledgement "
                 "beyond the usual (ms, p50 and p90 over drops x streams); stalled: the share "
                 "of those stalled longer than the path's one-way delay; no drop: the "
                 "same share at times with no drop near, the path's own jitter; excess: "
                 "the first less the second, in points (bench/h3/stall.py)")
    return "\n".join(lines)


def hol_cells(x):
    """The table's cells for the per-stream stall summary (dashes without one)."""
    if not x or not x.get("pairs"):
        return ["-", "-", "-"]
    return [fmt(x["others_p50_ms"]), fmt(x["others_p90_ms"]),
            fmt(x["stalled_share"] * 100, ".0f") + "%"]


def versions(peak, systems):
    """The machine and the peers' versions, for the report (the ingress benchmark's, less
    the peers this one does not run)."""
    v = ingress_bench.versions()
    for k in ("nginx", "bird", "memory_gib", "os"):
        v.pop(k, None)
    if "legacy" not in systems:
        v.pop("haproxy", None)
    v["peak"] = subprocess.run([peak, "--version"], capture_output=True, text=True,
                               timeout=30).stdout.strip()
    try:
        with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
            v["tcp_cc"] = f.read().strip()
    except OSError:
        v["tcp_cc"] = None
    # peak h3 follows the host's TCP choice unless PEAK_H3_CC names another (src/h3/conn.c)
    v["quic_cc"] = os.environ.get("PEAK_H3_CC") or v["tcp_cc"]
    if "caddy" in systems:
        p = subprocess.run(["caddy", "version"], capture_output=True, text=True, timeout=30)
        v["caddy"] = (p.stdout.split() or ["?"])[0]
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="tiny files, one run, no loss, the systems at once: checks the "
                         "harness (seconds), its figures mean nothing")
    ap.add_argument("--runs", type=int, default=5, help="repetitions of every measure (5)")
    ap.add_argument("--loss-runs", type=int, default=None,
                    help="mixed uploads per system under loss (5, with --quick 0; 0: none)")
    ap.add_argument("--loss", type=float, default=1, help="percent dropped by the router (1)")
    ap.add_argument("--delay-ms", type=float, default=5,
                    help="one-way delay the router adds in the loss runs, per crossing (5)")
    ap.add_argument("--seed", type=int, default=None, help="the drops' random seed")
    ap.add_argument("--relay", choices=("c", "py"), default=None,
                    help="the lossy path's relay: c (build/bench/lossy beside --peak's "
                         "build, the default when built) or py (bench/h3/lossy.py)")
    ap.add_argument("--loss-systems", default=None,
                    help="the systems measured under loss (default: all)")
    ap.add_argument("--audio", type=int, default=8, help="audio files per upload (8)")
    ap.add_argument("--audio-size", type=int, default=256 * 1024, help="bytes (256 KiB)")
    ap.add_argument("--video", type=int, default=2, help="video files per upload (2)")
    ap.add_argument("--video-size", type=int, default=8 * 1024 * 1024, help="bytes (8 MiB)")
    ap.add_argument("--small-size", type=int, default=1024,
                    help="the connection-setup probe's body (1 KiB)")
    ap.add_argument("--timeout-ms", type=int, default=60000, help="per upload command")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--connections", type=int, default=1,
                    help="the clean mixed upload's files spread over up to N connections "
                         "per target, every system ('peak h3 upload --connections'; 1: the "
                         "issue's one connection, one per type for PEAK-direct)")
    ap.add_argument("--peak", default=os.path.join(ROOT, "build", "peak"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "h3.json"))
    a = ap.parse_args()
    if a.loss == int(a.loss):
        a.loss = int(a.loss)  # "1%", not "1.0%"
    if a.quick:
        a.runs, a.audio_size, a.video_size = 1, 16 * 1024, 64 * 1024
    if a.loss_runs is None:
        a.loss_runs = 0 if a.quick else 5
    systems = [s for s in a.systems.split(",") if s]
    if any(s not in SYSTEMS for s in systems):
        ap.error(f"--systems: choose from {','.join(SYSTEMS)}")
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces)")
    a.peak = os.path.abspath(a.peak)
    c_relay = os.path.join(os.path.dirname(a.peak), "bench", "lossy")
    if a.relay == "c" and not os.access(c_relay, os.X_OK):
        ap.error(f"--relay c: {c_relay} is not built")
    if a.relay is None:
        a.relay = "c" if os.access(c_relay, os.X_OK) else "py"
    a.relay_argv = [c_relay] if a.relay == "c" else None
    directbed.PEAK = peaktest.PEAK = a.peak
    skipped = skip_reasons(a.peak, systems)
    for s, why in skipped.items():
        print(f"h3bench: {s}: skipped: {why}", flush=True)
    systems = [s for s in systems if s not in skipped]
    a.loss_systems = systems if a.loss_systems is None else a.loss_systems.split(",")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="peak-h3bench-") as d:
        bed = Bed(f"h3b{os.getpid() % 100000}", Path(d))
        old = signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        try:
            log("testbed up")
            bed.up(systems)
            b = Bench(a, bed, systems)
            b.make_files()
            res = b.all()
            lossy = dict(getattr(b, "lossy_counters", {}), relay=a.relay,
                         rtt_ms=getattr(bed, "path_rtt_ms", None))
        except Exception:
            for path in sorted(Path(d).glob("*.log")):  # the daemons' last words
                log(f"--- {path.name}\n{path.read_text(errors='replace')[-600:]}")
            raise
        finally:
            bed.down()
            signal.signal(signal.SIGTERM, old)
            log("testbed down")
    out = {"versions": versions(a.peak, systems), "command": " ".join(sys.argv), "runs": a.runs,
           "connections": a.connections,
           "loss_runs": a.loss_runs, "loss_pct": a.loss if a.loss_runs else 0,
           "loss_delay_ms": a.delay_ms if a.loss_runs else 0,
           "loss_dropped_packets": lossy.get("dropped", 0), "loss_path": lossy, "mtu": 1500,
           "files": {"audio": [a.audio, a.audio_size], "video": [a.video, a.video_size],
                     "small": a.small_size, "total_bytes": b.total},
           "systems": systems, "skipped": skipped, "results": res,
           "summary": summarize(res), "wall_s": round(time.time() - started, 1)}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print(table(out))
    log(f"wrote {a.out} in {out['wall_s']} s")
    bad = [s for s in systems if not out["summary"][s]["checksums_ok"]]
    if bad:
        log("failed uploads (without loss): " + ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
