#pragma once
/*
 * Longest-prefix match over IPv6 prefixes /0 to /128. The table of record is a path-compressed
 * binary trie (the shape of WireGuard's allowedips and BIRD's trie) whose nodes live in one
 * array indexed by 32-bit numbers (about 2 nodes of 32 bytes a prefix). Lookups go through a
 * poptrie built from it (a 14-bit direct table, then stride-6 nodes of 24 bytes with popcount
 * bitmaps and compressed leaves of 32 bytes; a region's leaf holds a copy of its only trie
 * node, so lookups end there without reading the trie, except inside a /64 or so, where a leaf
 * may stand for up to 3 nodes and a lookup may take a short walk of the trie; layout at the top
 * of src/lib/lpm6.c), patched on every add and del: one node is rebuilt, or leaves are
 * rewritten in place when a short prefix's value changes under many longer ones (a change of
 * ::/0 rewrites every leaf). Lookups use the POPCNT instruction where the CPU has it. Arrays
 * of 2 MiB or more are mapped with MADV_HUGEPAGE (fewer TLB misses in a large table). About
 * 150 to 210 bytes a prefix in all, as lpm6_bytes reports. Each prefix carries a 32-bit value
 * (the overlay stores a route number). Pure code, no I/O. Not thread-safe: one writer, and no
 * reader while it writes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lpm6;

/* An empty table, or NULL if out of memory. */
struct lpm6 *lpm6_new(void);

/* As lpm6_new, but lookups count bits without POPCNT even where the CPU has it (tests). */
struct lpm6 *lpm6_new_soft(void);

/* Frees the table and everything in it; NULL is allowed. */
void lpm6_free(struct lpm6 *t);

/* Makes room for n prefixes at once (2n nodes), so a bulk load reallocates once.
 * Returns 0 or -ENOMEM. */
int lpm6_reserve(struct lpm6 *t, size_t n);

/* Adds prefix/plen (bits past plen are ignored) with value val, or replaces the value of
 * the same prefix. Returns 0 if added, 1 if replaced, -EINVAL if plen > 128, -ENOMEM (then
 * the table is unchanged). If memory runs out while patching the lookup structure, the
 * change is still made and lookups stay exact but walk the trie (slower) until a later add
 * or del manages to rebuild it. */
int lpm6_add(struct lpm6 *t, const uint8_t prefix[static 16], unsigned plen, uint32_t val);

/* Removes exactly prefix/plen. Returns 0, -ENOENT if absent, -EINVAL if plen > 128. What
 * lpm6_add says of memory running out while patching applies here too. */
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

/* Bytes the table holds: the trie's and the poptrie's arrays as allocated, used or free. */
size_t lpm6_bytes(const struct lpm6 *t);

/* Calls fn for every prefix in address order (shorter first at the same address); stops
 * and returns fn's value as soon as it is not 0. fn must not change the table. */
int lpm6_walk(const struct lpm6 *t,
              int (*fn)(const uint8_t prefix[16], unsigned plen, uint32_t val, void *arg),
              void *arg);
