"""Regression: a degraded path that went down came back direct. A path losing 64% of its
round trips and relayed through C is silent for dead-ms now and then; the resiliency slave then
judged it down (still relayed through C) and, at the next echo, "back: direct", with its probe
window emptied: the lossy path carried the site's packets again for the 16 probes it took to
judge it degraded afresh (about 3 s; CI saw 41 of 100 echoes through a 1 s window). Now a path
that was degraded when it went down comes back degraded, still relayed, and only its probe
window sends it direct.

Made deterministic here: A-B loses 40% each way until both ends relay through C, then the router
drops all of it until both have it down, then 40% again: both must answer again "degraded via
c", not "direct". Same three-site bed as tests/overlay/test_resil_degraded.py.
"""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "overlay"))
from ovbed import wait_for  # noqa: E402
from test_resil import running_bed  # noqa: E402
from test_resil_degraded import RESIL, lossy  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


@pytest.fixture
def bed(tmp_path):
    with running_bed(tmp_path, "rdd", RESIL) as b:
        yield b


def ups(b, s):
    return b.metrics(s)["peak_overlay_resil_paths_up_total"]


def test_lossy_path_back_from_down_stays_relayed(bed):
    b = bed
    wait_for("ha pings hb", lambda: b.ping_ok("a", "b"), timeout=10)
    ping = subprocess.Popen(["ip", "netns", "exec", b.n("ha"), "ping", "-6", "-n", "-q", "-i",
                             "0.05", "-w", "90", "fd00:b::2"], stdout=subprocess.DEVNULL)
    try:
        wait_for("a probes b", lambda: "probes 16 " in b.ctl("a", "show", "peers").stdout)
        lossy(b, True)
        for s, peer in (("a", "b"), ("b", "a")):
            wait_for(f"{s} relays to {peer}", lambda: b.path(s, peer) == "degraded via c",
                     timeout=30)
        up0 = {s: ups(b, s) for s in ("a", "b")}
        lossy(b, True, loss=100)  # silent: both ends take it down, relayed on through C
        for s, peer in (("a", "b"), ("b", "a")):
            wait_for(f"{s} has {peer} down", lambda: b.path(s, peer) == "down via c",
                     timeout=30)
        lossy(b, True)  # lossy again: it answers now and then
        for s, peer in (("a", "b"), ("b", "a")):
            wait_for(f"{s} hears {peer} again", lambda: ups(b, s) > up0[s], timeout=30)
            assert b.path(s, peer) == "degraded via c", b.ctl(s, "show", "peers").stdout
    finally:
        ping.kill()
        ping.wait()
    b.stop_all_clean()
