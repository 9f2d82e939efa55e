"""Failover on the namespace cluster of test_agent.py: the agent health-checks its pods and
reports to the controller, which moves a dead pod's slices and tells the agent (routes) and
peak dns (answers). Clients keep their addresses."""
import ipaddress
import os
import re
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_agent import DESC, PEAK, SOURCES, cl, config  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))


def start(c, ns, *cmd):
    log = c.cfg.parent / f"log-{len(c.procs)}-{cmd[1]}"
    p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=subprocess.DEVNULL,
                         stderr=open(log, "w"), text=True)
    p.log = log
    c.procs.append(p)
    return p


def start_pods(c):
    """peak serve in both pods, each listening before this returns: an agent started after
    them finds them up at its first checks (refused checks would take a pod out at the start,
    and re-point its routes for a while)."""
    pods = {"pod-a": start(c, c.a, PEAK, "serve", "--port", "8080", "--id", "pod-a"),
            "pod-b": start(c, c.b, PEAK, "serve", "--port", "8080", "--id", "pod-b")}
    assert wait_until(lambda: all(f"serve: {n} on port 8080" in p.log.read_text()
                                  for n, p in pods.items()))
    return pods


def stop(c, p):
    p.terminate()
    p.wait(timeout=5)
    c.procs.remove(p)


def metrics(c, port=9100):
    text = subprocess.run(["ip", "netns", "exec", c.n, "curl", "-s",
                           f"http://[::1]:{port}/metrics"],
                          capture_output=True, text=True, check=True).stdout
    return {k: float(v) for k, v in (ln.rsplit(" ", 1) for ln in text.splitlines()
                                      if ln and not ln.startswith("#"))}


def wait_until(fn, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            return True
        time.sleep(0.02)
    return False


def watches(agent):
    """How many pods' server processes the agent watches (its pidfds)."""
    fds = f"/proc/{agent.pid}/fd"  # ip netns exec execs the agent: the same PID
    n = 0
    for f in os.listdir(fds):
        try:
            n += os.readlink(f"{fds}/{f}") == "anon_inode:[pidfd]"
        except FileNotFoundError:
            pass
    return n


def owners(c):
    return {gw: [str(ipaddress.ip_network(d)) for d, g, _ in c.routes() if g == gw]
            for gw in ("2001:db8:100:1::a", "2001:db8:100:2::b")}


def rule(src):
    return subprocess.run([PEAK, "ssa", "compute", "--prefix", "2001:db8:5::/64", "--descriptor",
                           DESC, "--source", src], capture_output=True, text=True,
                          check=True).stdout.strip()


def probe(c, src, dst, want, t0, timeout=5):
    r = subprocess.run(["ip", "netns", "exec", c.c, "/usr/bin/python3",
                        os.path.join(HERE, "probe.py"), src, dst, "8080", ",".join(want), str(t0),
                        str(time.time() + timeout)], capture_output=True, text=True, timeout=30)
    ep, secs = r.stdout.split()
    return ep, float(secs)


def test_pod_death_moves_its_slices_and_clients_recover(cl, tmp_path):
    cl.cfg.write_text(config(cl.tag))
    ctl_sock = str(tmp_path / "dns.ctl")
    dns = start(cl, cl.c, PEAK, "dns", "--config", str(cl.cfg), "--listen", "[::1]:5353",
                "--threads", "1", "--control", ctl_sock)
    start(cl, cl.n, PEAK, "controller", "--config", str(cl.cfg), "--listen", "[::1]:4000",
          "--dns-control", ctl_sock, "--metrics", "[::1]:9200")
    pods = start_pods(cl)
    agent = start(cl, cl.n, PEAK, "agent", "--config", str(cl.cfg), "--node", "node1",
                  "--controller", "[::1]:4000", "--metrics", "[::1]:9100")
    assert wait_until(lambda: "connected to controller" in agent.log.read_text())
    assert wait_until(lambda: all(owners(cl).values()))
    before = owners(cl)
    m = metrics(cl)
    assert m["peak_agent_controller_connected"] == 1
    assert m["peak_agent_slice_routes"] == sum(len(v) for v in before.values())
    assert m['peak_agent_endpoint_slices{service="api.svc.example.",endpoint="pod-a"}'] + \
        m['peak_agent_endpoint_slices{service="api.svc.example.",endpoint="pod-b"}'] == 16384
    # load: three open connections to pod-a, seen by the agent and reported to the controller
    src_a = [s for s in SOURCES if any(ipaddress.ip_address(rule(s)) in ipaddress.ip_network(n)
                                       for n in before["2001:db8:100:1::a"])][:3]
    # each holder keeps its connection open until the test closes its stdin (no fixed sleep:
    # the agent measures load once per --interval, 1 s, and an ASan build is slower)
    holders = [subprocess.Popen(["ip", "netns", "exec", cl.c, "/usr/bin/python3", "-c",
                                 "import socket,sys\n"
                                 "s=socket.socket(socket.AF_INET6)\n"
                                 f"s.bind(('{s}',0)); s.connect(('{rule(s)}',8080))\n"
                                 "print('up', flush=True); sys.stdin.read()"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for s in src_a]
    cl.procs.extend(holders)
    assert all(h.stdout.readline() == "up\n" for h in holders)
    key = '{service="api.svc.example.",endpoint="pod-a"}'
    # the three, not the agent's own health checks (up to 8 in flight every 30 ms: the agent
    # looks up the pod's side of each by its addresses and leaves it out)
    seen = []
    assert wait_until(lambda: seen.append(metrics(cl).get("peak_agent_endpoint_connections"
                                                           + key)) or seen[-1] == 3, 10), seen
    assert wait_until(lambda: metrics(cl, 9200).get("peak_controller_endpoint_connections" + key)
                      == 3, 10)
    assert metrics(cl, 9200)["peak_controller_endpoint_slices" + key] == \
        m["peak_agent_endpoint_slices" + key]
    assert metrics(cl)["peak_agent_endpoint_cpu_seconds_total" + key] > 0
    for h in holders:
        h.kill()
        h.wait()
        cl.procs.remove(h)
    # a client whose rule address lies in pod-a's slices
    nets_a = [ipaddress.ip_network(n) for n in before["2001:db8:100:1::a"]]
    src = next(s for s in SOURCES if any(ipaddress.ip_address(rule(s)) in n for n in nets_a))
    dst = rule(src)
    assert probe(cl, src, dst, {"pod-a"}, time.time())[0] == "pod-a"

    assert wait_until(lambda: watches(agent) == 2)  # it has found both pods' servers
    stop(cl, pods.pop("pod-a"))  # the pod dies: connections are refused from now on
    # the clock starts when the pod has exited (what the agent can see), not when it was
    # asked to: an ASan build's exit (its leak check) takes a while with the socket open
    t0 = time.time()
    ep, secs = probe(cl, src, dst, {"pod-b"}, t0)
    assert ep == "pod-b"  # same address, served by the slice's new owner
    print(f"failover: clients served again {secs:.3f} s after the pod died")
    # The agent watches the pod's server process: down at once, or after refused checks
    # 30 ms apart (an ASan build's exit, its leak check, closes the listener well before the
    # process ends, and runs meanwhile: 12 misses then; test_local_failover_without_a_controller
    # asserts the watch). Which of the two happened is asserted by the log line and the
    # counter below, not by the seconds (a wall-clock bound fails on a loaded machine;
    # make demo and bench/ measure them).
    log = agent.log.read_text()
    assert re.search(r"endpoint pod-a is down( \(its server process exited\)| after \d+ "
                     r"missed checks)", log), log
    assert metrics(cl)["peak_agent_fast_downs_total"] == \
        (1 if "pod-a is down (its server process exited)" in log else 0)
    assert wait_until(lambda: owners(cl)["2001:db8:100:1::a"] == [], 5)
    after = owners(cl)
    assert after["2001:db8:100:1::a"] == []
    st = subprocess.run([PEAK, "dns-ctl", "--control", ctl_sock, "status"], capture_output=True,
                        text=True).stdout
    assert "api.svc.example. pod-a down weight=1 slices=0" in st  # DNS heard it too
    m = metrics(cl)
    assert m['peak_agent_endpoint_healthy{service="api.svc.example.",endpoint="pod-a"}'] == 0
    assert m['peak_agent_endpoint_slices{service="api.svc.example.",endpoint="pod-b"}'] == 16384
    assert wait_until(lambda: metrics(cl)['peak_agent_health_checks_total{result="fail"}'] >= 1)

    # the pod comes back: after two good checks it gets its share again
    pods["pod-a"] = start(cl, cl.a, PEAK, "serve", "--port", "8080", "--id", "pod-a")
    assert wait_until(lambda: owners(cl)["2001:db8:100:1::a"], timeout=5)
    assert wait_until(lambda: "pod-a up" in subprocess.run(
        [PEAK, "dns-ctl", "--control", ctl_sock, "status"], capture_output=True,
        text=True).stdout, timeout=5)
    assert agent.poll() is None and dns.poll() is None


def test_controller_away_keeps_routes_then_nothing_moves(cl, tmp_path):
    cl.cfg.write_text(config(cl.tag))
    ctl = start(cl, cl.n, PEAK, "controller", "--config", str(cl.cfg), "--listen", "[::1]:4000")
    start_pods(cl)
    agent = start(cl, cl.n, PEAK, "agent", "--config", str(cl.cfg), "--node", "node1",
                  "--controller", "[::1]:4000", "--metrics", "[::1]:9100")
    assert wait_until(lambda: "connected to controller" in agent.log.read_text())
    # both pods healthy and the controller's two halves installed (a check missed on a loaded
    # machine re-points a pod's routes for a while: the snapshot waits for the steady state)
    healthy = [f'peak_agent_endpoint_healthy{{service="api.svc.example.",endpoint="{e}"}}'
               for e in ("pod-a", "pod-b")]
    assert wait_until(lambda: all(metrics(cl).get(k) == 1 for k in healthy) and
                      all(len(v) == 1 for v in owners(cl).values()))
    # the controller took the hello (it sends the maps right after saying so)
    assert wait_until(lambda: "agent of node node1 connected" in ctl.log.read_text())
    before = cl.routes()
    stop(cl, ctl)
    # fail static: the routes are the same once the agent has seen the controller go (its
    # log line), not after a fixed sleep that a loaded machine may not fill; the controller
    # may go before its maps reached the agent (the agent then says it ended the link after
    # the hello): the routes are kept all the same
    assert wait_until(lambda: "keeping the routes" in agent.log.read_text()), \
        agent.log.read_text()
    assert cl.routes() == before
    start(cl, cl.n, PEAK, "controller", "--config", str(cl.cfg), "--listen", "[::1]:4000")
    # the agent reconnects (backoff) and gets the maps again: the controller's two halves
    # installed again, then the routes are those from before
    assert wait_until(lambda: agent.log.read_text().count("connected to controller") >= 2)
    assert wait_until(lambda: metrics(cl).get("peak_agent_controller_connected") == 1)
    # rebuilt from the file and the reports: nothing moved (after a missed check's detour)
    assert wait_until(lambda: cl.routes() == before, 10), (cl.routes(), before)
    assert agent.poll() is None


def test_local_failover_without_a_controller(cl, tmp_path):
    """No controller: the agent alone re-points a dead pod's routes at the live pod on the
    node at once, and back when the pod serves again."""
    cl.cfg.write_text(config(cl.tag))
    pods = start_pods(cl)
    agent = start(cl, cl.n, PEAK, "agent", "--config", str(cl.cfg), "--node", "node1",
                  "--metrics", "[::1]:9100")
    assert wait_until(lambda: all(owners(cl).values()))
    before = owners(cl)
    # the agent has found the pods' server processes (it looks once per check round)
    assert wait_until(lambda: watches(agent) == 2)
    nets_a = [ipaddress.ip_network(n) for n in before["2001:db8:100:1::a"]]
    src = next(s for s in SOURCES if any(ipaddress.ip_address(rule(s)) in n for n in nets_a))
    dst = rule(src)
    assert probe(cl, src, dst, {"pod-a"}, time.time())[0] == "pod-a"
    t0 = time.time()
    pods.pop("pod-a").kill()  # SIGKILL: no goodbye from the pod
    ep, secs = probe(cl, src, dst, {"pod-b"}, t0)
    # at once through the pidfd watch (the counter below says which way it went; the seconds
    # are printed, not bounded: a loaded machine stretches them)
    print(f"local failover: clients served again {secs:.3f} s after the kill")
    assert ep == "pod-b", (ep, secs)
    after = owners(cl)
    assert after["2001:db8:100:1::a"] == []
    # the same prefixes, now all via pod-b: nothing was recomputed, only gateways changed
    assert sorted(after["2001:db8:100:2::b"]) == sorted(before["2001:db8:100:1::a"] +
                                                        before["2001:db8:100:2::b"])
    m = metrics(cl)
    assert m["peak_agent_failover_routes"] == len(before["2001:db8:100:1::a"])
    # the kernel closes a killed process's sockets before its pidfd says it exited: on a loaded
    # machine the checks' refusals can win the race (the log says which way it went)
    assert m["peak_agent_fast_downs_total"] == \
        (1 if "pod-a is down (its server process exited)" in agent.log.read_text() else 0)
    # back: two good checks, then its own routes again
    pods["pod-a"] = start(cl, cl.a, PEAK, "serve", "--port", "8080", "--id", "pod-a")
    assert wait_until(lambda: owners(cl) == before, 5)
    assert metrics(cl)["peak_agent_failover_routes"] == 0
    assert probe(cl, src, dst, {"pod-a"}, time.time())[0] == "pod-a"
    assert agent.poll() is None


def test_silent_pod_is_down_fast(cl, tmp_path):
    """A pod that stops answering (its packets dropped; the process lives on, so only the
    checks can tell): checks every 30 ms (jittered), each missed when not answered within
    100 ms, 3 misses in a row: down 0.16-0.22 s after it went silent. Asserted is the
    mechanism (the agent's log: down after 3 missed checks); the seconds are printed only
    (a bound of 0.62 s failed at 0.621 s under load once); bench/ingress/run.py measures
    them."""
    cl.cfg.write_text(config(cl.tag))
    start_pods(cl)
    agent = start(cl, cl.n, PEAK, "agent", "--config", str(cl.cfg), "--node", "node1")
    assert wait_until(lambda: all(owners(cl).values()))
    assert wait_until(lambda: watches(agent) == 2)  # checking both pods, found their servers
    t0 = time.time()
    subprocess.run(["ip", "netns", "exec", cl.a, "nft", "add table inet pksilent; add chain inet "
                    "pksilent in { type filter hook input priority 0; policy drop; }"], check=True)
    assert wait_until(lambda: owners(cl)["2001:db8:100:1::a"] == [], 10)
    secs = time.time() - t0
    print(f"silent pod down after {secs:.3f} s")
    assert "endpoint pod-a is down after 3 missed checks" in agent.log.read_text()
    assert "server process exited" not in agent.log.read_text()  # the checks found it
    subprocess.run(["ip", "netns", "exec", cl.a, "nft", "delete table inet pksilent"], check=True)
    assert wait_until(lambda: owners(cl)["2001:db8:100:1::a"] != [], 3)  # two good checks
