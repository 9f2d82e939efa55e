#pragma once
/*
 * Repair: a pod that starts (after a crash, or empty) pulls from its peers the objects of
 * the keys whose replica set holds it (store.h) and that it lacks. One background thread
 * pages through each other endpoint's listing (GET /s/?after=NAME&limit=N at the
 * endpoint's configured address and the service port) and fetches each missing object with
 * GET /o/KEY, writing it as a PUT does (temp file, fsync, rename; an object that arrived
 * meanwhile by a PUT is kept). Progress goes to the log per page and to the counters below.
 *
 * Migration is the same walk: a pod that gained slices by the last join (store.h) pulls the
 * objects of those slices from their old owners, and only those (the listing is names; an
 * object travels only if this pod now holds its key and lacks it). Until the walk is done a
 * read that misses asks the key's old holders (store_repair_pull): reads never fail during
 * the move.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "peak/assign.h"
#include "peak/config.h"
#include "peak/ssa.h"

struct store_repair {
	/* set before store_repair_start; read-only while it runs */
	const struct cfg_service *svc;
	const struct ssa_space *space;
	const struct assign *a;
	const int *slot;          /* endpoint index -> assignment slot */
	const struct assign *old; /* before the last join, or NULL: no migration */
	int me;
	unsigned replicas;
	int dirfd;
	const char *id;
	unsigned timeout_ms; /* connect and each send/receive to a peer */
	unsigned pull_rate;  /* objects per second the walk pulls at most; 0: no limit */
	/* progress */
	atomic_uint_fast64_t listed;      /* objects seen in peers' listings */
	atomic_uint_fast64_t pulled;      /* objects fetched and stored */
	atomic_uint_fast64_t failed;      /* objects or pages that failed */
	atomic_uint_fast64_t peers;       /* peers whose listing was walked to its end */
	atomic_uint_fast64_t bytes;       /* body bytes of the objects pulled */
	atomic_uint_fast64_t wanted;      /* listed objects this pod holds the key of and lacked */
	atomic_uint_fast64_t handled;     /* of those, pulled, found stored meanwhile, or failed */
	atomic_uint_fast64_t readthrough; /* reads that missed and were fetched from old holders */
	atomic_bool done, stop;
	pthread_t thread;
	bool started;
};

/* Starts the repair thread (signals must already be blocked: it inherits the mask).
 * Returns 0 or -errno. */
int store_repair_start(struct store_repair *r);

/* Fetches key[0..kl)'s object from endpoint e (an index into svc->ep) into the data
 * directory as name, as a PUT stores it; safe from any thread. Returns 1 stored, 0 present
 * already (kept), -ENOENT if e has none, or -errno. */
int store_repair_pull(struct store_repair *r, unsigned e, const uint8_t *key, size_t kl,
                      const char *name);

/* Asks the thread to stop after the request under way and joins it. */
void store_repair_stop(struct store_repair *r);
