"""PEAK-direct (issue 16): the content-type map peak dns publishes at _types.NAME, and
'peak h3 upload NAME --peak' reaching each type's pod straight, with no ingress."""
import os
import subprocess
import sys

import dns.rdatatype
import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from conftest import PEAK  # noqa: E402
import peaktest  # noqa: E402

ZONE = """zone:
  name: svc.example.
  ns: [{name: ns1.svc.example., address: "2001:db8:53::1"}]
  ttl: {txt: 60}
services:
"""

SERVICES = """  - name: audio.svc.example.
    prefixes: ["2001:db8:a1::/64"]
    slice: 72
    select: src
    host: src
    key: 000102030405060708090a0b0c0d0e0f
    types:
      audio/*: "@"
      video/*: video.svc.example.
      text/plain: "video.svc.example.#notes"
  - name: video.svc.example.
    prefixes: ["2001:db8:a2::/64"]
    slice: 72
    select: src
    host: src
    key: 0f0e0d0c0b0a09080706050403020100
"""


@pytest.fixture
def dns_server(tmp_path):
    s = peaktest.Server(tmp_path, config=ZONE + SERVICES)
    yield s
    s.stop()


def txt(server, name):
    r = server.query(name, "TXT")
    return r.rcode(), [b"".join(rr.strings).decode() for rrs in r.answer for rr in rrs
                       if rrs.rdtype == dns.rdatatype.TXT]


def test_dns_publishes_the_type_map_beside_the_descriptor(dns_server):
    rc, recs = txt(dns_server, "_types.audio.svc.example.")
    assert rc == 0
    assert recs == ["v=types1; audio/*=@; video/*=video.svc.example.; "
                    "text/plain=video.svc.example.#notes"]
    # the descriptor is where it was, and a service with no map has no _types name
    rc, recs = txt(dns_server, "_ssa.audio.svc.example.")
    assert recs and recs[0].startswith("v=ssa1;")
    rc, recs = txt(dns_server, "_types.video.svc.example.")
    assert rc == 3 and recs == []  # NXDOMAIN


def test_dns_refuses_a_bad_type_map(tmp_path):
    bad = SERVICES.replace('audio/*: "@"', 'audio/x*: "@"')
    (tmp_path / "bad.yaml").write_text(ZONE + bad)

    p = subprocess.run([PEAK, "dns", "--config", str(tmp_path / "bad.yaml"), "--check"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "'types'" in p.stderr + p.stdout
