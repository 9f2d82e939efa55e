"""Connections opened while a node drained a failed-over slice were reset when the drain
ended (bench-datapath failed a CI run with 2 failed requests of ~24,000 in 1 s: its steady
PEAK cell ran within 3 s of the testbed's start, when the spare pod's slices move).

A pod that is down has its slices failed over to a live pod of its node at once; when the
controller then moves them to another node, the node keeps the failed-over routes 3 s more
(the drain) so that what the router still sends it while BGP moves the slices is served.
The drained routes stayed in the slice table, which BIRD learns and announces, so the router
held two paths for the same prefix, kept the old one (BGP's tie-break) for the whole drain,
and sent new connections to the draining node's live pod; when the drain ended, the router
moved to the new owner's node, whose pod answered those connections with resets. Drained
routes now live in the node's main table, looked up after the slice table and not
announced: BGP moves the slices at once, and a straggler the router still sends is served.

Here, on the testbed (tests/integration/testbed.py): keep-alive load from 64 clients, then
pod n1p2 is killed. Its clients' connections break (a dead pod has nothing to hand over) and
reconnect at once; its slices fail over to n1p1 and the controller moves them, part of them
to node2 (node1 has the lower BGP router id: for a prefix both nodes announce, the router's
tie-break keeps node1's path). From 2 s after the move on (and after the kill), past the
drain's end (3 s), nothing may fail. Before the fix, the clients whose
slices went to node2 were reset when the drain ended."""
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import testbed  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from peaktest import sanitized  # noqa: E402

PEAK = os.environ.get("PEAK_BIN", os.path.join(HERE, "..", "..", "build", "peak"))


def log_time(line):
    t = datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
    return t.replace(tzinfo=datetime.timezone.utc).timestamp()


def drain_ended(tb, since):
    """When node1's agent first logged, after since, a sync that only took routes away (the
    end of a drain: 'N slice routes (+0 -M)', with the fix 'N drained slice routes ...
    (+0 -M)'); None if it has not."""
    with open(os.path.join(tb.dir, "agent-n1.log")) as f:
        return next((log_time(ln) for ln in f
                     if re.search(r"\(\+0 -\d+\)", ln) and log_time(ln) > since), None)


def established(tb, i, j):
    """Connections the pod (i, j) holds on the service's port."""
    out = subprocess.run(["ip", "netns", "exec", tb.pod(i, j), "ss", "-Htn", "state",
                          "established", f"( sport = :{testbed.PORT} )"],
                         capture_output=True, text=True).stdout
    return len(out.splitlines())


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_connections_opened_during_a_drain_survive_its_end():
    if sanitized(PEAK):  # the agent's code here is plain route bookkeeping
        pytest.skip("checked in the plain build (a testbed under load for ~7 s; make test's "
                    "budget)")
    work = tempfile.mkdtemp(prefix="peak-drain-")
    tb = testbed.Testbed(f"dr{os.getpid() % 10000}", work, PEAK, nodes=2, pods=2)
    load = None
    try:
        tb.up()
        assert tb.wait_converged(30), "the router did not learn the slices"
        assert tb.wait_carried(30), "the router does not carry the agents' routes"
        t_load = time.time()
        load = subprocess.Popen(["ip", "netns", "exec", f"{tb.tag}-c", PEAK, "load",
                                 testbed.SERVICE, "--server", f"[{testbed.DNS_ADDR}]:53",
                                 "--port", str(testbed.PORT), "--sources", "2001:db8:c0::/48",
                                 "--clients", "64", "--concurrency", "64", "--duration", "7",
                                 "--timeout", "5000", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert tb.until(lambda: established(tb, 1, 2) > 0, 20), "no client reached n1p2"
        t_kill = time.time()
        tb.kill_pod(1, 2)
        out, err = load.communicate(timeout=120)
        t_end = time.time()
        assert load.returncode == 0, err
        r = json.loads(out)
        # the drain of n1p2's slices that moved to node2 ends 3 s after the move
        end = drain_ended(tb, t_kill)
        assert end, "no drain ended"
        if end + 1 > t_end:
            pytest.skip("the load ended before the drain did (a very slow machine)")
        # what broke with the pod (and on the move, the connections opened in the moment
        # between its failover and the move) is over 2 s after the controller's move: the
        # bug broke connections at the drain's end, 3 s after it (1 s of slack was close to
        # what the agents and BGP take to carry the move on a loaded machine)
        with open(os.path.join(work, "controller.log")) as f:
            t_move = next(log_time(ln) for ln in f if "n1p2 down: " in ln)
        # the load's clock starts after its process and resolution, later than t_load: this
        # index is at or after that moment
        after = int((max(t_kill + 2, t_move + 2) - t_load) * 1000 / r["timeline_ms"])
        late = sum(f for _, f in r["timeline"][after:])
        agents = "".join(open(os.path.join(work, f"agent-n{i}.log")).read() for i in (1, 2))
        assert r["ok"] > 0 and late == 0, (late, r["errors"], agents[-3000:])
    finally:
        if load and load.poll() is None:
            load.kill()
            load.wait()
        tb.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
