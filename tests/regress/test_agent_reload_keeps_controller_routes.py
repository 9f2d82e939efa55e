"""A reload of the agent routed its own plan of the slices while the controller led.

Seen (issue 18): SIGHUP (and, with --source kubernetes, every change the API brings) made
the agent drop the controller's maps with the link and route its own plan of every service
until the controller sent the maps again, a few milliseconds later: slices briefly routed to
other pods than the controller's assignment, which breaks connections in flight.

Here a fake controller's maps differ from the node's own plan (as an operator's weight makes
them); `ip -6 monitor route` watches the node while the agent reloads, with the link up (a
file that adds a local endpoint ahead of the others, so endpoint indices shift) and with the
link down: no route of the node's own plan ever appears, and the controller's routes stay,
those to a pod it added at run time (an `add` line; not in the file) included.
A service whose slices change falls back to the node's own plan (its old map names slices
of another space) while the unchanged one keeps the controller's routes."""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import CONFIG, agent_ns, ip, wait_until  # noqa: E402

SYNCS = 'peak_agent_syncs_total{result="ok"}'
# the node's own plan: a1 owns the whole range, b1..b4 a quarter each
OWN = {("fd00:a::/64", "fd00:1::a1"),
       ("fd00:b::/66", "fd00:1::b1"), ("fd00:b:0:0:4000::/66", "fd00:1::b2"),
       ("fd00:b:0:0:8000::/66", "fd00:1::b3"), ("fd00:b:0:0:c000::/66", "fd00:1::b4")}
# the controller's: half of a's slices, b's on b1 and on b9, a pod it added at run time
MAPS = ("map a.svc.example.", "ep a1 0/7", "end",
        "add b.svc.example. b9 fd00:1::b9 1 node1",
        "map b.svc.example.", "ep b1 0/7", "ep b9 128/7", "end")
CTL = {("fd00:a::/65", "fd00:1::a1"),
       ("fd00:b::/65", "fd00:1::b1"), ("fd00:b:0:0:8000::/65", "fd00:1::b9")}

# b with a local endpoint b0 added ahead of b1..b4 (its map's indices all shift)
ADDED = CONFIG.replace('      - {id: b1,', '      - {id: b0, address: "fd00:1::b0", node: node1}\n'
                       '      - {id: b1,')
# b with 512 slices (slice 73): its map no longer fits; a as it was
RESLICED = ADDED.replace('prefixes: ["fd00:b::/64"]\n    slice: 72',
                         'prefixes: ["fd00:b::/64"]\n    slice: 73')


def seen(path):
    """The (destination, gateway) pairs of the routes the monitor saw added."""
    out = set()
    for ln in path.read_text().splitlines():
        w = ln.split()
        if not w or w[0] == "Deleted" or w[0].startswith("fd00:ff:"):
            continue
        out.add((w[0], w[2] if len(w) > 2 and w[1] == "via" else None))
    return out


def test_reload_keeps_the_controllers_routes(tmp_path):
    assert ADDED != CONFIG and RESLICED != ADDED
    with agent_ns(tmp_path, "rgkr") as ns:
        agent = ns.start_agent("--metrics", "[::1]:9100")
        c = ns.accept()
        assert wait_until(lambda: ns.routes() == OWN), ns.routes()
        c.send(*MAPS)
        assert wait_until(lambda: ns.routes() == CTL), ns.routes()
        mon_out = tmp_path / "monitor.txt"
        mon = subprocess.Popen(["ip", "-n", ns.name, "-6", "monitor", "route"],
                               stdout=open(mon_out, "w"), stderr=subprocess.DEVNULL)
        try:
            # the monitor is listening once it reports a route of ours (one more each try:
            # one added before it listened is never reported)
            marks = []

            def mark():
                marks.append(f"fd00:ff:{len(marks)}::/64")
                ip("-n", ns.name, "-6", "route", "add", marks[-1], "dev", "d0")
                return "fd00:ff:" in mon_out.read_text()
            assert wait_until(mark)

            def reload(n, cfg):
                ns.cfg.write_text(cfg)
                agent.send_signal(signal.SIGHUP)
                assert wait_until(lambda: ns.log.read_text().count("agent: reloaded") >= n or
                                  agent.poll() is not None)
                assert agent.poll() is None, ns.log.read_text()
                s0 = ns.metrics()[SYNCS]  # two syncs after the reload: it routed its view
                assert wait_until(lambda: ns.metrics()[SYNCS] >= s0 + 2)

            # 1. the link up: the agent reconnects; the controller holds its maps back
            reload(1, ADDED)
            c2 = ns.accept()
            assert seen(mon_out) <= CTL, seen(mon_out) - CTL
            assert ns.routes() == CTL, ns.routes()
            assert "the controller's maps of 2 services kept" in ns.log.read_text()
            c2.send(*MAPS)
            s0 = ns.metrics()[SYNCS]
            assert wait_until(lambda: ns.metrics()[SYNCS] >= s0 + 2)
            assert ns.routes() == CTL, ns.routes()
            # 2. the link down, the maps in force: fail static across the reload too
            c2.close()
            ns.srv.close()
            assert wait_until(lambda: "controller gone" in ns.log.read_text())
            reload(2, ADDED)
            assert ns.routes() == CTL, ns.routes()
            assert seen(mon_out) <= CTL, seen(mon_out) - CTL
            # 3. b's slices change: b falls back to the node's own plan (now with b0), a
            # keeps the controller's route
            reload(3, RESLICED)
            assert "1 routed by the node's own plan" in ns.log.read_text()
            r = ns.routes()
            assert ("fd00:a::/65", "fd00:1::a1") in r and ("fd00:a::/64", "fd00:1::a1") not in r
            assert {x for x in r if x[1] == "fd00:1::b0"}, r
            assert ("fd00:a::/64", "fd00:1::a1") not in seen(mon_out)
        finally:
            mon.send_signal(signal.SIGTERM)
            mon.wait()
