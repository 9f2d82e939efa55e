/* The overlay daemon's configuration parser (src/overlay/ovconf.h): every refusal it writes,
 * whole ("FILE:LINE: reason", so a message and the line it points at stay as they are), the
 * limits of its lists, and the values and defaults of configurations it accepts. */
#include "../unit/test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>

#include "ovconf.h"

#define K1 "0101010101010101010101010101010101010101010101010101010101010101"
#define K2 "0202020202020202020202020202020202020202020202020202020202020202"
#define AUTH "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define CERT AUTH AUTH
#define SHORT48 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define ADDR "address: fd00:a::1\n"
#define LISTEN "  listen: 10.0.0.1:51820\n"
#define KEYF "  private-key-file: a.key\n"
#define GW ADDR "gateway:\n" LISTEN KEYF /* lines 1..4 */
#define PEERS                                                                                      \
	"  peers:\n"                                                                               \
	"    - name: b\n"                                                                          \
	"      public-key: " K1 "\n"                                                               \
	"      prefixes: [fd00:b::/64, fd00:ac::/64]\n"                                            \
	"    - name: c\n"                                                                          \
	"      public-key: " K2 "\n"                                                               \
	"      prefixes: [fd00:c::/64, fd00:ac::/64]\n"
#define BASE GW PEERS           /* lines 1..11 */
#define PEER "  peers:\n    - " /* a peer's first key on line 6, the next ones below */
#define NEXT "\n      "
#define DHT                                                                                        \
	"dht:\n  port: 4222\n  authority: " AUTH "\n  certificate: " CERT "\n"                     \
	"  prefixes: [fd00:a::/64]\n" /* after BASE: lines 12..16 */
#define RES "resiliency: {}\n"
#define ANY "anycast:\n  - prefix: fd00:ac::/64\n    sites: [b, c]\n"

struct bad {
	const char *yaml, *err;
};

static const struct bad bad[] = {
    /* the top level */
    {"- a\n- b\n", "t:1: the top level must be a mapping"},
    {"? [a]\n: 1\n" BASE, "t:1: keys are strings"},
    {BASE "bogus: 1\n", "t:12: unknown key 'bogus'"},
    {"tun: abcdefghijklmnop\n" BASE, "t:1: tun: want an interface name of 1..15 characters"},
    {"tun: a/b\n" BASE, "t:1: tun: want an interface name of 1..15 characters"},
    {"tun: ''\n" BASE, "t:1: tun: want an interface name of 1..15 characters"},
    {"mtu: 1279\n" BASE, "t:1: mtu: 1279 is outside 1280..1500"},
    {"mtu: 1501\n" BASE, "t:1: mtu: 1501 is outside 1280..1500"},
    {"mtu: 12a0\n" BASE, "t:1: mtu: '12a0' is not a number"},
    {"mtu: 1234567890\n" BASE, "t:1: mtu: want a number in 1280..1500"},
    {"mtu: ''\n" BASE, "t:1: mtu: want a number in 1280..1500"},
    {"mtu: {a: 1}\n" BASE, "t:1: mtu: want a number in 1280..1500"},
    {"icmp-rate: 0\n" BASE, "t:1: icmp-rate: 0 is outside 1..10000"},
    {"busy-poll: 1001\n" BASE, "t:1: busy-poll: 1001 is outside 0..1000"},
    {"address: 10.0.0.1\ngateway:\n" LISTEN KEYF, "t:1: address: want an IPv6 address"},
    {"address: zz\ngateway:\n" LISTEN KEYF, "t:1: address: want an IPv6 address"},
    {"gateway:\n" LISTEN KEYF, "t:1: 'address' is required"},
    {ADDR, "t:1: 'gateway' is required"},
    {BASE "gateway:\n  listen: 10.0.0.1:1\n  private-key-file: k\n", "t:12: gateway: given twice"},
    {BASE RES RES, "t:13: resiliency: given twice"},
    {BASE RES ANY ANY, "t:16: anycast: given twice"},
    {BASE DHT DHT, "t:17: dht: given twice"},
    {BASE ANY, "t:1: anycast: needs 'resiliency' (its probes measure the sites' RTT)"},
    {BASE "dht: 5\n", "t:12: dht: want a mapping"},
    {BASE "dht: [a]\n", "t:12: dht: want a mapping"},
    /* the dht: section is read last: the errors of the top level come first */
    {"dht:\n  port: 0\ngateway:\n" LISTEN KEYF, "t:1: 'address' is required"},
    {"dht: 5\ngateway:\n" LISTEN KEYF, "t:1: 'address' is required"},
    /* gateway: */
    {ADDR "gateway: 5\n", "t:2: gateway: want a mapping"},
    {GW "  ? {a: 1}\n  : 2\n", "t:5: gateway: keys are strings"},
    {GW "  mtu: 1\n", "t:5: gateway: unknown key 'mtu'"},
    {ADDR "gateway:\n" KEYF, "t:3: gateway: 'listen' and 'private-key-file' are required"},
    {ADDR "gateway:\n" LISTEN, "t:3: gateway: 'listen' and 'private-key-file' are required"},
    {ADDR "gateway:\n  listen: 10.0.0.1\n" KEYF, "t:3: listen: want IPV4:PORT"},
    {ADDR "gateway:\n  listen: 100.100.100.1000:1\n" KEYF, "t:3: listen: want IPV4:PORT"},
    {ADDR "gateway:\n  listen: {a: 1}\n" KEYF, "t:3: listen: want IPV4:PORT"},
    {ADDR "gateway:\n  listen: 10.0.0:1\n" KEYF, "t:3: listen: '10.0.0' is not an IPv4 address"},
    {ADDR "gateway:\n  listen: '10.0.0.1:'\n" KEYF, "t:3: listen: bad port"},
    {ADDR "gateway:\n  listen: 10.0.0.1:123456\n" KEYF, "t:3: listen: bad port"},
    {ADDR "gateway:\n  listen: 10.0.0.1:12x\n" KEYF, "t:3: listen: bad port"},
    {ADDR "gateway:\n  listen: 10.0.0.1:0\n" KEYF, "t:3: listen: port 0 is outside 1..65535"},
    {ADDR "gateway:\n  listen: 10.0.0.1:65536\n" KEYF,
     "t:3: listen: port 65536 is outside 1..65535"},
    {ADDR "gateway:\n" LISTEN "  private-key-file: ''\n", "t:4: private-key-file: want a path"},
    {ADDR "gateway:\n" LISTEN "  private-key-file: [a]\n", "t:4: private-key-file: want a path"},
    {GW "  keepalive: 0\n", "t:5: keepalive: 0 is outside 1..600"},
    {GW "  keepalive: 601\n", "t:5: keepalive: 601 is outside 1..600"},
    {GW "  peers: 5\n", "t:5: peers: want a list"},
    {GW "  fast-path: on\n", "t:5: fast-path: want 'auto' or 'off'"},
    {GW PEER "name: b" NEXT "trusted: yes\n", "t:7: trusted: want true or false"},
    {BASE "  peers: []\n", "t:12: peers: given twice"},
    {BASE "  peers: 7\n", "t:12: peers: want a list"},
    /* a peer */
    {GW "  peers: [5]\n", "t:5: peers: each peer is a mapping"},
    {GW PEER "name: b" NEXT "[a]: 1\n", "t:7: peers: keys are strings"},
    {GW PEER "name: b" NEXT "port: 1\n", "t:7: peers: unknown key 'port'"},
    {GW PEER "name: ''\n", "t:6: name: want 1..63 characters"},
    {GW PEER "name: 0123456789012345678901234567890123456789012345678901234567890123\n",
     "t:6: name: want 1..63 characters"},
    {GW PEER "name: a b\n", "t:6: name: letters, digits, '-', '_', '.'"},
    {GW PEER "name: a/b\n", "t:6: name: letters, digits, '-', '_', '.'"},
    {GW PEER "public-key: " K1 "\n", "t:6: peers: each peer needs 'name' and 'public-key'"},
    {GW PEER "name: b\n", "t:6: peers: each peer needs 'name' and 'public-key'"},
    {GW PEER "name: b" NEXT "public-key: 01\n", "t:7: public-key: want 64 hex digits"},
    {GW PEER "name: b" NEXT "public-key: " AUTH "zz\n", "t:7: public-key: want 64 hex digits"},
    {GW PEER "name: b" NEXT "public-key: " K1 NEXT "endpoint: x\n",
     "t:8: endpoint: want IPV4:PORT"},
    {GW PEER "name: b" NEXT "public-key: " K1 NEXT "prefixes: fd00::/8\n",
     "t:8: prefixes: want a list of IPv6 prefixes"},
    {GW PEER "name: b" NEXT "public-key: " K1 NEXT "prefixes: [fd00::1/64]\n",
     "t:8: prefixes: 'fd00::1/64' is not an IPv6 prefix (bits past the length must be zero)"},
    {GW PEER "name: b" NEXT "public-key: " K1 NEXT "prefixes: [10.0.0.0/8]\n",
     "t:8: prefixes: '10.0.0.0/8' is not an IPv6 prefix (bits past the length must be zero)"},
    {GW PEER "name: b" NEXT "public-key: " K1 NEXT "prefixes: [[a]]\n",
     "t:8: prefixes: '?' is not an IPv6 prefix (bits past the length must be zero)"},
    {GW PEER "name: b" NEXT "public-key: " K1 NEXT "prefixes: [fd00::/8]" NEXT
             "prefixes: [fd01::/16]\n",
     "t:9: prefixes: given twice"},
    {GW "  peers:\n    - name: b\n      public-key: " K1 "\n    - name: b\n      public-key: " K2
        "\n",
     "t:8: peers: name 'b' given twice"},
    {GW "  peers:\n    - name: b\n      public-key: " K1 "\n    - name: c\n      public-key: "
        "0101010101010101" SHORT48 "\n",
     "t:8: peers: 'b' and 'c' share their key's first 8 bytes (the sender id)"},
    /* dht: */
    {BASE DHT "  [a]: 1\n", "t:17: dht: keys are strings"},
    {BASE DHT "  mtu: 1\n", "t:17: dht: unknown key 'mtu'"},
    {BASE "dht:\n  authority: " AUTH "\n  certificate: " CERT "\n  prefixes: [fd00:a::/64]\n",
     "t:12: dht: 'port', 'authority', 'certificate' and 'prefixes' are required"},
    {BASE "dht:\n  port: 4222\n  certificate: " CERT "\n  prefixes: [fd00:a::/64]\n",
     "t:12: dht: 'port', 'authority', 'certificate' and 'prefixes' are required"},
    {BASE "dht:\n  port: 4222\n  authority: " AUTH "\n  prefixes: [fd00:a::/64]\n",
     "t:12: dht: 'port', 'authority', 'certificate' and 'prefixes' are required"},
    {BASE "dht:\n  port: 4222\n  authority: " AUTH "\n  certificate: " CERT "\n",
     "t:12: dht: 'port', 'authority', 'certificate' and 'prefixes' are required"},
    {BASE DHT "  port: 0\n", "t:17: port: 0 is outside 1..65535"},
    {BASE DHT "  network: 1000000000\n", "t:17: network: want a number in 0..999999999"},
    {BASE DHT "  authority: 01\n", "t:17: authority: want 64 hex digits"},
    {BASE DHT "  certificate: " AUTH "\n", "t:17: certificate: want 128 hex digits"},
    {BASE DHT "  bootstrap: 10.0.0.1:1\n", "t:17: bootstrap: want a list"},
    {BASE DHT "  bootstrap: []\n", "t:17: bootstrap: want 1..16 items"},
    {BASE DHT "  bootstrap: [10.0.0.1:1, x]\n", "t:17: bootstrap: want IPV4:PORT"},
    {BASE DHT "  prefixes: [fd00:a::1/64]\n",
     "t:17: prefixes: 'fd00:a::1/64' is not an IPv6 prefix of length 1..128 (bits past the "
     "length must be zero)"},
    {BASE DHT "  prefixes: ['::/0']\n",
     "t:17: prefixes: '::/0' is not an IPv6 prefix of length 1..128 (bits past the length "
     "must be zero)"},
    {BASE DHT "  prefixes: []\n", "t:17: prefixes: want 1..16 items"},
    {BASE DHT "  locator: 0.0.0.0:1\n", "t:17: locator: 0.0.0.0 cannot be reached"},
    {BASE DHT "  locator: 1.2.3.4\n", "t:17: locator: want IPV4:PORT"},
    {ADDR "gateway:\n  listen: 0.0.0.0:51820\n" KEYF DHT,
     "t:5: dht: 'locator' is required when gateway.listen is 0.0.0.0 (the address other "
     "sites reach this gateway at)"},
    {BASE DHT "  lookup: linear\n", "t:17: lookup: want 'bsearch', 'walk' or 'lengths'"},
    {BASE DHT "  lookup: [walk]\n", "t:17: lookup: want 'bsearch', 'walk' or 'lengths'"},
    {BASE DHT "  lookup: lengths\n",
     "t:12: dht: 'lookup: lengths' needs 'lengths' (the prefix lengths this overlay's sites "
     "publish)"},
    {BASE DHT "  lengths: [64]\n", "t:12: dht: 'lengths' is for 'lookup: lengths'"},
    {BASE DHT "  lookup: lengths\n  lengths: [48]\n",
     "t:12: dht: prefix fd00:a::/64: its length is not in 'lengths' (other sites would not "
     "look for it)"},
    {BASE DHT "  lookup: lengths\n  lengths: [64, 129]\n", "t:18: lengths: 129 is outside 0..128"},
    {BASE DHT "  lookup: lengths\n  lengths: [64, 48, 64]\n", "t:18: lengths: 64 is listed twice"},
    {BASE DHT "  lookup: lengths\n  lengths: []\n", "t:18: lengths: want 1..129 items"},
    {BASE DHT "  lookup: lengths\n  lengths: 64\n", "t:18: lengths: want a list"},
    {BASE DHT "  cache-ttl: 4\n", "t:17: cache-ttl: 4 is outside 5..86400"},
    {BASE DHT "  negative-ttl: 3601\n", "t:17: negative-ttl: 3601 is outside 1..3600"},
    /* resiliency: */
    {BASE "resiliency: 5\n", "t:12: resiliency: want a mapping ({} for the defaults)"},
    {BASE "resiliency:\n  [a]: 1\n", "t:13: resiliency: keys are strings"},
    {BASE "resiliency:\n  dead: 1\n", "t:13: resiliency: unknown key 'dead'"},
    {BASE "resiliency:\n  dead-ms: 299\n", "t:13: dead-ms: 299 is outside 300..10000"},
    {BASE "resiliency:\n  budget: 100001\n", "t:13: budget: 100001 is outside 400..100000"},
    {BASE "resiliency:\n  degraded-pct: 4\n", "t:13: degraded-pct: want 0 (off) or 5..100"},
    {BASE "resiliency:\n  degraded-pct: 101\n", "t:13: degraded-pct: 101 is outside 0..100"},
    {BASE "resiliency:\n  late-ms: x\n", "t:13: late-ms: 'x' is not a number"},
    /* anycast: */
    {BASE RES "anycast: 5\n", "t:13: anycast: want a list"},
    {BASE RES "anycast: []\n", "t:13: anycast: want 1..16 items"},
    {BASE RES "anycast: [5]\n", "t:13: anycast: each item is a mapping of 'prefix' and 'sites'"},
    {BASE RES ANY "    [a]: 1\n", "t:16: anycast: keys are strings"},
    {BASE RES ANY "    port: 1\n", "t:16: anycast: unknown key 'port'"},
    {BASE RES "anycast:\n  - sites: [b, c]\n", "t:14: anycast: 'prefix' is required"},
    {BASE RES "anycast:\n  - prefix: fd00:ac::/64\n",
     "t:14: anycast: 'sites' is required without 'dht' (the members are looked up there)"},
    {BASE RES "anycast:\n  - prefix: fd00:ac::1/64\n",
     "t:14: prefix: 'fd00:ac::1/64' is not an IPv6 prefix of length 1..128"},
    {BASE RES "anycast:\n  - prefix: '::/0'\n",
     "t:14: prefix: '::/0' is not an IPv6 prefix of length 1..128"},
    {BASE RES "anycast:\n  - prefix: 10.0.0.0/8\n",
     "t:14: prefix: '10.0.0.0/8' is not an IPv6 prefix of length 1..128"},
    {BASE RES "anycast:\n  - prefix: [a]\n",
     "t:14: prefix: '?' is not an IPv6 prefix of length 1..128"},
    {BASE RES ANY "  - prefix: fd00:ac::/64\n    sites: [x, y]\n",
     "t:16: prefix: 'fd00:ac::/64' given twice"},
    /* a prefix given twice is refused before the sites that follow it are read */
    {BASE RES ANY "  - prefix: fd00:ac::/64\n    sites: [x]\n",
     "t:16: prefix: 'fd00:ac::/64' given twice"},
    {BASE RES "anycast:\n  - prefix: fd00:ac::/64\n    sites: [b]\n",
     "t:15: sites: want 2..16 peers"},
    {BASE RES "anycast:\n  - prefix: fd00:ac::/64\n    sites: b\n", "t:15: sites: want a list"},
    {BASE RES "anycast:\n  - prefix: fd00:ac::/64\n    sites: [b, c, b]\n",
     "t:15: sites: 'b' given twice"},
    {BASE RES "anycast:\n  - prefix: fd00:ac::/64\n    sites: [b, '']\n",
     "t:15: sites: want peer names"},
    {BASE RES "anycast:\n  - prefix: fd00:ac::/64\n    sites: [b, "
              "0123456789012345678901234567890123456789012345678901234567890123]\n",
     "t:15: sites: want peer names"},
    /* multicast: */
    {BASE "multicast: 5\n", "t:12: multicast: want a mapping"},
    {BASE "multicast: {}\n", "t:12: multicast: 'interface' is required"},
    {BASE "multicast:\n  interface: abcdefghijklmnop\n",
     "t:13: multicast: interface: want an interface name of 1..15 characters"},
    {BASE "multicast:\n  interface: lan\n  query-interval: 1\n",
     "t:14: query-interval: 1 is outside 2..31744"},
    {BASE "multicast:\n  interface: lan\n  robustness: 8\n", "t:14: robustness: 8 is outside 1..7"},
    {BASE "multicast:\n  interface: lan\n  announce: 0\n", "t:14: announce: 0 is outside 1..300"},
    {BASE "multicast:\n  interface: lan\n  tree-fanout: 1\n",
     "t:14: tree-fanout: 1 is outside 2..64"},
    {BASE "multicast:\n  interface: lan\n  tree-above: -1\n",
     "t:14: tree-above: '-1' is not a number"},
    {BASE "multicast:\n  interface: lan\n  query-interval: 2\n  response-ms: 2000\n",
     "t:13: multicast: response-ms must be shorter than query-interval"},
    {BASE "multicast:\n  interface: lan\nmulticast:\n  interface: lan\n",
     "t:14: multicast: given twice"},
};

static int parse(const char *yaml, struct ov_conf *c, char err[static OVC_ERRLEN])
{
	return ov_conf_parse("t", (const uint8_t *)yaml, strlen(yaml), c, err, OVC_ERRLEN);
}

static void test_refusals_name_their_line(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ov_conf c;
		char err[OVC_ERRLEN];
		int r = parse(bad[i].yaml, &c, err);
		ov_conf_fini(&c);
		if (r != -EINVAL || strcmp(err, bad[i].err))
			fail_msg("case %zu: got %d '%s', want '%s'", i, r, err, bad[i].err);
	}
}

/* On the heap: head, then n items pre<index>post separated by commas, then tail. */
static char *list(const char *head, const char *pre, const char *post, unsigned n, const char *tail)
{
	size_t cap =
	    strlen(head) + strlen(tail) + (size_t)n * (strlen(pre) + strlen(post) + 16) + 1;
	char *s = malloc(cap);
	assert_non_null(s);
	size_t at = (size_t)snprintf(s, cap, "%s", head);
	for (unsigned i = 0; i < n; i++)
		at += (size_t)snprintf(s + at, cap - at, "%s%s%u%s", i ? ", " : "", pre, i, post);
	snprintf(s + at, cap - at, "%s", tail);
	return s;
}

/* Parses yaml (freed), then checks the outcome: err NULL for success. */
static void check(char *yaml, const char *want)
{
	struct ov_conf c;
	char err[OVC_ERRLEN];
	int r = parse(yaml, &c, err);
	ov_conf_fini(&c);
	free(yaml);
	if (!want && r)
		fail_msg("got %d '%s'", r, err);
	if (want)
		assert_string_equal(err, want);
	assert_int_equal(r, want ? -EINVAL : 0);
}

static void test_list_limits(void **state)
{
	(void)state;
	check(list(GW "  peers: [", "", "", OVC_MAX_PEERS + 1, "]\n"),
	      "t:5: peers: more than 1024");
	const char *peer = GW PEER "name: b" NEXT "public-key: " K1 NEXT "prefixes: [";
	check(list(peer, "fd00:", "::/32", OVC_MAX_PREFIXES, "]\n"), NULL);
	check(list(peer, "fd00:", "::/32", OVC_MAX_PREFIXES + 1, "]\n"),
	      "t:8: prefixes: more than 256");
	check(list(BASE DHT "  bootstrap: [", "10.0.0.1:1", "", OVC_MAX_BOOTSTRAP, "]\n"), NULL);
	check(list(BASE DHT "  bootstrap: [", "10.0.0.1:1", "", OVC_MAX_BOOTSTRAP + 1, "]\n"),
	      "t:17: bootstrap: want 1..16 items");
	check(list(BASE DHT "  prefixes: [", "fd00:", "::/32", OVC_DHT_PREFIXES, "]\n"), NULL);
	check(list(BASE DHT "  prefixes: [", "fd00:", "::/32", OVC_DHT_PREFIXES + 1, "]\n"),
	      "t:17: prefixes: want 1..16 items");
	check(list(BASE RES "anycast: [", "{prefix: 'fd00:", "::/32', sites: [b, c]}",
	           OVC_MAX_ANYCAST, "]\n"),
	      NULL);
	check(list(BASE RES "anycast: [", "", "", OVC_MAX_ANYCAST + 1, "]\n"),
	      "t:13: anycast: want 1..16 items");
	check(list(BASE RES "anycast:\n  - prefix: fd00:ac::/64\n    sites: [", "s", "",
	           OVC_ANYCAST_SITES, "]\n"),
	      NULL);
	check(list(BASE RES "anycast:\n  - prefix: fd00:ac::/64\n    sites: [", "s", "",
	           OVC_ANYCAST_SITES + 1, "]\n"),
	      "t:15: sites: want 1..16 items");
	/* larger than the limit: refused before it is read */
	char *big = malloc(OVC_TEXT_MAX + 2);
	assert_non_null(big);
	memset(big, '#', OVC_TEXT_MAX + 1);
	big[OVC_TEXT_MAX + 1] = '\0';
	check(big, "t: larger than 1048576 bytes");
}

static void check_resil(const struct ov_resil_conf *r, bool enabled, unsigned dead_ms,
                        unsigned budget_bps, unsigned degraded_pct, unsigned late_ms)
{
	assert_int_equal(r->enabled, enabled);
	assert_int_equal(r->dead_ms, dead_ms);
	assert_int_equal(r->budget_bps, budget_bps);
	assert_int_equal(r->degraded_pct, degraded_pct);
	assert_int_equal(r->late_ms, late_ms);
}

static void test_defaults(void **state)
{
	(void)state;
	struct ov_conf c;
	char err[OVC_ERRLEN];
	assert_int_equal(parse(BASE, &c, err), 0);
	assert_string_equal(c.tun, "ov0");
	assert_int_equal(c.mtu, 1400);
	assert_int_equal(c.icmp_rate, 10);
	assert_int_equal(c.busy_poll_us, 0);
	assert_int_equal(c.keepalive_s, 5);
	assert_int_equal(ntohs(c.listen.sin_port), 51820);
	assert_int_equal(ntohl(c.listen.sin_addr.s_addr), 0x0a000001);
	assert_string_equal(c.key_file, "a.key");
	assert_int_equal(c.npeers, 2);
	assert_string_equal(c.peers[1].name, "c");
	assert_int_equal(c.peers[1].pub[0], 2);
	assert_false(c.peers[1].has_endpoint);
	assert_int_equal(c.peers[1].nprefixes, 2);
	assert_int_equal(c.peers[1].prefixes[1].len, 64);
	assert_false(c.peers[1].trusted);
	assert_true(c.fast_path);
	assert_false(c.dht.enabled);
	check_resil(&c.resil, false, 600, 1000, 25, 250);
	assert_int_equal(c.nanycast, 0);
	assert_false(c.mcast.enabled);
	assert_int_equal(c.mcast.query_s, 125);
	assert_int_equal(c.mcast.response_ms, 10000);
	assert_int_equal(c.mcast.robustness, 2);
	assert_int_equal(c.mcast.announce_s, 10);
	assert_int_equal(c.mcast.tree_above, 16);
	assert_int_equal(c.mcast.tree_fanout, 4);
	ov_conf_fini(&c);
}

static void test_every_key(void **state)
{
	(void)state;
	struct ov_conf c;
	char err[OVC_ERRLEN];
	const char *yaml =
	    "tun: ov9\nmtu: 1280\nmtu: 1500\nicmp-rate: 10000\nbusy-poll: 1000\n" GW
	    "  keepalive: 600\n  fast-path: off\n" PEER "name: aZ09-_." NEXT "public-key: " K1 NEXT
	    "endpoint: 192.0.2.2:51820" NEXT "prefixes: []" NEXT "trusted: true\n"
	    "dht:\n  port: 4222\n  authority: " AUTH "\n  certificate: " CERT "\n"
	    "  prefixes: [fd00:a::/64]\n  network: 999999999\n"
	    "  bootstrap: [10.0.0.2:4222, 10.0.0.3:1]\n"
	    "  lookup: walk\n  cache-ttl: 5\n  negative-ttl: 3600\n"
	    "resiliency:\n  dead-ms: 300\n  budget: 100000\n  degraded-pct: 0\n"
	    "  late-ms: 10000\n" ANY "multicast:\n  interface: lan0\n  query-interval: 31744\n"
	    "  response-ms: 32767\n  robustness: 7\n  announce: 300\n  tree-above: 0\n"
	    "  tree-fanout: 64\n";
	assert_int_equal(parse(yaml, &c, err), 0);
	assert_string_equal(c.tun, "ov9");
	assert_int_equal(c.mtu, 1500); /* the last of a key given twice */
	assert_int_equal(c.icmp_rate, 10000);
	assert_int_equal(c.busy_poll_us, 1000);
	assert_int_equal(c.keepalive_s, 600);
	assert_int_equal(c.npeers, 1);
	assert_string_equal(c.peers[0].name, "aZ09-_.");
	assert_true(c.peers[0].has_endpoint);
	assert_int_equal(ntohs(c.peers[0].endpoint.sin_port), 51820);
	assert_int_equal(c.peers[0].nprefixes, 0);
	assert_true(c.peers[0].trusted);
	assert_false(c.fast_path);
	assert_true(c.dht.enabled);
	assert_int_equal(c.dht.port, 4222);
	assert_int_equal(c.dht.network, 999999999);
	assert_int_equal(c.dht.nbootstrap, 2);
	assert_int_equal(ntohs(c.dht.bootstrap[1].sin_port), 1);
	assert_int_equal(c.dht.authority[31], 0xaa);
	assert_int_equal(c.dht.certificate[63], 0xaa);
	assert_int_equal(c.dht.nprefixes, 1);
	assert_int_equal(c.dht.lookup, 1);
	assert_int_equal(c.dht.cache_ttl_s, 5);
	assert_int_equal(c.dht.negative_ttl_s, 3600);
	/* no locator: the listen address */
	assert_memory_equal(&c.dht.locator, &c.listen, sizeof(c.listen));
	check_resil(&c.resil, true, 300, 100000, 0, 10000);
	assert_int_equal(c.nanycast, 1);
	assert_int_equal(c.anycast[0].prefix.len, 64);
	assert_int_equal(c.anycast[0].nsites, 2);
	assert_string_equal(c.anycast[0].sites[1], "c");
	assert_true(c.mcast.enabled);
	assert_string_equal(c.mcast.interface, "lan0");
	assert_int_equal(c.mcast.query_s, 31744);
	assert_int_equal(c.mcast.response_ms, 32767);
	assert_int_equal(c.mcast.robustness, 7);
	assert_int_equal(c.mcast.announce_s, 300);
	assert_int_equal(c.mcast.tree_above, 0);
	assert_int_equal(c.mcast.tree_fanout, 64);
	ov_conf_fini(&c);
}

static void test_dht_lengths(void **state)
{
	(void)state;
	struct ov_conf c;
	char err[OVC_ERRLEN];
	assert_int_equal(parse(BASE DHT
	                       "  lookup: lengths\n  lengths: [64, 0, 128]\n  lengths: [64, 48]\n",
	                       &c, err),
	                 0);
	assert_int_equal(c.dht.lookup, 2);
	assert_int_equal(c.dht.nlengths, 2); /* the list given last */
	assert_true(c.dht.lengths[1] == 1ULL && c.dht.lengths[0] == 1ULL << 48);
	assert_int_equal(c.dht.lengths[2], 0);
	ov_conf_fini(&c);
	assert_int_equal(parse(BASE DHT "  lookup: lengths\n  lengths: [0, 64, 128]\n", &c, err),
	                 0);
	assert_true(c.dht.lengths[0] == 1 && c.dht.lengths[1] == 1 && c.dht.lengths[2] == 1);
	ov_conf_fini(&c);
}

static void test_quirks_kept(void **state)
{
	(void)state;
	/* the dht: section before the gateway's: its locator still defaults to listen */
	check(strdup(DHT BASE), NULL);
	/* an explicit locator when listen is 0.0.0.0; 'bsearch' after 'walk' */
	check(strdup(ADDR "gateway:\n  listen: 0.0.0.0:51820\n" KEYF DHT
	                  "  locator: 10.9.9.9:9\n  lookup: walk\n  lookup: bsearch\n"),
	      NULL);
	/* an empty list given first is not counted as given (peers:, a peer's prefixes:) */
	check(strdup(GW "  peers: []\n" PEERS), NULL);
	check(strdup(GW PEER "name: b" NEXT "public-key: " K1 NEXT "prefixes: []" NEXT
	                     "prefixes: [fd01::/16]\n"),
	      NULL);
	/* a peer's name given twice: the last; a peer's prefix may be ::/0 */
	check(strdup(GW PEER "name: a" NEXT "name: b" NEXT "public-key: " K1 NEXT
	                     "prefixes: ['::/0']\n"),
	      NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_refusals_name_their_line),
	    cmocka_unit_test(test_list_limits),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_every_key),
	    cmocka_unit_test(test_dht_lengths),
	    cmocka_unit_test(test_quirks_kept),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
