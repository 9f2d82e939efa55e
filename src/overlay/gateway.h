#pragma once
/* The gateway slave (gateway.c): IPv6 in authenticated, encrypted UDP/IPv4 to statically
 * configured peers. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "master.h"
#include "ovconf.h"

/* A gateway slave for conf (borrowed: it must outlive the slave; conf->priv filled). Its
 * routes (each peer's prefixes) are added when the master attaches it. Returns NULL with
 * the reason in err. */
struct ov_slave *gw_new(const struct ov_conf *conf, char *err, size_t errlen);

/* A peer found through the DHT (a verified record): its X25519 key, the locator to send
 * to, and the inner sources it may use (its certified prefixes). A configured peer keeps
 * its prefixes; any peer takes the locator unless its own authenticated packets told us an
 * endpoint lately (they know its NAT mapping better). Sets *cookie for ov_route_add with
 * this slave. Returns 0, -EINVAL (our own key, a low-order key, too many sources),
 * -EEXIST (another known key has the same 8-byte sender id) or -ENOSPC. Loop thread. */
int gw_peer_learn(struct ov_slave *s, const uint8_t pub[static 32], const struct sockaddr_in *ep,
                  const struct prefix *sources, size_t nsources, uint32_t *cookie);

/* fn(arg, id) is called for each packet from an unknown sender id (before it is dropped),
 * so the DHT slave can look the site up. */
void gw_set_resolver(struct ov_slave *s, void (*fn)(void *arg, const uint8_t id[8]), void *arg);

/* True if the peer of cookie sent an authenticated packet at or after since_ms (monotonic). */
bool gw_peer_answered(struct ov_slave *s, uint32_t cookie, uint64_t since_ms);

/* fn(arg, mapping) is called when a peer tells us a new public address of ours (the
 * mapping our NAT made; an authenticated OVW_MAPPING keepalive), so the DHT slave can
 * publish it. The last peer to tell wins: a certified peer could lie about it. */
void gw_set_mapping_cb(struct ov_slave *s, void (*fn)(void *arg, const struct sockaddr_in *m),
                       void *arg);

/* Frees a slave from gw_new (detached or never attached); NULL is allowed. */
void gw_free(struct ov_slave *s);
