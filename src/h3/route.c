/* Routing rules: parsing (through a bounded cursor) and matching. */
#include "route.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <peak/cur.h>
#include <peak/util.h>

#include "../sys/net.h"

enum { ROUTE_ITEM_SHOW = 120 }; /* bytes of an offending item quoted in a message */

/* The next span of c up to (not including) one of the stop bytes or the end; consumed. A
 * NUL is a stop too, so a spec can never be read past its terminator. */
static struct cur span(struct cur *c, const char *stops)
{
	struct cur s = {c->p, 0, 0};
	while (c->left && c->p[0] && !strchr(stops, c->p[0])) {
		cur_skip(c, 1);
		s.left++;
	}
	return s;
}

/* Copies a span into out[cap] as a string; false if it does not fit. */
static bool span_str(struct cur s, char *out, size_t cap)
{
	if (s.left >= cap)
		return false;
	memcpy(out, s.p, s.left);
	out[s.left] = 0;
	return true;
}

static void quote(char out[static ROUTE_ITEM_SHOW + 4], struct cur s)
{
	size_t k = s.left > ROUTE_ITEM_SHOW ? ROUTE_ITEM_SHOW : s.left;
	for (size_t i = 0; i < k; i++)
		out[i] = s.p[i] >= 0x20 && s.p[i] < 0x7f ? (char)s.p[i] : '?';
	strcpy(out + k, s.left > k ? "..." : "");
}

/* Adds the upstream in s ("h3://" or "h2://", then "[ADDR]:PORT" or "IPv4:PORT"; no scheme:
 * t->default_h2 says) to t, or finds it there. Returns its index or -EINVAL. */
static int upstream_add(struct h3_route_table *t, struct cur s)
{
	char a[80];
	struct h3_addr addr;
	bool h2 = t->default_h2;
	if (s.left >= 5 && (!memcmp(s.p, "h3://", 5) || !memcmp(s.p, "h2://", 5))) {
		h2 = s.p[1] == '2';
		cur_skip(&s, 5);
	} /* another scheme does not parse as an address below */
	if (!span_str(s, a, sizeof(a)) || sockaddr_parse(a, &addr.ss, &addr.len))
		return -EINVAL;
	for (size_t i = 0; i < t->nup; i++)
		if (t->up[i].len == addr.len && !memcmp(&t->up[i].ss, &addr.ss, addr.len) &&
		    t->up_h2[i] == h2)
			return (int)i;
	if (t->nup == H3_ROUTE_UPS_ALL)
		return -ENOSPC;
	t->up[t->nup] = addr;
	t->up_h2[t->nup] = h2;
	sockaddr_print((struct sockaddr *)&addr.ss, t->up_name[t->nup], sizeof(t->up_name[0]));
	return (int)t->nup++;
}

static enum h3_route_rank rank_of(const char *pat)
{
	const char *slash = strchr(pat, '/');
	if (pat[0] == '*')
		return H3_ROUTE_ANY;
	return !strcmp(slash + 1, "*") ? H3_ROUTE_TYPE : H3_ROUTE_EXACT;
}

/* Parses one RULE in s into t. */
static int rule_parse(struct h3_route_table *t, struct cur s, size_t item, char *err, size_t errlen)
{
	char pat[H3_CTYPE_LEN], q[ROUTE_ITEM_SHOW + 4], uq[ROUTE_ITEM_SHOW + 4];
	struct cur whole = s;
	quote(q, whole);
	struct cur p = span(&s, "=");
	if (!s.left)
		return peak_errf(err, errlen,
		                 "rule %zu '%s': want TYPE=h3://[ADDR]:PORT[|...] (or h2://)", item,
		                 q);
	cur_skip(&s, 1); /* '=' */
	if (t->n == H3_ROUTE_MAX)
		return peak_errf(err, errlen, "rule %zu '%s': more than %d rules", item, q,
		                 H3_ROUTE_MAX);
	struct h3_route *r = &t->r[t->n];
	memset(r, 0, sizeof(*r));
	/* one pattern per rule: a ',' would have ended the rule already */
	if (!span_str(p, pat, sizeof(pat)) || h3_ctype_set_parse(&r->pat, pat))
		return peak_errf(err, errlen,
		                 "rule %zu '%s': the type is not type/subtype, type/* or */*", item,
		                 q);
	r->name = r->pat.pat[0];
	r->rank = rank_of(r->name);
	for (size_t i = 0; i < t->n; i++)
		if (!strcmp(t->r[i].name, r->name))
			return peak_errf(err, errlen, "rule %zu '%s': %s is routed twice", item, q,
			                 r->name);
	/* the bound: every upstream takes at least one byte and one separator */
	for (size_t k = 0; k <= H3_ROUTE_UPS; k++) {
		struct cur u = span(&s, "|");
		quote(uq, u);
		if (k == H3_ROUTE_UPS)
			return peak_errf(err, errlen, "rule %zu '%s': more than %d upstreams", item,
			                 q, H3_ROUTE_UPS);
		int idx = upstream_add(t, u);
		if (idx == -ENOSPC)
			return peak_errf(err, errlen,
			                 "rule %zu '%s': more than %d upstreams in all", item, q,
			                 H3_ROUTE_UPS_ALL);
		if (idx < 0)
			return peak_errf(err, errlen,
			                 "rule %zu '%s': upstream '%s' is not h3://[IPv6]:PORT, "
			                 "h3://IPv4:PORT or the same with h2://",
			                 item, q, uq);
		for (size_t i = 0; i < r->nup; i++)
			if (r->up[i] == (size_t)idx)
				return peak_errf(err, errlen, "rule %zu '%s': upstream '%s' twice",
				                 item, q, uq);
		r->up[r->nup++] = (size_t)idx;
		if (!s.left)
			break;
		cur_skip(&s, 1); /* '|' */
	}
	t->n++;
	return 0;
}

int h3_route_parse(struct h3_route_table *t, const char *spec, char *err, size_t errlen)
{
	static struct h3_route_table save; /* restored on error; one thread parses */
	size_t len = strnlen(spec, H3_ROUTE_SPEC_MAX + 1);
	struct cur c = cur_make((const uint8_t *)spec, len);
	if (len > H3_ROUTE_SPEC_MAX)
		return peak_errf(err, errlen, "longer than %d bytes", H3_ROUTE_SPEC_MAX);
	if (!len)
		return peak_errf(err, errlen, "empty");
	save = *t;
	/* the bound: every rule takes at least one byte and one separator */
	for (size_t item = 1; item <= H3_ROUTE_MAX + 1; item++) {
		struct cur r = span(&c, ",");
		if (rule_parse(t, r, item, err, errlen)) {
			*t = save;
			return -EINVAL;
		}
		if (!c.left)
			return 0;
		cur_skip(&c, 1); /* ',' */
	}
	*t = save;
	return peak_errf(err, errlen, "more than %d rules", H3_ROUTE_MAX);
}

struct h3_route *h3_route_match(struct h3_route_table *t, const char *v, size_t n)
{
	struct h3_route *best = NULL;
	for (size_t i = 0; i < t->n; i++)
		if ((!best || t->r[i].rank < best->rank) && h3_ctype_set_match(&t->r[i].pat, v, n))
			best = &t->r[i];
	return best;
}

int h3_route_pick(struct h3_route *r, const bool *healthy)
{
	for (size_t k = 0; k < r->nup; k++) {
		size_t i = (r->rr + k) % r->nup;
		if (healthy[r->up[i]]) {
			r->rr = (i + 1) % r->nup;
			return (int)r->up[i];
		}
	}
	return -1;
}
