/* peak controller: handovers. When slices move from an endpoint that stays alive (a pod
 * added, a weight changed, an operator's drain), both agents are told before the new map
 * goes out ("handover SERVICE OLD NEW MS BLOCKS", ctlproto.h), so that the old owner's
 * node and the new owner's node forward to each other while routing converges (the agent's
 * handover.c). A pod that died has nothing to hand over: its slices move without one. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../sys/log.h"
#include "ctl.h"

int ctlr_handover_snap(const struct csvc *v, struct ho_snap *s)
{
	size_t n = v->a.nslices;
	*s = (struct ho_snap){0};
	if (!v->have)
		return 0;
	s->owner = malloc((n ? n : 1) * sizeof(*s->owner));
	s->ep_of = malloc((v->a.nep ? v->a.nep : 1) * sizeof(*s->ep_of));
	if (!s->owner || !s->ep_of) {
		ctlr_handover_free(s);
		return -ENOMEM;
	}
	memcpy(s->owner, v->a.owner, n * sizeof(*s->owner));
	s->nslices = (uint32_t)n;
	s->nslots = v->a.nep;
	for (unsigned k = 0; k < s->nslots; k++)
		s->ep_of[k] = -1;
	for (unsigned e = 0; e < v->s->nep; e++)
		if (v->slot[e] >= 0 && (unsigned)v->slot[e] < s->nslots)
			s->ep_of[v->slot[e]] = (int)e;
	return 0;
}

void ctlr_handover_free(struct ho_snap *s)
{
	free(s->owner);
	free(s->ep_of);
	*s = (struct ho_snap){0};
}

/* Queues one handover line for every agent that said hello. */
static void send_line(struct ctl *c, struct ctl_msg *m)
{
	struct text t = {0};
	ctlr_text_msg(&t, m);
	if (t.err) {
		log_msg(LOG_ERR, "controller: %s: cannot write a handover: %s", m->svc,
		        strerror(-t.err));
		goto out;
	}
	for (int i = 0; i < MAX_AGENTS; i++) {
		struct peer *p = &c->agents[i];
		if (p->fd >= 0 && p->hello)
			ctlr_peer_send(c, p, t.p, t.len);
	}
out:
	free(t.p);
	m->nblocks = 0;
}

/* Adds the run [start, start + len) of slices as aligned blocks to m, flushing full lines. */
static void add_run(struct ctl *c, struct ctl_msg *m, uint32_t start, uint32_t len)
{
	while (len) {
		uint8_t lg = 0;
		while (lg < 24 && !(start & (1u << lg)) && (2u << lg) <= len)
			lg++;
		if (m->nblocks == CTL_EP_BLOCKS_MAX)
			send_line(c, m);
		m->blocks[m->nblocks++] = (struct assign_block){.start = start, .log2 = lg};
		start += 1u << lg;
		len -= 1u << lg;
	}
}

/* A slice that moved between two live endpoints: its old and new slot, and the slice. */
struct ho_mv {
	int32_t from, to;
	uint32_t g;
	int eo, en; /* the endpoints */
};

static int mv_cmp(const void *pa, const void *pb)
{
	const struct ho_mv *a = pa, *b = pb;
	if (a->from != b->from)
		return a->from < b->from ? -1 : 1;
	if (a->to != b->to)
		return a->to < b->to ? -1 : 1;
	return a->g < b->g ? -1 : a->g > b->g;
}

/* A pair's slices [at, end) in mv, and its first slice (pairs go out in that order). */
struct ho_pair {
	uint32_t at, end, first;
};

static int pair_cmp(const void *pa, const void *pb)
{
	const struct ho_pair *a = pa, *b = pb;
	return a->first < b->first ? -1 : a->first > b->first;
}

unsigned ctlr_handover_send(struct ctl *c, struct csvc *v, const struct ho_snap *s, int gone_ep)
{
	unsigned pairs = 0, npair = 0;
	if (c->o->no_handover || !s->owner || !v->have || s->nslices != v->a.nslices)
		return 0;
	uint32_t n = s->nslices, ms = c->o->handover_ms ? c->o->handover_ms : HANDOVER_DEF_MS;
	/* The moved slices in one pass, grouped by (old, new) pair with a sort: a pass over
	 * the map per pair cost a scale-up of 10 pods in a service of 100 (1,000 pairs) 16
	 * million reads per service. */
	size_t nmv = 0;
	struct ho_mv *mv = NULL;
	struct ho_pair *pr = NULL;
	int *now = malloc((v->a.nep ? v->a.nep : 1) * sizeof(*now)); /* slot -> endpoint */
	if (!now)
		return 0;
	for (unsigned k = 0; k < v->a.nep; k++)
		now[k] = (unsigned)k < s->nslots ? s->ep_of[k] : -1; /* (a slot that left) */
	for (unsigned e = 0; e < v->s->nep; e++)
		if (v->slot[e] >= 0 && (unsigned)v->slot[e] < v->a.nep)
			now[v->slot[e]] = (int)e;
	for (int pass = 0; pass < 2; pass++) {
		nmv = 0;
		for (uint32_t g = 0; g < n; g++) {
			int32_t from = s->owner[g], to = v->a.owner[g];
			if (from == to || from < 0 || to < 0)
				continue;
			int eo = (unsigned)from < s->nslots ? s->ep_of[from] : -1;
			int en = (unsigned)to < v->a.nep ? now[to] : -1;
			/* an endpoint that died hands nothing over; one that was drained does */
			if (eo < 0 || en < 0 || eo == en || (!v->healthy[eo] && eo != gone_ep))
				continue;
			if (pass)
				mv[nmv] = (struct ho_mv){from, to, g, eo, en};
			nmv++;
		}
		if (!pass && (!nmv || !(mv = malloc(nmv * sizeof(*mv))))) {
			free(now);
			return 0;
		}
	}
	qsort(mv, nmv, sizeof(*mv), mv_cmp);
	if (!(pr = malloc(nmv * sizeof(*pr))))
		goto out;
	for (size_t k = 0; k < nmv; k++)
		if (!k || mv[k].from != mv[k - 1].from || mv[k].to != mv[k - 1].to) {
			if (npair)
				pr[npair - 1].end = (uint32_t)k;
			pr[npair++] = (struct ho_pair){.at = (uint32_t)k, .first = mv[k].g};
		}
	pr[npair - 1].end = (uint32_t)nmv;
	qsort(pr, npair, sizeof(*pr), pair_cmp);
	uint32_t mask = v->a.block_bits < 32 ? (1u << v->a.block_bits) - 1 : UINT32_MAX;
	for (unsigned p = 0; p < npair; p++) {
		const struct ho_mv *x = &mv[pr[p].at];
		struct ctl_msg m = {.kind = CTL_HANDOVER, .ms = ms};
		ctlr_copy(m.svc, sizeof(m.svc), v->name);
		ctlr_copy(m.id, sizeof(m.id), v->s->ep[x->eo].id);
		ctlr_copy(m.to, sizeof(m.to), v->s->ep[x->en].id);
		uint32_t run = x->g, run_len = 0;
		for (uint32_t k = pr[p].at; k < pr[p].end; k++) {
			uint32_t g = mv[k].g;
			/* a run ends at a gap or a prefix boundary (blocks never cross one) */
			if (run_len && (g != run + run_len || (g & mask) == 0)) {
				add_run(c, &m, run, run_len);
				run_len = 0;
			}
			if (!run_len)
				run = g;
			run_len++;
		}
		add_run(c, &m, run, run_len);
		if (m.nblocks)
			send_line(c, &m);
		if (!c->ho_quiet)
			log_msg(LOG_INFO, "controller: %s handover %s -> %s: %u slices, %u ms",
			        v->name, v->s->ep[x->eo].id, v->s->ep[x->en].id,
			        pr[p].end - pr[p].at, ms);
		pairs++;
	}
	if (c->ho_quiet && pairs)
		log_msg(LOG_INFO, "controller: %s: %u handovers of %zu slices, %u ms", v->name,
		        pairs, nmv, ms);
out:
	free(pr);
	free(mv);
	free(now);
	return pairs;
}
