#pragma once
/* The anycast slave (slave_anycast.c): each configured anycast prefix is served by several
 * sites; each new flow goes to the nearest healthy one and stays there while it lives. */
#include <stddef.h>

#include "master.h"
#include "ovconf.h"

/* An anycast slave for conf->anycast (borrowed: it must outlive the slave) over gateway slave
 * gw, resiliency slave rs and DHT slave dht (NULL if none; borrowed). Every configured site
 * must be a peer listing the prefix among its prefixes (the answers' source); a prefix with
 * no sites takes its members from the DHT. Returns NULL with the reason in err. */
struct ov_slave *anycast_new(const struct ov_conf *conf, struct ov_slave *gw, struct ov_slave *rs,
                             struct ov_slave *dht, char *err, size_t errlen);

/* Frees a slave from anycast_new (detached or never attached); NULL is allowed. */
void anycast_free(struct ov_slave *s);
