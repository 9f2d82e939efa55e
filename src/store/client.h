#pragma once
/* The object store's client side (see store.h): one request on a connected socket
 * (store_call_run), and one operation over a key's replicas (store_op_run). */
#include <stdbool.h>
#include <stdint.h>

#include "peak/peak.h"
#include "req.h"

enum { STORE_DETAIL_MAX = 256, STORE_POD_MAX = 64 };

struct store_call {
	enum store_method method;
	const char *key;   /* NUL-terminated: a key with NUL cannot be sent from here */
	const char *host;  /* the Host header's value */
	const char *acked; /* X-Peak-Acked (pods counted already), or NULL */
	int infd;          /* PUT: the body's source, a regular file read from its offset 0 */
	uint64_t in_len;   /* PUT: bytes of the body */
	int outfd;         /* GET: where the body goes */
	/* results */
	unsigned status;
	uint64_t body_len;
	uint64_t body_out;             /* GET: bytes written to outfd (also on an error) */
	char pod[STORE_POD_MAX];       /* the answering pod's X-Peak-Pod, "" if none */
	char detail[STORE_DETAIL_MAX]; /* 421: "owner ID at ADDR (use ADDR)"; errors: reason */
};

/* Sends one request on fd (blocking, with the caller's timeouts set) and reads the reply.
 * A PUT asks Expect: 100-continue and streams infd with sendfile only after the 100, so a
 * refusal (421, 413, 208) costs no body; a GET streams a 200's body to outfd as it arrives,
 * of any length (never buffered whole). Returns 0 with call->status set, or -errno /
 * -EBADMSG (a reply that does not parse or is cut short), with a reason in call->detail. */
int store_call_run(int fd, struct store_call *call);

/* One operation on a key over its replicas. The candidates are the key's addresses for
 * replica 0, 1, ... (the client library's, in that order); the walk goes through them
 * in order, sending X-Peak-Acked with the pods already counted (a pod holding several of
 * the key's replica slices answers each later one with 208), until `replicas` distinct
 * pods answered:
 * - PUT: succeeds once a quorum, replicas / 2 + 1, stored it (a majority: any two quorums
 *   share a pod); status 201 or 204.
 * - GET: the first 200 wins; a failure, timeout, 404, 421 or 208 moves on. 404 when a
 *   quorum said 404 or every candidate answered; else the last failure.
 * - DELETE: to every replica; succeeds (204, or 404 if no replica had it) only when all
 *   `replicas` pods answered or the walk reached every candidate without a failure: with
 *   no tombstones, a replica that missed the delete would serve the object again.
 * A 4xx other than 404/421 (413, 400) ends the walk with that status. */
struct store_op {
	enum store_method method;
	const char *key;
	unsigned replicas; /* the rule's replicas=R, 1.. */
	const struct peak_candidate *cand;
	unsigned ncand;
	unsigned timeout_ms; /* connect and each send/receive */
	int infd;            /* PUT: a regular file */
	uint64_t in_len;
	int outfd; /* GET: the body's destination; a retry after a cut reply needs it seekable */
	/* called per attempt with a line to show (--verbose), or NULL */
	void (*trace)(void *arg, const char *line);
	void *trace_arg;
	/* results */
	unsigned status; /* the outcome's status (0 if no pod answered) */
	unsigned acks;   /* pods that stored (PUT), deleted or had not (DELETE), said 404 (GET) */
	char detail[STORE_DETAIL_MAX];
};

/* Runs op. Returns 0 when the operation succeeded as said above (GET: also a 404, with
 * op->status telling), or a negative error with op->status and op->detail saying why. */
int store_op_run(struct store_op *op);
