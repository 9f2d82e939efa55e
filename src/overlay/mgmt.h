#pragma once
/* The management slave (mgmt.c): show routes, peers and counters, add and remove routes,
 * over a Unix socket that `peak overlay-ctl` talks to. */
#include "master.h"

/* A management slave serving the socket at path (created 0600 when attached; an existing
 * path is removed only if it is a stale socket). NULL on allocation failure or a path too
 * long for a socket (errno set). */
struct ov_slave *mg_new(const char *path);

/* Detaches (closes and removes the socket) and frees; NULL is allowed. */
void mg_free(struct ov_slave *s);
