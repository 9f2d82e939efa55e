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

/* The endpoint of a slot after the change (the snapshot's, for a slot that left). */
static int ep_now(const struct csvc *v, const struct ho_snap *s, int32_t slot)
{
	if (slot < 0)
		return -1;
	for (unsigned e = 0; e < v->s->nep; e++)
		if (v->slot[e] == slot)
			return (int)e;
	return (unsigned)slot < s->nslots ? s->ep_of[slot] : -1;
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

unsigned ctlr_handover_send(struct ctl *c, struct csvc *v, const struct ho_snap *s, int gone_ep)
{
	unsigned pairs = 0;
	if (c->o->no_handover || !s->owner || !v->have || s->nslices != v->a.nslices)
		return 0;
	uint32_t n = s->nslices, ms = c->o->handover_ms ? c->o->handover_ms : HANDOVER_DEF_MS;
	/* One pass per (old, new) pair, found at its first moved slice; slices of pairs already
	 * sent are skipped by comparing with the pair's first slice. A handful of pairs move
	 * in one change, so the passes stay few. */
	bool *sent = calloc(n ? n : 1, sizeof(*sent));
	if (!sent)
		return 0;
	for (uint32_t g = 0; g < n; g++) {
		int32_t from = s->owner[g], to = v->a.owner[g];
		if (sent[g] || from == to || from < 0 || to < 0)
			continue;
		int eo = (unsigned)from < s->nslots ? s->ep_of[from] : -1, en = ep_now(v, s, to);
		if (eo < 0 || en < 0 || eo == en) {
			sent[g] = true;
			continue;
		}
		/* an endpoint that died hands nothing over; one that was drained does */
		if (!v->healthy[eo] && eo != gone_ep) {
			sent[g] = true;
			continue;
		}
		struct ctl_msg m = {.kind = CTL_HANDOVER, .ms = ms};
		ctlr_copy(m.svc, sizeof(m.svc), v->name);
		ctlr_copy(m.id, sizeof(m.id), v->s->ep[eo].id);
		ctlr_copy(m.to, sizeof(m.to), v->s->ep[en].id);
		uint32_t run = 0, run_len = 0, blocks = 0;
		for (uint32_t k = g; k < n; k++) {
			bool in = !sent[k] && s->owner[k] == from && v->a.owner[k] == to;
			if (in) {
				sent[k] = true;
				blocks++;
				if (!run_len)
					run = k;
				run_len++;
			}
			/* a run ends at a gap or a prefix boundary (blocks never cross one) */
			bool edge =
			    v->a.block_bits < 32 && ((k + 1) & ((1u << v->a.block_bits) - 1)) == 0;
			if (run_len && (!in || edge || k + 1 == n)) {
				add_run(c, &m, run, run_len);
				run_len = 0;
			}
		}
		if (m.nblocks)
			send_line(c, &m);
		log_msg(LOG_INFO, "controller: %s handover %s -> %s: %u slices, %u ms", v->name,
		        v->s->ep[eo].id, v->s->ep[en].id, blocks, ms);
		pairs++;
	}
	free(sent);
	return pairs;
}
