"""The agent refused an endpoint added at run time, so its pod was never routed.

Seen: `peak controller-ctl add` put a pod in the controller's assignment and in `peak dns`,
but a node agent refused the map's `ep` line naming it ("controller line refused (unknown
endpoint)") because its own file did not list it, and routed none of the pod's slices.

Now the controller sends, before each map of a service, an `add` line per endpoint added at
run time (the whole set) and a `del` for one removed (include/peak/ctlrt.h); the agent keeps
them beside its file's (the file wins on an id it lists), routes those of its node, and drops
one the next map no longer adds. Bad lines are refused with a log line."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import agent_ns, wait_until  # noqa: E402

A_ALL = ("fd00:a::/64", "fd00:1::a1")


def test_agent_routes_an_endpoint_added_at_run_time(tmp_path):
    with agent_ns(tmp_path, "rgrt") as ns:
        agent = ns.start_agent()
        c = ns.accept()

        def a_routes():
            return {r for r in ns.routes() if r[0].startswith("fd00:a:")}

        def log():
            return ns.log.read_text()

        c.send("map a.svc.example.", "ep a1 0/8", "end")
        assert wait_until(lambda: a_routes() == {A_ALL})

        def logged(text, *lines):
            """Sends lines until text is in the log: refusals are logged at most once a
            second (the rest counted), so each is sent again until its own line shows."""
            def again():
                if text in log():
                    return True
                c.send(*lines)
                return False
            return wait_until(again, timeout=30)

        # too many: 65,536 run-time endpoints and the file's one pass the limit, so the map
        # they come with is refused whole (the first refusal: nothing is counted yet)
        many = "".join(f"add a.svc.example. m{k} fd00:2::{k:x} 1 node9\n"
                       for k in range(65536)).encode()
        c.s.sendall(many)
        c.send("map a.svc.example.", "ep a1 0/7", "ep m1 128/7", "end")
        assert wait_until(lambda: "map of a.svc.example. refused: too many endpoints" in log(),
                          timeout=60)
        assert agent.poll() is None
        assert a_routes() == {A_ALL}

        # bad lines: refused with their reason, and nothing else changes
        assert logged("refused (unknown service): 'add nope.svc",
                      "add nope.svc.example. x1 fd00:1::91 1 node1")
        assert logged("refused (bad address", "add a.svc.example. x2 ff02::1 1 node1")
        assert logged("refused (not a control line): 'add a.svc.example. x3",
                      "add a.svc.example. x3 fd00:1::93 1 " + "n" * 64)  # a node name too long
        assert agent.poll() is None
        assert a_routes() == {A_ALL}

        # a pod of this node added at run time: logged, and its slices routed to it
        c.send("add a.svc.example. a9 fd00:1::a9 1 node1",
               "map a.svc.example.", "ep a1 0/7", "ep a9 128/7", "end")
        want = {("fd00:a::/65", "fd00:1::a1"), ("fd00:a:0:0:8000::/65", "fd00:1::a9")}
        assert wait_until(lambda: a_routes() == want), a_routes()
        assert "a.svc.example. a9: added at run time (fd00:1::a9, weight 1, node node1): " \
            "local, routed here" in log()
        assert "unknown endpoint" not in log()
        # the file wins on an id it lists: a1's address stays the file's
        assert logged("endpoints added at run time are in the file too",
                      "add a.svc.example. a1 fd00:1::77 1 node1",
                      "add a.svc.example. a9 fd00:1::a9 1 node1",
                      "map a.svc.example.", "ep a1 0/7", "ep a9 128/7", "end")
        assert a_routes() == want

        # del: the next map no longer has it; its slices go back, no route points at it
        c.send("del a.svc.example. a9", "map a.svc.example.", "ep a1 0/8", "end")
        assert wait_until(lambda: a_routes() == {A_ALL}), a_routes()
        assert "a.svc.example. a9: removed (it was added at run time)" in log()
        # a map naming it now refuses that line, as for any endpoint the service lacks
        assert logged("refused (unknown endpoint): 'ep a9 128/7'",
                      "map a.svc.example.", "ep a1 0/7", "ep a9 128/7", "end")
        assert agent.poll() is None
        c.close()


def test_many_runtime_endpoints_in_one_map(tmp_path):
    """40 endpoints added at run time on another node and one on this one: a map that large
    finds its ep lines through an index, and routes only this node's."""
    with agent_ns(tmp_path, "rgrm") as ns:
        agent = ns.start_agent()
        c = ns.accept()
        adds = [f"add a.svc.example. m{k:02d} fd00:2::{k + 1:x} 1 node9" for k in range(40)]
        c.send(*reversed(adds), "add a.svc.example. a9 fd00:1::a9 1 node1",
               "map a.svc.example.", "ep a1 0/7", "ep m05 128/6", "ep m39 192/5",
               "ep a9 224/5", "end")
        want = {("fd00:a::/65", "fd00:1::a1"), ("fd00:a:0:0:e000::/67", "fd00:1::a9")}
        assert wait_until(lambda: {r for r in ns.routes() if r[0].startswith("fd00:a:")}
                          == want), ns.routes()
        log = ns.log.read_text()
        assert "a.svc.example.: 40 endpoints of other nodes added at run time, 0 removed" in log
        assert "refused" not in log
        assert agent.poll() is None
        c.close()
