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
 *
 * Tombstones: a DELETE leaves, in the data directory's "tomb" subdirectory, a file of the
 * object's name holding "PKT1", the delete's wall-clock time in milliseconds (u64, big
 * endian), the key's length (u16) and the key. An object's version is its file's mtime. A
 * tombstone newer than a copy wins over it (a pulled copy keeps the version its source
 * sent as X-Peak-Version): a read that misses does not read through past
 * it, the walk does not pull an older copy, and a pod whose copy is older than a peer's
 * listed tombstone removes it (a replica that missed the delete). Listings carry
 * tombstones, so the walk spreads them to the key's other holders. A PUT removes its
 * name's tombstone; tombstones expire after the pod's --tombstone-ttl.
 *
 * Dropping (a walk started by a controller's map, drop set): after the pull walk and then
 * drop_delay_ms more (a new map stops the thread first, so a flap inside the delay drops
 * nothing), the thread scans the pod's own objects for keys whose replica set under the
 * new map no longer holds this pod, and asks every pod of that set for the object (HEAD
 * /o/KEY at its configured address). The local copy is deleted (no tombstone: the object
 * lives on) only when each of them answers 200 with a version at least the copy's (equal:
 * the same size too), so the last copy never goes, and a holder that lacks it, is down or
 * slow keeps it here; such objects are asked about again, 1 s, 2 s, ... up to a minute
 * apart, until they go or the next map. A holder still migrating reads a miss through
 * from this pod's copy, so asking it also hands the object over.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "peak/assign.h"
#include "peak/config.h"
#include "peak/ssa.h"
#include "slog.h"

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
	struct slog *log; /* the small-object log; objects are read and removed through it */
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
	atomic_uint_fast64_t tombstoned;  /* local copies removed by a peer's newer tombstone */
	/* dropping: run the drop pass after the walk, drop_delay_ms after it */
	bool drop;
	uint64_t drop_delay_ms;
	atomic_uint_fast64_t dropped;       /* objects deleted here once their holders confirmed */
	atomic_uint_fast64_t dropped_bytes; /* their body bytes */
	atomic_uint_fast64_t unconfirmed;   /* the last pass: objects not ours kept (unconfirmed) */
	atomic_uint_fast64_t conns; /* connections opened to peers (listings, pulls, asks) */
	int tombfd;                 /* the tombstone directory */
	/* a tombstone may be in it: set at start-up if it holds any, and before one is
	 * written (here or by a DELETE); while it is not, a PUT's commit does not try to
	 * remove its name's tombstone (an unlinkat per PUT, most often of nothing) */
	atomic_bool tombs;
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

/* store_repair_pull on the kept connection *sock to e (-1: none yet): opened if needed,
 * replaced once if e closed it before answering, and left in *sock if e keeps it (else
 * closed, -1); so many pulls from one peer cost one connection. */
int store_repair_pull_on(struct store_repair *r, unsigned e, const uint8_t *key, size_t kl,
                         const char *name, int *sock);

enum { STORE_TOMB_DEF_TTL_S = 7 * 86400 };

/* The wall-clock time in milliseconds (tombstone and object versions). */
uint64_t store_now_ms(void);

/* Writes name's tombstone (time ms, key[0..kl)) durably: temp file, fsync, rename, fsync
 * the directory; replaces an older one. Returns 0 or -errno. */
int store_tomb_put(int tombfd, const char *name, const uint8_t *key, size_t kl, uint64_t ms);

/* The time of name's tombstone in ms, 0 if there is none (or it is damaged). If key is not
 * NULL, the key (up to STORE_KEY_MAX bytes) goes there and its length to *kl. */
uint64_t store_tomb_get(int tombfd, const char *name, uint8_t *key, size_t *kl);

/* Removes tombstones older than ttl_ms at now_ms, and temp files a crash left; settles what
 * a crash left half done among the objects (files and log, slog.h): an object older than
 * its tombstone goes, a tombstone older than its object goes. Returns how many tombstones
 * expired, or -errno. */
int store_tomb_expire(struct slog *l, int tombfd, uint64_t now_ms, uint64_t ttl_ms);

/* Asks the thread to stop after the request under way and joins it. */
void store_repair_stop(struct store_repair *r);
