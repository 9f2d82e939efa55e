"""peak h3 upload and get as a measured client (issue 16): --metrics FILE (the client's
Prometheus text, written at exit), its sockets' batched receive (UDP GRO), and NEW_TOKEN
tokens kept beside the session file so that a server doing Retry skips it the next time.

    peak h3 upload|get --metrics FILE --(QUIC)--> peak h3 backend on [::1]:port
"""
import hashlib
import os
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from conftest import PEAK, free_tcp_port, upload  # noqa: E402


def write(path, n, seed):
    data = hashlib.sha256(seed.encode()).digest() * (n // 32) + b"x" * (n % 32)
    path.write_bytes(data)


def parse_prom(path):
    """The samples of a Prometheus text file, {'name{labels}': value}; every line is a
    comment (# HELP or # TYPE) or a sample."""
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            assert line.startswith(("# HELP ", "# TYPE ")), line
            continue
        key, v = line.rsplit(" ", 1)
        assert key not in out, "duplicate series " + key
        out[key] = float(v)
    return out


def test_upload_metrics_file(tmp_path, certs, backend_factory):
    """Streams by type and status, body bytes, handshake histogram (not resumed, then
    resumed), connections, UDP receive counters; the file is replaced whole."""
    b = backend_factory()
    write(tmp_path / "a", 123_456, "a")
    write(tmp_path / "v", 1_000, "v")
    prom, sess = tmp_path / "client.prom", tmp_path / "session"
    files = [f"{tmp_path / 'a'}:audio/ogg", f"{tmp_path / 'a'}:audio/ogg",
             f"{tmp_path / 'v'}:text/plain", str(tmp_path / "v")]
    rc, streams, out, err = upload(b.url, files, certs,
                                   extra=("--metrics", str(prom), "--session-file", str(sess)))
    assert rc == 1 and [s["status"] for s in streams] == ["201", "201", "415", "400"], out
    m = parse_prom(prom)
    assert not (tmp_path / "client.prom.tmp").exists()
    assert m['peak_h3_client_connections_total{proto="h3"}'] == 1
    assert m['peak_h3_client_streams_total{type="audio/ogg",status="201"}'] == 2
    assert m['peak_h3_client_streams_total{type="text/plain",status="415"}'] == 1
    assert m['peak_h3_client_streams_total{type="",status="400"}'] == 1
    assert m["peak_h3_client_body_bytes_sent_total"] == 2 * 123_456 + 2 * 1_000
    assert m["peak_h3_client_body_bytes_received_total"] > 0
    assert m["peak_h3_client_checksum_mismatches_total"] == 0
    assert m['peak_h3_client_handshake_seconds_count{resumed="false"}'] == 1
    assert m['peak_h3_client_handshake_seconds_bucket{resumed="false",le="+Inf"}'] == 1
    assert m['peak_h3_client_handshake_seconds_count{resumed="true"}'] == 0
    assert 0 < m['peak_h3_client_handshake_seconds_sum{resumed="false"}'] < 30
    assert m["peak_h3_client_udp_receive_calls_total"] > 0
    assert m["peak_h3_client_udp_datagrams_received_total"] >= \
        m["peak_h3_client_udp_receive_calls_total"]
    assert m["peak_h3_client_retries_total"] == 0
    # the second run resumes its session; the file is replaced, not appended to
    rc, streams, out, err = upload(b.url, files[:1], certs,
                                   extra=("--metrics", str(prom), "--session-file", str(sess)))
    assert rc == 0, out + err
    m = parse_prom(prom)
    assert m['peak_h3_client_handshake_seconds_count{resumed="true"}'] == 1
    assert m['peak_h3_client_handshake_seconds_count{resumed="false"}'] == 0
    assert m['peak_h3_client_streams_total{type="audio/ogg",status="201"}'] == 1
    assert b.stop() == 0


def test_get_and_h2_metrics_and_usage(tmp_path, certs, backend_factory):
    b = backend_factory(extra=("--proto", "h2"))
    write(tmp_path / "a", 10_000, "a")
    prom = tmp_path / "h2.prom"
    rc, streams, out, err = upload(b.url, [f"{tmp_path / 'a'}:audio/ogg"], certs,
                                   extra=("--proto", "h2", "--metrics", str(prom)))
    assert rc == 0, out + err
    m = parse_prom(prom)
    assert m['peak_h3_client_connections_total{proto="h2"}'] == 1
    assert m['peak_h3_client_streams_total{type="audio/ogg",status="201"}'] == 1
    assert m['peak_h3_client_handshake_seconds_count{resumed="false"}'] == 1
    assert b.stop() == 0


def test_metrics_of_several_connections_in_one_file(tmp_path, certs, backend_factory):
    """--connections N (and --peak, which runs the same way: a process per connection):
    each connection's samples, labelled connection="K", in the one file, every family
    once and whole (the textfile collector refuses a family split or repeated)."""
    b = backend_factory()
    write(tmp_path / "a", 200_000, "a")
    write(tmp_path / "v", 100_000, "v")
    prom = tmp_path / "multi.prom"
    rc, streams, out, err = upload(
        b.url, [f"{tmp_path / 'a'}:audio/ogg", f"{tmp_path / 'v'}:audio/ogg",
                f"{tmp_path / 'v'}:audio/ogg"], certs,
        extra=("--connections", "2", "--metrics", str(prom)))
    assert rc == 0, out + err
    m = parse_prom(prom)  # (no series twice)
    assert m['peak_h3_client_connections_total{connection="0",proto="h3"}'] == 1
    assert m['peak_h3_client_connections_total{connection="1",proto="h3"}'] == 1
    assert sum(v for k, v in m.items() if k.startswith("peak_h3_client_streams_total{")) == 3
    assert m['peak_h3_client_body_bytes_sent_total{connection="0"}'] + \
        m['peak_h3_client_body_bytes_sent_total{connection="1"}'] == 400_000
    assert m['peak_h3_client_handshake_seconds_count{connection="1",resumed="false"}'] == 1
    family, seen = None, ""
    for line in prom.read_text().splitlines():
        if line.startswith("# TYPE "):
            name = line.split()[2]
            assert name != family and f"# TYPE {name} " not in seen, name
            seen += line + "\n"
            family = name
        elif not line.startswith("#"):
            base = line.split("{")[0]
            assert base == family or base.rsplit("_", 1)[0] == family, (line, family)
    assert sorted(x.name for x in tmp_path.iterdir() if x.name.startswith("multi")) == \
        ["multi.prom"]  # the connections' own files are gone
    assert b.stop() == 0


def test_client_receives_gro_batches(tmp_path, certs, backend_factory):
    """A bulk answer (a 1 MiB page) arrives in fewer receive calls than datagrams: the
    client's socket has UDP GRO and the reader splits the segments (the checksum-free GET
    still gets every byte); with PEAK_H3_NO_GRO=1 and PEAK_H3_NO_MMSG=1 (no recvmmsg batch)
    it is one datagram per call."""
    page = tmp_path / "page.html"
    page.write_bytes(os.urandom(1 << 20))
    b = backend_factory(extra=("--page", str(page)))

    def get(prom, env):
        p = subprocess.run([PEAK, "h3", "get", f"https://[::1]:{b.port}/", "--ca",
                            str(certs / "ca.pem"), "--metrics", str(prom)],
                           capture_output=True, text=True, errors="replace", timeout=60,
                           env={**{k: v for k, v in os.environ.items()
                                   if k not in ("PEAK_H3_NO_GRO", "PEAK_H3_NO_MMSG")},
                                **env})
        assert p.returncode == 0, p.stdout + p.stderr
        m = parse_prom(prom)
        assert m["peak_h3_client_body_bytes_received_total"] == 1 << 20
        return m["peak_h3_client_udp_datagrams_received_total"], \
            m["peak_h3_client_udp_receive_calls_total"]
    dgrams, calls = get(tmp_path / "gro.prom", {})
    assert dgrams >= 700 and dgrams > 2 * calls, (dgrams, calls)
    dgrams, calls = get(tmp_path / "nogro.prom", {"PEAK_H3_NO_GRO": "1", "PEAK_H3_NO_MMSG": "1"})
    assert dgrams >= 700 and dgrams == calls, (dgrams, calls)
    assert b.stop() == 0


def test_new_token_skips_the_retry(tmp_path, certs, backend_factory):
    """With --retry on the backend, the first connection is retried and gets a NEW_TOKEN
    token, kept in SESSION.token; the next connection presents it in its Initial and is not
    retried. A token that does not verify (altered) only costs the Retry again."""
    port = free_tcp_port()
    b = backend_factory(extra=("--retry", "--metrics", f"127.0.0.1:{port}"))
    write(tmp_path / "a", 200_000, "a")
    sess, prom = tmp_path / "session", tmp_path / "c.prom"
    tok = tmp_path / "session.token"

    def run():
        rc, streams, out, err = upload(b.url, [f"{tmp_path / 'a'}:audio/ogg"] * 2, certs,
                                       extra=("--session-file", str(sess), "--metrics",
                                              str(prom)))
        assert rc == 0 and all(s["checksum"] == "ok" for s in streams), out + err
        m = parse_prom(prom)
        return m["peak_h3_client_retries_total"], m["peak_h3_client_new_tokens_used_total"]

    def server():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return {ln.rsplit(" ", 1)[0].split("{")[0]: float(ln.rsplit(" ", 1)[1])
                for ln in text.splitlines() if ln.startswith("peak_h3_")}
    assert run() == (1, 0)
    assert tok.exists() and tok.stat().st_mode & 0o777 == 0o600
    first = tok.read_bytes()
    assert first[0] == 0x36  # ngtcp2's regular (NEW_TOKEN) token
    assert run() == (0, 1)
    # used once: the connection it let in brought the next one
    assert tok.exists() and tok.read_bytes() != first
    s = server()
    assert s["peak_h3_retries_total"] == 1 and s["peak_h3_new_tokens_accepted_total"] == 1
    assert s["peak_h3_new_tokens_sent_total"] == 2
    t = bytearray(tok.read_bytes())
    t[-1] ^= 1
    tok.write_bytes(bytes(t))
    assert run() == (1, 1)
    s = server()
    assert s["peak_h3_retries_total"] == 2 and s["peak_h3_new_tokens_rejected_total"] == 1
    assert b.stop() == 0


def test_ingress_new_token_skips_the_retry(tmp_path, certs, backend_factory,
                                           ingress_factory):
    """The ingress gives NEW_TOKEN tokens too (the same endpoint code): with --retry, the
    client's second connection through it is not retried."""
    audio = backend_factory(ident="audio", types="audio/*")
    ing = ingress_factory([f"audio/*=h3://[::1]:{audio.port}"], extra=("--retry",))
    write(tmp_path / "a", 50_000, "a")
    sess, prom = tmp_path / "session", tmp_path / "c.prom"
    seen = []
    for _ in range(2):
        rc, streams, out, err = upload(ing.url, [f"{tmp_path / 'a'}:audio/ogg"], certs,
                                       extra=("--session-file", str(sess), "--metrics",
                                              str(prom)))
        assert rc == 0 and streams[0]["backend"] == "audio", out + err
        m = parse_prom(prom)
        seen.append((m["peak_h3_client_retries_total"],
                     m["peak_h3_client_new_tokens_used_total"]))
    assert seen == [(1, 0), (0, 1)]
