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
 * (CTL_EP_BLOCKS_MAX per line), "end". */
void ctlr_map_text(const struct csvc *v, struct text *t)
{
	struct ctl_msg *m = calloc(1, sizeof(*m));
	struct assign_block *b = NULL;
	if (!m) {
		t->err = -ENOMEM;
		return;
	}
	m->kind = CTL_MAP;
	ctlr_copy(m->svc, sizeof(m->svc), v->name);
	ctlr_text_msg(t, m);
	for (unsigned e = 0; v->have && e < v->s->nep && !t->err; e++) {
		if (v->slot[e] < 0)
			continue;
		size_t nb = assign_blocks(&v->a, (unsigned)v->slot[e], NULL, 0);
		struct assign_block *nbv = realloc(b, (nb ? nb : 1) * sizeof(*nbv));
		if (!nbv) {
			t->err = -ENOMEM;
			break;
		}
		b = nbv;
		if (nb) /* (assign_blocks copies from NULL when there is nothing) */
			assign_blocks(&v->a, (unsigned)v->slot[e], b, nb);
		m->kind = CTL_EP;
		ctlr_copy(m->id, sizeof(m->id), v->s->ep[e].id);
		size_t k = 0;
		do {
			m->nblocks = 0;
			while (k < nb && m->nblocks < CTL_EP_BLOCKS_MAX)
				m->blocks[m->nblocks++] = b[k++];
			ctlr_text_msg(t, m);
		} while (k < nb);
	}
	m->kind = CTL_END;
	ctlr_text_msg(t, m);
	free(b);
	free(m);
}

/* One service's part of the live state as control lines: its map, then "weight" for every
 * endpoint and "health ... down" for the endpoints that are down. Nothing when the service
 * has no assignment. */
void ctlr_svc_text(const struct csvc *v, struct text *t)
{
	struct ctl_msg m = {0};
	if (!v->have)
		return;
	ctlr_map_text(v, t);
	ctlr_copy(m.svc, sizeof(m.svc), v->name);
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

/* Saves the live state to the store, one record per service with an assignment. Only the
 * leader writes. Failures are logged (by the store); the controller goes on: a write the
 * store did not take is tried again at every store interval until it is (c->unsaved), one
 * refused because another writer came first (-ESTALE) is left to the leadership check of
 * the next keepalive. */
void ctlr_state_save(struct ctl *c)
{
	struct store_rec *r = NULL;
	struct text *t = NULL;
	unsigned n = 0, nsvc = c->cfg->nsvc;
	int err = -ENOMEM;
	if (!c->store || !c->leader)
		return;
	r = calloc(nsvc ? nsvc : 1, sizeof(*r));
	t = calloc(nsvc ? nsvc : 1, sizeof(*t));
	if (!r || !t)
		goto out;
	for (unsigned i = 0; i < nsvc; i++) {
		if (!c->svc[i].have)
			continue;
		ctlr_svc_text(&c->svc[i], &t[n]);
		if (t[n].err) {
			err = t[n].err;
			n++;
			goto out;
		}
		r[n] = (struct store_rec){.name = c->svc[i].name, .text = t[n].p, .len = t[n].len};
		n++;
	}
	err = c->store->ops->save(c->store, r, n);
	c->stale_store = err == -ESTALE;
	c->unsaved = err && err != -ESTALE; /* the store did not answer: saved again later */
	err = 0;
out:
	if (err)
		log_msg(LOG_WARNING, "controller: saving the state: %s", strerror(-err));
	for (unsigned i = 0; t && i < n; i++)
		free(t[i].p);
	free(t);
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

/*
 * Adopts a saved assignment for service v from state (control lines as state_text writes
 * them; NULL: none). It must match the configuration: every slice of the service held by
 * exactly one known endpoint that is up, and down endpoints holding nothing. The saved
 * weights (while steering, scaled if saved in configured units) and health come with it.
 * An endpoint the state does not know (new in the configuration) then joins as assign_add
 * does, taking only its share. Returns 0 (adopted), -ENOENT (the state has no such
 * service) or -EBADMSG (it does not match; the caller builds a fresh assignment).
 */
static int adopt(struct csvc *v, const char *state, size_t len)
{
	struct ctl_msg *m = malloc(sizeof(*m));
	int32_t *own = NULL;
	uint32_t *count = NULL;
	bool *known = NULL;
	int ret = -ENOENT, cur = -1;
	bool in = false, seen = false;
	struct dns_name want, got;
	uint32_t ns = (uint32_t)v->s->space.nslices;
	unsigned nep = v->s->nep;
	if (!m || !state || dns_name_parse(v->name, &want))
		goto out;
	own = malloc(ns * sizeof(*own));
	count = calloc(nep ? nep : 1, sizeof(*count));
	known = calloc(nep ? nep : 1, sizeof(*known));
	if (!own || !count || !known) {
		ret = -ENOMEM;
		goto out;
	}
	for (uint32_t s = 0; s < ns; s++)
		own[s] = -1;
	for (size_t at = 0, ll; at < len;) {
		long k = ctl_line_split((const uint8_t *)state + at, len - at, &ll);
		if (k <= 0 || ctl_parse(state + at, ll, m)) {
			ret = seen ? -EBADMSG : -ENOENT;
			goto out;
		}
		at += (size_t)k;
		bool mine = m->svc[0] && !dns_name_parse(m->svc, &got) && dns_name_eq(&got, &want);
		if (m->kind == CTL_MAP) {
			in = mine;
			seen |= mine;
			continue;
		}
		if (m->kind == CTL_END) {
			in = false;
			continue;
		}
		if (m->kind == CTL_EP && in) {
			if ((cur = ctlr_ep_index(v->s, m->id)) < 0)
				goto mismatch;
			for (unsigned b = 0; b < m->nblocks; b++) {
				uint64_t start = m->blocks[b].start, n = 1ull << m->blocks[b].log2;
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
		if (!mine || (m->kind != CTL_WEIGHT && m->kind != CTL_HEALTH))
			continue;
		if ((cur = ctlr_ep_index(v->s, m->id)) < 0)
			goto mismatch;
		if (m->kind == CTL_WEIGHT) {
			v->weight[cur] = m->weight;
			known[cur] = true;
		} else
			v->healthy[cur] = m->up;
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
	}
	free(svc);
}

/* Builds the services of cfg, each adopting its part of state (see adopt) or else the
 * initial assignment. With steer (--steer metrics) the weights are effective weights on
 * the fine scale (steer.h): the state's weights are taken as such (a takeover moves
 * nothing), an initial assignment gets the configured weights scaled, and the ceilings are
 * the configured weights. Returns the array or NULL (out of memory). */
struct csvc *ctlr_svcs_build(const struct peak_config *cfg, const char *state, size_t len,
                             bool steer)
{
	struct csvc *svc = calloc(cfg->nsvc ? cfg->nsvc : 1, sizeof(*svc));
	for (unsigned i = 0; svc && i < cfg->nsvc; i++) {
		struct csvc *v = &svc[i];
		unsigned n = cfg->svc[i].nep ? cfg->svc[i].nep : 1;
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
			return NULL;
		}
		for (unsigned e = 0; e < v->s->nep; e++) {
			v->healthy[e] = true;
			v->ceil[e] = v->s->ep[e].weight;
			v->weight[e] = steer ? steer_fine(v->ceil[e]) : v->ceil[e];
		}
		int r = v->s->space.nslices <= ASSIGN_MAX_SLICES ? adopt(v, state, len) : -ENOENT;
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
	return svc;
}
