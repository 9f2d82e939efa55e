#include "peak/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "peak/util.h"
#include "peak/yamldoc.h"

/* Parsing context: the document, the file name for messages, the first error. */
struct ctx {
	yaml_document_t *doc;
	const char *file;
	char *err;
	size_t errlen;
	int failed;
};

/* Records the first error as "FILE:LINE: reason"; returns -EINVAL. */
static int vcfail(struct ctx *x, unsigned long line, const char *fmt, va_list ap)
{
	if (x->failed)
		return -EINVAL;
	x->failed = 1;
	if (x->err && x->errlen) {
		int k = snprintf(x->err, x->errlen, "%s:%lu: ", x->file, line);
		if (k > 0 && (size_t)k < x->errlen)
			vsnprintf(x->err + k, x->errlen - (size_t)k, fmt, ap);
	}
	return -EINVAL;
}

/* An error at a YAML node. */
static int cfail(struct ctx *x, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cfail(struct ctx *x, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = vcfail(x, n ? (unsigned long)n->start_mark.line + 1 : 0UL, fmt, ap);
	va_end(ap);
	return r;
}

/* An error found after parsing, at a stored line number. */
static int cfail_line(struct ctx *x, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cfail_line(struct ctx *x, unsigned line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = vcfail(x, line, fmt, ap);
	va_end(ap);
	return r;
}

static unsigned line_of(const yaml_node_t *n)
{
	return (unsigned)n->start_mark.line + 1;
}

static const char *scalar(const yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* ---- the schema ---- */

enum cfg_type {
	T_U32,      /* decimal, in [min, max] */
	T_STR,      /* string of at most size-1 bytes */
	T_ID,       /* T_STR that other parts put in line protocols, names and labels */
	T_NAME,     /* DNS name */
	T_ADDR6,    /* IPv6 address */
	T_DESC,     /* a descriptor field, checked by ssa_desc_set */
	T_PREFIXES, /* list of IPv6 prefixes */
	T_SUB,      /* nested, parsed by fn */
};

struct key {
	const char *name;
	enum cfg_type type;
	size_t off;  /* offset of the field in the object */
	size_t size; /* for T_STR */
	uint32_t min, max, def;
	bool required;
	int (*fn)(struct ctx *x, yaml_node_t *v, void *obj);
	size_t flag_off; /* for T_ADDR6: offset of a bool set when present, or 0 */
};

/* Per-object state while a service is parsed. */
struct svc_build {
	struct cfg_service s;
	struct ssa_desc d;
	struct prefix pfx[SSA_MAX_PREFIXES];
	unsigned npfx;
	bool have_slice;
	unsigned pfx_line;
};

static int parse_map(struct ctx *x, yaml_node_t *map, const struct key *keys, void *obj);

/* Checks that v is a list and allocates one zeroed element of size elem per item into
 * *out (at least one, so an empty list is not NULL). Returns 0 or an error for v. */
static int seq_alloc(struct ctx *x, yaml_node_t *v, size_t elem, const char *what, void **out)
{
	if (v->type != YAML_SEQUENCE_NODE)
		return cfail(x, v, "'%s' must be a list", what);
	size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (!(*out = calloc(n ? n : 1, elem)))
		return cfail(x, v, "out of memory");
	return 0;
}

static bool parse_u32(const char *s, uint32_t *v)
{
	uint64_t acc = 0;
	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || acc > UINT32_MAX)
			return false;
		acc = acc * 10 + (uint64_t)(*s - '0');
	}
	if (acc > UINT32_MAX)
		return false;
	*v = (uint32_t)acc;
	return true;
}

/* What makes s unfit for an id (endpoint ids, node names: words of the line protocols
 * between the daemons, metric labels, file names): NULL if nothing. *at gets the byte. */
static const char *id_flaw(const char *s, size_t *at)
{
	for (*at = 0; s[*at]; (*at)++) {
		unsigned char ch = (unsigned char)s[*at];
		if (ch == ' ')
			return "a space";
		if (ch == '"' || ch == '\'')
			return "a quote";
		if (ch == '\\')
			return "a backslash";
		if (ch < 0x20 || ch == 0x7f)
			return "a control character";
	}
	return NULL;
}

static int set_value(struct ctx *x, const struct key *k, yaml_node_t *v, void *obj)
{
	char *field = (char *)obj + k->off;
	const char *s = scalar(v);
	char why[SSA_ERRLEN];

	if (k->type == T_SUB || k->type == T_PREFIXES)
		return k->fn(x, v, obj);
	if (!s)
		return cfail(x, v, "'%s' must be a single value", k->name);
	switch (k->type) {
	case T_U32: {
		uint32_t u;
		if (!parse_u32(s, &u) || u < k->min || u > k->max)
			return cfail(x, v, "'%s' must be a whole number in %u..%u, not '%s'",
			             k->name, k->min, k->max, s);
		memcpy(field, &u, sizeof(u));
		return 0;
	}
	case T_STR:
	case T_ID: {
		size_t at;
		const char *flaw;
		if (!*s || strlen(s) >= k->size)
			return cfail(x, v, "'%s' must be 1 to %zu characters", k->name,
			             k->size - 1);
		if (k->type == T_ID && (flaw = id_flaw(s, &at)))
			return cfail(x, v,
			             "'%s': byte %zu is %s; ids may not hold spaces, quotes, "
			             "backslashes or control characters",
			             k->name, at + 1, flaw);
		memcpy(field, s, strlen(s) + 1);
		return 0;
	}
	case T_NAME:
		if (dns_name_parse(s, (struct dns_name *)field))
			return cfail(x, v, "'%s' is not a valid domain name: '%s'", k->name, s);
		return 0;
	case T_ADDR6: {
		uint8_t fam;
		if (addr_parse(s, &fam, (uint8_t *)field) || fam != PEAK_AFI_IP6)
			return cfail(x, v, "'%s' must be an IPv6 address, not '%s'", k->name, s);
		if (k->flag_off)
			*((bool *)((char *)obj + k->flag_off)) = true;
		return 0;
	}
	case T_DESC: {
		struct svc_build *b = obj;
		if (ssa_desc_set(&b->d, k->name, s, why, sizeof(why)))
			return cfail(x, v, "%s", why);
		if (!strcmp(k->name, "slice"))
			b->have_slice = true;
		return 0;
	}
	default:
		return cfail(x, v, "internal: bad schema type for '%s'", k->name);
	}
}

static void set_default(const struct key *k, void *obj)
{
	if (k->type == T_U32)
		memcpy((char *)obj + k->off, &k->def, sizeof(k->def));
}

static int parse_map(struct ctx *x, yaml_node_t *map, const struct key *keys, void *obj)
{
	enum { MAX_KEYS = 32 };
	bool seen[MAX_KEYS] = {0};
	if (!map || map->type != YAML_MAPPING_NODE)
		return cfail(x, map, "expected a mapping of keys to values");
	for (int i = 0; keys[i].name; i++)
		set_default(&keys[i], obj);
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *kn = yaml_document_get_node(x->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(x->doc, p->value);
		const char *ks = scalar(kn);
		if (!ks)
			return cfail(x, kn, "keys must be plain words");
		int idx = -1;
		for (int i = 0; keys[i].name; i++)
			if (!strcmp(keys[i].name, ks))
				idx = i;
		if (idx < 0) {
			char known[256] = "";
			for (int i = 0; keys[i].name; i++)
				snprintf(known + strlen(known), sizeof(known) - strlen(known),
				         "%s%s", i ? ", " : "", keys[i].name);
			return cfail(x, kn, "unknown key '%s' (known here: %s)", ks, known);
		}
		if (seen[idx])
			return cfail(x, kn, "key '%s' given twice", ks);
		seen[idx] = true;
		if (set_value(x, &keys[idx], vn, obj))
			return -EINVAL;
	}
	for (int i = 0; keys[i].name; i++)
		if (keys[i].required && !seen[i])
			return cfail(x, map, "missing required key '%s'", keys[i].name);
	return 0;
}

/* ---- zone ---- */

#define OFF(type, f) offsetof(type, f)

static const struct key soa_keys[] = {
    {"primary", T_NAME, OFF(struct dns_soa, mname), .required = true},
    {"contact", T_NAME, OFF(struct dns_soa, rname), .required = true},
    {"serial", T_U32, OFF(struct dns_soa, serial), .min = 0, .max = UINT32_MAX, .def = 1},
    {"refresh", T_U32, OFF(struct dns_soa, refresh), .min = 1, .max = 86400 * 28, .def = 3600},
    {"retry", T_U32, OFF(struct dns_soa, retry), .min = 1, .max = 86400 * 28, .def = 600},
    {"expire", T_U32, OFF(struct dns_soa, expire), .min = 1, .max = 86400 * 365, .def = 604800},
    {"minimum", T_U32, OFF(struct dns_soa, minimum), .min = 0, .max = 86400, .def = 30},
    {0},
};

static const struct key ttl_keys[] = {
    {"soa", T_U32, OFF(struct cfg_ttl, soa), .min = 0, .max = 604800, .def = 3600},
    {"ns", T_U32, OFF(struct cfg_ttl, ns), .min = 0, .max = 604800, .def = 3600},
    {"apl", T_U32, OFF(struct cfg_ttl, apl), .min = 0, .max = 604800, .def = 3600},
    {"txt", T_U32, OFF(struct cfg_ttl, txt), .min = 0, .max = 604800, .def = 3600},
    {"aaaa", T_U32, OFF(struct cfg_ttl, aaaa), .min = 0, .max = 604800, .def = 30},
    {0},
};

static const struct key ns_keys[] = {
    {"name", T_NAME, OFF(struct cfg_ns, name), .required = true},
    {"address", T_ADDR6, OFF(struct cfg_ns, addr), .flag_off = OFF(struct cfg_ns, has_addr)},
    {0},
};

static int zone_soa(struct ctx *x, yaml_node_t *v, void *obj)
{
	return parse_map(x, v, soa_keys, &((struct peak_config *)obj)->soa);
}

static int zone_ttl(struct ctx *x, yaml_node_t *v, void *obj)
{
	return parse_map(x, v, ttl_keys, &((struct peak_config *)obj)->ttl);
}

static int zone_ns(struct ctx *x, yaml_node_t *v, void *obj)
{
	struct peak_config *c = obj;
	if (v->type != YAML_SEQUENCE_NODE)
		return cfail(x, v, "'ns' must be a list of {name, address}");
	if (v->data.sequence.items.top == v->data.sequence.items.start)
		return cfail(x, v, "'ns' is empty: the zone needs at least one name server (NS)");
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		yaml_node_t *n = yaml_document_get_node(x->doc, *it);
		if (c->nns == CFG_MAX_NS)
			return cfail(x, n, "more than %d name servers", CFG_MAX_NS);
		struct cfg_ns *ns = &c->ns[c->nns];
		memset(ns, 0, sizeof(*ns));
		if (parse_map(x, n, ns_keys, ns))
			return -EINVAL;
		c->nns++;
	}
	return 0;
}

static const struct key zone_keys[] = {
    {"name", T_NAME, OFF(struct peak_config, zone), .required = true},
    {"soa", T_SUB, 0, .fn = zone_soa},
    {"ns", T_SUB, 0, .fn = zone_ns, .required = true},
    {"ttl", T_SUB, 0, .fn = zone_ttl},
    {0},
};

/* ---- services ---- */

static const struct key ep_keys[] = {
    {"id", T_ID, OFF(struct cfg_endpoint, id), .size = CFG_ID_MAX, .required = true},
    {"address", T_ADDR6, OFF(struct cfg_endpoint, addr), .required = true},
    {"weight", T_U32, OFF(struct cfg_endpoint, weight), .min = 0, .max = 1000000, .def = 1},
    {"node", T_ID, OFF(struct cfg_endpoint, node), .size = CFG_ID_MAX},
    {"netns", T_ID, OFF(struct cfg_endpoint, netns), .size = CFG_ID_MAX},
    {0},
};

static int svc_prefixes(struct ctx *x, yaml_node_t *v, void *obj)
{
	struct svc_build *b = obj;
	b->pfx_line = line_of(v);
	if (v->type != YAML_SEQUENCE_NODE)
		return cfail(x, v, "'prefixes' must be a list of IPv6 prefixes");
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		yaml_node_t *n = yaml_document_get_node(x->doc, *it);
		const char *s = scalar(n);
		if (b->npfx == SSA_MAX_PREFIXES)
			return cfail(x, n, "more than %d prefixes", SSA_MAX_PREFIXES);
		if (!s || prefix_parse(s, false, &b->pfx[b->npfx]))
			return cfail(x, n,
			             "'%s' is not a prefix (ADDRESS/LENGTH with no bits set past "
			             "LENGTH)",
			             s ? s : "(not a value)");
		if (b->pfx[b->npfx].family != PEAK_AFI_IP6)
			return cfail(x, n, "'%s' is not an IPv6 prefix", s);
		b->npfx++;
	}
	if (!b->npfx)
		return cfail(x, v, "'prefixes' is empty");
	return 0;
}

/* FNV-1a over len bytes (the endpoints' duplicate check). */
static uint32_t ep_hash(const void *p, size_t len)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++)
		h = (h ^ ((const uint8_t *)p)[i]) * 16777619u;
	return h;
}

/* The earlier endpoint of s with e's id (by_id) or address, through tab (index + 1 per slot,
 * mask + 1 slots), which gets e's index when none: -1, or the index. */
static int ep_seen(const struct cfg_service *s, uint32_t *tab, uint32_t mask, unsigned e,
                   bool by_id)
{
	const struct cfg_endpoint *x = &s->ep[e];
	uint32_t h = by_id ? ep_hash(x->id, strlen(x->id)) : ep_hash(x->addr, 16);
	for (h &= mask; tab[h]; h = (h + 1) & mask) {
		const struct cfg_endpoint *y = &s->ep[tab[h] - 1];
		if (by_id ? !strcmp(y->id, x->id) : !memcmp(y->addr, x->addr, 16))
			return (int)tab[h] - 1;
	}
	tab[h] = e + 1;
	return -1;
}

static int svc_endpoints(struct ctx *x, yaml_node_t *v, void *obj)
{
	struct cfg_service *s = &((struct svc_build *)obj)->s;
	if (seq_alloc(x, v, sizeof(*s->ep), "endpoints", (void **)&s->ep))
		return -EINVAL;
	/* repeated ids and addresses through two hash tables (a scan of the earlier
	 * endpoints per endpoint made 10,000 services of 100 endpoints cost 50M compares) */
	size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	uint32_t cap = 16;
	while (cap < 2 * n)
		cap *= 2;
	uint32_t *ids = calloc(2 * (size_t)cap, sizeof(*ids)), *addrs = ids + cap;
	if (!ids)
		return cfail(x, v, "out of memory");
	int ret = 0;
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		yaml_node_t *en = yaml_document_get_node(x->doc, *it);
		struct cfg_endpoint *e = &s->ep[s->nep];
		if (parse_map(x, en, ep_keys, e)) {
			ret = -EINVAL;
			break;
		}
		e->line = line_of(en);
		/* (the first earlier endpoint that repeats either, the id first: as a scan) */
		int ji = ep_seen(s, ids, cap - 1, s->nep, true);
		int ja = ep_seen(s, addrs, cap - 1, s->nep, false);
		if (ji >= 0 && (ja < 0 || ji <= ja)) {
			ret = cfail(x, en, "endpoint id '%s' repeated (first on line %u)", e->id,
			            s->ep[ji].line);
			break;
		}
		if (ja >= 0) {
			ret = cfail(x, en, "endpoint '%s' repeats the address of '%s' (line %u)",
			            e->id, s->ep[ja].id, s->ep[ja].line);
			break;
		}
		s->nep++;
	}
	free(ids);
	return ret;
}

/* 'types': a mapping of media type patterns to target services (typemap.h), kept as the
 * canonical text peak dns publishes at _types.NAME. */
static int svc_types(struct ctx *x, yaml_node_t *v, void *obj)
{
	struct cfg_service *s = &((struct svc_build *)obj)->s;
	char text[TYPEMAP_TEXT_MAX], why[TYPEMAP_ERRLEN];
	struct typemap m;
	size_t at = (size_t)snprintf(text, sizeof(text), "v=types1");
	if (v->type != YAML_MAPPING_NODE)
		return cfail(x, v, "'types' must map media type patterns to services");
	for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *kn = yaml_document_get_node(x->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(x->doc, p->value);
		const char *k = scalar(kn), *t = scalar(vn);
		if (!k || !t || strchr(k, ';') || strchr(k, '=') || strchr(t, ';'))
			return cfail(x, kn, "'types': want PATTERN: SERVICE[#KEY] items");
		if (!strchr(k, '/')) /* the text would take it for a field of later versions */
			return cfail(x, kn, "'types': '%s' is not a media type pattern", k);
		int n = snprintf(text + at, sizeof(text) - at, "; %s=%s", k, t);
		if (n < 0 || (size_t)n >= sizeof(text) - at)
			return cfail(x, kn, "'types': more than %d characters",
			             TYPEMAP_TEXT_MAX - 1);
		at += (size_t)n;
	}
	if (typemap_parse(text, at, &m, why, sizeof(why)))
		return cfail(x, v, "'types': %s", why);
	if (!m.n)
		return cfail(x, v, "'types' is empty");
	if (typemap_print(&m, s->types, sizeof(s->types)) < 0)
		return cfail(x, v, "'types': more than %d characters", TYPEMAP_TEXT_MAX - 1);
	return 0;
}

#define SB(f) OFF(struct svc_build, f)
static const struct key svc_keys[] = {
    {"name", T_NAME, SB(s.name), .required = true},
    {"prefixes", T_PREFIXES, 0, .fn = svc_prefixes, .required = true},
    {.name = "slice", .type = T_DESC, .required = true},
    {.name = "select", .type = T_DESC},
    {.name = "host", .type = T_DESC},
    {.name = "fanout", .type = T_DESC},
    {.name = "pow", .type = T_DESC},
    {.name = "nonce", .type = T_DESC},
    {.name = "period", .type = T_DESC},
    {.name = "skew", .type = T_DESC},
    {.name = "replicas", .type = T_DESC},
    {.name = "key", .type = T_DESC},
    {"secret-file", T_STR, SB(s.secret_file), .size = CFG_PATH_MAX},
    {"port", T_U32, SB(s.port), .min = 1, .max = 65535, .def = 80},
    {"answers", T_U32, SB(s.answers), .min = 1, .max = 16, .def = 2},
    {"rate", T_U32, SB(s.rate), .min = 0, .max = 100000000, .def = 1000},
    {"burst", T_U32, SB(s.burst), .min = 0, .max = 100000000, .def = 0},
    {"endpoints", T_SUB, 0, .fn = svc_endpoints},
    {"types", T_SUB, 0, .fn = svc_types},
    {0},
};

static int parse_service(struct ctx *x, yaml_node_t *n, struct peak_config *c)
{
	struct svc_build b;
	char why[SSA_ERRLEN];
	memset(&b, 0, sizeof(b));
	ssa_desc_init(&b.d);
	struct cfg_service *s = &c->svc[c->nsvc];
	int r = parse_map(x, n, svc_keys, &b);
	*s = b.s; /* hand the endpoints over even on error, so config_free frees them */
	c->nsvc++;
	if (r)
		return r;
	s->line = line_of(n);
	if (ssa_desc_validate(&b.d, why, sizeof(why)))
		return cfail(x, n, "service: %s", why);
	if (ssa_space_init(&s->space, &b.d, b.pfx, b.npfx, why, sizeof(why)))
		return cfail(x, n, "service: %s", why);
	if ((b.d.select == SSA_HOP || b.d.host == SSA_HOP) && !s->secret_file[0])
		return cfail(x, n,
		             "service: hop rules need 'secret-file' (the secret is never "
		             "written in the config)");
	/* what the controller and the agents would refuse later (assign_init), said here */
	if (s->space.nslices > ASSIGN_MAX_SLICES)
		return cfail(x, n,
		             "service: %llu slices (%u prefixes of 2^%u), more than the 2^24 a "
		             "service may have: use a shorter slice",
		             (unsigned long long)s->space.nslices, s->space.n, s->space.s);
	bool weighted = false;
	for (unsigned e = 0; e < s->nep; e++)
		weighted |= s->ep[e].weight > 0;
	if (s->nep && !weighted)
		return cfail(x, n,
		             "service: every endpoint has weight 0: no endpoint would get a "
		             "slice");
	return 0;
}

static int top_services(struct ctx *x, yaml_node_t *v, void *obj)
{
	struct peak_config *c = obj;
	if (seq_alloc(x, v, sizeof(*c->svc), "services", (void **)&c->svc))
		return -EINVAL;
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++)
		if (parse_service(x, yaml_document_get_node(x->doc, *it), c))
			return -EINVAL;
	return 0;
}

static const struct key node_keys[] = {
    {"name", T_ID, OFF(struct cfg_node, name), .size = CFG_ID_MAX, .required = true},
    {"address", T_ADDR6, OFF(struct cfg_node, addr), .flag_off = OFF(struct cfg_node, has_addr)},
    {"filter-dev", T_ID, OFF(struct cfg_node, filter_dev), .size = CFG_ID_MAX},
    {0},
};

static int top_nodes(struct ctx *x, yaml_node_t *v, void *obj)
{
	struct peak_config *c = obj;
	if (seq_alloc(x, v, sizeof(*c->nodes), "nodes", (void **)&c->nodes))
		return -EINVAL;
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		yaml_node_t *nn = yaml_document_get_node(x->doc, *it);
		struct cfg_node *nd = &c->nodes[c->nnodes];
		if (parse_map(x, nn, node_keys, nd))
			return -EINVAL;
		nd->line = line_of(nn);
		for (unsigned j = 0; j < c->nnodes; j++)
			if (!strcmp(c->nodes[j].name, nd->name))
				return cfail(x, nn, "node '%s' repeated (first on line %u)",
				             nd->name, c->nodes[j].line);
		c->nnodes++;
	}
	return 0;
}

static int top_zone(struct ctx *x, yaml_node_t *v, void *obj)
{
	return parse_map(x, v, zone_keys, obj);
}

static const struct key top_keys[] = {
    {"zone", T_SUB, 0, .fn = top_zone, .required = true},
    {"nodes", T_SUB, 0, .fn = top_nodes},
    {"services", T_SUB, 0, .fn = top_services, .required = true},
    {0},
};

static int name_ptr_cmp(const void *a, const void *b)
{
	const struct dns_name *x = *(const struct dns_name *const *)a;
	const struct dns_name *y = *(const struct dns_name *const *)b;
	struct dns_name lx = *x, ly = *y;
	dns_name_lower(&lx);
	dns_name_lower(&ly);
	if (lx.len != ly.len)
		return lx.len < ly.len ? -1 : 1;
	return memcmp(lx.wire, ly.wire, lx.len);
}

static int prefix_ptr_cmp(const void *a, const void *b)
{
	return prefix_cmp(*(const struct prefix *const *)a, *(const struct prefix *const *)b);
}

/* Whether two services may share a name or overlapping prefixes, found by sorting (the
 * pairwise check below costs services squared: 5 * 10^7 pairs at 10,000). Sorted by
 * prefix_cmp, a prefix holding another holds the one right after it. true also when out of
 * memory: the pairwise check then decides, and says which services. */
static bool may_clash(const struct peak_config *c)
{
	size_t np = 0, k = 0;
	bool clash = true;
	for (unsigned i = 0; i < c->nsvc; i++)
		np += c->svc[i].space.n;
	const struct dns_name **nv = malloc((c->nsvc ? c->nsvc : 1) * sizeof(*nv));
	const struct prefix **pv = malloc((np ? np : 1) * sizeof(*pv));
	if (!nv || !pv)
		goto out;
	for (unsigned i = 0; i < c->nsvc; i++) {
		nv[i] = &c->svc[i].name;
		for (unsigned p = 0; p < c->svc[i].space.n; p++)
			pv[k++] = &c->svc[i].space.pfx[p];
	}
	qsort(nv, c->nsvc, sizeof(*nv), name_ptr_cmp);
	qsort(pv, np, sizeof(*pv), prefix_ptr_cmp);
	clash = false;
	for (unsigned i = 1; i < c->nsvc && !clash; i++)
		clash = dns_name_eq(nv[i - 1], nv[i]);
	for (size_t i = 1; i < np && !clash; i++)
		clash = prefix_contains(pv[i - 1], pv[i]);
out:
	free(nv);
	free(pv);
	return clash;
}

/* Checks across the parsed file (keys may come in any order): services inside the zone,
 * with distinct names and disjoint prefixes; endpoints on declared nodes. */
static int check_config(struct ctx *x, struct peak_config *c)
{
	bool pairs = may_clash(c); /* else no pair of services needs a look */
	char a[PREFIX_STRLEN], b[PREFIX_STRLEN], nm[DNS_NAME_STRLEN], zn[DNS_NAME_STRLEN];
	for (unsigned i = 0; i < c->nsvc; i++) {
		const struct cfg_service *s = &c->svc[i];
		dns_name_print(&s->name, nm, sizeof(nm));
		if (!dns_name_under(&s->name, &c->zone)) {
			dns_name_print(&c->zone, zn, sizeof(zn));
			return cfail_line(x, s->line, "service '%s' is not inside zone '%s'", nm,
			                  zn);
		}
		for (unsigned j = 0; pairs && j < i; j++) {
			const struct cfg_service *t = &c->svc[j];
			if (dns_name_eq(&s->name, &t->name))
				return cfail_line(x, s->line,
				                  "service '%s' repeated (first on line %u)", nm,
				                  t->line);
			for (unsigned p = 0; p < s->space.n; p++)
				for (unsigned q = 0; q < t->space.n; q++) {
					const struct prefix *u = &s->space.pfx[p];
					const struct prefix *v = &t->space.pfx[q];
					if (prefix_contains(u, v) || prefix_contains(v, u))
						return cfail_line(
						    x, s->line,
						    "services overlap: %s here and %s of the "
						    "service on line %u",
						    prefix_print(u, a), prefix_print(v, b),
						    t->line);
				}
		}
		for (unsigned j = 0; c->nnodes && j < s->nep; j++) {
			const struct cfg_endpoint *e = &s->ep[j];
			bool found = !e->node[0];
			for (unsigned k = 0; k < c->nnodes && !found; k++)
				found = !strcmp(c->nodes[k].name, e->node);
			if (!found)
				return cfail_line(x, e->line, "endpoint '%s': unknown node '%s'",
				                  e->id, e->node);
		}
	}
	return 0;
}

static void apply_defaults(const struct key *keys, void *obj)
{
	for (int i = 0; keys[i].name; i++)
		set_default(&keys[i], obj);
}

int yaml_doc_load(const char *name, const uint8_t *buf, size_t len, yaml_document_t *doc,
                  yaml_node_t **root, char *err, size_t errlen)
{
	yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, buf, len);
	if (!yaml_parser_load(&parser, doc)) {
		snprintf(err, errlen, "%s:%lu: YAML: %s", name,
		         (unsigned long)parser.problem_mark.line + 1,
		         parser.problem ? parser.problem : "syntax error");
		yaml_parser_delete(&parser);
		return -EINVAL;
	}
	yaml_parser_delete(&parser);
	if (!(*root = yaml_document_get_root_node(doc))) {
		snprintf(err, errlen, "%s:1: the file is empty", name);
		yaml_document_delete(doc);
		return -EINVAL;
	}
	return 0;
}

/* ---- the file as a stream of libyaml events ----
 *
 * The configuration is read without the whole document's tree: each top-level entry is built
 * as a small document of its own, handed to the schema above and freed, and the 'services'
 * list one service at a time, so peak memory follows the result (10,000 services of 100
 * endpoints: the tree of the whole document took about a gigabyte). Errors are what the
 * tree-based reading gave: a YAML syntax error anywhere in the first document wins over an
 * error of the schema (the rest of the document is read for it), then the first error of the
 * schema in document order. Aliases work inside the entry or service holding their anchor. */

enum { STREAM_DEPTH_MAX = 64 }; /* nesting within one entry; the schema needs 4 */

struct anchor {
	char *name;
	int id;
};

struct anchors {
	struct anchor *v;
	size_t n, cap;
};

struct stream {
	yaml_parser_t p;
	struct ctx *x;
	bool syntax;         /* a syntax error was recorded: nothing more is read */
	struct anchors seen; /* every anchor's name so far (ids unused), for the message */
};

/* Appends (name, id) to an. Returns 0 or -ENOMEM. */
static int anchors_add(struct anchors *an, const char *name, int id)
{
	if (an->n == an->cap) {
		size_t nc = an->cap ? 2 * an->cap : 8;
		struct anchor *nv = realloc(an->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		an->v = nv;
		an->cap = nc;
	}
	if (!(an->v[an->n].name = strdup(name)))
		return -ENOMEM;
	an->v[an->n++].id = id;
	return 0;
}

static void anchors_free(struct anchors *an)
{
	for (size_t i = 0; i < an->n; i++)
		free(an->v[i].name);
	free(an->v);
	*an = (struct anchors){0};
}

/* Records a YAML syntax error in place of any error of the schema. Returns -EINVAL. */
static int stream_syntax(struct stream *s, unsigned long line, const char *problem)
{
	s->syntax = true;
	s->x->failed = 0;
	return cfail_line(s->x, (unsigned)line, "YAML: %s", problem);
}

/* The next event into ev (the caller deletes it). Returns 0 or -EINVAL (syntax error). */
static int stream_next(struct stream *s, yaml_event_t *ev)
{
	if (s->syntax)
		return -EINVAL;
	if (!yaml_parser_parse(&s->p, ev))
		return stream_syntax(s, (unsigned long)s->p.problem_mark.line + 1,
		                     s->p.problem ? s->p.problem : "syntax error");
	return 0;
}

/* Adds the node that begins with ev (its first event, consumed) and all it holds to doc.
 * Returns the node's id (> 0), or 0: a syntax error, or no memory (both recorded). */
static int tree_add(struct stream *s, yaml_document_t *doc, yaml_event_t *ev, struct anchors *an,
                    unsigned depth)
{
	yaml_event_t sub;
	int id = 0;
	const yaml_char_t *anchor = NULL;
	unsigned long line = (unsigned long)ev->start_mark.line + 1;
	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		for (size_t i = 0; i < an->n && !id; i++)
			if (!strcmp(an->v[i].name, (const char *)ev->data.alias.anchor))
				id = an->v[i].id;
		for (size_t i = 0; i < s->seen.n && !id; i++)
			if (!strcmp(s->seen.v[i].name, (const char *)ev->data.alias.anchor)) {
				stream_syntax(s, line,
				              "found undefined alias (an alias must be in the "
				              "top-level entry or the service of its anchor)");
				return 0;
			}
		if (!id)
			stream_syntax(s, line, "found undefined alias");
		break;
	case YAML_SCALAR_EVENT:
		anchor = ev->data.scalar.anchor;
		id = yaml_document_add_scalar(doc, NULL, ev->data.scalar.value,
		                              (int)ev->data.scalar.length, ev->data.scalar.style);
		break;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
		anchor = seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
		id = seq ? yaml_document_add_sequence(doc, NULL, ev->data.sequence_start.style)
		         : yaml_document_add_mapping(doc, NULL, ev->data.mapping_start.style);
		if (!id)
			break;
		if (depth >= STREAM_DEPTH_MAX) {
			cfail_line(s->x, (unsigned)line, "nested deeper than %d levels",
			           STREAM_DEPTH_MAX);
			return 0;
		}
		yaml_document_get_node(doc, id)->start_mark = ev->start_mark;
		for (int key = 0;;) {
			if (stream_next(s, &sub))
				return 0;
			if (sub.type == YAML_SEQUENCE_END_EVENT ||
			    sub.type == YAML_MAPPING_END_EVENT) {
				yaml_event_delete(&sub);
				break;
			}
			int item = tree_add(s, doc, &sub, an, depth + 1);
			yaml_event_delete(&sub);
			if (!item)
				return 0;
			if (seq ? !yaml_document_append_sequence_item(doc, id, item)
			        : key && !yaml_document_append_mapping_pair(doc, id, key, item)) {
				cfail_line(s->x, (unsigned)line, "out of memory");
				return 0;
			}
			key = seq || key ? 0 : item;
		}
		break;
	}
	default:
		stream_syntax(s, line, "unexpected event");
		return 0;
	}
	if (!id) {
		if (!s->syntax)
			cfail_line(s->x, (unsigned)line, "out of memory");
		return 0;
	}
	/* (an alias names a node made at its anchor: that node keeps the anchor's line) */
	if (ev->type == YAML_SCALAR_EVENT)
		yaml_document_get_node(doc, id)->start_mark = ev->start_mark;
	if (anchor && (anchors_add(an, (const char *)anchor, id) ||
	               anchors_add(&s->seen, (const char *)anchor, 0))) {
		cfail_line(s->x, (unsigned)line, "out of memory");
		return 0;
	}
	return id;
}

/* Builds the node beginning with ev (consumed) as a document of its own in *doc (the
 * caller deletes it, even on failure). Returns its root, or NULL (recorded). */
static yaml_node_t *tree_doc(struct stream *s, yaml_document_t *doc, yaml_event_t *ev)
{
	struct anchors an = {0};
	memset(doc, 0, sizeof(*doc));
	if (!yaml_document_initialize(doc, NULL, NULL, NULL, 1, 1)) {
		cfail_line(s->x, (unsigned)ev->start_mark.line + 1, "out of memory");
		return NULL;
	}
	int id = tree_add(s, doc, ev, &an, 0);
	anchors_free(&an);
	return id ? yaml_document_get_node(doc, id) : NULL;
}

/* Reads and drops events up to the end of the first document, for a syntax error there
 * (it wins over the error of the schema already recorded). */
static void stream_drain(struct stream *s)
{
	yaml_event_t ev;
	while (!stream_next(s, &ev)) {
		bool end = ev.type == YAML_DOCUMENT_END_EVENT || ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
		if (end)
			return;
	}
}

/* The 'services' list, one service at a time; ev (consumed) is its value's first event. */
static int stream_services(struct stream *s, yaml_event_t *ev, struct peak_config *c)
{
	yaml_document_t doc;
	yaml_event_t item;
	size_t cap = 0;
	if (ev->type != YAML_SEQUENCE_START_EVENT) { /* not a list: said at the value */
		yaml_node_t *v = tree_doc(s, &doc, ev);
		if (v)
			cfail(s->x, v, "'services' must be a list");
		yaml_document_delete(&doc);
		return -EINVAL;
	}
	for (;;) {
		if (stream_next(s, &item))
			return -EINVAL;
		if (item.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&item);
			break;
		}
		if (c->nsvc == cap) {
			size_t nc = cap ? 2 * cap : 64;
			struct cfg_service *nv = realloc(c->svc, nc * sizeof(*nv));
			if (!nv) {
				yaml_event_delete(&item);
				return cfail_line(s->x, (unsigned)item.start_mark.line + 1,
				                  "out of memory");
			}
			memset(nv + cap, 0, (nc - cap) * sizeof(*nv));
			c->svc = nv;
			cap = nc;
		}
		yaml_node_t *n = tree_doc(s, &doc, &item);
		yaml_event_delete(&item);
		s->x->doc = &doc;
		int r = n ? parse_service(s->x, n, c) : -EINVAL;
		s->x->doc = NULL;
		yaml_document_delete(&doc);
		if (r)
			return r;
	}
	if (!c->svc && !(c->svc = calloc(1, sizeof(*c->svc)))) /* (never NULL, as before) */
		return cfail_line(s->x, (unsigned)ev->start_mark.line + 1, "out of memory");
	return 0;
}

/* The top-level mapping, entry by entry, through top_keys; ev (consumed) is its first
 * event. */
static int stream_top(struct stream *s, yaml_event_t *ev, struct peak_config *c)
{
	enum { MAX_KEYS = 32 };
	bool seen[MAX_KEYS] = {0};
	yaml_document_t doc;
	yaml_event_t kev, vev;
	unsigned line = (unsigned)ev->start_mark.line + 1;
	if (ev->type != YAML_MAPPING_START_EVENT) {
		yaml_node_t *root = tree_doc(s, &doc, ev);
		if (root)
			cfail(s->x, root,
			      "the top level must be a mapping with 'zone' and 'services'");
		yaml_document_delete(&doc);
		return -EINVAL;
	}
	for (;;) {
		if (stream_next(s, &kev))
			return -EINVAL;
		if (kev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&kev);
			break;
		}
		unsigned kline = (unsigned)kev.start_mark.line + 1;
		if (kev.type != YAML_SCALAR_EVENT) {
			tree_doc(s, &doc, &kev); /* (its events read: a syntax error in it wins) */
			yaml_document_delete(&doc);
			yaml_event_delete(&kev);
			return s->syntax ? -EINVAL
			                 : cfail_line(s->x, kline, "keys must be plain words");
		}
		const char *ks = (const char *)kev.data.scalar.value;
		int idx = -1;
		for (int i = 0; top_keys[i].name; i++)
			if (!strcmp(top_keys[i].name, ks))
				idx = i;
		if (idx < 0) {
			char known[256] = "";
			for (int i = 0; top_keys[i].name; i++)
				snprintf(known + strlen(known), sizeof(known) - strlen(known),
				         "%s%s", i ? ", " : "", top_keys[i].name);
			cfail_line(s->x, kline, "unknown key '%s' (known here: %s)", ks, known);
			yaml_event_delete(&kev);
			return -EINVAL;
		}
		yaml_event_delete(&kev);
		if (seen[idx])
			return cfail_line(s->x, kline, "key '%s' given twice", top_keys[idx].name);
		seen[idx] = true;
		if (stream_next(s, &vev))
			return -EINVAL;
		int r;
		if (top_keys[idx].fn == top_services) {
			r = stream_services(s, &vev, c);
		} else {
			yaml_node_t *v = tree_doc(s, &doc, &vev);
			s->x->doc = &doc;
			r = v ? set_value(s->x, &top_keys[idx], v, c) : -EINVAL;
			s->x->doc = NULL;
			yaml_document_delete(&doc);
		}
		yaml_event_delete(&vev);
		if (r)
			return r;
	}
	for (int i = 0; top_keys[i].name; i++)
		if (top_keys[i].required && !seen[i])
			return cfail_line(s->x, line, "missing required key '%s'",
			                  top_keys[i].name);
	return 0;
}

/* Reads the first document of buf through top_keys into c. Returns 0 or -EINVAL
 * (recorded in x). */
static int stream_config(struct ctx *x, const uint8_t *buf, size_t len, struct peak_config *c)
{
	struct stream s = {.x = x};
	yaml_event_t ev;
	int ret = -EINVAL;
	if (!yaml_parser_initialize(&s.p))
		return cfail_line(x, 1, "out of memory");
	yaml_parser_set_input_string(&s.p, buf, len);
	do { /* STREAM-START, then DOCUMENT-START or STREAM-END (an empty file) */
		if (stream_next(&s, &ev))
			goto out;
		yaml_event_type_t t = ev.type;
		yaml_event_delete(&ev);
		if (t == YAML_STREAM_END_EVENT) {
			cfail_line(x, 1, "the file is empty");
			goto out;
		}
		if (t == YAML_DOCUMENT_START_EVENT)
			break;
	} while (1);
	if (stream_next(&s, &ev))
		goto out;
	ret = stream_top(&s, &ev, c);
	yaml_event_delete(&ev);
	if (ret) {
		if (!s.syntax)
			stream_drain(&s);
		goto out;
	}
	if (stream_next(&s, &ev)) /* DOCUMENT-END */
		goto out;
	yaml_event_delete(&ev);
	ret = 0;
out:
	if (s.syntax) /* (the message of the YAML error, not of the schema) */
		ret = -EINVAL;
	anchors_free(&s.seen);
	yaml_parser_delete(&s.p);
	return ret;
}

int config_parse(const char *name, const uint8_t *buf, size_t len, struct peak_config **out,
                 char *err, size_t errlen)
{
	struct ctx x = {NULL, name, err, errlen, 0};
	struct peak_config *c = NULL;
	int ret = -EINVAL;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!(c = calloc(1, sizeof(*c)))) {
		ret = -ENOMEM;
		goto out;
	}
	apply_defaults(soa_keys, &c->soa);
	apply_defaults(ttl_keys, &c->ttl);
	if (stream_config(&x, buf, len, c) || check_config(&x, c))
		goto out;
	if (!c->soa.mname.len) {
		/* No soa block: primary is the first name server, contact hostmaster.ZONE. */
		struct dns_name hm;
		c->soa.mname = c->ns[0].name;
		dns_name_parse("hostmaster", &hm);
		if (hm.len - 1u + c->zone.len <= DNS_NAME_MAX) {
			c->soa.rname = hm;
			memcpy(c->soa.rname.wire + hm.len - 1, c->zone.wire, c->zone.len);
			c->soa.rname.len = (uint8_t)(hm.len - 1 + c->zone.len);
		} else {
			c->soa.rname = c->zone;
		}
	}
	ret = 0;
	*out = c;
	c = NULL;
out:
	config_free(c);
	return ret;
}

int config_load(const char *path, struct peak_config **out, char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	size_t n = 0;

	*out = NULL;
	int ret = peak_read_file(path, CFG_MAX_FILE_BYTES, &buf, &n);
	if (ret == -EFBIG)
		snprintf(err, errlen, "%s: larger than %d bytes", path, CFG_MAX_FILE_BYTES);
	else if (ret)
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(-ret));
	else
		ret = config_parse(path, buf, n, out, err, errlen);
	free(buf);
	return ret;
}

void config_free(struct peak_config *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->nsvc; i++) {
		free(c->svc[i].ep);
		c->svc[i].ep = NULL;
	}
	free(c->svc);
	c->svc = NULL;
	free(c->nodes);
	c->nodes = NULL;
	free(c);
}

const struct cfg_service *config_service(const struct peak_config *c, const struct dns_name *n)
{
	for (unsigned i = 0; i < c->nsvc; i++)
		if (dns_name_eq(&c->svc[i].name, n))
			return &c->svc[i];
	return NULL;
}

static int ep_order_cmp(const void *a, const void *b)
{
	const struct cfg_endpoint *const *x = a, *const *y = b;
	return strcmp((*x)->id, (*y)->id);
}

int config_service_assign(const struct cfg_service *s, struct assign *a, int *slot)
{
	const struct cfg_endpoint **order = NULL;
	uint32_t *w = NULL;
	int ret = -ENOMEM;
	if (!s->nep)
		return -ENOENT;
	if (s->space.nslices > ASSIGN_MAX_SLICES)
		return -E2BIG;
	order = malloc(s->nep * sizeof(*order));
	w = malloc(s->nep * sizeof(*w));
	if (!order || !w)
		goto out;
	for (unsigned e = 0; e < s->nep; e++)
		order[e] = &s->ep[e];
	qsort(order, s->nep, sizeof(*order), ep_order_cmp);
	for (unsigned k = 0; k < s->nep; k++)
		w[k] = order[k]->weight;
	ret = assign_init(a, (uint32_t)s->space.nslices, s->space.s, w, s->nep);
	if (ret)
		goto out;
	for (unsigned k = 0; k < s->nep; k++)
		slot[order[k] - s->ep] = (int)k;
out:
	free(order);
	free(w);
	return ret;
}
