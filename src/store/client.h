#pragma once
/* The object store's client side (see store.h): one request on a connected socket
 * (store_call_run), and one operation over a key's replicas (store_op_run). */
#include <stdbool.h>
#include <stdint.h>

#include "peak/peak.h"
#include "peak/prefix.h"
#include "req.h"

enum {
	STORE_DETAIL_MAX = 256,
	STORE_POD_MAX = 64,
	STORE_EAGER_BODY = 4096, /* a PUT body this small goes with its head (no 100-continue) */
	STORE_ROUTES_MAX = 16,   /* prefixes of a pod's X-Peak-Routes a client keeps */
	STORE_POOL_MAX = 64,     /* idle connections a pool keeps */
	/* an idle connection is not reused after this long: well inside a pod's idle timeout
	 * (--timeout, 10 s by default), so it is rarely closed under a request */
	STORE_POOL_IDLE_MS = 2000,
	/* one idle for less is reused without asking the kernel whether the pod closed it (a
	 * pod never writes to an idle connection, and one it closed under a request that it
	 * did not read is retried on a new connection): saves a recv per request */
	STORE_POOL_CHECK_MS = 100,
};

struct store_call {
	enum store_method method;
	const char *key;   /* NUL-terminated: a key with NUL cannot be sent from here */
	const char *host;  /* the Host header's value */
	const char *acked; /* X-Peak-Acked (pods counted already), or NULL */
	int infd;          /* PUT: the body's source, a regular file read from its offset 0 */
	uint64_t in_len;   /* PUT: bytes of the body */
	int outfd;         /* GET: where the body goes */
	bool keep;         /* ask to keep the connection open (else Connection: close) */
	/* results */
	bool replied;  /* some bytes of a reply arrived (else a reused connection may retry) */
	bool reusable; /* keep: the exchange ended cleanly and the pod keeps the connection */
	unsigned status;
	uint64_t body_len;
	uint64_t body_out;       /* GET: bytes written to outfd (also on an error) */
	char pod[STORE_POD_MAX]; /* the answering pod's X-Peak-Pod, "" if none */
	uint64_t version;        /* GET 200: X-Peak-Version (mtime in ms), 0 if none */
	uint64_t head_size;      /* HEAD: the Content-Length (the object's size), or 0 */
	/* 200 from a former holder of the key (X-Peak-Former: a copy the map took away from the
	 * pod, kept until it is dropped), not from a pod that holds it under its map */
	bool former;
	uint64_t deleted; /* 404: the time of the pod's tombstone (X-Peak-Deleted, ms), or 0 */
	char detail[STORE_DETAIL_MAX]; /* 421: "owner ID at ADDR (use ADDR)"; errors: reason */
	/* X-Peak-Routes: the prefixes routed to the answering pod (its first keep-alive reply
	 * on a connection names them) */
	struct prefix routes[STORE_ROUTES_MAX];
	unsigned nroutes;
};

/* Sends one request on fd (blocking, with the caller's timeouts set) and reads the reply.
 * A PUT of more than STORE_EAGER_BODY bytes asks Expect: 100-continue and streams infd
 * with sendfile only after the 100, so a refusal (421, 413, 208) costs no body; a smaller
 * one goes in one send with the head; a GET streams a 200's body to outfd as it arrives,
 * of any length (never buffered whole). Returns 0 with call->status set, or -errno /
 * -EBADMSG (a reply that does not parse or is cut short), with a reason in call->detail. */
int store_call_run(int fd, struct store_call *call);

/* Copies the value of a response head's first header named name (any case) into out, at
 * most cap - 1 bytes up to the line's end; "" if absent. */
void store_header_value(const uint8_t *h, size_t hl, const char *name, char *out, size_t cap);

/* Reads a response head's X-Peak-Routes (IPv6 prefixes separated by spaces) into routes:
 * tokens that do not parse are skipped, prefixes past max dropped; returns how many. */
unsigned store_routes_parse(const uint8_t *h, size_t hl, struct prefix *routes, unsigned max);

/* Idle keep-alive connections to pods, for a client that makes many requests (one per
 * resolver: src/client/store.c). A request reuses a connection opened from the same source
 * to its computed address, or to a pod whose X-Peak-Routes holds that address (the routes
 * would bring a new connection to the same pod; the pod still checks each key, and a
 * stale route's 421 makes the client forget it and connect to the address). Not
 * thread-safe: one per thread. */
struct store_pool;

/* A new, empty pool, or NULL (out of memory). */
struct store_pool *store_pool_new(void);

/* Closes the pool's connections and frees it; NULL is ignored. */
void store_pool_free(struct store_pool *p);

/* One operation on a key over its replicas. The candidates are the key's addresses for
 * replica 0, 1, ... (the client library's, in that order); the walk goes through them
 * in order, sending X-Peak-Acked with the pods already counted (a pod holding several of
 * the key's replica slices answers each later one with 208), until `replicas` distinct
 * pods answered:
 * - PUT: succeeds once a quorum, replicas / 2 + 1, stored it (a majority: any two quorums
 *   share a pod); status 201 or 204.
 * - GET: the first 200 wins; a failure, timeout, 404, 421 or 208 moves on. 404 when a
 *   quorum said 404 or every candidate answered; else the last failure.
 * - DELETE: to every replica; succeeds (204, or 404 if no replica had it) once a quorum
 *   answered, or the walk reached every candidate without a failure: each leaves a
 *   tombstone, and a replica that missed the delete removes its copy when its repair
 *   lists the others' tombstones (repair.h).
 * A 4xx other than 404/421 (413, 400) ends the walk with that status. */
struct store_op {
	enum store_method method;
	const char *key;
	unsigned replicas; /* the rule's replicas=R, 1.. */
	const struct peak_candidate *cand;
	unsigned ncand;
	unsigned timeout_ms;     /* connect and each send/receive */
	struct store_pool *pool; /* connections to reuse and keep, or NULL: one per request */
	int infd;                /* PUT: a regular file */
	uint64_t in_len;
	int outfd; /* GET: the body's destination; a retry after a cut reply needs it seekable */
	/* called per attempt with a line to show (--verbose), or NULL */
	void (*trace)(void *arg, const char *line);
	void *trace_arg;
	/* called once if the walk has tried every candidate and needs more: appends the next
	 * replica numbers' candidates (cand is the callback's array) and returns the new
	 * ncand; or NULL */
	unsigned (*more)(struct store_op *op);
	void *more_arg;
	/* results */
	unsigned status; /* the outcome's status (0 if no pod answered) */
	unsigned acks;   /* pods that stored (PUT), deleted or had not (DELETE), said 404 (GET) */
	unsigned connect_failures; /* new connections that could not be opened */
	char detail[STORE_DETAIL_MAX];
};

/* Runs op. Returns 0 when the operation succeeded as said above (GET: also a 404, with
 * op->status telling), or a negative error with op->status and op->detail saying why. */
int store_op_run(struct store_op *op);
