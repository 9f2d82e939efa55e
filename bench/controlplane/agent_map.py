#!/usr/bin/python3
"""How long a real peak agent takes a map of one service with N endpoints added at run time
(issue 18: a scale-up reaches the agents as "add" lines before the map): N - 1 on another
node and one on the agent's own, from the first line sent to the local one's route
installed. The controller is a fake one in the test process (tests/cluster/agentns.py: one
network namespace, root), so the figure is the agent's alone: the lines read through the
control-line grammar, the endpoints composed with the file's, the map's ep lines (one per
endpoint) matched, the checks set up, the routes synced.

Usage (root, from the source tree, after ninja -C build):
  PEAK_BIN=build/peak bench/controlplane/agent_map.py 1000 10000 60000"""
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "cluster"))
import agentns  # noqa: E402

LOCAL = ("fd00:a:0:0:8000::/65", "fd00:1::a9")


def one(n):
    with tempfile.TemporaryDirectory() as d, agentns.agent_ns(pathlib.Path(d), "bnrt") as ns:
        ns.start_agent()
        c = ns.accept()
        c.send("map a.svc.example.", "ep a1 0/8", "end")
        assert agentns.wait_until(lambda: ("fd00:a::/64", "fd00:1::a1") in ns.routes())
        lines = [f"add a.svc.example. m{k} fd00:2::{k >> 16:x}:{k & 0xffff:x} 1 node9"
                 for k in range(n - 1)]
        lines += ["add a.svc.example. a9 fd00:1::a9 1 node1", "map a.svc.example.", "ep a1 0/7"]
        lines += [f"ep m{k}" for k in range(n - 1)] + ["ep a9 128/7", "end"]
        data = "".join(ln + "\n" for ln in lines).encode()
        t0 = time.monotonic()
        c.s.sendall(data)
        assert agentns.wait_until(lambda: LOCAL in ns.routes(), 300), "not routed in 300 s"
        secs = time.monotonic() - t0
        assert ns.agent.poll() is None
        print(f"{n} endpoints ({len(data) / 1e6:.1f} MB of lines): routed {secs:.2f} s "
              "after the first line", flush=True)


for arg in sys.argv[1:] or ["1000", "10000"]:
    one(int(arg))
