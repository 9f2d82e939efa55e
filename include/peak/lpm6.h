#pragma once
/*
 * Longest-prefix match over IPv6 prefixes /0 to /128: a path-compressed binary trie (the
 * shape of WireGuard's allowedips and BIRD's trie) whose nodes live in one array indexed by
 * 32-bit numbers, so 1M prefixes take about 2M nodes of 32 bytes and no pointer per node.
 * Each prefix carries a 32-bit value (the overlay stores a route number). Pure code, no I/O.
 * Not thread-safe: one writer, and no reader while it writes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lpm6;

/* An empty table, or NULL if out of memory. */
struct lpm6 *lpm6_new(void);

/* Frees the table and everything in it; NULL is allowed. */
void lpm6_free(struct lpm6 *t);

/* Makes room for n prefixes at once (2n nodes), so a bulk load reallocates once.
 * Returns 0 or -ENOMEM. */
int lpm6_reserve(struct lpm6 *t, size_t n);

/* Adds prefix/plen (bits past plen are ignored) with value val, or replaces the value of
 * the same prefix. Returns 0 if added, 1 if replaced, -EINVAL if plen > 128, -ENOMEM. */
int lpm6_add(struct lpm6 *t, const uint8_t prefix[static 16], unsigned plen, uint32_t val);

/* Removes exactly prefix/plen. Returns 0, -ENOENT if absent, -EINVAL if plen > 128. */
int lpm6_del(struct lpm6 *t, const uint8_t prefix[static 16], unsigned plen);

/* The longest prefix holding addr: true with its value in *val and its length in *plen
 * (either may be NULL), or false if no prefix holds addr. */
bool lpm6_lookup(const struct lpm6 *t, const uint8_t addr[static 16], uint32_t *val,
                 unsigned *plen);

/* lpm6_lookup for n addresses at once: found[i] tells whether addr[i] matched, and then
 * val[i] holds the value. The walks are interleaved with prefetches, so the cache misses of
 * a table larger than the cache overlap instead of adding up. */
void lpm6_lookup_batch(const struct lpm6 *t, const uint8_t (*addr)[16], size_t n, uint32_t *val,
                       bool *found);

/* The value of exactly prefix/plen: true and *val, or false if absent. */
bool lpm6_get(const struct lpm6 *t, const uint8_t prefix[static 16], unsigned plen, uint32_t *val);

/* Number of prefixes in the table. */
size_t lpm6_count(const struct lpm6 *t);

/* Bytes the table holds (nodes allocated, used or free). */
size_t lpm6_bytes(const struct lpm6 *t);

/* Calls fn for every prefix in address order (shorter first at the same address); stops
 * and returns fn's value as soon as it is not 0. fn must not change the table. */
int lpm6_walk(const struct lpm6 *t,
              int (*fn)(const uint8_t prefix[16], unsigned plen, uint32_t val, void *arg),
              void *arg);
