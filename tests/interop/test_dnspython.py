"""DNS messages across implementations: what PEAK's writer builds, dnspython decodes to the
intended content; what dnspython builds (with its own name compression), PEAK's reader
decodes to what dnspython sees."""
import json
import os
import subprocess

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

HELPER = os.environ.get("WIRE_HELPER", "build/tests/wire_helper")


def built():
    out = subprocess.run([HELPER, "build"], capture_output=True, text=True, check=True).stdout
    return {k: bytes.fromhex(v) for k, v in (line.split() for line in out.splitlines())}


def peak_parse(wire):
    p = subprocess.run([HELPER, "parse", wire.hex()], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_response_decoded_by_dnspython():
    m = dns.message.from_wire(built()["response"])
    assert m.id == 0xBEEF
    assert m.flags & dns.flags.QR and m.flags & dns.flags.AA
    assert m.question[0].name == dns.name.from_text("api.svc.example.")
    assert m.question[0].rdtype == dns.rdatatype.APL
    apl = m.find_rrset(m.answer, dns.name.from_text("api.svc.example."), dns.rdataclass.IN,
                       dns.rdatatype.APL)
    assert apl.ttl == 3600
    assert apl[0].to_text() == "2:2001:db8:5::/64 2:2001:db8:6::/64"
    txt = m.find_rrset(m.answer, dns.name.from_text("_ssa.api.svc.example."),
                       dns.rdataclass.IN, dns.rdatatype.TXT)
    texts = sorted(b"".join(r.strings) for r in txt)
    assert b"v=ssa1; slice=78; select=src; host=src; key=000102030405060708090a0b0c0d0e0f" in texts
    big = [r for r in txt if len(r.strings) > 1][0]
    assert [len(s) for s in big.strings] == [255, 255, 90]
    ns = m.find_rrset(m.authority, dns.name.from_text("svc.example."), dns.rdataclass.IN,
                      dns.rdatatype.NS)
    assert sorted(r.target.to_text().lower() for r in ns) == ["ns1.svc.example.",
                                                             "ns2.svc.example."]
    soa = m.find_rrset(m.authority, dns.name.from_text("svc.example."), dns.rdataclass.IN,
                       dns.rdatatype.SOA)
    assert soa[0].serial == 2026112201 and soa[0].minimum == 30
    assert soa[0].rname == dns.name.from_text("hostmaster.svc.example.")
    aaaa = m.find_rrset(m.additional, dns.name.from_text("ns1.svc.example."), dns.rdataclass.IN,
                        dns.rdatatype.AAAA)
    assert aaaa[0].address == "2001:db8:53::1"
    assert m.edns == 0 and m.payload == 1232 and m.ednsflags & dns.flags.DO
    ecs = [o for o in m.options if isinstance(o, dns.edns.ECSOption)][0]
    assert (ecs.address, ecs.srclen, ecs.scopelen) == ("2001:db8:aa::", 56, 48)
    # our compression saved space: dnspython's own encoding is not shorter
    assert len(built()["response"]) <= len(m.to_wire()) + 2


def test_query_decoded_by_dnspython():
    m = dns.message.from_wire(built()["query"])
    assert m.id == 0x1234 and m.flags & dns.flags.RD and not m.flags & dns.flags.QR
    assert m.question[0].rdtype == dns.rdatatype.AAAA
    ecs = m.options[0]
    assert (ecs.family, ecs.address, ecs.srclen, ecs.scopelen) == (1, "198.51.100.0", 24, 0)
    assert m.payload == 4096


def test_apl_message_decoded_by_dnspython():
    m = dns.message.from_wire(built()["apl"])
    apl = m.answer[0]
    assert apl[0].to_text() == "1:192.168.32.0/21 !1:192.168.38.0/28 2:2001:db8::/32 1:0.0.0.0/0"
    unknown = m.answer[1]
    assert unknown.rdtype == 65280 and unknown[0].data == b"\x01\x02\x03"


def dnspython_view(m):
    rrs = []
    for sec, rrsets in ((1, m.answer), (2, m.authority), (3, m.additional)):
        for rrset in rrsets:
            for rd in rrset:
                rrs.append((sec, rrset.name.to_text(), rrset.rdtype, rrset.ttl, rd))
    return rrs


def make_response():
    q = dns.message.make_query("Api.Svc.Example.", "APL", use_edns=0, payload=1400,
                               options=[dns.edns.ECSOption("2001:db8:aa:bb::", 64, 56)])
    r = dns.message.make_response(q)
    r.use_edns(0, payload=1400, options=[dns.edns.ECSOption("2001:db8:aa:bb::", 64, 56)])
    r.answer.append(dns.rrset.from_text("Api.Svc.Example.", 3600, "IN", "APL",
                                        "2:2001:db8:5::/64 !1:192.0.2.0/24 1:10.0.0.0/8"))
    r.answer.append(dns.rrset.from_text("_ssa.Api.Svc.Example.", 300, "IN", "TXT",
                                        '"v=ssa1; slice=78" "; select=src"'))
    r.authority.append(dns.rrset.from_text("svc.example.", 3600, "IN", "NS",
                                           "ns1.svc.example.", "ns2.other.example."))
    r.authority.append(dns.rrset.from_text("svc.example.", 60, "IN", "SOA",
                                           "ns1.svc.example. hostmaster.svc.example. "
                                           "7 3600 600 86400 30"))
    r.additional.append(dns.rrset.from_text("ns1.svc.example.", 30, "IN", "AAAA",
                                            "2001:db8:53::1", "2001:db8:53::2"))
    r.additional.append(dns.rrset.from_text("ns1.svc.example.", 30, "IN", "A", "192.0.2.53"))
    r.additional.append(dns.rrset.from_text("weird\\.name\\032x.svc.example.", 30, "IN",
                                            "TYPE65280", "\\# 2 abcd"))
    return r


def test_dnspython_message_decoded_by_peak():
    r = make_response()
    wire = r.to_wire()
    got = peak_parse(wire)
    assert got["trailing"] == 0
    assert got["id"] == r.id and got["flags"] == r.flags
    assert got["question"] == [{"name": "Api.Svc.Example.", "type": 42, "class": 1}]
    want = dnspython_view(dns.message.from_wire(wire))
    peak_rrs = [rr for rr in got["rrs"] if rr["type"] != 41]
    assert len(peak_rrs) == len(want)
    for p, (sec, name, rdtype, ttl, rd) in zip(peak_rrs, want):
        assert p["section"] == sec
        assert p["name"] == name
        assert p["type"] == rdtype and p["ttl"] == ttl
        if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            assert p["rdata"] == rd.address
        elif rdtype == dns.rdatatype.NS:
            assert p["rdata"] == rd.target.to_text()
        elif rdtype == dns.rdatatype.SOA:
            assert p["rdata"] == [rd.mname.to_text(), rd.rname.to_text(), rd.serial, rd.refresh,
                                  rd.retry, rd.expire, rd.minimum]
        elif rdtype == dns.rdatatype.TXT:
            assert [bytes.fromhex(s) for s in p["rdata"]] == list(rd.strings)
        elif rdtype == dns.rdatatype.APL:
            assert p["rdata"] == rd.to_text()
        else:
            assert p["rdata"] == rd.data.hex()
    opt = [rr for rr in got["rrs"] if rr["type"] == 41][0]["rdata"]
    assert opt["udp"] == 1400 and opt["version"] == 0
    assert opt["ecs"] == [2, 64, 56, "2001:db8:aa:bb::"]


@pytest.mark.parametrize("cut", [1, 5, 11, 12, 20, 40, 100])
def test_truncated_dnspython_message_rejected(cut):
    wire = make_response().to_wire()
    p = subprocess.run([HELPER, "parse", wire[:len(wire) - cut].hex()], capture_output=True,
                       text=True)
    assert p.returncode == 1  # a clean error, never a crash
