"""PEAK-direct's namespace testbed (tests/h3/test_peak_direct.py, bench/h3/run.py):

  [c] client, and the router: peak dns on ::1; forwards between its links
    | fd00:a1::1/64 ---- fd00:a1::2/64 [a] audio pod: AnyIP 2001:db8:a1::/64,
    |                                       peak h3 backend --listen [::]:4433 --id pod-audio
    | fd00:a2::1/64 ---- fd00:a2::2/64 [v] video pod: AnyIP 2001:db8:a2::/64,
    |                                       peak h3 backend --listen [::]:4433 --id pod-video
    | fd00:e::1/64  ---- fd00:e::2/64  [i] ingress host (only with ingress=True):
                                            peak h3 ingress --listen [::]:4433, routes to
                                            2001:db8:a1::1 and 2001:db8:a2::1
Static routes stand in for the agents: the client's namespace routes each service prefix to
its pod. Every namespace name starts with the bed's tag; down() deletes them all and stops
every process it started, by PID."""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import peaktest  # noqa: E402

PEAK = os.environ.get("PEAK_BIN", "build/peak")
PORT = 4433
NAME = "audio.svc.example."

CONFIG = """zone:
  name: svc.example.
  ns: [{name: ns1.svc.example., address: "2001:db8:53::1"}]
  ttl: {txt: 60}
services:
  - name: audio.svc.example.
    prefixes: ["2001:db8:a1::/64"]
    slice: 72
    select: src
    host: src
    key: 000102030405060708090a0b0c0d0e0f
    types:
      audio/*: "@"
      video/*: "video.svc.example.#video"
      text/plain: "video.svc.example.#notes"
  - name: video.svc.example.
    prefixes: ["2001:db8:a2::/64"]
    slice: 72
    select: obj
    host: src
    key: 0f0e0d0c0b0a09080706050403020100
"""

CA_TMPL = 'cn = "peak direct test CA"\nca\ncert_signing_key\nexpiration_days = 2\n'
SVC_TMPL = ('cn = "audio.svc.example"\ndns_name = "audio.svc.example"\n'
            'dns_name = "video.svc.example"\nip_address = "fd00:e::2"\n'
            'ip_address = "2001:db8:a1::1"\nip_address = "2001:db8:a2::1"\n'
            'tls_www_server\nsigning_key\nencryption_key\nexpiration_days = 2\n')


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def certtool(*args):
    subprocess.run(["certtool", *args], check=True, capture_output=True, timeout=60)


def run_upload(argv, files, timeout):
    """Runs the 'peak h3 upload' argv with a --file for each of files. Returns (exit status,
    its stream lines as dicts, its 'peak:' lines as dicts, its output)."""
    for f in files:
        argv = [*argv, "--file", f]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    streams = [dict(kv.split("=", 1) for kv in line.split())
               for line in p.stdout.splitlines() if line.startswith("stream=")]
    conns = [dict(kv.split("=", 1) for kv in line.split()[1:])
             for line in p.stdout.splitlines() if line.startswith("peak: ")]
    return p.returncode, streams, conns, p.stdout + p.stderr


def wait_for(cond, timeout, what):
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


class Bed:
    def __init__(self, tag, workdir, ingress=False):
        self.tag, self.dir, self.with_ingress = tag, workdir, ingress
        self.ns = {}
        self.procs = []
        self.dns = None

    def name(self, k):
        return self.ns[k]

    def link(self, k, net):
        c, o = self.ns["c"], self.ns[k]
        ip("link", "add", f"{self.tag}{k}0", "netns", c, "type", "veth", "peer", "name",
           f"{self.tag}{k}1", "netns", o)
        ip("-n", c, "addr", "add", f"fd00:{net}::1/64", "dev", f"{self.tag}{k}0", "nodad")
        ip("-n", o, "addr", "add", f"fd00:{net}::2/64", "dev", f"{self.tag}{k}1", "nodad")
        ip("-n", c, "link", "set", f"{self.tag}{k}0", "up")
        ip("-n", o, "link", "set", f"{self.tag}{k}1", "up")
        ip("-n", o, "-6", "route", "add", "default", "via", f"fd00:{net}::1")

    def certs(self):
        d = self.dir
        (d / "ca.tmpl").write_text(CA_TMPL)
        (d / "svc.tmpl").write_text(SVC_TMPL)
        certtool("--generate-privkey", "--key-type", "ecdsa", "--outfile", str(d / "ca.key"))
        certtool("--generate-self-signed", "--load-privkey", str(d / "ca.key"), "--template",
                 str(d / "ca.tmpl"), "--outfile", str(d / "ca.pem"))
        certtool("--generate-privkey", "--key-type", "ecdsa", "--outfile", str(d / "svc.key"))
        certtool("--generate-certificate", "--load-privkey", str(d / "svc.key"),
                 "--load-ca-certificate", str(d / "ca.pem"), "--load-ca-privkey",
                 str(d / "ca.key"), "--template", str(d / "svc.tmpl"), "--outfile",
                 str(d / "svc.pem"))
        self.ca = d / "ca.pem"

    def start(self, k, argv, log):
        path = self.dir / log
        f = open(path, "w+")
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[k], PEAK, *argv], stdout=f,
                             stderr=subprocess.STDOUT)
        self.procs.append((p, f))

        def listening():
            f.flush()
            assert p.poll() is None, path.read_text()
            return "listening on" in path.read_text()
        wait_for(listening, 10, f"{log} to listen")
        return p, path

    def up(self):
        kinds = "cavi" if self.with_ingress else "cav"
        for k in kinds:
            n = f"{self.tag}{k}"
            ip("netns", "add", n)
            self.ns[k] = n
            ip("-n", n, "link", "set", "lo", "up")
        ip("netns", "exec", self.ns["c"], "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        for k, net in (("a", "a1"), ("v", "a2")):
            self.link(k, net)
            ip("-n", self.ns["c"], "-6", "route", "add", f"2001:db8:{net}::/64", "via",
               f"fd00:{net}::2")
            ip("-n", self.ns[k], "-6", "route", "add", "local", f"2001:db8:{net}::/64", "dev",
               "lo")
        if self.with_ingress:
            self.link("i", "e")
        self.certs()
        tls = ["--cert", str(self.dir / "svc.pem"), "--key", str(self.dir / "svc.key")]
        self.start("a", ["h3", "backend", "--listen", f"[::]:{PORT}", *tls, "--type",
                         "audio/*", "--id", "pod-audio"], "pod-audio.log")
        self.start("v", ["h3", "backend", "--listen", f"[::]:{PORT}", *tls, "--type",
                         "video/*,text/plain", "--id", "pod-video"], "pod-video.log")
        if self.with_ingress:
            p, path = self.start(
                "i", ["h3", "ingress", "--listen", f"[::]:{PORT}", *tls, "--upstream-ca",
                      str(self.ca), "--route",
                      f"audio/*=h3://[2001:db8:a1::1]:{PORT},video/*=h3://[2001:db8:a2::1]:"
                      f"{PORT},text/plain=h3://[2001:db8:a2::1]:{PORT}"], "ingress.log")
            wait_for(lambda: len(set(re.findall(r"upstream (\S+) up\b", path.read_text())))
                     == 2, 20, "the ingress's upstreams up")
        self.dns = peaktest.Server(self.dir, config=CONFIG, netns=self.ns["c"])
        return self

    def upload(self, files, peak=True, extra=(), timeout=90):
        """'peak h3 upload' from the client: PEAK-direct to NAME, or through the ingress.
        Returns (exit status, stream lines as dicts, 'peak:' lines as dicts, output)."""
        target = ([NAME, "--peak", "--server", f"[::1]:{self.dns.port}", "--port", str(PORT)]
                  if peak else [f"https://[fd00:e::2]:{PORT}/upload"])
        argv = ["ip", "netns", "exec", self.ns["c"], PEAK, "h3", "upload", *target, "--ca",
                str(self.ca), "--timeout", "20000", *extra]
        return run_upload(argv, files, timeout)

    def down(self):
        if self.dns:
            self.dns.stop()
            self.dns = None
        for p, f in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            f.close()
        self.procs = []
        for n in self.ns.values():
            subprocess.run(["ip", "netns", "del", n], capture_output=True, timeout=30)
        self.ns = {}
