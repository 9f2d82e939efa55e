#pragma once
/* peak serve: a tiny test service that answers with its endpoint id, over plain TCP lines
 * or HTTP/1.1 (keep-alive), on every address the host accepts (AnyIP). */
#include <stdint.h>

struct serve_opts {
	uint16_t port;
	const char *id;
	unsigned max_conns;
	unsigned work_us; /* CPU time spent on each request before it is answered (0: none) */
};

/* Serves until SIGINT or SIGTERM. Returns 0, or 1 if the port could not be bound. */
int serve_run(const struct serve_opts *o);
