"""Public sites that know no peer and find each other through the DHT slave, for the bridge
and anycast-in-the-DHT tests: gateway g<s> at 10.0.<i>.2 on one IPv4 router r, an
independent `dhtnode` in dn (10.0.99.2) that every gateway bootstraps through, one overlay
authority certifying every site for the prefixes the test gives it."""
import dhtnodes
from ovbed import PEAK, Bed, nsx, sh

PORT = 51820
DHT_PORT = 4222
NETWORK = 4713


class DhtPubBed(Bed):
    dhtnode = None

    def peak(self, *args):
        return sh(PEAK, "overlay", *args).stdout.strip()

    def addr(self, s):
        return f"10.0.{self.sites.index(s) + 1}.2"

    def build(self, sites, hosts, prefixes, extra=lambda s: "", dht_extra=lambda s: "",
              locator=None):
        """sites: site letters; hosts: those with a host h<s> at fd00:<s>::2 (Bed.site_lan);
        prefixes(s): the prefixes s is certified for and publishes (a list of strings);
        extra(s): YAML appended to s's configuration; dht_extra(s): lines inside its dht:
        section; locator(s): the locator s publishes (default its uplink address)."""
        self.sites = list(sites)
        for name in ["r", "dn"] + [f"h{s}" for s in hosts] + [f"g{s}" for s in sites]:
            self.add_ns(name)
        nsx(self.n("r"), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.dn_uplink("10.0.99")
        for i, s in enumerate(sites, 1):
            g = f"g{s}"
            if s in hosts:
                self.site_lan(s)
            self.veth(g, "wan", "r", "r" + s)
            sh("ip", "-n", self.n(g), "addr", "add", f"10.0.{i}.2/24", "dev", "wan")
            sh("ip", "-n", self.n(g), "route", "add", "default", "via", f"10.0.{i}.1")
            sh("ip", "-n", self.n("r"), "addr", "add", f"10.0.{i}.1/24", "dev", "r" + s)
        auth = self.tmp / "auth.key"
        self.peak("--genkey", str(auth))
        auth_pub = self.peak("--authority-pub", str(auth))
        self.pubs = {}
        for s in sites:
            key = self.tmp / f"{s}.key"
            self.peak("--genkey", str(key))
            site_id = self.peak("--site-id", str(key))
            self.pubs[s] = site_id[:64]  # the X25519 key, then the Ed25519 one
            pfx = prefixes(s)
            args = []
            for p in pfx:
                args += ["--prefix", p]
            cert = self.peak("--certify", str(auth), "--site", site_id, *args)
            loc = locator(s) if locator else f"{self.addr(s)}:{PORT}"
            cfg = self.tmp / f"{s}.yaml"
            cfg.write_text(
                f"address: fd00:{s}::1\nicmp-rate: 100\n"
                f"gateway:\n  listen: 0.0.0.0:{PORT}\n  private-key-file: {key}\n"
                f"  keepalive: 1\n"
                f"dht:\n  port: {DHT_PORT}\n  network: {NETWORK}\n"
                f"  bootstrap: [10.0.99.2:{DHT_PORT}]\n  authority: {auth_pub}\n"
                f"  certificate: {cert}\n  prefixes: [{', '.join(pfx)}]\n"
                f"  locator: {loc}\n  negative-ttl: 1\n" + dht_extra(s) + extra(s))
            assert sh(PEAK, "overlay", "--config", str(cfg), "--check").stdout == "ok\n"

    def peer_name(self, s):
        """The name site s's gateway has at the others' (learned from the DHT)."""
        return "dht-" + self.pubs[s][:8]

    def start_dhtnode(self):
        self.dhtnode = dhtnodes.start(self.n("dn"), DHT_PORT, NETWORK, answers=True)

    def cleanup(self):
        for s in list(self.procs):
            self.stop(s)
        if self.dhtnode:
            dhtnodes.stop(self.dhtnode)
        super().cleanup()
