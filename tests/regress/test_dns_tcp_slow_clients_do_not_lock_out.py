"""DNS over TCP: clients trickling bytes held every connection slot (slowloris).

Seen: 256 connections each sending one byte every 4 s locked every new TCP client out for
as long as they kept trickling, well past the 10 s idle timeout: each byte reset the idle
clock, and at the connection limit a new client was closed at once.

Here, scaled down (--tcp-max 8, --tcp-idle 4): 8 clients keep a connection each, sending one
byte every 0.25 s and reconnecting whenever the server drops them. (--tcp-idle 1 made the
grace a new client has against evictions by reconnecting tricklers 125 ms, which an ASan
server on a loaded machine can take to read its query: closed, it failed the test.) Once every slot holds such
a query, a new client's query must be answered (at the limit the server evicts a trickler
for it or refuses it at once: there is no waiting, so being answered is the mechanism; a
trickler reconnecting at once must not push it out in turn), and every trickling connection
must be closed although its bytes come 4 x faster than --tcp-idle, as slow (a query's whole
read time is bounded, not the gap between bytes). How long each took is printed, not bounded:
a loaded machine stretches it."""
import os
import socket
import sys
import threading
import time

import dns.message
import dns.query
import dns.rcode

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peaktest import Server  # noqa: E402

SLOTS = 8
IDLE_S = 4
ATTACK_S = 5.0


def sockets_of(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return n


class Trickler(threading.Thread):
    """Holds one connection, a byte every 0.25 s (a query that never ends), and reconnects
    when dropped; records when the server first dropped it."""

    def __init__(self, port, stop):
        super().__init__(daemon=True)
        self.port, self.stop, self.t0, self.dropped_after = port, stop, None, None
        self.sent = 0  # bytes sent on the current connection

    def run(self):
        while not self.stop.is_set():
            try:
                with socket.create_connection(("::1", self.port), timeout=1) as s:
                    start = time.monotonic()
                    if self.t0 is None:
                        self.t0 = start
                    s.settimeout(0.25)
                    self.sent = 0
                    s.sendall(b"\xff")  # the length prefix of a 65535-byte query...
                    self.sent += 1
                    while not self.stop.is_set():
                        try:
                            if s.recv(1) == b"":
                                break  # dropped by the server
                        except socket.timeout:
                            s.sendall(b"\xff")  # ...arriving a byte at a time
                            self.sent += 1
                    else:
                        return
                    if self.dropped_after is None:
                        self.dropped_after = time.monotonic() - start
                time.sleep(0.01)
            except OSError:
                if self.dropped_after is None and self.t0 is not None:
                    self.dropped_after = time.monotonic() - self.t0
                time.sleep(0.01)


def test_trickling_clients_neither_lock_out_new_ones_nor_keep_their_slots(tmp_path):
    s = Server(tmp_path, extra=("--tcp-max", str(SLOTS), "--tcp-idle", str(IDLE_S)))
    stop = threading.Event()
    ts = [Trickler(s.port, stop) for _ in range(SLOTS)]
    try:
        base = sockets_of(s.proc.pid)
        for t in ts:
            t.start()
        deadline = time.monotonic() + 30
        # every slot taken, each by a query that has been trickling for longer than the grace
        # a new connection has against eviction (--tcp-idle / 8: a byte every 0.25 s)
        while sockets_of(s.proc.pid) < base + SLOTS or \
                min(t.sent for t in ts) < IDLE_S / 8 / 0.25 + 2:
            assert time.monotonic() < deadline, "the trickling clients were never served"
            time.sleep(0.01)
        # A new client is served while every slot is held by a trickler.
        t0 = time.monotonic()
        r = dns.query.tcp(dns.message.make_query("svc.example.", "SOA"), "::1", port=s.port,
                          timeout=10)
        took = time.monotonic() - t0
        print(f"a new client among {SLOTS} trickling ones answered in {took:.3f} s")
        assert r.rcode() == dns.rcode.NOERROR and r.answer
        # Each trickler is dropped (the old code kept them for as long as they trickled), and
        # some as slow: the read time of a query is bounded, though bytes keep coming.
        deadline = time.monotonic() + 30
        while any(t.dropped_after is None for t in ts):
            assert time.monotonic() < deadline, \
                f"{sum(t.dropped_after is None for t in ts)} trickling connections kept"
            time.sleep(0.02)
        print(f"tricklers dropped after {sorted(round(t.dropped_after, 2) for t in ts)} s "
              f"(--tcp-idle {IDLE_S})")
        assert s.metrics()['peak_dns_tcp_closed_total{reason="slow"}'] >= 1, s.metrics()
    finally:
        stop.set()
        for t in ts:
            t.join(timeout=3)
        s.stop()
    assert s.proc.returncode == 0, s.logtext()
