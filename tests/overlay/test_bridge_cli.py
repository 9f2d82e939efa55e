"""peak overlay --check of the bridge: section and of anycast members from the DHT, without a
network: good ones pass, bad ones are refused with FILE:LINE and exit status 2."""
import hashlib

from test_overlay2_cli import conf
from test_overlay_cli import keys, run

BRIDGE = ("bridge:\n  interface: eth1\n  prefixes: [2001:db8:77::/64]\n  via: fe80::1\n"
          "  overlay: [fd00::/16, fd01::/16]\n  table: 100\n")
# a dht: section whose keys are only parsed here (--check stops at the parser's error)
DHT = ("dht:\n  port: 4222\n  authority: " + "11" * 32 + "\n  certificate: " + "22" * 64
       + "\n  locator: 192.0.2.1:51820\n  prefixes: [fd00:a::/64, fd00:ac::/64]\n")


def test_bridge_and_anycast_dht_sections(tmp_path):
    a, _ = keys(tmp_path, "a")
    pb, pc = (hashlib.sha256(n).hexdigest() for n in (b"b", b"c"))
    r = run("--config", str(conf(tmp_path, a, pb, pc, BRIDGE)), "--check")
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
    cases = [
        ("bridge:\n  interface: eth1\n  prefixes: [2001:db8:77::/64]\n",
         ":13: bridge: 'interface', 'prefixes' and 'overlay' are required"),
        ("bridge:\n  interface: eth1\n  prefixes: [2001:db8:77::1/64]\n  overlay: [fd00::/16]\n",
         ":14: bridge: prefixes: '2001:db8:77::1/64' is not an IPv6 prefix"),
        ("bridge:\n  interface: eth1\n  prefixes: ['::/0']\n  overlay: [fd00::/16]\n",
         ":14: bridge: prefixes: '::/0' is not an IPv6 prefix of length 1..128"),
        ("bridge:\n  interface: eth1\n  prefixes: [2001:db8::/48, 2001:db8::/48]\n"
         "  overlay: [fd00::/16]\n", ":14: bridge: prefixes: '2001:db8::/48' given twice"),
        ("bridge:\n  interface: a/b\n  prefixes: [2001:db8::/48]\n  overlay: [fd00::/16]\n",
         ":13: bridge: interface: want an interface name"),
        ("bridge:\n  interface: eth1\n  prefixes: [2001:db8::/48]\n  overlay: [fd00::/16]\n"
         "  via: 10.0.0.1\n", ":16: bridge: via: want an IPv6 address"),
        ("bridge:\n  interface: eth1\n  prefixes: [2001:db8::/48]\n  overlay: [fd00::/16]\n"
         "  table: 254\n", ":16: bridge: table: 253..255 are the kernel's"),
        ("bridge:\n  interface: eth1\n  prefixes: [2001:db8::/48]\n  overlay: [fd00::/16]\n"
         "  mtu: 1\n", ":16: bridge: unknown key 'mtu'"),
        ("bridge: []\n", ":12: bridge: want a mapping"),
        # with the DHT, a native prefix is published as the site's: it must be certified
        (DHT + BRIDGE, ":19: bridge: prefix 2001:db8:77::/64 is not among dht.prefixes"),
        # anycast members from the DHT need the DHT; a served prefix must be certified
        ("resiliency: {}\nanycast:\n  - prefix: fd00:ac::/64\n",
         ":14: anycast: 'sites' is required without 'dht'"),
        (DHT + "  anycast: [fd00:ad::/64]\n",
         ":12: dht: anycast fd00:ad::/64 is not among dht.prefixes"),
        (DHT + "  anycast: [fd00:ac::1/64]\n", ":18: anycast: 'fd00:ac::1/64' is not an IPv6"),
    ]
    for extra, want in cases:
        r = run("--config", str(conf(tmp_path, a, pb, pc, extra)), "--check")
        assert r.returncode == 2 and want in r.stderr, (extra, want, r.stderr)
    # served and found through the DHT: passes the parser (the dummy certificate is refused
    # next, by the DHT slave, not by the parser)
    r = run("--config", str(conf(tmp_path, a, pb, pc, DHT + "  anycast: [fd00:ac::/64]\n"
                                 "resiliency: {}\nanycast:\n  - prefix: fd00:ac::/64\n")),
            "--check")
    assert r.returncode == 2 and "yaml: dht: certificate: not the authority's" in r.stderr, r.stderr
