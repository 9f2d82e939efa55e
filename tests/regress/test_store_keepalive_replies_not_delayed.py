"""A store pod's replies on a kept-alive connection waited up to 40 ms for their body.

As seen: behind nginx (bench/store/run.py, keep-alive upstreams) a 1 KiB GET took 9 ms at the
median and 50 ms at p99, against 0.2 ms from a client with a fresh connection. The pod
sends a reply's head, then its body with sendfile; without TCP_NODELAY, Nagle held the
body until the head was acknowledged, and a peer past its first exchanges delays that ACK
(up to 40 ms). Twenty GETs on one connection took about a second; now a few milliseconds.
"""
import os
import socket
import time

from peaktest import free_port
from storepod import StorePod, store_config

N = 20


def read_reply(s, buf):
    while b"\r\n\r\n" not in buf:
        k = s.recv(65536)
        assert k, "closed"
        buf += k
    head, rest = buf.split(b"\r\n\r\n", 1)
    n = int([line.split(b":")[1] for line in head.split(b"\r\n")
             if line.lower().startswith(b"content-length:")][0])
    while len(rest) < n:
        k = s.recv(65536)
        assert k, "closed"
        rest += k
    return head.split(b" ")[1], rest[n:]


def test_keepalive_gets_not_held_by_nagle(tmp_path):
    cfg = tmp_path / "store.yaml"
    cfg.write_text(store_config(1))
    port = free_port()
    with StorePod(cfg, "s1", tmp_path / "data", f"[::1]:{port}", tmp_path / "pod.log"):
        s = socket.create_connection(("::1", port), timeout=10)
        body = os.urandom(1024)
        s.sendall(b"PUT /o/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n" + body)
        status, buf = read_reply(s, b"")
        assert status == b"201"
        t0 = time.time()
        for _ in range(N):
            s.sendall(b"GET /o/k HTTP/1.1\r\nHost: x\r\n\r\n")
            status, buf = read_reply(s, buf)
            assert status == b"200"
        took = time.time() - t0
        s.close()
        # Nagle's stall is 40 ms a reply after the first few: N of them take over half a
        # second; without it they take milliseconds even on a loaded machine
        assert took < N * 0.02, f"{N} keep-alive GETs took {took:.3f} s"
