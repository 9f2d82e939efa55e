#include "ovconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
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

static int get_key32(struct ctx *x, const yaml_node_t *n, const char *key, uint8_t out[32])
{
	const char *s = scalar(n);
	char bad;
	if (!s || strlen(s) != 64 || peak_hex_decode(s, NULL, out, 32, &bad) != 32)
		return fail(x, n, "%s: want 64 hex digits", key);
	return 0;
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

static int parse_peer(struct ctx *x, const yaml_node_t *n, struct ov_conf *c)
{
	if (!n || n->type != YAML_MAPPING_NODE)
		return fail(x, n, "peers: each peer is a mapping");
	struct ov_peer_conf *p = &c->peers[c->npeers++];
	bool has_name = false, has_key = false;
	for (yaml_node_pair_t *kv = n->data.mapping.pairs.start; kv < n->data.mapping.pairs.top;
	     kv++) {
		yaml_node_t *kn = yaml_document_get_node(x->doc, kv->key);
		yaml_node_t *vn = yaml_document_get_node(x->doc, kv->value);
		const char *k = scalar(kn);
		int r;
		if (!k) {
			r = fail(x, kn, "peers: keys are strings");
		} else if (!strcmp(k, "name")) {
			const char *s = scalar(vn);
			if (!s || !*s || strlen(s) > OVC_NAME_MAX)
				return fail(x, vn, "name: want 1..%d characters", OVC_NAME_MAX);
			for (const char *q = s; *q; q++)
				if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
				      (*q >= '0' && *q <= '9') || *q == '-' || *q == '_' ||
				      *q == '.'))
					return fail(x, vn, "name: letters, digits, '-', '_', '.'");
			strcpy(p->name, s);
			has_name = true;
			r = 0;
		} else if (!strcmp(k, "public-key")) {
			r = get_key32(x, vn, k, p->pub);
			has_key = true;
		} else if (!strcmp(k, "endpoint")) {
			r = get_sockaddr4(x, vn, k, &p->endpoint);
			p->has_endpoint = true;
		} else if (!strcmp(k, "prefixes")) {
			r = p->prefixes ? fail(x, kn, "prefixes: given twice")
			                : get_prefixes(x, vn, p);
		} else {
			r = fail(x, kn, "peers: unknown key '%s'", k);
		}
		if (r)
			return r;
	}
	if (!has_name || !has_key)
		return fail(x, n, "peers: each peer needs 'name' and 'public-key'");
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

static int parse_gateway(struct ctx *x, const yaml_node_t *n, struct ov_conf *c)
{
	if (!n || n->type != YAML_MAPPING_NODE)
		return fail(x, n, "gateway: want a mapping");
	bool has_listen = false, has_key = false;
	for (yaml_node_pair_t *kv = n->data.mapping.pairs.start; kv < n->data.mapping.pairs.top;
	     kv++) {
		yaml_node_t *kn = yaml_document_get_node(x->doc, kv->key);
		yaml_node_t *vn = yaml_document_get_node(x->doc, kv->value);
		const char *k = scalar(kn);
		int r;
		if (!k) {
			r = fail(x, kn, "gateway: keys are strings");
		} else if (!strcmp(k, "listen")) {
			r = get_sockaddr4(x, vn, k, &c->listen);
			has_listen = true;
		} else if (!strcmp(k, "private-key-file")) {
			const char *s = scalar(vn);
			if (!s || !*s || strlen(s) > OVC_PATH_MAX)
				return fail(x, vn, "private-key-file: want a path");
			strcpy(c->key_file, s);
			has_key = true;
			r = 0;
		} else if (!strcmp(k, "keepalive")) {
			r = get_uint(x, vn, k, 1, 600, &c->keepalive_s);
		} else if (!strcmp(k, "peers")) {
			if (!vn || vn->type != YAML_SEQUENCE_NODE)
				return fail(x, vn, "peers: want a list");
			if (c->peers)
				return fail(x, kn, "peers: given twice");
			size_t cnt =
			    (size_t)(vn->data.sequence.items.top - vn->data.sequence.items.start);
			if (cnt > OVC_MAX_PEERS)
				return fail(x, vn, "peers: more than %d", OVC_MAX_PEERS);
			if (cnt && !(c->peers = calloc(cnt, sizeof(*c->peers))))
				return -ENOMEM;
			r = 0;
			for (yaml_node_item_t *it = vn->data.sequence.items.start;
			     !r && it < vn->data.sequence.items.top; it++)
				r = parse_peer(x, yaml_document_get_node(x->doc, *it), c);
		} else {
			r = fail(x, kn, "gateway: unknown key '%s'", k);
		}
		if (r)
			return r;
	}
	if (!has_listen || !has_key)
		return fail(x, n, "gateway: 'listen' and 'private-key-file' are required");
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

static int get_hex(struct ctx *x, const yaml_node_t *n, const char *key, uint8_t *out, size_t len)
{
	const char *s = scalar(n);
	char bad;
	if (!s || strlen(s) != 2 * len || peak_hex_decode(s, NULL, out, len, &bad) != (long)len)
		return fail(x, n, "%s: want %zu hex digits", key, 2 * len);
	return 0;
}

/* n: the dht: mapping; at: its key (where errors about the section as a whole point) */
static int parse_dht(struct ctx *x, const yaml_node_t *n, const yaml_node_t *at, struct ov_conf *c)
{
	struct ov_dht_conf *d = &c->dht;
	bool has_port = false, has_auth = false, has_cert = false, has_loc = false;
	if (!n || n->type != YAML_MAPPING_NODE)
		return fail(x, n, "dht: want a mapping");
	d->enabled = true;
	for (yaml_node_pair_t *kv = n->data.mapping.pairs.start; kv < n->data.mapping.pairs.top;
	     kv++) {
		yaml_node_t *kn = yaml_document_get_node(x->doc, kv->key);
		yaml_node_t *vn = yaml_document_get_node(x->doc, kv->value);
		const char *k = scalar(kn);
		int r;
		if (!k) {
			r = fail(x, kn, "dht: keys are strings");
		} else if (!strcmp(k, "port")) {
			r = get_uint(x, vn, k, 1, 65535, &d->port);
			has_port = true;
		} else if (!strcmp(k, "network")) {
			r = get_uint(x, vn, k, 0, 999999999, &d->network);
		} else if (!strcmp(k, "bootstrap")) {
			r = get_list(x, vn, k, OVC_MAX_BOOTSTRAP, &d->nbootstrap, one_bootstrap, d);
		} else if (!strcmp(k, "authority")) {
			r = get_hex(x, vn, k, d->authority, 32);
			has_auth = true;
		} else if (!strcmp(k, "certificate")) {
			r = get_hex(x, vn, k, d->certificate, 64);
			has_cert = true;
		} else if (!strcmp(k, "prefixes")) {
			r = get_list(x, vn, k, OVC_DHT_PREFIXES, &d->nprefixes, one_dht_prefix, d);
		} else if (!strcmp(k, "locator")) {
			r = get_sockaddr4(x, vn, k, &d->locator);
			if (!r && !d->locator.sin_addr.s_addr)
				r = fail(x, vn, "locator: 0.0.0.0 cannot be reached");
			has_loc = true;
		} else if (!strcmp(k, "lookup")) {
			const char *s = scalar(vn);
			if (s && !strcmp(s, "bsearch"))
				d->lookup = 0;
			else if (s && !strcmp(s, "walk"))
				d->lookup = 1;
			else
				return fail(x, vn, "lookup: want 'bsearch' or 'walk'");
			r = 0;
		} else if (!strcmp(k, "cache-ttl")) {
			r = get_uint(x, vn, k, 5, 86400, &d->cache_ttl_s);
		} else if (!strcmp(k, "negative-ttl")) {
			r = get_uint(x, vn, k, 1, 3600, &d->negative_ttl_s);
		} else {
			r = fail(x, kn, "dht: unknown key '%s'", k);
		}
		if (r)
			return r;
	}
	if (!has_port || !has_auth || !has_cert || !d->nprefixes)
		return fail(x, at,
		            "dht: 'port', 'authority', 'certificate' and 'prefixes' are "
		            "required");
	if (!has_loc) {
		if (!c->listen.sin_addr.s_addr)
			return fail(x, at,
			            "dht: 'locator' is required when gateway.listen is "
			            "0.0.0.0 (the address other sites reach this gateway at)");
		d->locator = c->listen;
	}
	return 0;
}

static int parse_resil(struct ctx *x, const yaml_node_t *n, struct ov_conf *c)
{
	struct ov_resil_conf *r = &c->resil;
	if (!n || n->type != YAML_MAPPING_NODE)
		return fail(x, n, "resiliency: want a mapping ({} for the defaults)");
	r->enabled = true;
	for (yaml_node_pair_t *kv = n->data.mapping.pairs.start; kv < n->data.mapping.pairs.top;
	     kv++) {
		yaml_node_t *kn = yaml_document_get_node(x->doc, kv->key);
		yaml_node_t *vn = yaml_document_get_node(x->doc, kv->value);
		const char *k = scalar(kn);
		int ret;
		if (!k)
			ret = fail(x, kn, "resiliency: keys are strings");
		else if (!strcmp(k, "dead-ms"))
			ret = get_uint(x, vn, k, 300, 10000, &r->dead_ms);
		else if (!strcmp(k, "budget"))
			ret = get_uint(x, vn, k, 400, 100000, &r->budget_bps);
		else if (!strcmp(k, "degraded-pct")) {
			ret = get_uint(x, vn, k, 0, 100, &r->degraded_pct);
			if (!ret && r->degraded_pct && r->degraded_pct < 5)
				ret = fail(x, vn, "degraded-pct: want 0 (off) or 5..100");
		} else if (!strcmp(k, "late-ms"))
			ret = get_uint(x, vn, k, 10, 10000, &r->late_ms);
		else
			ret = fail(x, kn, "resiliency: unknown key '%s'", k);
		if (ret)
			return ret;
	}
	return 0;
}

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

static int one_anycast(struct ctx *x, const yaml_node_t *n, size_t i, void *arg)
{
	struct ov_conf *c = arg;
	struct ov_anycast_conf *a = &c->anycast[i];
	bool has_prefix = false;
	if (!n || n->type != YAML_MAPPING_NODE)
		return fail(x, n, "anycast: each item is a mapping of 'prefix' and 'sites'");
	for (yaml_node_pair_t *kv = n->data.mapping.pairs.start; kv < n->data.mapping.pairs.top;
	     kv++) {
		yaml_node_t *kn = yaml_document_get_node(x->doc, kv->key);
		yaml_node_t *vn = yaml_document_get_node(x->doc, kv->value);
		const char *k = scalar(kn), *v = scalar(vn);
		int r;
		if (!k) {
			r = fail(x, kn, "anycast: keys are strings");
		} else if (!strcmp(k, "prefix")) {
			if (!v || prefix_parse(v, false, &a->prefix) ||
			    a->prefix.family != PEAK_AFI_IP6 || !a->prefix.len)
				return fail(x, vn,
				            "prefix: '%s' is not an IPv6 prefix of length 1..128",
				            v ? v : "?");
			for (size_t k2 = 0; k2 < i; k2++)
				if (c->anycast[k2].prefix.len == a->prefix.len &&
				    !memcmp(c->anycast[k2].prefix.addr, a->prefix.addr, 16))
					return fail(x, vn, "prefix: '%s' given twice", v);
			has_prefix = true;
			r = 0;
		} else if (!strcmp(k, "sites")) {
			r = get_list(x, vn, k, OVC_ANYCAST_SITES, &a->nsites, one_site, a);
			if (!r && a->nsites < 2)
				r = fail(x, vn, "sites: want 2..%d peers", OVC_ANYCAST_SITES);
		} else {
			r = fail(x, kn, "anycast: unknown key '%s'", k);
		}
		if (r)
			return r;
	}
	if (!has_prefix || !a->nsites)
		return fail(x, n, "anycast: 'prefix' and 'sites' are required");
	return 0;
}

static int parse_top(struct ctx *x, const yaml_node_t *n, struct ov_conf *c)
{
	bool has_addr = false, has_gw = false;
	const yaml_node_t *dht = NULL, *dht_key = NULL;
	for (yaml_node_pair_t *kv = n->data.mapping.pairs.start; kv < n->data.mapping.pairs.top;
	     kv++) {
		yaml_node_t *kn = yaml_document_get_node(x->doc, kv->key);
		yaml_node_t *vn = yaml_document_get_node(x->doc, kv->value);
		const char *k = scalar(kn);
		int r;
		if (!k) {
			r = fail(x, kn, "keys are strings");
		} else if (!strcmp(k, "tun")) {
			const char *s = scalar(vn);
			if (!s || !*s || strlen(s) >= sizeof(c->tun) || strchr(s, '/'))
				return fail(x, vn,
				            "tun: want an interface name of 1..15 characters");
			strcpy(c->tun, s);
			r = 0;
		} else if (!strcmp(k, "mtu")) {
			r = get_uint(x, vn, k, 1280, 1500, &c->mtu);
		} else if (!strcmp(k, "icmp-rate")) {
			r = get_uint(x, vn, k, 1, 10000, &c->icmp_rate);
		} else if (!strcmp(k, "address")) {
			const char *s = scalar(vn);
			uint8_t fam;
			if (!s || addr_parse(s, &fam, c->address) || fam != PEAK_AFI_IP6)
				return fail(x, vn, "address: want an IPv6 address");
			has_addr = true;
			r = 0;
		} else if (!strcmp(k, "gateway")) {
			r = has_gw ? fail(x, kn, "gateway: given twice") : parse_gateway(x, vn, c);
			has_gw = true;
		} else if (!strcmp(k, "resiliency")) {
			r = c->resil.enabled ? fail(x, kn, "resiliency: given twice")
			                     : parse_resil(x, vn, c);
		} else if (!strcmp(k, "anycast")) {
			r = c->nanycast
			        ? fail(x, kn, "anycast: given twice")
			        : get_list(x, vn, k, OVC_MAX_ANYCAST, &c->nanycast, one_anycast, c);
		} else if (!strcmp(k, "dht")) {
			r = dht ? fail(x, kn, "dht: given twice") : 0;
			dht = vn;
			dht_key = kn;
		} else {
			r = fail(x, kn, "unknown key '%s'", k);
		}
		if (r)
			return r;
	}
	if (!has_addr)
		return fail(x, n, "'address' is required");
	if (!has_gw)
		return fail(x, n, "'gateway' is required");
	if (c->nanycast && !c->resil.enabled)
		return fail(x, n,
		            "anycast: needs 'resiliency' (its probes measure the sites' RTT)");
	/* after the gateway: the locator defaults to its listen address */
	if (dht_key && !dht)
		return fail(x, dht_key, "dht: want a mapping");
	return dht ? parse_dht(x, dht, dht_key, c) : 0;
}

int ov_conf_parse(const char *name, const uint8_t *buf, size_t len, struct ov_conf *c, char *err,
                  size_t errlen)
{
	yaml_document_t doc;
	yaml_node_t *root;
	struct ctx x = {&doc, name, err, errlen, false};
	int ret;

	memset(c, 0, sizeof(*c));
	strcpy(c->tun, "ov0");
	c->mtu = 1400;
	c->icmp_rate = 10;
	c->keepalive_s = 5;
	c->dht.cache_ttl_s = 300;
	c->dht.negative_ttl_s = 30;
	c->resil.dead_ms = 600;
	c->resil.budget_bps = 1000;
	c->resil.degraded_pct = 25;
	c->resil.late_ms = 250;
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
