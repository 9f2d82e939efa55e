/* A key's replica set from the owners of its replica slices; see store.h. Pure code. */
#include "store.h"

#include "peak/assign.h"

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
