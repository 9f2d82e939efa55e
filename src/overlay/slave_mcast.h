#pragma once
/* The multicast slave (slave_mcast.c): the MLD querier on the site's LAN, group membership
 * announced to the gateway's peers, and a group's packets copied to its member sites. */
#include <stddef.h>

#include "master.h"
#include "ovconf.h"

/* A multicast slave for conf->mcast (borrowed: it must outlive the slave) over gateway slave
 * gw and DHT slave dht (borrowed; NULL: no DHT, membership through announcements only). Its
 * packet socket is opened when the master attaches it (after both). Returns NULL with the
 * reason in err. */
struct ov_slave *mcast_new(const struct ov_conf *conf, struct ov_slave *gw, struct ov_slave *dht,
                           char *err, size_t errlen);

/* Frees a slave from mcast_new (detached or never attached); NULL is allowed. */
void mcast_free(struct ov_slave *s);
