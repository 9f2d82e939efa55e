#pragma once
/*
 * peak store: a content-addressed object store on SSA (issue 20). A pod serves HTTP/1.1 on
 * every address of its service's slices (AnyIP) and keeps the objects whose key hashes
 * (select=obj, replica 0) into a slice the configuration's initial assignment gives it; the
 * client computes the address from the key and goes straight there.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

enum {
	/* Bodies stream to and from disk, never buffered whole: the limit is for disk space. */
	STORE_DEF_MAX_BODY = 1 << 30,
	STORE_DEF_MAX_CONNS = 1024,
	STORE_DEF_TIMEOUT_MS = 10000,
	/* A request or response may take its timeout plus its bytes at this rate (bytes per
	 * millisecond, 64 KB/s), so a slow client is cut off however it trickles. */
	STORE_MIN_RATE_BPMS = 64,
	/* Replica numbers a key's replica set is drawn from (the client library's candidates). */
	STORE_WALK_MAX = 16,
	STORE_JOINED_MAX = 16, /* --joined endpoints */
	/* how long after a new map's walk the objects it took away from a pod are dropped
	 * (repair.h): longer than the routes take to follow the map, and than a flap */
	STORE_DEF_DROP_DELAY_S = 30,
	/* bodies up to this many bytes go to the small-object log (slog.h), larger ones to a
	 * file each */
	STORE_DEF_LOG_MAX = 64 << 10,
};

struct store_opts {
	const char *config; /* the PEAK configuration file */
	const char *id;     /* this pod's endpoint id in it */
	const char *data;   /* the data directory (created if missing) */
	struct sockaddr_storage listen;
	socklen_t listen_len; /* 0: [::] on the service's port */
	uint64_t max_body;
	unsigned max_conns;
	unsigned timeout_ms;
	const char *metrics; /* "[ADDR]:PORT" of the Prometheus endpoint, or NULL */
	/* Endpoints of the configuration that joined after its initial assignment, in the
	 * order they joined: the slices are the initial assignment of the others, then
	 * assign_add of each (so each join moves only the newcomer's share, as the controller
	 * moves them). The last join is the move under way: a pod that gained slices by it
	 * pulls their objects from the owners before it (migration, repair.h). */
	const char *joined[STORE_JOINED_MAX];
	unsigned njoined;
	unsigned pull_rate;  /* objects per second the walk pulls at most; 0: no limit */
	unsigned tomb_ttl_s; /* how long a delete's tombstone is kept (repair.h); 0: the default */
	/* Live assignment (ctlsub.h): the controller's ADDR:PORT, or NULL (the configuration's
	 * assignment and --joined); the key file its hellos are checked with, or NULL; the
	 * hello's node name (NULL: "store-ID"). */
	const char *controller, *key_file, *node;
	/* under a controller's maps: seconds after a walk before the objects the map took away
	 * are dropped (once their holders confirm them, repair.h); -1: never */
	int drop_delay_s;
	/* PUT bodies up to log_max bytes are appended to the small-object log (slog.h); 0:
	 * every object is a file. log_segment: the log's roll-over size (0: the default). */
	uint64_t log_max, log_segment;
};

/* Serves until SIGINT or SIGTERM (SIGHUP is logged and ignored). Returns 0, 1 if the pod
 * could not start (port, data directory), or 2 for a bad configuration or id. */
int store_serve(const struct store_opts *o);

/* A key's replica set: given the owner slot of the slice of each replica number 0..n-1
 * (ASSIGN_NONE for none), the first `replicas` distinct owners in that order (Dynamo's
 * preference list); so with fewer pods than replicas every pod holds a copy. Returns how
 * many, into set. The client walks the same order and learns the owners from X-Peak-Pod. */
int store_replica_set(const int *owner_of_replica, unsigned n, unsigned replicas,
                      int set[static STORE_WALK_MAX]);

struct ssa_space;
struct assign;

/* The replica set of key[0..len) under the space's rule (its pow set to 0) and the
 * assignment a, as store_replica_set. */
int store_key_replicas(const struct ssa_space *sp, const struct assign *a, unsigned replicas,
                       const uint8_t *key, size_t len, int set[static STORE_WALK_MAX]);

/* The on-disk name of key's object in slice g: "SSSSSSSS-" and the SHA-256 of the key in
 * hex (so no key can name a path; the slice prefix lists a slice's objects). */
void store_object_name(uint64_t g, const uint8_t *key, size_t len, char out[static 80]);
