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

/* A steering counter: one cell per worker so workers never share a cache line. */
struct steer_counter {
	char service[DNS_NAME_STRLEN];
	char endpoint[CFG_ID_MAX];
	_Alignas(64) uint64_t cell[DNSD_MAX_WORKERS][8];
};

struct dz_svc {
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
	int32_t *owner; /* slice -> endpoint index (into cfg->ep) */
	/* endpoints that may be steered to: healthy, weight > 0, holding slices */
	unsigned ncand;
	unsigned *cand_ep;              /* endpoint index */
	uint64_t *cand_cum;             /* cumulative weight */
	uint32_t *ep_first;             /* per endpoint: first index into ep_slices */
	uint32_t *ep_nslice;            /* per endpoint: slices held */
	uint32_t *ep_slices;            /* slices grouped by endpoint */
	struct steer_counter **counter; /* per endpoint */
};

struct dns_state {
	struct peak_config *cfg; /* owned */
	struct dns_name zone;
	uint32_t neg_ttl; /* TTL of the SOA in negative answers (RFC 2308) */
	uint8_t *arena;   /* pre-encoded answer bytes */
	size_t arena_len;
	struct dz_node *nodes;
	unsigned nnodes;
	uint32_t *index; /* open addressing: node index + 1, 0 empty */
	uint32_t imask;
	uint8_t hkey[16];
	struct dz_svc *svc;
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
};

struct dnsd_svc_dyn {
	struct dns_name name;
	struct assign a;
	bool have_assign;
	struct dnsd_ep_dyn *ep;
	unsigned nep;
	int *slot_ep; /* assignment slot -> endpoint index */
	unsigned nslot_ep;
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

/* Frees a state (and its configuration). */
void dns_state_free(struct dns_state *st);

/* Frees the live state. */
void dnsd_dyn_fini(struct dnsd_dyn *dyn);

/* Sets an endpoint's health or weight in dyn and rebalances its service's slices (only the
 * affected slices move). weight < 0 leaves it unchanged, health < 0 too. Returns 0,
 * -ENOENT (no such service or endpoint) or -EINVAL. */
int dnsd_dyn_set(struct dnsd_dyn *dyn, const struct dns_name *svc, const char *ep, int health,
                 long weight);

/* The node for a lower-case name, or NULL. */
const struct dz_node *dns_state_lookup(const struct dns_state *st, const struct dns_name *n);

/* Releases the steering counter registry (at exit). */
void steer_counters_free(void);

/* Calls fn for every steering counter with its total over workers. */
void steer_counters_each(void (*fn)(const struct steer_counter *c, uint64_t total, void *arg),
                         void *arg);
