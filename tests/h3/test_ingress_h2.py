"""peak h3 ingress with HTTP/2 upstreams (h2:// routes, --upstream-proto h2): the
Transitioning system (HTTP/3 from the client, HTTP/2 over TLS/TCP to the backends), mixed
with HTTP/3 upstreams in one ingress, round robin, the health checks, the routing in the qlog
and metrics; the qlog of each HTTP/2 upstream connection, and the TLS session resumed when the
ingress reconnects to an upstream. A backend killed mid-upload and the bounded memory of a big upload are
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
from conftest import PEAK, free_tcp_port, upload, wait_for  # noqa: E402
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


# ---- qlog and session resumption on the HTTP/2 upstreams ----

def read_qlog(path):
    """JSON-SEQ records (RFC 7464: each starts with RS), every one valid JSON."""
    text = path.read_text()
    assert text.startswith("\x1e"), text[:80]
    return [json.loads(r) for r in text.split("\x1e") if r.strip()]


def events(recs, name):
    return [r["data"] for r in recs[1:] if r["name"] == name]


def test_h2_upstream_connections_have_a_qlog_each(tmp_path, certs, backend_factory,
                                                  ingress_factory):
    """Transitioning with --qlog: besides the client's QUIC connection, one JSON-SEQ file per
    TCP+TLS connection to an HTTP/2 upstream: its start (to the upstream's address), the TLS
    handshake, and per forwarded stream the routing decision (the client's stream, the route,
    the upstream), the request head, the upstream's status and the bytes each way; the health
    checks as streams of their own; the ingress's GOAWAY when it stops, then the close."""
    audio = proto_backend(backend_factory, "h2", types="audio/*", ident="audio")
    video = proto_backend(backend_factory, "h2", types="video/*", ident="video")
    qdir = tmp_path / "q"
    qdir.mkdir()
    ing = ingress_factory([f"audio/*=[::1]:{audio.port}", f"video/mp4=[::1]:{video.port}"],
                          extra=("--upstream-proto", "h2", "--qlog", str(qdir)))
    files = {"a1.ogg": ("audio/ogg", 70_000), "a2.mp3": ("audio/mpeg", 1_000_000),
             "v1.mp4": ("video/mp4", 300_000), "t.txt": ("text/plain", 10)}
    for n, (_, size) in files.items():
        write(tmp_path / n, size, n)
    rc, streams, out, err = upload(ing.url, [f"{tmp_path / n}:{t}" for n, (t, _) in files.items()],
                                   certs)
    assert rc == 1, out + err  # text/plain has no route
    csid = {s["file"]: int(s["stream"]) for s in streams}
    assert ing.stop() == 0
    assert len([f for f in qdir.iterdir() if f.name.endswith("-server.sqlog")]) == 1
    ups = {}
    for f in qdir.iterdir():
        if f.name.endswith("-h2-client.sqlog"):
            recs = read_qlog(f)
            assert recs[0]["trace"]["common_fields"]["protocol_type"] == ["TCP", "TLS", "HTTP2"]
            ups[recs[1]["data"]["remote"]] = recs
    assert set(ups) == {f"[::1]:{audio.port}", f"[::1]:{video.port}"}
    routed = {}
    for remote, recs in ups.items():
        assert recs[1]["name"] == "connectivity:connection_started"
        (hs,) = events(recs, "tls:handshake_done")
        assert hs["alpn"] == "h2" and hs["resumed"] is False
        assert recs[-1]["name"] == "connectivity:connection_closed"
        assert {"direction": "sent", "last_stream_id": 0, "error_code": 0} in \
            events(recs, "http:goaway")
        heads = {e["stream_id"]: e for e in events(recs, "http:request_headers")}
        answers = {e["stream_id"]: e["status"] for e in events(recs, "http:response")}
        closed = {e["stream_id"]: e for e in events(recs, "http:stream_closed")}
        for r in events(recs, "http:routing"):
            u = r["stream_id"]
            assert r["upstream"] == remote
            assert u in heads and u in answers and closed[u]["error_code"] == 0
            if r["client_stream_id"] == -1:  # a health check
                assert heads[u]["method"] == "GET" and heads[u]["path"] == "/healthz"
                assert answers[u] == 200
                continue
            routed[r["client_stream_id"]] = (remote, r, heads[u], answers[u], closed[u])
        assert any(r["client_stream_id"] == -1 for r in events(recs, "http:routing"))
    assert set(routed) == {csid[n] for n in ("a1.ogg", "a2.mp3", "v1.mp4")}
    for n in ("a1.ogg", "a2.mp3", "v1.mp4"):
        t, size = files[n]
        remote, r, head, status, closed = routed[csid[n]]
        assert remote == f"[::1]:{(video if n.startswith('v') else audio).port}"
        assert r["route"] == ("video/mp4" if n.startswith("v") else "audio/*")
        assert r["content_type"] == t and head["content_type"] == t
        assert head["method"] == "POST" and status == 201
        assert closed["bytes_sent"] == size and closed["bytes_received"] > 0


def test_h2_upstream_reconnect_resumes_the_tls_session(tmp_path, certs, backend_factory,
                                                       ingress_factory):
    """The ingress keeps each HTTP/2 upstream's TLS session ticket: when the upstream comes
    back (restarted with the same --secret-file, which keys its tickets), the new connection
    resumes the session (gnutls_session_is_resumed), as the ingress's metrics, the backend's
    and both connections' qlog files say; the uploads over either connection succeed."""
    secret = tmp_path / "secret"
    secret.write_text("00112233445566778899aabbccddeeff\n")
    qdir = tmp_path / "q"
    qdir.mkdir()
    a = proto_backend(backend_factory, "h2", types="audio/*", ident="a",
                      extra=("--secret-file", str(secret)))
    mport, bport = free_tcp_port(), free_tcp_port()
    ing = ingress_factory([f"audio/*=h2://[::1]:{a.port}"],
                          extra=("--metrics", f"127.0.0.1:{mport}", "--qlog", str(qdir),
                                 "--health-interval", "100"))
    key = f'{{ingress="ingress",upstream="[::1]:{a.port}"}}'
    write(tmp_path / "a.ogg", 50_000, "a")
    rc, streams, out, err = upload(ing.url, [f"{tmp_path / 'a.ogg'}:audio/ogg"], certs)
    assert rc == 0 and streams[0]["backend"] == "a", out + err
    m = scrape(mport)
    assert m["peak_h3_upstream_tls_handshakes_total" + key] == 1
    assert m["peak_h3_upstream_tls_resumed_total" + key] == 0
    assert a.stop() == 0
    b = proto_backend(backend_factory, "h2", types="audio/*", ident="b",
                      extra=("--listen", f"[::1]:{a.port}", "--secret-file", str(secret),
                             "--metrics", f"127.0.0.1:{bport}"))
    wait_for(lambda: scrape(mport)["peak_h3_upstream_tls_handshakes_total" + key] == 2 and
             scrape(mport)["peak_h3_upstream_up" + key] == 1, 20, "the upstream back")
    rc, streams, out, err = upload(ing.url, [f"{tmp_path / 'a.ogg'}:audio/ogg"], certs)
    assert rc == 0 and streams[0]["backend"] == "b", out + err
    assert scrape(mport)["peak_h3_upstream_tls_resumed_total" + key] == 1
    assert scrape(bport)['peak_h3_resumed_total{backend="b"}'] == 1
    assert ing.stop() == 0
    # a connection per attempt: those made while nothing listened end before any handshake
    resumed = []
    for f in qdir.iterdir():
        if f.name.endswith("-h2-client.sqlog"):
            recs = read_qlog(f)
            assert recs[-1]["name"] == "connectivity:connection_closed"
            resumed += [e["resumed"] for e in events(recs, "tls:handshake_done")]
    assert sorted(resumed) == [False, True]
