#pragma once
/*
 * Metrics-based steering (peak controller --steer metrics): the pure step that turns the
 * endpoints' reported load into effective weights. No I/O and no controller state, so the
 * unit tests (tests/unit/test_steer.c) run it alone; steer_ctl.c feeds it every interval
 * and applies what it returns.
 *
 * Scale. Configured weights are small integers (1, 2, 3 ...); a step of a tenth of one
 * would not exist. While steering, every weight the assignment and peak dns hold is on a
 * finer scale: STEER_SCALE units per configured unit (capped at ASSIGN_MAX_WEIGHT, so
 * configured weights above 1000 steer as if they were 1000). The configured (or the
 * operator's) weight times STEER_SCALE is the ceiling; the floor is STEER_FLOOR_PM per
 * mille of it (at least 1), so an endpoint that is up always keeps some traffic and keeps
 * reporting.
 *
 * Utilisation. For each load figure (open connections; CPU nanoseconds per second; the
 * application's figure) an endpoint's utilisation is the part of the service's total it
 * carries divided by the part of the weight it holds: 1 when its load matches its share.
 * Connections measure the work in flight (Little's law: a pod that falls behind holds more
 * of them for the same share of requests), CPU the work done. An endpoint's utilisation is
 * the largest of its figures; when every endpoint of the service reports an application
 * figure, that figure alone counts (the pod knows its capacity, the agent does not). A
 * figure is used only when every endpoint steered reports it and the service's total is
 * above a noise floor (STEER_MIN_CONNS per endpoint, STEER_MIN_CPU_NS_S per endpoint).
 * Connections are a small count sampled at one instant: an endpoint's count within
 * STEER_CONNS_Z standard deviations of what its share expects (a Poisson count: the
 * square root of the expectation) counts as exactly its share.
 *
 * Saturation. None of those figures singles out a pod that cannot keep up because it is
 * held back (a CPU quota, a slow disk): it does less work, not more, and holds no more
 * connections than the others. Agents report a saturation figure per pod: the share of
 * wall time its cgroup was throttled and the fill of its listener's accept queue (counted
 * from STEER_SAT_QUEUE_PM: a single sample, which a busy host's momentary bursts reach
 * a few percent of); the larger, in per mille, is sat_pm. An endpoint at or above STEER_SAT_HI_PM
 * while another live endpoint of the service is below STEER_SAT_LO_PM (so shedding has somewhere to
 * go: when all are saturated the service is overloaded, and moving share helps nothing) sheds one
 * step per interval, whatever its utilisation. Hysteresis: an endpoint at or above STEER_SAT_LO_PM
 * neither regains nor probes, and one whose last change was a saturated shed regains only by probes
 * (its CPU, held down by the quota, would make it look underloaded in any window it happened not to
 * be throttled): it settles just below the share where it saturates and probes again only
 * STEER_PROBE_ROUNDS quiet intervals later.
 *
 * Saturation alone (when every live endpoint reports it). Then the figure is the whole signal:
 * connections and CPU are not read, since on a loaded host their noise kept moving healthy pods
 * (shed, then regain) around a throttled one at its floor, and shares never settled. A hot
 * endpoint sheds one step per interval (as above); one in the band [LO, HI) holds; a clear one
 * (below LO) under its ceiling climbs: one step per interval if it never met its saturation point
 * (its last change was not a saturated shed or a probe), else by probes only, one step after
 * STEER_PROBE_ROUNDS << backoff quiet intervals, where backoff counts the probes in a row that
 * ended in a saturated shed (at most STEER_BACKOFF_MAX): a pod held at one share settles there,
 * with a probe and its return ever more rarely. Configured weights stay the ceiling.
 *
 * The step. The weighted mean of the utilisations is the target every endpoint should
 * reach. Inside the dead band (STEER_BAND_PM per mille around it) nothing changes. Above
 * it an endpoint sheds towards weight / (utilisation / mean), below it one that sheds
 * before regains towards the same; each by at most STEER_STEP_PM per mille of its ceiling
 * per interval, and always within [floor, ceiling]. An endpoint below its ceiling that sat
 * inside the band for STEER_PROBE_ROUNDS intervals with no more than the mean load probes
 * one step up (a pod that recovered holds no more than its share of connections, so it
 * would never look underloaded): if that overloads it, the band's edge brings it back.
 *
 * Memory (struct steer_mem, one per endpoint, kept by the caller between rounds). Without
 * it every round judged one report alone with a fixed step: on a loaded host a single
 * burst of throttled time or of connections moved a pod by a full step, a pod held near
 * its saturation point was shed to the floor by bursts it never regained from (regains
 * came by probes only), and a pod between two steps hunted around its balance by a full
 * step for ever. With it:
 * - the figures are smoothed: saturation and the utilisation ratio are exponential
 *   averages over rounds (weight 1/STEER_SMOOTH_ROUNDS for each new report), started
 *   afresh at each change of the endpoint's weight, so they only ever average reports
 *   that measured the weights in force (no lag from the old share, no overshoot). The
 *   utilisation ratio is judged on its average; saturation is hot on a round's report
 *   (a burst is one round: the confirmation below drops it) and clear on the average (a
 *   pod regains, probes, or takes another's share only once clear for a while);
 * - a verdict (shed, regain) acts only when it held STEER_CONFIRM_ROUNDS rounds in a row;
 * - the step adapts: it starts at the full step; a change against the direction of the
 *   last one (the share crossed its balance point) goes by half the step, down to
 *   STEER_STEP_MIN_PM per mille of the ceiling; after a change in the same direction as
 *   the last one the next step doubles, up to the full step again;
 * - a settled state: after a reversal the endpoint is settled; then a shed or a regain
 *   needs its verdict STEER_LEAVE_ROUNDS rounds in a row, or a shed its verdict in
 *   STEER_SETTLED_SHED_K of the last STEER_SETTLED_SHED_M rounds (a pod that probed back
 *   into intermittent saturation is hot most rounds, seldom 5 in a row) (the dead band of the ratio
 *   widens to STEER_BAND_OUT_PM meanwhile), and probes go up by the small step; a shed
 *   or regain in the same direction as the last change (a sustained move, not a return)
 *   leaves it. The price is speed: a step every STEER_CONFIRM_ROUNDS fresh rounds at
 *   best (on the loaded testbed 4 to 16 s apart).
 * - stall time: the throttled part of saturation (a CPU quota used up: the pod's requests
 *   wait for the next period, up to 75 ms of a 100 ms one at a quarter core) also counts
 *   as a leaky sum over rounds (each round keeps 1 - 1/STEER_THR_ROUNDS of it, then adds
 *   the round's figure), restarted at each change of the weight. It is hot from
 *   STEER_THR_HI_PM per mille of STEER_THR_ROUNDS rounds, clear below STEER_THR_LO_PM.
 *   A round's figure alone judged a pod throttled for one round in ten clear (never 3 hot
 *   rounds in a row), and held it where about 1% of its time was stalled, which its p99
 *   sees (1% of its requests); the sum sheds it until stalls come rarer than that, a
 *   stall of 75 ms once in 30 rounds alone not hot. Accept-queue samples stay per round.
 * Without memory (NULL) a round is the memoryless law above: one report, the full step.
 */
#include <stdbool.h>
#include <stdint.h>

enum {
	STEER_SCALE = 1000,            /* effective weight units per configured weight unit */
	STEER_FLOOR_PM = 50,           /* the floor: 5% of the ceiling */
	STEER_STEP_PM = 100,           /* the largest change per round: 10% of the ceiling */
	STEER_BAND_PM = 200,           /* the dead band: within 20% of the mean, no change */
	STEER_PROBE_ROUNDS = 30,       /* quiet intervals before a probe towards the ceiling */
	STEER_MIN_CONNS = 2,           /* per endpoint steered: fewer connections are noise */
	STEER_CONNS_Z = 3,             /* a count within 3 sd (Poisson) of its share: noise */
	STEER_MIN_CPU_NS_S = 10000000, /* per endpoint steered: 1% of a core */
	STEER_SAT_HI_PM = 10,          /* saturated: throttled 1% of the time (or queue 1% full) */
	STEER_SAT_LO_PM = 3,           /* clear of it: below 0.3% */
	STEER_SAT_QUEUE_PM = 250,      /* an accept queue counts from a quarter full */
	STEER_INTERVAL_DEF_MS = 1000,  /* --steer-interval */
	STEER_BACKOFF_MAX = 3,         /* saturation alone: probes at most 8x as rare */
	STEER_SMOOTH_ROUNDS = 4,       /* memory: a new report weighs a quarter of the average */
	STEER_STEP_MIN_PM = 25,        /* memory: the smallest step, a quarter of the full one */
	STEER_CONFIRM_ROUNDS = 3,      /* memory: rounds of one verdict before it acts */
	STEER_LEAVE_ROUNDS = 5,        /* memory: the same once settled */
	STEER_SETTLED_SHED_K = 5, /* memory: settled, a shed when 5 of the last 8 rounds say so */
	STEER_SETTLED_SHED_M = 8,
	STEER_BAND_OUT_PM = 300, /* memory: the dead band while settled (hysteresis) */
	STEER_THR_ROUNDS = 30,   /* memory: the stall time's leaky sum spans about 30 rounds */
	STEER_THR_HI_PM = 3,     /* memory: stalls hot from 0.3% of those rounds' time */
	STEER_THR_LO_PM = 1,     /* memory: clear below 0.1% */
};

enum steer_reason {
	STEER_NONE = 0,  /* not changed since the controller started (or took the lead) */
	STEER_SHED,      /* above the band: gave share away */
	STEER_REGAIN,    /* below the band: took share back */
	STEER_PROBE,     /* quiet below its ceiling: one step up */
	STEER_BOUNDS,    /* brought within [floor, ceiling] (a new ceiling, an adopted weight) */
	STEER_SATURATED, /* saturated while another endpoint is not: gave share away */
	STEER_NREASONS,
};

/* One endpoint of a service as the step sees it. */
struct steer_ep {
	bool live;         /* up and in the assignment: steered (others are left alone) */
	bool fresh;        /* reported since the last round, on the weights in force */
	bool has_cpu;      /* cpu_ns_s is known (two reports seen) */
	bool has_app;      /* app is known */
	bool has_sat;      /* sat_pm is known (measured on the weights in force) */
	bool sat_shed;     /* its last change was a saturated shed: it regains by probes only */
	uint64_t conns;    /* open connections */
	uint64_t cpu_ns_s; /* CPU nanoseconds per second */
	uint64_t app;      /* the application's load figure (any unit, the same for all) */
	uint32_t sat_pm;   /* saturation, per mille (see above; 1000 at most) */
	uint32_t thr_pm;   /* its throttled part: per mille of the round's time (0: none known) */
	uint32_t ceiling;  /* the configured weight on the fine scale (steer_fine) */
	uint32_t weight;   /* the effective weight now */
	uint32_t quiet;    /* intervals since its weight last changed */
	uint8_t last;      /* enum steer_reason of its last change (STEER_NONE: none known) */
	uint8_t backoff;   /* probes in a row that ended in a saturated shed (saturation alone) */
};

/* What the step remembers of one endpoint between rounds (zero: nothing yet). */
struct steer_mem {
	bool have;       /* the averages below hold at least one report */
	bool settled;    /* reversed once: leaving needs a sustained verdict */
	int8_t dir;      /* the direction of the last change: -1 down, +1 up, 0 none */
	int8_t pend;     /* the direction of the verdicts counted in streak (0: hold) */
	uint8_t streak;  /* rounds in a row with the verdict pend */
	uint8_t hot;     /* the last rounds' shed verdicts, a bit each (bit 0 this round) */
	uint32_t step;   /* the step now, in weight units (0: the full step) */
	double sat_avg;  /* smoothed saturation, per mille */
	double util_avg; /* smoothed utilisation over the weighted mean */
	double thr_sum;  /* stall time: the leaky sum of thr_pm since the last change */
};

/* The fine-scale weight of a configured one (STEER_SCALE times, capped). */
uint32_t steer_fine(uint32_t configured);

/* The floor of a ceiling (STEER_FLOOR_PM per mille of it, at least 1; 0 for 0). */
uint32_t steer_floor(uint32_t ceiling);

/* One interval's step for the n endpoints of a service. mem (NULL, or n entries the caller
 * keeps between rounds, zeroed at first) is read and updated: its averages take this
 * round's reports only when every live endpoint is fresh. Writes every endpoint's new
 * weight to out[] (the current one when nothing changes, and for endpoints not live) and
 * the reason of each change to why[] (STEER_NONE where it did not change). Endpoints
 * outside [floor, ceiling] are brought within it first. Load figures count only when
 * every live endpoint is fresh, at least two are live, and a figure is above its noise
 * floor; saturation counts when every live endpoint is fresh and at least two are live,
 * and alone when every live endpoint reports it.
 * Returns the number of endpoints whose weight changed. */
unsigned steer_step(const struct steer_ep *ep, unsigned n, struct steer_mem *mem, uint32_t *out,
                    enum steer_reason *why);

/* The lowercase name of a reason ("none", "shed", "regain", "probe", "bounds",
 * "saturated"). */
const char *steer_reason_name(enum steer_reason r);
