#pragma once
/* The gateway slave (gateway.c): IPv6 in authenticated, encrypted UDP/IPv4 to statically
 * configured peers. */
#include <stddef.h>

#include "master.h"
#include "ovconf.h"

/* A gateway slave for conf (borrowed: it must outlive the slave; conf->priv filled). Its
 * routes (each peer's prefixes) are added when the master attaches it. Returns NULL with
 * the reason in err. */
struct ov_slave *gw_new(const struct ov_conf *conf, char *err, size_t errlen);

/* Frees a slave from gw_new (detached or never attached); NULL is allowed. */
void gw_free(struct ov_slave *s);
