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

/* Counters of one worker; only that worker writes them. */
struct dnsd_stats {
	uint64_t qtype[DQ_N];
	uint64_t rcode[DR_N];
	uint64_t udp, tcp, dropped, truncated, ecs;
	uint64_t batches; /* UDP receive calls that returned queries */
} __attribute__((aligned(64)));

/* Per-worker context. */
struct dnsd_ctx {
	uint64_t rng;
	unsigned worker; /* < DNSD_MAX_WORKERS: which steering counter cells to use */
	uint64_t now;    /* unix seconds, for hop rules */
	struct dnsd_stats *stats;
};

/* Where a query came from. */
struct dnsd_client {
	uint8_t addr[16]; /* IPv6, or IPv4-mapped */
	bool v6;          /* a real IPv6 source (not IPv4-mapped) */
};

enum { DNSD_UDP_MAX = 4096, DNSD_TCP_MAX = 65535 };

/* Answers the query q of qlen bytes into out (cap >= DNSD_UDP_MAX for UDP, DNSD_TCP_MAX for
 * TCP). Returns the response length, or 0 when nothing must be sent (not a query). */
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
