"""`peak` linked OpenDHT's C library (libopendht-c), which brings OpenDHT's C++ and its
dependencies into every command: the dynamic loader spent about 9 ms per `peak` run on
relocations (57 shared libraries) that only the overlay's DHT slave uses, and the HTTP/3
client's goodput in the bench paid it on every upload. Now src/overlay/odht_load.c opens the
library when the DHT slave starts. Here the binary's own dependencies (its DT_NEEDED entries,
and what ldd resolves) name no OpenDHT library, and a command that is not the overlay
(`peak h3 upload --help`) runs without it mapped."""
import os
import shutil
import subprocess

import pytest

PEAK = os.environ.get("PEAK_BIN", "build/peak")


def test_peak_does_not_link_opendht():
    if not shutil.which("ldd"):
        pytest.skip("no ldd")
    out = subprocess.run(["ldd", PEAK], capture_output=True, text=True, check=True).stdout
    assert "libopendht" not in out, out


def test_no_opendht_mapped_outside_the_dht():
    # LD_DEBUG=files names every object the loader maps, to stderr
    r = subprocess.run([PEAK, "h3", "upload", "--help"], capture_output=True, text=True,
                       env=dict(os.environ, LD_DEBUG="files"), timeout=60)
    assert "libopendht" not in r.stderr
    assert "file=" in r.stderr  # the loader did report its files
