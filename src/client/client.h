#pragma once
/* libpeak client internals: the pure steps of peak_resolve, testable without a network. */
#include <stddef.h>
#include <stdint.h>

#include "peak/apl.h"
#include "peak/dns.h"
#include "peak/peak.h"
#include "peak/ssa.h"

enum { CLIENT_MAX_APL = SSA_MAX_PREFIXES };

/* What a DNS answer said about one name and type. */
struct answer {
	int rcode;          /* DNS rcode */
	uint32_t ttl;       /* of the records, or the negative TTL */
	unsigned nrr;       /* matching records in the answer section */
	unsigned apl_items; /* APL items in those records, all counted */
	size_t txt_len;     /* the first TXT record's strings joined, all counted */
	const char *why;    /* after an error: which check failed (a static string) */
};

/* Checks a reply against the query (id, QR, the question) and reads the answer section's
 * records of the asked name and type: APL items into apl (at most CLIENT_MAX_APL in all),
 * TXT strings joined into txt (first record; txtcap - 1 characters at most), AAAA addresses
 * into aaaa (the first PEAK_MAX_CANDIDATES; more are ignored). Any of the outputs may be
 * NULL. Returns 0, or with a->why set: PEAK_E_BADREPLY (the reply does not parse or does
 * not match), PEAK_E_APL (more than CLIENT_MAX_APL APL items; a->apl_items says how many)
 * or PEAK_E_DESC (the TXT record is longer than txtcap - 1; a->txt_len says how long). */
int answer_parse(const uint8_t *msg, size_t len, uint16_t id, const struct dns_name *qname,
                 uint16_t qtype, struct answer *a, struct apl_item *apl, int *napl, char *txt,
                 size_t txtcap, uint8_t (*aaaa)[16], unsigned *naaaa);

/* Validates APL items as SSA prefixes (SPEC.md 2: IPv6 only, no negated items, equal
 * lengths). Returns the count written to pfx or PEAK_E_APL. */
int ssa_prefixes_from_apl(const struct apl_item *items, int n, struct prefix *pfx);

enum { POW_CACHE_N = 64 };

/* Addresses whose proof of work was done, keyed by everything that determines them: the
 * service's space and key, the source, fanout index, replica, object and (hop) epoch. */
struct pow_cache {
	uint64_t key[POW_CACHE_N];
	uint8_t addr[POW_CACHE_N][16];
	bool used[POW_CACHE_N];
	unsigned next;
	uint64_t hits, misses;
};

/* Inputs of the candidate computation. */
struct cand_req {
	const struct ssa_space *sp;
	const uint8_t *src; /* 16 bytes: the source toward the service */
	const char *object; /* or NULL */
	const uint8_t *secret;
	uint64_t now;
	unsigned replicas; /* obj: replicas after the first */
	uint16_t port;
	uint64_t rnd;          /* seed for rand rules */
	struct pow_cache *pow; /* or NULL */
	/* Bounds the proof of work (ssa_req.pow_stop): true once the caller's deadline is
	 * past. NULL: no bound. */
	bool (*stop)(void *stop_arg);
	void *stop_arg;
};

/* Computes the ordered candidates (SPEC.md 6): the rule's address first, then the other
 * fanout indexes, then further replicas (obj) or further draws (rand). Proof of work is
 * done here, once per address while q->pow remembers it. When q->stop ends a search, the
 * candidates found before it are kept: returns 0 if there is at least one, else
 * PEAK_E_POW_TIME. Returns 0 or PEAK_E_SECRET, PEAK_E_OBJECT, PEAK_E_POW, PEAK_E_POW_TIME. */
int candidates_compute(const struct cand_req *q, struct peak_result *out);

/* Candidates from AAAA records, in the order given, with no source. */
void candidates_from_aaaa(const uint8_t (*aaaa)[16], unsigned n, uint16_t port,
                          struct peak_result *out);

/* For the object store calls (src/client/store.c): sets how many further replicas
 * peak_resolve computes, returning the previous count; sets peak_last_detail's text. */
unsigned resolver_replicas_swap(struct peak_resolver *r, unsigned replicas);

/* The resolver's pool of kept store connections (src/store/client.h), made on first use;
 * NULL if out of memory (the calls then open a connection per request). */
struct store_pool *resolver_store_pool(struct peak_resolver *r);
void resolver_detail_set(struct peak_resolver *r, const char *detail);

/* The store calls' note of the rule's replicas=R as their last call found it (0: none
 * yet), so a call computes the addresses of R replica numbers first, not all 16. */
unsigned *resolver_store_replicas(struct peak_resolver *r);

/* Finds the source the kernel uses toward dst (16 bytes each); 0 or -errno. */
typedef int (*source_lookup_fn)(void *arg, const uint8_t dst[16], uint8_t src[16]);

/* Replaces how peak_resolve finds its source (NULL: a connected UDP socket's name), for
 * tests that count the lookups; forgets the remembered sources. */
void resolver_source_lookup_set(struct peak_resolver *r, source_lookup_fn fn, void *arg);

/* Forgets the sources remembered per destination prefix (each is kept for a second), so
 * the next resolve asks the kernel again: after a connect failed. */
void resolver_sources_forget(struct peak_resolver *r);
