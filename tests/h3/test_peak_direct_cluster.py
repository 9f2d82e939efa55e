"""PEAK-direct on the cluster testbed (tests/integration/testbed.py: router with BIRD and
the controller, two nodes with agents and BIRD, peak dns on its own host, a client host):
two services, audio.svc.example. (pod n1p1 on node 1) and video.svc.example. (pod n2p1 on
node 2), each pod a 'peak h3 backend' on [::]:4433 behind the AnyIP route its agent
installs; the controller assigns the slices, the agents route them, BIRD carries them to the
router. No ingress host. 'peak h3 upload audio.svc.example. --peak' from a client source
reaches each type's pod straight (JSON "backend").

The agents' health checks are TCP connects to the service port, and the h3 backend speaks
UDP only, so each pod also runs 'peak serve' on TCP 4433 to answer them."""
import ipaddress
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import testbed  # noqa: E402
from conftest import PEAK, wait_for  # noqa: E402
from directbed import SVC_TMPL, certtool  # noqa: E402

PREFIXES = {"audio": "2001:db8:5::/64", "video": "2001:db8:6::/64"}
SOURCE = "2001:db8:c0:1::1"


class H3Bed(testbed.Testbed):
    """The testbed with two services of one pod each, and HTTP/3 backends as pods."""

    def config(self):
        svc = ""
        for i, (name, pfx) in enumerate(PREFIXES.items(), start=1):
            types = ('    types:\n      audio/*: "@"\n      video/*: video.svc.example.\n'
                     if name == "audio" else "")
            svc += (f"  - name: {name}.svc.example.\n    prefixes: [{pfx}]\n    slice: 68\n"
                    f"    select: src\n    host: src\n    key: {testbed.KEY}\n"
                    f"    port: 4433\n{types}    endpoints:\n"
                    f'      - {{id: {self.pod_id(i, 1)}, address: "{self.pod_addr(i, 1)}", '
                    f"node: node{i}, netns: {self.pod(i, 1)}}}\n")
        return f"""zone:
  name: svc.example.
  ns: [{{name: ns1.svc.example., address: "{testbed.DNS_ADDR}"}}]
  ttl: {{aaaa: 5}}
nodes: [{{name: node1}}, {{name: node2}}]
services:
{svc}"""

    def serve(self, i, j):
        d = self.dir
        types = "audio/*" if i == 1 else "video/*"
        self.serving[(i, j)] = self.run(
            self.pod(i, j), self.peak, "h3", "backend", "--listen", "[::]:4433", "--cert",
            os.path.join(d, "svc.pem"), "--key", os.path.join(d, "svc.key"), "--type", types,
            "--id", self.pod_id(i, j), log=f"h3-{i}{j}.log")
        self.run(self.pod(i, j), self.peak, "serve", "--port", "4433", "--id",
                 self.pod_id(i, j), log=f"serve-{i}{j}.log")

    def converged(self):
        routes = [ipaddress.ip_network(dst) for dst, _ in self.router_routes()]
        for pfx in PREFIXES.values():
            p = ipaddress.ip_network(pfx)
            if sum(r.num_addresses for r in routes if r.subnet_of(p)) != p.num_addresses:
                return False
        return True


@pytest.fixture
def cluster(tmp_path, certs):
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    (tmp_path / "svc.tmpl").write_text(SVC_TMPL)
    certtool("--generate-privkey", "--key-type", "ecdsa", "--outfile", str(tmp_path / "svc.key"))
    certtool("--generate-certificate", "--load-privkey", str(tmp_path / "svc.key"),
             "--load-ca-certificate", str(certs / "ca.pem"), "--load-ca-privkey",
             str(certs / "ca.key"), "--template", str(tmp_path / "svc.tmpl"), "--outfile",
             str(tmp_path / "svc.pem"))
    tb = H3Bed(f"pq{os.getpid() % 10000}", str(tmp_path), PEAK, nodes=2, pods=1)
    try:
        tb.up()
        assert tb.wait_converged(30), "the router never routed both services' slices"
        for i in (1, 2):
            assert tb.wait_log(f"h3-{i}1.log", "listening on", 10)
        yield tb
    finally:
        tb.down()


def test_peak_direct_on_the_cluster_reaches_each_pod_with_no_ingress(tmp_path, cluster, certs):
    for name, size in (("a.ogg", 200_000), ("b.ogg", 50_000), ("v.mp4", 1_000_000)):
        (tmp_path / name).write_bytes((name.encode() * size)[:size])
    argv = ["ip", "netns", "exec", f"{cluster.tag}-c", PEAK, "h3", "upload",
            "audio.svc.example.", "--peak", "--server", f"[{testbed.DNS_ADDR}]:53", "--source",
            SOURCE, "--port", "4433", "--ca", str(certs / "ca.pem"), "--timeout", "20000",
            "--file", f"{tmp_path / 'a.ogg'}:audio/ogg", "--file",
            f"{tmp_path / 'b.ogg'}:audio/ogg", "--file", f"{tmp_path / 'v.mp4'}:video/mp4"]
    last = []

    def attempt():
        last[:] = [subprocess.run(argv, capture_output=True, text=True, timeout=60)]
        return last[0] if last[0].returncode == 0 else None
    try:
        p = wait_for(attempt, 30, "an upload that succeeds")
    except AssertionError:
        raise AssertionError(last[0].stdout + last[0].stderr)
    streams = {line.split()[1].split("=")[1]: dict(kv.split("=", 1) for kv in line.split())
               for line in p.stdout.splitlines() if line.startswith("stream=")}
    assert streams["a.ogg"]["backend"] == streams["b.ogg"]["backend"] == "n1p1", p.stdout
    assert streams["v.mp4"]["backend"] == "n2p1", p.stdout
    assert all(s["checksum"] == "ok" for s in streams.values()), p.stdout
    conns = [line for line in p.stdout.splitlines() if line.startswith("peak: ")]
    assert len(conns) == 2 and f"source={SOURCE}" in conns[0], p.stdout
    assert "address=[2001:db8:5:" in p.stdout and "address=[2001:db8:6:" in p.stdout
