#pragma once
/*
 * The DNS server's immutable serving state: built by the control thread from a
 * configuration and the endpoints' live health and weights, then published to the workers
 * with one atomic pointer swap. Static answers are pre-encoded; AAAA answers for SSA
 * services are steered per query from the tables here.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "peak/assign.h"
#include "peak/config.h"
#include "peak/dns.h"

enum {
	DNSD_MAX_WORKERS = 64,
	DNSD_ANSWER_MAX = 16,
};

/* What a node answers for a query type, pre-encoded as the sections that follow the
 * question (the question itself comes from the query, so its case is preserved). */
enum dz_slot { DZ_SOA, DZ_NS, DZ_APL, DZ_TXT, DZ_AAAA, DZ_ANY, DZ_NODATA, DZ_NSLOTS };

struct dz_tail {
	uint32_t off; /* into the state's byte arena */
	uint16_t len;
	uint16_t an, ns, ar;
	bool present;
};

struct dz_node {
	struct dns_name name; /* lower case */
	int svc;              /* service whose AAAA is steered here, or -1 */
	struct dz_tail tail[DZ_NSLOTS];
};

/* A steering counter as steer_counters_each shows it: the names it counts for. */
struct steer_counter {
	const char *service;
	const char *endpoint;
};

/* One service's steering tables: immutable once built, shared by every state built from the
 * same configuration until the service's live state changes (refcounted). */
struct dz_svc {
	unsigned ref;   /* states holding it (the control thread's) */
	unsigned index; /* in the configuration's services */
	const struct cfg_service *cfg;
	struct ssa_space space;
	struct ssa_space space_nopow; /* the same with pow 0: the address before the nonce */
	uint8_t secret[16];
	bool has_secret;
	bool slice_by_rule; /* select=src/hop: the rule fixes the slice */
	bool binds_src;     /* the answer depends on the client's /64 */
	uint32_t ttl;
	uint32_t answers;
	uint32_t nslices;
	unsigned nep; /* endpoints: the per-endpoint arrays' length */
	/* The slice map as runs, in proportion to runs and not slices (an assignment is a few
	 * runs per endpoint): run r covers slices [run_start[r], run_start[r + 1]) (the last
	 * one up to nslices) and belongs to endpoint run_ep[r] (into cfg->ep), -1 for none. */
	uint32_t nruns;
	uint32_t *run_start;
	int32_t *run_ep;
	/* endpoints that may be steered to: healthy, weight > 0, holding slices */
	unsigned ncand;
	unsigned *cand_ep;   /* endpoint index */
	uint64_t *cand_cum;  /* cumulative weight */
	uint32_t *ep_first;  /* per endpoint: first index into ep_runs */
	uint32_t *ep_nslice; /* per endpoint: slices held */
	uint32_t *ep_runs;   /* run indices grouped by endpoint, ascending */
	uint32_t *ep_cum;    /* per ep_runs entry: the endpoint's slices up to it */
	uint32_t *counter;   /* per endpoint: steering counter id (steer_cell) */
};

/* What every state built from one configuration shares: the configuration itself and the
 * encoded zone (its answers do not depend on the live state). Refcounted. */
struct dz_shared {
	unsigned ref;
	struct peak_config *cfg;
	uint8_t *arena;
	struct dz_node *nodes;
	uint32_t *index;
};

/* The endpoint owning slice g (< nslices), or -1. */
static inline int32_t dz_svc_owner(const struct dz_svc *v, uint32_t g)
{
	if (!v->nruns)
		return -1;
	uint32_t lo = 0, hi = v->nruns - 1;
	while (lo < hi) { /* the last run starting at or before g */
		uint32_t mid = (lo + hi + 1) / 2;
		if (v->run_start[mid] <= g)
			lo = mid;
		else
			hi = mid - 1;
	}
	return v->run_ep[lo];
}

/* Endpoint e's x-th slice in ascending order; x < ep_nslice[e]. */
static inline uint32_t dz_svc_nth_slice(const struct dz_svc *v, unsigned e, uint32_t x)
{
	uint32_t first = v->ep_first[e], lo = first, hi = v->ep_first[e + 1] - 1;
	while (lo < hi) { /* the first of the endpoint's runs whose running count passes x */
		uint32_t mid = (lo + hi) / 2;
		if (v->ep_cum[mid] > x)
			hi = mid;
		else
			lo = mid + 1;
	}
	return v->run_start[v->ep_runs[lo]] + x - (lo > first ? v->ep_cum[lo - 1] : 0);
}

struct dns_state {
	struct dz_shared *shared; /* holds what the next six point at */
	struct peak_config *cfg;
	struct dns_name zone;
	uint32_t neg_ttl; /* TTL of the SOA in negative answers (RFC 2308) */
	uint8_t *arena;   /* pre-encoded answer bytes */
	size_t arena_len;
	struct dz_node *nodes;
	unsigned nnodes;
	uint32_t *index; /* open addressing: node index + 1, 0 empty */
	uint32_t imask;
	uint8_t hkey[16];
	struct dz_svc **svc; /* per service (the configuration's order) */
	unsigned nsvc;
	uint64_t serial; /* increments with every state built */
};

/* Live per-endpoint state kept by the control thread across rebuilds. */
struct dnsd_ep_dyn {
	char id[CFG_ID_MAX];
	bool healthy;
	uint32_t weight;     /* in force: the file's, or a runtime override */
	uint32_t cfg_weight; /* what the file said when last loaded */
	int slot;            /* in the service's assignment, -1 if not in it */
	bool rt;             /* added at run time (the store's "add" line, or dns-ctl add),
	                      * not in the file: kept across reloads until removed */
};

struct dnsd_svc_dyn {
	struct dns_name name;
	struct assign a;
	bool have_assign;
	struct dnsd_ep_dyn *ep;
	unsigned nep;
	int *slot_ep; /* assignment slot -> endpoint index */
	unsigned nslot_ep;
	/* Between changes the assignment's map (a.owner, 4 bytes a slice) is kept as runs
	 * instead, a.owner NULL: run r covers slices [run_start[r], run_start[r + 1]) (the
	 * last up to a.nslices), held by slot run_slot[r]. */
	uint32_t nruns;
	uint32_t *run_start;
	int32_t *run_slot;
	bool changed; /* since the last state built: dns_state_update rebuilds it */
};

struct dnsd_dyn {
	struct dnsd_svc_dyn *svc;
	unsigned nsvc;
};

/* Builds a serving state from cfg (ownership passes to the state on success) and the
 * live state dyn, brought in line with cfg: services and endpoints are matched by name
 * and id, keeping their health, slices and weight overrides (unless the file's weight
 * for that endpoint changed). dyn changes only on
 * success. Returns the state, or NULL with the reason in err (cfg still the caller's). */
struct dns_state *dns_state_build(struct peak_config *cfg, struct dnsd_dyn *dyn, char *err,
                                  size_t errlen);

/* A new state from old with the services whose live state changed (marked by dnsd_dyn_set
 * since old was built) rebuilt, everything else shared with old: no parsing, work in
 * proportion to the changed services. dyn must be the live state old was built with. old
 * stays valid (free both). Returns the state, or NULL with the reason in err. */
struct dns_state *dns_state_update(const struct dns_state *old, struct dnsd_dyn *dyn, char *err,
                                   size_t errlen);

/* Frees a state (and its configuration when no other state shares it). */
void dns_state_free(struct dns_state *st);

/* Frees the live state. */
void dnsd_dyn_fini(struct dnsd_dyn *dyn);

/* Sets an endpoint's health or weight in dyn and rebalances its service's slices (only the
 * affected slices move), marking the service changed. weight < 0 leaves it unchanged, health
 * < 0 too. Returns 0, -ENOENT (no such service or endpoint) or -EINVAL. */
int dnsd_dyn_set(struct dnsd_dyn *dyn, const struct dns_name *svc, const char *ep, int health,
                 long weight);

/* Adds endpoint ep to sd at run time (healthy, with weight; the endpoints of the file come
 * first, then these), rebalancing only the slices of its share, and marks sd changed.
 * Returns 0, -EEXIST (sd has that id) or -ENOMEM. */
int dnsd_svc_ep_add(struct dnsd_svc_dyn *sd, const char *ep, uint32_t weight);

/* Adds n endpoints at run time as dnsd_svc_ep_add does, in one rebalance (as a batch on
 * the controller adds them). Returns 0, -EEXIST, -EINVAL or -ENOMEM (nothing added). */
int dnsd_svc_ep_add_many(struct dnsd_svc_dyn *sd, const char (*ep)[CFG_ID_MAX],
                         const uint32_t *weight, unsigned n);

/* Removes endpoint ep, added at run time, from sd (its slices move to the others) and marks
 * sd changed. Returns 0, -ENOENT, -EPERM (it is the file's) or -EINVAL (it holds the last
 * weight). */
int dnsd_svc_ep_del(struct dnsd_svc_dyn *sd, const char *ep);

/* The live service named svc, or NULL. */
struct dnsd_svc_dyn *dnsd_dyn_svc(struct dnsd_dyn *dyn, const struct dns_name *svc);

/* The node for a lower-case name, or NULL. */
const struct dz_node *dns_state_lookup(const struct dns_state *st, const struct dns_name *n);

/* Sizes the steering counters' cells for workers 0..nworkers-1 (at most DNSD_MAX_WORKERS);
 * before the first state is built, else it has no effect (the default: DNSD_MAX_WORKERS). */
void steer_counters_init(unsigned nworkers);

/* Worker's cell of counter id: only that worker adds to it (DNSD_INC); any thread reads. */
uint64_t *steer_cell(unsigned worker, uint32_t id);

/* Releases the steering counter registry (at exit). */
void steer_counters_free(void);

/* Calls fn for every steering counter with its total over workers. */
void steer_counters_each(void (*fn)(const struct steer_counter *c, uint64_t total, void *arg),
                         void *arg);
