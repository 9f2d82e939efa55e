"""A pod that goes silent while its process lives (SIGSTOP: the kernel still completes TCP
handshakes for it, nothing reads or answers) is taken out fast, and a pod that is slow but
answers is not. Topology: the cluster of test_agent.py (one node, pod-a and pod-b, no
controller: the agent's local failover re-points pod-a's routes at pod-b).

The agent's checks at their defaults: every 30 ms (jittered), each answered by the first byte
of the reply to a HEAD request within 100 ms, 3 misses in a row mark the pod down: 146-176 ms
after the first missed check was sent, by the agent's own account (checked against the
jittered schedule below); then its connections are reset once its slices moved, so the
clients caught by the stop reconnect to the new owner at once. The wall-clock bound asserted
in the first test (1 s) is loose for a loaded machine and an ASan build; bench/ingress/run.py
--scenarios stop,silent measures the real figure against the proxies."""
import datetime
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from agentns import in_netns  # noqa: E402
from test_agent import PEAK, SOURCES, cl, config  # noqa: E402,F401
from test_failover import metrics, owners, rule, start, wait_until, watches  # noqa: E402

A = "2001:db8:100:1::a"

# Stops and continues a process in a duty cycle from a real-time thread, so the cycle keeps
# its shape on a loaded machine: each stop is short of the checks' timeout. It cycles until
# SIGTERM (or total_s), then leaves the process running and prints the cycles it made.
CYCLER = """
import os, signal, sys, time
pid, stop_s, run_s, total_s = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), \
    float(sys.argv[4])
end = time.monotonic() + total_s
running = [True]
signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
print("cycling", flush=True)
cycles = 0
while running[0] and time.monotonic() < end:
    os.kill(pid, signal.SIGSTOP)
    time.sleep(stop_s)
    os.kill(pid, signal.SIGCONT)
    time.sleep(run_s)
    cycles += 1
os.kill(pid, signal.SIGCONT)
print(cycles, flush=True)
"""


def down_at(log, ep, after):
    """The time (seconds since the epoch) of the first log line at or after after that took
    endpoint ep down (one at the start, a pod slower to listen than the checks, is older)."""
    for line in log.splitlines():
        if f"endpoint {ep} is down" in line:
            t = datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
            t = t.replace(tzinfo=datetime.timezone.utc).timestamp()
            if t >= after - 0.001:  # the log's milliseconds
                return t
    raise AssertionError(f"{ep} did not go down after {after}:\n{log}")


def up_and_checked(c, *agent_args):
    """Both pods serving, the agent checking them (agent_args added to its command line):
    both own slices and the agent has answered checks of both. Returns the pods' processes
    by id and the agent's."""
    c.cfg.write_text(config(c.tag))
    pods = {n: start(c, ns, PEAK, "serve", "--port", "8080", "--id", n)
            for ns, n in ((c.a, "pod-a"), (c.b, "pod-b"))}
    # both listen before the agent's first checks: refused ones would take a pod out (and log
    # it) at the start, before what a test looks at
    assert wait_until(lambda: all(f"serve: {n} on port 8080" in p.log.read_text()
                                  for n, p in pods.items()))
    agent = start(c, c.n, PEAK, "agent", "--config", str(c.cfg), "--node", "node1",
                  "--metrics", "[::1]:9100", *agent_args)
    assert wait_until(lambda: all(owners(c).values()))
    assert wait_until(lambda: watches(agent) == 2)
    assert wait_until(lambda: metrics(c).get('peak_agent_health_checks_total{result="ok"}', 0)
                      >= 20)
    return pods, agent


def test_stopped_pod_is_taken_out_fast(cl, tmp_path):
    pods, agent = up_and_checked(cl)
    before = owners(cl)
    pid = pods["pod-a"].pid  # ip netns exec execs peak serve: the same PID
    t0 = time.time()
    os.kill(pid, signal.SIGSTOP)
    try:
        assert wait_until(lambda: owners(cl)[A] == [], 10)
        # from the agent's own log line, not from this loop's polls of the routes (each an
        # 'ip' process: slow on a loaded machine)
        secs = down_at(agent.log.read_text(), "pod-a", t0) - t0
        # printed, not bounded (a loaded machine and an ASan build stretch it); the
        # mechanism is asserted: the checks found it (3 misses), not the pidfd
        print(f"stopped pod taken out after {secs * 1000:.0f} ms")
        log = agent.log.read_text()
        assert "endpoint pod-a is down after 3 missed checks" in log, log
        assert "server process exited" not in log
        # its slices are served by pod-b now, all of them
        assert sorted(owners(cl)["2001:db8:100:2::b"]) == sorted(before[A] +
                                                                 before["2001:db8:100:2::b"])
    finally:
        os.kill(pid, signal.SIGCONT)
    # answering again: back after two answered checks
    assert wait_until(lambda: owners(cl) == before, 5)
    assert agent.poll() is None


def test_stopped_pod_is_missed_by_connect_checks(cl, tmp_path):
    """What the request is for: with --hc-check connect the kernel's handshakes answer for
    the stopped pod, and it stays in (the check counters show answers throughout)."""
    pods, agent = up_and_checked(cl, "--hc-check", "connect")
    pid = pods["pod-a"].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        ok0 = metrics(cl)['peak_agent_health_checks_total{result="ok"}']
        # 20 more answered checks (about 0.3 s at 30 ms: past the 0.22 s the http check needs)
        assert wait_until(lambda: metrics(cl)['peak_agent_health_checks_total{result="ok"}']
                          >= ok0 + 20)
        assert owners(cl)[A] != []
        assert "endpoint pod-a is down" not in agent.log.read_text()
    finally:
        os.kill(pid, signal.SIGCONT)


def test_slow_but_answering_pod_stays(cl, tmp_path):
    """No false failover: pod-a is stopped for 50 ms out of every 75, and loaded by a client
    meanwhile (2.5 s), until the agent has answered 40 more checks; every check is answered
    late (up to 50 ms) but within the timeout, so it is never taken out."""
    pods, agent = up_and_checked(cl)
    # "Late" must be what the cycler makes it: on a loaded machine (2 cores, both builds'
    # suites) a pod or agent waiting for a CPU for 100 ms is silent in fact. The pod and the
    # agent run at a real-time priority below the cycler's, so the judgment is tested, not
    # the machine's scheduling.
    for pid in (pods["pod-a"].pid, agent.pid):
        subprocess.run(["chrt", "-f", "-p", "10", str(pid)], check=True)
    before = owners(cl)
    load = subprocess.Popen(["ip", "netns", "exec", cl.n, PEAK, "load", f"[{A}]:8080",
                             "--concurrency", "8", "--duration", "2.5", "--timeout", "1000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cl.procs.append(load)
    cyc = subprocess.Popen(["chrt", "-f", "20", "/usr/bin/python3", "-c", CYCLER,
                            str(pods["pod-a"].pid), "0.05", "0.025", "120"],
                           stdout=subprocess.PIPE, text=True)
    cl.procs.append(cyc)
    ok = 'peak_agent_health_checks_total{result="ok"}'
    try:
        assert cyc.stdout.readline() == "cycling\n"
        ok0 = metrics(cl)[ok]
        # checked throughout: the cycle runs until the agent has answered 40 more checks and
        # the load has ended (a condition, not a fixed window: an ASan agent checks slower)
        assert wait_until(lambda: load.poll() is not None and metrics(cl)[ok] >= ok0 + 40,
                          60)
    finally:
        cyc.terminate()
        out, _ = cyc.communicate(timeout=30)
        os.kill(pods["pod-a"].pid, signal.SIGCONT)
    assert cyc.returncode == 0
    print(f"pod-a stopped and continued {out.strip()} times")
    assert int(out) >= 3  # it was cycled (2.5 s of load at least: some 30 cycles)
    out, err = load.communicate(timeout=30)
    assert load.returncode == 0, err
    assert "ok" in out  # it served the load meanwhile
    m = metrics(cl)
    assert "endpoint pod-a is down" not in agent.log.read_text()
    assert owners(cl) == before
    assert m['peak_agent_endpoint_healthy{service="api.svc.example.",endpoint="pod-a"}'] == 1


def keepalive_client(cl, slices):
    """A connection from the client namespace to an address in one of slices (a source whose
    rule lands there), answered once by peak serve's line protocol; returns it and the
    source and destination it used."""
    nets = [ipaddress.ip_network(n) for n in slices]
    for src in SOURCES:
        dst = rule(src)
        if any(ipaddress.ip_address(dst) in n for n in nets):
            break
    else:
        raise AssertionError(f"no source of {len(SOURCES)} lands in {slices}")

    def connect():
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind((src, 0))
        s.settimeout(10)
        s.connect((dst, 8080))
        return s
    s = in_netns(cl.c, connect)
    s.sendall(b"first\n")
    return s, s.recv(200).split()[0].decode(), src, dst, connect


def test_stopped_pods_clients_are_reset_once_its_slices_moved(cl, tmp_path):
    """A client whose request waits on a stopped pod (its kernel acknowledged the request,
    nothing will answer) is told at once when the pod is taken out: the agent resets the
    pod's connections after the routes moved, and the client's reconnection to the same
    address is served by the slices' new owner at its first try. Without the resets the
    client hears nothing until its own timeout (here: the 10 s of this socket)."""
    pods, agent = up_and_checked(cl)
    s, first, src, dst, connect = keepalive_client(cl, owners(cl)[A])
    assert first == "pod-a"
    pid = pods["pod-a"].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        s.sendall(b"second\n")  # acknowledged by pod-a's kernel; its process is stopped
        with pytest.raises(ConnectionResetError):
            got = s.recv(200)  # (b"": closed; data: answered; socket.timeout: not told)
            raise AssertionError(f"not reset: {got!r}")
        s.close()
        # (the agent logs the resets once they are all done: after this one arrived)
        assert wait_until(lambda: re.search(r"endpoint pod-a: [1-9]\d* connections reset, "
                                            r"its slices routed elsewhere",
                                            agent.log.read_text())), agent.log.read_text()
        assert "endpoint pod-a is down after" in agent.log.read_text()
        # routes before resets: the reconnection reaches the new owner, the first time
        s = in_netns(cl.c, connect)
        s.sendall(b"third\n")
        assert s.recv(200).split()[0] == b"pod-b"
        s.close()
        assert metrics(cl)["peak_agent_connections_reset_total"] >= 1
    finally:
        os.kill(pid, signal.SIGCONT)
    assert wait_until(lambda: owners(cl)[A] != [], 5)


def test_pod_stays_down_without_a_reset_while_its_slices_stay(cl, tmp_path):
    """No reset while the down pod still has its slices (no live pod to move them to, no
    controller): its clients would only reconnect to it. pod-b is stopped first, and then
    pod-a: pod-b's slices went to pod-a and its connections were reset; pod-a keeps every
    slice and its connection stays (answered once it runs again)."""
    pods, agent = up_and_checked(cl)
    s, first, _, _, _ = keepalive_client(cl, owners(cl)[A])
    assert first == "pod-a"
    try:
        os.kill(pods["pod-b"].pid, signal.SIGSTOP)
        assert wait_until(lambda: owners(cl)["2001:db8:100:2::b"] == [], 10)
        os.kill(pods["pod-a"].pid, signal.SIGSTOP)
        assert wait_until(lambda: "endpoint pod-a is down" in agent.log.read_text(), 10)
        assert owners(cl)[A] != []
        s.sendall(b"second\n")
        os.kill(pods["pod-a"].pid, signal.SIGCONT)
        assert s.recv(200).split()[0] == b"pod-a"  # the same connection, never reset
        assert "endpoint pod-a: " not in agent.log.read_text()
    finally:
        os.kill(pods["pod-a"].pid, signal.SIGCONT)
        os.kill(pods["pod-b"].pid, signal.SIGCONT)
        s.close()


@pytest.mark.parametrize("down,interval", [(3, 30), (5, 20)])
def test_stopped_pod_detected_after_n_misses_at_the_interval(cl, tmp_path, down, interval):
    """The mechanism of the detection, read from the agent's own account of it (its log
    line names the misses in a row and the time since the first of them was sent): a stopped
    pod goes down after exactly --hc-down missed checks, no sooner than the timeout (100 ms)
    plus (down - 1) jittered periods at their shortest (3/4 of --hc-interval), and no later
    than that with the longest periods (5/4) plus a slack for the agent's scheduling (it
    runs at a real-time priority here, so a loaded machine does not stretch its clock). The
    defaults (3 misses, 30 ms): 146-176 ms."""
    pods, agent = up_and_checked(cl, "--hc-down", str(down), "--hc-interval", str(interval),
                                 "--hc-fast-interval", str(interval))
    subprocess.run(["chrt", "-f", "-p", "10", str(agent.pid)], check=True)
    pid = pods["pod-a"].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        assert wait_until(lambda: "endpoint pod-a is down" in agent.log.read_text(), 10)
        m = re.search(r"endpoint pod-a is down after (\d+) missed checks, the first sent "
                      r"(\d+) ms before", agent.log.read_text())
        assert m, agent.log.read_text()
        misses, span = int(m.group(1)), int(m.group(2))
        print(f"down after {misses} misses over {span} ms")
        assert misses == down
        lo = interval - interval // 4  # a jittered period: lo .. lo + interval // 2
        assert span >= 100 + (down - 1) * lo, span
        assert span <= 100 + (down - 1) * (lo + interval // 2) + 60, span
    finally:
        os.kill(pid, signal.SIGCONT)


def busy_pod(cl, burn_s):
    """pod-a: a server that burns the CPU for burn_s once (1 s after it listens), answering
    nothing meanwhile, and answers every check before and after (the regression test's
    server); pod-b: peak serve; the agent checking both. Returns the busy server and the
    agent."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "regress"))
    from test_health_busy_pod_not_failed import BUSY
    c = cl
    c.cfg.write_text(config(c.tag))
    busy = start(c, c.a, "/usr/bin/python3", "-c", BUSY, str(burn_s), "0", "1")
    serve = start(c, c.b, PEAK, "serve", "--port", "8080", "--id", "pod-b")
    assert wait_until(lambda: "listening" in busy.log.read_text() and
                      "serve: pod-b on port 8080" in serve.log.read_text())
    agent = start(c, c.n, PEAK, "agent", "--config", str(c.cfg), "--node", "node1",
                  "--metrics", "[::1]:9100")
    # the agent at a real-time priority: the misses counted are the busy pod's, not those of
    # an agent waiting for a CPU on a loaded machine (the busy pod takes one)
    subprocess.run(["chrt", "-f", "-p", "10", str(agent.pid)], check=True)
    assert wait_until(lambda: all(owners(c).values()))
    assert wait_until(lambda: watches(agent) == 2)
    return busy, agent


def test_pod_busy_for_most_of_a_second_stays(cl, tmp_path):
    """A pod that runs flat out and answers nothing for 0.7 s (a saturated machine: the
    ingress bench's steady state took a serving pod out after 0.48 s without an answer)
    stays in: a running pod goes only after 4 x --hc-down misses and at least 1 s. It missed
    more than 12 checks meanwhile (4 x 3: enough to take it out before)."""
    busy, agent = busy_pod(cl, 0.7)
    before = owners(cl)
    assert wait_until(lambda: "burst 1" in busy.log.read_text(), 15)
    ok = 'peak_agent_health_checks_total{result="ok"}'
    n = metrics(cl)[ok]
    assert wait_until(lambda: metrics(cl)[ok] >= n + 6)  # answering again, judged
    log = agent.log.read_text()
    assert "endpoint pod-a is down" not in log, log
    assert "busy, kept in" in log, log
    assert metrics(cl)['peak_agent_health_checks_total{result="fail"}'] >= 13
    assert owners(cl) == before


def test_pod_running_but_answering_nothing_goes_after_a_second(cl, tmp_path):
    """A pod that runs and answers nothing for longer (livelocked) is taken out, by the
    agent's account after at least 12 misses and 1 s since the first was sent."""
    busy, agent = busy_pod(cl, 4)
    assert wait_until(lambda: "endpoint pod-a is down" in agent.log.read_text(), 15)
    m = re.search(r"endpoint pod-a is down after (\d+) missed checks, the first sent (\d+) ms "
                  r"before \(busy, but answering nothing\)", agent.log.read_text())
    assert m, agent.log.read_text()
    assert int(m.group(1)) >= 12 and int(m.group(2)) >= 1000, m.group(0)
