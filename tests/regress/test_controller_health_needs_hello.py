"""Defect 6 (issue 15): any TCP peer could send 'health SERVICE ENDPOINT down' to the
controller with no 'hello' first and no credentials, and the controller moved the slices
(one such line moved 4096 slices). Now a peer must say hello first (else it is dropped),
and with --key-file the hello must carry the HMAC of the controller's challenge."""
import os
import socket
import subprocess

import pytest

import ctlpeer
from ctlpeer import SVC

KEY = b"0123456789abcdef-a-test-key"


@pytest.fixture
def keyfile(tmp_path):
    p = tmp_path / "ctl.key"
    p.write_bytes(KEY + b"\n")
    os.chmod(p, 0o600)
    return str(p)


def healthy(port, ep):
    return ctlpeer.metric(port, "peak_controller_endpoint_healthy", ep)


def test_health_before_hello_is_refused(tmp_path):
    mport = ctlpeer.peaktest.free_port()
    ctl = ctlpeer.Controller(str(tmp_path), ctlpeer.config(),
                             args=["--metrics", f"[::1]:{mport}"])
    try:
        s = socket.create_connection(("::1", ctl.port), timeout=5)
        s.sendall(f"health {SVC} pod-0 down\n".encode())
        # the controller hangs up on a peer that speaks before its hello
        s.settimeout(5)
        data = b""
        try:
            while (d := s.recv(4096)):
                data += d
        except socket.timeout:
            pytest.fail("the controller kept a peer that sent health before hello")
        s.close()
        assert healthy(mport, "pod-0") == "1"
        assert "slices moved" not in ctl.log()
        assert ctl.proc.poll() is None
    finally:
        assert ctl.stop() == 0


def test_hello_needs_the_key(tmp_path, keyfile):
    mport = ctlpeer.peaktest.free_port()
    ctl = ctlpeer.Controller(str(tmp_path), ctlpeer.config(),
                             args=["--metrics", f"[::1]:{mport}", "--key-file", keyfile])
    try:
        for key in (None, b"another-key-of-16-bytes"):  # no tag, a wrong tag
            a = ctlpeer.Agent(ctl.port, key=key)
            a.send(f"health {SVC} pod-0 down\n")
            assert a.closed_by_peer(), "an unauthenticated agent was kept"
            a.close()
        assert healthy(mport, "pod-0") == "1"
        assert "slices moved" not in ctl.log()
        assert KEY.decode() not in ctl.log()
        good = ctlpeer.Agent(ctl.port, key=KEY)
        _, m = good.read_map()
        assert set(m) == {"pod-0", "pod-1", "pod-2"}
        good.send(f"health {SVC} pod-0 down\n")
        _, m = good.read_map()
        assert "pod-0" not in m
        assert healthy(mport, "pod-0") == "0"
        good.close()
    finally:
        assert ctl.stop() == 0


def test_loose_or_short_key_file_is_refused(tmp_path, keyfile):
    cfg = tmp_path / "peak.yaml"
    cfg.write_text(ctlpeer.config())
    os.chmod(keyfile, 0o644)
    r = subprocess.run([ctlpeer.PEAK, "controller", "--config", str(cfg), "--listen",
                        "[::1]:1", "--key-file", keyfile], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2 and "chmod 600" in r.stderr, r.stderr
    assert KEY.decode() not in r.stderr
    os.chmod(keyfile, 0o600)
    with open(keyfile, "wb") as f:
        f.write(b"short\n")
    r = subprocess.run([ctlpeer.PEAK, "controller", "--config", str(cfg), "--listen",
                        "[::1]:1", "--key-file", keyfile], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2 and "16" in r.stderr, r.stderr
