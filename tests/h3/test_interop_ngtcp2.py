"""Interop: ngtcp2's own example client (Debian's ngtcp2-client, /usr/bin/gtlsclient: ngtcp2 and
nghttp3 built by their authors' example code, not ours) sends requests without any header of
its own - no content-type - to 'peak h3 backend' and to 'peak h3 ingress': GET /, GET /healthz
and a POST with a body. Each gets a sane status (never a reset or a crash), and the server keeps
serving: a 'peak h3 upload' afterwards still gets its checksum, and it stops cleanly.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_h3 import write  # noqa: E402
from conftest import upload  # noqa: E402

CLIENT = shutil.which("gtlsclient")
pytestmark = pytest.mark.skipif(CLIENT is None,
                                reason="ngtcp2-client (gtlsclient) is not installed")


def ngtcp2(port, paths, extra=(), n=None):
    """Runs gtlsclient against [::1]:port: one connection, n request streams (default: one per
    path, else wrapping the paths); returns each stream's :status in order (None: no answer)."""
    n = n or len(paths)
    argv = [CLIENT, "--no-quic-dump", "--exit-on-all-streams-close", "--timeout=5s", "-n", str(n),
            *extra, "::1", str(port), *[f"https://[::1]:{port}{p}" for p in paths]]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    got = {int(sid, 16): int(st) for sid, st in
           re.findall(r"http: stream 0x([0-9a-f]+) \[:status: (\d+)\]", p.stdout + p.stderr)}
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return [got.get(4 * i) for i in range(n)]


def check_serves(url, tmp_path, certs):
    write(tmp_path / "after.ogg", 100_000, "after")
    rc, streams, out, err = upload(url, [f"{tmp_path / 'after.ogg'}:audio/ogg"], certs)
    assert rc == 0 and streams[0]["checksum"] == "ok", out + err


def test_ngtcp2_client_against_the_backend(tmp_path, certs, backend_factory):
    b = backend_factory(types="audio/*")
    assert ngtcp2(b.port, ["/", "/healthz", "/upload"]) == [404, 200, 404]
    # twenty streams on one connection, wrapping the two paths
    assert ngtcp2(b.port, ["/", "/healthz"], n=20) == [404, 200] * 10
    # a POST of 5 kB with no content-type: refused with 400, body and all
    (tmp_path / "d.bin").write_bytes(os.urandom(5000))
    assert ngtcp2(b.port, ["/upload"], ("-m", "POST", "-d", str(tmp_path / "d.bin"))) == [400]
    check_serves(b.url, tmp_path, certs)
    assert b.stop() == 0
    assert "ERROR" not in b.logtext() and "runtime error" not in b.logtext()


def test_ngtcp2_client_against_the_ingress(tmp_path, certs, backend_factory, ingress_factory):
    b = backend_factory(types="audio/*")
    ing = ingress_factory([f"audio/*=h3://[::1]:{b.port}"])
    got = ngtcp2(ing.port, ["/", "/healthz", "/upload"])
    assert got == [400, 400, 400], got  # no content-type: the ingress has no route for them
    (tmp_path / "d.bin").write_bytes(os.urandom(5000))
    got = ngtcp2(ing.port, ["/upload"], ("-m", "POST", "-d", str(tmp_path / "d.bin")))
    assert got == [400], got  # no content-type, no route
    check_serves(ing.url, tmp_path, certs)
    assert ing.stop() == 0 and b.stop() == 0
    assert "runtime error" not in ing.logtext()
