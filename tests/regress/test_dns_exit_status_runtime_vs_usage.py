"""`peak dns` and `peak dns-ctl`: exit status 2 for run-time failures.

Seen: `peak dns` exited 2 (the usage-error status) when a socket could not be bound, and
`peak dns-ctl` exited 2 when the server could not be reached, while a command the server
refused as bad input exited 1. Now 2 means only a usage error or bad input (options, an
invalid configuration, a command the server refuses), and 1 a run-time failure (an address
in use, an unreachable server)."""
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peaktest import BASE_CONFIG, PEAK, Server  # noqa: E402


def test_dns_address_in_use_is_1_bad_config_and_usage_are_2(tmp_path):
    cfg = tmp_path / "peak.yaml"
    cfg.write_text(BASE_CONFIG)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as held:
        held.bind(("::1", 0))
        port = held.getsockname()[1]
        r = subprocess.run([PEAK, "dns", "--config", str(cfg), "--listen", f"[::1]:{port}",
                            "--threads", "1"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1, r.stderr
    assert "udp [::1]" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE_CONFIG.replace("slice: 78", "slice: 60"))
    r = subprocess.run([PEAK, "dns", "--config", str(bad), "--listen", "[::1]:0"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "slice=60" in r.stderr, r.stderr
    r = subprocess.run([PEAK, "dns", "--config", str(cfg), "--control-mode", "999"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "--control-mode" in r.stderr, r.stderr


def test_dns_ctl_unreachable_is_1_refused_is_2(tmp_path):
    r = subprocess.run([PEAK, "dns-ctl", "--control", str(tmp_path / "none.ctl"), "status"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and "cannot reach" in r.stderr, r.stderr
    s = Server(tmp_path)
    try:
        r = s.ctl("health", "api.svc.example.", "nope", "down")
        assert r.returncode == 2 and "no endpoint" in r.stdout, r
        assert s.ctl("status").returncode == 0
    finally:
        s.stop()
    assert s.proc.returncode == 0, s.logtext()
