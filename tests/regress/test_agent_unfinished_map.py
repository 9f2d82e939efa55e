"""The agent freed an unfinished slice map with the wrong endpoint count.

Seen: `map A` then `map B` with no `end` between, or a controller link that dropped in the
middle of a map followed by a map of a service with more endpoints, made the agent free the
pending map with the second service's endpoint count: an out-of-bounds read and free() of
stray pointers (ASan: heap-buffer-overflow in map_free; plain build: a crash). ctl_connect
reset the map being received but not the pending blocks.

Here a fake controller sends exactly that; the agent must survive and route the maps it
finished, exactly as sent."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import agent_ns, wait_until  # noqa: E402

B2 = {("fd00:b::/65", "fd00:1::b1"), ("fd00:b:0:0:8000::/65", "fd00:1::b2")}
B4 = {("fd00:b::/66", "fd00:1::b1"), ("fd00:b:0:0:4000::/66", "fd00:1::b2"),
      ("fd00:b:0:0:8000::/66", "fd00:1::b3"), ("fd00:b:0:0:c000::/66", "fd00:1::b4")}


def b_routes(ns):
    return {r for r in ns.routes() if r[0].startswith("fd00:b:")}


def test_map_without_end_then_link_drop_mid_map(tmp_path):
    with agent_ns(tmp_path, "rgum") as ns:
        agent = ns.start_agent()
        c = ns.accept()
        # map a (1 endpoint) left unfinished, then map b (4 endpoints) finished
        c.send("map a.svc.example.", "ep a1 0/8",
               "map b.svc.example.", "ep b1 0/7", "ep b2 128/7", "end")
        assert wait_until(lambda: b_routes(ns) == B2 or agent.poll() is not None)
        assert agent.poll() is None, ns.log.read_text()
        assert b_routes(ns) == B2
        # map a again, and the link drops in the middle of it
        c.send("map a.svc.example.", "ep a1 0/8")
        c.close()
        # the agent reconnects; a map of the service with more endpoints
        c = ns.accept()
        c.send("map b.svc.example.", "ep b1 0/6", "ep b2 64/6", "ep b3 128/6", "ep b4 192/6",
               "end")
        assert wait_until(lambda: b_routes(ns) == B4 or agent.poll() is not None)
        assert agent.poll() is None, ns.log.read_text()
        assert b_routes(ns) == B4
        # service a never got a finished map: it keeps the file's assignment (all its
        # slices to its one endpoint)
        assert {r for r in ns.routes() if r[0].startswith("fd00:a:")} == \
            {("fd00:a::/64", "fd00:1::a1")}
        c.close()
