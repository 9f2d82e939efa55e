"""peak h3 backend and peak h3 upload on loopback: several typed uploads on one connection
with their checksums checked, the refusals (415, 400), the server's stream limit, a client
that dies mid-upload and garbage datagrams, none of which may hurt the backend.

    peak h3 upload --(QUIC, one connection, a request stream per file)--> peak h3 backend
                                   [::1]:port chosen by the kernel
"""
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import PEAK, free_tcp_port, upload, wait_for  # noqa: E402


def write(path, n, seed):
    data = hashlib.sha256(seed.encode()).digest() * (n // 32) + b"x" * (n % 32)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_typed_uploads_on_one_connection(tmp_path, certs, backend_factory):
    b = backend_factory(types="audio/*,video/mp4")
    files = {"a1.ogg": ("audio/ogg", 70_000), "a2.mp3": ("audio/mpeg; rate=44100", 1),
             "a3.wav": ("Audio/WAV", 0), "v1.mp4": ("video/mp4", 2_500_000),
             "v2.mp4": ("video/mp4", 300_000)}
    sums = {name: write(tmp_path / name, n, name) for name, (_, n) in files.items()}
    rc, streams, out, err = upload(b.url, [f"{tmp_path / n}:{t}" for n, (t, _) in files.items()],
                                   certs)
    assert rc == 0, out + err
    assert len(streams) == len(files)
    # every file went on its own stream of the one connection
    assert len({s["stream"] for s in streams}) == len(files)
    for s in streams:
        assert s["status"] == "201" and s["checksum"] == "ok", s
        assert s["backend"] == "b1"
        assert s["sha256"] == sums[s["file"]]
        assert int(s["bytes"]) == files[s["file"]][1]
    assert "5 ok, 0 failed" in out
    assert b.stop() == 0


def test_unserved_type_gets_415_and_the_rest_succeeds(tmp_path, certs, backend_factory):
    b = backend_factory(types="audio/*")
    write(tmp_path / "a.ogg", 5000, "a")
    write(tmp_path / "v.mp4", 200_000, "v")
    rc, streams, out, err = upload(
        b.url, [f"{tmp_path / 'a.ogg'}:audio/ogg", f"{tmp_path / 'v.mp4'}:video/mp4"], certs)
    assert rc == 1, out + err
    by = {s["file"]: s for s in streams}
    assert by["a.ogg"]["status"] == "201" and by["a.ogg"]["checksum"] == "ok"
    assert by["v.mp4"]["status"] == "415" and by["v.mp4"]["checksum"] == "-"
    assert b.stop() == 0


def test_no_content_type_gets_400(tmp_path, certs, backend_factory):
    b = backend_factory()
    write(tmp_path / "blob", 100_000, "blob")
    rc, streams, out, err = upload(b.url, [str(tmp_path / "blob")], certs)
    assert rc == 1, out + err
    assert streams[0]["status"] == "400" and streams[0]["type"] == "-"
    # and the connection is still good for a well-labelled upload afterwards
    rc, streams, out, err = upload(b.url, [f"{tmp_path / 'blob'}:audio/ogg"], certs)
    assert rc == 0, out + err
    assert b.stop() == 0


def test_client_respects_the_server_stream_limit(tmp_path, certs, backend_factory):
    b = backend_factory(extra=("--max-streams", "2"))
    names = [f"f{i}" for i in range(7)]
    sums = {n: write(tmp_path / n, 40_000 + i * 1000, n) for i, n in enumerate(names)}
    rc, streams, out, err = upload(b.url, [f"{tmp_path / n}:audio/ogg" for n in names], certs)
    assert rc == 0, out + err
    assert sorted(s["file"] for s in streams) == names
    assert all(s["sha256"] == sums[s["file"]] and s["checksum"] == "ok" for s in streams)
    assert b.stop() == 0


def test_healthz_and_certificate_checks(tmp_path, certs, backend_factory):
    b = backend_factory()
    base = f"https://[::1]:{b.port}"
    p = subprocess.run([PEAK, "h3", "get", base + "/healthz", "--ca", str(certs / "ca.pem")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "status=200" in p.stdout and "body=ok" in p.stdout, p
    p = subprocess.run([PEAK, "h3", "get", base + "/nope", "--insecure"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "status=404" in p.stdout, p
    # a CA that did not sign the server's certificate: the handshake fails, exit 1
    write(tmp_path / "x", 10, "x")
    p = subprocess.run([PEAK, "h3", "upload", base + "/", "--ca", str(certs / "other.pem"),
                        "--file", f"{tmp_path / 'x'}:audio/ogg", "--timeout", "5000"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "handshake failed" in p.stderr, p
    assert b.stop() == 0


def test_client_that_rebinds_mid_upload_finishes(tmp_path, certs, backend_factory):
    """Connection migration: the client moves to a new local port after 2 MB of a 12 MB
    upload; the server follows by connection ID (never by peer address), validates the new
    path, and the upload finishes on the same connection."""
    b = backend_factory(extra=("--verbose",))
    big = write(tmp_path / "v.mp4", 12_000_000, "v")
    write(tmp_path / "a.ogg", 100_000, "a")
    rc, streams, out, err = upload(
        b.url, [f"{tmp_path / 'v.mp4'}:video/mp4", f"{tmp_path / 'a.ogg'}:audio/ogg"], certs,
        extra=("--migrate-after", "2000000"))
    assert rc == 0, out + err
    m = re.search(r"migrated from \[::1\]:(\d+) to \[::1\]:(\d+)", err)
    assert m and m.group(1) != m.group(2), err
    by = {s["file"]: s for s in streams}
    assert by["v.mp4"]["sha256"] == big and by["v.mp4"]["checksum"] == "ok"
    assert b.stop() == 0
    log = b.logtext()
    assert f"server path to [::1]:{m.group(2)} validated" in log, log
    assert "1 connections" in log, log


def test_metrics(tmp_path, certs, backend_factory):
    port = free_tcp_port()
    b = backend_factory(extra=("--metrics", f"127.0.0.1:{port}"))
    write(tmp_path / "a", 123_456, "a")
    write(tmp_path / "v", 1_000, "v")
    rc, streams, out, err = upload(b.url, [f"{tmp_path / 'a'}:audio/ogg",
                                           f"{tmp_path / 'a'}:audio/ogg",
                                           f"{tmp_path / 'v'}:text/plain", str(tmp_path / "v")],
                                   certs)
    assert rc == 1 and [s["status"] for s in streams] == ["201", "201", "415", "400"], out

    def scrape():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines() if line and not line.startswith("#")}
    m = scrape()
    assert m['peak_h3_streams_total{backend="b1",status="201"}'] == 2
    assert m['peak_h3_streams_total{backend="b1",status="415"}'] == 1
    assert m['peak_h3_streams_total{backend="b1",status="400"}'] == 1
    assert m['peak_h3_body_bytes_total{backend="b1"}'] == 2 * 123_456
    assert m['peak_h3_connections_total{backend="b1"}'] == 1
    assert m['peak_h3_handshake_seconds_count{backend="b1"}'] == 1
    assert m['peak_h3_handshake_seconds_bucket{backend="b1",le="+Inf"}'] == 1
    assert 0 < m['peak_h3_handshake_seconds_sum{backend="b1"}'] < 5
    assert b.stop() == 0


def read_qlog(path):
    """JSON-SEQ records (RFC 7464: each starts with RS), every one valid JSON."""
    return [json.loads(r) for r in path.read_text().split("\x1e") if r.strip()]


def test_qlog_per_connection(tmp_path, certs, backend_factory):
    sdir, cdir = tmp_path / "qs", tmp_path / "qc"
    sdir.mkdir()
    cdir.mkdir()
    b = backend_factory(extra=("--qlog", str(sdir)))
    write(tmp_path / "a", 50_000, "a")
    rc, streams, out, err = upload(b.url, [f"{tmp_path / 'a'}:audio/ogg",
                                           f"{tmp_path / 'a'}:video/webm"], certs,
                                   extra=("--qlog", str(cdir)))
    assert rc == 1, out + err
    assert b.stop() == 0  # closes the connection and its qlog
    (sf,), (cf,) = list(sdir.iterdir()), list(cdir.iterdir())
    # one file per connection, both named after the client's original destination ID
    assert sf.name.endswith("-server.sqlog") and cf.name.endswith("-client.sqlog")
    assert sf.name.split("-")[0] == cf.name.split("-")[0]
    for f, body in ((sf, 50_000), (cf, None)):
        recs = read_qlog(f)
        assert recs[0]["qlog_format"] == "JSON-SEQ"
        names = {r.get("name") for r in recs[1:]}
        assert {"transport:packet_sent", "transport:packet_received"} <= names
        heads = {r["data"]["stream_id"]: r["data"] for r in recs
                 if r.get("name") == "http:request_headers"}
        answers = {r["data"]["stream_id"]: r["data"] for r in recs
                   if r.get("name") == "http:response"}
        assert sorted(h["content_type"] for h in heads.values()) == ["audio/ogg", "video/webm"]
        by_type = {h["content_type"]: answers[sid]["status"] for sid, h in heads.items()}
        assert by_type == {"audio/ogg": 201, "video/webm": 415}
        if body:
            assert any(a["body_bytes"] == body for a in answers.values())


def test_retry_before_accepting(tmp_path, certs, backend_factory):
    """--retry: a new client first gets a Retry with an address token (no state kept), comes
    back with it, and the upload runs on the connection made then."""
    b = backend_factory(extra=("--retry",))
    write(tmp_path / "a", 300_000, "a")
    rc, streams, out, err = upload(b.url, [f"{tmp_path / 'a'}:audio/ogg"] * 2, certs)
    assert rc == 0, out + err
    assert b.stop() == 0
    assert re.search(r"1 connections, .* 1 retries, 0 bad tokens", b.logtext()), b.logtext()


def test_restarted_backend_resets_old_connections(tmp_path, certs, backend_factory):
    """Stateless reset with a static secret: the backend dies in the middle of an upload and
    comes back on the same port with the same --secret-file; the client's next packets get a
    stateless reset and it gives up at once instead of at the 30 s idle timeout."""
    secret = tmp_path / "secret"
    secret.write_text("00112233445566778899aabbccddeeff\n")
    a = backend_factory(ident="a", extra=("--verbose", "--secret-file", str(secret)))
    big = tmp_path / "big.mp4"
    with open(big, "wb") as f:
        f.truncate(1 << 30)
    client = subprocess.Popen([PEAK, "h3", "upload", a.url, "--ca", str(certs / "ca.pem"),
                               "--file", f"{big}:video/mp4"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: "POST video/mp4: receiving" in a.logtext(), 60, "the upload to start")
        a.proc.kill()
        a.proc.wait()
        t0 = time.monotonic()
        b = backend_factory(ident="b", extra=("--listen", f"[::1]:{a.port}", "--secret-file",
                                              str(secret)))
        assert b.port == a.port
        # a client not reset gives up at its 30 s idle timeout, with another error
        out, err = client.communicate(timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 1, (out, err)
    # the mechanism, not the seconds (printed: a loaded machine stretches the client's
    # probe timeouts while the backend restarts)
    print(f"client gave up {elapsed:.1f} s after the backend died")
    assert "stateless reset received" in err, err
    assert b.stop() == 0
    assert not re.search(r" 0 stateless resets", b.logtext()), b.logtext()


def test_stateless_reset_answers_small_probes(backend_factory):
    """A client blocked on flow control when its server died sends only small PING probes
    (about 40 bytes); they too must get a stateless reset, one byte shorter (RFC 9000
    §10.3.3). Too short to allow one (22 bytes): nothing."""
    b = backend_factory()
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.settimeout(5)
    try:
        s.connect(("::1", b.port))
        s.send(bytes([0x41]) + os.urandom(18) + os.urandom(21))  # 40 bytes, unknown DCID
        reply = s.recv(2048)
        assert len(reply) == 39 and reply[0] & 0xc0 == 0x40, reply
        # a Handshake packet (v1 long header, type 2) for an ID we may have issued: a
        # client whose server died before confirming the handshake sends only those
        hs = bytes([0xe0]) + b"\x00\x00\x00\x01" + bytes([18]) + os.urandom(18) + \
            bytes([8]) + os.urandom(8) + os.urandom(60)
        s.send(hs)
        reply = s.recv(2048)
        assert len(reply) < len(hs) and reply[0] & 0xc0 == 0x40, reply
        s.send(bytes([0x41]) + os.urandom(21))  # 22 bytes
        s.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s.recv(2048)
    finally:
        s.close()
    assert b.stop() == 0
    assert " 2 stateless resets" in b.logtext(), b.logtext()


def test_version_negotiation(backend_factory):
    """An Initial-sized datagram of an unknown version gets a Version Negotiation packet
    listing QUIC v1, with the client's IDs swapped (RFC 9000 §6, §17.2.1); a short one gets
    nothing (no amplification)."""
    b = backend_factory()
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.settimeout(5)
    dcid, scid = os.urandom(8), os.urandom(5)
    hdr = b"\xc0" + b"\x1a\x2a\x3a\x4a" + bytes([8]) + dcid + bytes([5]) + scid
    try:
        s.connect(("::1", b.port))
        s.send(hdr + b"\x00" * (1200 - len(hdr)))
        vn = s.recv(2048)
        assert vn[0] & 0x80 and vn[1:5] == b"\x00\x00\x00\x00", vn
        assert vn[5] == 5 and vn[6:11] == scid and vn[11] == 8 and vn[12:20] == dcid, vn
        versions = [vn[i:i + 4] for i in range(20, len(vn), 4)]
        assert b"\x00\x00\x00\x01" in versions, vn
        s.send(hdr + b"\x00" * 100)
        s.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s.recv(2048)
    finally:
        s.close()
    assert b.stop() == 0


def test_session_resumption_across_restarts(tmp_path, certs, backend_factory):
    """TLS 1.3 session tickets: the second connection resumes the first one's session; with
    the ticket key derived from --secret-file it still resumes after the backend restarts,
    and a backend with another secret falls back to a full handshake."""
    secret, other = tmp_path / "secret", tmp_path / "other"
    secret.write_text("00112233445566778899aabbccddeeff\n")
    other.write_text("ffeeddccbbaa99887766554433221100\n")
    sess = tmp_path / "session"
    write(tmp_path / "a", 10_000, "a")
    files = [f"{tmp_path / 'a'}:audio/ogg"]

    def run(b):
        rc, streams, out, err = upload(b.url, files, certs, extra=("--session-file", str(sess)))
        assert rc == 0, out + err
        return "(resumed)" in out.splitlines()[-1]
    a = backend_factory(ident="a", extra=("--secret-file", str(secret)))
    assert not run(a)
    assert sess.stat().st_mode & 0o777 == 0o600
    assert run(a)
    assert a.stop() == 0
    b = backend_factory(ident="b", extra=("--listen", f"[::1]:{a.port}", "--secret-file",
                                          str(secret)))
    assert run(b)
    assert b.stop() == 0
    c = backend_factory(ident="c", extra=("--listen", f"[::1]:{a.port}", "--secret-file",
                                          str(other)))
    assert not run(c)
    assert run(c)  # and the new ticket is kept
    assert c.stop() == 0


def test_zero_rtt_accepted_and_rejected(tmp_path, certs, backend_factory):
    """0-RTT: with a stored session and --early-data the requests go out before the
    handshake ends; the backend accepts them (checksums right); a backend with another secret
    cannot read the ticket, refuses the early data, and the client sends everything again
    after the handshake."""
    secret, other = tmp_path / "secret", tmp_path / "other"
    secret.write_text("00112233445566778899aabbccddeeff\n")
    other.write_text("ffeeddccbbaa99887766554433221100\n")
    sess = tmp_path / "session"
    write(tmp_path / "a", 100_000, "a")
    write(tmp_path / "b", 3, "b")
    files = [f"{tmp_path / 'a'}:audio/ogg", f"{tmp_path / 'b'}:audio/ogg",
             f"{tmp_path / 'b'}:text/plain"]

    def run(b):
        rc, streams, out, err = upload(b.url, files, certs,
                                       extra=("--session-file", str(sess), "--early-data"))
        assert rc == 1, out + err  # the text/plain one is refused: 415
        assert [s["status"] for s in streams] == ["201", "201", "415"], out
        assert all(s["checksum"] == "ok" for s in streams[:2]), out
        return out.splitlines()[-1]
    a = backend_factory(ident="a", extra=("--secret-file", str(secret)))
    assert "0-RTT" not in run(a)  # no session stored yet
    assert (tmp_path / "session.tp").exists()
    assert "(0-RTT accepted)" in run(a)
    assert a.stop() == 0
    b = backend_factory(ident="b", extra=("--listen", f"[::1]:{a.port}", "--secret-file",
                                          str(other)))
    assert "(0-RTT rejected)" in run(b)
    assert b.stop() == 0


def test_client_killed_mid_upload_does_not_hurt_the_backend(tmp_path, certs, backend_factory):
    b = backend_factory(extra=("--verbose",))
    big = tmp_path / "big.mp4"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GiB of zeros, never finishes before the kill
    client = subprocess.Popen([PEAK, "h3", "upload", b.url, "--ca", str(certs / "ca.pem"),
                               "--file", f"{big}:video/mp4"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: "POST video/mp4: receiving" in b.logtext(), 30,
                 "the upload to start")
    finally:
        client.kill()
        client.wait()
    write(tmp_path / "a", 50_000, "a")
    rc, streams, out, err = upload(b.url, [f"{tmp_path / 'a'}:audio/ogg"] * 3, certs)
    assert rc == 0, out + err
    assert b.proc.poll() is None
    # SIGTERM while the dead client's connection and its open stream still exist: a clean
    # exit that frees them (the ASan build checks for leaks here)
    assert b.stop() == 0, b.logtext()


def test_garbage_datagrams_do_not_crash_the_backend(tmp_path, certs, backend_factory):
    b = backend_factory(extra=("--max-conns", "64"))
    rnd = __import__("random").Random(16)
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        for i in range(3000):
            kind = i % 4
            if kind == 0:    # random bytes of random length
                pkt = rnd.randbytes(rnd.randrange(0, 1500))
            elif kind == 1:  # long header, QUIC v1 Initial, random CIDs and body
                dcid = rnd.randbytes(rnd.choice([0, 8, 20, 21, 255]))
                pkt = (bytes([0xc0 | rnd.randrange(4)]) + b"\x00\x00\x00\x01" +
                       bytes([len(dcid) & 0xff]) + dcid + bytes([8]) + rnd.randbytes(8) +
                       rnd.randbytes(rnd.randrange(0, 1300)))
                pkt += b"\x00" * max(0, 1200 - len(pkt))
            elif kind == 2:  # short header with random 18-byte DCID
                pkt = bytes([0x40 | rnd.randrange(64)]) + rnd.randbytes(rnd.randrange(1, 200))
            else:            # an unknown version (version negotiation territory)
                pkt = b"\xc0" + rnd.randbytes(4) + b"\x08" + rnd.randbytes(8) + b"\x08" + \
                      rnd.randbytes(rnd.randrange(8, 1300))
            s.sendto(pkt, ("::1", b.port))
    finally:
        s.close()
    write(tmp_path / "a", 20_000, "a")
    rc, streams, out, err = upload(b.url, [f"{tmp_path / 'a'}:audio/ogg"], certs)
    assert rc == 0, out + err
    assert b.proc.poll() is None
    assert b.stop() == 0, b.logtext()


@pytest.mark.parametrize("argv", [
    ["h3", "backend", "--listen", "[::1]:0", "--cert", "c", "--key", "k"],
    ["h3", "backend", "--listen", "nowhere", "--cert", "c", "--key", "k", "--type", "a/b"],
    ["h3", "backend", "--listen", "[::1]:0", "--cert", "c", "--key", "k", "--type", "audio"],
    ["h3", "upload", "https://[::1]:1/"],
    ["h3", "upload", "http://[::1]:1/", "--file", "x:audio/ogg"],
    ["h3", "upload", "https://[::1]:1/", "--file", "x:audio/*"],
    ["h3", "nothing"],
])
def test_usage_errors_exit_2(argv):
    p = subprocess.run([PEAK, *argv], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, p


def test_help():
    for sub in ("backend", "upload", "get"):
        p = subprocess.run([PEAK, "h3", sub, "--help"], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 0 and p.stdout.startswith("usage: peak h3 " + sub)
