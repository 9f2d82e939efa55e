"""Regression: the resiliency slave took a stall of its own daemon for silence of its peers.
On a loaded host (CI: two ASan suites side by side) the daemon may not run for a second; its
next tick found every peer in use silent for longer than dead-ms and gave the paths up, and
the peers' probes flagged "I hear nothing from you" (true while it slept) did the same. A
degraded path relayed through C went direct for the length of such a flap. Now ticks more
than 200 ms apart are a stall of our own: silence counts from its end, the probes in flight
are forgotten, peers' flags are not taken for dead-ms, and the stall is counted.

The stall is made with SIGSTOP for 2 s (more than twice dead-ms) while hA pings hB; after
SIGCONT, A must not count a path down, and must count the stall.

    hA fd00:a::2      hB fd00:b::2      hC fd00:c::2
    gA 10.0.1.2       gB 10.0.2.2       gC 10.0.3.2
      +--------------- r ---------------+
"""
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "overlay"))
from ovbed import wait_for  # noqa: E402
from test_resil import running_bed  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


@pytest.fixture
def bed(tmp_path):
    with running_bed(tmp_path, "rst", "resiliency:\n  dead-ms: 600\n") as b:
        yield b


def test_own_stall_is_not_peer_silence(bed):
    b = bed
    wait_for("ha pings hb", lambda: b.ping_ok("a", "b"), timeout=10)
    ping = subprocess.Popen(["ip", "netns", "exec", b.n("ha"), "ping", "-6", "-n", "-q", "-i",
                             "0.1", "-w", "60", "fd00:b::2"], stdout=subprocess.DEVNULL)
    try:
        wait_for("a probes b in use", lambda: b.path("a", "b") == "direct")
        before = b.metrics("a")
        assert before["peak_overlay_resil_paths_down_total"] == 0
        pid = b.procs["a"].pid
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(2.0)  # the stall itself (the stimulus, not a wait for anything)
        finally:
            os.kill(pid, signal.SIGCONT)
        # A runs again: its pings get through, and its ticks have judged the peers
        wait_for("ha pings hb after the stall", lambda: b.ping_ok("a", "b"), timeout=10)
        wait_for("a counts its stall",
                 lambda: b.metrics("a").get("peak_overlay_resil_own_stalls_total", 0) >= 1)
        m = b.metrics("a")
        assert m["peak_overlay_resil_paths_down_total"] == 0, b.ctl("a", "show", "peers").stdout
        assert b.path("a", "b") == "direct"
    finally:
        ping.kill()
        ping.wait()
    b.stop_all_clean()
