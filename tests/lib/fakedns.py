"""A tiny authoritative DNS server built on dnspython, for records 'peak dns' cannot or will
not publish (thousands of APL items, a descriptor a spoofer would send). It answers fixed
records over UDP and TCP on ::1 (one port for both): a UDP answer larger than the client's
EDNS buffer (512 bytes without EDNS) is sent empty with TC set, so the client asks again over
TCP (RFC 7766 framing). Names it does not know get an empty NOERROR answer.

    with FakeDNS({("api.svc.example.", "APL"): ["2:2001:db8:5::/64"]}) as srv:
        ... --server [::1]:{srv.port} ...
"""
import socket
import struct
import threading

import dns.exception
import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset


class FakeDNS:
    def __init__(self, records, ttl=60):
        # {(name, type): [rdata in presentation form, ...]}: one RRset per (name, type)
        self.records = {(n.lower(), dns.rdatatype.from_text(t)): v
                        for (n, t), v in records.items()}
        self.ttl = ttl
        for _ in range(100):  # a UDP port whose TCP twin is free too
            self.udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            self.udp.bind(("::1", 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind(("::1", self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        else:
            raise RuntimeError("no port free for both UDP and TCP")
        self.tcp.listen(16)
        self.tcp_queries = 0
        self.stopped = False
        self.threads = [threading.Thread(target=f, daemon=True)
                        for f in (self._serve_udp, self._serve_tcp)]
        for t in self.threads:
            t.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _answer(self, wire):
        q = dns.message.from_wire(wire)
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        qq = q.question[0]
        rd = self.records.get((qq.name.to_text().lower(), qq.rdtype))
        if rd:
            r.answer.append(dns.rrset.from_text_list(qq.name, self.ttl, "IN", qq.rdtype, rd))
        return q, r

    def _serve_udp(self):
        while True:
            try:
                wire, peer = self.udp.recvfrom(65535)
            except OSError:
                return
            if self.stopped:
                return
            try:
                q, r = self._answer(wire)
                size = max(q.payload, 512) if q.edns >= 0 else 512
                try:
                    out = r.to_wire(max_size=size)
                except dns.exception.TooBig:
                    r.answer.clear()
                    r.flags |= dns.flags.TC
                    out = r.to_wire()
                self.udp.sendto(out, peer)
            except Exception:  # a query it cannot parse: no answer, as a server would
                continue

    def _serve_tcp(self):
        while True:
            try:
                c, _ = self.tcp.accept()
            except OSError:
                return
            with c:
                buf = b""
                while True:
                    try:
                        d = c.recv(65535)
                    except OSError:
                        break
                    if not d:
                        break
                    buf += d
                    while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                        n = struct.unpack("!H", buf[:2])[0]
                        _, r = self._answer(buf[2:2 + n])
                        buf = buf[2 + n:]
                        self.tcp_queries += 1
                        out = r.to_wire(max_size=65535)
                        c.sendall(struct.pack("!H", len(out)) + out)

    def close(self):
        self.stopped = True
        for s in (self.udp, self.tcp):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self.threads:
            t.join(timeout=2)
