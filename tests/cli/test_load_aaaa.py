"""peak load --aaaa, the legacy client of bench/ingress ('DNS-steered'): a name resolved by its
plain AAAA records alone, asked of --server from each client's source, with no SSA
computation even when the name publishes APL and a descriptor; and its bad input."""
import json
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fakedns import FakeDNS  # noqa: E402
from peaktest import PEAK  # noqa: E402
from test_load import serve  # noqa: E402,F401

NAME = "api.svc.example."
SSA = {(NAME, "APL"): ["2:2001:db8:5::/64"],
       ("_ssa." + NAME, "TXT"): ['"v=ssa1; slice=78; select=rand; host=rand"']}


def load(*args):
    return subprocess.run([PEAK, "load", *args], capture_output=True, text=True, timeout=60)


def test_aaaa_only_no_ssa_computation(serve):
    with FakeDNS({**SSA, (NAME, "AAAA"): ["::1", "2001:db8:77::9"]}, ttl=7) as dns:
        srv = f"[::1]:{dns.port}"
        # an SSA client computes an address in the service prefix
        p = load(NAME, "--server", srv, "--port", str(serve), "--list")
        assert p.returncode == 0, p.stderr
        assert "[2001:db8:5:" in p.stdout
        # the legacy client takes the AAAA answer, both addresses (in the answer's order,
        # which dnspython does not keep); --list sends nothing
        p = load(NAME, "--server", srv, "--port", str(serve), "--aaaa", "--clients", "3",
                 "--list")
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert len(lines) == 3
        for ln in lines:
            assert sorted(ln.split()[1:]) == [f"[2001:db8:77::9]:{serve}", f"[::1]:{serve}"]
    # and serves from it (loopback only); the answer's TTL is reported
    with FakeDNS({**SSA, (NAME, "AAAA"): ["::1"]}, ttl=7) as dns:
        srv = f"[::1]:{dns.port}"
        p = load(NAME, "--server", srv, "--port", str(serve), "--aaaa", "--concurrency", "2",
                 "--duration", "0.5", "--json")
        assert p.returncode == 0, p.stderr
        r = json.loads(p.stdout)
        assert r["ok"] > 0 and r["failed"] == 0 and r["aaaa_ttl_s"] == 7


def test_aaaa_bad_input():
    # no --server: a usage error
    p = load(NAME, "--aaaa", "--list")
    assert p.returncode == 2 and "--aaaa needs --server" in p.stderr
    p = load(NAME, "--aaaa", "--server", "not-an-address", "--list")
    assert p.returncode == 2 and "--server" in p.stderr
    # a name with SSA records but no AAAA: the legacy client has nothing to connect to
    with FakeDNS(SSA) as dns:
        p = load(NAME, "--aaaa", "--server", f"[::1]:{dns.port}", "--list")
        assert p.returncode == 1 and "no AAAA records" in p.stderr
    # a server that never answers: 3 tries of 1 s, then a clear failure
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind(("::1", 0))
    try:
        p = load(NAME, "--aaaa", "--server", f"[::1]:{s.getsockname()[1]}", "--list")
        assert p.returncode == 1 and "timed out" in p.stderr.lower(), p.stderr
    finally:
        s.close()
