#pragma once
/*
 * The overlay daemon's configuration (YAML through libyaml, like the rest of PEAK). Errors
 * read "FILE:LINE: reason". The parser is pure (text in, struct out) and fuzzed; reading
 * the files it names (the private key) is ov_conf_load's job.
 *
 *	tun: ov0                     # TUN device (default ov0)
 *	mtu: 1400                    # its MTU, 1280..1500 (default 1400)
 *	address: fd00:a::1           # source of ICMPv6 errors (required)
 *	icmp-rate: 10                # ICMPv6 errors per second at most, 1..10000 (default 10)
 *	busy-poll: 0                 # microseconds the loop polls without sleeping after
 *	                             # traffic, 0..1000 (default 0: off): less latency, more CPU
 *	gateway:
 *	  listen: 0.0.0.0:51820      # UDP/IPv4 (required)
 *	  private-key-file: a.key    # 64 hex digits (required)
 *	  keepalive: 2               # seconds between keepalives, 1..600 (default 5)
 *	  fast-path: auto            # auto (default): trusted peers' packets go through the
 *	                             # kernel (fastpath.h) when BPF loads; off: user space only
 *	  peers:
 *	    - name: b
 *	      public-key: 64 hex digits
 *	      endpoint: 192.0.2.2:51820   # optional: learned from the peer's packets if absent
 *	      prefixes: [fd00:b::/64]     # routed to the peer; the only sources it may use
 *	      trusted: true               # an underlay the operator vouches for: data to and
 *	                                  # from it is NOT encrypted (OVW_DATA_PLAIN; default
 *	                                  # false); the peer must mark us trusted too
 *	dht:                         # optional: the DHT slave (dht.c) on OpenDHT
 *	  port: 4222                 # OpenDHT's UDP port, IPv4 and IPv6 (required)
 *	  network: 7                 # OpenDHT network id, 0..999999999 (default 0)
 *	  bootstrap: [10.0.0.1:4222] # IPV4:PORT of nodes to join through, up to 16
 *	  authority: 64 hex digits   # the overlay authority's Ed25519 public key (required)
 *	  certificate: 128 hex       # its signature over this site (peak overlay --certify)
 *	  prefixes: [fd00:a::/64]    # this site's prefixes, as certified (required, 1..16)
 *	  locator: 192.0.2.1:51820   # the gateway's address published (default: listen,
 *	                             # required when listen is 0.0.0.0)
 *	  lookup: bsearch            # bsearch (markers), walk (zero the last set bit) or
 *	                             # lengths (only the lengths listed, longest first)
 *	  lengths: [48, 64]          # with lookup lengths: the prefix lengths the sites of
 *	                             # this overlay publish (the same list everywhere; this
 *	                             # site's prefixes must have listed lengths), 0..128
 *	  cache-ttl: 300             # seconds a mapping found is kept, 5..86400
 *	  negative-ttl: 30           # seconds a miss is remembered, 1..3600
 *	  anycast: [fd00:ac::/64]    # anycast prefixes this site serves, each among prefixes:
 *	                             # a member record under the prefix's anycast key (1..16)
 *	resiliency:                  # optional: the resiliency slave (slave_resil.c); {} for
 *	  dead-ms: 600               # the defaults: a peer in use silent this long, 300..10000,
 *	                             # is reached through another gateway until it answers
 *	  budget: 1000               # probe bits/s per pair of gateways at most, 400..100000
 *	  degraded-pct: 25           # a path in use whose last probes were lost or late this
 *	                             # often (percent, 5..100; 0: off) is relayed too
 *	  late-ms: 250               # a probe answered this much above the path's lowest
 *	                             # RTT is late, 10..10000
 *	anycast:                     # optional: the anycast slave (slave_anycast.c); needs
 *	  - prefix: fd00:ac::/64     # resiliency (its probes measure the members' RTT)
 *	    sites: [b, c]            # peers serving it, 2..16, each listing it in its prefixes
 *	                             # (up to 16 anycast prefixes); without sites (needs dht:)
 *	                             # the members are the sites the DHT names (dht.anycast)
 *	multicast:                   # optional: the multicast slave (slave_mcast.c)
 *	  interface: lan             # the site's LAN: MLD querier, groups' packets (required)
 *	  query-interval: 125        # seconds between General Queries, 2..31744
 *	  response-ms: 10000         # Query Response Interval, 100..32767, < query-interval
 *	  robustness: 2              # MLD's Robustness Variable, 1..7
 *	  announce: 10               # seconds between membership refreshes to peers, 1..300
 *	  tree-above: 16             # a group of more member sites than this gets a
 *	                             # distribution tree (0: never; head-end replication)
 *	  tree-fanout: 4             # copies a gateway sends in the tree, 2..64
 *	bridge:                      # optional: the bridge slave (slave_bridge.c)
 *	  interface: eth1            # the native IPv6 network's interface (required)
 *	  prefixes: [2001:db8::/48]  # native prefixes carried into the overlay, 1..16 (with
 *	                             # dht: each among dht.prefixes, so certified; required)
 *	  via: fe80::1               # next hop toward them on interface (default: on-link)
 *	  overlay: [fd00::/16]       # overlay prefixes routed into the TUN on this host for
 *	                             # the native side, 1..16 (required)
 *	  table: 100                 # also install those in this kernel table (BIRD's kernel
 *	                             # protocol learns them for BGP), 1..4294967295 but not
 *	                             # 253..255 (default: none)
 */
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peak/prefix.h"

enum {
	OVC_NAME_MAX = 63,
	OVC_PATH_MAX = 1023,
	OVC_MAX_PEERS = 1024,
	OVC_MAX_PREFIXES = 256, /* per peer */
	OVC_ERRLEN = 512,
	OVC_TEXT_MAX = 1 << 20,
	OVC_MAX_BOOTSTRAP = 16,
	OVC_DHT_PREFIXES = 16, /* DHR_MAX_PREFIXES */
	OVC_MAX_ANYCAST = 16,
	OVC_ANYCAST_SITES = 16,
	OVC_BRIDGE_PREFIXES = 16,
};

struct ov_dht_conf {
	bool enabled;
	unsigned port, network, lookup, cache_ttl_s, negative_ttl_s; /* lookup: enum dhr_mode */
	uint64_t lengths[3]; /* lookup lengths: length L is bit L % 64 of word L / 64 */
	size_t nlengths;
	struct sockaddr_in bootstrap[OVC_MAX_BOOTSTRAP];
	size_t nbootstrap;
	uint8_t authority[32];
	uint8_t certificate[64];
	struct prefix prefixes[OVC_DHT_PREFIXES];
	size_t nprefixes;
	struct sockaddr_in locator;             /* the listen address when not given */
	struct prefix anycast[OVC_MAX_ANYCAST]; /* served here: published as members */
	size_t nanycast;
};

struct ov_resil_conf {
	bool enabled;
	unsigned dead_ms, budget_bps;
	unsigned degraded_pct, late_ms; /* degraded_pct 0: loss and delay not judged */
};

struct ov_anycast_conf {
	struct prefix prefix;
	char sites[OVC_ANYCAST_SITES][OVC_NAME_MAX + 1];
	size_t nsites; /* 0: the members are looked up in the DHT */
};

struct ov_mcast_conf {
	bool enabled;
	char interface[16];
	unsigned query_s, response_ms, robustness, announce_s;
	unsigned tree_above, tree_fanout;
};

struct ov_bridge_conf {
	bool enabled;
	char interface[16];
	struct prefix native[OVC_BRIDGE_PREFIXES];
	size_t nnative;
	bool has_via;
	uint8_t via[16];
	struct prefix overlay[OVC_BRIDGE_PREFIXES];
	size_t noverlay;
	unsigned table; /* 0: none */
};

struct ov_peer_conf {
	char name[OVC_NAME_MAX + 1];
	uint8_t pub[32];
	bool has_endpoint;
	struct sockaddr_in endpoint;
	struct prefix *prefixes;
	size_t nprefixes;
	bool trusted; /* OVW_DATA_PLAIN both ways */
};

struct ov_conf {
	char tun[16];
	unsigned mtu, icmp_rate, keepalive_s;
	unsigned busy_poll_us; /* busy-poll: the loop polls this long before sleeping (0: off) */
	bool fast_path;        /* fast-path: auto (the default) */
	uint8_t address[16];
	struct sockaddr_in listen;
	char key_file[OVC_PATH_MAX + 1];
	uint8_t priv[32]; /* filled by ov_conf_load */
	struct ov_peer_conf *peers;
	size_t npeers;
	struct ov_dht_conf dht;
	struct ov_resil_conf resil;
	struct ov_anycast_conf anycast[OVC_MAX_ANYCAST];
	size_t nanycast;
	struct ov_mcast_conf mcast;
	struct ov_bridge_conf bridge;
};

/* Parses len bytes of YAML named name (for messages) into *c (zeroed first; release with
 * ov_conf_fini even on failure). Returns 0, -EINVAL with the reason in err, or -ENOMEM. */
int ov_conf_parse(const char *name, const uint8_t *buf, size_t len, struct ov_conf *c, char *err,
                  size_t errlen);

/* Reads and parses the file at path, then the private key file it names. Same returns. */
int ov_conf_load(const char *path, struct ov_conf *c, char *err, size_t errlen);

/* Releases what ov_conf_parse allocated and wipes the private key. */
void ov_conf_fini(struct ov_conf *c);

/* Reads a 32-byte key written as 64 hex digits (white space around it ignored) from the
 * file at path. Returns 0, -EINVAL (not 64 hex digits) or -errno. */
int ov_key_read(const char *path, uint8_t key[static 32]);
