"""Interop: quic-go (Debian's golang-github-lucas-clemente-quic-go-dev, an independent QUIC
and HTTP/3 stack) uploads typed files concurrently on one connection to peak h3 backend and
checks every checksum; a type the backend does not serve gets 415 through it too.

    quicgo_upload (Go, built here offline) --(HTTP/3)--> peak h3 backend on [::1]
"""
import os
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_h3 import write  # noqa: E402
from conftest import go_build  # noqa: E402


@pytest.fixture(scope="session")
def quicgo_client(tmp_path_factory):
    return go_build(tmp_path_factory, "quicgo_upload")


def test_quicgo_uploads_to_backend(tmp_path, certs, backend_factory, quicgo_client):
    b = backend_factory(types="audio/*,video/mp4", extra=("--verbose",))
    # v2's parameters carry quotes: the answer's JSON must escape them for Go to parse it
    files = {"a1.ogg": "audio/ogg", "a2.mp3": "audio/mpeg", "v1.mp4": "video/mp4",
             "v2.mp4": 'video/mp4; codecs="avc1.42E01E"', "t.txt": "text/plain"}
    for i, name in enumerate(files):
        write(tmp_path / name, 30_000 + 400_000 * i, name)
    p = subprocess.run([str(quicgo_client), b.url, str(certs / "ca.pem"),
                        *[f"{tmp_path / n}:{t}" for n, t in files.items()]],
                       capture_output=True, text=True, timeout=120)
    def fields(line):
        # file=... type=... status=...: the type may hold spaces, so split on the keys
        out, key = {}, None
        for part in re.split(r" (?=(?:file|type|status|proto|backend|checksum|error)=)", line):
            key, _, val = part.partition("=")
            out[key] = val
        return out
    lines = {os.path.basename(fields(line)["file"]): fields(line)
             for line in p.stdout.splitlines()}
    assert p.returncode == 1, p  # the text/plain upload is refused
    for name, t in files.items():
        s = lines[name]
        assert s["proto"] == "HTTP/3.0"
        if t == "text/plain":
            assert s["status"] == "415"
        else:
            assert s["status"] == "201" and s["checksum"] == "ok" and s["backend"] == "b1", s
    log = b.logtext()
    assert log.count("receiving") == 4
    assert b.stop() == 0
    # all of it on one QUIC connection
    assert "1 connections" in b.logtext()
