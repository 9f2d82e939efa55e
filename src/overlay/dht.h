#pragma once
/* The DHT slave (dht.c): maps IPv6 prefixes to the gateways serving them through OpenDHT.
 * It owns the default route (::/0): a packet to an unknown destination waits in a bounded
 * queue while the slave looks the destination's longest registered prefix up (dhtrec.h;
 * answered early when only absent answers, slow under churn, are missing, and corrected at
 * the lookup's end), then the gateway slave learns the site (gw_peer_learn) and the prefix
 * is routed to it for cache-ttl seconds; a miss is remembered for negative-ttl seconds and
 * answered with ICMPv6 no route. It publishes this site's prefixes, signed, and republishes
 * them before they expire; a packet from an unknown site makes it look that site up by its
 * id. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "master.h"
#include "ovconf.h"

/* A DHT slave for conf (conf->dht.enabled; borrowed, with the private key loaded) working
 * with gateway slave gw (borrowed). Checks the certificate against the authority, this
 * site's keys and its prefixes. Returns NULL with the reason in err. Nothing runs before
 * the master attaches it. */
struct ov_slave *dht_new(const struct ov_conf *conf, struct ov_slave *gw, char *err, size_t errlen);

/* For the multicast slave (slave_mcast.c). A site with listeners of a group republishes its
 * signed group record (dhtrec.h) under the group's key every DHT_GROUP_REPUBLISH_S seconds,
 * and a leave record when it has none left; a lookup takes the newest record of each site,
 * joins signed within 3 republish periods. */
enum { DHT_GROUP_REPUBLISH_S = 60 };

/* Called (loop thread) when a group lookup is done: the gateway's cookies of the member
 * sites found (learned as its peers), n of them (0 to any number). */
typedef void (*dht_group_fn)(void *arg, const uint8_t group[16], const uint32_t *cookies, size_t n);

/* Sets the function group lookups report to. */
void dht_set_group_cb(struct ov_slave *s, dht_group_fn fn, void *arg);

/* Puts this site's group record for group: joined, or a leave (newer than any record before
 * it). Returns 0, -EAGAIN (not attached yet), -ENOMEM or dhr_rec_write's error. */
int dht_group_publish(struct ov_slave *s, const uint8_t group[static 16], bool joined);

/* Starts a lookup of group's member sites (reported through dht_set_group_cb's function).
 * Returns 0, -EALREADY (one is in flight), -EBUSY (no lookup slot free) or -EAGAIN. */
int dht_group_lookup(struct ov_slave *s, const uint8_t group[static 16]);

/* For the anycast slave (slave_anycast.c). A site serving anycast prefixes (dht.anycast)
 * puts its signed anycast record of each (dhtrec.h, DHR_F_ANYCAST) under the prefix's anycast
 * key every DHT_GROUP_REPUBLISH_S seconds; a lookup takes the sites whose newest record is
 * younger than 3 of those periods, learned as the gateway's peers. */
typedef void (*dht_anycast_fn)(void *arg, const struct prefix *p, const uint32_t *cookies,
                               size_t n);

/* Sets the function anycast lookups report to (the gateway's cookies of the members). */
void dht_set_anycast_cb(struct ov_slave *s, dht_anycast_fn fn, void *arg);

/* Starts a lookup of the sites serving anycast prefix p. Returns 0, -EALREADY (one is in
 * flight), -EBUSY (no lookup slot free) or -EAGAIN (not attached yet). */
int dht_anycast_lookup(struct ov_slave *s, const struct prefix *p);

/* Frees a slave from dht_new (detached or never attached); NULL is allowed. */
void dht_free(struct ov_slave *s);
