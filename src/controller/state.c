/* The controller's maps as control lines, the live state handed to the store (store.h) on
 * every change, and the adoption of a saved assignment at start, on reload and when a
 * standby takes over. */
#include "ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sys/log.h"
#include "steer.h"

/* Appends a service's whole map: "map", every endpoint holding slices with its blocks
 * (CTL_EP_BLOCKS_MAX per line), "end". The blocks of every endpoint come from one pass
 * over the map (assign_blocks_all): a pass per endpoint made the map of a service of 100
 * endpoints cost 100 reads of its slices. */
void ctlr_map_text(const struct csvc *v, struct text *t)
{
	struct ctl_msg *m = calloc(1, sizeof(*m));
	struct assign_block *all = NULL, *b = NULL;
	int32_t *slot_of = NULL;
	size_t nall = 0, *first = NULL, *fill = NULL;
	unsigned nslot = v->have ? v->a.nep : 0;
	if (!m || (v->have && assign_blocks_all(&v->a, &all, &slot_of, &nall)) ||
	    !(first = calloc(nslot + 2, sizeof(*first))) ||
	    !(fill = calloc(nslot + 1, sizeof(*fill))) ||
	    !(b = malloc((nall ? nall : 1) * sizeof(*b)))) {
		t->err = -ENOMEM;
		goto out;
	}
	/* the blocks grouped by slot, each group in slice order: slot s holds
	 * b[first[s] .. first[s + 1]) */
	for (size_t k = 0; k < nall; k++)
		if (slot_of[k] >= 0 && (unsigned)slot_of[k] < nslot)
			first[slot_of[k] + 1]++;
	for (unsigned s = 0; s < nslot; s++)
		first[s + 1] += first[s];
	for (size_t k = 0; k < nall; k++)
		if (slot_of[k] >= 0 && (unsigned)slot_of[k] < nslot)
			b[first[slot_of[k]] + fill[slot_of[k]]++] = all[k];
	m->kind = CTL_MAP;
	ctlr_copy(m->svc, sizeof(m->svc), v->name);
	ctlr_text_msg(t, m);
	for (unsigned e = 0; v->have && e < v->s->nep && !t->err; e++) {
		if (v->slot[e] < 0 || (unsigned)v->slot[e] >= nslot)
			continue;
		size_t k = first[v->slot[e]], end = first[v->slot[e] + 1];
		m->kind = CTL_EP;
		ctlr_copy(m->id, sizeof(m->id), v->s->ep[e].id);
		do {
			m->nblocks = 0;
			while (k < end && m->nblocks < CTL_EP_BLOCKS_MAX)
				m->blocks[m->nblocks++] = b[k++];
			ctlr_text_msg(t, m);
		} while (k < end);
	}
	m->kind = CTL_END;
	ctlr_text_msg(t, m);
out:
	free(all);
	free(slot_of);
	free(first);
	free(fill);
	free(b);
	free(m);
}

/* One service's part of the live state as control lines: its map, then "add ID ADDRESS
 * WEIGHT [NODE]" for every endpoint added at run time (runtime.c), "weight" for every
 * endpoint and "health ... down" for the endpoints that are down. Nothing when the service
 * has no assignment. */
void ctlr_svc_text(const struct csvc *v, struct text *t)
{
	struct ctl_msg m = {0};
	if (!v->have)
		return;
	ctlr_map_text(v, t);
	ctlr_copy(m.svc, sizeof(m.svc), v->name);
	for (unsigned e = 0; e < v->s->nep; e++) { /* the marks of endpoints added at run time */
		const struct cfg_endpoint *ep = &v->s->ep[e];
		if (ep->line)
			continue;
		m.kind = CTL_ADD;
		ctlr_copy(m.id, sizeof(m.id), ep->id);
		memcpy(m.addr, ep->addr, 16);
		ctlr_copy(m.node, sizeof(m.node), ep->node);
		m.weight = ep->weight; /* the configured one (the ceiling); "weight" the live one */
		ctlr_text_msg(t, &m);
	}
	m.node[0] = '\0';
	for (unsigned e = 0; e < v->s->nep; e++) {
		ctlr_copy(m.id, sizeof(m.id), v->s->ep[e].id);
		m.kind = CTL_WEIGHT;
		m.weight = v->weight[e]; /* while steering, the effective weight (steer.h) */
		ctlr_text_msg(t, &m);
		if (!v->healthy[e]) {
			m.kind = CTL_HEALTH;
			m.up = false;
			ctlr_text_msg(t, &m);
		}
	}
}

/* The whole live state as control lines: every service's part (ctlr_svc_text). */
int ctlr_state_text(const struct ctl *c, struct text *t)
{
	for (unsigned i = 0; i < c->cfg->nsvc; i++)
		ctlr_svc_text(&c->svc[i], t);
	return t->err;
}

void ctlr_svc_dirty(struct csvc *v)
{
	v->rec_ok = false;
}

/* Brings v's saved record (v->rec) up to date. Returns 0 or -ENOMEM. */
static int svc_rec(struct csvc *v)
{
	struct text t = {0};
	if (v->rec_ok)
		return 0;
	ctlr_svc_text(v, &t);
	if (t.err) {
		free(t.p);
		return t.err;
	}
	free(v->rec);
	v->rec = t.p;
	v->reclen = t.len;
	v->rec_ok = true;
	return 0;
}

/* Saves the live state to the store, one record per service with an assignment: the
 * records of services that did not change since the last save are the ones kept then, so
 * a change costs the services it touched (the store compares and writes only those).
 * Only the leader writes. Failures are logged (by the store); the controller goes on: a
 * write the store did not take is tried again at every store interval until it is
 * (c->unsaved), one refused because another writer came first (-ESTALE) is left to the
 * leadership check of the next keepalive. */
void ctlr_state_save(struct ctl *c)
{
	struct store_rec *r = NULL;
	unsigned n = 0, nsvc = c->cfg->nsvc;
	int err = -ENOMEM;
	if (!c->store || !c->leader)
		return;
	if (!(r = calloc(nsvc ? nsvc : 1, sizeof(*r))))
		goto out;
	for (unsigned i = 0; i < nsvc; i++) {
		struct csvc *v = &c->svc[i];
		if (!v->have)
			continue;
		if ((err = svc_rec(v)))
			goto out;
		r[n++] = (struct store_rec){.name = v->name, .text = v->rec, .len = v->reclen};
	}
	err = c->store->ops->save(c->store, r, n);
	c->stale_store = err == -ESTALE;
	c->unsaved = err && err != -ESTALE; /* the store did not answer: saved again later */
	err = 0;
out:
	if (err)
		log_msg(LOG_WARNING, "controller: saving the state: %s", strerror(-err));
	free(r);
}

/* Reads a whole small file (at most 64 MiB) into *out (malloc'ed, NUL-terminated). */
int ctlr_file_read(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "re");
	struct text t = {0};
	char buf[65536];
	size_t k;
	if (!f)
		return -errno;
	while ((k = fread(buf, 1, sizeof(buf), f)) > 0 && !t.err && t.len < (64u << 20))
		ctlr_text_add(&t, buf, k);
	ctlr_text_add(&t, "", 1);
	fclose(f);
	if (t.err) {
		free(t.p);
		return t.err;
	}
	*out = t.p;
	*len = t.len - 1;
	return 0;
}

/* The index of the endpoint with this id in s, or -1. */
int ctlr_ep_index(const struct cfg_service *s, const char *id)
{
	for (unsigned e = 0; e < s->nep; e++)
		if (!strcmp(s->ep[e].id, id))
			return (int)e;
	return -1;
}

int ctlr_ep_index_at(const struct cfg_service *s, const char *id, int hint)
{
	if (hint >= 0 && (unsigned)hint < s->nep && !strcmp(s->ep[hint].id, id))
		return hint;
	return ctlr_ep_index(s, id);
}

/* FNV-1a over the lower-cased wire form: names equal under dns_name_eq hash alike. */
static uint32_t name_hash(const struct dns_name *n)
{
	uint32_t h = 2166136261u;
	for (unsigned i = 0; i < n->len; i++) {
		uint8_t ch = n->wire[i];
		h = (h ^ (ch >= 'A' && ch <= 'Z' ? ch + 32u : ch)) * 16777619u;
	}
	return h;
}

void ctlr_index_fini(struct name_index *x)
{
	free(x->slot);
	*x = (struct name_index){0};
}

int ctlr_index_build(struct name_index *x, const struct peak_config *cfg)
{
	uint32_t cap = 16;
	ctlr_index_fini(x);
	while (cap < 2u * cfg->nsvc)
		cap *= 2;
	if (!(x->slot = calloc(cap, sizeof(*x->slot))))
		return -ENOMEM;
	x->mask = cap - 1;
	x->cfg = cfg;
	for (unsigned i = 0; i < cfg->nsvc; i++) {
		uint32_t h = name_hash(&cfg->svc[i].name) & x->mask;
		bool dup = false; /* (a repeated name: the first one is found, as by a scan) */
		for (; x->slot[h] && !dup; h = (h + 1) & x->mask)
			dup = dns_name_eq(&cfg->svc[x->slot[h] - 1].name, &cfg->svc[i].name);
		if (!dup)
			x->slot[h] = i + 1;
	}
	return 0;
}

int ctlr_index_find(const struct name_index *x, const struct dns_name *n)
{
	if (!x->slot)
		return -1;
	for (uint32_t h = name_hash(n) & x->mask; x->slot[h]; h = (h + 1) & x->mask)
		if (dns_name_eq(&x->cfg->svc[x->slot[h] - 1].name, n))
			return (int)x->slot[h] - 1;
	return -1;
}

/* The saved state's lines grouped by service in one pass, so that each service's adopt
 * reads its own lines only (a scan of the whole state per service made a reload of 1,000
 * services of 100 endpoints cost half a minute). A span is a run of consecutive lines of
 * one service: its "map" line and the "ep"/"end" lines inside that map, its "weight" and
 * "health" lines. Lines of services the configuration does not have are left out. */
struct state_span {
	size_t at, len;
	int32_t next; /* the service's next span, -1: none */
};

struct state_index {
	struct state_span *sp;
	uint32_t nsp, cap;
	int32_t *head, *tail; /* per service: its first and last span, -1: none */
	bool *has_map;        /* per service: a "map" line of it was seen */
	bool bad;             /* a line is not in the grammar: indexing stopped there */
};

static void state_index_fini(struct state_index *si)
{
	free(si->sp);
	free(si->head);
	free(si->tail);
	free(si->has_map);
	*si = (struct state_index){0};
}

/* Adds the line [at, at+len) to service i, extending its last span when it ends there. */
static int state_index_add(struct state_index *si, int i, size_t at, size_t len)
{
	int32_t t = si->tail[i];
	if (t >= 0 && si->sp[t].at + si->sp[t].len == at) {
		si->sp[t].len += len;
		return 0;
	}
	if (si->nsp == si->cap) {
		uint32_t nc = si->cap ? 2 * si->cap : 1024;
		struct state_span *np = realloc(si->sp, nc * sizeof(*np));
		if (!np)
			return -ENOMEM;
		si->sp = np;
		si->cap = nc;
	}
	si->sp[si->nsp] = (struct state_span){.at = at, .len = len, .next = -1};
	if (t >= 0)
		si->sp[t].next = (int32_t)si->nsp;
	else
		si->head[i] = (int32_t)si->nsp;
	si->tail[i] = (int32_t)si->nsp++;
	return 0;
}

/* Indexes state (len bytes; NULL: none) by the services of x. Returns 0 or -ENOMEM. */
static int state_index_build(struct state_index *si, const struct name_index *x, const char *state,
                             size_t len)
{
	unsigned n = x->cfg->nsvc ? x->cfg->nsvc : 1;
	struct ctl_msg *m = malloc(sizeof(*m));
	char last[DNS_NAME_STRLEN] = "";
	int last_i = -1, cur = -1, ret = -ENOMEM;
	*si = (struct state_index){0};
	si->head = malloc(n * sizeof(*si->head));
	si->tail = malloc(n * sizeof(*si->tail));
	si->has_map = calloc(n, sizeof(*si->has_map));
	if (!m || !si->head || !si->tail || !si->has_map)
		goto out;
	for (unsigned i = 0; i < n; i++)
		si->head[i] = si->tail[i] = -1;
	for (size_t at = 0, ll; state && at < len;) {
		long k = ctl_line_split((const uint8_t *)state + at, len - at, &ll);
		if (k <= 0 || ctl_parse(state + at, ll, m)) {
			si->bad = true;
			break;
		}
		int i = -1;
		if (m->kind == CTL_MAP || m->kind == CTL_WEIGHT || m->kind == CTL_HEALTH ||
		    m->kind == CTL_ADD) {
			struct dns_name nm;
			if (!m->svc[0])
				i = -1;
			else if (!strcmp(m->svc, last))
				i = last_i; /* (a service's lines come together) */
			else if (!dns_name_parse(m->svc, &nm)) {
				i = ctlr_index_find(x, &nm);
				ctlr_copy(last, sizeof(last), m->svc);
				last_i = i;
			}
			if (m->kind == CTL_MAP) {
				cur = i;
				if (i >= 0)
					si->has_map[i] = true;
			}
		} else if (m->kind == CTL_EP || m->kind == CTL_END) {
			i = cur;
			if (m->kind == CTL_END)
				cur = -1;
		}
		if (i >= 0 && state_index_add(si, i, at, (size_t)k))
			goto out;
		at += (size_t)k;
	}
	ret = 0;
out:
	free(m);
	if (ret)
		state_index_fini(si);
	return ret;
}

/*
 * Adopts a saved assignment for service v (index i of si's configuration) from its lines
 * in state (control lines as ctlr_svc_text writes them, indexed by si). It must match the
 * configuration: every slice of the service held by exactly one known endpoint that is up,
 * and down endpoints holding nothing. The saved weights (while steering, scaled if saved in
 * configured units) and health come with it. An endpoint the state does not know (new in
 * the configuration) then joins as assign_add does, taking only its share. Returns 0
 * (adopted), -ENOENT (the state has no such service) or -EBADMSG (it does not match, or a
 * line of the state is not in the grammar; the caller builds a fresh assignment).
 */
static int adopt(struct csvc *v, const char *state, const struct state_index *si, unsigned i)
{
	struct ctl_msg *m = malloc(sizeof(*m));
	int32_t *own = NULL;
	uint32_t *count = NULL;
	bool *known = NULL;
	int ret = -ENOENT, cur = -1;
	bool in = false, seen = si->has_map[i];
	uint32_t ns = (uint32_t)v->s->space.nslices;
	unsigned nep = v->s->nep;
	if (!m || !state || !seen)
		goto out;
	if (si->bad) { /* (as a scan stopping at the bad line would) */
		ret = -EBADMSG;
		goto out;
	}
	own = malloc(ns * sizeof(*own));
	count = calloc(nep ? nep : 1, sizeof(*count));
	known = calloc(nep ? nep : 1, sizeof(*known));
	if (!own || !count || !known) {
		ret = -ENOMEM;
		goto out;
	}
	for (uint32_t s = 0; s < ns; s++)
		own[s] = -1;
	for (int32_t sp = si->head[i]; sp >= 0; sp = si->sp[sp].next) {
		const char *text = state + si->sp[sp].at;
		size_t len = si->sp[sp].len;
		for (size_t at = 0, ll; at < len;) {
			long k = ctl_line_split((const uint8_t *)text + at, len - at, &ll);
			if (k <= 0 || ctl_parse(text + at, ll, m))
				goto mismatch; /* (indexed: it parsed before) */
			at += (size_t)k;
			if (m->kind == CTL_MAP) {
				in = true;
				continue;
			}
			if (m->kind == CTL_END) {
				in = false;
				continue;
			}
			if (m->kind == CTL_EP && in) {
				if ((cur = ctlr_ep_index_at(v->s, m->id, cur + 1)) < 0)
					goto mismatch;
				for (unsigned b = 0; b < m->nblocks; b++) {
					uint64_t start = m->blocks[b].start,
					         n = 1ull << m->blocks[b].log2;
					if (start + n > ns)
						goto mismatch;
					for (uint64_t s = start; s < start + n; s++) {
						if (own[s] >= 0)
							goto mismatch;
						own[s] = cur;
					}
					count[cur] += (uint32_t)n;
				}
				continue;
			}
			if (m->kind != CTL_WEIGHT && m->kind != CTL_HEALTH)
				continue;
			if ((cur = ctlr_ep_index_at(v->s, m->id,
			                            m->kind == CTL_WEIGHT ? cur + 1 : cur)) < 0)
				goto mismatch;
			if (m->kind == CTL_WEIGHT) {
				v->weight[cur] = m->weight;
				known[cur] = true;
			} else
				v->healthy[cur] = m->up;
		}
	}
	if (!seen)
		goto out;
	/* Steering: when every weight is under its floor on the fine scale, the state was
	 * saved by a controller without steering (weights in configured units): scaled, so
	 * the shares stay and steering starts from the ceilings, not the floors. (One weight
	 * under its floor alone is an endpoint that shed, under a ceiling a reload raised.) */
	bool units = v->steer;
	for (unsigned e = 0; e < nep; e++)
		if (known[e] && v->weight[e] >= steer_floor(steer_fine(v->s->ep[e].weight)))
			units = false;
	for (unsigned e = 0; units && e < nep; e++)
		if (known[e])
			v->weight[e] = steer_fine(v->weight[e]);
	for (uint32_t s = 0; s < ns; s++)
		if (own[s] < 0 || !v->healthy[own[s]] || !known[own[s]])
			goto mismatch;
	/* The saved map as an assignment: one live slot per endpoint that is up, in the
	 * endpoints' order; the targets are what they hold (the saved map was balanced). */
	struct assign a = {.nslices = ns, .block_bits = v->s->space.s};
	a.owner = own;
	a.ep = calloc(nep ? nep : 1, sizeof(*a.ep));
	a.cap = nep ? nep : 1;
	if (!a.ep) {
		ret = -ENOMEM;
		goto out;
	}
	int32_t *slot_of = (int32_t *)count; /* reuse: count is read before it is rewritten */
	for (unsigned e = 0; e < nep; e++) {
		if (!v->healthy[e] || !known[e]) {
			v->slot[e] = -1;
			continue;
		}
		a.ep[a.nep] = (struct assign_ep){
		    .weight = v->weight[e], .count = count[e], .target = count[e], .live = true};
		v->slot[e] = (int)a.nep;
		slot_of[e] = (int32_t)a.nep++;
	}
	for (uint32_t s = 0; s < ns; s++)
		own[s] = slot_of[own[s]];
	v->a = a;
	v->have = true;
	own = NULL;
	for (unsigned e = 0; e < nep; e++) {
		int slot;
		if (known[e] || (slot = assign_add(&v->a, v->weight[e], NULL)) < 0)
			continue;
		v->slot[e] = slot;
		v->healthy[e] = true;
	}
	ret = 0;
	goto out;
mismatch:
	ret = -EBADMSG;
out:
	if (ret) {
		for (unsigned e = 0; e < nep; e++) {
			uint32_t w = v->s->ep[e].weight;
			v->weight[e] = v->steer ? steer_fine(w) : w;
			v->healthy[e] = true;
		}
	}
	free(own);
	free(count);
	free(known);
	free(m);
	return ret;
}

/* Frees n services built by ctlr_svcs_build (NULL is fine). */
void ctlr_svcs_free(struct csvc *svc, unsigned n)
{
	for (unsigned i = 0; svc && i < n; i++) {
		if (svc[i].have)
			assign_fini(&svc[i].a);
		free(svc[i].slot);
		free(svc[i].healthy);
		free(svc[i].weight);
		free(svc[i].stale);
		free(svc[i].conns);
		free(svc[i].cpu_ns);
		free(svc[i].ceil);
		free(svc[i].load);
		free(svc[i].reason);
		free(svc[i].quiet);
		free(svc[i].rec);
	}
	free(svc);
}

/* Whether a reload can keep the live service built for a as the service b: the same name
 * (same case: the record's key is printed from it), the same slices and the same endpoints
 * (ids, in order, and weights). What else differs (addresses, nodes, prefixes of the same
 * size) the controller reads through v->s, so it follows the new configuration. */
bool ctlr_svc_same(const struct cfg_service *a, const struct cfg_service *b)
{
	if (a->name.len != b->name.len || memcmp(a->name.wire, b->name.wire, a->name.len) ||
	    a->space.nslices != b->space.nslices || a->space.s != b->space.s || a->nep != b->nep)
		return false;
	for (unsigned e = 0; e < a->nep; e++)
		if (a->ep[e].weight != b->ep[e].weight || strcmp(a->ep[e].id, b->ep[e].id))
			return false;
	return true;
}

struct csvc *ctlr_svcs_build(const struct peak_config *cfg, const char *state, size_t len,
                             bool steer)
{
	return ctlr_svcs_build_some(cfg, state, len, steer, NULL);
}

/* Builds the services of cfg, each adopting its part of state (see adopt) or else the
 * initial assignment. With steer (--steer metrics) the weights are effective weights on
 * the fine scale (steer.h): the state's weights are taken as such (a takeover moves
 * nothing), an initial assignment gets the configured weights scaled, and the ceilings are
 * the configured weights. Services with skip[i] are left zeroed (the caller fills them).
 * Returns the array or NULL (out of memory). */
struct csvc *ctlr_svcs_build_some(const struct peak_config *cfg, const char *state, size_t len,
                                  bool steer, const bool *skip)
{
	struct csvc *svc = calloc(cfg->nsvc ? cfg->nsvc : 1, sizeof(*svc));
	struct name_index x = {0};
	struct state_index si = {0};
	if (svc && state && (ctlr_index_build(&x, cfg) || state_index_build(&si, &x, state, len))) {
		free(svc);
		svc = NULL;
	}
	for (unsigned i = 0; svc && i < cfg->nsvc; i++) {
		struct csvc *v = &svc[i];
		unsigned n = cfg->svc[i].nep ? cfg->svc[i].nep : 1;
		if (skip && skip[i])
			continue;
		v->s = &cfg->svc[i];
		dns_name_print(&v->s->name, v->name, sizeof(v->name));
		v->slot = calloc(n, sizeof(*v->slot));
		v->healthy = calloc(n, sizeof(*v->healthy));
		v->weight = calloc(n, sizeof(*v->weight));
		v->stale = calloc(n, sizeof(*v->stale));
		v->conns = calloc(n, sizeof(*v->conns));
		v->cpu_ns = calloc(n, sizeof(*v->cpu_ns));
		v->ceil = calloc(n, sizeof(*v->ceil));
		v->load = calloc(n, sizeof(*v->load));
		v->reason = calloc(n, sizeof(*v->reason));
		v->quiet = calloc(n, sizeof(*v->quiet));
		v->steer = steer;
		if (!v->slot || !v->healthy || !v->weight || !v->stale || !v->conns || !v->cpu_ns ||
		    !v->ceil || !v->load || !v->reason || !v->quiet) {
			ctlr_svcs_free(svc, cfg->nsvc);
			svc = NULL;
			break;
		}
		for (unsigned e = 0; e < v->s->nep; e++) {
			v->healthy[e] = true;
			v->ceil[e] = v->s->ep[e].weight;
			v->weight[e] = steer ? steer_fine(v->ceil[e]) : v->ceil[e];
		}
		int r = state && v->s->space.nslices <= ASSIGN_MAX_SLICES ? adopt(v, state, &si, i)
		                                                          : -ENOENT;
		if (r == -EBADMSG)
			log_msg(LOG_WARNING,
			        "controller: %s: the saved assignment does not match the "
			        "configuration; starting from the initial one",
			        v->name);
		if (!r) {
			v->adopted = true;
			for (unsigned e = 0; e < v->s->nep; e++)
				v->stale[e] = v->healthy[e] ? 0 : UINT64_MAX;
			continue;
		}
		v->have = config_service_assign(v->s, &v->a, v->slot) == 0;
		/* The same shares on the fine scale (unless a weight over 1000 was capped, the
		 * targets stay as they are: nothing moves until a weight changes). */
		for (unsigned e = 0; steer && v->have && e < v->s->nep; e++)
			if (v->slot[e] >= 0)
				v->a.ep[v->slot[e]].weight = v->weight[e];
	}
	state_index_fini(&si);
	ctlr_index_fini(&x);
	return svc;
}
