#pragma once
/* The object store's client side: one request on a connected socket (see store.h). */
#include <stdint.h>

#include "req.h"

enum { STORE_DETAIL_MAX = 256 };

struct store_call {
	enum store_method method;
	const char *key;  /* NUL-terminated: a key with NUL cannot be sent from here */
	const char *host; /* the Host header's value */
	int infd;         /* PUT: the body's source, a regular file read from its offset 0 */
	uint64_t in_len;  /* PUT: bytes of the body */
	int outfd;        /* GET: where the body goes */
	/* results */
	unsigned status;
	uint64_t body_len;
	char detail[STORE_DETAIL_MAX]; /* 421: "owner ID at ADDR (use ADDR)"; errors: reason */
};

/* Sends one request on fd (blocking, with the caller's timeouts set) and reads the reply:
 * PUT streams infd with sendfile, GET streams the body to outfd (only for a 200). Returns 0
 * with call->status set, or -errno / -EBADMSG (a reply that does not parse), with a reason
 * in call->detail. */
int store_call_run(int fd, struct store_call *call);
