/* A key's replica set from the owners of its replica slices; see store.h. Pure code. */
#include "store.h"

#include "peak/assign.h"
#include "peak/ssa.h"

int store_replica_set(const int *owner_of_replica, unsigned n, unsigned replicas,
                      int set[static STORE_WALK_MAX])
{
	unsigned k = 0;
	for (unsigned r = 0; r < n && r < STORE_WALK_MAX && k < replicas; r++) {
		bool seen = owner_of_replica[r] == ASSIGN_NONE;
		for (unsigned j = 0; j < k && !seen; j++)
			seen = set[j] == owner_of_replica[r];
		if (!seen)
			set[k++] = owner_of_replica[r];
	}
	return (int)k;
}

int store_key_replicas(const struct ssa_space *sp, const struct assign *a, unsigned replicas,
                       const uint8_t *key, size_t len, int set[static STORE_WALK_MAX])
{
	static const uint8_t src[16] = {0}; /* the slice does not depend on the source */
	int owner[STORE_WALK_MAX];
	uint8_t addr[16];
	unsigned r = 0;
	/* the set is the first distinct owners in replica order, so the walk stops once it
	 * has them: with replicas=1 one address is computed, not STORE_WALK_MAX (every
	 * request asks, on the pod's loop) */
	for (int k = 0; r < STORE_WALK_MAX && (unsigned)k < replicas; r++) {
		struct ssa_req q = {
		    .src = src, .object = key, .object_len = len, .replica = (uint8_t)r};
		int64_t g = ssa_compute(sp, &q, addr) ? -1 : ssa_slice_of(sp, addr);
		owner[r] = g < 0 ? ASSIGN_NONE : a->owner[g];
		k = store_replica_set(owner, r + 1, replicas, set);
	}
	return store_replica_set(owner, r, replicas, set);
}
