"""peak h3 over HTTP/2 on TLS/TCP (--proto h2): the backend checked with independent clients
(curl --http2, nghttp from nghttp2-client), and with raw bad input over TLS (a broken
preface, garbage frames, oversized header sections), none of which may hurt it; the upload
client against our backend and against Caddy's HTTP/2 server.

    curl --http2 / nghttp / python ssl --(TLS 1.3, ALPN h2, TCP)--> peak h3 backend --proto h2
    peak h3 upload --proto h2 ----------------------------------->  [::1]:port (kernel's)
                              ----------------------------------->  caddy (h2 on TLS)
"""
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import PEAK, free_tcp_port, upload, wait_for  # noqa: E402
from test_interop_caddy import caddy, requests  # noqa: E402,F401

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def write(path, n, seed):
    data = hashlib.sha256(seed.encode()).digest() * (n // 32) + b"x" * (n % 32)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def h2_backend(backend_factory, **kw):
    extra = ("--proto", "h2", *kw.pop("extra", ()))
    return backend_factory(extra=extra, **kw)


def curl(*args, timeout=60):
    return subprocess.run(["curl", "-sS", "--http2", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_curl_typed_uploads_refusals_and_healthz(tmp_path, certs, backend_factory):
    mport = free_tcp_port()
    b = h2_backend(backend_factory, types="audio/*,video/mp4",
                   extra=("--metrics", f"127.0.0.1:{mport}"))
    base = f"https://[::1]:{b.port}"
    ca = ["--cacert", str(certs / "ca.pem")]
    sums = {n: write(tmp_path / n, size, n) for n, size in
            (("a.ogg", 3_000_000), ("v.mp4", 70_001), ("e.wav", 0))}
    # three uploads in parallel: curl -Z multiplexes them on one HTTP/2 connection
    argv = ["-Z"]
    for i, (n, t) in enumerate((("a.ogg", "audio/ogg"), ("v.mp4", "video/mp4"),
                                ("e.wav", "Audio/WAV; x=1"))):
        argv += (["--next"] if i else []) + [
            *ca, "-w", "%{http_version} %{http_code}\n", "-H", f"content-type: {t}",
            "--data-binary", f"@{tmp_path / n}", "-o", str(tmp_path / (n + ".json")),
            f"{base}/up/{n}"]
    p = curl(*argv)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:3] == ["2 201"] * 3, p.stdout
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
        m = r.read().decode()
    assert 'peak_h3_connections_total{backend="b1"} 1\n' in m, m
    assert 'peak_h3_streams_total{backend="b1",status="201"} 3\n' in m, m
    for n, t in (("a.ogg", "audio/ogg"), ("v.mp4", "video/mp4"), ("e.wav", "Audio/WAV; x=1")):
        j = json.loads((tmp_path / (n + ".json")).read_text())
        assert j == {"checksum": sums[n], "bytes": (tmp_path / n).stat().st_size, "type": t,
                     "backend": "b1"}
    p = curl(*ca, "-H", "content-type: text/plain", "--data-binary", "x", "-w",
             " %{http_version} %{http_code}", f"{base}/up")
    assert p.stdout.endswith(" 2 415"), p.stdout
    p = curl(*ca, "-H", "content-type:", "--data-binary", f"@{tmp_path / 'v.mp4'}", "-w",
             " %{http_version} %{http_code}", f"{base}/up")
    assert p.stdout.endswith(" 2 400"), p.stdout
    p = curl(*ca, "-w", " %{http_version} %{http_code}", f"{base}/healthz")
    assert p.stdout == "ok\n 2 200", p.stdout
    p = curl(*ca, "-w", " %{http_version} %{http_code}", f"{base}/nothing")
    assert p.stdout.endswith(" 2 404"), p.stdout
    # a client that does not offer h2 fails the handshake (ALPN is mandatory)
    p = subprocess.run(["curl", "-sS", "--http1.1", *ca, f"{base}/healthz"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert b.proc.poll() is None
    assert b.stop() == 0, b.logtext()


@pytest.mark.skipif(not shutil.which("nghttp"), reason="nghttp2-client is not installed")
def test_nghttp_concurrent_streams_on_one_connection(tmp_path, certs, backend_factory):
    b = h2_backend(backend_factory, types="audio/*")
    s = write(tmp_path / "a", 300_000, "a")
    p = subprocess.run(["nghttp", "-v", "-n", "-m", "4", "-d", str(tmp_path / "a"), "-H",
                        "content-type: audio/mpeg", f"https://[::1]:{b.port}/x"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count(":status: 201") == 4, p.stdout
    # the four went as four streams of the one connection, each answered
    sids = re.findall(r"recv \(stream_id=(\d+)\) :status: 201", p.stdout)
    assert len(set(sids)) == 4, p.stdout
    assert "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100" in p.stdout
    p = subprocess.run(["nghttp", "-d", str(tmp_path / "a"), "-H", "content-type: audio/mpeg",
                        f"https://[::1]:{b.port}/x"], capture_output=True, text=True,
                       timeout=60)
    assert json.loads(p.stdout)["checksum"] == s
    assert b.stop() == 0, b.logtext()


def tls_h2(port, certs):
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.set_alpn_protocols(["h2"])
    s = ctx.wrap_socket(socket.create_connection(("::1", port), timeout=10),
                        server_hostname="localhost")
    assert s.selected_alpn_protocol() == "h2"
    return s


def frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def read_until_closed(s):
    """Everything the server sends until it closes (a connection error ends in GOAWAY)."""
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return data
            data += d
    except (ssl.SSLError, OSError):
        return data


def frames(data):
    out = []
    while len(data) >= 9:
        n = int.from_bytes(data[:3], "big")
        out.append((data[3], int.from_bytes(data[5:9], "big") & 0x7fffffff, data[9:9 + n]))
        data = data[9 + n:]
    return out


def test_bad_preface_and_garbage_frames(tmp_path, certs, backend_factory):
    b = h2_backend(backend_factory)
    rnd = __import__("random").Random(16)
    # not the connection preface: a connection error (RFC 9113 §3.4), GOAWAY or a close
    s = tls_h2(b.port, certs)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    got = frames(read_until_closed(s))
    assert all(t != 1 for t, _, _ in got)  # no HEADERS answer
    s.close()
    # the preface, then garbage frames: a malformed HEADERS block (bad HPACK), a DATA frame
    # on an idle stream, a frame longer than SETTINGS_MAX_FRAME_SIZE, random bytes
    bad = [frame(1, 0x5, 1, b"\xff\xff\xff\xff\xff"), frame(0, 0x1, 3, b"xyz"),
           b"\xff\xff\xff\x00\x00\x00\x00\x00\x01" + b"x" * 100,
           frame(4, 0, 0, b"\x00")]  # SETTINGS with a length not a multiple of 6
    for junk in bad:
        # each is a connection error the server must see by itself: it closes at once
        s = tls_h2(b.port, certs)
        s.sendall(H2_PREFACE + frame(4, 0, 0, b"") + junk)
        got = frames(read_until_closed(s))
        s.close()
        assert all(t != 1 for t, _, _ in got), junk
        assert any(t == 7 for t, _, _ in got), (junk, got)  # GOAWAY
    for i in range(20):
        # random bytes, perhaps a partial frame: the client then half-closes
        s = tls_h2(b.port, certs)
        s.sendall(H2_PREFACE + frame(4, 0, 0, b"") + rnd.randbytes(rnd.randrange(1, 300)))
        s.shutdown(socket.SHUT_WR)
        read_until_closed(s)
        s.close()
    assert b.proc.poll() is None
    # still serving
    p = curl("--cacert", str(certs / "ca.pem"), "-w", " %{http_code}",
             f"https://[::1]:{b.port}/healthz")
    assert p.stdout.endswith(" 200"), p.stdout + p.stderr
    assert b.stop() == 0, b.logtext()


def test_oversized_header_section_gets_431(tmp_path, certs, backend_factory):
    b = h2_backend(backend_factory)
    p = curl("--cacert", str(certs / "ca.pem"), "-H", "x-big: " + "a" * 20000, "-H",
             "content-type: audio/ogg", "--data-binary", "body", "-w", " %{http_code}",
             f"https://[::1]:{b.port}/up")
    assert p.stdout.endswith(" 431"), p.stdout + p.stderr
    # a section that fits is fine
    p = curl("--cacert", str(certs / "ca.pem"), "-H", "x-big: " + "a" * 8000, "-w",
             " %{http_code}", f"https://[::1]:{b.port}/healthz")
    assert p.stdout.endswith(" 200"), p.stdout + p.stderr
    assert b.stop() == 0, b.logtext()


def open_endless_upload(b, certs, mport):
    """Opens an HTTP/2 POST on backend b whose body never ends (1000 bytes sent) and waits
    until the backend has hashed them; returns the socket and a scrape() of its metrics."""
    s = tls_h2(b.port, certs)
    hdrs = b"\x83\x87" + b"\x41\x09localhost" + b"\x04\x03/up" + \
        b"\x5f\x09audio/ogg"  # :method POST, :scheme https, :authority, :path, content-type
    s.sendall(H2_PREFACE + frame(4, 0, 0, b"") + frame(1, 0x4, 1, hdrs) +
              frame(0, 0, 1, b"x" * 1000))

    def scrape():
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
            return r.read().decode()
    wait_for(lambda: 'peak_h3_body_bytes_total{backend="b1"} 1000' in scrape(), 10,
             "the body bytes to be hashed")
    return s, scrape


def test_client_gone_mid_upload_and_metrics(tmp_path, certs, backend_factory):
    mport = free_tcp_port()
    b = h2_backend(backend_factory, extra=("--metrics", f"127.0.0.1:{mport}"))
    # a request whose body never ends, then the client vanishes: the stream is freed
    s, scrape = open_endless_upload(b, certs, mport)
    s.close()
    wait_for(lambda: 'status="reset"} 1' in scrape(), 10, "the stream to be counted reset")
    # the connection is counted gone just after its stream (a scrape between the two saw 1)
    wait_for(lambda: 'peak_h3_connections{backend="b1"} 0' in scrape(), 10,
             "the connection to be counted gone")
    m = scrape()
    assert 'peak_h3_handshake_seconds_count{backend="b1"} 1' in m
    assert b.stop() == 0, b.logtext()


@pytest.mark.parametrize("argv", [
    ["--proto", "h1"],
    ["--proto", "h2", "--retry"],
])
def test_backend_usage_errors(argv):
    p = subprocess.run([PEAK, "h3", "backend", "--listen", "[::1]:0", "--cert", "c", "--key",
                        "k", "--type", "a/b", *argv], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 2, p


# ---- peak h3 upload --proto h2 ----

def h2_upload(url, files, certs, extra=(), timeout=60):
    return upload(url, files, certs, extra=("--proto", "h2", *extra), timeout=timeout)


def test_upload_h2_all_files_on_one_connection_past_the_stream_limit(tmp_path, certs,
                                                                     backend_factory):
    mport = free_tcp_port()
    b = h2_backend(backend_factory, types="audio/*,video/mp4",
                   extra=("--max-streams", "2", "--metrics", f"127.0.0.1:{mport}"))
    files = {"a1.ogg": ("audio/ogg", 70_000), "a2.mp3": ("audio/mpeg; rate=44100", 1),
             "a3.wav": ("Audio/WAV", 0), "v1.mp4": ("video/mp4", 2_500_000),
             "v2.mp4": ("video/mp4", 300_000), "a4.ogg": ("audio/ogg", 100_000)}
    sums = {name: write(tmp_path / name, n, name) for name, (_, n) in files.items()}
    rc, streams, out, err = h2_upload(f"https://[::1]:{b.port}/up",
                                      [f"{tmp_path / n}:{t}" for n, (t, _) in files.items()],
                                      certs)
    assert rc == 0, out + err
    assert len(streams) == len(files)
    # client streams of one HTTP/2 connection: distinct odd IDs
    ids = {int(s["stream"]) for s in streams}
    assert len(ids) == len(files) and all(i % 2 == 1 for i in ids)
    for s in streams:
        assert s["status"] == "201" and s["checksum"] == "ok", s
        assert s["backend"] == "b1" and s["sha256"] == sums[s["file"]]
        assert int(s["bytes"]) == files[s["file"]][1]
    assert "6 ok, 0 failed" in out and "(h2)" in out
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
        m = r.read().decode()
    assert 'peak_h3_connections_total{backend="b1"} 1\n' in m, m
    assert b.stop() == 0, b.logtext()


def test_upload_h2_refusals_get_and_bad_certificate(tmp_path, certs, backend_factory):
    b = h2_backend(backend_factory, types="audio/*")
    url = f"https://[::1]:{b.port}/up"
    write(tmp_path / "a.ogg", 5000, "a")
    write(tmp_path / "v.mp4", 200_000, "v")
    rc, streams, out, err = h2_upload(
        url, [f"{tmp_path / 'a.ogg'}:audio/ogg", f"{tmp_path / 'v.mp4'}:video/mp4",
              str(tmp_path / "v.mp4")], certs)
    assert rc == 1, out + err
    by = {(s["file"], s["type"]): s for s in streams}
    assert by[("a.ogg", "audio/ogg")]["status"] == "201"
    assert by[("a.ogg", "audio/ogg")]["checksum"] == "ok"
    assert by[("v.mp4", "video/mp4")]["status"] == "415"
    assert by[("v.mp4", "-")]["status"] == "400"
    p = subprocess.run([PEAK, "h3", "get", "--proto", "h2", f"https://[::1]:{b.port}/healthz",
                        "--ca", str(certs / "ca.pem")], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0 and "status=200" in p.stdout and "body=ok" in p.stdout, p
    # a CA that did not sign the backend's certificate: the handshake fails, exit 1
    p = subprocess.run([PEAK, "h3", "upload", "--proto", "h2", url, "--ca",
                        str(certs / "other.pem"), "--file", f"{tmp_path / 'a.ogg'}:audio/ogg"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "handshake failed" in p.stderr, p
    # nothing listening: exit 1 with the reason
    b.stop()
    p = subprocess.run([PEAK, "h3", "get", "--proto", "h2", f"https://[::1]:{b.port}/healthz",
                        "--ca", str(certs / "ca.pem")], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 1 and "refused" in p.stderr, p


def test_upload_h2_against_caddy(tmp_path, certs, caddy):
    """Caddy (Go's net/http HTTP/2 server, independent of nghttp2) answers every stream."""
    port, access, proc = caddy
    files = {"a.ogg": ("audio/ogg", 300_000), "v.mp4": ("video/mp4", 1_000_000)}
    for n, (_, size) in files.items():
        write(tmp_path / n, size, n)
    rc, streams, out, err = h2_upload(f"https://[::1]:{port}/upload",
                                      [f"{tmp_path / n}:{t}" for n, (t, _) in files.items()],
                                      certs)
    # Caddy answers 200 "stored": no checksum to check, hence exit 1, but every stream done
    assert rc == 1 and len(streams) == 2, out + err
    assert all(s["status"] == "200" for s in streams), out + err
    wait_for(lambda: len(requests(access)) == 2, 10, "caddy's access log")
    reqs = requests(access)
    assert all(r["proto"] == "HTTP/2.0" for r in reqs), reqs
    assert sorted(r["headers"]["Content-Type"][0] for r in reqs) == ["audio/ogg", "video/mp4"]


@pytest.mark.parametrize("argv", [
    ["--proto", "h1"],
    ["--proto", "h2", "--migrate-after", "10"],
    ["--proto", "h2", "--early-data"],  # needs --session-file
])
def test_upload_usage_errors(argv):
    p = subprocess.run([PEAK, "h3", "upload", "https://[::1]:1/", "--file", "x:audio/ogg",
                        *argv], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, p


# ---- qlog and session resumption over HTTP/2 ----

def read_qlog(path):
    """JSON-SEQ records (RFC 7464: each starts with RS), every one valid JSON."""
    text = path.read_text()
    assert text.startswith("\x1e"), text[:80]
    return [json.loads(r) for r in text.split("\x1e") if r.strip()]


def events(recs, name):
    return [r["data"] for r in recs[1:] if r["name"] == name]


def test_upload_h2_qlog_on_both_sides(tmp_path, certs, backend_factory):
    """--qlog over HTTP/2: one JSON-SEQ file per TCP+TLS connection on each side (its header
    record naming the protocols), the connection's start, TLS handshake and close, and per
    stream its request head, answer and byte counts, the GOAWAY at the end."""
    sdir, cdir = tmp_path / "qs", tmp_path / "qc"
    sdir.mkdir()
    cdir.mkdir()
    b = h2_backend(backend_factory, extra=("--qlog", str(sdir)))
    files = {"a.ogg": ("audio/ogg", 70_000), "v.mp4": ("video/mp4", 200_000),
             "t.txt": ("text/plain", 10)}
    for n, (_, size) in files.items():
        write(tmp_path / n, size, n)
    rc, streams, out, err = h2_upload(b.url, [f"{tmp_path / n}:{t}" for n, (t, _) in files.items()],
                                      certs, extra=("--qlog", str(cdir)))
    assert rc == 1, out + err  # text/plain: 415
    sid = {s["file"]: int(s["stream"]) for s in streams}
    assert b.stop() == 0
    (cf,) = cdir.iterdir()
    (sf,) = sdir.iterdir()
    assert cf.name.endswith("-h2-client.sqlog") and sf.name.endswith("-h2-server.sqlog")
    for f, role in ((cf, "client"), (sf, "server")):
        recs = read_qlog(f)
        assert recs[0]["qlog_format"] == "JSON-SEQ"
        assert recs[0]["trace"]["vantage_point"]["type"] == role
        assert recs[0]["trace"]["common_fields"]["protocol_type"] == ["TCP", "TLS", "HTTP2"]
        assert recs[1]["name"] == "connectivity:connection_started"
        assert recs[1]["data"]["protocol"] == "TCP"
        (hs,) = events(recs, "tls:handshake_done")
        assert hs["alpn"] == "h2" and hs["resumed"] is False and hs["version"] == "TLS1.3"
        assert recs[-1]["name"] == "connectivity:connection_closed"
        times = [r["time"] for r in recs[1:]]
        assert times == sorted(times)
        heads = {e["stream_id"]: e for e in events(recs, "http:request_headers")}
        answers = {e["stream_id"]: e["status"] for e in events(recs, "http:response")}
        closed = {e["stream_id"]: e for e in events(recs, "http:stream_closed")}
        for n, (t, size) in files.items():
            s = sid[n]
            assert heads[s]["method"] == "POST" and heads[s]["content_type"] == t
            assert heads[s]["path"] == "/upload"
            assert answers[s] == (415 if t == "text/plain" else 201)
            assert closed[s]["error_code"] == 0
            body = closed[s]["bytes_sent" if role == "client" else "bytes_received"]
            # the 415 comes before the body ends: what was sent of it is not fixed
            assert body == size or t == "text/plain", (n, closed[s])
            answer = closed[s]["bytes_received" if role == "client" else "bytes_sent"]
            assert answer > 0
        # the client ends with a GOAWAY, which the server receives
        goaway = events(recs, "http:goaway")
        assert {"direction": "sent" if role == "client" else "received", "last_stream_id": 0,
                "error_code": 0} in goaway, goaway


def test_upload_h2_session_resumption(tmp_path, certs, backend_factory):
    """--session-file over HTTP/2: the second connection resumes the first one's TLS session
    (a TLS 1.3 session ticket); with the ticket key from --secret-file it still resumes after
    the backend restarts; the backend counts the resumed handshakes, the qlog says so."""
    secret = tmp_path / "secret"
    secret.write_text("00112233445566778899aabbccddeeff\n")
    sess = tmp_path / "session"
    qdir = tmp_path / "q"
    qdir.mkdir()
    write(tmp_path / "a", 10_000, "a")
    mport = free_tcp_port()

    def run(b):
        rc, streams, out, err = h2_upload(b.url, [f"{tmp_path / 'a'}:audio/ogg"], certs,
                                          extra=("--session-file", str(sess)))
        assert rc == 0, out + err
        return "(resumed)" in out.splitlines()[-1]
    a = h2_backend(backend_factory, ident="a", extra=("--secret-file", str(secret)))
    assert not run(a)
    assert sess.stat().st_mode & 0o777 == 0o600
    assert run(a)
    assert a.stop() == 0
    b = h2_backend(backend_factory, ident="b",
                   extra=("--listen", f"[::1]:{a.port}", "--secret-file", str(secret),
                          "--metrics", f"127.0.0.1:{mport}", "--qlog", str(qdir)))
    assert run(b)
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
        assert 'peak_h3_resumed_total{backend="b"} 1' in r.read().decode()
    assert b.stop() == 0
    (f,) = qdir.iterdir()
    (hs,) = events(read_qlog(f), "tls:handshake_done")
    assert hs["resumed"] is True


def test_backend_h2_qlog_of_a_reset_stream(tmp_path, certs, backend_factory):
    """A client that resets its stream mid-body (RST_STREAM CANCEL), then says GOAWAY: the
    backend's qlog has the request head, the reset received, the stream closed with its code
    and the body bytes that came, the GOAWAY received."""
    mport = free_tcp_port()
    qdir = tmp_path / "q"
    qdir.mkdir()
    b = h2_backend(backend_factory, extra=("--metrics", f"127.0.0.1:{mport}", "--qlog",
                                           str(qdir)))
    s, scrape = open_endless_upload(b, certs, mport)
    s.sendall(frame(3, 0, 1, struct.pack(">I", 8)) +  # RST_STREAM CANCEL
              frame(7, 0, 0, struct.pack(">II", 0, 0)))  # GOAWAY, NO_ERROR
    wait_for(lambda: 'status="reset"} 1' in scrape(), 10, "the stream to be counted reset")
    s.close()
    assert b.stop() == 0, b.logtext()
    (f,) = qdir.iterdir()
    recs = read_qlog(f)
    (head,) = events(recs, "http:request_headers")
    assert head == {"stream_id": 1, "method": "POST", "path": "/up", "content_type": "audio/ogg"}
    assert events(recs, "http:stream_reset") == [{"stream_id": 1, "direction": "received",
                                                  "error_code": 8}]
    assert events(recs, "http:stream_closed") == [{"stream_id": 1, "error_code": 8,
                                                   "bytes_sent": 0, "bytes_received": 1000}]
    assert {"direction": "received", "last_stream_id": 0, "error_code": 0} in \
        events(recs, "http:goaway")
    assert not events(recs, "http:response")
    assert recs[-1]["name"] == "connectivity:connection_closed"


# ---- 0-RTT (TLS 1.3 early data) over HTTP/2 ----

class Recorder:
    """A TCP relay on [::1] to port that forwards one connection both ways and keeps the
    bytes the client sent (what an attacker on the path could capture and replay)."""

    def __init__(self, port):
        self.port, self.sent = port, bytearray()
        self.ls = socket.create_server(("::1", 0), family=socket.AF_INET6)
        self.url = f"https://[::1]:{self.ls.getsockname()[1]}/upload"
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def pipe(self, a, b, keep):
        try:
            while (d := a.recv(65536)):
                if keep:
                    self.sent += d
                b.sendall(d)
        except OSError:
            pass
        finally:
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def run(self):
        self.ls.settimeout(60)
        c, _ = self.ls.accept()
        u = socket.create_connection(("::1", self.port), timeout=60)
        back = threading.Thread(target=self.pipe, args=(u, c, False), daemon=True)
        back.start()
        self.pipe(c, u, True)
        back.join(60)
        c.close()
        u.close()
        self.ls.close()


def metrics(mport):
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
        return r.read().decode()


def test_upload_h2_early_data_accepted_replay_refused_and_resent(tmp_path, certs,
                                                                   backend_factory):
    """--early-data over HTTP/2: on a resumed session the preface and the requests go as TLS
    1.3 early data; the backend takes them (its metrics and both qlogs say so) and the
    checksums match. The same ClientHello and early data replayed byte for byte are refused
    by the anti-replay cache (counted; nothing answered twice). A backend that cannot read the
    ticket rejects the early data and the client sends the same bytes again after the
    handshake: every answer is still right."""
    secret, other = tmp_path / "secret", tmp_path / "other"
    secret.write_text("00112233445566778899aabbccddeeff\n")
    other.write_text("ffeeddccbbaa99887766554433221100\n")
    sess = tmp_path / "session"
    sdir, cdir = tmp_path / "qs", tmp_path / "qc"
    sdir.mkdir()
    cdir.mkdir()
    write(tmp_path / "a", 100_000, "a")
    write(tmp_path / "b", 3, "b")
    files = [f"{tmp_path / 'a'}:audio/ogg", f"{tmp_path / 'b'}:audio/ogg",
             f"{tmp_path / 'b'}:text/plain"]
    mport = free_tcp_port()

    def run(url, extra=()):
        rc, streams, out, err = h2_upload(url, files, certs, extra=(
            "--session-file", str(sess), "--early-data", *extra))
        assert rc == 1, out + err  # the text/plain one is refused: 415
        assert [s["status"] for s in streams] == ["201", "201", "415"], out + err
        assert all(s["checksum"] == "ok" for s in streams[:2]), out + err
        return out.splitlines()[-1]
    a = h2_backend(backend_factory, ident="a", extra=(
        "--secret-file", str(secret), "--metrics", f"127.0.0.1:{mport}", "--qlog", str(sdir)))
    assert "0-RTT" not in run(a.url)  # no session stored yet
    rec = Recorder(a.port)
    assert "(resumed) (0-RTT accepted)" in run(rec.url, ("--qlog", str(cdir)))
    rec.t.join(30)
    m = metrics(mport)
    assert 'peak_h3_early_data_total{backend="a",result="accepted"} 1' in m, m
    assert 'peak_h3_early_data_total{backend="a",result="replay_refused"} 0' in m, m
    (cf,) = cdir.iterdir()
    (hs,) = events(read_qlog(cf), "tls:handshake_done")
    assert hs["early_data"] == "accepted" and hs["resumed"] is True
    shs = [e for f in sdir.iterdir() for e in events(read_qlog(f), "tls:handshake_done")]
    assert sorted(e["early_data"] for e in shs) == ["accepted", "none"], shs

    # the replay: the recorded ClientHello and early data sent again on a new connection
    answered = re.findall(r'peak_h3_streams_total\{backend="a",status="201"\} (\d+)', m)
    s = socket.create_connection(("::1", a.port), timeout=30)
    try:
        s.sendall(bytes(rec.sent))
        wait_for(lambda: 'result="replay_refused"} 1' in metrics(mport), 30,
                 "the replay refused")
    finally:
        s.close()
    m = metrics(mport)
    assert 'peak_h3_early_data_total{backend="a",result="accepted"} 1' in m, m
    assert re.findall(r'peak_h3_streams_total\{backend="a",status="201"\} (\d+)', m) == \
        answered
    assert a.stop() == 0

    # a backend with another ticket key: early data rejected, the requests sent again
    b = h2_backend(backend_factory, ident="b", extra=(
        "--listen", f"[::1]:{a.port}", "--secret-file", str(other),
        "--metrics", f"127.0.0.1:{mport}"))
    mfile = tmp_path / "client.prom"
    assert "(0-RTT rejected)" in run(b.url, ("--metrics", str(mfile)))
    assert 'peak_h3_client_early_data_total{result="rejected"} 1' in mfile.read_text()
    assert 'result="accepted"} 0' in metrics(mport)
    assert b.stop() == 0
