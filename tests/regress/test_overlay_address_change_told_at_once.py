"""Regression (issue 21, mobility): a gateway whose own IPv4 address changed said nothing
until its next keepalive (or packet), so its peers kept sending to the old address for up to
a keepalive period, and it learned its new mapping only from a peer's answer to that: with
`keepalive: 30` the old code left A sending to B's old address for up to 30 s (the 10 s
deadline below is missed). Now the gateway watches its IPv4 addresses and routes
(rtnetlink) and sends a keepalive to every peer at once: A follows B within a round trip
and answers with B's new mapping, which B logs ("sees us at").

    hA fd00:a::2      hB fd00:b::2      hC fd00:c::2
    gA 10.0.1.2       gB 10.0.2.2 -> 10.0.2.3      gC 10.0.3.2    (static peers, public)
      +---------------- r ----------------+
(root)"""
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "overlay"))
from ovbed import move_address, wait_for  # noqa: E402
from pubbed import SITES, PubBed  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

OLD, NEW = "10.0.2.2", "10.0.2.3"


@pytest.fixture
def bed(tmp_path):
    b = PubBed(tmp_path, "ac")
    try:
        b.build(resil="")  # no probes: nothing but keepalives between idle sites
        for s in SITES:
            cfg = tmp_path / f"{s}.yaml"
            cfg.write_text(cfg.read_text().replace("  keepalive: 1\n", "  keepalive: 30\n"))
        for s in SITES:
            b.start(s)
        yield b
    finally:
        b.cleanup()


def test_peers_told_of_a_new_address_at_once(bed):
    b = bed
    assert wait_for("hA -> hB", lambda: b.ping_ok("a", "b"), timeout=30)
    assert b.metrics("b").get("peak_overlay_gw_address_changes_total") == 0
    move_address(b.n("gb"), "wan", OLD, NEW)
    # A follows B (B's keepalive from the new address): 10 s, a third of the period
    assert wait_for("A follows B", lambda: re.search(
        rf"peer b is at {re.escape(NEW)}:51820", b.logs["a"].read_text()), timeout=10)
    assert wait_for("B told its new address", lambda: re.search(
        rf"peer \S+ sees us at {re.escape(NEW)}:51820", b.logs["b"].read_text()), timeout=10)
    assert b.metrics("b")["peak_overlay_gw_address_changes_total"] >= 2  # the del, the add
    assert "an IPv4 address or route of ours changed: told" in b.logs["b"].read_text()
    assert wait_for("hA -> hB at the new address", lambda: b.ping_ok("a", "b"), timeout=10)
    for s in SITES:
        log = b.logs[s].read_text()
        assert "AddressSanitizer" not in log and "runtime error" not in log, log
