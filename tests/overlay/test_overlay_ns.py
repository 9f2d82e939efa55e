"""peak overlay end to end in network namespaces (root): three sites, each a host on an IPv6
LAN behind a gateway running `peak overlay`; the gateways reach each other over IPv4 only,
site C from behind a masquerading NAT. Hosts of every pair ping each other over IPv6, a TCP
stream crosses the NAT, a destination with no route gets ICMPv6 unreachable, and forged,
unknown-sender and replayed packets injected on the IPv4 path are dropped and counted.

    hA fd00:a::2          hB fd00:b::2          hC fd00:c::2
      | lan                 | lan                 | lan
    gA fd00:a::1 ov0      gB fd00:b::1 ov0      gC fd00:c::1 ov0
      | 10.0.1.2            | 10.0.2.2            | 192.168.3.2
      |                     |                     | 192.168.3.1
      |                     |                   nat (masquerade)
      | 10.0.1.1            | 10.0.2.1            | 10.0.3.2
      +-------------------- r ---------------------+ 10.0.3.1
"""
import hashlib
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from ovbed import PEAK, Bed, nsx, sh, wait_for

PORT = 51820
SITES = ("a", "b", "c")
UPLINK = {"a": ("10.0.1.2", "10.0.1.1"), "b": ("10.0.2.2", "10.0.2.1"),
          "c": ("192.168.3.2", "192.168.3.1")}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


class NatBed(Bed):
    def build(self):
        for name in ["r", "nat"] + [f"h{s}" for s in SITES] + [f"g{s}" for s in SITES]:
            self.add_ns(name)
        nsx(self.n("r"), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        nsx(self.n("nat"), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for i, s in enumerate(SITES, 1):
            g = f"g{s}"
            self.site_lan(s)
            up, gw = UPLINK[s]
            if s == "c":
                self.veth(g, "wan", "nat", "nin")
                sh("ip", "-n", self.n("nat"), "addr", "add", "192.168.3.1/24", "dev", "nin")
                self.veth("nat", "nout", "r", "rc")
                sh("ip", "-n", self.n("nat"), "addr", "add", "10.0.3.2/24", "dev", "nout")
                sh("ip", "-n", self.n("r"), "addr", "add", "10.0.3.1/24", "dev", "rc")
                sh("ip", "-n", self.n("nat"), "route", "add", "default", "via", "10.0.3.1")
                nsx(self.n("nat"), "nft", "-f", "-", input=(
                    "table ip nat {\n chain post {\n"
                    "  type nat hook postrouting priority 100;\n"
                    '  oifname "nout" masquerade\n }\n}\n'))
            else:
                self.veth(g, "wan", "r", "r" + s)
                sh("ip", "-n", self.n("r"), "addr", "add", f"{gw}/24", "dev", "r" + s)
            sh("ip", "-n", self.n(g), "addr", "add", f"{up}/24", "dev", "wan")
            sh("ip", "-n", self.n(g), "route", "add", "default", "via", gw)
        self.keys = {}
        for s in SITES:
            key = self.tmp / f"{s}.key"
            sh(PEAK, "overlay", "--genkey", str(key))
            self.keys[s] = sh(PEAK, "overlay", "--pubkey", str(key)).stdout.strip()
        for s in SITES:
            peers = []
            for o in SITES:
                if o == s:
                    continue
                ep = f"      endpoint: {UPLINK[o][0]}:{PORT}\n" if o != "c" else ""
                peers.append(f"    - name: {o}\n      public-key: {self.keys[o]}\n{ep}"
                             f"      prefixes: [fd00:{o}::/64]\n")
            if s == "a":  # a peer that never talks and has no endpoint
                peers.append(f"    - name: ghost\n      public-key: {'42' * 32}\n"
                             f"      prefixes: [fd00:f::/64]\n")
            cfg = self.tmp / f"{s}.yaml"
            cfg.write_text(f"tun: ov0\nmtu: 1400\naddress: fd00:{s}::1\nicmp-rate: 100\n"
                           f"gateway:\n  listen: 0.0.0.0:{PORT}\n"
                           f"  private-key-file: {self.tmp / (s + '.key')}\n"
                           f"  keepalive: 1\n  peers:\n" + "".join(peers))
            assert sh(PEAK, "overlay", "--config", str(cfg), "--check").stdout == "ok\n"


@pytest.fixture
def bed(tmp_path):
    b = NatBed(tmp_path, "o")
    try:
        b.build()
        for s in SITES:
            b.start(s)
        yield b
    finally:
        b.cleanup()


TCP_SERVER = r"""
import hashlib, socket, sys
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 5001)); s.listen(1)
print("listening", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    h.update(d); n += len(d)
c.sendall(f"{n} {h.hexdigest()}\n".encode()); c.close()
"""

TCP_CLIENT = r"""
import socket, sys
data = bytes(range(256)) * 8192
c = socket.create_connection((sys.argv[1], 5001), timeout=20)
c.sendall(data); c.shutdown(socket.SHUT_WR)
print(c.makefile().readline().strip())
"""

# Captures one data packet gB sends to gA (as it enters r from gB) and sends its UDP
# payload again to gA from r: a replay by a third party on the IPv4 path.
REPLAY = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.bind(("rb", 0)); s.settimeout(0.5)
print("listening", flush=True)
deadline = time.monotonic() + 15
while time.monotonic() < deadline:
    try:
        pkt = s.recv(4096)
    except socket.timeout:
        continue
    ihl = (pkt[0] & 15) * 4
    if pkt[9] != 17 or pkt[12:16] != socket.inet_aton("10.0.2.2"):
        continue
    dport = struct.unpack("!H", pkt[ihl + 2:ihl + 4])[0]
    payload = pkt[ihl + 8:]
    if dport != 51820 or payload[:1] != b"\x01":
        continue
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(payload, ("10.0.1.2", 51820))
    u.sendto(payload, ("10.0.1.2", 51820))
    print("replayed", flush=True)
    sys.exit(0)
print("no packet", flush=True)
sys.exit(1)
"""


def drops(m, reason):
    return m.get(f'peak_overlay_gw_dropped_total{{reason="{reason}"}}', 0)


def test_three_sites_ping_tcp_and_rejects(bed):
    b = bed
    # the public gateways learn C's NAT mapping from its keepalives
    for s in ("a", "b"):
        wait_for(f"g{s} learns c's mapping",
                 lambda: b.metrics(s).get('peak_overlay_peer_endpoint_known{peer="c"}') == 1)
    for src in SITES:
        for dst in SITES:
            if src != dst:
                wait_for(f"ping h{src} -> h{dst}", lambda: b.ping_ok(src, dst), timeout=10)

    # a TCP stream from A to C, through C's NAT
    srv = subprocess.Popen(["ip", "netns", "exec", b.n("hc"), sys.executable, "-c", TCP_SERVER],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "listening"
        out = nsx(b.n("ha"), sys.executable, "-c", TCP_CLIENT, "fd00:c::2", timeout=60).stdout
        data = bytes(range(256)) * 8192
        assert out.strip() == f"{len(data)} {hashlib.sha256(data).hexdigest()}"
        assert srv.wait(timeout=10) == 0
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()

    # no route: ICMPv6 destination unreachable back to the sender
    r = nsx(b.n("ha"), "ping", "-6", "-n", "-c", "1", "-W", "2", "fd00:d::1", check=False)
    assert r.returncode != 0
    assert "Unreachable" in r.stdout or "unreachable" in r.stdout, r.stdout
    m = b.metrics("a")
    assert m["peak_overlay_no_route_total"] >= 1
    assert m["peak_overlay_icmp_unreach_sent_total"] >= 1
    # a route whose peer has no endpoint yet: ICMPv6 address unreachable, counted
    r = nsx(b.n("ha"), "ping", "-6", "-n", "-c", "1", "-W", "2", "fd00:f::1", check=False)
    assert "Address unreachable" in r.stdout, r.stdout
    assert b.metrics("a")["peak_overlay_gw_no_endpoint_total"] >= 1

    # forged packets on the IPv4 path: garbage, an unknown sender, a known sender's id with
    # a body that does not authenticate
    before = b.metrics("a")
    b_id = bytes.fromhex(b.keys["b"])[:8]
    hdr = lambda ident: (bytes([1, 0, 0, 0]) + ident + (2**63).to_bytes(8, "big")
                         + (0).to_bytes(8, "big"))
    forged = [b"\x00" * 7, bytes(range(100)), hdr(b"\xee" * 8) + b"x" * 60,
              hdr(b_id) + b"x" * 60]
    inject = ("import socket, sys\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "for h in sys.argv[1:]:\n    u.sendto(bytes.fromhex(h), ('10.0.1.2', 51820))\n")
    nsx(b.n("r"), sys.executable, "-c", inject, *[f.hex() for f in forged])
    wait_for("forged packets counted", lambda: (
        (lambda m: drops(m, "malformed") >= drops(before, "malformed") + 2
         and drops(m, "unknown_peer") >= drops(before, "unknown_peer") + 1
         and drops(m, "auth") >= drops(before, "auth") + 1)(b.metrics("a"))))

    # a replayed packet: captured on the path, sent again; dropped, and the endpoint of b
    # does not move to the replayer's address
    before = b.metrics("a")
    cap = subprocess.Popen(["ip", "netns", "exec", b.n("r"), sys.executable, "-c", REPLAY],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert cap.stdout.readline().strip() == "listening"
        deadline = time.monotonic() + 10
        while cap.poll() is None and time.monotonic() < deadline:
            b.ping_ok("b", "a")
        assert cap.wait(timeout=20) == 0
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    wait_for("replay counted",
             lambda: drops(b.metrics("a"), "replay") >= drops(before, "replay") + 2)
    after = b.metrics("a")
    assert after["peak_overlay_gw_endpoint_changes_total"] == \
        before["peak_overlay_gw_endpoint_changes_total"]
    assert wait_for("ping b -> a after the replay", lambda: b.ping_ok("b", "a"), timeout=10)
    assert drops(after, "source") == 0 and drops(after, "inner") == 0

    # the management slave: routes, peers, counters; a route added and removed at run time
    r = b.ctl("a", "show", "routes")
    assert r.returncode == 0, r
    assert "fd00:f::/64 gateway ghost\n" in r.stdout
    assert "fd00:b::/64 gateway b\n" in r.stdout and "fd00:c::/64 gateway c\n" in r.stdout
    r = b.ctl("a", "show", "peers")
    assert r.returncode == 0 and re.search(r"^peer c 10\.0\.3\.2:\d+ rx ", r.stdout, re.M), r
    r = b.ctl("a", "show", "counters")
    assert r.returncode == 0 and "peak_overlay_routes 3\n" in r.stdout
    unreach_from = lambda: re.findall(r"From (\S+) icmp_seq=\d+ Destination unreachable",
                                      nsx(b.n("ha"), "ping", "-6", "-n", "-c", "1", "-W", "2",
                                          "fd00:d::1", check=False).stdout)
    assert unreach_from() == ["fd00:a::1"]
    assert b.ctl("a", "route", "add", "fd00:d::/64", "b").returncode == 0
    assert b.metrics("a")["peak_overlay_routes"] == 4
    assert unreach_from() == ["fd00:b::1"]  # now through gB, which has no route either
    assert b.ctl("a", "route", "del", "fd00:d::/64").returncode == 0
    assert unreach_from() == ["fd00:a::1"]
    r = b.ctl("a", "route", "add", "fd00:e::/64", "nobody")
    assert r.returncode == 1 and "error:" in r.stdout
    r = b.ctl("a", "route", "add", "fd00:e::1/64", "b")
    assert r.returncode == 1 and "bad request" in r.stdout
    assert b.ctl("a", "route", "del", "fd00:e::/64").returncode == 1

    # SIGHUP is logged and ignored (no reload yet), never fatal
    b.procs["a"].send_signal(signal.SIGHUP)
    wait_for("SIGHUP logged", lambda: "SIGHUP" in b.logs["a"].read_text())
    assert b.procs["a"].poll() is None
    assert wait_for("ping a -> b after SIGHUP", lambda: b.ping_ok("a", "b"), timeout=10)

    # clean exit on SIGTERM
    for s in SITES:
        assert b.stop(s) == 0, b.logs[s].read_text()
        log = b.logs[s].read_text()
        assert not re.search(r" (error|crit|alert|emerg) ", log), log
        assert "AddressSanitizer" not in log and "runtime error" not in log, log
        assert not (b.tmp / f"{s}.sock").exists()  # removed on exit

    # a --control path that is a regular file is refused, never deleted
    victim = b.tmp / "victim"
    victim.write_text("keep me\n")
    r = nsx(b.n("ga"), PEAK, "overlay", "--config", str(b.tmp / "a.yaml"), "--control",
            str(victim), check=False, timeout=30)
    assert r.returncode == 1 and "not a socket" in r.stderr, r
    assert victim.read_text() == "keep me\n"
