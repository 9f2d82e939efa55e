"""Defect 6 (issue 15): the controller sent to agents and to peak dns with blocking calls
and no timeout. One agent that never read (its Send-Q grew to 3 MB) froze the map pushes to
every other agent, and SIGTERM, for as long as it stayed connected; a peak dns control
socket that never answered froze the loop the same way. Now every peer has a bounded,
non-blocking output queue (a peer that does not drain is dropped) and the DNS exchange runs
in the loop with a deadline."""
import os
import signal
import socket
import time

import ctlpeer
from ctlpeer import SVC

NEPS = 40


def toggle(b, ep, rounds, per_map_timeout=5.0):
    """Marks ep down and up rounds times; after each change b must get the new map within
    per_map_timeout. Returns the longest wait for a map."""
    worst = 0.0
    for i in range(rounds):
        for state in ("down", "up"):
            t0 = time.monotonic()
            b.send(f"health {SVC} {ep} {state}\n")
            _, m = b.read_map(timeout=per_map_timeout)
            worst = max(worst, time.monotonic() - t0)
            assert (ep in m) == (state == "up")
    return worst


def test_agent_that_never_reads(tmp_path):
    ctl = ctlpeer.Controller(str(tmp_path), ctlpeer.config(NEPS, slice_len=76))
    try:
        # a: a tiny receive window, and it never reads
        a = ctlpeer.Agent(ctl.port, node="stuck", rcvbuf=4096)
        b = ctlpeer.Agent(ctl.port, node="node1")
        b.read_map()
        # enough map pushes to fill a's window and the controller's socket buffer many
        # times over (each map is a few kB; the pushes to a total > 10 MB)
        t0 = time.monotonic()
        worst = 0.0
        i = 0
        while time.monotonic() - t0 < 4.0 and i < 4000:
            worst = max(worst, toggle(b, f"pod-{1 + i % (NEPS - 1)}", 1))
            i += 1
        assert worst < 2.0, f"a map push to a reading agent took {worst:.2f} s"
        # SIGTERM is handled at once, with the stuck agent still there or just dropped
        t0 = time.monotonic()
        assert ctl.stop(timeout=5) == 0
        assert time.monotonic() - t0 < 2.0
        a.close()
        b.close()
    finally:
        ctl.stop()


def test_dns_that_never_answers(tmp_path):
    path = str(tmp_path / "dns.sock")
    dns = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dns.bind(path)
    dns.listen(64)  # accepts (the kernel does), never reads, never answers
    ctl = ctlpeer.Controller(str(tmp_path), ctlpeer.config(3),
                             args=["--dns-control", path])
    try:
        b = ctlpeer.Agent(ctl.port)
        b.read_map()
        worst = toggle(b, "pod-1", 3)
        assert worst < 2.0, f"a map push took {worst:.2f} s behind a silent peak dns"
        t0 = time.monotonic()
        assert ctl.stop(timeout=5) == 0
        assert time.monotonic() - t0 < 2.0
        b.close()
    finally:
        ctl.stop()
        dns.close()
        os.unlink(path)
