"""Issue 15, smaller defects: 'peak controller' exited 2 (the usage/bad-input status) for
run-time failures such as an address already in use. It now exits 1 for those and keeps 2
for bad usage or input (an unreadable configuration, a bad --listen)."""
import socket
import subprocess

import ctlpeer


def run(tmp_path, *args):
    cfg = tmp_path / "peak.yaml"
    if not cfg.exists():
        cfg.write_text(ctlpeer.config())
    return subprocess.run([ctlpeer.PEAK, "controller", "--config", str(cfg), *args],
                          capture_output=True, text=True, timeout=10)


def test_runtime_failure_exits_1(tmp_path):
    busy = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    busy.bind(("::1", 0))
    busy.listen(1)
    try:
        r = run(tmp_path, "--listen", f"[::1]:{busy.getsockname()[1]}")
        assert r.returncode == 1, r.stderr
    finally:
        busy.close()


def test_bad_input_exits_2(tmp_path):
    assert run(tmp_path, "--listen", "nonsense").returncode == 2
    (tmp_path / "peak.yaml").write_text("zone: [\n")
    assert run(tmp_path, "--listen", "[::1]:1").returncode == 2
