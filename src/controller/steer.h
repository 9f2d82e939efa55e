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
 * The step. The weighted mean of the utilisations is the target every endpoint should
 * reach. Inside the dead band (STEER_BAND_PM per mille around it) nothing changes. Above
 * it an endpoint sheds towards weight / (utilisation / mean), below it one that sheds
 * before regains towards the same; each by at most STEER_STEP_PM per mille of its ceiling
 * per interval, and always within [floor, ceiling]. An endpoint below its ceiling that sat
 * inside the band for STEER_PROBE_ROUNDS intervals with no more than the mean load probes
 * one step up (a pod that recovered holds no more than its share of connections, so it
 * would never look underloaded): if that overloads it, the band's edge brings it back.
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
	STEER_INTERVAL_DEF_MS = 1000,  /* --steer-interval */
};

enum steer_reason {
	STEER_NONE = 0, /* not changed since the controller started (or took the lead) */
	STEER_SHED,     /* above the band: gave share away */
	STEER_REGAIN,   /* below the band: took share back */
	STEER_PROBE,    /* quiet below its ceiling: one step up */
	STEER_BOUNDS,   /* brought within [floor, ceiling] (a new ceiling, an adopted weight) */
	STEER_NREASONS,
};

/* One endpoint of a service as the step sees it. */
struct steer_ep {
	bool live;         /* up and in the assignment: steered (others are left alone) */
	bool fresh;        /* reported since the last round, on the weights in force */
	bool has_cpu;      /* cpu_ns_s is known (two reports seen) */
	bool has_app;      /* app is known */
	uint64_t conns;    /* open connections */
	uint64_t cpu_ns_s; /* CPU nanoseconds per second */
	uint64_t app;      /* the application's load figure (any unit, the same for all) */
	uint32_t ceiling;  /* the configured weight on the fine scale (steer_fine) */
	uint32_t weight;   /* the effective weight now */
	uint32_t quiet;    /* intervals since its weight last changed */
};

/* The fine-scale weight of a configured one (STEER_SCALE times, capped). */
uint32_t steer_fine(uint32_t configured);

/* The floor of a ceiling (STEER_FLOOR_PM per mille of it, at least 1; 0 for 0). */
uint32_t steer_floor(uint32_t ceiling);

/* One interval's step for the n endpoints of a service. Writes every endpoint's new
 * weight to out[] (the current one when nothing changes, and for endpoints not live) and
 * the reason of each change to why[] (STEER_NONE where it did not change). Endpoints
 * outside [floor, ceiling] are brought within it first. Load figures count only when
 * every live endpoint is fresh, at least two are live, and a figure is above its noise
 * floor. Returns the number of endpoints whose weight changed. */
unsigned steer_step(const struct steer_ep *ep, unsigned n, uint32_t *out, enum steer_reason *why);

/* The lowercase name of a reason ("none", "shed", "regain", "probe", "bounds"). */
const char *steer_reason_name(enum steer_reason r);
