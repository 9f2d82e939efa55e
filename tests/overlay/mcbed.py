"""The multicast bed: one sender site, `members` member sites and `others` sites that do not
join at first, every one a host h<s> (fd00:<s>::2) behind its gateway g<s> (fd00:<s>::1 on
the LAN), all gateways on one IPv4 router r without NAT (10.77.<i>.2), each knowing every
other's key, endpoint and prefix and running the multicast slave on its LAN. Site names are
hex (they make the prefixes): "50" sends, "a0".."af" are members, "c0".. the others. Hosts
join groups with real sockets (IPV6_JOIN_GROUP: the kernel sends the MLD reports)."""
import subprocess
import sys

from ovbed import PEAK, Bed, nsx, sh

PORT = 51820
DHT_PORT = 4222
GROUP = "ff0e::db8:1"
UPORT = 7001

# Joins GROUP on the host's LAN, then appends every datagram's payload to a file, one line
# each (flushed), until killed: closing the socket sends the MLD leave.
RECV = r"""
import socket, struct, sys
g, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("::", port))
idx = socket.if_nametoindex("lan")
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
             socket.inet_pton(socket.AF_INET6, g) + struct.pack("@I", idx))
out = open(path, "a")
print("ready", flush=True)
while True:
    d = s.recv(2048)
    out.write(d.split(b" ")[0].decode() + "\n")
    out.flush()
"""

# Sends argv[3] datagrams "RUN:SEQ pad" (RUN is argv[5]) to argv[1] port argv[2] from the LAN
# with hop limit 8, argv[4] seconds apart (pacing: the receivers' queues are not what is
# measured); with argv[6] (a comma list of unicast addresses) each datagram goes to each of
# them instead, argv[7] bytes long (default 64).
SEND = r"""
import socket, struct, sys, time
dst, port, n, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
run = sys.argv[5]; uni = sys.argv[6].split(",") if len(sys.argv) > 6 else None
size = int(sys.argv[7]) if len(sys.argv) > 7 else 64
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex("lan"))
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 8)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
t0 = time.monotonic(); nxt = t0
for i in range(n):
    d = f"{run}:{i} ".encode().ljust(size, b"x")
    for a in (uni or [dst]):
        while True:
            try:
                s.sendto(d, (a, port)); break
            except BlockingIOError:
                time.sleep(0.001)
    if gap:
        nxt += gap
        time.sleep(max(0.0, nxt - time.monotonic()))
print(f"{time.monotonic() - t0:.6f}")
"""


def site_names(members, others):
    return ["50"] + [f"a{i:x}" for i in range(members)] + [f"c{i:x}" for i in range(others)]


class McBed(Bed):
    def __init__(self, tmp, tag):
        super().__init__(tmp, tag)
        self.recv = {}

    def build(self, members, others, announce=1, query=10, response_ms=2000, dht=False,
              mc_extra=""):
        """dht: no gateway knows any peer; each runs the DHT slave (OpenDHT, bootstrapping
        through site 50's gateway, the overlay authority certifying every site), and member
        sites are found through their group records. mc_extra: more lines of every
        multicast: section."""
        self.dht = dht
        self.sites = site_names(members, others)
        self.members = self.sites[1:1 + members]
        self.others = self.sites[1 + members:]
        self.addr = {s: f"10.77.{i + 1}.2" for i, s in enumerate(self.sites)}
        for name in ["r"] + [f"h{s}" for s in self.sites] + [f"g{s}" for s in self.sites]:
            self.add_ns(name)
        nsx(self.n("r"), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for i, s in enumerate(self.sites):
            h, g = self.n(f"h{s}"), self.n(f"g{s}")
            self.veth(f"h{s}", "lan", f"g{s}", "lan")
            self.veth(f"g{s}", "wan", "r", "r" + s)
            sh("ip", "-n", h, "-batch", "-", input=(
                f"addr add fd00:{s}::2/64 dev lan nodad\n"
                f"route add default via fd00:{s}::1\n"))
            gw = f"10.77.{i + 1}.1"
            sh("ip", "-n", self.n("r"), "addr", "add", f"{gw}/24", "dev", "r" + s)
            sh("ip", "-n", g, "-batch", "-", input=(
                f"addr add fd00:{s}::1/64 dev lan nodad\n"
                f"addr add {self.addr[s]}/24 dev wan\n"
                f"route add default via {gw}\n"))
            nsx(g, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        self.keys = {}
        for s in self.sites:
            key = self.tmp / f"{s}.key"
            sh(PEAK, "overlay", "--genkey", str(key))
            self.keys[s] = sh(PEAK, "overlay", "--pubkey", str(key)).stdout.strip()
        if dht:
            auth = self.tmp / "auth.key"
            sh(PEAK, "overlay", "--genkey", str(auth))
            auth_pub = sh(PEAK, "overlay", "--authority-pub", str(auth)).stdout.strip()
        for s in self.sites:
            if dht:
                site_id = sh(PEAK, "overlay", "--site-id", str(self.tmp / f"{s}.key")).stdout
                cert = sh(PEAK, "overlay", "--certify", str(auth), "--site", site_id.strip(),
                          "--prefix", f"fd00:{s}::/64").stdout.strip()
                (self.tmp / f"{s}.yaml").write_text(
                    f"address: fd00:{s}::1\n"
                    f"gateway:\n  listen: 0.0.0.0:{PORT}\n"
                    f"  private-key-file: {self.tmp / (s + '.key')}\n  keepalive: 2\n"
                    f"dht:\n  port: {DHT_PORT}\n  network: 4712\n"
                    f"  bootstrap: [{self.addr['50']}:{DHT_PORT}]\n  authority: {auth_pub}\n"
                    f"  certificate: {cert}\n  prefixes: [fd00:{s}::/64]\n"
                    f"  locator: {self.addr[s]}:{PORT}\n"
                    f"multicast:\n  interface: lan\n  query-interval: {query}\n"
                    f"  response-ms: {response_ms}\n  announce: {announce}\n" + mc_extra)
                continue
            peers = "".join(f"    - name: {o}\n      public-key: {self.keys[o]}\n"
                            f"      endpoint: {self.addr[o]}:{PORT}\n"
                            f"      prefixes: [fd00:{o}::/64]\n" for o in self.sites if o != s)
            cfg = self.tmp / f"{s}.yaml"
            cfg.write_text(f"address: fd00:{s}::1\n"
                           f"gateway:\n  listen: 0.0.0.0:{PORT}\n"
                           f"  private-key-file: {self.tmp / (s + '.key')}\n"
                           f"  keepalive: 2\n  peers:\n{peers}"
                           f"multicast:\n  interface: lan\n  query-interval: {query}\n"
                           f"  response-ms: {response_ms}\n  announce: {announce}\n" + mc_extra)
        assert sh(PEAK, "overlay", "--config", str(self.tmp / "50.yaml"),
                  "--check").stdout == "ok\n"

    def name(self, s):
        """Site s as other gateways name it: a peer learned from the DHT is dht-<its key's
        first 4 bytes>."""
        return f"dht-{self.keys[s][:8]}" if self.dht else s

    def start_all(self):
        for s in self.sites:  # all spawned first: their starts overlap
            self.spawn(s)
        for s in self.sites:
            self.ready(s)

    def join(self, s, group=GROUP):
        """Starts a receiver on h<s> joined to group; its lines go to tmp/recv-<s>-<n>.txt."""
        path = self.tmp / f"recv-{s}-{len(self.recv)}.txt"
        p = subprocess.Popen(["ip", "netns", "exec", self.n(f"h{s}"), sys.executable, "-c",
                              RECV, group, str(UPORT), str(path)],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        self.recv[s] = (p, path)
        return path

    def leave(self, s):
        p, path = self.recv.pop(s)
        p.kill()
        p.wait()
        return path

    def got(self, path, run):
        """The sequence numbers of run received in path's file."""
        if not path.exists():
            return []
        return [int(x.split(":")[1]) for x in path.read_text().split()
                if x.startswith(f"{run}:")]

    def send(self, run, n, gap=0.002, dst=GROUP, uni=None, size=64):
        args = [dst, str(UPORT), str(n), str(gap), run]
        if uni:
            args += [",".join(uni), str(size)]
        out = nsx(self.n("h50"), sys.executable, "-c", SEND, *args, timeout=300).stdout
        return float(out.strip())

    def members_of(self, s, group=GROUP):
        """(local listeners?, member sites) as g<s>'s multicast show line says."""
        for line in self.ctl(s, "show", "peers").stdout.splitlines():
            f = line.split()
            if len(f) == 6 and f[0] == "mcast" and f[1] == group:
                return f[3] == "yes", set() if f[5] == "-" else set(f[5].split(","))
        return False, set()

    def cleanup(self):
        for s in list(self.recv):
            self.leave(s)
        super().cleanup()
