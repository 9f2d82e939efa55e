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
	NL_DUMP_TRIES =
	    5, /* a dump the kernel flags interrupted is read again, this often in all */
	RTPROT_PEAK = 0xa5,
	RT_TABLE_PEAK_MAIN = 254,  /* the main table */
	RT_TABLE_PEAK_LOCAL = 255, /* the local table: AnyIP routes */
};

struct rt6 {
	struct prefix dst;
	uint8_t via[16]; /* gateway, or all zero */
	bool local;      /* an AnyIP route: type local, on lo */
	unsigned oif;    /* rt6_apply only: the output device's index, 0 for none (not dumped) */
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
 * malloc'ed. A dump the kernel flags interrupted (NLM_F_DUMP_INTR: the table changed while
 * it was read, so the list may miss or repeat routes) is read again, NL_DUMP_TRIES times in
 * all. Returns 0, -EINTR if every try was interrupted, or -errno. */
int rt6_dump(unsigned table, struct rt6 **out, size_t *n);

/* A route dump being read: PEAK's routes of one table so far (v is malloc'ed). */
struct rt6_dump_ctx {
	unsigned table;
	struct rt6 *v;
	size_t n, cap;
	int err;
};

/* Feeds one datagram of an RTM_GETROUTE dump's answer (seq and portid: the request's) into
 * d. Returns 1 when the dump is complete (NLMSG_DONE), 0 when more is to come, -EINTR when
 * the kernel flagged the dump interrupted (start it again), or -errno. */
int rt6_dump_feed(struct rt6_dump_ctx *d, const void *buf, size_t len, uint32_t seq,
                  uint32_t portid);

/* Runs dump(arg) again while it returns -EINTR (an interrupted netlink dump), at most
 * NL_DUMP_TRIES times in all; dump must start from scratch each time. Returns its last
 * result. */
int nl_dump_retry(int (*dump)(void *arg), void *arg);

/* Adds (or replaces) and then deletes routes of a table in batches. Routes already gone
 * when deleted are not errors. Returns 0 or the first -errno the kernel answered. */
int rt6_apply(unsigned table, const struct rt6 *add, size_t nadd, const struct rt6 *del,
              size_t ndel);

/* Runs fn(arg) inside the named network namespace (/run/netns/NAME) and returns to the
 * current one. Returns fn's result, or -errno if the namespace cannot be entered. */
int netns_run(const char *name, int (*fn)(void *), void *arg);
