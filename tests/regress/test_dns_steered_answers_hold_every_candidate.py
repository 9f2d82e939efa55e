"""Issue 18, the propagation bench: a service with two healthy endpoints and `answers: 2`
gave one AAAA address in about one answer of 128. The endpoints were drawn by weight eight
times and duplicates dropped, so when every draw picked the same one the answer held only
that one: a legacy client then had no second address to fail over to, and the bench, which
tells a weight 0 (one address) from a weight 1 (two) by the count, saw changes that had not
happened. An answer now holds min(answers, candidates) distinct endpoints."""
import dns.rdatatype

import ctlpeer
import peaktest
from ctlpeer import SVC

Q = 1500  # without the fix, all of them with two addresses: (127/128)^1500, about 1e-5


def test_two_endpoints_two_addresses(tmp_path):
    cfg = ctlpeer.config(neps=2).replace("    slice: 72\n", "    slice: 72\n    answers: 2\n")
    d = peaktest.Server(tmp_path, cfg)
    try:
        counts = {}
        for _ in range(Q):
            r = d.query(SVC, "AAAA")
            n = sum(len(rr) for rr in r.answer if rr.rdtype == dns.rdatatype.AAAA)
            counts[n] = counts.get(n, 0) + 1
        assert counts == {2: Q}, counts
    finally:
        d.stop()
        d.proc.wait(10)
