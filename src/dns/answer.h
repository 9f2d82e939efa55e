#pragma once
/* The authoritative answer to one DNS query, from a serving state: no I/O, no allocation,
 * no lock. Used by the UDP workers, the TCP thread and the fuzz target alike. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state.h"

enum dq_type { DQ_A, DQ_AAAA, DQ_APL, DQ_TXT, DQ_SOA, DQ_NS, DQ_ANY, DQ_OTHER, DQ_N };
enum dq_rcode {
	DR_NOERROR,
	DR_FORMERR,
	DR_SERVFAIL,
	DR_NXDOMAIN,
	DR_NOTIMP,
	DR_REFUSED,
	DR_BADVERS,
	DR_N
};

/* Proof of work in AAAA answers (services with pow > 0): the server searches the nonce for
 * the client, so its cost is bounded: at most DNSD_POW_MAX_TRIES hashes for one address and
 * DNSD_POW_BUDGET hashes per worker per second; an address found is kept in the worker's
 * cache (DNSD_POW_CACHE entries) for the same service, client, fanout index or endpoint, and
 * epoch, until the serving state changes. */
enum {
	DNSD_POW_MAX_TRIES_LOG2 = 20,
	DNSD_POW_MAX_TRIES = 1 << DNSD_POW_MAX_TRIES_LOG2,
	DNSD_POW_WARN_BITS = DNSD_POW_MAX_TRIES_LOG2 - 2, /* above: searches often fail */
	DNSD_POW_BUDGET = 1 << 21,
	DNSD_POW_CACHE = 4096, /* a power of 2 */
};

/* How pow addresses were had: searched, from the cache, or not (over the budget or cap). */
enum dq_pow { DP_SEARCHED, DP_CACHED, DP_REFUSED, DP_N };

/* Counters of one worker; only that worker writes them. */
struct dnsd_stats {
	uint64_t qtype[DQ_N];
	uint64_t rcode[DR_N];
	uint64_t udp, tcp, dropped, truncated, ecs;
	uint64_t batches; /* UDP receive calls that returned queries */
	uint64_t pow[DP_N];
	uint64_t pow_hashes; /* spent searching */
} __attribute__((aligned(64)));

struct dnsd_pow_entry;

/* Per-worker context. */
struct dnsd_ctx {
	uint64_t rng;
	unsigned worker; /* < DNSD_MAX_WORKERS: which steering counter cells to use */
	uint64_t now;    /* unix seconds, for hop rules */
	struct dnsd_stats *stats;
	struct dnsd_pow_entry *pow_cache; /* DNSD_POW_CACHE entries, or NULL (no cache) */
	uint8_t pow_key[16];              /* hashes the cache's keys */
	uint64_t pow_sec;                 /* the second pow_left is for */
	uint64_t pow_left;                /* hashes this worker may still spend in it */
};

/* Allocates the worker's pow cache (without it, answers are only bounded, not cached).
 * Returns 0 or -ENOMEM. */
int dnsd_ctx_pow_init(struct dnsd_ctx *cx);

/* Frees what dnsd_ctx_pow_init allocated. */
void dnsd_ctx_fini(struct dnsd_ctx *cx);

/* Where a query came from. */
struct dnsd_client {
	uint8_t addr[16]; /* IPv6, or IPv4-mapped */
	bool v6;          /* a real IPv6 source (not IPv4-mapped) */
};

enum { DNSD_UDP_MAX = 4096, DNSD_TCP_MAX = 65535 };

/* Answers the query q of qlen bytes into out (cap >= DNSD_UDP_MAX for UDP, DNSD_TCP_MAX for
 * TCP). Returns the response length, or 0 when nothing must be sent (not a query). An AAAA
 * query whose proof-of-work addresses are all over the worker's budget gets SERVFAIL. */
size_t dnsd_answer(const struct dns_state *st, struct dnsd_ctx *cx, const uint8_t *q, size_t qlen,
                   const struct dnsd_client *cl, bool tcp, uint8_t *out, size_t cap);

/* The next pseudo-random number of a worker (wyrand). */
static inline uint64_t dnsd_rand(struct dnsd_ctx *cx)
{
	cx->rng += 0xa0761d6478bd642fULL;
	unsigned __int128 m = (unsigned __int128)cx->rng * (cx->rng ^ 0xe7037ed1a0b428dbULL);
	return (uint64_t)(m >> 64) ^ (uint64_t)m;
}

/* Adds one to a counter another thread may read. */
#define DNSD_INC(c)                                                                                \
	__atomic_store_n(&(c), __atomic_load_n(&(c), __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED)

/* Adds n to a counter another thread may read. */
#define DNSD_ADD(c, n)                                                                             \
	__atomic_store_n(&(c), __atomic_load_n(&(c), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
