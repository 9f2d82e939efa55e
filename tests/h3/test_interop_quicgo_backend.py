"""Interop: quic-go (Debian's golang-github-lucas-clemente-quic-go-dev) as a *backend server*
behind our ingress. 'peak h3 upload' sends typed files on one connection to 'peak h3 ingress',
which routes audio/* to a quic-go http3.Server (tests/h3/interop/quicgo_backend.go, built here
offline) and video/* to 'peak h3 backend'; every checksum is checked by the uploader against
the JSON each backend computed from the bytes it received.

    peak h3 upload --(HTTP/3)--> peak h3 ingress --(HTTP/3)--> quicgo_backend  (audio/*)
                                                 --(HTTP/3)--> peak h3 backend (video/*)
"""
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_h3 import write  # noqa: E402
from conftest import Server, go_build, upload  # noqa: E402


@pytest.fixture(scope="session")
def quicgo_backend_bin(tmp_path_factory):
    return go_build(tmp_path_factory, "quicgo_backend")


@pytest.fixture
def quicgo_backend(tmp_path, certs, quicgo_backend_bin):
    s = Server(tmp_path / "quicgo-backend.log",
               [str(quicgo_backend_bin), str(certs / "srv.pem"), str(certs / "srv.key"), "qgo"],
               "quic-go backend")
    yield s
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait()


def test_ingress_routes_to_a_quicgo_backend(tmp_path, certs, backend_factory, ingress_factory,
                                            quicgo_backend):
    video = backend_factory(types="video/*", ident="video")
    ing = ingress_factory([f"audio/*=h3://[::1]:{quicgo_backend.port}",
                           f"video/*=h3://[::1]:{video.port}"])
    # the ingress's health check reached quic-go over HTTP/3
    assert "request GET /healthz proto=HTTP/3.0" in quicgo_backend.logtext()
    files = {"a1.ogg": ("audio/ogg", 70_000), "a2.mp3": ("audio/mpeg; rate=44100", 1_200_000),
             "a3.wav": ("audio/wav", 0), "v1.mp4": ("video/mp4", 900_000),
             "v2.webm": ("video/webm", 40_000), "t.txt": ("text/plain", 5_000)}
    sums = {n: write(tmp_path / n, size, n) for n, (_, size) in files.items()}
    rc, streams, out, err = upload(ing.url, [f"{tmp_path / n}:{t}" for n, (t, _) in
                                             files.items()], certs)
    assert rc == 1, out + err  # text/plain has no route: 400 from the ingress
    by = {s["file"]: s for s in streams}
    assert len(by) == len(files) and len({s["stream"] for s in streams}) == len(files)
    for name, (t, size) in files.items():
        s = by[name]
        if t == "text/plain":
            assert s["status"] == "400" and s["backend"] == "-", s
            continue
        assert s["status"] == "201" and s["checksum"] == "ok", s
        assert s["sha256"] == sums[name] and int(s["bytes"]) == size, s
        assert s["backend"] == ("qgo" if t.startswith("audio") else "video"), s
    # quic-go saw each audio body whole, over HTTP/3, with its content-type as sent
    log = quicgo_backend.logtext()
    for name, (t, size) in files.items():
        if t.startswith("audio"):
            assert f"request POST /upload proto=HTTP/3.0 type={t} bytes={size}" in log, log
    assert not re.search(r"error=", log), log
    assert ing.stop() == 0
    assert video.stop() == 0
    quicgo_backend.proc.terminate()
    assert quicgo_backend.proc.wait(timeout=10) == 0
