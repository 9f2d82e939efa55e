"""Exit status of the client commands: 2 is for usage and bad input, 1 for run-time failures.
'peak resolve' and 'peak connect' exited 2 (usage) when the machine had no name server in
/etc/resolv.conf, a run-time condition; 'peak load' exited 1 for a malformed address list
or a '--server' that is no address, which are bad input."""
import os
import subprocess

import pytest

PEAK = os.environ.get("PEAK_BIN", "build/peak")


def run(*args):
    return subprocess.run([PEAK, *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("args, why", [
    (["load", "[::1]:80,nonsense"], "'nonsense' is not [IPV6]:PORT or IPV4:PORT"),
    (["load", "[::1]:0"], "the port is 0"),
    (["load", "[::1]:80," + "x" * 200], "too long a list or item"),
    (["load", "api.svc.example.", "--server", "nonsense"], "--server"),
    (["resolve", "api.svc.example.", "--server", "nonsense"], "--server"),
    (["connect", "api.svc.example.", "80", "--server", "nonsense"], "--server"),
])
def test_bad_input_exits_2(args, why):
    p = run(*args)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert why in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


@pytest.fixture
def no_resolv_conf(tmp_path):
    """Runs a command in a private mount namespace whose /etc/resolv.conf names no server."""
    empty = tmp_path / "resolv.conf"
    empty.write_text("# no nameserver\n")

    def run_there(*args):
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               'mount --bind "$0" /etc/resolv.conf && exec "$@"',
                               str(empty), PEAK, *args],
                              capture_output=True, text=True, timeout=30)
    return run_there


@pytest.mark.parametrize("args", [
    ["resolve", "api.svc.example."],
    ["connect", "api.svc.example.", "80"],
    ["load", "api.svc.example.", "--duration", "0.1"],
])
def test_no_name_server_exits_1(no_resolv_conf, args):
    p = no_resolv_conf(*args)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "no name server in /etc/resolv.conf" in p.stderr, p.stderr
