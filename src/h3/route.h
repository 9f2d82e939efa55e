#pragma once
/* Routing rules of peak h3 ingress: which upstreams serve a request stream, chosen by its
 * content-type.
 *
 *	SPEC     = RULE *("," RULE)
 *	RULE     = PATTERN "=" UPSTREAM *("|" UPSTREAM)
 *	PATTERN  = type "/" subtype | type "/" "*" | "*" "/" "*"      (ctype.h)
 *	UPSTREAM = [SCHEME] "[" IPv6 "]" ":" PORT | [SCHEME] IPv4 ":" PORT
 *	SCHEME   = "h3://" | "h2://"      (HTTP/3 over QUIC, HTTP/2 over TLS/TCP)
 *
 * e.g. "video/mp4=h3://[2001:db8::1]:443|h3://[2001:db8::2]:443,text/plain=h2://[::1]:4433".
 * An upstream without a scheme takes the table's default (default_h2, --upstream-proto).
 * ',' separates rules and '|' the upstreams of one rule, since neither can appear in a media
 * type pattern or an address. Several specs (--route given again) add to one table; the
 * same address and scheme in several rules is one upstream. The most specific pattern that
 * matches wins: an exact type, then a type with any subtype, then the catch-all. Parameters
 * and case are ignored. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctype.h"
#include "udp.h"

enum {
	H3_ROUTE_MAX = 32,        /* rules */
	H3_ROUTE_UPS = 8,         /* upstreams of one rule */
	H3_ROUTE_UPS_ALL = 64,    /* distinct upstreams of the table */
	H3_ROUTE_SPEC_MAX = 8192, /* bytes of one spec */
};

enum h3_route_rank { H3_ROUTE_EXACT, H3_ROUTE_TYPE, H3_ROUTE_ANY };

struct h3_route {
	struct h3_ctype_set pat; /* one pattern */
	const char *name;        /* pat.pat[0]: lower case, as metrics label it */
	enum h3_route_rank rank;
	size_t up[H3_ROUTE_UPS]; /* indexes into h3_route_table.up */
	size_t nup;
	size_t rr; /* where the next round robin pick starts */
};

struct h3_route_table {
	struct h3_route r[H3_ROUTE_MAX];
	size_t n;
	struct h3_addr up[H3_ROUTE_UPS_ALL];
	char up_name[H3_ROUTE_UPS_ALL][64]; /* "[ADDR]:PORT" */
	bool up_h2[H3_ROUTE_UPS_ALL];       /* HTTP/2 over TLS/TCP, not HTTP/3 */
	size_t nup;
	bool default_h2; /* set before parsing: the scheme of upstreams written without one */
};

/* Parses spec (NUL-terminated, untrusted: read through a bounded cursor) and adds its rules
 * to t (zeroed by the caller before the first spec). Returns 0, or -EINVAL with a message
 * naming the offending item in err[errlen]; t is left as it was on error. */
int h3_route_parse(struct h3_route_table *t, const char *spec, char *err, size_t errlen);

/* The rule for the media type in v[n] (untrusted header bytes, not NUL-terminated), or NULL
 * when no rule matches (or v is not a media type). */
struct h3_route *h3_route_match(struct h3_route_table *t, const char *v, size_t n);

/* Round robin among the rule's upstreams for which healthy[index into t->up] is true:
 * returns the chosen index into t->up and moves the rule's turn past it, or -1 when none is
 * healthy. */
int h3_route_pick(struct h3_route *r, const bool *healthy);
