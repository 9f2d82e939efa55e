"""Tombstones (issue 20) on one pod on loopback: a DELETE leaves a tombstone in
DATA/tomb; the listing (GET /s/) carries it ("NAME KEY TIME D", objects as "NAME KEY
VERSION"), which is how repair spreads it; a PUT after the DELETE brings the key back and
drops the tombstone; tombstones expire after --tombstone-ttl. What tombstones are for is
checked in the testbed: a replica down during a delete (test_replicas.py) and a delete
during a migration (test_migrate.py)."""
import os
import socket
import subprocess
import time

from conftest import CONFIG, PEAK, wait_for
from peaktest import free_port


# -- one pod on loopback: the listing, a PUT after a DELETE, expiry ----------------------

def request(port, method, path, body=None):
    s = socket.create_connection(("::1", port), timeout=10)
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if body is not None:
        head += f"Content-Length: {len(body)}\r\n"
    s.sendall(head.encode() + b"\r\n" + (body or b""))
    data = b""
    while True:
        k = s.recv(65536)
        if not k:
            break
        data += k
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


def test_listing_put_again_and_expiry(tmp_path):
    cfg = tmp_path / "solo.yaml"
    cfg.write_text(CONFIG.split("    endpoints:")[0] +
                   '    endpoints:\n      - {id: s1, address: "2001:db8:104::1"}\n')
    port, data = free_port(), tmp_path / "data"
    log = open(tmp_path / "pod.log", "w+")
    pod = subprocess.Popen([PEAK, "store", "serve", "--config", str(cfg), "--id", "s1",
                            "--data", str(data), "--listen", f"[::1]:{port}",
                            "--tombstone-ttl", "2"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "serving" in (tmp_path / "pod.log").read_text(), "the pod", 10)
        assert request(port, "PUT", "/o/a%20b", b"one")[0] == 201
        assert request(port, "PUT", "/o/c", b"two")[0] == 201
        t0 = time.time() * 1000
        assert request(port, "DELETE", "/o/a%20b")[0] == 204
        assert request(port, "GET", "/o/a%20b")[0] == 404
        assert request(port, "DELETE", "/o/a%20b")[0] == 404  # nothing left to delete
        status, body = request(port, "GET", "/s/")
        lines = body.decode().splitlines()
        assert status == 200 and len(lines) == 2, lines
        tomb = [line.split() for line in lines if line.endswith(" D")]
        obj = [line.split() for line in lines if not line.endswith(" D")]
        assert len(tomb) == 1 and tomb[0][1] == "a%20b" and tomb[0][0] in os.listdir(data / "tomb")
        assert abs(int(tomb[0][2]) - t0) < 5000, tomb
        assert len(obj) == 1 and obj[0][1] == "c" and len(obj[0]) == 3 and int(obj[0][2]) > 0
        # put again: the key is back and its tombstone gone
        assert request(port, "PUT", "/o/a%20b", b"three")[0] == 201
        assert request(port, "GET", "/o/a%20b") == (200, b"three")
        assert [f for f in os.listdir(data / "tomb") if not f.startswith(".")] == []
        # deleted again, the tombstone expires after its 2 s
        assert request(port, "DELETE", "/o/c")[0] == 204
        assert len(os.listdir(data / "tomb")) == 1
        wait_for(lambda: "1 tombstone(s) expired" in (tmp_path / "pod.log").read_text(),
                 "the tombstone to expire", 10)
        assert not os.listdir(data / "tomb")
        assert "D" not in request(port, "GET", "/s/")[1].decode().split()
    finally:
        pod.terminate()
        pod.wait(timeout=10)
    assert pod.returncode == 0
