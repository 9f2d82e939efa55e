"""peak dns refused to start with a zone of no services (`services: []`, what a
`--source kubernetes` server has before the API answers, or after the last PEAK Service
is deleted): the state builder left its error code at -ENOMEM when the service loop did not
run, so the server said "out of memory building the serving state" and exited 2 (and a
reload to no services was refused the same way)."""
import peaktest

CONFIG = """
zone:
  name: svc.example.
  ns:
    - {name: ns1.svc.example., address: "2001:db8:53::1"}
services: []
"""


def test_zone_with_no_services_is_served(tmp_path):
    d = peaktest.Server(tmp_path, CONFIG)  # (waits for the SOA answer)
    try:
        r = d.query("svc.example.", "SOA")
        assert r.rcode() == 0 and r.answer, r
        assert d.query("api.svc.example.", "AAAA").rcode() == 3  # NXDOMAIN
        assert "out of memory" not in d.logtext()
    finally:
        d.stop()
