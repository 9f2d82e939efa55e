"""The object store calls of libpeak's peak.h (issue 20, second increment), driven by the
C program store_lib.c against pods with replicas=3: buffers and fds both ways, a pipe
spooled, not-found and refused cases with their error codes."""
import os
import subprocess

import pytest

from conftest import NAME, PORT, Net


@pytest.fixture(scope="module")
def net3(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if not os.environ.get("STORE_LIB"):
        pytest.skip("STORE_LIB (the built tests/store/store_lib) is not set")
    n = Net(tmp_path_factory.mktemp("storelib"), npods=3, replicas=3)
    try:
        n.up()
        yield n
    finally:
        n.down()


def test_library_calls(net3):
    r = subprocess.run(["ip", "netns", "exec", net3.cl, os.environ["STORE_LIB"],
                        f"[::1]:{net3.dns.port}", str(PORT), NAME],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "FAIL" not in r.stdout, r.stdout + r.stderr
    assert r.stdout.count("ok ") == 11, r.stdout
    # every replica holds the pipe's object: three pods, replicas=3
    holders = [p for p in net3.pods.values()
               if any(b"from a pipe" in (p.data / f).read_bytes() for f in p.files())]
    assert len(holders) == 3
