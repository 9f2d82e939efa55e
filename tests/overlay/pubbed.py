"""Three public sites for the part-2 slave tests (resiliency, anycast): hosts h<s> at
fd00:<s>::2 behind gateways g<s> (fd00:<s>::1 on the LAN, <ADDR[s]> on the IPv4 uplink), all
on one IPv4 router r; every gateway knows the others' keys, endpoints and prefixes and runs
the resiliency slave."""
from ovbed import PEAK, Bed, nsx, sh

PORT = 51820
SITES = ("a", "b", "c")
ADDR = {"a": "10.0.1.2", "b": "10.0.2.2", "c": "10.0.3.2"}


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
