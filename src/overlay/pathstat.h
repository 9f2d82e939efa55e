#pragma once
/*
 * The outcome of a path's last probes (pathstat.c), for the resiliency slave's
 * "degraded" verdict: how many were lost (no echo within the loss timeout) and how many came
 * back late (an RTT more than late_us above the lowest RTT in the window). Pure: no clock, no
 * I/O; times are the caller's, in us.
 */
#include <stdbool.h>
#include <stdint.h>

enum {
	PS_WIN = 32, /* probes remembered per path: the judged ones and those still pending */
	PS_MIN = 16, /* the newest resolved probes judged (with 8, a path losing 5% of its
	              * packets would be called bad, 2 of 8 lost, in 6% of windows) */
};

struct pathstat {
	struct {
		uint64_t sent_us; /* the probe's send time, its identity in the echo */
		uint32_t rtt_us;
		uint8_t state; /* PS_EMPTY, PS_PENDING, PS_ANSWERED, PS_LOST */
	} slot[PS_WIN];
	unsigned next; /* the slot the next probe takes (the oldest) */
};

struct ps_summary {
	unsigned resolved; /* answered or lost */
	unsigned lost, late;
	uint32_t base_us; /* lowest RTT answered in the window (0: none) */
};

/* Forgets every probe (a path that just came back starts afresh). */
void ps_reset(struct pathstat *ps);

/* Records a probe sent at sent_us; it replaces the oldest one remembered. */
void ps_sent(struct pathstat *ps, uint64_t sent_us);

/* The echo of the probe sent at sent_us came back at now_us: returns true if it was one of
 * the window's (pending, or given up as lost: a very late echo counts as answered, late). */
bool ps_answered(struct pathstat *ps, uint64_t sent_us, uint64_t now_us);

/* Forgets the pending probes (their flight spans a stall of the prober's own: neither their
 * loss nor their RTT says anything about the path); resolved ones stay. */
void ps_forget_pending(struct pathstat *ps);

/* Takes every pending probe sent more than lost_us before now_us as lost. */
void ps_expire(struct pathstat *ps, uint64_t now_us, uint64_t lost_us);

/* Counts the newest PS_MIN resolved probes (pending ones skipped) into out; an answered
 * probe is late when its RTT exceeds the lowest answered RTT among them by more than late_us. */
void ps_summary(const struct pathstat *ps, uint32_t late_us, struct ps_summary *out);

/* True if out has at least PS_MIN resolved probes and at least pct percent of them lost or
 * late (bad * 100 >= pct * resolved). */
bool ps_bad_share_at_least(const struct ps_summary *s, unsigned pct);

/* A path's RTT as the lowest sample of a window (its propagation delay): a sample stalled by a
 * busy host raises a smoothed RTT for seconds, not this. */
struct ps_minrtt {
	uint32_t us;    /* 0: no sample yet */
	uint64_t at_ms; /* when us was taken */
};

/* Takes a sample of rtt_us at now_ms: it becomes the minimum if lower, or if the minimum is
 * win_ms old or older (so a path that got longer shows within win_ms). */
void ps_minrtt_sample(struct ps_minrtt *m, uint32_t rtt_us, uint64_t now_ms, uint64_t win_ms);
