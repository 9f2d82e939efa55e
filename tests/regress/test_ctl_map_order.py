"""A leader that died between two agents' maps left a moved slice announced by no node.
Seen (tests/controlplane/test_ha_three_members_under_load.py, issue 18): a pod and the
leading controller killed together cost more failed requests than the pod alone when the
dying leader had sent the move of the pod's slices to one agent and not the other. The
controller sent a map to its agents in the order they connected; when the node giving the
slices got it first, its agent drained them (routed locally, no longer announced) while
the receiving node, which never got the map, did not announce them: no node announced them
until the next leader's maps, a lease TTL later.
Now a change's map goes first to the nodes that gain or keep slices, last to the nodes
that give slices to another node, so a half-sent batch leaves the receiving node
announcing beside the giving node still routing them.
Deterministic: the controller runs with a preloaded send() (compiled here) that ends the
process right after the third map it sends (the two agents' first maps, then the first
one of the change), the exact point of a leader killed in the middle of the batch. Two
fake agents on loopback: node1 (endpoint a1), which connects first, and node2 (a2); node1
reports a1 down, so all of a1's slices move to node2. node2 must have the new map."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import PEAK, Conn, wait_until  # noqa: E402

CONFIG = """
zone: {name: svc.example., ns: [{name: ns1.svc.example.}]}
nodes: [{name: node1}, {name: node2}]
services:
  - name: a.svc.example.
    prefixes: ["fd00:a::/64"]
    slice: 72
    port: 8080
    endpoints:
      - {id: a1, address: "fd00:1::a1", node: node1}
      - {id: a2, address: "fd00:2::a2", node: node2}
"""

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
static int maps;
ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	static ssize_t (*real)(int, const void *, size_t, int);
	if (!real)
		real = (ssize_t (*)(int, const void *, size_t, int))dlsym(RTLD_NEXT, "send");
	ssize_t r = real(fd, buf, n, flags);
	const char *die = getenv("SHIM_DIE_AFTER_MAPS");
	if (n >= 4 && !memcmp(buf, "map ", 4) && die && ++maps == atoi(die))
		_exit(9); /* as a SIGKILL would: the other agents' maps are never sent */
	return r;
}
"""


def read_map(c):
    """The next map's text (its ep lines), skipping other lines."""
    while not c.line().startswith("map "):
        pass
    eps = {}
    while True:
        ln = c.line()
        if ln == "end":
            return eps
        f = ln.split()
        if f[0] == "ep":
            eps.setdefault(f[1], []).extend(f[2:])


def test_receiving_node_gets_the_map_first(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler for the send() shim")
    src = tmp_path / "shim.c"
    src.write_text(SHIM)
    shim = tmp_path / "shim.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(shim), str(src), "-ldl"], check=True)
    cfg = tmp_path / "peak.yaml"
    cfg.write_text(CONFIG)
    with socket.socket(socket.AF_INET6) as s:  # a free port on ::1
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "controller.log"
    env = dict(os.environ, LD_PRELOAD=str(shim), SHIM_DIE_AFTER_MAPS="3",
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
    ctl = subprocess.Popen([PEAK, "controller", "--config", str(cfg), "--listen",
                            f"[::1]:{port}", "--state", "none"],
                           stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=env)
    conns = []
    try:
        assert wait_until(lambda: "agents on" in log.read_text() or ctl.poll() is not None)
        assert ctl.poll() is None, log.read_text()
        for node in ("node1", "node2"):  # node1 first: the old order sent it the map first
            c = Conn(socket.create_connection(("::1", port), timeout=30))
            conns.append(c)
            c.send(f"hello {node}")
            first = read_map(c)
            assert set(first) == {"a1", "a2"}, first
        n1, n2 = conns
        n1.send("health a.svc.example. a1 down")
        assert ctl.wait(30) == 9, log.read_text()  # it died after the change's first map
        assert "a1 down" in log.read_text(), log.read_text()
        # the receiving node got the move: a1's slices are a2's now
        n2.s.settimeout(5)
        try:
            got = read_map(n2)
        except (EOFError, OSError) as e:
            raise AssertionError("the receiving node2 never got the move (the giving node1 "
                                 f"was sent it first): {e}") from None
        assert set(got) == {"a2"}, got
    finally:
        for c in conns:
            c.close()
        if ctl.poll() is None:
            ctl.send_signal(signal.SIGKILL)
        ctl.wait(10)
