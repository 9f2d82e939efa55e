"""Issue 19: a keep-alive client idle for longer than the handover window, whose slice moved,
was left with a connection that only looked alive. The window ends once the old owner's
connections on the moved slices are idle past the deadline; the old pod kept the idle
connection open, and the client heard nothing until it sent its next request, which went to
the new owner and was answered by a reset: a failed request, however long after the move.
Now, when such a window ends, the old owner's node resets the old pod's connections on the
moved slices at once, so an idle client's connection closes while it is idle and its next
request opens a new one, which reaches the new owner.

Topology: the namespace testbed (tests/integration/testbed.py: router, 2 nodes with agents
and BIRD, 2 pods each, the controller with --handover-ms 1000). Each of 64 clients opens a
keep-alive connection and is answered once; a weight change moves slices (with handovers);
the clients stay idle. Every client whose slice moved gets a reset on its idle connection
(the test waits up to 20 s: without the fix it heard nothing), and its new connection is
answered by the slice's new owner; every other client's connection still works."""
import os
import re
import socket
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import testbed  # noqa: E402
from test_handover import (PEAK, address, agent_metrics, ctl, in_ns,  # noqa: E402
                           request, settle, source, wait_until)

CLIENTS = 64
WAIT_S = 20


def connect(tb, k):
    """Client k's connection to its address, from the clients' namespace."""
    out = {}

    def run():
        in_ns(f"{tb.tag}-c")
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, 75, 1)  # IPV6_FREEBIND: AnyIP sources
        s.settimeout(10)
        s.bind((source(k), 0))
        try:
            s.connect((address(k), testbed.PORT))
            out["s"] = s
        except OSError as e:
            s.close()
            out["e"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out["s"]


def owner_now(tb, k):
    """The endpoint that answers client k on a new connection."""
    s = connect(tb, k)
    try:
        return request(s)
    finally:
        s.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_idle_client_past_the_window_is_reset_and_reaches_the_new_owner():
    with tempfile.TemporaryDirectory(prefix="peak-hoidle-") as work:
        tb = testbed.Testbed(f"hoi{os.getpid() % 10000}", work, PEAK,
                             ctl_args=["--control", os.path.join(work, "ctl.sock"),
                                       "--handover-ms", "1000"],
                             agent_args=["--metrics", "[::1]:9109", "--hc-timeout", "1000"])
        socks = {}
        try:
            tb.up()
            assert tb.wait_converged(30), "the router did not learn the slices"
            up = {tb.pod_id(i, j) for i, j in tb.all_pods()}
            assert wait_until(lambda: {ln.split()[1] for ln in ctl(tb, "status").splitlines()
                                       if " up " in ln} == up, 30, 0.1), ctl(tb, "status")
            assert tb.wait_carried(30), "the router did not carry the agents' routes"
            first = {}
            for k in range(CLIENTS):
                socks[k] = connect(tb, k)
                first[k] = request(socks[k])
                assert first[k], f"client {k} not answered"
            at = tb.log_size("controller.log")
            ctl(tb, "weight", testbed.SERVICE, "n1p2", "3")
            settle(tb, None, "controller.log", "n1p2 weight 3: ", at)
            assert tb.wait_log("controller.log", "handover ", 10, at), "no handover"
            # the idle windows end (1 s, then 1 s idle) and the old owners' nodes reset
            moved = {k for k in range(CLIENTS) if owner_now(tb, k) != first[k]}
            assert moved, "the weight change moved no client's slice"
            t0 = time.time()
            told = {}
            for k in sorted(moved):
                socks[k].settimeout(max(0.1, t0 + WAIT_S - time.time()))
                try:
                    told[k] = f"not reset: {socks[k].recv(100)!r}"
                except ConnectionResetError:
                    told[k] = "reset"
                except socket.timeout:
                    told[k] = f"nothing for {WAIT_S} s"
            assert all(v == "reset" for v in told.values()), told
            # their next request, on a new connection, reaches the new owner
            for k in moved:
                assert owner_now(tb, k) not in (None, first[k])
            # the others' connections were left alone: answered on them, by the same pod
            for k in set(range(CLIENTS)) - moved:
                assert request(socks[k]) == first[k], k
            n = sum(int(re.search(r"^peak_agent_connections_reset_total (\d+)$",
                                  agent_metrics(tb, i), re.M).group(1)) for i in (1, 2))
            assert n >= len(moved)
            print(f"{len(moved)} of {CLIENTS} clients moved, all reset while idle; "
                  f"agents' resets: {n}")
        finally:
            for s in socks.values():
                s.close()
            tb.down()
