"""The agent attaches the XDP filter where the configuration asks (nodes[].filter-dev) and
exports its counters; on the cluster of test_agent.py (root)."""
import ipaddress
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from test_agent import DESC, PEAK, SOURCES, cl, config  # noqa: E402,F401

OBJ = os.environ.get("FILTER_OBJ", "build/filter.bpf.o")


def rule(src):
    return subprocess.run([PEAK, "ssa", "compute", "--prefix", "2001:db8:5::/64", "--descriptor",
                           DESC, "--source", src], capture_output=True, text=True,
                          check=True).stdout.strip()


def reach(c, src, dst, wait=2.5):
    r = subprocess.run(["ip", "netns", "exec", c.c, "curl", "-s", "--max-time", str(wait),
                        "--interface", src, f"http://[{dst}]:8080/"], capture_output=True,
                       text=True)
    return r.returncode == 0 and r.stdout.startswith("pod-")


def metrics(c):
    text = subprocess.run(["ip", "netns", "exec", c.n, "curl", "-s", "http://[::1]:9110/metrics"],
                          capture_output=True, text=True, check=True).stdout
    return {k: float(v) for k, v in (ln.rsplit(" ", 1) for ln in text.splitlines()
                                      if ln and not ln.startswith("#"))}


def pf(c, *args):
    # nsenter switches only the network namespace: 'ip netns exec' would hide /sys/fs/bpf
    return subprocess.run(["nsenter", f"--net=/run/netns/{c.n}", PEAK, "filter", *args,
                           "--dev", "n0"], capture_output=True, text=True)


def test_agent_puts_the_filter_on_its_node(cl, tmp_path):
    try:
        agent_filter(cl, tmp_path)
    finally:
        pf(cl, "detach")  # the agent leaves its filter (and its pins) in place


def agent_filter(cl, tmp_path):
    cl.cfg.write_text(config(cl.tag).replace("{name: node1}", "{name: node1, filter-dev: n0}"))
    for pod, name in ((cl.a, "pod-a"), (cl.b, "pod-b")):
        p = subprocess.Popen(["ip", "netns", "exec", pod, PEAK, "serve", "--port", "8080", "--id",
                              name], stderr=subprocess.PIPE, text=True)
        cl.procs.append(p)
        # listening before the agent's first checks (a refused one would take it out a while)
        assert "serve: " in p.stderr.readline()
    log = open(tmp_path / "agent.log", "w")
    # nsenter, not 'ip netns exec' (which hides /sys/fs/bpf): the agent pins its filter
    agent = subprocess.Popen(["nsenter", f"--net=/run/netns/{cl.n}", PEAK, "agent", "--config",
                              str(cl.cfg), "--node", "node1", "--metrics", "[::1]:9110",
                              "--filter-object", OBJ], stderr=log)
    cl.procs.append(agent)
    deadline = time.time() + 10
    while "XDP filter attached to n0" not in (tmp_path / "agent.log").read_text():
        assert time.time() < deadline and agent.poll() is None, \
            (tmp_path / "agent.log").read_text()
        time.sleep(0.05)
    a, b = SOURCES[0], SOURCES[1]
    deadline = time.time() + 10
    while not reach(cl, a, rule(a), 1):
        assert time.time() < deadline
    assert reach(cl, b, rule(b))
    assert not reach(cl, a, rule(b))  # another client's address: dropped at the node
    # the agent's filter is pinned: the filter commands work on it, signatures included,
    # and the agent exports each signature's hits
    src64 = str(ipaddress.ip_network(a + "/64", strict=False))
    r = pf(cl, "signature", "add", "--src", src64, "--dport", "8080", "--tcp-flags", "syn/syn,ack")
    assert r.returncode == 0, r.stderr
    slot = r.stdout.split()[-1]
    assert reach(cl, a, rule(a))  # possibly bad, still delivered
    assert metrics(cl)[f'peak_agent_filter_signature_hits_total{{slot="{slot}"}}'] >= 1
    assert "possibly_bad" in pf(cl, "stats").stdout
    assert pf(cl, "signature", "del", "--slot", slot).returncode == 0
    assert not any(k.startswith("peak_agent_filter_signature_hits_total") for k in metrics(cl))
    m = metrics(cl)
    assert m['peak_agent_filter_packets_total{verdict="assumed_good"}'] >= 2
    assert m['peak_agent_filter_packets_total{verdict="known_good"}'] >= 2
    assert m['peak_agent_filter_packets_total{verdict="reject_slice"}'] + \
        m['peak_agent_filter_packets_total{verdict="reject_host"}'] >= 1
    agent.terminate()
    agent.wait()
    cl.procs.remove(agent)
    assert "xdp" in subprocess.run(["ip", "-n", cl.n, "link", "show", "n0"], capture_output=True,
                                   text=True).stdout  # it stays, like the routes
    assert not reach(cl, a, rule(b), 1.5)
