"""Regression: `peak connect --timeout MS` did not bound the connect. Its help says it does,
but the command passed 0 to peak_connect, so every connect waited out the library's default
of 5 s on a silent address whatever --timeout said. In a namespace whose route for the
service's range leads to a neighbour nobody is (the SYNs go nowhere, nothing answers), a
connect with
--timeout 300 now fails after about 0.3 s, far under the 5 s it took (3 s is the bound:
between the two, with room for a loaded machine)."""
import os
import subprocess
import time

import pytest

import peaktest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


@pytest.fixture
def ns():
    name = f"ctmo{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        # the service's range via a neighbour whose MAC nobody has: the SYNs leave v0, v1
        # drops them (not its address), nothing answers and no error comes back
        for cmd in (["link", "set", "lo", "up"],
                    ["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                    ["link", "set", "v0", "up"], ["link", "set", "v1", "up"],
                    ["-6", "addr", "add", "2001:db8:1::2/64", "dev", "v0", "nodad"],
                    ["-6", "neigh", "add", "2001:db8:1::99", "lladdr", "02:00:00:00:00:99",
                     "dev", "v0", "nud", "permanent"],
                    ["-6", "route", "add", "2001:db8:5::/64", "via", "2001:db8:1::99",
                     "dev", "v0"]):
            subprocess.run(["ip", "-n", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name])


def test_timeout_bounds_the_connect(tmp_path, ns):
    srv = peaktest.Server(tmp_path, netns=ns)
    try:
        t0 = time.monotonic()
        r = subprocess.run(["ip", "netns", "exec", ns, peaktest.PEAK, "connect",
                            "api.svc.example.", "80", "--server", f"[::1]:{srv.port}",
                            "--timeout", "300"], capture_output=True, text=True, timeout=30)
        dt = time.monotonic() - t0
        print(f"connect to a silent address with --timeout 300: failed after {dt:.2f} s")
        assert r.returncode == 1, (r.returncode, r.stderr)
        assert "connect" in r.stderr, r.stderr
        assert dt < 3.0, (dt, r.stderr)
    finally:
        srv.stop()
