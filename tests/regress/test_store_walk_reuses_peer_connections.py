"""A store pod's walk (repair at start, or a migration after a new map) opened a new TCP
connection to the peer for every object it pulled (store_repair_pull connected, sent one
GET with Connection: close, and closed). Under the benchmark's controller map, the first
round of reads during a move counted about 450 connections accepted by the pods where the
next round counted 16 (4 workers x 4 pods): the clients had kept theirs; the other ~430 were
the new pod pulling its ~500 objects, one connection each. Now the walk keeps one
connection per peer for its pulls. Here: two pods with replicas: 2 in one namespace, 120
objects PUT to s1 alone over one kept connection, then s2 starts empty and repairs from s1;
s1 must have accepted a handful of connections for the listing and the pulls, not one per
object.

  [pkwc*] lo: 2001:db8:104::1 (s1, metrics [::1]:9101), 2001:db8:104::2 (s2), port 8080
"""
import os
import subprocess

import pytest
from storepod import repair_pair, wait_for

N = 120

ACCEPTED = """
import urllib.request
text = urllib.request.urlopen("http://[::1]:9101/metrics", timeout=10).read().decode()
print(int(float([l for l in text.splitlines()
                 if l.startswith("peak_store_connections_total ")][0].split()[1])))
"""


def accepted(ns):
    r = subprocess.run(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", ACCEPTED],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


def test_walk_reuses_its_peer_connection(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    extra = {"s1": ["--timeout", "5000", "--metrics", "[::1]:9101"], "s2": ["--timeout", "5000"]}
    with repair_pair(tmp_path, "pkwc", N, extra) as (ns, pods):
        before = accepted(ns)
        pods["s2"].start()
        wait_for(lambda: "repair done" in pods["s2"].logtext(), "s2's repair", 60)
        text = pods["s2"].logtext()
        assert f"repair done: {N} object(s) pulled" in text, text
        opened = accepted(ns) - before  # the scrapes go to the metrics port, not counted
        # one listing page (one connection) and the pulls on one kept connection; a few
        # more if the pod's idle timeout closed it between two pulls on a loaded machine
        assert opened <= 10, f"s1 accepted {opened} connections for {N} objects pulled"
