"""A reload (SIGHUP) sends the agents the maps of the services it changed, and only those
(issue 18, control-plane scale): the controller sent every service's map at every reload, so
a scale-up of one service among 10,000 pushed all 10,000 maps to every agent. The maps the
agents get must still be the whole truth: a service whose endpoints changed comes with its
new map, the saved state holds every service, and a reload that changes nothing sends none.
A weight change made through the control socket afterwards marks where the reload's maps end
(no sleep: the agent reads until that map)."""
import os
import signal
import subprocess

import ctlpeer
from ctlpeer import PEAK

SVCS = ("a.svc.example.", "b.svc.example.", "c.svc.example.")


def config(extra_b=0):
    out = ["zone:", "  name: svc.example.", "  ns:",
           '    - {name: ns1.svc.example., address: "2001:db8:53::1"}', "services:"]
    for k, name in enumerate(SVCS):
        out += [f"  - name: {name}", f"    prefixes: [2001:db8:{k + 5:x}::/64]",
                "    slice: 72", "    endpoints:"]
        n = 3 + (extra_b if name == SVCS[1] else 0)
        out += [f'      - {{id: pod-{i}, address: "2001:db8:1{k}0::{i + 1:x}"}}'
                for i in range(n)]
    return "\n".join(out) + "\n"


def maps_until(agent, svc):
    """The services of the maps the agent gets, up to and including one of svc."""
    got = []
    while True:
        name, _ = agent.read_map()
        got.append(name)
        if name == svc:
            return got


def reload(c):
    n = c.log().count("configuration reloaded")
    c.proc.send_signal(signal.SIGHUP)
    assert ctlpeer.wait_until(lambda: c.log().count("configuration reloaded") > n or
                              "reload refused" in c.log()), c.log()
    assert "reload refused" not in c.log(), c.log()


def test_reload_sends_changed_maps_only(tmp_path):
    sock = os.path.join(tmp_path, "ctl.sock")
    c = ctlpeer.Controller(str(tmp_path), config(), args=("--control", sock))
    agent = None
    try:
        agent = ctlpeer.Agent(c.port)
        assert sorted(agent.read_map()[0] for _ in SVCS) == sorted(SVCS)
        # b gets two more pods: its map, not a's or c's
        with open(c.cfg, "w") as f:
            f.write(config(extra_b=2))
        reload(c)
        r = subprocess.run([PEAK, "controller-ctl", "--control", sock, "weight", SVCS[0],
                            "pod-0", "2"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r
        assert maps_until(agent, SVCS[0]) == [SVCS[1], SVCS[0]]
        assert set(ctlpeer.slices(agent.maps[SVCS[1]])) == {f"pod-{i}" for i in range(5)}
        assert sum(ctlpeer.slices(agent.maps[SVCS[1]]).values()) == 256
        assert "reload: 1 of 3 services changed" in c.log()
        # the same file again: nothing changed, no map
        reload(c)
        r = subprocess.run([PEAK, "controller-ctl", "--control", sock, "weight", SVCS[2],
                            "pod-1", "3"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r
        assert maps_until(agent, SVCS[2]) == [SVCS[2]]
        # the saved state still holds every service (the unchanged ones' kept records)
        with open(c.cfg + ".state") as f:
            state = f.read()
        assert all(f"map {s}\n" in state for s in SVCS), state
        assert "weight b.svc.example. pod-4 1\n" in state
        assert "weight c.svc.example. pod-1 3\n" in state
    finally:
        if agent:
            agent.close()
        c.stop()
