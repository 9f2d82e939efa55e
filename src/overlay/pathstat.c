/*
 * A path's probe window: a ring of the last PS_WIN probes, each pending until its echo comes
 * back (answered, with its RTT) or the caller's loss timeout passes (lost). The verdict the
 * resiliency slave draws from it counts lost and late probes among the newest PS_MIN resolved
 * (a pending probe is skipped, so the verdict never waits on the loss timeout's backlog): a path
 * that still answers but loses or delays a share of its packets shows in both.
 */
#include "pathstat.h"

#include <string.h>

enum { PS_EMPTY = 0, PS_PENDING, PS_ANSWERED, PS_LOST };

void ps_reset(struct pathstat *ps)
{
	memset(ps, 0, sizeof(*ps));
}

void ps_sent(struct pathstat *ps, uint64_t sent_us)
{
	unsigned i = ps->next % PS_WIN;
	ps->slot[i].sent_us = sent_us;
	ps->slot[i].rtt_us = 0;
	ps->slot[i].state = PS_PENDING;
	ps->next = (i + 1) % PS_WIN;
}

bool ps_answered(struct pathstat *ps, uint64_t sent_us, uint64_t now_us)
{
	for (unsigned i = 0; i < PS_WIN; i++) {
		if (ps->slot[i].sent_us != sent_us ||
		    (ps->slot[i].state != PS_PENDING && ps->slot[i].state != PS_LOST))
			continue;
		uint64_t rtt = now_us > sent_us ? now_us - sent_us : 0;
		ps->slot[i].rtt_us = rtt > UINT32_MAX ? UINT32_MAX : (uint32_t)rtt;
		ps->slot[i].state = PS_ANSWERED;
		return true;
	}
	return false;
}

void ps_forget_pending(struct pathstat *ps)
{
	for (unsigned i = 0; i < PS_WIN; i++)
		if (ps->slot[i].state == PS_PENDING)
			ps->slot[i].state = PS_EMPTY;
}

void ps_expire(struct pathstat *ps, uint64_t now_us, uint64_t lost_us)
{
	for (unsigned i = 0; i < PS_WIN; i++)
		if (ps->slot[i].state == PS_PENDING && now_us > ps->slot[i].sent_us &&
		    now_us - ps->slot[i].sent_us > lost_us)
			ps->slot[i].state = PS_LOST;
}

void ps_summary(const struct pathstat *ps, uint32_t late_us, struct ps_summary *out)
{
	unsigned judged[PS_MIN], n = 0;
	memset(out, 0, sizeof(*out));
	for (unsigned k = 1; k <= PS_WIN && n < PS_MIN; k++) { /* newest first */
		unsigned i = (ps->next + PS_WIN - k) % PS_WIN;
		if (ps->slot[i].state == PS_ANSWERED || ps->slot[i].state == PS_LOST)
			judged[n++] = i;
	}
	for (unsigned j = 0; j < n; j++) {
		unsigned i = judged[j];
		if (ps->slot[i].state == PS_ANSWERED &&
		    (!out->base_us || ps->slot[i].rtt_us < out->base_us))
			out->base_us = ps->slot[i].rtt_us ? ps->slot[i].rtt_us : 1;
	}
	for (unsigned j = 0; j < n; j++) {
		unsigned i = judged[j];
		out->resolved++;
		if (ps->slot[i].state == PS_LOST)
			out->lost++;
		else if ((uint64_t)ps->slot[i].rtt_us > (uint64_t)out->base_us + late_us)
			out->late++;
	}
}

bool ps_bad_share_at_least(const struct ps_summary *s, unsigned pct)
{
	return s->resolved >= PS_MIN &&
	       (uint64_t)(s->lost + s->late) * 100 >= (uint64_t)pct * s->resolved;
}

void ps_minrtt_sample(struct ps_minrtt *m, uint32_t rtt_us, uint64_t now_ms, uint64_t win_ms)
{
	if (!rtt_us)
		rtt_us = 1; /* (0 means none) */
	if (!m->us || rtt_us <= m->us || now_ms - m->at_ms >= win_ms) {
		m->us = rtt_us;
		m->at_ms = now_ms;
	}
}
