"""Interop: headless Chromium (Debian's chromium, an independent QUIC and HTTP/3 stack) as a
client of the ingress and of a backend.

Through the ingress: Chromium loads a page from 'peak h3 ingress --page' over HTTP/3 and, from
the page's script, uploads three typed bodies with fetch() through the ingress: audio/ogg and
video/mp4 reach their backends and come back with the right checksums, text/plain has no route
and gets 400. The 400 is answered before the body ends and the rest of it is read and dropped
(no STOP_SENDING, which would leave Chromium's upload hanging): the page only finishes when
every fetch has settled, so a hang shows as Chromium still running at the bound. The unrouted
body (1.5 MB) is larger than the ingress's stream window (256 KiB), so Chromium must keep
sending after the 400: with a STOP_SENDING added after the 400 (checked by hand, Chromium 156)
this test fails at the bound.

    chromium --headless=new --origin-to-force-quic-on=localhost:PORT
        --(HTTP/3 only: the ingress has no TCP listener)--> peak h3 ingress on [::1]
        --(HTTP/3)--> peak h3 backend audio/*, peak h3 backend video/*

Straight to a backend: Chromium loads the page file of 'peak h3 backend --page FILE' (written
here, the same script with bodies of its own) and uploads to the backend itself: two types it
serves come back 201 with their checksums, a third gets 415, answered at its headers with the
rest of the body read and dropped, as the ingress's 400. That body (2 MB) is larger than the
backend's stream window (1 MiB), so a backend that stopped reading would hang the upload.

    chromium --headless=new --origin-to-force-quic-on=localhost:PORT
        --(HTTP/3)--> peak h3 backend audio/*,video/mp4 --page FILE on [::1]

Without Chromium (these run wherever the suite does): the page served byte for byte to
'peak h3 get' and, over '--proto h2', to curl; '--page' refused with its reason for a missing
file, one over the 1 MiB limit and a directory.
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
from conftest import PEAK, free_tcp_port  # noqa: E402

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

# what the built-in page's script sends (src/h3/page.c, page_upload_html): type, bytes, seed
BODIES = [("audio/ogg", 300_000, 1), ("video/mp4", 1_000_000, 2), ("text/plain", 1_500_000, 3)]
# what the backend's page file sends: two types it serves, one it does not (2 MB: over its
# 1 MiB stream window)
BACKEND_TYPES = "audio/*,video/mp4"
BACKEND_BODIES = [("audio/ogg", 400_000, 4), ("video/mp4", 1_200_000, 5),
                  ("text/plain", 2_000_000, 6)]
PAGE_MAX_BYTES = 1024 * 1024  # src/h3/page.h, H3_PAGE_MAX_BYTES


def page_body(n, seed):
    return bytes((31 * k + 7 * seed) & 255 for k in range(n))


def upload_page(bodies, marker):
    """A page with the built-in page's script (src/h3/page.c) for other bodies: it POSTs each
    (type, bytes, seed) to /upload with fetch(), all at once, writes one line per answer into
    <pre id="out"> (TYPE STATUS BODY, or TYPE error ...) and then sets the title to "done".
    marker is a paragraph that shows the page came from this file."""
    rows = ", ".join(f'["{t}", {n}, {seed}]' for t, n, seed in bodies)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>peak h3 page file</title></head><body>
<p id="marker">{marker}</p>
<pre id="out"></pre>
<script>
const bodies = [{rows}];
function bytes(n, seed) {{
  const b = new Uint8Array(n);
  for (let k = 0; k < n; k++) b[k] = (31 * k + 7 * seed) & 255;
  return b;
}}
Promise.all(bodies.map(([t, n, seed]) =>
  fetch("/upload", {{method: "POST", headers: {{"content-type": t}}, body: bytes(n, seed)}})
    .then(async r => t + " " + r.status + " " + (await r.text()).trim(),
          e => t + " error " + e))).then(lines => {{
  document.getElementById("out").textContent = lines.join("\\n");
  document.title = "done";
}});
</script>
</body></html>
"""


def page_answers(rc, dom, err, bodies):
    """The page's lines after a Chromium run, by type: {type: [status, body]}; fails unless
    Chromium exited 0 and the script finished with one line per body."""
    assert rc == 0, err[-3000:]
    m = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert m and "<title>done</title>" in dom, dom + err[-3000:]
    lines = {line.split(" ", 1)[0]: line.split(" ", 2)[1:] for line in m.group(1).splitlines()}
    assert set(lines) == {t for t, _, _ in bodies}, lines
    return lines


def check_checksum(answer, t, n, seed, backend):
    """answer ([status, body] from page_answers) is a 201 whose JSON has the SHA-256 of body
    (n, seed), its size, type t and the backend id."""
    status, body = answer
    assert status == "201", answer
    got = dict(re.findall(r'"(\w+)":"?([^",}]*)', body.replace("&quot;", '"')))
    assert got["checksum"] == hashlib.sha256(page_body(n, seed)).hexdigest(), got
    assert got["bytes"] == str(n) and got["type"] == t
    assert got["backend"] == backend, got


def backend_streams(mport, ident):
    """The backend's peak_h3_streams_total by status, from its metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    return {st: int(v) for st, v in re.findall(
        r'peak_h3_streams_total\{backend="%s",status="(\w+)"\} (\d+)' % re.escape(ident),
        metrics)}


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


@needs_chromium
def test_chromium_uploads_through_ingress(tmp_path, certs, backend_factory, ingress_factory):
    audio = backend_factory(types="audio/*", ident="audio", extra=("--verbose",))
    video = backend_factory(types="video/*", ident="video", extra=("--verbose",))
    mport = free_tcp_port()
    ing = ingress_factory([f"audio/*=h3://[::1]:{audio.port}",
                           f"video/*=h3://[::1]:{video.port}"],
                          extra=("--page", "--verbose", "--metrics", f"127.0.0.1:{mport}"))
    lines = page_answers(*chromium_dump(tmp_path, ing.port, spki_pin(certs / "srv.pem"), 120),
                         BODIES)
    for t, n, seed in BODIES:
        if t == "text/plain":
            assert lines[t] == ["400", "no route for this content-type"], lines[t]
            continue
        check_checksum(lines[t], t, n, seed, t.split("/")[0])
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


@needs_chromium
def test_chromium_uploads_to_backend_from_its_page(tmp_path, certs, backend_factory):
    page = tmp_path / "page.html"
    page.write_text(upload_page(BACKEND_BODIES, "served by peak h3 backend"))
    mport = free_tcp_port()
    b = backend_factory(types=BACKEND_TYPES, ident="media",
                        extra=("--page", str(page), "--verbose", "--metrics",
                               f"127.0.0.1:{mport}"))
    rc, dom, err = chromium_dump(tmp_path, b.port, spki_pin(certs / "srv.pem"), 120)
    lines = page_answers(rc, dom, err, BACKEND_BODIES)
    # the page came from the file (the built-in one has no marker)
    assert '<p id="marker">served by peak h3 backend</p>' in dom, dom
    for t, n, seed in BACKEND_BODIES:
        if t == "text/plain":
            # refused at its headers; Chromium's upload of the rest still ended
            assert lines[t] == ["415", "content-type not served here"], lines[t]
            continue
        check_checksum(lines[t], t, n, seed, "media")
    # both served bodies were hashed whole by the backend, over QUIC (it has no TCP listener)
    log = b.logtext()
    assert "400000 bytes" in log and "1200000 bytes" in log, log
    st = backend_streams(mport, "media")
    # the page (200), the two uploads (201), the refusal (415); perhaps a favicon (404)
    assert st["200"] >= 1 and st["201"] == 2 and st["415"] == 1, st
    assert b.stop() == 0, b.logtext()


def test_backend_page_served_as_is(tmp_path, certs, backend_factory):
    """The page file, at the size limit, goes out byte for byte (HTTP/3 and HTTP/2) to GET /
    only (or with a content-type the backend serves: what an ingress routed by it); other
    paths and a GET with another content-type are not the page."""
    html = upload_page(BACKEND_BODIES, "as is \u00e9").encode()
    filler = b"<!-- " + b"x" * (PAGE_MAX_BYTES - len(html) - 10) + b" -->\n"
    data = html.replace(b"</body>", filler + b"</body>", 1)
    assert len(data) == PAGE_MAX_BYTES
    page = tmp_path / "page.html"
    page.write_bytes(data)
    b = backend_factory(types=BACKEND_TYPES, ident="h3p", extra=("--page", str(page)))
    base = f"https://[::1]:{b.port}"
    for path, status in (("/", 200), ("/?x=1", 200), ("/other", 404), ("/healthz", 200)):
        p = subprocess.run([PEAK, "h3", "get", base + path, "--ca", str(certs / "ca.pem")],
                           capture_output=True, text=True, timeout=30)
        assert f"status={status}" in p.stdout, (path, p)
        if status == 200 and path != "/healthz":
            assert "body=<!doctype html>" in p.stdout, p
    assert b.stop() == 0
    h2 = backend_factory(types=BACKEND_TYPES, ident="h2p",
                         extra=("--page", str(page), "--proto", "h2"))
    url = f"https://localhost:{h2.port}/"
    resolve = f"localhost:{h2.port}:[::1]"
    p = subprocess.run(["curl", "-sS", "--http2", "--cacert", str(certs / "ca.pem"),
                        "--resolve", resolve, "-D", "-", "-o", str(tmp_path / "got"), url],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("HTTP/2 200"), p
    assert "content-type: text/html; charset=utf-8" in p.stdout.lower(), p.stdout
    assert (tmp_path / "got").read_bytes() == data
    # a GET / that carries a content-type not served here asks for something else
    for ctype, code in (("text/plain", "404"), ("audio/ogg", "200")):
        p = subprocess.run(["curl", "-sS", "--http2", "--cacert", str(certs / "ca.pem"),
                            "--resolve", resolve, "-H", f"content-type: {ctype}", "-o",
                            "/dev/null", "-w", "%{http_code}", url],
                           capture_output=True, text=True, timeout=60)
        assert p.stdout == code, (ctype, p)
    assert h2.stop() == 0


@pytest.mark.parametrize("what", ["missing", "too large", "directory"])
def test_backend_page_bad_input(tmp_path, certs, what):
    """--page refuses, before it listens, a file it cannot serve, saying why (exit 2)."""
    path = tmp_path / "page.html"
    if what == "too large":
        path.write_bytes(b"x" * (PAGE_MAX_BYTES + 1))
        why = f"too large: {PAGE_MAX_BYTES + 1} bytes, a page may have at most {PAGE_MAX_BYTES}"
    elif what == "directory":
        path.mkdir()
        why = "not a regular file"
    else:
        why = "cannot open: No such file or directory"
    p = subprocess.run([PEAK, "h3", "backend", "--listen", "[::1]:0", "--cert",
                        str(certs / "srv.pem"), "--key", str(certs / "srv.key"), "--type",
                        "audio/*", "--page", str(path)], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 2, p
    assert p.stderr.strip() == f"peak h3 backend: --page {path}: {why}", p.stderr
    assert "listening" not in p.stdout + p.stderr
