"""Scenarios on the testbed (root): after each one every client is served by the pod that
owns its address, and the router's routes are exactly the nodes' slice routes (the
assignment) with the nodes as next hops."""
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import testbed  # noqa: E402
from demo import get, in_ns, setns, source  # noqa: E402

PEAK = os.environ.get("PEAK_BIN", os.path.join(HERE, "../../build/peak"))
N = 24  # clients


def rule(k):
    return subprocess.run([PEAK, "ssa", "compute", "--prefix", testbed.PREFIX, "--descriptor",
                           f"v=ssa1; slice=78; select=src; host=src; key={testbed.KEY}",
                           "--source", source(k)], capture_output=True, text=True,
                          check=True).stdout.strip()


def node_routes(tb, i, table="100"):
    """The agent's slice routes on node i: table 100 (announced), or main (drained: still
    served, never announced)."""
    out = testbed.sh("ip", "-j", "-n", tb.node(i), "-6", "route", "show", "table", table,
                     "proto", "0xa5").stdout
    return {(r["dst"], r["gateway"]) for r in json.loads(out)}


def node_serving(tb, i):
    """Every slice route node i serves: its own and those it drains."""
    return node_routes(tb, i) | node_routes(tb, i, "main")


def consistent(tb):
    """Router routes == union of node routes, each via its node; they cover the prefix."""
    want = set()
    for i in range(1, tb.nodes + 1):
        want |= {(d, f"2001:db8:ff:{i}::2") for d, _ in node_routes(tb, i)}
    have = {(d, g) for d, g in tb.router_routes()}
    return have == want and tb.converged()


def owner(tb, dst):
    """The pod whose node route covers dst."""
    for i in range(1, tb.nodes + 1):
        for d, gw in node_routes(tb, i):
            if ipaddress.ip_address(dst) in ipaddress.ip_network(d):
                return next(tb.pod_id(a, b) for a, b in tb.all_pods()
                            if tb.pod_addr(a, b) == gw)
    return None


def all_served(tb):
    back = os.open("/proc/self/ns/net", os.O_RDONLY)
    in_ns(f"{tb.tag}-c")
    try:
        for k in range(N):
            dst = rule(k)
            if get(source(k), dst, timeout=1) != owner(tb, dst):
                return False
        return True
    except OSError:
        return False
    finally:
        setns(back)
        os.close(back)


def logged(tb, log, text, since):
    """Whether a daemon's log in the testbed's directory holds text past byte since."""
    try:
        with open(os.path.join(tb.dir, log), "rb") as f:
            f.seek(since)
            return text.encode() in f.read()
    except OSError:
        return False


def settle(tb, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if consistent(tb) and all_served(tb):
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def tb():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    t = testbed.Testbed(f"pkt{os.getpid() % 10000}", tempfile.mkdtemp(prefix="peak-tb-"), PEAK)
    try:
        t.up()
        assert t.wait_converged()
        yield t
    finally:
        t.down()


def test_every_client_reaches_the_owner(tb):
    assert settle(tb)


def test_agent_restart_changes_nothing(tb):
    before = node_routes(tb, 1)
    agent = next(p for p in tb.procs if "agent" in p.args and "node1" in p.args)
    agent.terminate()
    agent.wait()
    tb.procs.remove(agent)
    assert node_routes(tb, 1) == before  # routes stay while the agent is away
    tb.run(tb.node(1), PEAK, "agent", "--config", tb.cfg, "--node", "node1", "--table", "100",
           "--controller", "[2001:db8:ff:1::1]:4000", "--key-file", tb.key,
           log="agent-n1-again.log")
    assert tb.wait_log("agent-n1-again.log", "the controller proved the key", 30)
    # (the maps follow the proof; a slow machine's late sync only leaves the routes as they
    # were a little longer, which is what is asserted, so the pause cannot fail the test)
    time.sleep(1.0)
    assert node_routes(tb, 1) == before and settle(tb)


def test_bird_session_reset(tb):
    before = tb.router_routes()
    testbed.sh("birdc", "-s", os.path.join(tb.dir, "bird-n1.ctl"), "restart", "uplink")
    assert settle(tb)
    assert sorted(tb.router_routes()) == sorted(before)


def test_controller_restart_moves_nothing(tb):
    before = {i: node_routes(tb, i) for i in (1, 2)}
    # each node's agent logs to agent-nI.log, or agent-nI-again.log once restarted
    logs = [f"agent-n{i}{again}.log" for i in (1, 2) for again in ("", "-again")]
    since = {log: tb.log_size(log) for log in logs}
    ctl = next(p for p in tb.procs if "controller" in p.args)
    ctl.terminate()
    ctl.wait()
    tb.procs.remove(ctl)
    # fail static: once each agent has seen the controller go (its log line, not a fixed
    # sleep a loaded machine may not fill), its routes are the same
    deadline = time.time() + 30
    while sum(logged(tb, log, "keeping the routes", since[log]) for log in logs) < 2:
        assert time.time() < deadline, "the agents did not see the controller go"
        time.sleep(0.05)
    assert {i: node_routes(tb, i) for i in (1, 2)} == before
    tb.run(tb.r(), PEAK, "controller", "--config", tb.cfg, "--listen", "[::]:4000",
           "--dns-control", tb.dns_ctl, "--key-file", tb.key, log="controller-again.log")
    # the agents reconnect (backoff) and get the maps again
    for i in (1, 2):  # both authenticated to the new controller (the testbed's key)
        assert tb.wait_log("controller-again.log", f"agent of node node{i} connected", 30)
    assert {i: node_routes(tb, i) for i in (1, 2)} == before
    assert settle(tb)


def watched_pods(tb):
    """How many pods' server processes the agents watch (their pidfds; ip netns exec execs
    the agent, so the PID is the agent's)."""
    n = 0
    for p in tb.procs:
        if "agent" not in p.args or p.poll() is not None:
            continue
        fds = f"/proc/{p.pid}/fd"
        for f in os.listdir(fds):
            try:
                n += os.readlink(f"{fds}/{f}") == "anon_inode:[pidfd]"
            except FileNotFoundError:
                pass
    return n


def test_pod_killed_then_back(tb):
    # the agents have found every pod's server process (was a fixed 0.5 s sleep)
    deadline = time.time() + 10
    while time.time() < deadline and watched_pods(tb) < len(tb.serving):
        time.sleep(0.05)
    assert watched_pods(tb) == len(tb.serving), (watched_pods(tb), len(tb.serving))
    dead = {d for d, gw in node_routes(tb, 1) if gw == tb.pod_addr(1, 1)}
    n2_before = node_routes(tb, 2)
    tb.kill_pod(1, 1)
    # the controller hands some of the dead pod's slices to node 2's pods ... (a deadline
    # for a hung controller: the wait ends at the change, inside node 1's 3 s drain)
    deadline = time.time() + 15
    while time.time() < deadline and node_routes(tb, 2) == n2_before:
        time.sleep(0.02)
    assert node_routes(tb, 2) != n2_before
    # ... while node 1 keeps serving all of them through its live pod until BGP has moved
    # them (the drain), so the router's packets still in flight are not lost; the drained
    # ones from its main table, which BIRD does not announce
    live = tb.pod_addr(1, 2)
    for d in dead:
        assert any(gw == live and ipaddress.ip_network(d).subnet_of(ipaddress.ip_network(x))
                   for x, gw in node_serving(tb, 1)), d
    assert settle(tb)
    # the drain ends (3 s): node 1 no longer routes what node 2 now owns
    deadline = time.time() + 10
    while time.time() < deadline and node_routes(tb, 1, "main"):
        time.sleep(0.1)
    assert not node_routes(tb, 1, "main")
    assert not any(gw == tb.pod_addr(1, 1) for _, gw in node_serving(tb, 1))
    n2 = [ipaddress.ip_network(d) for d, _ in node_routes(tb, 2)]
    assert not any(ipaddress.ip_network(d).overlaps(x) for d, _ in node_serving(tb, 1)
                   for x in n2)
    tb.serve(1, 1)
    deadline = time.time() + 30  # two good checks, 200 ms apart (a hung agent only)
    while time.time() < deadline and \
            not any(gw == tb.pod_addr(1, 1) for _, gw in node_routes(tb, 1)):
        time.sleep(0.05)
    assert any(gw == tb.pod_addr(1, 1) for _, gw in node_routes(tb, 1))
    assert settle(tb)
