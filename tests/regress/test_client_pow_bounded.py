"""Proof of work from DNS was unbounded: 'pow' and 'nonce' up to 64 bits let one spoofed TXT
record hang peak_resolve far past its timeout (up to 3 x 255 nonce searches; with
'pow=60; nonce=64', 'peak resolve --timeout 1000' was still running after 25 s).

Guarded here: a descriptor asking more than 28 bits is refused at once with a message naming
the limit; a real 'peak dns' publishing the largest allowed work (pow=28) on 16 fanout
addresses, hours of search, lets 'peak resolve --timeout 1000' return, either with the
addresses found by then (fewer than the 16: it stopped searching) or with a clear error.
The seconds are printed; the bound is the subprocess's deadline, 30 x the timeout and far
short of the old code's minutes (hours under ASan), not a wall-clock bound a loaded
machine's process start could break."""
import os
import subprocess
import time

from fakedns import FakeDNS
from peaktest import Server

PEAK = os.environ.get("PEAK_BIN", "build/peak")
K = "000102030405060708090a0b0c0d0e0f"
TIMEOUT_MS = 1000

CONFIG = f"""
zone:
  name: svc.example.
  ns:
    - {{name: ns1.svc.example., address: "2001:db8:53::1"}}
services:
  - name: pow.svc.example.
    prefixes: [2001:db8:5::/64]
    slice: 78
    select: src
    host: src
    fanout: 16
    pow: 28
    key: {K}
    endpoints:
      - {{id: pod-a, address: "2001:db8:100::a"}}
"""


def resolve(port, name, timeout=60):
    t = time.monotonic()
    p = subprocess.run([PEAK, "resolve", name, "--server", f"[::1]:{port}", "--all",
                        "--source", "2001:db8:aa:bb::1", "--timeout", str(TIMEOUT_MS)],
                       capture_output=True, text=True, timeout=timeout)
    return p, time.monotonic() - t


def test_pow_above_the_cap_is_refused_at_once():
    # slice=64 on a /64: all 64 host bits are nonce
    desc = f'"v=ssa1; slice=64; select=src; host=src; pow=60; nonce=64; key={K}"'
    with FakeDNS({("api.svc.example.", "APL"): ["2:2001:db8:5::/64"],
                  ("_ssa.api.svc.example.", "TXT"): [desc]}) as srv:
        p, took = resolve(srv.port, "api.svc.example.", timeout=30 * TIMEOUT_MS / 1000)
    # refused, not searched: the message says so (the seconds are printed, not bounded)
    print(f"pow=60 refused after {took:.2f} s")
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "pow=60 is above the limit of 28 bits" in p.stderr, p.stderr


def test_largest_allowed_pow_returns_within_its_timeout(tmp_path):
    srv = Server(tmp_path, config=CONFIG)
    try:
        # before the fix: 16 searches of about 2^28 hashes each (minutes, hours under ASan)
        p, took = resolve(srv.port, "pow.svc.example.", timeout=30 * TIMEOUT_MS / 1000)
    finally:
        srv.stop()
    print(f"pow=28 on 16 addresses: returned after {took:.2f} s (--timeout {TIMEOUT_MS})")
    if p.returncode == 0:  # the rule's address, maybe more, found within the timeout
        lines = p.stdout.splitlines()
        assert 1 <= len(lines) < 16 and "rule" in lines[0], p.stdout
    else:
        assert p.returncode == 1, (p.returncode, p.stderr)
        assert "proof of work did not finish in time" in p.stderr, p.stderr
        assert "pow=28" in p.stderr and "gave up after" in p.stderr, p.stderr
