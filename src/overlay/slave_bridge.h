#pragma once
/* The bridge slave (slave_bridge.c): joins the overlay and a native IPv6 network on one site
 * through the host kernel's routes. */
#include <stddef.h>

#include "master.h"
#include "ovconf.h"

/* A bridge slave for conf->bridge (borrowed: it must outlive the slave). Nothing is touched
 * before the master attaches it. Returns NULL with the reason in err. */
struct ov_slave *bridge_new(const struct ov_conf *conf, char *err, size_t errlen);

/* Frees a slave from bridge_new (detached or never attached); NULL is allowed. */
void bridge_free(struct ov_slave *s);
