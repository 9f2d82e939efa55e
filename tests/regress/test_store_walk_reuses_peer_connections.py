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
import random
import subprocess

import pytest
from storepod import StorePod, store_config, wait_for

N = 120

PUT = """
import http.client, sys
c = http.client.HTTPConnection("2001:db8:104::1", 8080, timeout=10)
for i in range(int(sys.argv[1])):
    c.request("PUT", f"/o/k{i}", body=b"x" * 100)
    r = c.getresponse(); r.read()
    assert r.status == 201, r.status
"""

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
    ns = f"pkwc{os.getpid() % 10000}{random.randrange(1000)}"
    cfg = tmp_path / "store.yaml"
    cfg.write_text(store_config(2, replicas=2))
    extra = {"s1": ["--metrics", "[::1]:9101"], "s2": []}
    pods = {pid: StorePod(cfg, pid, tmp_path / pid, f"[2001:db8:104::{pid[1]}]:8080",
                          tmp_path / f"{pid}.log", ["--timeout", "5000", *extra[pid]],
                          netns=ns)
            for pid in ("s1", "s2")}
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        for a in ("1", "2"):
            subprocess.run(["ip", "-n", ns, "addr", "add", f"2001:db8:104::{a}/128", "dev",
                            "lo", "nodad"], check=True)
        pods["s1"].start()
        subprocess.run(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", PUT, str(N)],
                       check=True, timeout=120)
        before = accepted(ns)
        pods["s2"].start()
        wait_for(lambda: "repair done" in pods["s2"].logtext(), "s2's repair", 60)
        text = pods["s2"].logtext()
        assert f"repair done: {N} object(s) pulled" in text, text
        opened = accepted(ns) - before  # the scrapes go to the metrics port, not counted
        # one listing page (one connection) and the pulls on one kept connection; a few
        # more if the pod's idle timeout closed it between two pulls on a loaded machine
        assert opened <= 10, f"s1 accepted {opened} connections for {N} objects pulled"
    finally:
        for pod in pods.values():
            pod.stop()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    for pod in pods.values():
        assert pod.proc.returncode == 0, pod.logtext()
