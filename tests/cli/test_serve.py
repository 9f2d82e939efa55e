"""peak serve on loopback: its answers (HTTP and lines), --work-us spending CPU time on each
request (measured in the process's own CPU time, not in wall time), and bad options."""
import os
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peaktest import PEAK, free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def start(tmp_path, *args):
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    p = subprocess.Popen([PEAK, "serve", "--port", str(port), "--id", "t", *args], stdout=log,
                         stderr=subprocess.STDOUT)
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("::1", port), timeout=0.2).close()
            return p, port
        except OSError:
            assert p.poll() is None and time.time() < deadline, "peak serve did not start"
            time.sleep(0.05)


def cpu_s(pid):
    """The process's user and system CPU time, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def ask(port, data, want_lines=1):
    with socket.create_connection(("::1", port), timeout=10) as s:
        s.sendall(data)
        got = b""
        while got.count(b"\n") < want_lines:
            b = s.recv(4096)
            assert b, got
            got += b
    return got.decode()


@pytest.fixture
def served(tmp_path, request):
    p, port = start(tmp_path, *request.param)
    yield p, port
    p.terminate()
    p.wait(timeout=5)


@pytest.mark.parametrize("served", [[]], indirect=True)
def test_answers_lines_and_http(served):
    _, port = served
    line = ask(port, b"hello\n")
    assert line.startswith("t ::1 ::1"), line
    http = ask(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 8)
    assert http.startswith("HTTP/1.1 200 OK\r\n") and "X-Peak-Endpoint: t\r\n" in http


@pytest.mark.parametrize("served", [["--work-us", "50000"]], indirect=True)
def test_work_us_spends_cpu_per_request(served):
    """Ten requests at 50 ms of CPU each: at least half a second of the server's CPU time
    (a server that slept instead, or skipped the work, spends almost none)."""
    p, port = served
    before = cpu_s(p.pid)
    for _ in range(5):
        assert ask(port, b"x\n").startswith("t ")
        http = ask(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 8)
        assert "X-Peak-Endpoint: t" in http
    spent = cpu_s(p.pid) - before
    assert spent >= 0.5 - 2 / TICK, spent


@pytest.mark.parametrize("served", [[]], indirect=True)
def test_no_work_by_default(served):
    p, port = served
    before = cpu_s(p.pid)
    for _ in range(10):
        assert ask(port, b"x\n").startswith("t ")
    assert cpu_s(p.pid) - before < 0.25


@pytest.mark.parametrize("val", ["x", "-1", "1000001", ""])
def test_work_us_bad_values(val):
    p = subprocess.run([PEAK, "serve", "--port", "1", "--work-us", val], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "--work-us" in lines[0], p.stderr
