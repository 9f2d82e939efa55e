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
import http.client
import os
import random
import subprocess
import time

import pytest
from peaktest import K

PEAK = os.environ.get("PEAK_BIN", "build/peak")
N = 120

CONFIG = f"""
zone:
  name: svc.example.
  ns:
    - {{name: ns1.svc.example., address: "2001:db8:53::1"}}
  soa: {{primary: ns1.svc.example., contact: hostmaster.svc.example., serial: 7, minimum: 20}}
services:
  - name: store.svc.example.
    prefixes: [2001:db8:8::/64]
    slice: 72
    select: obj
    host: src
    port: 8080
    key: {K}
    replicas: 2
    endpoints:
      - {{id: s1, address: "2001:db8:104::1"}}
      - {{id: s2, address: "2001:db8:104::2"}}
"""

PUT = """
import http.client, sys
c = http.client.HTTPConnection("2001:db8:104::1", 8080, timeout=10)
for i in range(int(sys.argv[1])):
    c.request("PUT", f"/o/k{i}", body=b"x" * 100)
    r = c.getresponse(); r.read()
    assert r.status == 201, r.status
"""


def wait_for(cond, what, timeout=30):
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_repair_closes_its_peer_sockets(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    ns = f"pkrs{os.getpid() % 10000}{random.randrange(1000)}"
    cfg = tmp_path / "store.yaml"
    cfg.write_text(CONFIG)
    procs, logs = {}, {}
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        for a in ("1", "2"):
            subprocess.run(["ip", "-n", ns, "addr", "add", f"2001:db8:104::{a}/128", "dev",
                            "lo", "nodad"], check=True)

        def start(pid):
            logs[pid] = tmp_path / f"{pid}.log"
            procs[pid] = subprocess.Popen(
                ["ip", "netns", "exec", ns, PEAK, "store", "serve", "--config", str(cfg),
                 "--id", pid, "--data", str(tmp_path / pid), "--listen",
                 f"[2001:db8:104::{pid[1]}]:8080", "--timeout", "2000"],
                stdout=open(logs[pid], "w"), stderr=subprocess.STDOUT)
            wait_for(lambda: "serving" in logs[pid].read_text(), f"{pid} to start")

        start("s1")
        subprocess.run(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", PUT, str(N)],
                       check=True, timeout=120)
        start("s2")
        wait_for(lambda: "repair done" in logs["s2"].read_text(), "s2's repair", 60)
        text = logs["s2"].read_text()
        assert f"repair done: {N} object(s) pulled" in text, text
        fds = len(os.listdir(f"/proc/{procs['s2'].pid}/fd"))
        assert fds < 40, f"s2 holds {fds} descriptors after pulling {N} objects"
    finally:
        for p in procs.values():
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    for pid, p in procs.items():
        assert p.returncode == 0, logs[pid].read_text()
