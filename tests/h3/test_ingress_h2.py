"""peak h3 ingress with HTTP/2 upstreams (h2:// routes, --upstream-proto h2): the
Transitioning system (HTTP/3 from the client, HTTP/2 over TLS/TCP to the backends), mixed
with HTTP/3 upstreams in one ingress, round robin, the health checks, the routing in the qlog
and metrics. A backend killed mid-upload and the bounded memory of a big upload are
test_ingress.py's tests, run over both upstream protocols.

    peak h3 upload --(one QUIC connection)--> peak h3 ingress --(one TLS/TCP HTTP/2
                                               [::1]:port       connection per upstream)-->
                                                                  peak h3 backend --proto h2
                                                          --(QUIC)--> peak h3 backend (h3)
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from conftest import PEAK, free_tcp_port, upload  # noqa: E402
from test_h3 import write  # noqa: E402
from test_ingress import proto_backend, scrape  # noqa: E402


def test_h2_and_h3_upstreams_in_one_ingress(tmp_path, certs, backend_factory, ingress_factory):
    audio = proto_backend(backend_factory, "h2", types="audio/*", ident="audio")
    video = backend_factory(types="video/*", ident="video")  # HTTP/3
    mport = free_tcp_port()
    qdir = tmp_path / "q"
    qdir.mkdir()
    # the audio upstream without a scheme: --upstream-proto h2 makes it HTTP/2
    ing = ingress_factory([f"audio/*=[::1]:{audio.port}", f"video/mp4=h3://[::1]:{video.port}"],
                          extra=("--upstream-proto", "h2", "--metrics", f"127.0.0.1:{mport}",
                                 "--qlog", str(qdir)))
    files = {"a1.ogg": ("audio/ogg", 70_000), "a2.mp3": ("Audio/MPEG; rate=44100", 1),
             "a3.wav": ("audio/wav", 0), "a4.ogg": ("audio/ogg", 3_000_000),
             "v1.mp4": ("video/mp4", 300_000), "t.txt": ("text/plain", 10)}
    sums = {n: write(tmp_path / n, size, n) for n, (_, size) in files.items()}
    rc, streams, out, err = upload(ing.url, [f"{tmp_path / n}:{t}" for n, (t, _) in files.items()],
                                   certs)
    assert rc == 1, out + err  # the text/plain stream has no route
    by = {s["file"]: s for s in streams}
    for n in ("a1.ogg", "a2.mp3", "a3.wav", "a4.ogg", "v1.mp4"):
        assert by[n]["status"] == "201" and by[n]["checksum"] == "ok", by[n]
        assert by[n]["sha256"] == sums[n]
        assert by[n]["backend"] == ("video" if n.startswith("v") else "audio")
    assert by["t.txt"]["status"] == "400"
    m = scrape(mport)
    assert m['peak_h3_ingress_streams_total{ingress="ingress",route="audio/*",status="201"}'] == 4
    assert m['peak_h3_ingress_streams_total{ingress="ingress",route="video/mp4",status="201"}'] == 1
    assert m[f'peak_h3_upstream_requests_total{{ingress="ingress",upstream="[::1]:{audio.port}"}}'] \
        == 4
    assert m[f'peak_h3_upstream_up{{ingress="ingress",upstream="[::1]:{audio.port}"}}'] == 1
    assert m['peak_h3_ingress_bytes_total{ingress="ingress",route="audio/*",direction="request"}'] \
        == 3_070_001
    assert ing.stop() == 0
    (server,) = [f for f in qdir.iterdir() if f.name.endswith("-server.sqlog")]
    recs = [json.loads(r) for r in server.read_text().split("\x1e") if r.strip()]
    routing = {r["data"]["content_type"]: r["data"] for r in recs
               if r.get("name") == "http:routing"}
    assert routing["audio/ogg"]["route"] == "audio/*"
    assert routing["audio/ogg"]["upstream"] == f"[::1]:{audio.port}"
    assert routing["video/mp4"]["upstream"] == f"[::1]:{video.port}"


def test_round_robin_and_stream_limit_on_h2_upstreams(tmp_path, certs, backend_factory,
                                                      ingress_factory):
    """Two h2 backends of one rule, one allowing 2 streams at a time: nghttp2 holds the
    others until streams close (RFC 9113 §5.1.2); all arrive, half on each."""
    b1 = proto_backend(backend_factory, "h2", types="audio/*", ident="b1",
                       extra=("--max-streams", "2"))
    b2 = proto_backend(backend_factory, "h2", types="audio/*", ident="b2")
    ing = ingress_factory([f"audio/*=h2://[::1]:{b1.port}|h2://[::1]:{b2.port}"],
                          extra=("--upstream-proto", "h2"))
    names = [f"a{i}.ogg" for i in range(8)]
    sums = {n: write(tmp_path / n, 40_000 + i, n) for i, n in enumerate(names)}
    rc, streams, out, err = upload(ing.url, [f"{tmp_path / n}:audio/ogg" for n in names], certs)
    assert rc == 0, out + err
    assert all(s["sha256"] == sums[s["file"]] and s["checksum"] == "ok" for s in streams)
    got = [s["backend"] for s in streams]
    assert got.count("b1") == 4 and got.count("b2") == 4, out
    assert ing.stop() == 0


def test_h2_route_specs(tmp_path, certs):
    base = [PEAK, "h3", "ingress", "--listen", "[::1]:0", "--cert", str(certs / "srv.pem"),
            "--key", str(certs / "srv.key")]
    for spec in ("audio/*=h2//[::1]:1", "audio/*=h22://[::1]:1", "audio/*=h2://[::1]"):
        p = subprocess.run([*base, "--route", spec], capture_output=True, text=True,
                           timeout=10)
        assert p.returncode == 2 and "is not" in p.stderr, (spec, p.stderr)
