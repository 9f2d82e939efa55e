"""DNS over TCP: queries pipelined on one connection stalled until the idle timeout.

Seen: 2000 queries pipelined on one connection by an independent client, 1846 answered after
2 s (300 were all answered in 36 ms). The TCP loop returned after flushing an answer with
queries still in its input buffer, and stopped reading once the input buffer was full
(edge-triggered epoll: no new edge came for the bytes left in the socket), so the rest waited
until --tcp-idle closed the connection.

Here: 4000 dnspython-built queries (more than the 64 KiB input buffer holds) are written
on one connection from one thread while another reads the answers; every one must be
answered, in order, before the connection goes idle: the old code's stall ended with the
server closing it after --tcp-idle, short of the 4000. How long it took against the same
number of UDP queries sent one after another is printed (a ratio of two wall-clock times
on a loaded machine is a benchmark figure, not a test)."""
import os
import socket
import struct
import sys
import threading
import time

import dns.message

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peaktest import Server  # noqa: E402

N = 4000
NAMES = [("svc.example.", "SOA"), ("api.svc.example.", "APL"), ("api.svc.example.", "AAAA"),
         ("_ssa.api.svc.example.", "TXT"), ("nope.svc.example.", "A")]


def wires():
    out = []
    for i in range(N):
        name, rdtype = NAMES[i % len(NAMES)]
        q = dns.message.make_query(name, rdtype, id=i & 0xffff)
        out.append(q.to_wire())
    return out


def udp_time(port, qs):
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        t0 = time.monotonic()
        for w in qs:
            s.sendto(w, ("::1", port))
            s.recv(4096)
        return time.monotonic() - t0


def tcp_pipelined(port, qs, deadline_s):
    """Writes every query on one connection from a thread while this one reads; returns
    (ids of the answers in order, seconds taken)."""
    ids = []
    with socket.create_connection(("::1", port), timeout=deadline_s) as s:
        data = b"".join(struct.pack("!H", len(w)) + w for w in qs)
        t0 = time.monotonic()
        writer = threading.Thread(target=s.sendall, args=(data,), daemon=True)
        writer.start()
        buf = b""
        end = t0 + deadline_s
        while len(ids) < len(qs) and time.monotonic() < end:
            s.settimeout(max(0.01, end - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break  # the server closed the connection
            buf += chunk
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                n = struct.unpack("!H", buf[:2])[0]
                ids.append(struct.unpack("!H", buf[2:4])[0])
                buf = buf[2 + n:]
        took = time.monotonic() - t0
        writer.join(timeout=5)
    return ids, took


def test_thousands_of_pipelined_queries_all_answered_at_udp_pace(tmp_path):
    # --tcp-idle 5: the old code's stall would end with the connection closed after 5 s
    s = Server(tmp_path, extra=("--tcp-idle", "5"))
    try:
        qs = wires()
        udp = udp_time(s.port, qs)
        # (the deadline is for a hung server only: a stalled one closes the connection)
        ids, took = tcp_pipelined(s.port, qs, deadline_s=max(60.0, 10 * udp))
        print(f"{N} queries: TCP pipelined {took:.2f} s, UDP one after another {udp:.2f} s")
        assert len(ids) == N, f"{len(ids)} of {N} answered in {took:.2f} s (UDP: {udp:.2f} s)"
        assert ids == [i & 0xffff for i in range(N)]  # in order, each once
    finally:
        s.stop()
    assert s.proc.returncode == 0, s.logtext()
