"""An independent Python path for SSA addresses (SPEC.md sections 4-6) of select=src,
host=src, fanout 1, no proof of work: SipHash-2-4 and the rule, so tests can compute many
client addresses without a process each. Checked against the spec vector on import."""
import ipaddress, struct
M = (1 << 64) - 1
def rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & M
def siphash24(key, msg):
    k0, k1 = struct.unpack("<QQ", key)
    v0, v1, v2, v3 = k0 ^ 0x736f6d6570736575, k1 ^ 0x646f72616e646f6d, k0 ^ 0x6c7967656e657261, k1 ^ 0x7465646279746573
    def rnd():
        nonlocal v0, v1, v2, v3
        v0 = (v0 + v1) & M; v1 = rotl(v1, 13) ^ v0; v0 = rotl(v0, 32)
        v2 = (v2 + v3) & M; v3 = rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & M; v3 = rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & M; v1 = rotl(v1, 17) ^ v2; v2 = rotl(v2, 32)
    n = len(msg)
    tail = msg[n - n % 8:] + b"\0" * (7 - n % 8) + bytes([n & 0xff])
    for i in range(0, n - n % 8, 8):
        m, = struct.unpack("<Q", msg[i:i + 8]); v3 ^= m; rnd(); rnd(); v0 ^= m
    m, = struct.unpack("<Q", tail); v3 ^= m; rnd(); rnd(); v0 ^= m
    v2 ^= 0xff
    for _ in range(4): rnd()
    return v0 ^ v1 ^ v2 ^ v3
assert siphash24(bytes(range(16)), bytes(range(15))) == 0xa129ca6149be45e5  # SPEC.md 4
def address(prefix, key_hex, src, slice_len):
    """The address of client source src in a one-prefix service, select=src; host=src."""
    k = bytes.fromhex(key_hex); net = ipaddress.ip_network(prefix)
    c64 = ipaddress.ip_address(src).packed[:8]
    s = slice_len - net.prefixlen; hb = 128 - slice_len
    g = siphash24(k, b"\x01" + c64 + b"\0") % (1 << s)
    host = siphash24(k, b"\x91" + c64 + struct.pack(">I", g) + b"\0")
    return str(ipaddress.ip_address(int(net.network_address) | g << hb | (host & ((1 << hb) - 1))))


assert address("2001:db8:5::/64", "000102030405060708090a0b0c0d0e0f", "2001:db8:aa:bb::1",
               78) == "2001:db8:5:0:a94a:ac01:8d:78fe"  # SPEC.md 8, the first vector
