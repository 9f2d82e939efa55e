"""Interop: Caddy 2.6 (Debian's caddy: quic-go's HTTP/3 server inside an independent web server)
serves HTTP/3 on [::1] with the test's certificate; 'peak h3 get' and 'peak h3 upload' complete
their exchanges with it. Caddy cannot compute checksums ('respond' answers fixed bodies), so what
is checked is the status each stream got and, in Caddy's JSON access log, that each request
arrived over HTTP/3 with its method, path and content-type.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_h3 import write  # noqa: E402
from conftest import PEAK, upload, wait_for  # noqa: E402

CADDY = shutil.which("caddy")
pytestmark = pytest.mark.skipif(CADDY is None, reason="caddy is not installed")


def free_udp6_port():
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


@pytest.fixture
def caddy(tmp_path, certs):
    """Caddy on https://[::1]:PORT (TCP and UDP): /healthz 200 "ok", anything else 200 "stored";
    no admin endpoint, no HTTP->HTTPS redirect listener, its state kept in tmp_path."""
    port = free_udp6_port()
    access = tmp_path / "caddy-access.log"
    (tmp_path / "Caddyfile").write_text(f"""{{
	admin off
	auto_https disable_redirects
	default_sni localhost
	servers {{
		protocols h1 h2 h3
	}}
}}
https://:{port} {{
	bind ::1
	tls {certs / 'srv.pem'} {certs / 'srv.key'}
	log {{
		output file {access}
		format json
	}}
	respond /healthz "ok" 200
	respond "stored" 200
}}
""")
    env = dict(os.environ, HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "data"),
               XDG_CONFIG_HOME=str(tmp_path / "config"))
    logpath = tmp_path / "caddy.log"
    with open(logpath, "w") as log:
        proc = subprocess.Popen([CADDY, "run", "--config", str(tmp_path / "Caddyfile"),
                                 "--adapter", "caddyfile"], stdout=log, stderr=subprocess.STDOUT,
                                env=env)
    try:
        def up():
            assert proc.poll() is None, logpath.read_text()
            return "serving initial configuration" in logpath.read_text()
        wait_for(up, 15, "caddy to serve")
        assert "enabling HTTP/3 listener" in logpath.read_text()
        yield port, access, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def requests(access):
    return [json.loads(line)["request"] for line in access.read_text().splitlines()
            if '"handled request"' in line]


def test_peak_h3_get_and_upload_against_caddy(tmp_path, certs, caddy):
    port, access, proc = caddy
    p = subprocess.run([PEAK, "h3", "get", f"https://[::1]:{port}/healthz", "--ca",
                        str(certs / "ca.pem"), "--timeout", "10000"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "status=200" in p.stdout and "body=ok" in p.stdout, p
    files = {"a.ogg": ("audio/ogg", 300_000), "v.mp4": ("video/mp4", 1_000_000),
             "e.wav": ("audio/wav", 0)}
    for n, (_, size) in files.items():
        write(tmp_path / n, size, n)
    rc, streams, out, err = upload(f"https://[::1]:{port}/upload",
                                   [f"{tmp_path / n}:{t}" for n, (t, _) in files.items()], certs)
    # every stream answered 200 on one connection; no checksum to check, hence exit 1
    assert rc == 1 and len(streams) == 3, out + err
    assert len({s["stream"] for s in streams}) == 3
    for s in streams:
        assert s["status"] == "200" and s["checksum"] == "-", s
    # wait for Caddy to log all four: it may log after the answer is sent
    wait_for(lambda: len(requests(access)) == 4, 10, "caddy's access log")
    reqs = requests(access)
    assert all(r["proto"] == "HTTP/3.0" for r in reqs), reqs
    assert [(r["method"], r["uri"]) for r in reqs].count(("POST", "/upload")) == 3
    assert sorted(r["headers"]["Content-Type"][0] for r in reqs if r["method"] == "POST") == \
        sorted(t for t, _ in files.values())
