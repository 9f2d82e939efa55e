#pragma once
/*
 * IPv6 routes owned by PEAK, through rtnetlink (libmnl): dumped, diffed against the wanted
 * set and changed in batches, so unchanged routes are never touched. PEAK's routes carry
 * their own routing protocol number, so routes of others are never seen or removed.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peak/prefix.h"

enum {
	RTPROT_PEAK = 0xa5,
	RT_TABLE_PEAK_MAIN = 254,  /* the main table */
	RT_TABLE_PEAK_LOCAL = 255, /* the local table: AnyIP routes */
};

struct rt6 {
	struct prefix dst;
	uint8_t via[16]; /* gateway, or all zero */
	bool local;      /* an AnyIP route: type local, on lo */
};

/* Orders routes by destination, then gateway, then type. */
int rt6_cmp(const void *a, const void *b);

/* Splits the difference between have and want (each sorted by rt6_cmp, one route per
 * destination) into routes to add or replace (a destination whose gateway changed is
 * replaced in place, not deleted) and routes to delete. add and del must hold nwant and
 * nhave entries. */
void rt6_diff(const struct rt6 *have, size_t nhave, const struct rt6 *want, size_t nwant,
              struct rt6 *add, size_t *nadd, struct rt6 *del, size_t *ndel);

/* Lists PEAK's IPv6 routes of a table in the current network namespace (sorted). *out is
 * malloc'ed. Returns 0 or -errno. */
int rt6_dump(unsigned table, struct rt6 **out, size_t *n);

/* Adds (or replaces) and then deletes routes of a table in batches. Routes already gone
 * when deleted are not errors. Returns 0 or the first -errno the kernel answered. */
int rt6_apply(unsigned table, const struct rt6 *add, size_t nadd, const struct rt6 *del,
              size_t ndel);

/* Runs fn(arg) inside the named network namespace (/run/netns/NAME) and returns to the
 * current one. Returns fn's result, or -errno if the namespace cannot be entered. */
int netns_run(const char *name, int (*fn)(void *), void *arg);
