"""PEAK-direct's cluster bed (tests/h3/test_peak_direct_cluster.py, make demo-h3): the
testbed of tests/integration/testbed.py (router with BIRD and the controller, two nodes with
agents and BIRD, peak dns on its own host, a client host) with two services,
audio.svc.example. (pod n1p1 on node 1) and video.svc.example. (pod n2p1 on node 2), each pod
a 'peak h3 backend' on [::]:4433 behind the AnyIP route its agent installs; the controller
assigns the slices, the agents route them, BIRD carries them to the router; 'peak dns'
publishes each service's descriptor and the audio service's type map (_types).

With ingress=True the testbed's ingress host (2001:db8:ff:e::2, routed by the router) runs
'peak h3 ingress' (start_ingress()), its routes the service addresses the SSA rule gives
the ingress host's own source, as any PEAK client would compute them (it reaches the pods
through the routes BIRD carries, like PEAK-direct, only from one more host).

The agents' health checks are TCP connects to the service port, and the h3 backend speaks
UDP only, so each pod also runs 'peak serve' on TCP 4433 to answer them."""
import ipaddress
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import ssaref  # noqa: E402
import testbed  # noqa: E402
from directbed import certtool, run_upload  # noqa: E402,F401

PREFIXES = {"audio": "2001:db8:5::/64", "video": "2001:db8:6::/64"}
SLICE = 68
SOURCE = "2001:db8:c0:1::1"  # a PEAK-direct client source (AnyIP on the client host)
INGRESS = "2001:db8:ff:e::2"  # the ingress host (testbed.py)
PORT = 4433
NAME = "audio.svc.example."

CA_TMPL = 'cn = "peak h3 cluster CA"\nca\ncert_signing_key\nexpiration_days = 2\n'


def service_address(kind, source):
    """The address the SSA rule (select=src, host=src) of service kind gives source."""
    return ssaref.address(PREFIXES[kind], testbed.KEY, source, SLICE)


def make_certs(d, ca=None):
    """Writes svc.key and svc.pem in directory d: a certificate for both service names, the
    ingress host and the addresses the rule gives the ingress host (the ingress checks its
    upstreams' certificates against the address), signed by ca (a directory with ca.pem and
    ca.key), or by a new CA written to d. Returns the CA certificate's path."""
    d = str(d)
    if ca is None:
        ca = d
        with open(os.path.join(d, "ca.tmpl"), "w") as f:
            f.write(CA_TMPL)
        certtool("--generate-privkey", "--key-type", "ecdsa", "--outfile",
                 os.path.join(d, "ca.key"))
        certtool("--generate-self-signed", "--load-privkey", os.path.join(d, "ca.key"),
                 "--template", os.path.join(d, "ca.tmpl"), "--outfile", os.path.join(d, "ca.pem"))
    ips = [INGRESS] + [service_address(k, INGRESS) for k in PREFIXES]
    with open(os.path.join(d, "svc.tmpl"), "w") as f:
        f.write('cn = "audio.svc.example"\ndns_name = "audio.svc.example"\n'
                'dns_name = "video.svc.example"\n'
                + "".join(f'ip_address = "{a}"\n' for a in ips)
                + "tls_www_server\nsigning_key\nencryption_key\nexpiration_days = 2\n")
    certtool("--generate-privkey", "--key-type", "ecdsa", "--outfile", os.path.join(d, "svc.key"))
    certtool("--generate-certificate", "--load-privkey", os.path.join(d, "svc.key"),
             "--load-ca-certificate", os.path.join(str(ca), "ca.pem"), "--load-ca-privkey",
             os.path.join(str(ca), "ca.key"), "--template", os.path.join(d, "svc.tmpl"),
             "--outfile", os.path.join(d, "svc.pem"))
    return os.path.join(str(ca), "ca.pem")


class H3Bed(testbed.Testbed):
    """The testbed with two services of one pod each, and HTTP/3 backends as pods. The work
    directory must hold svc.pem and svc.key (make_certs)."""

    def __init__(self, tag, workdir, peak, ingress=False, ctl_args=()):
        super().__init__(tag, workdir, peak, nodes=2, pods=1, ingress=ingress,
                         ctl_args=ctl_args)
        self.ingress_proc = None

    def config(self):
        svc = ""
        for i, (name, pfx) in enumerate(PREFIXES.items(), start=1):
            types = ('    types:\n      audio/*: "@"\n      video/*: video.svc.example.\n'
                     if name == "audio" else "")
            svc += (f"  - name: {name}.svc.example.\n    prefixes: [{pfx}]\n    slice: {SLICE}\n"
                    f"    select: src\n    host: src\n    key: {testbed.KEY}\n"
                    f"    port: {PORT}\n{types}    endpoints:\n"
                    f'      - {{id: {self.pod_id(i, 1)}, address: "{self.pod_addr(i, 1)}", '
                    f"node: node{i}, netns: {self.pod(i, 1)}}}\n")
        return f"""zone:
  name: svc.example.
  ns: [{{name: ns1.svc.example., address: "{testbed.DNS_ADDR}"}}]
  ttl: {{aaaa: 5}}
nodes: [{{name: node1}}, {{name: node2}}]
services:
{svc}"""

    def tls(self):
        return ["--cert", os.path.join(self.dir, "svc.pem"), "--key",
                os.path.join(self.dir, "svc.key")]

    def serve(self, i, j):
        types = "audio/*" if i == 1 else "video/*"
        self.serving[(i, j)] = self.run(
            self.pod(i, j), self.peak, "h3", "backend", "--listen", f"[::]:{PORT}", *self.tls(),
            "--type", types, "--id", self.pod_id(i, j), log=f"h3-{i}{j}.log")
        self.run(self.pod(i, j), self.peak, "serve", "--port", str(PORT), "--id",
                 self.pod_id(i, j), log=f"serve-{i}{j}.log")

    def converged(self):
        routes = [ipaddress.ip_network(dst) for dst, _ in self.router_routes()]
        for pfx in PREFIXES.values():
            p = ipaddress.ip_network(pfx)
            if sum(r.num_addresses for r in routes if r.subnet_of(p)) != p.num_addresses:
                return False
        return True

    def resolve(self, kind, ns=None):
        """'peak resolve' of service kind from namespace ns (the ingress host's by default):
        (destination, source), or (None, its error)."""
        p = subprocess.run(["ip", "netns", "exec", ns or self.ing(), self.peak, "resolve",
                            f"{kind}.svc.example.", "--server", f"[{testbed.DNS_ADDR}]:53"],
                           capture_output=True, text=True, timeout=30)
        w = p.stdout.split()
        if p.returncode or len(w) < 3:
            return None, (p.stderr.strip() or f"exit {p.returncode}")
        return w[0], w[2]

    def start_ingress(self, ca, timeout=30):
        """Starts 'peak h3 ingress' on the ingress host, audio/* and video/* routed to the
        addresses its source resolves; waits until both upstreams are up. Returns the
        {kind: address} it routes to."""
        ups = {}
        for kind in PREFIXES:
            dst, src = self.resolve(kind)
            assert dst, f"the ingress host cannot resolve {kind}.svc.example.: {src}"
            ups[kind] = dst
        route = ",".join(f"{k}/*=h3://[{a}]:{PORT}" for k, a in ups.items())
        self.ingress_proc = self.run(self.ing(), self.peak, "h3", "ingress", "--listen",
                                     f"[::]:{PORT}", *self.tls(), "--upstream-ca", ca, "--route",
                                     route, "--id", "ingress", log="ingress.log")
        log = os.path.join(self.dir, "ingress.log")

        def both_up():
            assert self.ingress_proc.poll() is None, open(log).read()
            return len(set(re.findall(r"upstream (\S+) up\b", open(log).read()))) == 2
        assert self.until(both_up, timeout), "the ingress's upstreams never came up:\n" + \
            open(log).read()
        return ups

    def remove_ingress_host(self):
        """Stops the ingress (its process group, by PID) and deletes the ingress host's
        namespace (its link to the router goes with it)."""
        import signal
        if self.ingress_proc and self.ingress_proc.poll() is None:
            os.killpg(self.ingress_proc.pid, signal.SIGTERM)
            self.ingress_proc.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", self.ing()], capture_output=True, timeout=30)
        if self.ing() in self.ns:
            self.ns.remove(self.ing())

    def upload(self, files, peak=True, ca=None, extra=(), timeout=90):
        """'peak h3 upload' from the client host: PEAK-direct to NAME from SOURCE, or to the
        ingress host. Returns (exit status, stream lines as dicts, 'peak:' lines as dicts,
        output)."""
        target = ([NAME, "--peak", "--server", f"[{testbed.DNS_ADDR}]:53", "--source", SOURCE,
                   "--port", str(PORT)] if peak else [f"https://[{INGRESS}]:{PORT}/upload"])
        argv = ["ip", "netns", "exec", f"{self.tag}-c", self.peak, "h3", "upload", *target,
                "--ca", ca or os.path.join(self.dir, "ca.pem"), "--timeout", "20000", *extra]
        return run_upload(argv, files, timeout)
