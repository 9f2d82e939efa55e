#pragma once
/* The DHT slave (dht.c): maps IPv6 prefixes to the gateways serving them through OpenDHT.
 * It owns the default route (::/0): a packet to an unknown destination waits in a bounded
 * queue while the slave looks the destination's longest registered prefix up (dhtrec.h),
 * then the gateway slave learns the site (gw_peer_learn) and the prefix is routed to it
 * for cache-ttl seconds; a miss is remembered for negative-ttl seconds and answered with
 * ICMPv6 no route. It publishes this site's prefixes, signed, and republishes them before
 * they expire; a packet from an unknown site makes it look that site up by its id. */
#include <stddef.h>

#include "master.h"
#include "ovconf.h"

/* A DHT slave for conf (conf->dht.enabled; borrowed, with the private key loaded) working
 * with gateway slave gw (borrowed). Checks the certificate against the authority, this
 * site's keys and its prefixes. Returns NULL with the reason in err. Nothing runs before
 * the master attaches it. */
struct ov_slave *dht_new(const struct ov_conf *conf, struct ov_slave *gw, char *err, size_t errlen);

/* Frees a slave from dht_new (detached or never attached); NULL is allowed. */
void dht_free(struct ov_slave *s);
