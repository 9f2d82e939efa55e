"""peak_agent_endpoint_cpu_seconds_total went down when a pod's process exited.

Seen: the agent published, as a counter, the sum of the CPU time of the processes living in
the pod's namespace; when one of them exited its time left the sum and the "counter"
dropped (to 0 when the pod's last process ended), which rate() reads as a counter reset
and turns into a bogus spike. The same value went to the controller.

Here: a process in the pod burns CPU, the counter rises; the process exits; after several
load rounds the counter has not gone down; and a reload keeps it."""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import CONFIG, agent_ns, ip, wait_until  # noqa: E402

KEY = 'peak_agent_endpoint_cpu_seconds_total{service="b.svc.example.",endpoint="b1"}'
SYNCS = 'peak_agent_syncs_total{result="ok"}'


def test_cpu_counter_never_decreases(tmp_path):
    with agent_ns(tmp_path, "rgcpu") as ns:
        pod = ns.name + "p"
        burner = None
        try:
            ip("netns", "add", pod)
            ns.cfg.write_text(CONFIG.replace('node: node1}\n      - {id: b2',
                                             f'node: node1, netns: {pod}}}\n      - {{id: b2'))
            agent = ns.start_agent("--metrics", "[::1]:9100")
            burner = subprocess.Popen(
                ["ip", "netns", "exec", pod, "/usr/bin/python3", "-c",
                 "import sys,time\nt=time.process_time()\n"
                 "while time.process_time()-t<0.4: pass\n"
                 "print('burnt', flush=True); sys.stdin.read()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert burner.stdout.readline() == "burnt\n"
            assert wait_until(lambda: ns.metrics().get(KEY, 0) >= 0.3), ns.metrics().get(KEY)
            high = ns.metrics()[KEY]
            burner.kill()
            burner.wait()
            # several load rounds (one per sync, every 100 ms) after the process is gone
            syncs = ns.metrics()[SYNCS]
            assert wait_until(lambda: ns.metrics()[SYNCS] >= syncs + 4)
            assert ns.metrics()[KEY] >= high
            agent.send_signal(signal.SIGHUP)
            assert wait_until(lambda: "agent: reloaded" in ns.log.read_text())
            assert ns.metrics()[KEY] >= high
            syncs = ns.metrics()[SYNCS]
            assert wait_until(lambda: ns.metrics()[SYNCS] >= syncs + 4)
            assert ns.metrics()[KEY] >= high
            assert agent.poll() is None
        finally:
            if burner and burner.poll() is None:
                burner.kill()
                burner.wait()
            subprocess.run(["ip", "netns", "del", pod], capture_output=True)
