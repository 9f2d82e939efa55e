"""Issue 19: a false failover under load. With the agent's checks at their defaults (every
30 ms, 100 ms timeout, 3 misses in a row) a pod that was serving but busy (its process
running flat out, its answers queued behind the work) missed three checks in a row and was
taken out, in the ingress bench's steady state. A miss now reads the CPU time of the pod's
server process: a pod that runs is busy, not dead, and is taken out only after four times
as many misses; one that does not run (stopped, hung, cut off) goes as fast as before.

Topology (tests/cluster/test_agent.py): one node, pod-a and pod-b, no controller.

    [N] agent --- pod-a: a server that burns the CPU for 300 ms every 0.5 s, then answers
              \\-- pod-b: peak serve

Here: four bursts keep pod-a in (the checks miss, the log says it is busy), then pod-a is
stopped (SIGSTOP) and is taken out as fast as before: after 3 missed checks, not 12 (the
seconds are printed: a wall-clock bound fails on a loaded machine)."""
import datetime
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
from test_agent import PEAK, cl, config  # noqa: E402,F401
from test_failover import metrics, owners, start, wait_until, watches  # noqa: E402

A = "2001:db8:100:1::a"

BUSY = """
import socket, sys, time
burn_s, gap_s, bursts = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 8080))
s.listen(1024)
print("listening", file=sys.stderr, flush=True)
s.settimeout(0.005)
start = time.monotonic() + 1.0
n = 0
while True:
    if n < bursts and time.monotonic() >= start + n * (burn_s + gap_s):
        end = time.monotonic() + burn_s  # a load spike: running, answering nothing
        while time.monotonic() < end:
            pass
        n += 1
        print(f"burst {n}", file=sys.stderr, flush=True)
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    try:
        c.settimeout(0.2)
        c.recv(4096)
        c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n")
    except OSError:
        pass
    c.close()
"""


def log_time(line):
    t = datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
    return t.replace(tzinfo=datetime.timezone.utc).timestamp()


def test_busy_pod_stays_and_a_stopped_one_goes_fast(cl, tmp_path):
    cl.cfg.write_text(config(cl.tag))
    busy = start(cl, cl.a, "/usr/bin/python3", "-c", BUSY, "0.3", "0.5", "4")
    serve = start(cl, cl.b, PEAK, "serve", "--port", "8080", "--id", "pod-b")
    # both pods listen before the agent's first checks (refused ones would take pod-a out
    # at once: 3 refusals in ~100 ms, before any burst)
    assert wait_until(lambda: "listening" in busy.log.read_text() and
                      "serve: pod-b on port 8080" in serve.log.read_text())
    agent = start(cl, cl.n, PEAK, "agent", "--config", str(cl.cfg), "--node", "node1",
                  "--metrics", "[::1]:9100")
    assert wait_until(lambda: all(owners(cl).values()))
    assert wait_until(lambda: watches(agent) == 2)  # it knows both server processes
    before = owners(cl)
    # the bursts: 1 s after the start, then every 0.8 s
    assert wait_until(lambda: busy.log.read_text().count("burst") == 4, 15)
    # the last burst's checks judged: the pod answers again (checks are judged oldest first)
    ok = 'peak_agent_health_checks_total{result="ok"}'
    n = metrics(cl)[ok]
    assert wait_until(lambda: metrics(cl)[ok] >= n + 6)
    log = agent.log.read_text()
    assert "endpoint pod-a is down" not in log, log
    assert "endpoint pod-a missed" in log and "busy, kept in" in log, log  # it did miss
    assert metrics(cl)['peak_agent_health_checks_total{result="fail"}'] >= 3
    assert owners(cl) == before
    # a real failure is found as fast as before: stopped, it does not run
    t0 = time.time()
    os.kill(busy.pid, signal.SIGSTOP)  # ip netns exec execs python: the same PID
    try:
        assert wait_until(lambda: "endpoint pod-a is down" in agent.log.read_text(), 10)
        line = next(ln for ln in agent.log.read_text().splitlines()
                    if "endpoint pod-a is down" in ln)
        secs = log_time(line) - t0
        print(f"stopped pod taken out after {secs * 1000:.0f} ms")
        assert "is down after 3 missed checks" in line, line
        assert "busy" not in line
    finally:
        os.kill(busy.pid, signal.SIGCONT)
