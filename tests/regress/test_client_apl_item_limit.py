"""The client and large APL answers: an APL answer with 3,000 items over TCP (a message that
dig and dnspython parse) was reported by 'peak resolve' as 'a malformed or mismatched reply'
or as an unusable APL record, without saying that a limit was hit or which.

The limits the client accepts (README, 'peak resolve'): DNS messages up to 65535 bytes (a
truncated UDP answer is asked again over TCP), at most 64 APL items in all (the prefixes a
service may have, SSA_MAX_PREFIXES), a descriptor of at most 511 characters. Guarded here:
64 items over TCP resolve; 3,000 items, in one record or in 3,000, are refused with a message
that names the count and the limit; so is a descriptor over its limit."""
import os
import subprocess

from fakedns import FakeDNS

PEAK = os.environ.get("PEAK_BIN", "build/peak")
K = "000102030405060708090a0b0c0d0e0f"
DESC = f'"v=ssa1; slice=78; select=src; host=src; key={K}"'
NAME = "api.svc.example."


def resolve(srv, *extra):
    return subprocess.run([PEAK, "resolve", NAME, "--server", f"[::1]:{srv.port}",
                           "--source", "2001:db8:aa:bb::1", "--timeout", "2000", *extra],
                          capture_output=True, text=True, timeout=30)


def records(apl, desc=DESC):
    return {(NAME, "APL"): apl, ("_ssa." + NAME, "TXT"): [desc]}


def test_64_items_over_tcp_resolve():
    items = [f"2:2001:db8:{i:x}::/64" for i in range(64)]
    with FakeDNS(records([" ".join(items)])) as srv:
        # 512 bytes without EDNS: the 64-item answer (about 800 bytes) comes over TCP
        p = resolve(srv, "--udp-size", "100")
        assert p.returncode == 0, p.stderr
        assert srv.tcp_queries >= 1
        dst = p.stdout.split()[0]
        assert dst.startswith("2001:db8:"), p.stdout


def test_3000_items_in_one_record_name_the_limit():
    items = [f"2:2001:db8:{i >> 8:x}:{i & 0xff:x}::/64" for i in range(3000)]
    with FakeDNS(records([" ".join(items)])) as srv:
        p = resolve(srv)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert srv.tcp_queries >= 1  # 36 kB: truncated over UDP, whole over TCP
    assert "malformed" not in p.stderr, p.stderr
    assert "3000 items, more than the 64 prefixes a service may have" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_3000_records_name_the_limit():
    # 3,000 one-item records of /16 prefixes: 54 kB, near the 65535-byte TCP maximum
    items = [f"2:{0x2000 + i:x}::/16" for i in range(3000)]
    with FakeDNS(records(items)) as srv:
        p = resolve(srv)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "malformed" not in p.stderr, p.stderr
    assert "3000 items, more than the 64 prefixes a service may have" in p.stderr, p.stderr


def test_descriptor_over_its_limit_is_named():
    # a long unknown field (ignored by the parser) pushes the descriptor past 511 characters
    long = f'"v=ssa1; slice=78; select=src; host=src; key={K}; " "x={"y" * 200}; " ' \
           f'"z={"w" * 250}"'
    with FakeDNS(records(["2:2001:db8:5::/64"], long)) as srv:
        p = resolve(srv)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "more than the 511 a descriptor may have" in p.stderr, p.stderr
