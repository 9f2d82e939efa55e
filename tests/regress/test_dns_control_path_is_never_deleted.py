"""DNS control socket: `--control PATH` pointed at an existing regular file deleted it.

Seen: the server unlinked whatever was at PATH before binding its socket, without looking at
what it was. Now only a stale socket (one nobody listens on) is replaced; a regular file, a
directory or a live server's socket is refused with a clear error and left as it was, and
the server exits 1 (a run-time failure, not a usage error)."""
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peaktest import BASE_CONFIG, PEAK, Server, free_port  # noqa: E402


def run_dns(tmp_path, control):
    cfg = tmp_path / "peak.yaml"
    cfg.write_text(BASE_CONFIG)
    return subprocess.run([PEAK, "dns", "--config", str(cfg), "--listen",
                           f"[::1]:{free_port()}", "--threads", "1", "--control", str(control)],
                          capture_output=True, text=True, timeout=20)


def test_regular_file_and_directory_are_refused_and_kept(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("do not delete\n")
    r = run_dns(tmp_path, precious)
    assert r.returncode == 1, r.stderr
    assert "not a socket" in r.stderr and "not removing" in r.stderr, r.stderr
    assert precious.read_text() == "do not delete\n"
    d = tmp_path / "adir"
    d.mkdir()
    r = run_dns(tmp_path, d)
    assert r.returncode == 1 and "not a socket" in r.stderr, r.stderr
    assert d.is_dir()


def test_stale_socket_is_replaced_and_live_one_is_not(tmp_path):
    stale = tmp_path / "dns.ctl"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))  # bound, never listening: what a killed server leaves
    s.close()
    srv = Server(tmp_path)  # its --control is tmp_path/dns.ctl: the stale socket
    try:
        assert srv.ctl("status").returncode == 0
        other = tmp_path / "other"
        other.mkdir()
        r = run_dns(other, srv.control)  # a second server on the live socket
        assert r.returncode == 1 and "another server listens" in r.stderr, r.stderr
        assert srv.ctl("status").returncode == 0  # the first one still has its socket
    finally:
        srv.stop()
    assert srv.proc.returncode == 0, srv.logtext()
    assert not os.path.exists(srv.control)  # removed at exit: it was ours
