"""`peak` linked libcurl, which only the etcd and Kubernetes stores use (the controller's
store, peak dns's follower): every command paid the dynamic loader's time for libcurl and the
libraries it needs (its TLS, HTTP/2, SSH, LDAP, RTMP, IDN and GSSAPI stacks: 5-6 ms of CPU per
`peak` run, on every `peak h3 upload` of the bench). Now src/etcd/curl_load.c opens libcurl on
the first curl_* call. Here the binary's own dependencies name no libcurl, the commands that
use no store (`peak h3 upload --help`, `peak dns --help`) run without it mapped, and
`peak dns --store etcd` (which opens the etcd client before checking its configuration) loads
it."""
import os
import shutil
import subprocess

import pytest

PEAK = os.environ.get("PEAK_BIN", "build/peak")
HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "..", "..", "examples", "peak.yaml")


def loader_files(args):
    # LD_DEBUG=files names every object the loader maps (and what dlopen opens), to stderr
    r = subprocess.run([PEAK] + args, capture_output=True, text=True,
                       env=dict(os.environ, LD_DEBUG="files"), timeout=60)
    assert "file=" in r.stderr  # the loader did report its files
    return r


def test_peak_does_not_link_libcurl():
    if not shutil.which("ldd"):
        pytest.skip("no ldd")
    out = subprocess.run(["ldd", PEAK], capture_output=True, text=True, check=True).stdout
    assert "libcurl" not in out, out


@pytest.mark.parametrize("args", [["h3", "upload", "--help"], ["dns", "--help"]])
def test_no_libcurl_mapped_without_a_store(args):
    r = loader_files(args)
    assert "libcurl" not in r.stderr


def test_the_etcd_store_loads_libcurl():
    # port 9 (discard): nothing is asked of etcd before --check's answer
    r = loader_files(["dns", "--config", CONFIG, "--check", "--store", "etcd",
                      "--etcd", "http://127.0.0.1:9"])
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "ok" in r.stdout
    assert "file=libcurl" in r.stderr and "dynamically loaded" in r.stderr
