"""Three public sites for the part-2 slave tests (resiliency, anycast): hosts h<s> at
fd00:<s>::2 behind gateways g<s> (fd00:<s>::1 on the LAN, <ADDR[s]> on the IPv4 uplink), all
on one IPv4 router r; every gateway knows the others' keys, endpoints and prefixes and runs
the resiliency slave."""
from ovbed import PEAK, Bed, nsx, sh

PORT = 51820
SITES = ("a", "b", "c")
ADDR = {"a": "10.0.1.2", "b": "10.0.2.2", "c": "10.0.3.2"}

# A UDP forwarder for the router r (this kernel has no netem): datagrams to 10.0.9.1:PORT go
# to the gateway at argv[1] after a delay, each client through its own socket bound to
# argv[2]; the gateway's answers go back to that client after the delay too. argv[3] is the
# delay in seconds, or @FILE: read from FILE at each packet (empty or unreadable: none).
# Prints "ready" once it listens.
SLOW_FORWARDER = r"""
import heapq, select, socket, sys, time
def delay():
    if not sys.argv[3].startswith("@"):
        return float(sys.argv[3])
    try:
        return float(open(sys.argv[3][1:]).read() or 0)
    except (OSError, ValueError):
        return 0.0
lst = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); lst.bind(("10.0.9.1", 51820))
dst = (sys.argv[1], 51820); up = {}; back = {}; q = []; n = 0
print("ready", flush=True)
while True:
    t = max(0.0, q[0][0] - time.monotonic()) if q else None
    for s in select.select([lst] + list(up.values()), [], [], t)[0]:
        d, a = s.recvfrom(65536)
        if s is lst:
            if a not in up:
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((sys.argv[2], 0))
                up[a] = u; back[u] = a
            heapq.heappush(q, (time.monotonic() + delay(), n, up[a], dst, d))
        else:
            heapq.heappush(q, (time.monotonic() + delay(), n, lst, back[s], d))
        n += 1
    while q and q[0][0] <= time.monotonic():
        _, _, s, to, d = heapq.heappop(q)
        s.sendto(d, to)
"""


class PubBed(Bed):
    def build(self, resil="resiliency: {}\n", endpoint=None, prefixes=None, extra=None):
        """endpoint(s, o): the endpoint site s's gateway is given for peer o (default its
        uplink); prefixes(o): what o serves, as YAML list items; extra(s): YAML appended to
        s's configuration."""
        endpoint = endpoint or (lambda s, o: ADDR[o])
        prefixes = prefixes or (lambda o: f"fd00:{o}::/64")
        extra = extra or (lambda s: "")
        for name in ["r"] + [f"h{s}" for s in SITES] + [f"g{s}" for s in SITES]:
            self.add_ns(name)
        nsx(self.n("r"), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for s in SITES:
            g = f"g{s}"
            self.site_lan(s)
            self.veth(g, "wan", "r", "r" + s)
            gw = ADDR[s].rsplit(".", 1)[0] + ".1"
            sh("ip", "-n", self.n("r"), "addr", "add", f"{gw}/24", "dev", "r" + s)
            sh("ip", "-n", self.n(g), "addr", "add", f"{ADDR[s]}/24", "dev", "wan")
            sh("ip", "-n", self.n(g), "route", "add", "default", "via", gw)
        self.keys = {}
        for s in SITES:
            key = self.tmp / f"{s}.key"
            sh(PEAK, "overlay", "--genkey", str(key))
            self.keys[s] = sh(PEAK, "overlay", "--pubkey", str(key)).stdout.strip()
        for s in SITES:
            peers = "".join(f"    - name: {o}\n      public-key: {self.keys[o]}\n"
                            f"      endpoint: {endpoint(s, o)}:{PORT}\n"
                            f"      prefixes: [{prefixes(o)}]\n" for o in SITES if o != s)
            cfg = self.tmp / f"{s}.yaml"
            cfg.write_text(f"address: fd00:{s}::1\n"
                           f"gateway:\n  listen: 0.0.0.0:{PORT}\n"
                           f"  private-key-file: {self.tmp / (s + '.key')}\n"
                           f"  keepalive: 1\n  peers:\n{peers}" + resil + extra(s))
            assert sh(PEAK, "overlay", "--config", str(cfg), "--check").stdout == "ok\n"
