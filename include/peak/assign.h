#pragma once
/*
 * Slice assignment: the explicit map slice -> owner endpoint that the controller keeps.
 * Balanced: owners' counts are the weights' largest-remainder apportionment of the slices
 * (within 1 of the exact share; equal weights differ by at most 1). Minimal in movement:
 * targets are rounded towards what owners already hold, and only the excess of an owner
 * over its target moves, so a join moves only what the newcomer gets and a leave only the
 * leaver's slices. Moves are made of aligned power-of-two blocks of adjacent slices, so
 * each owner's slices aggregate into few routes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peak/prefix.h"
#include "peak/ssa.h"

enum {
	ASSIGN_NONE = -1,
	ASSIGN_MAX_SLICES = 1 << 24,
	ASSIGN_MAX_ENDPOINTS = 1 << 16,
	ASSIGN_MAX_WEIGHT = 1000000,
};

struct assign_ep {
	uint32_t weight;
	uint32_t count;  /* slices held */
	uint32_t target; /* slices it should hold after the last change */
	bool live;
};

struct assign {
	uint32_t nslices;
	unsigned block_bits; /* log2 of the slices per prefix: blocks never cross a prefix */
	int32_t *owner;      /* slice -> endpoint slot, ASSIGN_NONE while unowned */
	struct assign_ep *ep;
	unsigned nep; /* slots used, including endpoints that left */
	unsigned cap;
};

/* An aligned run of 2^log2 slices starting at start (start is a multiple of 2^log2). */
struct assign_block {
	uint32_t start;
	uint8_t log2;
};

/* Builds the deterministic initial map: endpoints in the given order hold consecutive
 * ranges sized by their targets. nslices <= ASSIGN_MAX_SLICES, block_bits <= 32 (the slice
 * bits per prefix), weights <= ASSIGN_MAX_WEIGHT with at least one non-zero. Returns 0,
 * -EINVAL or -ENOMEM. */
int assign_init(struct assign *a, uint32_t nslices, unsigned block_bits, const uint32_t *weights,
                unsigned n);

/* Makes dst an independent copy of src. Returns 0 or -ENOMEM. */
int assign_copy(struct assign *dst, const struct assign *src);

/* Frees the map. */
void assign_fini(struct assign *a);

/* Adds an endpoint and rebalances. Returns its slot (>= 0) or -errno; *moved (if not NULL)
 * gets the number of slices that changed owner. */
int assign_add(struct assign *a, uint32_t weight, uint32_t *moved);

/* Adds n endpoints with these weights and rebalances once: the slices that move are only
 * the newcomers' shares (n assign_add calls would also move slices between newcomers).
 * Their slots are first, first + 1, ...; returns first (>= 0) or -errno (nothing added). */
int assign_add_many(struct assign *a, const uint32_t *weight, unsigned n, uint32_t *moved);

/* Removes an endpoint (its slot stays, dead) and rebalances. Returns 0, -EINVAL (no such
 * live slot, or it was the last with weight) or -ENOMEM. */
int assign_del(struct assign *a, unsigned slot, uint32_t *moved);

/* Changes an endpoint's weight and rebalances. Returns 0, -EINVAL or -ENOMEM. */
int assign_set_weight(struct assign *a, unsigned slot, uint32_t weight, uint32_t *moved);

/* Writes the slot's slices as the minimal list of aligned blocks (at most cap, in slice
 * order). Returns the number of blocks, which may exceed cap (then only cap are written). */
size_t assign_blocks(const struct assign *a, unsigned slot, struct assign_block *out, size_t cap);

/* Every slot's blocks (as assign_blocks gives them) in one pass over the map, where
 * assign_blocks for each slot reads the whole map each time: *out (malloc'ed, the
 * caller's) gets *n blocks in slice order and *slot_of (malloc'ed) the slot of each
 * (ASSIGN_NONE for unowned slices). Returns 0 or -ENOMEM (nothing to free). */
int assign_blocks_all(const struct assign *a, struct assign_block **out, int32_t **slot_of,
                      size_t *n);

/* Number of routes the slot's slices aggregate into (assign_blocks' count). */
size_t assign_routes(const struct assign *a, unsigned slot);

/* The prefix a block stands for in a service's address space. Returns 0 or -EINVAL. */
int assign_block_prefix(const struct ssa_space *sp, const struct assign_block *b,
                        struct prefix *out);
