#pragma once
/* The anycast slave (slave_anycast.c): each configured anycast prefix is served by several
 * sites; each new flow goes to the nearest healthy one and stays there while it lives. */
#include <stddef.h>

#include "master.h"
#include "ovconf.h"

/* An anycast slave for conf->anycast (borrowed: it must outlive the slave) over gateway slave
 * gw and resiliency slave rs (borrowed). Every site must be a configured peer listing the
 * prefix among its prefixes (the answers' source). Returns NULL with the reason in err. */
struct ov_slave *anycast_new(const struct ov_conf *conf, struct ov_slave *gw, struct ov_slave *rs,
                             char *err, size_t errlen);

/* Frees a slave from anycast_new (detached or never attached); NULL is allowed. */
void anycast_free(struct ov_slave *s);
