"""A store pod that pulled objects from a peer (repair at start, or a migration) kept one
socket open per object pulled: store_repair_pull returned on success before closing the
connection to the peer. In make demo-store the joining pod pulled 5,056 objects and held
over 5,000 descriptors, and its metrics endpoint (libmicrohttpd, select) refused
connections ("not less than FD_SETSIZE"). Here: two pods with replicas: 2 in one namespace,
each on its own loopback address; 120 objects are PUT to s1 alone, then s2 starts empty and
repairs from s1; once it logs "repair done" its open descriptors must not grow with the
objects pulled.

  [pkrs*] lo: 2001:db8:104::1 (s1), 2001:db8:104::2 (s2), port 8080
"""
import os

import pytest
from storepod import repair_pair, wait_for

N = 120


def test_repair_closes_its_peer_sockets(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    extra = {"s1": ["--timeout", "2000"], "s2": ["--timeout", "2000"]}
    with repair_pair(tmp_path, "pkrs", N, extra) as (ns, pods):
        pods["s2"].start()
        wait_for(lambda: "repair done" in pods["s2"].logtext(), "s2's repair", 60)
        text = pods["s2"].logtext()
        assert f"repair done: {N} object(s) pulled" in text, text
        fds = len(os.listdir(f"/proc/{pods['s2'].proc.pid}/fd"))
        assert fds < 40, f"s2 holds {fds} descriptors after pulling {N} objects"
