"""peak h3 ingress on loopback: request streams of one client connection routed by
content-type to two backends, the refusals answered by the ingress (400) while the other
streams go on, a backend killed mid-upload (502 on its stream only) and the bounded memory
of a big upload (both over HTTP/3 and HTTP/2 upstreams), round robin, health checks taking
a backend out and back in, refused --route values, and an independent client (quic-go)
through the ingress.

    peak h3 upload / quic-go --(one QUIC connection)--> peak h3 ingress --(one QUIC connection
                                                          [::1]:port       per upstream)-->
                                                                     peak h3 backend audio
                                                                     peak h3 backend video
"""
import json
import os
import re
import subprocess
import sys
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import PEAK, free_tcp_port, upload, wait_for  # noqa: E402
from test_h3 import write  # noqa: E402
from test_interop_quicgo import quicgo_client  # noqa: E402,F401 (a fixture)


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def test_routes_by_type_on_one_connection(tmp_path, certs, backend_factory, ingress_factory):
    audio = backend_factory(types="audio/*", ident="audio")
    video = backend_factory(types="video/*", ident="video")
    mport = free_tcp_port()
    ing = ingress_factory([f"audio/*=h3://[::1]:{audio.port}",
                           f"video/mp4=h3://[::1]:{video.port}"],
                          extra=("--metrics", f"127.0.0.1:{mport}"))
    files = {"a1.ogg": ("audio/ogg", 70_000), "a2.mp3": ("Audio/MPEG; rate=44100", 1),
             "a3.wav": ("audio/wav", 0), "v1.mp4": ("video/mp4", 3_000_000),
             "v2.mp4": ("VIDEO/mp4; codecs=\"avc1\"", 300_000),
             # answered by the ingress: no rule for the type, no content-type at all
             "t.txt": ("text/plain", 200_000), "blob": (None, 500_000)}
    sums = {n: write(tmp_path / n, size, n) for n, (_, size) in files.items()}
    rc, streams, out, err = upload(
        ing.url, [f"{tmp_path / n}:{t}" if t else str(tmp_path / n)
                  for n, (t, _) in files.items()], certs)
    assert rc == 1, out + err  # the two 400s
    by = {s["file"]: s for s in streams}
    assert len({s["stream"] for s in streams}) == len(files)  # one connection, a stream each
    for name, (t, size) in files.items():
        s = by[name]
        if name in ("t.txt", "blob"):
            assert s["status"] == "400" and s["backend"] == "-", s
            continue
        assert s["status"] == "201" and s["checksum"] == "ok", s
        assert s["sha256"] == sums[name] and int(s["bytes"]) == size
        # the JSON "backend" field: the file reached the backend of its type
        assert s["backend"] == ("audio" if t.lower().startswith("audio") else "video"), s
    m = scrape(mport)
    assert m['peak_h3_ingress_streams_total{ingress="ingress",route="audio/*",status="201"}'] == 3
    assert m['peak_h3_ingress_streams_total{ingress="ingress",route="video/mp4",status="201"}'] == 2
    assert m['peak_h3_ingress_streams_total{ingress="ingress",route="none",status="400"}'] == 2
    assert m['peak_h3_ingress_bytes_total{ingress="ingress",route="video/mp4",'
             'direction="request"}'] == 3_300_000
    assert m[f'peak_h3_upstream_up{{ingress="ingress",upstream="[::1]:{audio.port}"}}'] == 1
    assert m['peak_h3_upstream_requests_total{ingress="ingress",'
             f'upstream="[::1]:{video.port}"}}'] == 2
    assert m['peak_h3_connections_total{ingress="ingress"}'] == 1
    assert ing.stop() == 0
    # the backends each saw one connection: the ingress's, every stream multiplexed on it
    assert audio.stop() == 0 and video.stop() == 0
    assert "1 connections" in audio.logtext() and "1 connections" in video.logtext()


def test_round_robin_across_one_routes_backends(tmp_path, certs, backend_factory,
                                                ingress_factory):
    b1 = backend_factory(types="audio/*", ident="b1")
    b2 = backend_factory(types="audio/*", ident="b2")
    ing = ingress_factory([f"audio/*=h3://[::1]:{b1.port}|h3://[::1]:{b2.port}"])
    names = [f"a{i}.ogg" for i in range(6)]
    for i, n in enumerate(names):
        write(tmp_path / n, 10_000 + i, n)
    rc, streams, out, err = upload(ing.url, [f"{tmp_path / n}:audio/ogg" for n in names], certs)
    assert rc == 0, out + err
    got = [s["backend"] for s in streams]
    assert got.count("b1") == 3 and got.count("b2") == 3, out
    assert ing.stop() == 0


def test_streams_wait_for_the_upstreams_stream_limit(tmp_path, certs, backend_factory,
                                                    ingress_factory):
    """A backend that allows 2 streams at a time: the ingress holds the others until the
    backend gives more credit (RFC 9000 §4.6); all 7 arrive."""
    b = backend_factory(types="audio/*", ident="b1", extra=("--max-streams", "2"))
    ing = ingress_factory([f"audio/*=h3://[::1]:{b.port}"])
    names = [f"f{i}" for i in range(7)]
    sums = {n: write(tmp_path / n, 40_000 + i * 1000, n) for i, n in enumerate(names)}
    rc, streams, out, err = upload(ing.url, [f"{tmp_path / n}:audio/ogg" for n in names], certs)
    assert rc == 0, out + err
    assert all(s["sha256"] == sums[s["file"]] and s["checksum"] == "ok" for s in streams)
    assert ing.stop() == 0


def proto_backend(backend_factory, proto, extra=(), **kw):
    """A backend the ingress reaches over proto: h3, or h2 (the backend run --proto h2)."""
    return backend_factory(extra=(*(("--proto", "h2") if proto == "h2" else ()), *extra), **kw)


# the video body: large enough to be still streaming when its backend is killed
@pytest.mark.parametrize("proto, video_size", [("h3", 40_000_000), ("h2", 20_000_000)],
                         ids=["h3", "h2"])
def test_backend_killed_mid_upload_fails_only_its_stream(proto, video_size, tmp_path, certs,
                                                         backend_factory, ingress_factory):
    """Over either upstream protocol (h2: HTTP/2 over TLS/TCP to backends run --proto h2)."""
    audio = proto_backend(backend_factory, proto, types="audio/*", ident="audio")
    video = proto_backend(backend_factory, proto, types="video/*", ident="video",
                          extra=("--verbose",))
    ing = ingress_factory([f"audio/*={proto}://[::1]:{audio.port}",
                           f"video/*={proto}://[::1]:{video.port}"])
    write(tmp_path / "v.mp4", video_size, "v")
    for i in range(3):
        write(tmp_path / f"a{i}.ogg", 200_000, f"a{i}")
    argv = [PEAK, "h3", "upload", ing.url, "--ca", str(certs / "ca.pem"), "--file",
            f"{tmp_path / 'v.mp4'}:video/mp4"]
    for i in range(3):
        argv += ["--file", f"{tmp_path / f'a{i}.ogg'}:audio/ogg"]
    up = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the video body is streaming into its backend: kill that backend (by its PID)
        wait_for(lambda: "receiving" in video.logtext(), 30, "the video upload to start")
        video.proc.kill()
        out, err = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    streams = {d["file"]: d for d in (dict(kv.split("=", 1) for kv in line.split())
                                      for line in out.splitlines()
                                      if line.startswith("stream="))}
    assert up.returncode == 1, out + err
    v = streams["v.mp4"]
    assert v["status"] == "502" or v["status"].startswith("reset:"), v
    for i in range(3):
        s = streams[f"a{i}.ogg"]
        assert s["status"] == "201" and s["checksum"] == "ok" and s["backend"] == "audio", s
    wait_for(lambda: f"upstream [::1]:{video.port} down" in ing.logtext(), 10,
             "the ingress to take the video backend out")
    # the ingress carries on: a new upload of both types on a new connection
    rc, again, out, err = upload(ing.url, [f"{tmp_path / 'a0.ogg'}:audio/ogg",
                                           f"{tmp_path / 'a1.ogg'}:video/mp4"], certs)
    by = {s["type"]: s for s in again}
    assert by["audio/ogg"]["status"] == "201", out + err
    assert by["video/mp4"]["status"] == "503", out + err  # no healthy upstream left
    assert ing.stop() == 0


def test_client_that_gives_up_cancels_its_upstream_stream(tmp_path, certs, backend_factory,
                                                          ingress_factory):
    """The client closes its connection in the middle of a 40 MB upload (--timeout): the
    ingress cancels the upstream stream, so the backend frees it (counted 'reset'), and this
    is not counted as the upstream's failure."""
    bport, iport = free_tcp_port(), free_tcp_port()
    b = backend_factory(types="video/*", ident="video", extra=("--metrics", f"127.0.0.1:{bport}"))
    ing = ingress_factory([f"video/*=h3://[::1]:{b.port}"],
                          extra=("--metrics", f"127.0.0.1:{iport}"))
    # 400 MB, sparse: far more than a client sends in 400 ms (a quiet CI machine finished
    # 40 MB in 354 ms once the servers read with UDP GRO)
    with open(tmp_path / "v.mp4", "wb") as f:
        f.truncate(400_000_000)
    rc, streams, out, err = upload(ing.url, [f"{tmp_path / 'v.mp4'}:video/mp4"], certs,
                                   extra=("--timeout", "400"))
    assert rc == 1 and streams[0]["status"] in ("unfinished", "unsent"), out + err
    wait_for(lambda: scrape(bport)['peak_h3_streams_total{backend="video",status="reset"}'] == 1,
             15, "the backend to see its stream cancelled")
    m = scrape(iport)
    assert m['peak_h3_upstream_errors_total{ingress="ingress",'
             f'upstream="[::1]:{b.port}"}}'] == 0
    assert m['peak_h3_ingress_streams_total{ingress="ingress",route="video/*",'
             'status="reset"}'] == 1
    write(tmp_path / "small.mp4", 10_000, "s")
    rc, streams, out, err = upload(ing.url, [f"{tmp_path / 'small.mp4'}:video/mp4"], certs)
    assert rc == 0, out + err
    assert ing.stop() == 0


def test_health_checks_take_a_backend_out_and_back(tmp_path, certs, backend_factory,
                                                   ingress_factory):
    b1 = backend_factory(types="audio/*", ident="b1")
    b2 = backend_factory(types="audio/*", ident="b2")
    port2, mport = b2.port, free_tcp_port()
    ing = ingress_factory([f"audio/*=h3://[::1]:{b1.port}|h3://[::1]:{port2}"],
                          extra=("--health-interval", "200", "--metrics", f"127.0.0.1:{mport}"))
    gauge = f'peak_h3_upstream_up{{ingress="ingress",upstream="[::1]:{port2}"}}'
    names = [f"a{i}.ogg" for i in range(4)]
    for n in names:
        write(tmp_path / n, 5_000, n)
    files = [f"{tmp_path / n}:audio/ogg" for n in names]
    assert b2.stop() == 0
    wait_for(lambda: scrape(mport)[gauge] == 0, 10, "b2 taken out")
    assert f"upstream [::1]:{port2} down" in ing.logtext()
    rc, streams, out, err = upload(ing.url, files, certs)
    assert rc == 0 and {s["backend"] for s in streams} == {"b1"}, out + err
    # a backend comes back on the same address: the health check puts it back in
    backend_factory(types="audio/*", ident="b3", extra=("--listen", f"[::1]:{port2}"))
    wait_for(lambda: scrape(mport)[gauge] == 1, 10, "b3 taken in")
    rc, streams, out, err = upload(ing.url, files, certs)
    assert rc == 0 and "b3" in {s["backend"] for s in streams}, out + err
    assert scrape(mport)['peak_h3_upstream_health_checks_failed_total{ingress="ingress",'
                         f'upstream="[::1]:{port2}"}}'] >= 1
    assert ing.stop() == 0


def test_qlog_has_the_routing_decisions(tmp_path, certs, backend_factory, ingress_factory):
    qdir = tmp_path / "q"
    qdir.mkdir()
    b = backend_factory(types="audio/*", ident="b1")
    ing = ingress_factory([f"audio/*=h3://[::1]:{b.port}"], extra=("--qlog", str(qdir)))
    write(tmp_path / "a", 1000, "a")
    rc, streams, out, err = upload(ing.url, [f"{tmp_path / 'a'}:Audio/OGG",
                                             f"{tmp_path / 'a'}:video/mp4"], certs)
    assert rc == 1, out + err
    assert ing.stop() == 0
    (server,) = [f for f in qdir.iterdir() if f.name.endswith("-server.sqlog")]
    assert [f for f in qdir.iterdir() if f.name.endswith("-client.sqlog")]  # the upstream's
    recs = [json.loads(r) for r in server.read_text().split("\x1e") if r.strip()]
    routing = {r["data"]["content_type"]: r["data"] for r in recs
               if r.get("name") == "http:routing"}
    assert routing["Audio/OGG"]["route"] == "audio/*"
    assert routing["Audio/OGG"]["upstream"] == f"[::1]:{b.port}"
    assert routing["video/mp4"]["route"] is None and routing["video/mp4"]["upstream"] == "-"
    answers = sorted(r["data"]["status"] for r in recs if r.get("name") == "http:response")
    assert answers == [201, 400]


def test_clients_are_told_a_short_max_ack_delay(tmp_path, certs, backend_factory,
                                                ingress_factory):
    """The ingress announces max_ack_delay 5 ms (ngtcp2's default is 25): a client adds it
    to the probe timeout that repairs a loss among a body's last packets (issue 16's small
    streams under loss). Read from the client's own qlog: what it was told."""
    qdir = tmp_path / "q"
    qdir.mkdir()
    b = backend_factory(types="audio/*", ident="b1")
    ing = ingress_factory([f"audio/*=h3://[::1]:{b.port}"])
    write(tmp_path / "a", 1000, "a")
    rc, streams, out, err = upload(ing.url, [f"{tmp_path / 'a'}:audio/ogg"], certs,
                                   extra=("--qlog", str(qdir)))
    assert rc == 0, out + err
    (client,) = list(qdir.glob("*.sqlog"))
    recs = [json.loads(r) for r in client.read_text().split("\x1e") if r.strip()]
    told = [r["data"] for r in recs if r.get("name") == "transport:parameters_set" and
            r["data"].get("owner") == "remote"]
    assert told and told[0]["max_ack_delay"] == 5, told


def test_bad_routes_are_refused(tmp_path, certs):
    base = [PEAK, "h3", "ingress", "--listen", "[::1]:0", "--cert", str(certs / "srv.pem"),
            "--key", str(certs / "srv.key")]
    cases = {
        "audio/*": "rule 1 'audio/*': want TYPE=",
        "audio=h3://[::1]:1": "rule 1 'audio=h3://[::1]:1': the type is not",
        "audio/*=h3://[::1]:1,video/mp4=http://[::1]:2":
            "rule 2 'video/mp4=http://[::1]:2': upstream 'http://[::1]:2' is not",
        "audio/*=h3://::1:4433": "upstream 'h3://::1:4433' is not",
        "audio/*=h3://[::1]:1|": "upstream '' is not",
        "audio/*=h3://[::1]:1,Audio/*=h3://[::1]:2": "audio/* is routed twice",
    }
    for spec, msg in cases.items():
        p = subprocess.run([*base, "--route", spec], capture_output=True, text=True,
                           timeout=10)
        assert p.returncode == 2 and msg in p.stderr, (spec, p.stderr)
    p = subprocess.run(base, capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "--route" in p.stderr
    p = subprocess.run([*base, "--route", "a/b=h3://[::1]:1", "--upstream-proto", "h1"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "want h3 or h2" in p.stderr


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))


def sanitized(pid):
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


@pytest.mark.parametrize("proto", ["h3", "h2"])
def test_big_upload_through_the_ingress_keeps_memory_bounded(proto, tmp_path, certs,
                                                            backend_factory, ingress_factory):
    """A bounded smoke variant of the memory check (issue: 1 GiB under 64 MiB; 1 GiB measured
    by hand): 40 MB through the ingress to an HTTP/3 or HTTP/2 upstream; its peak RSS must
    stay well below the body (no body is held whole)."""
    b = proto_backend(backend_factory, proto, types="video/*", ident="video")
    ing = ingress_factory([f"video/*={proto}://[::1]:{b.port}"])
    if sanitized(ing.proc.pid):
        pytest.skip("ASan's quarantine holds freed memory on purpose: RSS says nothing")
    sha = write(tmp_path / "v.mp4", 40_000_000, "big")
    rc, streams, out, err = upload(ing.url, [f"{tmp_path / 'v.mp4'}:video/mp4"], certs,
                                   timeout=120)
    assert rc == 0 and streams[0]["sha256"] == sha, out + err
    assert rss_kib(ing.proc.pid) < 24 * 1024
    assert ing.stop() == 0


def test_huge_upload_through_the_ingress_under_64_mib(tmp_path, certs, backend_factory,
                                                     ingress_factory):
    """The issue's memory bound at full size, for a manual run (minutes, not in 'make test'):
    PEAK_H3_BIG_MB=1024 uploads that many MiB through the ingress and reads its peak RSS."""
    mib = int(os.environ.get("PEAK_H3_BIG_MB", "0"))
    if not mib:
        pytest.skip("set PEAK_H3_BIG_MB (e.g. 256 or 1024) to run")
    b = backend_factory(types="video/*", ident="video")
    ing = ingress_factory([f"video/*=h3://[::1]:{b.port}"])
    chunk = bytes(range(256)) * 4096  # 1 MiB
    with open(tmp_path / "huge.mp4", "wb") as f:
        for _ in range(mib):
            f.write(chunk)
    rc, streams, out, err = upload(ing.url, [f"{tmp_path / 'huge.mp4'}:video/mp4"], certs,
                                   extra=("--timeout", "3600000"), timeout=3600)
    assert rc == 0 and streams[0]["checksum"] == "ok", out + err
    peak = rss_kib(ing.proc.pid)
    print(f"ingress peak RSS {peak} KiB after {mib} MiB: {out.splitlines()[-1]}")
    assert peak < 64 * 1024
    assert ing.stop() == 0


def test_quicgo_uploads_through_the_ingress(tmp_path, certs, backend_factory, ingress_factory,
                                            quicgo_client):
    audio = backend_factory(types="audio/*", ident="audio")
    video = backend_factory(types="video/*", ident="video")
    ing = ingress_factory([f"audio/*=h3://[::1]:{audio.port}",
                           f"video/mp4=h3://[::1]:{video.port}"])
    files = {"a1.ogg": "audio/ogg", "a2.mp3": "audio/mpeg", "v1.mp4": "video/mp4",
             "v2.mp4": "video/mp4", "t.txt": "text/plain"}
    for i, name in enumerate(files):
        write(tmp_path / name, 30_000 + 300_000 * i, name)
    p = subprocess.run([str(quicgo_client), ing.url, str(certs / "ca.pem"),
                        *[f"{tmp_path / n}:{t}" for n, t in files.items()]],
                       capture_output=True, text=True, timeout=120)
    lines = {}
    for line in p.stdout.splitlines():
        d = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        lines[os.path.basename(d["file"])] = d
    assert p.returncode == 1, p  # text/plain has no route
    for name, t in files.items():
        s = lines[name]
        assert s["proto"] == "HTTP/3.0", s
        if t == "text/plain":
            assert s["status"] == "400", s
        else:
            assert s["status"] == "201" and s["checksum"] == "ok", s
            assert s["backend"] == t.split("/")[0], s
    assert ing.stop() == 0
    assert "1 connections" in ing.logtext()
