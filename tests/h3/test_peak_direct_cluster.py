"""PEAK-direct on the cluster testbed (h3bed.py: router with BIRD and the controller, two
nodes with agents and BIRD, peak dns on its own host, a client host; an audio and a video
service of one 'peak h3 backend' pod each). No ingress host. 'peak h3 upload
audio.svc.example. --peak' from a client source reaches each type's pod straight (JSON
"backend")."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from conftest import PEAK, wait_for  # noqa: E402
from h3bed import SOURCE, H3Bed, make_certs  # noqa: E402
import testbed  # noqa: E402  (h3bed puts tests/integration on the path)


@pytest.fixture
def cluster(tmp_path, certs):
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    make_certs(tmp_path, ca=certs)
    tb = H3Bed(f"pq{os.getpid() % 10000}", str(tmp_path), PEAK)
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
