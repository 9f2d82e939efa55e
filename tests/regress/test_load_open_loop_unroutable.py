"""peak load, open loop, against a target with no route: every connect fails at once
(ENETUNREACH). The failed request put its slot on the ready list, and the next due request of
the same slot, seen idle with an empty queue by issue_due, started (and failed) at once again
and put the slot on the list a second, third... time: writes past the ready list, a heap
buffer overflow under ASan (and heap corruption in the plain build).

Guarded here: the run completes with exit status 0, every request is accounted for once
(ok + failed + unfinished == sent), all of them failed as 'connect' or 'overload'."""
import json
import os
import subprocess

import pytest

PEAK = os.environ.get("PEAK_BIN", "build/peak")


@pytest.fixture
def noroute_netns():
    """A namespace with only lo up: no route to 2001:db8::/32 at all."""
    name = f"rgld{os.getpid() % 10000}x"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.mark.parametrize("extra", [[], ["--retries", "3"], ["--threads", "2"]])
def test_open_loop_unroutable_target(noroute_netns, extra):
    clients = "2" if "--threads" in extra else "1"
    # far more requests per second than one client's loop can start: several fall due for
    # the same slot between two passes over the ready list
    p = subprocess.run([*noroute_netns, PEAK, "load", "[2001:db8::1]:80", "--rate", "200000",
                        "--clients", clients, "--duration", "0.5", "--json", *extra],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (p.returncode, p.stderr[-3000:])
    assert "ERROR: AddressSanitizer" not in p.stderr, p.stderr[-3000:]
    r = json.loads(p.stdout)
    assert r["sent"] > 0
    assert r["ok"] == 0
    assert r["ok"] + r["failed"] + r["unfinished"] == r["sent"], r
    errs = r["errors"]
    assert errs["connect"] > 0
    assert r["failed"] == errs["connect"] // (1 + int(extra[1]) if "--retries" in extra
                                              else 1) + errs["overload"], r
