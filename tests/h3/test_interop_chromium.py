"""Interop: headless Chromium (Debian's chromium, an independent QUIC and HTTP/3 stack) loads a
page from 'peak h3 ingress --page' over HTTP/3 and, from the page's script, uploads three typed
bodies with fetch() through the ingress: audio/ogg and video/mp4 reach their backends and come
back with the right checksums, text/plain has no route and gets 400. The 400 is answered
before the body ends and the rest of it is read and dropped (no STOP_SENDING, which would
leave Chromium's upload hanging): the page only finishes when every fetch has settled, so a
hang shows as Chromium still running at the bound. The unrouted body (1.5 MB) is larger than
the ingress's stream window (256 KiB), so Chromium must keep sending after the 400: with a
STOP_SENDING added after the 400 (checked by hand, Chromium 156) this test fails at the bound.

    chromium --headless=new --origin-to-force-quic-on=localhost:PORT
        --(HTTP/3 only: the ingress has no TCP listener)--> peak h3 ingress on [::1]
        --(HTTP/3)--> peak h3 backend audio/*, peak h3 backend video/*
"""
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import free_tcp_port  # noqa: E402

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

# what the page's script sends (src/h3/ingress.c, page_html): type, bytes, seed
BODIES = [("audio/ogg", 300_000, 1), ("video/mp4", 1_000_000, 2), ("text/plain", 1_500_000, 3)]


def page_body(n, seed):
    return bytes((31 * k + 7 * seed) & 255 for k in range(n))


def spki_pin(pem):
    """The base64 SHA-256 of the certificate's SubjectPublicKeyInfo, as certtool prints it."""
    out = subprocess.run(["certtool", "-i", "--infile", str(pem)], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    return re.search(r"pin-sha256:(\S+)", out).group(1)


def chromium_dump(tmp_path, port, pin, timeout):
    """One headless Chromium run: loads https://localhost:PORT/ over QUIC only and returns
    (exit status, the DOM after the page's fetches, stderr). Its processes are one session,
    ended as a group if the run is over its time."""
    argv = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--disable-background-networking",
            "--disable-component-update", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'chromium'}",
            f"--origin-to-force-quic-on=localhost:{port}",
            # keep it on loopback: localhost is the ingress's [::1], nothing else resolves
            "--host-resolver-rules=MAP localhost [::1], MAP * ~NOTFOUND",
            f"--ignore-certificate-errors-spki-list={pin}",
            # the dump waits for the page's network activity (virtual time stops while a
            # request is in flight), at most this long in virtual time
            "--virtual-time-budget=30000",
            "--dump-dom", f"https://localhost:{port}/"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, env=dict(os.environ, HOME=str(tmp_path)))
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"chromium did not finish in {timeout} s (an upload hung?)\n{out}\n{err}")
    return p.returncode, out, err


def test_chromium_uploads_through_ingress(tmp_path, certs, backend_factory, ingress_factory):
    audio = backend_factory(types="audio/*", ident="audio", extra=("--verbose",))
    video = backend_factory(types="video/*", ident="video", extra=("--verbose",))
    mport = free_tcp_port()
    ing = ingress_factory([f"audio/*=h3://[::1]:{audio.port}",
                           f"video/*=h3://[::1]:{video.port}"],
                          extra=("--page", "--verbose", "--metrics", f"127.0.0.1:{mport}"))
    rc, dom, err = chromium_dump(tmp_path, ing.port, spki_pin(certs / "srv.pem"), 120)
    assert rc == 0, err[-3000:]
    m = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert m and "<title>done</title>" in dom, dom + err[-3000:]
    lines = {line.split(" ", 1)[0]: line.split(" ", 2)[1:] for line in m.group(1).splitlines()}
    assert set(lines) == {t for t, _, _ in BODIES}, lines
    for t, n, seed in BODIES:
        status, body = lines[t]
        if t == "text/plain":
            assert status == "400" and body == "no route for this content-type", lines[t]
            continue
        assert status == "201", lines[t]
        got = dict(re.findall(r'"(\w+)":"?([^",}]*)', body.replace("&quot;", '"')))
        assert got["checksum"] == hashlib.sha256(page_body(n, seed)).hexdigest(), got
        assert got["bytes"] == str(n) and got["type"] == t
        assert got["backend"] == t.split("/")[0]
    # each typed body went through the ingress (over QUIC: it has no TCP listener) to the
    # backend of its type, received whole there
    log = ing.logtext()
    assert re.search(r"POST audio/ogg -> \[::1\]:%d" % audio.port, log), log
    assert re.search(r"POST video/mp4 -> \[::1\]:%d" % video.port, log), log
    assert "300000 bytes" in audio.logtext() and "1000000 bytes" in video.logtext()
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
        metrics = r.read().decode()

    def streams(route, status):
        m = re.search(r'peak_h3_ingress_streams_total\{ingress="ingress",route="%s",'
                      r'status="%s"\} (\d+)' % (re.escape(route), status), metrics)
        return int(m.group(1))
    assert streams("audio/*", 201) == 1 and streams("video/*", 201) == 1, metrics
    # the page itself (200) and the unrouted upload (400, perhaps a favicon too)
    assert streams("none", 200) >= 1 and streams("none", 400) >= 1, metrics
    assert ing.stop() == 0 and audio.stop() == 0 and video.stop() == 0
