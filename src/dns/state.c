#include "state.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "peak/apl.h"
#include "peak/siphash.h"
#include "peak/util.h"

/* ---- steering counters: a grow-only registry, so counters survive state swaps ---- */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct steer_counter **reg;
static size_t nreg, capreg;

static struct steer_counter *steer_counter_get(const char *service, const char *endpoint)
{
	struct steer_counter *c = NULL;
	pthread_mutex_lock(&reg_lock);
	for (size_t i = 0; i < nreg; i++)
		if (!strcmp(reg[i]->service, service) && !strcmp(reg[i]->endpoint, endpoint)) {
			c = reg[i];
			goto out;
		}
	if (nreg == capreg) {
		size_t nc = capreg ? 2 * capreg : 64;
		struct steer_counter **nv = realloc(reg, nc * sizeof(*nv));
		if (!nv)
			goto out;
		reg = nv;
		capreg = nc;
	}
	if (!(c = aligned_alloc(64, sizeof(*c))))
		goto out;
	memset(c, 0, sizeof(*c));
	snprintf(c->service, sizeof(c->service), "%s", service);
	snprintf(c->endpoint, sizeof(c->endpoint), "%s", endpoint);
	reg[nreg++] = c;
out:
	pthread_mutex_unlock(&reg_lock);
	return c;
}

void steer_counters_each(void (*fn)(const struct steer_counter *c, uint64_t total, void *arg),
                         void *arg)
{
	pthread_mutex_lock(&reg_lock);
	for (size_t i = 0; i < nreg; i++) {
		uint64_t t = 0;
		for (int w = 0; w < DNSD_MAX_WORKERS; w++)
			t += __atomic_load_n(&reg[i]->cell[w][0], __ATOMIC_RELAXED);
		fn(reg[i], t, arg);
	}
	pthread_mutex_unlock(&reg_lock);
}

void steer_counters_free(void)
{
	pthread_mutex_lock(&reg_lock);
	for (size_t i = 0; i < nreg; i++)
		free(reg[i]);
	free(reg);
	reg = NULL;
	nreg = capreg = 0;
	pthread_mutex_unlock(&reg_lock);
}

/* ---- live state: health, weights and the slice assignment per service ---- */

static void svc_dyn_free(struct dnsd_svc_dyn *sd)
{
	if (sd->have_assign)
		assign_fini(&sd->a);
	free(sd->ep);
	free(sd->slot_ep);
	memset(sd, 0, sizeof(*sd));
}

void dnsd_dyn_fini(struct dnsd_dyn *dyn)
{
	for (unsigned i = 0; i < dyn->nsvc; i++)
		svc_dyn_free(&dyn->svc[i]);
	free(dyn->svc);
	dyn->svc = NULL;
	dyn->nsvc = 0;
}

/* Records which endpoint each assignment slot belongs to. */
static int slot_map(struct dnsd_svc_dyn *sd)
{
	unsigned n = sd->have_assign ? sd->a.nep : 0;
	int *m = malloc((n ? n : 1) * sizeof(*m));
	if (!m)
		return -ENOMEM;
	for (unsigned s = 0; s < n; s++)
		m[s] = -1;
	for (unsigned e = 0; e < sd->nep; e++)
		if (sd->ep[e].slot >= 0 && (unsigned)sd->ep[e].slot < n)
			m[sd->ep[e].slot] = (int)e;
	free(sd->slot_ep);
	sd->slot_ep = m;
	sd->nslot_ep = n;
	return 0;
}

/* Brings the assignment in line with health and weights: healthy endpoints join, sick ones
 * leave (the last one with weight cannot leave: then nobody healthy is left anyway), and
 * weights follow. Joins come first so that leaves find somewhere to go. */
static int svc_dyn_settle(struct dnsd_svc_dyn *sd)
{
	if (!sd->have_assign)
		return slot_map(sd);
	for (unsigned e = 0; e < sd->nep; e++) {
		struct dnsd_ep_dyn *d = &sd->ep[e];
		if (d->healthy && d->slot < 0) {
			int s = assign_add(&sd->a, d->weight, NULL);
			if (s < 0)
				return s;
			d->slot = s;
		}
	}
	for (unsigned e = 0; e < sd->nep; e++) {
		struct dnsd_ep_dyn *d = &sd->ep[e];
		if (d->slot >= 0 && sd->a.ep[d->slot].weight != d->weight)
			(void)assign_set_weight(&sd->a, (unsigned)d->slot, d->weight, NULL);
	}
	for (unsigned e = 0; e < sd->nep; e++) {
		struct dnsd_ep_dyn *d = &sd->ep[e];
		if (!d->healthy && d->slot >= 0 && assign_del(&sd->a, (unsigned)d->slot, NULL) == 0)
			d->slot = -1;
	}
	return slot_map(sd);
}

/* A fresh assignment (config_service_assign, as 'peak plan' shows it), then the unhealthy
 * endpoints leave. */
static int svc_dyn_assign_fresh(struct dnsd_svc_dyn *sd, const struct cfg_service *s)
{
	if (!s->nep) { /* nothing to assign (and s->ep may be NULL) */
		if (sd->have_assign)
			assign_fini(&sd->a);
		sd->have_assign = false;
		return slot_map(sd);
	}
	int *slot = malloc(s->nep * sizeof(*slot));
	if (!slot)
		return -ENOMEM;
	if (sd->have_assign)
		assign_fini(&sd->a);
	sd->have_assign = false;
	for (unsigned e = 0; e < sd->nep; e++)
		sd->ep[e].slot = -1;
	/* Weights in force may differ from the file's (run-time overrides). */
	struct cfg_service tmp = *s;
	struct cfg_endpoint *eps = malloc((s->nep ? s->nep : 1) * sizeof(*eps));
	if (!eps) {
		free(slot);
		return -ENOMEM;
	}
	memcpy(eps, s->ep, s->nep * sizeof(*eps));
	for (unsigned e = 0; e < s->nep; e++)
		eps[e].weight = sd->ep[e].weight;
	tmp.ep = eps;
	int r = config_service_assign(&tmp, &sd->a, slot);
	free(eps);
	if (r == -ENOMEM) {
		free(slot);
		return r;
	}
	if (r) { /* no endpoints, too many slices or every weight 0: nothing to steer to */
		free(slot);
		return slot_map(sd);
	}
	sd->have_assign = true;
	for (unsigned e = 0; e < s->nep; e++)
		sd->ep[e].slot = slot[e];
	free(slot);
	return svc_dyn_settle(sd);
}

/* Matches dyn to cfg by service name and endpoint id into out, leaving dyn untouched.
 * Health marks and slices are kept; a weight set at run time stays until the file changes
 * that endpoint's weight. */
static int dyn_sync(const struct dnsd_dyn *dyn, const struct peak_config *cfg, struct dnsd_dyn *out)
{
	struct dnsd_svc_dyn *nsvc = calloc(cfg->nsvc ? cfg->nsvc : 1, sizeof(*nsvc));
	if (!nsvc)
		return -ENOMEM;
	for (unsigned i = 0; i < cfg->nsvc; i++) {
		const struct cfg_service *s = &cfg->svc[i];
		struct dnsd_svc_dyn *sd = &nsvc[i];
		const struct dnsd_svc_dyn *old = NULL;
		for (unsigned j = 0; j < dyn->nsvc; j++)
			if (dns_name_eq(&dyn->svc[j].name, &s->name))
				old = &dyn->svc[j];
		sd->name = s->name;
		sd->ep = calloc(s->nep ? s->nep : 1, sizeof(*sd->ep));
		if (!sd->ep)
			goto nomem;
		sd->nep = s->nep;
		for (unsigned e = 0; e < s->nep; e++) {
			struct dnsd_ep_dyn *d = &sd->ep[e];
			snprintf(d->id, sizeof(d->id), "%s", s->ep[e].id);
			d->healthy = true;
			d->weight = d->cfg_weight = s->ep[e].weight;
			d->slot = -1;
			for (unsigned k = 0; old && k < old->nep; k++)
				if (!strcmp(old->ep[k].id, d->id)) {
					d->healthy = old->ep[k].healthy;
					d->slot = old->ep[k].slot;
					if (old->ep[k].cfg_weight == d->cfg_weight)
						d->weight = old->ep[k].weight;
				}
		}
		bool same_space = old && old->have_assign && old->a.nslices == s->space.nslices &&
		                  old->a.block_bits == s->space.s;
		if (!same_space) {
			if (svc_dyn_assign_fresh(sd, s))
				goto nomem;
			continue;
		}
		/* Keep the slices: endpoints that left the file leave the assignment. */
		if (assign_copy(&sd->a, &old->a))
			goto nomem;
		sd->have_assign = true;
		for (unsigned k = 0; k < old->nep; k++) {
			bool kept = false;
			for (unsigned e = 0; e < sd->nep; e++)
				kept |= !strcmp(sd->ep[e].id, old->ep[k].id);
			if (!kept && old->ep[k].slot >= 0)
				(void)assign_del(&sd->a, (unsigned)old->ep[k].slot, NULL);
		}
		if (svc_dyn_settle(sd))
			goto nomem;
	}
	out->svc = nsvc;
	out->nsvc = cfg->nsvc;
	return 0;
nomem:
	for (unsigned i = 0; i < cfg->nsvc; i++)
		svc_dyn_free(&nsvc[i]);
	free(nsvc);
	return -ENOMEM;
}

int dnsd_dyn_set(struct dnsd_dyn *dyn, const struct dns_name *svc, const char *ep, int health,
                 long weight)
{
	if (weight > ASSIGN_MAX_WEIGHT)
		return -EINVAL;
	for (unsigned i = 0; i < dyn->nsvc; i++) {
		struct dnsd_svc_dyn *sd = &dyn->svc[i];
		if (!dns_name_eq(&sd->name, svc))
			continue;
		for (unsigned e = 0; e < sd->nep; e++) {
			if (strcmp(sd->ep[e].id, ep))
				continue;
			if (health >= 0)
				sd->ep[e].healthy = health;
			if (weight >= 0)
				sd->ep[e].weight = (uint32_t)weight;
			return svc_dyn_settle(sd);
		}
	}
	return -ENOENT;
}

/* ---- building the serving state ---- */

struct builder {
	struct dns_state *st;
	size_t arena_cap;
	unsigned nodes_cap;
	uint8_t scratch[65535];
	char *err;
	size_t errlen;
};

static int node_get(struct builder *b, const struct dns_name *name)
{
	struct dns_state *st = b->st;
	struct dns_name n = *name;
	dns_name_lower(&n);
	for (unsigned i = 0; i < st->nnodes; i++)
		if (st->nodes[i].name.len == n.len &&
		    !memcmp(st->nodes[i].name.wire, n.wire, n.len))
			return (int)i;
	if (st->nnodes == b->nodes_cap) {
		unsigned nc = b->nodes_cap ? 2 * b->nodes_cap : 16;
		struct dz_node *nv = realloc(st->nodes, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		st->nodes = nv;
		b->nodes_cap = nc;
	}
	struct dz_node *nd = &st->nodes[st->nnodes];
	memset(nd, 0, sizeof(*nd));
	nd->name = n;
	nd->svc = -1;
	return (int)st->nnodes++;
}

/* Adds the node and every empty non-terminal between it and the apex. */
static int node_with_parents(struct builder *b, const struct dns_name *name)
{
	int idx = node_get(b, name);
	if (idx < 0)
		return idx;
	struct dns_name p = *name;
	while (p.len > b->st->zone.len) {
		unsigned l = p.wire[0] + 1u;
		memmove(p.wire, p.wire + l, p.len - l);
		p.len = (uint8_t)(p.len - l);
		if (node_get(b, &p) < 0)
			return -ENOMEM;
	}
	return idx;
}

/* Appends what the writer put after the question to the arena as a node's tail. */
static int tail_save(struct builder *b, struct dns_writer *w, const struct dz_node *nd,
                     struct dz_tail *t)
{
	int len = dns_writer_finish(w);
	if (len < 0)
		return peak_errf(b->err, b->errlen, "an answer does not fit a DNS message");
	size_t start = DNS_HDR_LEN + nd->name.len + 4u;
	size_t n = (size_t)len - start;
	struct dns_state *st = b->st;
	if (st->arena_len + n > b->arena_cap) {
		size_t nc = b->arena_cap ? 2 * b->arena_cap : 4096;
		while (nc < st->arena_len + n)
			nc *= 2;
		uint8_t *na = realloc(st->arena, nc);
		if (!na)
			return -ENOMEM;
		st->arena = na;
		b->arena_cap = nc;
	}
	memcpy(st->arena + st->arena_len, b->scratch + start, n);
	t->off = (uint32_t)st->arena_len;
	t->len = (uint16_t)n;
	t->an = w->counts[DNS_S_ANSWER];
	t->ns = w->counts[DNS_S_AUTHORITY];
	t->ar = w->counts[DNS_S_ADDITIONAL];
	t->present = true;
	st->arena_len += n;
	return 0;
}

static void tail_begin(struct builder *b, struct dns_writer *w, const struct dz_node *nd,
                       uint16_t type)
{
	dns_writer_init(w, b->scratch, sizeof(b->scratch), 0, 0);
	dns_writer_question(w, &nd->name, type, DNS_C_IN);
}

static void write_soa(struct builder *b, struct dns_writer *w, enum dns_section s, uint32_t ttl)
{
	const struct peak_config *c = b->st->cfg;
	dns_writer_rr_begin(w, s, &b->st->zone, DNS_T_SOA, DNS_C_IN, ttl);
	dns_writer_soa_rdata(w, &c->soa);
	dns_writer_rr_end(w);
}

static void write_glue(struct builder *b, struct dns_writer *w, enum dns_section s,
                       const struct dns_name *host)
{
	const struct peak_config *c = b->st->cfg;
	for (unsigned i = 0; i < c->nns; i++) {
		if (!c->ns[i].has_addr || !dns_name_eq(&c->ns[i].name, host))
			continue;
		dns_writer_rr_begin(w, s, &c->ns[i].name, DNS_T_AAAA, DNS_C_IN, c->ttl.ns);
		dns_writer_bytes(w, c->ns[i].addr, 16);
		dns_writer_rr_end(w);
		return;
	}
}

static bool has_glue(const struct peak_config *c, const struct dns_name *host)
{
	for (unsigned i = 0; i < c->nns; i++)
		if (c->ns[i].has_addr && dns_name_eq(&c->ns[i].name, host))
			return true;
	return false;
}

/* leaf.NAME into out; -ENAMETOOLONG when it does not fit a domain name. */
static int svc_leaf(const struct dns_name *name, const char *leaf, struct dns_name *out)
{
	if (dns_name_parse(leaf, out) || out->len - 1u + name->len > DNS_NAME_MAX)
		return -ENAMETOOLONG;
	memcpy(out->wire + out->len - 1, name->wire, name->len);
	out->len = (uint8_t)(out->len - 1 + name->len);
	return 0;
}

static int encode_node(struct builder *b, struct dz_node *nd)
{
	struct dns_state *st = b->st;
	const struct peak_config *c = st->cfg;
	struct dns_writer w;
	int r = 0;
	bool apex = dns_name_eq(&nd->name, &st->zone);

	tail_begin(b, &w, nd, DNS_T_SOA);
	write_soa(b, &w, DNS_S_AUTHORITY, st->neg_ttl);
	if ((r = tail_save(b, &w, nd, &nd->tail[DZ_NODATA])))
		return r;
	if (apex) {
		tail_begin(b, &w, nd, DNS_T_SOA);
		write_soa(b, &w, DNS_S_ANSWER, c->ttl.soa);
		if ((r = tail_save(b, &w, nd, &nd->tail[DZ_SOA])))
			return r;
		tail_begin(b, &w, nd, DNS_T_NS);
		for (unsigned i = 0; i < c->nns; i++) {
			dns_writer_rr_begin(&w, DNS_S_ANSWER, &nd->name, DNS_T_NS, DNS_C_IN,
			                    c->ttl.ns);
			dns_writer_name(&w, &c->ns[i].name, true);
			dns_writer_rr_end(&w);
		}
		for (unsigned i = 0; i < c->nns; i++)
			if (dns_name_under(&c->ns[i].name, &st->zone))
				write_glue(b, &w, DNS_S_ADDITIONAL, &c->ns[i].name);
		if ((r = tail_save(b, &w, nd, &nd->tail[DZ_NS])))
			return r;
	}
	if (has_glue(c, &nd->name)) {
		tail_begin(b, &w, nd, DNS_T_AAAA);
		write_glue(b, &w, DNS_S_ANSWER, &nd->name);
		if ((r = tail_save(b, &w, nd, &nd->tail[DZ_AAAA])))
			return r;
	}
	for (unsigned i = 0; i < c->nsvc; i++) {
		const struct cfg_service *s = &c->svc[i];
		struct dns_name ssa;
		if (dns_name_eq(&s->name, &nd->name)) {
			uint8_t rd[4 + 20 * SSA_MAX_PREFIXES];
			struct apl_item it;
			size_t rl = 0;
			for (unsigned p = 0; p < s->space.n; p++) {
				apl_item_from_prefix(&it, &s->space.pfx[p]);
				int k = apl_write(&it, 1, rd + rl, sizeof(rd) - rl);
				if (k < 0) {
					char name[DNS_NAME_STRLEN];
					dns_name_print(&s->name, name, sizeof(name));
					return peak_errf(b->err, b->errlen,
					                 "service %s: cannot encode its APL: %s",
					                 name, strerror(-k));
				}
				rl += (size_t)k;
			}
			tail_begin(b, &w, nd, DNS_T_APL);
			dns_writer_rr_begin(&w, DNS_S_ANSWER, &nd->name, DNS_T_APL, DNS_C_IN,
			                    c->ttl.apl);
			dns_writer_bytes(&w, rd, rl);
			dns_writer_rr_end(&w);
			if ((r = tail_save(b, &w, nd, &nd->tail[DZ_APL])))
				return r;
			nd->svc = (int)i;
		}
		dns_name_parse("_ssa", &ssa);
		if (ssa.len - 1u + s->name.len <= DNS_NAME_MAX) {
			memcpy(ssa.wire + ssa.len - 1, s->name.wire, s->name.len);
			ssa.len = (uint8_t)(ssa.len - 1 + s->name.len);
		}
		/* the content-type map (typemap.h) beside the descriptor: TXT _types.NAME */
		struct dns_name types;
		if (s->types[0] && svc_leaf(&s->name, "_types", &types) == 0 &&
		    dns_name_eq(&types, &nd->name)) {
			tail_begin(b, &w, nd, DNS_T_TXT);
			dns_writer_rr_begin(&w, DNS_S_ANSWER, &nd->name, DNS_T_TXT, DNS_C_IN,
			                    c->ttl.txt);
			dns_writer_txt_rdata(&w, s->types, strlen(s->types));
			dns_writer_rr_end(&w);
			if ((r = tail_save(b, &w, nd, &nd->tail[DZ_TXT])))
				return r;
			continue;
		}
		if (dns_name_eq(&ssa, &nd->name)) {
			char text[SSA_DESC_STRLEN];
			int tl = ssa_desc_print(&s->space.d, text, sizeof(text));
			tail_begin(b, &w, nd, DNS_T_TXT);
			dns_writer_rr_begin(&w, DNS_S_ANSWER, &nd->name, DNS_T_TXT, DNS_C_IN,
			                    c->ttl.txt);
			dns_writer_txt_rdata(&w, text, (size_t)tl);
			dns_writer_rr_end(&w);
			if ((r = tail_save(b, &w, nd, &nd->tail[DZ_TXT])))
				return r;
		}
	}
	/* RFC 8482: ANY gets one RRset, the first of these the node has. */
	static const enum dz_slot pref[] = {DZ_SOA, DZ_APL, DZ_TXT, DZ_AAAA, DZ_NS};
	nd->tail[DZ_ANY] = nd->tail[DZ_NODATA];
	for (size_t k = 0; k < sizeof(pref) / sizeof(pref[0]); k++)
		if (nd->tail[pref[k]].present) {
			nd->tail[DZ_ANY] = nd->tail[pref[k]];
			break;
		}
	return 0;
}

static uint64_t name_hash(const struct dns_state *st, const struct dns_name *n)
{
	return siphash24(st->hkey, n->wire, n->len);
}

const struct dz_node *dns_state_lookup(const struct dns_state *st, const struct dns_name *n)
{
	uint32_t i = (uint32_t)name_hash(st, n) & st->imask;
	for (uint32_t probe = 0; probe <= st->imask; probe++, i = (i + 1) & st->imask) {
		uint32_t v = st->index[i];
		if (!v)
			return NULL;
		const struct dz_node *nd = &st->nodes[v - 1];
		if (nd->name.len == n->len && !memcmp(nd->name.wire, n->wire, n->len))
			return nd;
	}
	return NULL;
}

static int build_index(struct dns_state *st)
{
	uint32_t size = 16;
	while (size < 2 * st->nnodes)
		size *= 2;
	if (!(st->index = calloc(size, sizeof(*st->index))))
		return -ENOMEM;
	st->imask = size - 1;
	for (unsigned n = 0; n < st->nnodes; n++) {
		uint32_t i = (uint32_t)name_hash(st, &st->nodes[n].name) & st->imask;
		while (st->index[i])
			i = (i + 1) & st->imask;
		st->index[i] = n + 1;
	}
	return 0;
}

static int build_service(struct builder *b, unsigned i, const struct dnsd_svc_dyn *sd)
{
	struct dns_state *st = b->st;
	const struct cfg_service *s = &st->cfg->svc[i];
	struct dz_svc *v = &st->svc[i];
	char name[DNS_NAME_STRLEN];
	dns_name_print(&s->name, name, sizeof(name));
	v->cfg = s;
	v->space = s->space;
	v->space_nopow = s->space;
	v->space_nopow.d.pow = 0; /* the nonce field stays (w), found by the server's search */
	v->ttl = st->cfg->ttl.aaaa;
	v->answers = s->answers;
	const struct ssa_desc *d = &s->space.d;
	v->slice_by_rule = d->select == SSA_SRC || d->select == SSA_HOP;
	v->binds_src = v->slice_by_rule || d->host == SSA_SRC || d->host == SSA_HOP;
	if (d->select == SSA_HOP || d->host == SSA_HOP) {
		int r = peak_secret_read(s->secret_file, v->secret);
		if (r)
			return peak_errf(
			    b->err, b->errlen,
			    "service %s: cannot read a 32-hex-digit secret from %s: %s", name,
			    s->secret_file, r == -EINVAL ? "not 32 hex digits" : strerror(-r));
		v->has_secret = true;
	}
	unsigned nep = s->nep;
	v->counter = calloc(nep ? nep : 1, sizeof(*v->counter));
	v->ep_first = calloc(nep + 1, sizeof(*v->ep_first));
	v->ep_nslice = calloc(nep ? nep : 1, sizeof(*v->ep_nslice));
	v->cand_ep = calloc(nep ? nep : 1, sizeof(*v->cand_ep));
	v->cand_cum = calloc(nep ? nep : 1, sizeof(*v->cand_cum));
	if (!v->counter || !v->ep_first || !v->ep_nslice || !v->cand_ep || !v->cand_cum)
		return -ENOMEM;
	for (unsigned e = 0; e < nep; e++)
		if (!(v->counter[e] = steer_counter_get(name, s->ep[e].id)))
			return -ENOMEM;
	if (!sd->have_assign)
		return 0;
	v->nslices = sd->a.nslices;
	v->owner = malloc(v->nslices * sizeof(*v->owner));
	v->ep_slices = malloc(v->nslices * sizeof(*v->ep_slices));
	if (!v->owner || !v->ep_slices)
		return -ENOMEM;
	for (uint32_t g = 0; g < v->nslices; g++) {
		int32_t slot = sd->a.owner[g];
		int e = slot >= 0 && (unsigned)slot < sd->nslot_ep ? sd->slot_ep[slot] : -1;
		v->owner[g] = e;
		if (e >= 0)
			v->ep_nslice[e]++;
	}
	for (unsigned e = 0; e < nep; e++)
		v->ep_first[e + 1] = v->ep_first[e] + v->ep_nslice[e];
	uint32_t *fill = calloc(nep ? nep : 1, sizeof(*fill));
	if (!fill)
		return -ENOMEM;
	for (uint32_t g = 0; g < v->nslices; g++)
		if (v->owner[g] >= 0) {
			int32_t e = v->owner[g];
			v->ep_slices[v->ep_first[e] + fill[e]++] = g;
		}
	free(fill);
	uint64_t cum = 0;
	for (unsigned e = 0; e < nep; e++)
		if (sd->ep[e].healthy && sd->ep[e].weight && v->ep_nslice[e]) {
			cum += sd->ep[e].weight;
			v->cand_ep[v->ncand] = e;
			v->cand_cum[v->ncand++] = cum;
		}
	/* Nobody healthy: steer by the slices as they are rather than answer nothing. */
	if (!v->ncand)
		for (unsigned e = 0; e < nep; e++)
			if (v->ep_nslice[e]) {
				cum += v->ep_nslice[e];
				v->cand_ep[v->ncand] = e;
				v->cand_cum[v->ncand++] = cum;
			}
	return 0;
}

static void svc_free(struct dz_svc *v)
{
	free(v->owner);
	free(v->ep_slices);
	free(v->ep_first);
	free(v->ep_nslice);
	free(v->cand_ep);
	free(v->cand_cum);
	free(v->counter);
}

void dns_state_free(struct dns_state *st)
{
	if (!st)
		return;
	for (unsigned i = 0; i < st->nsvc; i++)
		svc_free(&st->svc[i]);
	free(st->svc);
	free(st->nodes);
	free(st->index);
	free(st->arena);
	config_free(st->cfg);
	free(st);
}

struct dns_state *dns_state_build(struct peak_config *cfg, struct dnsd_dyn *dyn, char *err,
                                  size_t errlen)
{
	static uint64_t serial;
	struct builder *b = calloc(1, sizeof(*b));
	struct dns_state *st = calloc(1, sizeof(*st));
	struct dnsd_dyn nd = {0};
	int r = -ENOMEM;
	if (!b || !st)
		goto fail;
	b->st = st;
	b->err = err;
	b->errlen = errlen;
	st->cfg = cfg;
	st->zone = cfg->zone;
	dns_name_lower(&st->zone);
	st->neg_ttl = cfg->ttl.soa < cfg->soa.minimum ? cfg->ttl.soa : cfg->soa.minimum;
	if (getrandom(st->hkey, sizeof(st->hkey), 0) != (ssize_t)sizeof(st->hkey))
		goto fail;
	if ((r = dyn_sync(dyn, cfg, &nd)))
		goto fail;
	if ((r = node_get(b, &st->zone)) < 0)
		goto fail;
	for (unsigned i = 0; i < cfg->nns; i++)
		if (has_glue(cfg, &cfg->ns[i].name) &&
		    dns_name_under(&cfg->ns[i].name, &st->zone) &&
		    (r = node_with_parents(b, &cfg->ns[i].name)) < 0)
			goto fail;
	for (unsigned i = 0; i < cfg->nsvc; i++) {
		struct dns_name ssa;
		dns_name_parse("_ssa", &ssa);
		if ((r = node_with_parents(b, &cfg->svc[i].name)) < 0)
			goto fail;
		if (ssa.len - 1u + cfg->svc[i].name.len > DNS_NAME_MAX)
			continue; /* no room for the _ssa label: the service gets no TXT */
		memcpy(ssa.wire + ssa.len - 1, cfg->svc[i].name.wire, cfg->svc[i].name.len);
		ssa.len = (uint8_t)(ssa.len - 1 + cfg->svc[i].name.len);
		if ((r = node_get(b, &ssa)) < 0)
			goto fail;
		if (cfg->svc[i].types[0] && svc_leaf(&cfg->svc[i].name, "_types", &ssa) == 0 &&
		    (r = node_get(b, &ssa)) < 0)
			goto fail;
	}
	for (unsigned n = 0; n < st->nnodes; n++)
		if ((r = encode_node(b, &st->nodes[n])))
			goto fail;
	if ((r = build_index(st)))
		goto fail;
	st->svc = calloc(cfg->nsvc ? cfg->nsvc : 1, sizeof(*st->svc));
	if (!st->svc)
		goto fail;
	st->nsvc = cfg->nsvc;
	for (unsigned i = 0; i < cfg->nsvc; i++)
		if ((r = build_service(b, i, &nd.svc[i])))
			goto fail;
	st->serial = ++serial;
	dnsd_dyn_fini(dyn);
	*dyn = nd;
	free(b);
	return st;
fail:
	dnsd_dyn_fini(&nd);
	if (r == -ENOMEM && err && errlen)
		snprintf(err, errlen, "out of memory building the serving state");
	if (st)
		st->cfg = NULL; /* the caller still owns cfg on failure */
	dns_state_free(st);
	free(b);
	return NULL;
}
