#include "ovconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "peak/util.h"
#include "peak/yamldoc.h"

struct ctx {
	yaml_document_t *doc;
	const char *file;
	char *err;
	size_t errlen;
	bool failed;
	struct ov_conf *c;
	const yaml_node_t *dht, *dht_key; /* the dht: section, read after the rest */
	const yaml_node_t *ac_dht;        /* the first anycast item without sites */
	const yaml_node_t *bridge;        /* the bridge: section's value */
};

static int fail(struct ctx *x, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct ctx *x, const yaml_node_t *n, const char *fmt, ...)
{
	if (x->failed)
		return -EINVAL;
	x->failed = true;
	if (x->err && x->errlen) {
		unsigned long line = n ? (unsigned long)n->start_mark.line + 1 : 1;
		int k = snprintf(x->err, x->errlen, "%s:%lu: ", x->file, line);
		if (k > 0 && (size_t)k < x->errlen) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(x->err + k, x->errlen - (size_t)k, fmt, ap);
			va_end(ap);
		}
	}
	return -EINVAL;
}

static const char *scalar(const yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int get_uint(struct ctx *x, const yaml_node_t *n, const char *key, unsigned min,
                    unsigned max, unsigned *out)
{
	const char *s = scalar(n);
	unsigned long v = 0;
	if (!s || !*s || strlen(s) > 9)
		return fail(x, n, "%s: want a number in %u..%u", key, min, max);
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return fail(x, n, "%s: '%s' is not a number", key, s);
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v < min || v > max)
		return fail(x, n, "%s: %lu is outside %u..%u", key, v, min, max);
	*out = (unsigned)v;
	return 0;
}

/* "A.B.C.D:PORT", port 1..65535 */
static int get_sockaddr4(struct ctx *x, const yaml_node_t *n, const char *key,
                         struct sockaddr_in *out)
{
	const char *s = scalar(n);
	char host[INET_ADDRSTRLEN];
	const char *colon = s ? strrchr(s, ':') : NULL;
	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return fail(x, n, "%s: want IPV4:PORT", key);
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
		return fail(x, n, "%s: '%s' is not an IPv4 address", key, host);
	unsigned long port = 0;
	const char *p = colon + 1;
	if (!*p || strlen(p) > 5)
		return fail(x, n, "%s: bad port", key);
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return fail(x, n, "%s: bad port", key);
		port = port * 10 + (unsigned long)(*p - '0');
	}
	if (!port || port > 65535)
		return fail(x, n, "%s: port %lu is outside 1..65535", key, port);
	out->sin_port = htons((uint16_t)port);
	return 0;
}

static int get_hex(struct ctx *x, const yaml_node_t *n, const char *key, uint8_t *out, size_t len)
{
	const char *s = scalar(n);
	char bad;
	if (!s || strlen(s) != 2 * len || peak_hex_decode(s, NULL, out, len, &bad) != (long)len)
		return fail(x, n, "%s: want %zu hex digits", key, 2 * len);
	return 0;
}

/* True if p is one of the n prefixes of v. */
static bool prefix_listed(const struct prefix *v, size_t n, const struct prefix *p)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].len == p->len && !memcmp(v[i].addr, p->addr, 16))
			return true;
	return false;
}

static int get_prefixes(struct ctx *x, const yaml_node_t *n, struct ov_peer_conf *p)
{
	if (!n || n->type != YAML_SEQUENCE_NODE)
		return fail(x, n, "prefixes: want a list of IPv6 prefixes");
	size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	if (cnt > OVC_MAX_PREFIXES)
		return fail(x, n, "prefixes: more than %d", OVC_MAX_PREFIXES);
	if (!cnt)
		return 0;
	if (!(p->prefixes = calloc(cnt, sizeof(*p->prefixes))))
		return -ENOMEM;
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++) {
		yaml_node_t *e = yaml_document_get_node(x->doc, *it);
		const char *s = scalar(e);
		struct prefix *pf = &p->prefixes[p->nprefixes];
		if (!s || prefix_parse(s, false, pf) || pf->family != PEAK_AFI_IP6)
			return fail(x, e,
			            "prefixes: '%s' is not an IPv6 prefix (bits past the "
			            "length must be zero)",
			            s ? s : "?");
		p->nprefixes++;
	}
	return 0;
}

/* A list of at most max scalars, each through one(x, node, i). */
static int get_list(struct ctx *x, const yaml_node_t *n, const char *key, size_t max, size_t *cnt,
                    int (*one)(struct ctx *, const yaml_node_t *, size_t, void *), void *arg)
{
	if (!n || n->type != YAML_SEQUENCE_NODE)
		return fail(x, n, "%s: want a list", key);
	size_t k = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	if (!k || k > max)
		return fail(x, n, "%s: want 1..%zu items", key, max);
	*cnt = 0;
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++) {
		int r = one(x, yaml_document_get_node(x->doc, *it), *cnt, arg);
		if (r)
			return r;
		(*cnt)++;
	}
	return 0;
}

/* How a key of a section is read: a row of the section's table (get_keys). */
enum key_type {
	K_UINT,  /* get_uint: the unsigned at off, in min..max */
	K_ADDR4, /* get_sockaddr4: the struct sockaddr_in at off */
	K_HEX,   /* get_hex: max bytes at off */
	K_LIST,  /* get_list: 1..max items through one(.., object), their count (size_t) at off */
	K_FN,    /* fn(x, key node, value node, object) */
};

struct key {
	const char *name;
	enum key_type type;
	size_t off; /* in the section's object */
	unsigned min, max;
	int (*one)(struct ctx *x, const yaml_node_t *n, size_t i, void *obj);
	int (*fn)(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj);
	const char *need; /* a required key: the error (at the section) when it is missing */
	bool once;        /* "KEY: given twice" (at the second key) rather than the last kept */
};

enum { KEYS_MAX = 16 }; /* rows in a table at most (dht_keys, the longest, has 10) */

static int get_value(struct ctx *x, const struct key *row, const yaml_node_t *kn,
                     const yaml_node_t *vn, void *obj)
{
	void *field = (char *)obj + row->off;
	switch (row->type) {
	case K_UINT:
		return get_uint(x, vn, row->name, row->min, row->max, field);
	case K_ADDR4:
		return get_sockaddr4(x, vn, row->name, field);
	case K_HEX:
		return get_hex(x, vn, row->name, field, row->max);
	case K_LIST:
		return get_list(x, vn, row->name, row->max, field, row->one, obj);
	case K_FN:
		return row->fn(x, kn, vn, obj);
	}
	return fail(x, kn, "%s: no reader", row->name);
}

/* Reads the mapping n (the caller checked it is one) through the table keys (ended by a
 * row with no name) into obj, in the order the keys are written; then a required key
 * missing is an error at at. sect names the section in errors about its keys (NULL: the
 * top level). Returns 0, -EINVAL (reason in x) or -ENOMEM. */
static int get_keys(struct ctx *x, const yaml_node_t *n, const yaml_node_t *at, const char *sect,
                    const struct key *keys, void *obj)
{
	bool seen[KEYS_MAX] = {false};
	const char *pre = sect ? sect : "", *sep = sect ? ": " : "";
	for (yaml_node_pair_t *kv = n->data.mapping.pairs.start; kv < n->data.mapping.pairs.top;
	     kv++) {
		yaml_node_t *kn = yaml_document_get_node(x->doc, kv->key);
		yaml_node_t *vn = yaml_document_get_node(x->doc, kv->value);
		const char *k = scalar(kn);
		size_t i = 0;
		if (!k)
			return fail(x, kn, "%s%skeys are strings", pre, sep);
		while (keys[i].name && strcmp(keys[i].name, k))
			i++;
		if (!keys[i].name)
			return fail(x, kn, "%s%sunknown key '%s'", pre, sep, k);
		if (keys[i].once && seen[i])
			return fail(x, kn, "%s: given twice", k);
		seen[i] = true;
		int r = get_value(x, &keys[i], kn, vn, obj);
		if (r)
			return r;
	}
	for (size_t i = 0; keys[i].name; i++)
		if (keys[i].need && !seen[i])
			return fail(x, at, "%s", keys[i].need);
	return 0;
}

#define OFF(type, field) offsetof(struct type, field)

/* ---- gateway: and its peers ---- */

static int peer_name(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_peer_conf *p = obj;
	const char *s = scalar(vn);
	(void)kn;
	if (!s || !*s || strlen(s) > OVC_NAME_MAX)
		return fail(x, vn, "name: want 1..%d characters", OVC_NAME_MAX);
	for (const char *q = s; *q; q++)
		if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
		      (*q >= '0' && *q <= '9') || *q == '-' || *q == '_' || *q == '.'))
			return fail(x, vn, "name: letters, digits, '-', '_', '.'");
	strcpy(p->name, s);
	return 0;
}

static int peer_endpoint(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_peer_conf *p = obj;
	(void)kn;
	p->has_endpoint = true;
	return get_sockaddr4(x, vn, "endpoint", &p->endpoint);
}

/* an empty list leaves no prefixes: given again, it is not "given twice" */
static int peer_prefixes(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_peer_conf *p = obj;
	return p->prefixes ? fail(x, kn, "prefixes: given twice") : get_prefixes(x, vn, p);
}

/* "true" or "false" into the bool at obj + off */
static int get_bool(struct ctx *x, const yaml_node_t *vn, const char *what, bool *out)
{
	const char *s = scalar(vn);
	if (s && !strcmp(s, "true"))
		*out = true;
	else if (s && !strcmp(s, "false"))
		*out = false;
	else
		return fail(x, vn, "%s: want true or false", what);
	return 0;
}

static int peer_trusted(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_peer_conf *p = obj;
	(void)kn;
	return get_bool(x, vn, "trusted", &p->trusted);
}

static const char peer_need[] = "peers: each peer needs 'name' and 'public-key'";
static const struct key peer_keys[] = {
    {"name", K_FN, .fn = peer_name, .need = peer_need},
    {"public-key", K_HEX, OFF(ov_peer_conf, pub), .max = 32, .need = peer_need},
    {"endpoint", K_FN, .fn = peer_endpoint},
    {"prefixes", K_FN, .fn = peer_prefixes},
    {"trusted", K_FN, .fn = peer_trusted},
    {NULL},
};

static int parse_peer(struct ctx *x, const yaml_node_t *n, struct ov_conf *c)
{
	if (!n || n->type != YAML_MAPPING_NODE)
		return fail(x, n, "peers: each peer is a mapping");
	struct ov_peer_conf *p = &c->peers[c->npeers++];
	int r = get_keys(x, n, n, "peers", peer_keys, p);
	if (r)
		return r;
	for (size_t i = 0; i + 1 < c->npeers; i++) {
		if (!strcmp(c->peers[i].name, p->name))
			return fail(x, n, "peers: name '%s' given twice", p->name);
		if (!memcmp(c->peers[i].pub, p->pub, 8))
			return fail(x, n,
			            "peers: '%s' and '%s' share their key's first 8 bytes "
			            "(the sender id)",
			            c->peers[i].name, p->name);
	}
	return 0;
}

static int gw_key_file(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_conf *c = obj;
	const char *s = scalar(vn);
	(void)kn;
	if (!s || !*s || strlen(s) > OVC_PATH_MAX)
		return fail(x, vn, "private-key-file: want a path");
	strcpy(c->key_file, s);
	return 0;
}

/* an empty list allocates nothing: given again, it is not "given twice" */
static int gw_peers(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_conf *c = obj;
	if (!vn || vn->type != YAML_SEQUENCE_NODE)
		return fail(x, vn, "peers: want a list");
	if (c->peers)
		return fail(x, kn, "peers: given twice");
	size_t cnt = (size_t)(vn->data.sequence.items.top - vn->data.sequence.items.start);
	if (cnt > OVC_MAX_PEERS)
		return fail(x, vn, "peers: more than %d", OVC_MAX_PEERS);
	if (cnt && !(c->peers = calloc(cnt, sizeof(*c->peers))))
		return -ENOMEM;
	int r = 0;
	for (yaml_node_item_t *it = vn->data.sequence.items.start;
	     !r && it < vn->data.sequence.items.top; it++)
		r = parse_peer(x, yaml_document_get_node(x->doc, *it), c);
	return r;
}

static int gw_fast_path(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_conf *c = obj;
	const char *s = scalar(vn);
	(void)kn;
	if (s && !strcmp(s, "auto"))
		c->fast_path = true;
	else if (s && !strcmp(s, "off"))
		c->fast_path = false;
	else
		return fail(x, vn, "fast-path: want 'auto' or 'off'");
	return 0;
}

static const char gw_need[] = "gateway: 'listen' and 'private-key-file' are required";
static const struct key gw_keys[] = {
    {"listen", K_ADDR4, OFF(ov_conf, listen), .need = gw_need},
    {"private-key-file", K_FN, .fn = gw_key_file, .need = gw_need},
    {"keepalive", K_UINT, OFF(ov_conf, keepalive_s), 1, 600},
    {"peers", K_FN, .fn = gw_peers},
    {"fast-path", K_FN, .fn = gw_fast_path},
    {NULL},
};

/* ---- dht: ---- */

static int one_bootstrap(struct ctx *x, const yaml_node_t *n, size_t i, void *arg)
{
	struct ov_dht_conf *d = arg;
	return get_sockaddr4(x, n, "bootstrap", &d->bootstrap[i]);
}

static int one_dht_prefix(struct ctx *x, const yaml_node_t *n, size_t i, void *arg)
{
	struct ov_dht_conf *d = arg;
	const char *s = scalar(n);
	struct prefix *p = &d->prefixes[i];
	if (!s || prefix_parse(s, false, p) || p->family != PEAK_AFI_IP6 || !p->len)
		return fail(x, n,
		            "prefixes: '%s' is not an IPv6 prefix of length 1..128 (bits past the "
		            "length must be zero)",
		            s ? s : "?");
	return 0;
}

static int one_dht_anycast(struct ctx *x, const yaml_node_t *n, size_t i, void *arg)
{
	struct ov_dht_conf *d = arg;
	const char *s = scalar(n);
	struct prefix *p = &d->anycast[i];
	if (!s || prefix_parse(s, false, p) || p->family != PEAK_AFI_IP6 || !p->len)
		return fail(x, n, "anycast: '%s' is not an IPv6 prefix of length 1..128",
		            s ? s : "?");
	return 0;
}

static int dht_locator(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_dht_conf *d = obj;
	(void)kn;
	int r = get_sockaddr4(x, vn, "locator", &d->locator);
	if (!r && !d->locator.sin_addr.s_addr)
		r = fail(x, vn, "locator: 0.0.0.0 cannot be reached");
	return r;
}

static int dht_lookup(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_dht_conf *d = obj;
	const char *s = scalar(vn);
	(void)kn;
	if (s && !strcmp(s, "bsearch"))
		d->lookup = 0;
	else if (s && !strcmp(s, "walk"))
		d->lookup = 1;
	else if (s && !strcmp(s, "lengths"))
		d->lookup = 2;
	else
		return fail(x, vn, "lookup: want 'bsearch', 'walk' or 'lengths'");
	return 0;
}

static bool has_length(const struct ov_dht_conf *d, unsigned len)
{
	return d->lengths[len / 64] >> (len % 64) & 1;
}

static int one_dht_length(struct ctx *x, const yaml_node_t *n, size_t i, void *arg)
{
	struct ov_dht_conf *d = arg;
	unsigned len;
	if (!i) /* a list given again replaces the one before */
		memset(d->lengths, 0, sizeof(d->lengths));
	int r = get_uint(x, n, "lengths", 0, 128, &len);
	if (r)
		return r;
	if (has_length(d, len))
		return fail(x, n, "lengths: %u is listed twice", len);
	d->lengths[len / 64] |= 1ULL << (len % 64);
	return 0;
}

static const char dht_need[] = "dht: 'port', 'authority', 'certificate' and 'prefixes' are "
                               "required";
static const struct key dht_keys[] = {
    {"port", K_UINT, OFF(ov_dht_conf, port), 1, 65535, .need = dht_need},
    {"network", K_UINT, OFF(ov_dht_conf, network), 0, 999999999},
    {"bootstrap", K_LIST, OFF(ov_dht_conf, nbootstrap), .max = OVC_MAX_BOOTSTRAP,
     .one = one_bootstrap},
    {"authority", K_HEX, OFF(ov_dht_conf, authority), .max = 32, .need = dht_need},
    {"certificate", K_HEX, OFF(ov_dht_conf, certificate), .max = 64, .need = dht_need},
    {"prefixes", K_LIST, OFF(ov_dht_conf, nprefixes), .max = OVC_DHT_PREFIXES,
     .one = one_dht_prefix, .need = dht_need},
    {"locator", K_FN, .fn = dht_locator},
    {"lookup", K_FN, .fn = dht_lookup},
    {"lengths", K_LIST, OFF(ov_dht_conf, nlengths), .max = 129, .one = one_dht_length},
    {"cache-ttl", K_UINT, OFF(ov_dht_conf, cache_ttl_s), 5, 86400},
    {"negative-ttl", K_UINT, OFF(ov_dht_conf, negative_ttl_s), 1, 3600},
    {"anycast", K_LIST, OFF(ov_dht_conf, nanycast), .max = OVC_MAX_ANYCAST, .one = one_dht_anycast},
    {NULL},
};

/* n: the dht: mapping; at: its key (where errors about the section as a whole point).
 * Read after the rest: the locator defaults to the gateway's listen address. */
static int parse_dht(struct ctx *x, const yaml_node_t *n, const yaml_node_t *at, struct ov_conf *c)
{
	struct ov_dht_conf *d = &c->dht;
	if (!n || n->type != YAML_MAPPING_NODE)
		return fail(x, n, "dht: want a mapping");
	d->enabled = true;
	int r = get_keys(x, n, at, "dht", dht_keys, d);
	if (r)
		return r;
	if (!d->locator.sin_family) { /* not given: get_sockaddr4 sets the family */
		if (!c->listen.sin_addr.s_addr)
			return fail(x, at,
			            "dht: 'locator' is required when gateway.listen is "
			            "0.0.0.0 (the address other sites reach this gateway at)");
		d->locator = c->listen;
	}
	if ((d->lookup == 2) != (d->nlengths > 0))
		return fail(x, at,
		            d->nlengths ? "dht: 'lengths' is for 'lookup: lengths'"
		                        : "dht: 'lookup: lengths' needs 'lengths' (the prefix "
		                          "lengths this overlay's sites publish)");
	for (size_t i = 0; d->nlengths && i < d->nprefixes; i++)
		if (!has_length(d, d->prefixes[i].len)) {
			char ps[PREFIX_STRLEN];
			return fail(x, at,
			            "dht: prefix %s: its length is not in 'lengths' (other sites "
			            "would not look for it)",
			            prefix_print(&d->prefixes[i], ps));
		}
	/* a served anycast prefix must be certified: among the site's prefixes */
	for (size_t i = 0; i < d->nanycast; i++)
		if (!prefix_listed(d->prefixes, d->nprefixes, &d->anycast[i])) {
			char p[PREFIX_STRLEN];
			prefix_print(&d->anycast[i], p);
			return fail(x, at,
			            "dht: anycast %s is not among dht.prefixes (certify it for "
			            "this site)",
			            p);
		}
	return 0;
}

/* ---- resiliency: ---- */

static int resil_degraded(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_resil_conf *r = obj;
	(void)kn;
	int ret = get_uint(x, vn, "degraded-pct", 0, 100, &r->degraded_pct);
	if (!ret && r->degraded_pct && r->degraded_pct < 5)
		ret = fail(x, vn, "degraded-pct: want 0 (off) or 5..100");
	return ret;
}

static const struct key resil_keys[] = {
    {"dead-ms", K_UINT, OFF(ov_resil_conf, dead_ms), 300, 10000},
    {"budget", K_UINT, OFF(ov_resil_conf, budget_bps), 400, 100000},
    {"degraded-pct", K_FN, .fn = resil_degraded},
    {"late-ms", K_UINT, OFF(ov_resil_conf, late_ms), 10, 10000},
    {NULL},
};

/* ---- multicast: ---- */

static int mc_interface(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_mcast_conf *m = obj;
	const char *s = scalar(vn);
	(void)kn;
	if (!s || !*s || strlen(s) >= sizeof(m->interface) || strchr(s, '/'))
		return fail(x, vn,
		            "multicast: interface: want an interface name of 1..15 characters");
	strcpy(m->interface, s);
	return 0;
}

static const struct key mcast_keys[] = {
    {"interface", K_FN, .fn = mc_interface, .need = "multicast: 'interface' is required"},
    {"query-interval", K_UINT, OFF(ov_mcast_conf, query_s), 2, 31744},
    {"response-ms", K_UINT, OFF(ov_mcast_conf, response_ms), 100, 32767},
    {"robustness", K_UINT, OFF(ov_mcast_conf, robustness), 1, 7},
    {"announce", K_UINT, OFF(ov_mcast_conf, announce_s), 1, 300},
    {"tree-above", K_UINT, OFF(ov_mcast_conf, tree_above), 0, 100000},
    {"tree-fanout", K_UINT, OFF(ov_mcast_conf, tree_fanout), 2, 64},
    {NULL},
};

/* ---- anycast: ---- */

static int one_site(struct ctx *x, const yaml_node_t *n, size_t i, void *arg)
{
	struct ov_anycast_conf *a = arg;
	const char *s = scalar(n);
	if (!s || !*s || strlen(s) > OVC_NAME_MAX)
		return fail(x, n, "sites: want peer names");
	for (size_t k = 0; k < i; k++)
		if (!strcmp(a->sites[k], s))
			return fail(x, n, "sites: '%s' given twice", s);
	strcpy(a->sites[i], s);
	return 0;
}

/* refused as soon as read: before the keys after it */
static int anycast_prefix(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_anycast_conf *a = obj;
	const char *v = scalar(vn);
	size_t i = (size_t)(a - x->c->anycast);
	(void)kn;
	if (!v || prefix_parse(v, false, &a->prefix) || a->prefix.family != PEAK_AFI_IP6 ||
	    !a->prefix.len)
		return fail(x, vn, "prefix: '%s' is not an IPv6 prefix of length 1..128",
		            v ? v : "?");
	for (size_t k = 0; k < i; k++)
		if (x->c->anycast[k].prefix.len == a->prefix.len &&
		    !memcmp(x->c->anycast[k].prefix.addr, a->prefix.addr, 16))
			return fail(x, vn, "prefix: '%s' given twice", v);
	return 0;
}

static int anycast_sites(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_anycast_conf *a = obj;
	(void)kn;
	int r = get_list(x, vn, "sites", OVC_ANYCAST_SITES, &a->nsites, one_site, a);
	if (!r && a->nsites < 2)
		r = fail(x, vn, "sites: want 2..%d peers", OVC_ANYCAST_SITES);
	return r;
}

static const struct key anycast_keys[] = {
    {"prefix", K_FN, .fn = anycast_prefix, .need = "anycast: 'prefix' is required"},
    {"sites", K_FN, .fn = anycast_sites},
    {NULL},
};

static int one_anycast(struct ctx *x, const yaml_node_t *n, size_t i, void *arg)
{
	struct ov_conf *c = arg;
	if (!n || n->type != YAML_MAPPING_NODE)
		return fail(x, n, "anycast: each item is a mapping of 'prefix' and 'sites'");
	int r = get_keys(x, n, n, "anycast", anycast_keys, &c->anycast[i]);
	if (!r && !c->anycast[i].nsites && !x->ac_dht)
		x->ac_dht = n;
	return r;
}

/* ---- bridge: ---- */

static int br_interface(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_bridge_conf *b = obj;
	const char *s = scalar(vn);
	(void)kn;
	if (!s || !*s || strlen(s) >= sizeof(b->interface) || strchr(s, '/'))
		return fail(x, vn, "bridge: interface: want an interface name of 1..15 characters");
	strcpy(b->interface, s);
	return 0;
}

/* prefixes of length 1..128, none twice */
static int br_prefix(struct ctx *x, const yaml_node_t *n, const char *key, struct prefix *v,
                     size_t i)
{
	const char *s = scalar(n);
	if (!s || prefix_parse(s, false, &v[i]) || v[i].family != PEAK_AFI_IP6 || !v[i].len)
		return fail(x, n,
		            "bridge: %s: '%s' is not an IPv6 prefix of length 1..128 (bits past "
		            "the length must be zero)",
		            key, s ? s : "?");
	if (prefix_listed(v, i, &v[i]))
		return fail(x, n, "bridge: %s: '%s' given twice", key, s);
	return 0;
}

static int one_br_native(struct ctx *x, const yaml_node_t *n, size_t i, void *arg)
{
	return br_prefix(x, n, "prefixes", ((struct ov_bridge_conf *)arg)->native, i);
}

static int one_br_overlay(struct ctx *x, const yaml_node_t *n, size_t i, void *arg)
{
	return br_prefix(x, n, "overlay", ((struct ov_bridge_conf *)arg)->overlay, i);
}

static int br_via(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_bridge_conf *b = obj;
	const char *s = scalar(vn);
	uint8_t fam;
	(void)kn;
	if (!s || addr_parse(s, &fam, b->via) || fam != PEAK_AFI_IP6)
		return fail(x, vn, "bridge: via: want an IPv6 address");
	b->has_via = true;
	return 0;
}

static int br_table(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_bridge_conf *b = obj;
	(void)kn;
	int r = get_uint(x, vn, "table", 1, 0xffffffffu, &b->table);
	if (!r && b->table >= 253 && b->table <= 255)
		r = fail(x, vn, "bridge: table: 253..255 are the kernel's default, main and local");
	return r;
}

static const char br_need[] = "bridge: 'interface', 'prefixes' and 'overlay' are required";
static const struct key bridge_keys[] = {
    {"interface", K_FN, .fn = br_interface, .need = br_need},
    {"prefixes", K_LIST, OFF(ov_bridge_conf, nnative), .max = OVC_BRIDGE_PREFIXES,
     .one = one_br_native, .need = br_need},
    {"via", K_FN, .fn = br_via},
    {"overlay", K_LIST, OFF(ov_bridge_conf, noverlay), .max = OVC_BRIDGE_PREFIXES,
     .one = one_br_overlay, .need = br_need},
    {"table", K_FN, .fn = br_table},
    {NULL},
};

static int top_bridge(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_conf *c = obj;
	(void)kn;
	if (!vn || vn->type != YAML_MAPPING_NODE)
		return fail(x, vn, "bridge: want a mapping");
	c->bridge.enabled = true;
	x->bridge = vn;
	return get_keys(x, vn, vn, "bridge", bridge_keys, &c->bridge);
}

/* ---- the top level ---- */

static int top_tun(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_conf *c = obj;
	const char *s = scalar(vn);
	(void)kn;
	if (!s || !*s || strlen(s) >= sizeof(c->tun) || strchr(s, '/'))
		return fail(x, vn, "tun: want an interface name of 1..15 characters");
	strcpy(c->tun, s);
	return 0;
}

static int top_address(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_conf *c = obj;
	const char *s = scalar(vn);
	uint8_t fam;
	(void)kn;
	if (!s || addr_parse(s, &fam, c->address) || fam != PEAK_AFI_IP6)
		return fail(x, vn, "address: want an IPv6 address");
	return 0;
}

static int top_gateway(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	(void)kn;
	if (!vn || vn->type != YAML_MAPPING_NODE)
		return fail(x, vn, "gateway: want a mapping");
	return get_keys(x, vn, vn, "gateway", gw_keys, obj);
}

static int top_resil(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_conf *c = obj;
	(void)kn;
	if (!vn || vn->type != YAML_MAPPING_NODE)
		return fail(x, vn, "resiliency: want a mapping ({} for the defaults)");
	c->resil.enabled = true;
	return get_keys(x, vn, vn, "resiliency", resil_keys, &c->resil);
}

static int top_mcast(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	struct ov_conf *c = obj;
	(void)kn;
	if (vn->type != YAML_MAPPING_NODE)
		return fail(x, vn, "multicast: want a mapping");
	c->mcast.enabled = true;
	int r = get_keys(x, vn, vn, "multicast", mcast_keys, &c->mcast);
	if (!r && c->mcast.response_ms >= 1000ULL * c->mcast.query_s)
		r = fail(x, vn, "multicast: response-ms must be shorter than query-interval");
	return r;
}

static int top_dht(struct ctx *x, const yaml_node_t *kn, const yaml_node_t *vn, void *obj)
{
	(void)obj;
	x->dht = vn;
	x->dht_key = kn;
	return 0;
}

static const struct key top_keys[] = {
    {"tun", K_FN, .fn = top_tun},
    {"mtu", K_UINT, OFF(ov_conf, mtu), 1280, 1500},
    {"icmp-rate", K_UINT, OFF(ov_conf, icmp_rate), 1, 10000},
    {"busy-poll", K_UINT, OFF(ov_conf, busy_poll_us), 0, 1000},
    {"address", K_FN, .fn = top_address, .need = "'address' is required"},
    {"gateway", K_FN, .fn = top_gateway, .need = "'gateway' is required", .once = true},
    {"resiliency", K_FN, .fn = top_resil, .once = true},
    {"anycast", K_LIST, OFF(ov_conf, nanycast), .max = OVC_MAX_ANYCAST, .one = one_anycast,
     .once = true},
    {"dht", K_FN, .fn = top_dht, .once = true},
    {"multicast", K_FN, .fn = top_mcast, .once = true},
    {"bridge", K_FN, .fn = top_bridge, .once = true},
    {NULL},
};

static int parse_top(struct ctx *x, const yaml_node_t *n, struct ov_conf *c)
{
	int r = get_keys(x, n, n, NULL, top_keys, c);
	if (r)
		return r;
	if (c->nanycast && !c->resil.enabled)
		return fail(x, n,
		            "anycast: needs 'resiliency' (its probes measure the sites' RTT)");
	if (x->ac_dht && !x->dht)
		return fail(x, x->ac_dht,
		            "anycast: 'sites' is required without 'dht' (the members are looked "
		            "up there)");
	if (x->dht && (r = parse_dht(x, x->dht, x->dht_key, c)))
		return r;
	/* with the DHT, a native prefix is published like the site's own: it must be certified */
	for (size_t i = 0; x->bridge && c->dht.enabled && i < c->bridge.nnative; i++)
		if (!prefix_listed(c->dht.prefixes, c->dht.nprefixes, &c->bridge.native[i])) {
			char p[PREFIX_STRLEN];
			prefix_print(&c->bridge.native[i], p);
			return fail(
			    x, x->bridge,
			    "bridge: prefix %s is not among dht.prefixes (certify it for this "
			    "site: it is published like them)",
			    p);
		}
	return 0;
}

int ov_conf_parse(const char *name, const uint8_t *buf, size_t len, struct ov_conf *c, char *err,
                  size_t errlen)
{
	yaml_document_t doc;
	yaml_node_t *root;
	struct ctx x = {&doc, name, err, errlen, false, c, NULL, NULL};
	int ret;

	memset(c, 0, sizeof(*c));
	strcpy(c->tun, "ov0");
	c->mtu = 1400;
	c->icmp_rate = 10;
	c->keepalive_s = 5;
	c->fast_path = true;
	c->dht.cache_ttl_s = 300;
	c->dht.negative_ttl_s = 30;
	c->resil.dead_ms = 600;
	c->resil.budget_bps = 1000;
	c->resil.degraded_pct = 25;
	c->resil.late_ms = 250;
	c->mcast.query_s = 125;
	c->mcast.response_ms = 10000;
	c->mcast.robustness = 2;
	c->mcast.announce_s = 10;
	c->mcast.tree_above = 16;
	c->mcast.tree_fanout = 4;
	if (err && errlen)
		err[0] = '\0';
	if (len > OVC_TEXT_MAX) {
		snprintf(err, errlen, "%s: larger than %d bytes", name, OVC_TEXT_MAX);
		return -EINVAL;
	}
	if ((ret = yaml_doc_load(name, buf, len, &doc, &root, err, errlen)))
		return ret;
	if (root->type != YAML_MAPPING_NODE) {
		fail(&x, root, "the top level must be a mapping");
		ret = -EINVAL;
	} else {
		ret = parse_top(&x, root, c);
	}
	if (ret == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", name);
	yaml_document_delete(&doc);
	return ret;
}

void ov_conf_fini(struct ov_conf *c)
{
	for (size_t i = 0; i < c->npeers; i++) {
		free(c->peers[i].prefixes);
		c->peers[i].prefixes = NULL;
	}
	free(c->peers);
	c->peers = NULL;
	c->npeers = 0;
	memset(c->priv, 0, sizeof(c->priv));
}

int ov_key_read(const char *path, uint8_t key[static 32])
{
	char buf[256], bad;
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	long k = peak_hex_decode(buf, NULL, key, 32, &bad);
	memset(buf, 0, sizeof(buf));
	return k == 32 ? 0 : -EINVAL;
}

int ov_conf_load(const char *path, struct ov_conf *c, char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	size_t n = 0;
	int ret;
	FILE *f = fopen(path, "re");
	memset(c, 0, sizeof(*c));
	if (!f) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		return ret;
	}
	if (!(buf = malloc(OVC_TEXT_MAX + 1))) {
		ret = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	n = fread(buf, 1, OVC_TEXT_MAX + 1, f);
	if (ferror(f)) {
		ret = -EIO;
		snprintf(err, errlen, "%s: read error", path);
		goto out;
	}
	if ((ret = ov_conf_parse(path, buf, n, c, err, errlen)))
		goto out;
	if ((ret = ov_key_read(c->key_file, c->priv))) {
		snprintf(err, errlen, "%s: private-key-file %s: %s", path, c->key_file,
		         ret == -EINVAL ? "want 64 hex digits" : strerror(-ret));
		goto out;
	}
out:
	free(buf);
	fclose(f);
	return ret;
}
