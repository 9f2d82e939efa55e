"""The resiliency slave's RTT verdict in network namespaces (root): three public sites; gA and
gB reach each other only through a UDP forwarder in the router that holds each packet DELAY
seconds, read from a file at each packet (this kernel has no netem). Under a UDP echo stream
hA -> hB the direct path first runs undelayed; then it is delayed 40 ms each way as a whole
(no share of it late or lost: the degraded verdict cannot see it), and A relays through C,
whose link-state report says it hears B within a few ms (RON's relay choice): "path b slow
via c". With the delay gone A goes direct again. Neither end takes the path for dead, and
the echoes keep coming.

    hA fd00:a::2      hB fd00:b::2      hC fd00:c::2
    gA 10.0.1.2       gB 10.0.2.2       gC 10.0.3.2
      +------ r (10.0.9.1: gA's way to gB, +DELAY each way) ------+
"""
import os
import re
import subprocess
import sys
import time

import pytest
from ovbed import nsx, sh, wait_for
from pubbed import ADDR, SITES, SLOW_FORWARDER
from test_resil import ECHO, PROBE, ResilBed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

BUDGET = 16000  # six probes a second: the verdict within seconds (README: the budget)


class SlowBed(ResilBed):
    def build(self):
        super().build(resil=f"resiliency:\n  dead-ms: 600\n  budget: {BUDGET}\n",
                      endpoint=lambda s, o: "10.0.9.1" if (s, o) == ("a", "b") else ADDR[o])
        sh("ip", "-n", self.n("r"), "addr", "add", "10.0.9.1/32", "dev", "lo")
        # gA and gB only through the forwarder: gB learns gA's endpoint from gA's packets
        # (the forwarder's socket) and answers there
        nsx(self.n("r"), "nft", "-f", "-", input=(
            "table ip slow {\n chain slowfw {\n  type filter hook forward priority 0;\n"
            f"  ip saddr {ADDR['a']} ip daddr {ADDR['b']} drop\n"
            f"  ip saddr {ADDR['b']} ip daddr {ADDR['a']} drop\n" " }\n}\n"))


def test_slow_direct_path_relayed_through_c_and_back(tmp_path):
    b = SlowBed(tmp_path, "rw")
    delay = tmp_path / "delay"
    delay.write_text("0")
    procs = []
    try:
        b.build()
        for argv in (["r", SLOW_FORWARDER, ADDR["b"], "10.0.2.1", f"@{delay}"],
                     ["hb", ECHO]):
            p = subprocess.Popen(["ip", "netns", "exec", b.n(argv[0]), sys.executable, "-c",
                                  *argv[1:]], stdout=subprocess.PIPE, text=True)
            procs.append(p)
            assert p.stdout.readline().strip() == "ready"
        for s in SITES:
            b.start(s)
        wait_for("ping ha -> hb", lambda: b.ping_ok("a", "b"), timeout=15)
        stop = tmp_path / "stop"
        probe = subprocess.Popen(["ip", "netns", "exec", b.n("ha"), sys.executable, "-c", PROBE,
                                  "fd00:b::2", str(stop)], stdout=subprocess.PIPE, text=True)
        procs.append(probe)
        assert probe.stdout.readline().strip() == "started"
        # C has told A that it hears B (its link-state), and the path runs direct
        wait_for("c's link-state at a", lambda: b.metrics("a").get(
            "peak_overlay_resil_linkstate_received_total", 0) >= 1, timeout=15)
        wait_for("c's report of b at a", lambda: re.search(
            r"^linkstate c b rtt-us \d+ ", b.ctl("a", "show", "peers").stdout, re.M), timeout=15)
        wait_for("a direct to b", lambda: b.path("a", "b") == "direct", timeout=15)
        time.sleep(1.0)  # the stream runs direct first (nothing waits on it)
        slowed_at = time.monotonic()
        delay.write_text("0.04")
        wait_for("a relays to b through c for its RTT",
                 lambda: b.path("a", "b") == "slow via c", timeout=20)
        seen = time.monotonic() - slowed_at
        relayed_fwd = b.metrics("c")["peak_overlay_gw_relay_forwarded_total"]
        time.sleep(1.0)  # relayed under traffic
        assert b.path("a", "b") == "slow via c"  # and it stays so: no flapping
        assert b.metrics("c")["peak_overlay_gw_relay_forwarded_total"] > relayed_fwd + 20
        fast_at = time.monotonic()
        delay.write_text("0")
        # three probes in a row within 12.5% and 2.5 ms of the relayed estimate (about 1 ms
        # here): a loaded machine's forwarder delays some, each such probe starts the count
        wait_for("a direct again", lambda: b.path("a", "b") == "direct", timeout=40)
        back = time.monotonic() - fast_at
        stop.write_text("")
        out, _ = probe.communicate(timeout=30)
        print(f"\nresil slow: a relayed b through c {seen:.2f} s after its direct RTT grew "
              f"by 80 ms; direct again {back:.2f} s after it recovered")
        ma = b.metrics("a")
        assert ma["peak_overlay_resil_paths_slow_total"] >= 1
        assert ma["peak_overlay_resil_paths_fast_again_total"] >= 1
        assert ma["peak_overlay_resil_paths_down_total"] == 0
        assert ma["peak_overlay_resil_paths_degraded_total"] == 0
        assert ma["peak_overlay_resil_linkstate_dropped_total"] == 0
        b.stop_all_clean()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        b.cleanup()
