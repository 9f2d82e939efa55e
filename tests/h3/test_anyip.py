"""peak h3 backend as a PEAK pod: bound to [::] in a network namespace whose AnyIP route
makes a whole /64 local, it answers every address of the prefix from that address
(IPV6_PKTINFO), so clients, whose connected sockets accept only the address they dialled, get
their uploads through on any slice address, and on ::1 too.

    namespace h3<pid>a:  lo  ::1, local route 2001:db8:77::/64 (AnyIP)
      peak h3 backend --listen [::]:PORT        peak h3 upload https://[2001:db8:77::X]:PORT/
"""
import os
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import PEAK, wait_for  # noqa: E402
from test_h3 import write  # noqa: E402


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    name = f"h3{os.getpid() % 10000}a"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "-6", "route", "add", "local", "2001:db8:77::/64", "dev", "lo")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def test_backend_answers_every_anyip_address_from_itself(tmp_path, certs, netns):
    log = open(tmp_path / "backend.log", "w+")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, PEAK, "h3", "backend", "--listen", "[::]:0", "--cert",
         str(certs / "srv.pem"), "--key", str(certs / "srv.key"), "--type", "audio/*",
         "--id", "pod-a"], stdout=log, stderr=subprocess.STDOUT)
    try:
        def port():
            log.flush()
            m = re.search(r"listening on \[::\]:(\d+)", (tmp_path / "backend.log").read_text())
            assert proc.poll() is None, (tmp_path / "backend.log").read_text()
            return m and int(m.group(1))
        p = wait_for(port, 10, "the backend to listen")
        write(tmp_path / "a", 200_000, "a")
        for addr in ("2001:db8:77::5", "2001:db8:77::beef:1", "::1"):
            r = subprocess.run(
                ["ip", "netns", "exec", netns, PEAK, "h3", "upload", f"https://[{addr}]:{p}/",
                 "--insecure", "--timeout", "10000", "--file", f"{tmp_path / 'a'}:audio/ogg"],
                capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, (addr, r.stdout, r.stderr)
            assert "status=201" in r.stdout and "checksum=ok" in r.stdout
    finally:
        proc.terminate()
        rc = proc.wait(timeout=10)
        log.close()
    assert rc == 0, (tmp_path / "backend.log").read_text()
