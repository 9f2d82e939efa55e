"""Issue 19: once a pod taken out has no slice routed to it any more, the agent resets its
connections (sock_diag SOCK_DESTROY), so that the clients whose requests wait on it
reconnect at once to the slices' new owner. It destroyed them in the kernel's hash order,
one request each: in the ingress bench's 'silent' scenario the pod held 546 connections
(most of them abandoned by earlier peers: the pod never heard their ends), the load's
waiting clients were reset 84 ms after the pod was taken out, the last connection 168 ms
after. The connections that received data last now go first: the clients waiting now,
before the idle and the abandoned ones.

Topology (tests/cluster/test_agent.py): one node, pod-a and pod-b, no controller. A client
holds 300 idle connections to pod-a's slices and one active one; pod-a is stopped (SIGSTOP)
and the active one sends a request (acknowledged by its kernel, never answered); the
client watches all 301 sockets with epoll, whose ready list keeps the order in which the
resets arrived: the active connection's must be the first (by chance 1 in 301 before)."""
import os
import re
import selectors
import signal
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
from agentns import in_netns  # noqa: E402
from test_agent import cl  # noqa: E402,F401
from test_failover import owners, wait_until  # noqa: E402
from test_silent_failover import keepalive_client, up_and_checked  # noqa: E402

A = "2001:db8:100:1::a"
IDLE = 300


def test_waiting_client_reset_before_idle_ones(cl, tmp_path):
    pods, agent = up_and_checked(cl)
    active, first, src, dst, connect = keepalive_client(cl, owners(cl)[A])
    assert first == "pod-a"
    idle = in_netns(cl.c, lambda: [connect() for _ in range(IDLE)])
    # idle: for longer than the kernel's clock tick (tcp_info counts in jiffies, 4-10 ms),
    # so that their last data is older than the active one's (not a wait for an event)
    time.sleep(0.1)
    sel = selectors.DefaultSelector()  # epoll: events in the order the sockets became ready
    for s in idle + [active]:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    order, done = [], threading.Event()

    def watch():
        while len(order) < IDLE + 1 and not done.is_set():
            for key, _ in sel.select(0.2):
                try:
                    data = key.fileobj.recv(200)
                except ConnectionResetError:
                    data = b"reset"
                except BlockingIOError:
                    continue
                sel.unregister(key.fileobj)
                order.append((key.fileobj, data))
    t = threading.Thread(target=watch)
    t.start()
    pid = pods["pod-a"].pid
    try:
        os.kill(pid, signal.SIGSTOP)
        active.sendall(b"second\n")  # its kernel takes it (data received last); no answer
        assert wait_until(lambda: len(order) == IDLE + 1, 20), (len(order),
                                                                agent.log.read_text())
        assert all(d == b"reset" for _, d in order), [d for _, d in order if d != b"reset"]
        rank = [s for s, _ in order].index(active)
        print(f"the waiting client's reset came {rank + 1} of {IDLE + 1}")
        assert rank == 0, rank
        # (and the agent's own checks in flight, which the stopped pod's kernel took)
        m = lambda: re.search(r"endpoint pod-a: (\d+) connections reset",  # noqa: E731
                              agent.log.read_text())
        assert wait_until(m, 10) and int(m().group(1)) >= IDLE + 1, agent.log.read_text()
    finally:
        done.set()
        os.kill(pid, signal.SIGCONT)
        t.join()
        for s in idle + [active]:
            s.close()
