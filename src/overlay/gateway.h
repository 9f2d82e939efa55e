#pragma once
/* The gateway slave (gateway.c): IPv6 in authenticated, encrypted UDP/IPv4 to statically
 * configured peers. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "master.h"
#include "ovconf.h"
#include "wire.h"

/* A gateway slave for conf (borrowed: it must outlive the slave; conf->priv filled). Its
 * routes (each peer's prefixes) are added when the master attaches it. Returns NULL with
 * the reason in err. */
struct ov_slave *gw_new(const struct ov_conf *conf, char *err, size_t errlen);

/* A peer found through the DHT (a verified record): its X25519 key, the locator to send
 * to (ep_edm: its record says its NAT maps per endpoint, DHR_F_EDM; if ours does too, no
 * hole can be punched: its packets go through a relay, a peer whose record has the flag
 * clear and that answered lately, or without one get ICMPv6 address unreachable), the inner
 * sources it may use (its certified prefixes). A configured peer keeps its prefixes; any
 * peer takes the locator unless its own authenticated packets told us an endpoint lately
 * (they know its NAT mapping better): then one keepalive goes to a locator that differs (the
 * site may have moved there; our NAT may need to see us send there to let it in, and the
 * site's packets then move the endpoint); a new locator taken for a peer heard before gets a
 * keepalive at once. For a peer whose NAT is endpoint-dependent (ep_edm)
 * and whose packets came from ep's address, the port they came from is kept: the record's is
 * the mapping toward another peer. Sets *cookie for ov_route_add with
 * this slave. Returns 0, -EINVAL (our own key, a low-order key, too many sources),
 * -EEXIST (another known key has the same 8-byte sender id) or -ENOSPC. Loop thread. */
int gw_peer_learn(struct ov_slave *s, const uint8_t pub[static 32], const struct sockaddr_in *ep,
                  bool ep_edm, const struct prefix *sources, size_t nsources, uint32_t *cookie);

/* The X25519 public key of the peer of cookie into pub. 0 or -ENOENT. */
int gw_peer_pub(struct ov_slave *s, uint32_t cookie, uint8_t pub[static 32]);

/* True if our NAT maps ports per destination (endpoint-dependent, "symmetric"): two peers
 * lately told us the same address with different ports. Loop thread. */
bool gw_nat_edm(struct ov_slave *s);

/* fn(arg, id) is called for each packet from an unknown sender id (before it is dropped),
 * so the DHT slave can look the site up. */
void gw_set_resolver(struct ov_slave *s, void (*fn)(void *arg, const uint8_t id[8]), void *arg);

/* True if the peer of cookie sent an authenticated packet at or after since_ms (monotonic),
 * directly or relayed by another peer (OVW_RELAYED). */
bool gw_peer_answered(struct ov_slave *s, uint32_t cookie, uint64_t since_ms);

/* fn(arg, mapping) is called when a peer tells us a new public address of ours (the
 * mapping our NAT made; an authenticated OVW_MAPPING keepalive), so the DHT slave can
 * publish it. The last peer to tell wins: a certified peer could lie about it. */
void gw_set_mapping_cb(struct ov_slave *s, void (*fn)(void *arg, const struct sockaddr_in *m),
                       void *arg);

enum {
	GW_HEARD_KEEPALIVES = 3,
	GW_HEARD_SLACK_MS = 500,
	GW_MAX_LEARNED = 256, /* peers learned from the DHT, beyond the configured ones */
	/* a peer heard again at the endpoint it left within GW_FLAP_MS flaps: it is taken back
	 * only once its current endpoint was silent GW_EP_QUIET_MS (gateway.c roam_damped) */
	GW_FLAP_MS = 1000,
	GW_EP_QUIET_MS = 250,
};

/* True if a peer whose last authenticated packet came at last_rx_ms (monotonic ms; 0: never)
 * was heard lately at now_ms: within GW_HEARD_KEEPALIVES keepalive periods of keepalive_s
 * seconds, plus GW_HEARD_SLACK_MS for a keepalive a little late. A stamp later than now_ms
 * (now_ms read before the packet came) is heard, never an unsigned wrap to "silent for
 * 2^64 ms". The one rule of the relay choices (gateway.c, slave_resil.c) and of anycast
 * health (slave_anycast.c). */
static inline bool gw_peer_heard_within(uint64_t last_rx_ms, uint64_t now_ms, unsigned keepalive_s)
{
	uint64_t window_ms = 1000ULL * GW_HEARD_KEEPALIVES * keepalive_s + GW_HEARD_SLACK_MS;
	return last_rx_ms && (last_rx_ms >= now_ms || now_ms - last_rx_ms <= window_ms);
}

/* For the resiliency slave (slave_resil.c). */
#define GW_DIRECT UINT32_MAX /* gw_set_via: no relay */

struct gw_peer_info {
	const char *name;
	uint8_t id[OVW_ID_LEN]; /* its sender id: its public key's first bytes */
	bool has_ep;
	uint64_t last_rx_ms;  /* its last authenticated packet (monotonic; 0: none yet) */
	uint64_t out_packets; /* packets from the site routed to it so far, relayed or not */
	uint32_t via;         /* GW_DIRECT or the peer relaying to it */
	/* its packets to us directly, in its current epoch (rx_epoch): how many were taken, and
	 * one past the highest counter among them (so rx_top minus a count taken before is how
	 * many it sent since, by their counters) */
	uint64_t rx_epoch, rx_taken, rx_top;
};

/* The number of peers (cookies 0..n-1; learned peers are added at the end). Loop thread. */
size_t gw_peer_count(struct ov_slave *s);

/* Fills info for the peer of cookie. Returns 0 or -ENOENT. Loop thread. */
int gw_peer_info(struct ov_slave *s, uint32_t cookie, struct gw_peer_info *info);

/* False if peer relay told us in the last 10 s (OVW_RELAY_LOST) that it does not hear the
 * peer of cookie, and no packet of that peer's came through it since. Loop thread. */
bool gw_relay_reaches(struct ov_slave *s, uint32_t relay, uint32_t cookie, uint64_t now_ms);

/* Sends the site's packets for the peer of cookie through peer via (OVW_RELAY: via forwards
 * them as OVW_RELAYED), or directly again with GW_DIRECT. Returns 0 or -EINVAL (a cookie
 * out of range, via the peer itself). Loop thread. */
int gw_set_via(struct ov_slave *s, uint32_t cookie, uint32_t via);

/* Sends an OVW_PROBE, OVW_PROBE_ACK or OVW_LOSS with body to the peer of cookie at once. Returns 0,
 * -EINVAL, -EHOSTUNREACH (no endpoint) or a send's -errno. Loop thread. */
int gw_probe_send(struct ov_slave *s, uint32_t cookie, uint8_t type,
                  const uint8_t body[static OVW_PROBE_LEN]);

/* fn(arg, cookie, type, body, now_ms) is called for each authenticated probe, probe ack or
 * loss report (after it refreshed the peer's last_rx_ms). Setting fn also makes the gateway a
 * relay: it forwards OVW_RELAY packets and accepts OVW_RELAYED ones (without fn both are dropped,
 * unless the DHT slave is on: then the gateway relays for sites whose NATs cannot be
 * punched, and relays them itself through a peer whose NAT is not endpoint-dependent). */
void gw_set_probe_cb(struct ov_slave *s,
                     void (*fn)(void *arg, uint32_t cookie, uint8_t type,
                                const uint8_t body[OVW_PROBE_LEN], uint64_t now_ms),
                     void *arg);

/* Sends an OVW_LINKSTATE report (body, 1..OVW_LS_BODY_MAX bytes, ovw_ls_encode) to the peer of
 * cookie at once. Returns 0, -EINVAL, -EHOSTUNREACH (no endpoint) or a send's -errno. */
int gw_linkstate_send(struct ov_slave *s, uint32_t cookie, const uint8_t *body, size_t n);

/* fn(arg, cookie, body, n, now_ms) is called for each authenticated OVW_LINKSTATE report of the
 * peer of cookie (its body, unchecked: the resiliency slave decodes it). Loop thread. */
void gw_set_linkstate_cb(struct ov_slave *s,
                         void (*fn)(void *arg, uint32_t cookie, const uint8_t *body, size_t n,
                                    uint64_t now_ms),
                         void *arg);

/* For the multicast slave (slave_mcast.c): members(arg, cookie, body, n) is called for each
 * authenticated OVW_MEMBERS announcement of the peer of cookie (its body, unchecked), and
 * mcast(arg, cookie, pkt, n) for each checked inner packet to a multicast address (instead of
 * the TUN device; cookie: the site it came from, a relayed packet's origin). Loop thread. */
void gw_set_mcast_cb(struct ov_slave *s,
                     void (*members)(void *arg, uint32_t cookie, const uint8_t *body, size_t n),
                     void (*mcast)(void *arg, uint32_t cookie, const uint8_t *pkt, size_t n),
                     void *arg);

/* tree(arg, cookie, body, n) is called for each authenticated OVW_MCAST_TREE packet of the
 * peer of cookie (its body, unchecked: mcast.h); NULL stops it. Loop thread. */
void gw_set_mcast_tree_cb(struct ov_slave *s,
                          void (*tree)(void *arg, uint32_t cookie, const uint8_t *body, size_t n));

/* Queues an OVW_MCAST_TREE packet (body, 1..OVW_INNER_MAX bytes) for the peer of cookie on
 * its direct path. Returns 0, -EINVAL, -EHOSTUNREACH (no endpoint), -EAGAIN (its packets go
 * through a relay now: send it a plain copy), -EMSGSIZE (over its tunnel MTU) or a seal's
 * error. Loop thread. */
int gw_tree_send(struct ov_slave *s, uint32_t cookie, const uint8_t *body, size_t n);

/* Sets *cookie to the peer whose prefixes hold addr (the first one). Returns 0 or -ENOENT.
 * Loop thread. */
int gw_peer_by_source(struct ov_slave *s, const uint8_t addr[static 16], uint32_t *cookie);

/* Sets *cookie to the peer whose sender id (the first OVW_ID_LEN bytes of its public key) is
 * id. Returns 0 or -ENOENT. Loop thread. */
int gw_peer_find(struct ov_slave *s, const uint8_t id[static OVW_ID_LEN], uint32_t *cookie);

/* Sends an OVW_MEMBERS announcement (body, 1..OVW_INNER_MAX bytes) to the peer of cookie at
 * once. Returns 0, -EINVAL, -EHOSTUNREACH (no endpoint) or a send's -errno. Loop thread. */
int gw_members_send(struct ov_slave *s, uint32_t cookie, const uint8_t *body, size_t n);

/* Frees a slave from gw_new (detached or never attached); NULL is allowed. */
void gw_free(struct ov_slave *s);
