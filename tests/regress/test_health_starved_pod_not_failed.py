"""A serving pod that a loaded host starved of CPU was taken out (and its clients' connections
broke: the controller moves a downed pod's slices without a handover).

Seen: tests/cluster/test_handover.py failed 1 run in 6 and the ingress bench's "a pod added"
broke 2 PEAK connections in a CI run with two suites at once: a live pod missed three 100 ms
checks in a row while it waited for a CPU. The busy-pod rule spared only a pod whose process
ran; a pod that is runnable but not given a CPU looked like a stopped one. A miss now also
takes a process that is runnable (state R: woken by the checks, waiting for a CPU) as busy.

Here: pod-a's server and a real-time CPU hog share CPU 0 (the agent runs on CPU 1); the hog
starves pod-a for 300 ms, during which every check misses. pod-a must stay in. Then pod-a is
stopped (SIGSTOP: not runnable, so it neither runs nor waits) and must go as fast as before."""
import os
import signal
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
from test_agent import PEAK, cl, config  # noqa: E402,F401
from test_failover import metrics, owners, start, wait_until, watches  # noqa: E402

HOG = """
import os, sys, time
os.sched_setaffinity(0, {0})
os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
sys.stdin.readline()
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:  # CPU 0 is ours: nothing of lower priority runs there
    pass
print("done", flush=True)
"""

pytestmark = pytest.mark.skipif(os.cpu_count() < 2, reason="needs two CPUs")


def test_starved_pod_stays_and_a_stopped_one_goes(cl, tmp_path):
    cl.cfg.write_text(config(cl.tag))
    pod = start(cl, cl.a, "taskset", "-c", "0", PEAK, "serve", "--port", "8080", "--id", "pod-a")
    serve = start(cl, cl.b, PEAK, "serve", "--port", "8080", "--id", "pod-b")
    assert wait_until(lambda: "serve: pod-a on port 8080" in pod.log.read_text() and
                      "serve: pod-b on port 8080" in serve.log.read_text())
    # the agent at a real-time priority too (below the hog's, on the other CPU): the misses
    # counted must be the starved pod's, not those of an agent starved by a loaded machine
    agent = start(cl, cl.n, "taskset", "-c", "1", "chrt", "-f", "5", PEAK, "agent", "--config",
                  str(cl.cfg), "--node", "node1", "--metrics", "[::1]:9100")
    assert wait_until(lambda: all(owners(cl).values()))
    assert wait_until(lambda: watches(agent) == 2)  # it knows both server processes
    before = owners(cl)
    hog = subprocess.Popen(["/usr/bin/python3", "-c", HOG, "0.3"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    try:
        failed = 'peak_agent_health_checks_total{result="fail"}'
        n = metrics(cl)[failed]
        hog.stdin.write("go\n")
        hog.stdin.flush()
        assert hog.stdout.readline() == "done\n"
    finally:
        hog.kill()
        hog.wait()
    # the misses of the starved stretch judged: pod-a answers again
    ok = 'peak_agent_health_checks_total{result="ok"}'
    m = metrics(cl)[ok]
    assert wait_until(lambda: metrics(cl)[ok] >= m + 6)
    log = agent.log.read_text()
    assert metrics(cl)[failed] >= n + 3, (n, metrics(cl)[failed], log[-1500:])  # it did miss
    assert "endpoint pod-a is down" not in log, log
    assert owners(cl) == before
    # stopped, it neither runs nor waits to: out after 3 misses as before
    os.kill(pod.pid, signal.SIGSTOP)  # ip netns exec execs taskset, which execs peak
    try:
        assert wait_until(lambda: "endpoint pod-a is down" in agent.log.read_text(), 10)
        line = next(ln for ln in agent.log.read_text().splitlines()
                    if "endpoint pod-a is down" in ln)
        assert "busy" not in line, line
    finally:
        os.kill(pod.pid, signal.SIGCONT)
