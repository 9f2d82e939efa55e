"""The kernel fast path's bed (issue 21): two sites whose gateways share one IPv4 link (a
trusted underlay), each gateway running `peak overlay` with the other as a peer, trusted or
not as the test asks, the fast path on or off.

    ha fd00:a::2 --lan-- ga fd00:a::1 ov0 10.9.0.1 --wan-- 10.9.0.2 ov0 fd00:b::1 gb --lan-- hb fd00:b::2
"""
import struct

from ovbed import PEAK, Bed, nsx, sh

PORT = 51820
SITES = ("a", "b")
WAN = {"a": "10.9.0.1", "b": "10.9.0.2"}


class FpBed(Bed):
    def build(self, trusted=("a", "b"), fast_path="auto"):
        """trusted: the sites that mark their peer trusted."""
        for name in [f"h{s}" for s in SITES] + [f"g{s}" for s in SITES]:
            self.add_ns(name)
        for s in SITES:
            self.site_lan(s)
        self.veth("ga", "wan", "gb", "wan")
        for s in SITES:
            sh("ip", "-n", self.n(f"g{s}"), "addr", "add", f"{WAN[s]}/24", "dev", "wan")
        self.keys = {}
        for s in SITES:
            key = self.tmp / f"{s}.key"
            sh(PEAK, "overlay", "--genkey", str(key))
            self.keys[s] = sh(PEAK, "overlay", "--pubkey", str(key)).stdout.strip()
        for s in SITES:
            o = "b" if s == "a" else "a"
            tr = "      trusted: true\n" if s in trusted else ""
            cfg = self.tmp / f"{s}.yaml"
            cfg.write_text(f"tun: ov0\nmtu: 1400\naddress: fd00:{s}::1\n"
                           f"gateway:\n  listen: 0.0.0.0:{PORT}\n"
                           f"  private-key-file: {self.tmp / (s + '.key')}\n"
                           f"  keepalive: 1\n  fast-path: {fast_path}\n  peers:\n"
                           f"    - name: {o}\n      public-key: {self.keys[o]}\n"
                           f"      endpoint: {WAN[o]}:{PORT}\n"
                           f"      prefixes: [fd00:{o}::/64]\n{tr}")
            assert sh(PEAK, "overlay", "--config", str(cfg), "--check").stdout == "ok\n"

    def plain_packet(self, sender, src, dst, counter=1):
        """An OVW_DATA_PLAIN from sender's id carrying an ICMPv6 echo request src -> dst (no
        valid checksum needed: it is dropped before anyone checks)."""
        body = struct.pack(">BBHHH", 128, 0, 0, 1, counter) + b"x" * 8
        inner = (struct.pack(">IHBB", 6 << 28, len(body), 58, 64)
                 + _addr(src) + _addr(dst) + body)
        hdr = struct.pack(">BBH", 10, 0, 0) + bytes.fromhex(self.keys[sender])[:8] \
            + struct.pack(">QQ", 1, counter)
        return hdr + inner

    def inject(self, frm, to, pkt, count=1):
        """Sends pkt count times from gateway frm's namespace to to's daemon (UDP, from
        another port than the daemon's)."""
        code = ("import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                f"p=bytes.fromhex('{pkt.hex()}')\n"
                f"for _ in range({count}): s.sendto(p,('{WAN[to]}',{PORT}))\n")
        nsx(self.n(f"g{frm}"), "python3", "-c", code)


def _addr(a):
    import socket
    return socket.inet_pton(socket.AF_INET6, a)


def counter(m, name, **labels):
    """A metric's value (0 when absent), labels given as keyword arguments."""
    if labels:
        name += "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    return m.get(name, 0)
