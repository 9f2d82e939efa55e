"""DNS control socket: one slow client froze the main thread.

Seen: the control socket was served on the main thread, one client at a time, with a
blocking read of up to 1 s per byte; a client trickling a byte every 0.9 s delayed
`dns-ctl status` and a SIGHUP reload by 10.5 s. Now clients are served without blocking,
each with a deadline for its whole exchange (2 s): while a client trickles, `status` answers and
SIGHUP reloads at once, and the trickling client is dropped.

Here the client would trickle for 32 s (108 bytes, one per 0.3 s), which the old code waited
out; the bounds are 15 s, half of that and 10x what a CI run with ASan took (1.46 s for the
status that once had to take under 1 s), so a loaded machine does not fail them. The order of
events cannot be asserted instead: a slow status may come after the client's 2 s deadline."""
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peaktest import Server  # noqa: E402


def test_trickling_control_client_delays_neither_status_nor_sighup(tmp_path):
    s = Server(tmp_path)
    stop, trickling = threading.Event(), threading.Event()
    dropped = []

    def trickle():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(s.control)
            c.settimeout(0.3)
            t0 = time.monotonic()
            for ch in b"status and never a newline " * 4:
                if stop.is_set():
                    return
                c.sendall(bytes([ch]))
                trickling.set()
                try:
                    if c.recv(1) == b"":
                        dropped.append(time.monotonic() - t0)
                        return
                except socket.timeout:
                    pass
                except OSError:
                    dropped.append(time.monotonic() - t0)
                    return

    th = threading.Thread(target=trickle, daemon=True)
    try:
        th.start()
        assert trickling.wait(timeout=3), "the slow client could not connect"
        t0 = time.monotonic()
        r = s.ctl("status")
        took = time.monotonic() - t0
        assert r.returncode == 0 and "pod-a up" in r.stdout, r
        print(f"status took {took:.2f} s beside a slow client")
        assert took < 15.0, f"status took {took:.2f} s behind a slow client"
        t0 = time.monotonic()
        s.signal(signal.SIGHUP)
        deadline = t0 + 15.0
        while "dns: reloaded" not in s.logtext():
            assert time.monotonic() < deadline, "SIGHUP not handled within 15 s"
            time.sleep(0.01)
        deadline = time.monotonic() + 30
        while not dropped:
            assert time.monotonic() < deadline, "the trickling client was never dropped"
            time.sleep(0.02)
        assert dropped[0] < 15.0  # its 2 s deadline, long before its 32 s of trickling
    finally:
        stop.set()
        th.join(timeout=5)  # (it checks stop every 0.3 s)
        s.stop()
    assert s.proc.returncode == 0, s.logtext()
