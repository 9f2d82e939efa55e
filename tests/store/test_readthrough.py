"""A read-through runs off the pod's event loop (issue 20): during a migration a read that
misses is fetched from the key's old owner on a fetch thread, so a slow fetch (a large
object, a stalled old owner) holds up no other request. As seen before: the loop itself
made the fetch, so every request to the new pod waited for it, up to the pod's timeout per
step.

A third pod joins a two-pod store (its walk held back to one object a second, so it is still
moving). Pod s1 is replaced by a listener that reads requests and never answers (a stalled
old owner). A GET at the new pod of a key it took from s1 and has not pulled yet starts a
read-through to it; once that request reached the stalled owner, a GET at the new pod of a
key it holds must be answered while the first is still waiting.

  [cl] client ---- [a] s1 stopped; a listener on [2001:db8:104::1]:8080 that never answers
                   [b] s2
                   [c] s3 (joins): reads the missing key through from s1
"""
import os
import re
import subprocess
import sys

import pytest

from conftest import NAME, PORT, Net, wait_for
from test_migrate import bulk, key_of, objects, slice_held

N = 60

STALL = r"""
import socket, sys
out = open(sys.argv[1], "a", buffering=1)
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("2001:db8:104::1", 8080))
s.listen(64)
out.write("listening\n")
held = []
while True:
    c, _ = s.accept()
    c.settimeout(5)
    try:
        out.write(c.recv(4096).split(b"\r\n")[0].decode(errors="replace") + "\n")
    except OSError:
        pass
    held.append(c)  # never answered, never closed
"""

RACE = r"""
import socket, sys, time
addr, slow, fast, marker = sys.argv[1:5]
a = socket.create_connection((addr, 8080), timeout=10)
a.sendall(f"GET /o/{slow} HTTP/1.1\r\nHost: s\r\n\r\n".encode())
deadline = time.time() + 20
while f"GET /o/{slow} " not in open(marker).read():
    if time.time() > deadline:
        sys.exit("the read-through never reached the old owner")
    time.sleep(0.02)
b = socket.create_connection((addr, 8080), timeout=10)
b.sendall(f"GET /o/{fast} HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n".encode())
reply = b.recv(4096).split(b"\r\n")[0].decode()
a.setblocking(False)
try:
    first = a.recv(4096)
    state = "answered" if first else "closed"
except BlockingIOError:
    state = "pending"
print(reply, "|", state)
"""

HTTP_PUT = r"""
import http.client, sys
for i in range(200):
    c = http.client.HTTPConnection(sys.argv[1], 8080, timeout=10)
    c.request("PUT", f"/o/fresh-{i}", body=b"x" * 100)
    if c.getresponse().status == 201:
        print(f"fresh-{i}")
        break
"""


@pytest.fixture()
def net3(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    n = Net(tmp_path, npods=3, late=1)
    try:
        n.up()
        yield n
    finally:
        n.down()


def test_slow_read_through_does_not_hold_up_other_reads(net3, tmp_path):
    p = bulk(net3, "put", str(N))
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    s1 = net3.pods["s1"]
    before = objects(s1)
    (new,) = net3.join(["--pull-rate", "1"])
    blocks = re.findall(r"store: s3 holds (\S+)", new.logtext())
    # the walk pulls in name order: the greatest of s1's objects for s3 comes last
    moving = sorted(f for f in before if slice_held(f, blocks))
    assert moving, blocks
    slow = key_of(s1.data / moving[-1])
    s1.stop()
    marker = tmp_path / "stalled.txt"
    marker.write_text("")
    stall = subprocess.Popen(["ip", "netns", "exec", s1.ns, sys.executable, "-c", STALL,
                              str(marker)])
    try:
        wait_for(lambda: "listening" in marker.read_text(), "the stalled owner")
        fast = net3.py(HTTP_PUT, "2001:db8:104::3").strip()
        assert fast, "no key of s3's slices was stored at s3"
        assert moving[-1] not in objects(new), "the walk pulled the key already"
        out = net3.py(RACE, "2001:db8:104::3", slow, fast, str(marker), timeout=60)
        reply, state = [x.strip() for x in out.split("|")]
        assert reply == "HTTP/1.1 200 OK", out
        assert state == "pending", out
    finally:
        stall.kill()
        stall.wait()
