"""A read at a pod that is migrating, of a key it lacks, was answered 404 when its
read-through fetch failed, even though the object had reached the pod while the fetch ran:
the pod looked at its disk only after a fetch that succeeded. In the store bench under the
controller (bench/store/run.py --small 3000) one move in six failed a read or three
this way: an old owner's drop pass asks the new owner for each moved object (HEAD, which
reads a miss through from that old owner, so the new owner stores it), then drops its
copy; a client's read-through of the same key still in flight then reached the old owner
after the drop and got 404 (or 421), and the new pod answered 404 for an object it held.
Now the pod answers from its disk whatever the fetch gave.

Here: a third pod joins a two-pod store (its walk held back to one object a second and
stalled, so it is still moving). Pod s1 is replaced by a fake old owner that, asked for
the key, first stores it at the new pod (a PUT, standing in for the drop's hand-over) and
then answers 404; every other request it holds unanswered. A GET of the key at the new
pod must be 200 with the stored body.

  [cl] client ---- [a] s1 stopped; the fake on [2001:db8:104::1]:8080
                   [b] s2
                   [c] s3 (joins, --timeout 30000): reads the key through from s1
"""
import importlib.util
import ipaddress
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "store_conftest", os.path.join(HERE, "..", "store", "conftest.py"))
store = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(store)

SERVICE = ipaddress.ip_network("2001:db8:8::/64")

PUT_S1 = r"""
import http.client, sys
for i in range(int(sys.argv[1])):
    c = http.client.HTTPConnection("2001:db8:104::1", 8080, timeout=10)
    c.request("PUT", f"/o/arr-{i}", body=b"old copy")
    c.getresponse().read()
"""

FAKE = r"""
import http.client, socket, sys, threading
slow, out = sys.argv[1], open(sys.argv[2], "a", buffering=1)
held = []
def serve(c):
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return
            buf += d
        head, buf = buf.split(b"\r\n\r\n", 1)
        line = head.split(b"\r\n")[0].decode(errors="replace")
        out.write(line + "\n")
        if line.startswith(f"GET /o/{slow} "):
            p = http.client.HTTPConnection("2001:db8:104::3", 8080, timeout=20)
            p.request("PUT", f"/o/{slow}", body=b"arrived meanwhile")
            out.write(f"put {p.getresponse().status}\n")
            c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nX-Peak-Pod: s1\r\n\r\n")
        else:
            held.append(c)  # the walk's listing and pulls: never answered
            return
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("2001:db8:104::1", 8080))
s.listen(64)
out.write("listening\n")
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

GET = r"""
import http.client, sys
c = http.client.HTTPConnection("2001:db8:104::3", 8080, timeout=60)
c.request("GET", "/o/" + sys.argv[1])
r = c.getresponse()
print(r.status, r.read().decode())
"""


def slice_held(name, blocks):
    """Whether the object file's slice (its first 8 hex digits) lies in one of the blocks."""
    addr = SERVICE.network_address + (int(name[:8], 16) << 56)
    return any(addr in ipaddress.ip_network(b) for b in blocks)


def key_of(path):
    data = store.obj_bytes(path.parent, path.name)  # a file, or in the small-object log
    return data[6:6 + (data[4] << 8 | data[5])].decode()


def objects(pod):
    return {f for f in pod.files() if store.OBJECT_NAME.match(f)}


def test_read_through_answers_from_the_disk_when_the_object_arrived(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    net = store.Net(tmp_path, npods=3, late=1)
    fake = None
    try:
        net.up()
        net.py(PUT_S1, "200")  # s1 keeps those of its slices, the others get 421
        s1 = net.pods["s1"]
        before = objects(s1)
        (new,) = net.join(["--pull-rate", "1", "--timeout", "30000"])
        blocks = re.findall(r"store: s3 holds (\S+)", new.logtext())
        # the walk pulls in name order: the greatest of s1's objects for s3 comes last
        moving = sorted(f for f in before if slice_held(f, blocks))
        assert moving, blocks
        slow = key_of(s1.data / moving[-1])
        s1.stop()
        marker = tmp_path / "fake.txt"
        marker.write_text("")
        fake = subprocess.Popen(["ip", "netns", "exec", s1.ns, sys.executable, "-c", FAKE,
                                 slow, str(marker)])
        store.wait_for(lambda: "listening" in marker.read_text(), "the fake old owner")
        assert moving[-1] not in objects(new), "the walk pulled the key already"
        out = net.py(GET, slow, timeout=90).strip()
        assert "put 201" in marker.read_text(), marker.read_text()
        assert out == "200 arrived meanwhile", out
    finally:
        if fake:
            fake.kill()
            fake.wait()
        net.down()
