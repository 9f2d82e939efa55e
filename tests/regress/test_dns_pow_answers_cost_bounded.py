"""DNS server: proof of work let any remote client make `peak dns` burn 2^pow hashes per AAAA
query.

Seen: for a service with `pow` set, the server searched the nonce of every AAAA answer for
the client with no bound (`pow` up to 64 bits) and no memory of earlier answers; with a
Client Subnet option per query any client could name a fresh /64 each time. Now each
address costs at most a fixed number of hashes and each worker a fixed number per second,
addresses found are cached per service, client and fanout index, and a query over the
budget gets SERVFAIL at once.

Here: a burst of AAAA queries from 200 different /64s for a pow=28 service (2^28 hashes
each, about 8 s of CPU apiece before the fix) is all answered within seconds, and the
server's hash count stays within its budget; for pow=12 the answers are still exactly what
`peak ssa compute` gives, and a repeated query is served from the cache."""
import ipaddress
import os
import socket
import subprocess
import sys
import time

import dns.edns
import dns.message
import dns.rcode

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peaktest import BASE_CONFIG, K, PEAK, Server  # noqa: E402

CONFIG = BASE_CONFIG + f"""
  - name: pow.svc.example.
    prefixes: [2001:db8:9::/64]
    slice: 78
    select: src
    host: src
    pow: 12
    nonce: 16
    key: {K}
    endpoints: [{{id: p1, address: "2001:db8:104::1"}}]
  - name: hard.svc.example.
    prefixes: [2001:db8:a::/64]
    slice: 78
    select: src
    host: src
    pow: 28
    nonce: 32
    key: {K}
    endpoints: [{{id: h1, address: "2001:db8:105::1"}}]
  - name: rpow.svc.example.
    prefixes: [2001:db8:b::/64]
    slice: 72
    select: rand
    host: src
    pow: 10
    nonce: 16
    key: {K}
    endpoints: [{{id: r1, address: "2001:db8:106::1"}}, {{id: r2, address: "2001:db8:106::2"}}]
"""
BUDGET = 1 << 21  # hashes per worker per second (DNSD_POW_BUDGET)
READERS = 2 * 2 + 1  # peaktest's server: 2 threads x 2 addresses, and the TCP thread


def query(name, net, qid=0):
    n = ipaddress.ip_network(net)
    q = dns.message.make_query(name, "AAAA", use_edns=0,
                               options=[dns.edns.ECSOption(str(n.network_address), 64)])
    q.id = qid
    return q


def test_pow_answers_match_the_rule_and_are_cached(tmp_path):
    s = Server(tmp_path, config=CONFIG)
    try:
        want = subprocess.run(
            [PEAK, "ssa", "compute", "--prefix", "2001:db8:9::/64", "--descriptor",
             f"v=ssa1; slice=78; select=src; host=src; pow=12; nonce=16; key={K}",
             "--source", "2001:db8:aa:bb::"], capture_output=True, text=True,
            check=True).stdout.strip()
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as u:  # one worker
            u.settimeout(2)
            got = []
            for _ in range(2):
                u.sendto(query("pow.svc.example.", "2001:db8:aa:bb::/64").to_wire(),
                         ("::1", s.port))
                got.append(dns.message.from_wire(u.recv(4096)))
        for r in got:
            assert r.rcode() == dns.rcode.NOERROR
            assert [x.address for x in r.answer[0]] == [want]
        m = s.metrics()
        assert m['peak_dns_pow_addresses_total{result="searched"}'] == 1
        assert m['peak_dns_pow_addresses_total{result="cached"}'] == 1
        # more clients: the server's bounded search finds the nonce the rule's search does
        desc = f"v=ssa1; slice=78; select=src; host=src; pow=12; nonce=16; key={K}"
        for i in range(8):
            net = f"2001:db8:{i + 1:x}:{i * 7:x}::"
            want = subprocess.run([PEAK, "ssa", "compute", "--prefix", "2001:db8:9::/64",
                                   "--descriptor", desc, "--source", net],
                                  capture_output=True, text=True, check=True).stdout.strip()
            r = s.query("pow.svc.example.", "AAAA", use_edns=0,
                        options=[dns.edns.ECSOption(net, 64)])
            assert [x.address for x in r.answer[0]] == [want]
        # a rule that draws endpoints: every answer passes the filter's check
        desc = f"v=ssa1; slice=72; select=rand; host=src; pow=10; nonce=16; key={K}"
        for i in range(4):
            net = f"2001:db8:{i + 1:x}:{i * 5:x}::"
            r = s.query("rpow.svc.example.", "AAAA", use_edns=0,
                        options=[dns.edns.ECSOption(net, 64)])
            assert r.answer
            for x in r.answer[0]:
                c = subprocess.run([PEAK, "ssa", "check", "--prefix", "2001:db8:b::/64",
                                    "--descriptor", desc, "--source", net,
                                    "--destination", x.address], capture_output=True, text=True)
                assert c.stdout.strip() == "pass", (x.address, c.stdout)
    finally:
        s.stop()
    assert s.proc.returncode == 0, s.logtext()


def test_burst_from_many_sources_costs_bounded_time(tmp_path):
    s = Server(tmp_path, config=CONFIG)
    try:
        n = 200
        rcodes = {}
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as u:
            t0 = time.monotonic()
            for i in range(n):
                u.sendto(query("hard.svc.example.", f"2001:db8:{i:x}:1::/64", i).to_wire(),
                         ("::1", s.port))
            # a deadline for an unbounded server (hours of search for 200 sources), not a
            # bound on a bounded one: the hashes are bounded below, by the seconds it took
            deadline = t0 + 30
            while len(rcodes) < n and time.monotonic() < deadline:
                u.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    r = dns.message.from_wire(u.recv(4096))
                except socket.timeout:
                    break
                rcodes[r.id] = r.rcode()
            took = time.monotonic() - t0
        assert len(rcodes) == n, f"{len(rcodes)} of {n} answered in {took:.1f} s"
        assert set(rcodes.values()) <= {dns.rcode.NOERROR, dns.rcode.SERVFAIL}
        m = s.metrics()
        hashes = m["peak_dns_pow_hashes_total"]
        assert hashes <= READERS * BUDGET * (int(took) + 2), hashes
        assert m['peak_dns_pow_addresses_total{result="refused"}'] >= 1
        # the server still answers everything else at once
        assert s.query("svc.example.", "SOA", timeout=5).answer
    finally:
        s.stop()
    assert s.proc.returncode == 0, s.logtext()
