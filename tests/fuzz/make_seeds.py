#!/usr/bin/python3
"""Writes the fuzz seed corpora under tests/fuzz/corpus/. Well-formed DNS messages come
from dnspython (an independent encoder); malformed ones are made by hand, one per class of
bad input. Run it again only to change the seeds; the corpora are committed."""
import os
import sys

import dns.edns
import dns.message
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def dns_seeds():
    q = dns.message.make_query("api.svc.example.", "AAAA", use_edns=0, payload=1232)
    write("dns", "query-aaaa", q.to_wire())
    ecs = dns.edns.ECSOption("2001:db8:aa::", 48)
    q = dns.message.make_query("api.svc.example.", "AAAA", use_edns=0, options=[ecs])
    write("dns", "query-ecs6", q.to_wire())
    q = dns.message.make_query("api.svc.example.", "A", use_edns=0,
                               options=[dns.edns.ECSOption("198.51.100.0", 24)])
    write("dns", "query-ecs4", q.to_wire())
    write("dns", "query-apl", dns.message.make_query("api.svc.example.", "APL").to_wire())
    write("dns", "query-txt", dns.message.make_query("_ssa.api.svc.example.", "TXT").to_wire())
    q = dns.message.make_query("svc.example.", "ANY", use_edns=1)
    write("dns", "query-edns1", q.to_wire())
    r = dns.message.make_response(dns.message.make_query("api.svc.example.", "APL"))
    r.answer.append(dns.rrset.from_text("api.svc.example.", 3600, "IN", "APL",
                                        "2:2001:db8:5::/64 !1:192.0.2.0/24"))
    r.answer.append(dns.rrset.from_text("_ssa.api.svc.example.", 3600, "IN", "TXT",
                                        '"v=ssa1; slice=78; select=src"'))
    r.authority.append(dns.rrset.from_text("svc.example.", 3600, "IN", "SOA",
                                           "ns1.svc.example. hostmaster.svc.example. 1 2 3 4 5"))
    r.authority.append(dns.rrset.from_text("svc.example.", 3600, "IN", "NS", "ns1.svc.example."))
    r.additional.append(dns.rrset.from_text("ns1.svc.example.", 3600, "IN", "AAAA",
                                            "2001:db8:53::1"))
    write("dns", "response-full", r.to_wire())
    hdr = bytes.fromhex("1234 0100 0001 0000 0000 0000".replace(" ", ""))
    write("dns", "bad-short-header", hdr[:7])
    write("dns", "bad-self-pointer", hdr + b"\xc0\x0c\x00\x01\x00\x01")
    write("dns", "bad-forward-pointer", hdr + b"\xc0\x20\x00\x01\x00\x01" + b"\x00" * 20)
    write("dns", "bad-loop", hdr + b"\x01a\xc0\x0c\x00\x01\x00\x01")
    write("dns", "bad-label-64", hdr + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01")
    write("dns", "bad-counts", bytes.fromhex("12340100ffffffffffffffff") + b"\x00\x00\x01\x00\x01")
    write("dns", "bad-trailing", dns.message.make_query("a.", "A").to_wire() + b"garbage")
    write("dns", "bad-label-type", hdr + b"\x41abc\x00\x00\x01\x00\x01")
    long = b"".join(b"\x3f" + b"x" * 63 for _ in range(5)) + b"\x00\x00\x01\x00\x01"
    write("dns", "bad-name-256", hdr + long)


def apl_seeds():
    write("apl", "v6", bytes.fromhex("0002400420010db8"))
    write("apl", "mixed", bytes.fromhex("00011503c0a82000011c83c0a8260002200420010db8"))
    write("apl", "unknown-family", bytes.fromhex("00070883aabbcc"))
    write("apl", "zero-prefix", bytes.fromhex("00020000"))
    write("apl", "bad-afdlength", bytes.fromhex("0002801120010db8000000000000000000000000"))
    write("apl", "bad-prefix", bytes.fromhex("0002810220010db8"))
    write("apl", "bad-truncated", bytes.fromhex("0002400320"))
    write("apl", "text", "2:2001:db8:5::/64 !1:192.0.2.0/24 2:2001:db8::1/32")
    write("apl", "text-generic", "\\# 8 0002400420010db8")


def desc_seeds():
    k = "000102030405060708090a0b0c0d0e0f"
    for i, d in enumerate([
        f"v=ssa1; slice=78; select=src; host=src; key={k}",
        f"v=ssa1; slice=78; select=src; host=src; fanout=4; key={k}",
        f"v=ssa1; slice=78; select=obj; host=src; key={k}",
        f"v=ssa1; slice=78; select=hop; host=hop; period=30; skew=2; key={k}",
        f"v=ssa1; slice=78; select=src; host=src; pow=8; nonce=16; key={k}",
        "v=ssa1; slice=70",
        "v=ssa1; slice=78; select=src",
        "v=ssa1;;slice=78;; future=1; select=rand",
        "v=ssa1; slice=78; slice=79",
        "V=ssa1; slice=300",
    ]):
        write("desc", f"d{i}", d)


def config_seeds():
    with open(os.path.join(HERE, "..", "..", "examples", "peak.yaml")) as f:
        write("config", "example", f.read())
    write("config", "flow", "zone: {name: z., ns: [{name: ns.z.}]}\nservices:\n"
          "  - {name: a.z., prefixes: ['2001:db8:9::/64'], slice: 72, endpoints: []}\n")
    write("config", "alias", "zone: &z {name: z., ns: [{name: ns.z.}]}\nservices: [*z]\n")
    write("config", "bad-yaml", "zone: [\n  - a\n b: c\n")
    write("config", "bad-types", "zone: 3\nservices: {a: b}\n")


def http_seeds():
    write("http", "ok", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
          "X-Peak-Endpoint: n1p1\r\n\r\nn1p1\n")
    write("http", "close-10", "HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\n"
          "Content-Length: 0\r\n\r\n")
    write("http", "bad-gateway", "HTTP/1.1 502 Bad Gateway\r\nServer: nginx\r\n"
          "Content-Length: 3\r\n\r\nbad")
    write("http", "no-content", "HTTP/1.1 204 No Content\r\n\r\n")
    write("http", "chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    write("http", "double-length", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
          "Content-Length: 2\r\n\r\nxy")
    write("http", "partial", "HTTP/1.1 200 OK\r\nContent-Len")


def reply_seeds():
    """Replies as the client library receives them (fuzz_reply.c asks for these names)."""
    def reply(name, rtype, rdatas, ttl=300):
        q = dns.message.make_query(name, rtype)
        q.id = 0x1234
        r = dns.message.make_response(q)
        if rdatas:
            r.answer.append(dns.rrset.from_text(name, ttl, "IN", rtype, *rdatas))
        return r.to_wire()
    write("reply", "apl", reply("api.svc.example.", "APL", ["2:2001:db8:5::/64 2:2001:db8:6::/64"]))
    many = " ".join(f"2:2001:db8:{i:x}::/64" for i in range(70))
    write("reply", "apl-over-limit", reply("api.svc.example.", "APL", [many]))
    write("reply", "apl-negated", reply("api.svc.example.", "APL", ["!2:2001:db8:5::/64"]))
    write("reply", "txt", reply("_ssa.api.svc.example.", "TXT",
                                ['"v=ssa1; slice=78; select=src; host=src; key=000102030405060708090a0b0c0d0e0f"']))
    write("reply", "txt-split", reply("_ssa.api.svc.example.", "TXT", ['"v=ssa1; " "slice=78"']))
    write("reply", "aaaa", reply("api.svc.example.", "AAAA",
                                 [f"2001:db8:100::{i:x}" for i in range(1, 20)]))
    write("reply", "nodata", reply("api.svc.example.", "AAAA", []))
    write("reply", "truncated", reply("api.svc.example.", "APL", ["2:2001:db8:5::/64"])[:-3])


def etcdwatch_seeds():
    """etcd's /v3/watch stream as its JSON gateway sends it (keys and values base64, int64
    fields as strings, PUT's type left out), each seed's first byte the chunk size."""
    import base64
    import json

    def b64(s):
        return base64.b64encode(s.encode()).decode()

    svc = "api.svc.example."
    rec = (f"map {svc}\nep pod-0 0/7\nend\nweight {svc} pod-0 1\n"
           f"health {svc} pod-1 down\n")
    hdr = {"cluster_id": "14841639068965178418", "member_id": "10276657743932975437",
           "revision": "9", "raft_term": "2"}
    created = {"result": {"header": hdr, "created": True}}

    def put(key, value, rev):
        return {"kv": {"key": b64(key), "create_revision": "5", "mod_revision": str(rev),
                       "version": "2", "value": b64(value)}}

    def line(o):
        return json.dumps(o, separators=(",", ":")) + "\n"

    def events(*evs):
        return line({"result": {"header": hdr, "events": list(evs)}})

    write("etcdwatch", "put", "\x07" + line(created) +
          events(put("/peak/svc/" + svc, rec, 8)))
    write("etcdwatch", "put-delete", "\x20" + line(created) +
          events(put("/peak/svc/" + svc, rec, 8),
                 {"type": "DELETE", "kv": {"key": b64("/peak/svc/" + svc),
                                           "mod_revision": "9"}}))
    write("etcdwatch", "refused", "\x01" + events(put("/peak/svc/" + svc, "map x.\n", 8),
                                                    put("/peak/nodes/n1", "c1", 8),
                                                    put("/peak/svc/", rec, 8)))
    write("etcdwatch", "compacted", "\x30" + line(created) + line(
        {"result": {"header": hdr, "compact_revision": "8", "canceled": True}}) +
        events(put("/peak/svc/" + svc, rec, 9)))
    write("etcdwatch", "error", "\x05" + line(
        {"error": {"grpc_code": 11, "http_code": 400,
                   "message": "etcdserver: mvcc: required revision has been compacted"}}))
    write("etcdwatch", "no-kv", "\x11" + events({"type": "DELETE"}, "x"))
    write("etcdwatch", "partial", "\x03" + events(put("/peak/svc/" + svc, rec, 8))[:-9])
    write("etcdwatch", "not-json", "\x02{\"result\":\n[1,2]\n\n")


def ovaddr_seeds():
    """rtnetlink datagrams for the overlay's address watch (host byte order, as the kernel
    sends them): an IPv4 address added; a mix of counted and uncounted messages."""
    import struct

    def msg(mtype, family, extra=0):
        body = struct.pack("=BBBBI", family, 24, 0, 0, 2) + b"\0" * extra
        n = 16 + len(body)
        return struct.pack("=IHHII", n, mtype, 0, 0, 0) + body + b"\0" * (-n % 4)
    RTM_NEWLINK, RTM_NEWADDR, RTM_DELADDR = 16, 20, 21
    write("ovaddr", "new4", msg(RTM_NEWADDR, 2, 8))
    write("ovaddr", "mixed", msg(RTM_NEWADDR, 2, 3) + msg(RTM_DELADDR, 2) +
          msg(RTM_NEWADDR, 10, 20) + msg(RTM_NEWLINK, 2))


def slog_seeds():
    """Small-object log segments (src/store/slog.h): whole records, a torn and a damaged
    tail, a delete record, and bytes that are no record."""
    import hashlib
    import struct

    def rec(typ, key, body=b"", seq=1, slice_=7, version=1700000000000):
        head = struct.pack(">4sBBHIIQQ", b"PKL1", typ, 0, len(key), len(body), slice_, seq,
                           version) + key + body
        return head + hashlib.sha256(head).digest()[:8] + b"PKC1"
    a, b = rec(1, b"alpha", b"x" * 100, 1), rec(1, b"beta", b"", 2)
    name = (f"{7:08x}-" + hashlib.sha256(b"alpha").hexdigest()).encode()
    write("slog", "two", a + b)
    write("slog", "delete", a + rec(2, name, seq=3))
    write("slog", "torn", a + b[:-5])
    damaged = bytearray(a + b)
    damaged[len(a) + 40] ^= 1
    write("slog", "damaged", bytes(damaged))
    write("slog", "junk", b"PKL1" + bytes(60))

if __name__ == "__main__":
    # With names, only those corpora (query ids are random: rewriting all churns them).
    for f in sys.argv[1:] or ["dns", "apl", "desc", "config", "http", "reply"]:
        globals()[f + "_seeds"]()
    sys.exit(0)
