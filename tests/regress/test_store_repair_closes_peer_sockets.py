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


def test_repair_closes_its_peer_sockets(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    ns = f"pkrs{os.getpid() % 10000}{random.randrange(1000)}"
    cfg = tmp_path / "store.yaml"
    cfg.write_text(store_config(2, replicas=2))
    pods = {pid: StorePod(cfg, pid, tmp_path / pid, f"[2001:db8:104::{pid[1]}]:8080",
                          tmp_path / f"{pid}.log", ["--timeout", "2000"], netns=ns)
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
        pods["s2"].start()
        wait_for(lambda: "repair done" in pods["s2"].logtext(), "s2's repair", 60)
        text = pods["s2"].logtext()
        assert f"repair done: {N} object(s) pulled" in text, text
        fds = len(os.listdir(f"/proc/{pods['s2'].proc.pid}/fd"))
        assert fds < 40, f"s2 holds {fds} descriptors after pulling {N} objects"
    finally:
        for pod in pods.values():
            pod.stop()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    for pod in pods.values():
        assert pod.proc.returncode == 0, pod.logtext()
