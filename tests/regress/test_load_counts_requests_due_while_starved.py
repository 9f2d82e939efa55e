"""Regression: peak load (open loop) left out the requests that fell due while it did not run.
A worker that woke after the run's end stopped at once: requests due between its last pass and
the end were neither started nor counted, so a starved generator reported fewer sent (a lower
rate) instead of requests it owed. Now they count as sent and unfinished.

Made deterministic with SIGSTOP: a 3 s run at 400/s against a target with no route (each
connect fails at once), stopped after its first progress line (1 s) until past its end. All
1200 due requests must be in `sent`, those never started among `unfinished`; before, sent was
about 400."""
import json
import os
import signal
import subprocess
import time

import pytest

PEAK = os.environ.get("PEAK_BIN", "build/peak")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


@pytest.fixture
def noroute():
    name = f"rgls{os.getpid() % 10000}x"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_requests_due_while_stopped_are_counted(noroute):
    p = subprocess.Popen([*noroute, PEAK, "load", "[2001:db8::1]:80", "--rate", "400",
                          "--duration", "3", "--json", "--progress"],
                         stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()  # the first progress line, about 1 s in
        assert line.startswith("peak load: 1 s"), line
        p.send_signal(signal.SIGSTOP)
        try:
            time.sleep(3.0)  # the stimulus: stopped until past the run's end
        finally:
            p.send_signal(signal.SIGCONT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    r = json.loads(out)
    assert r["sent"] == 1200, r
    assert r["ok"] + r["failed"] + r["unfinished"] == r["sent"], r
    assert r["unfinished"] >= 400, r  # the last 2 s were never started
