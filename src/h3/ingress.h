#pragma once
/* peak h3 ingress: terminates QUIC+TLS for clients and forwards each request stream, by its
 * content-type (route.h), over one HTTP/3 connection per upstream, streaming the answer
 * back. Bodies are never held whole: the bytes of a stream in flight are held only until the
 * other side acknowledges them, and the client is granted flow-control credit for its body as
 * it arrives but at most one window ahead of what the upstream acknowledged (and the upstream
 * as the client acknowledges the answer), so a slow upstream slows only its own client stream
 * and a stream holds at most two windows, while a packet lost upstream does not stop the
 * client until it is recovered. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "page.h"
#include "route.h"
#include "udp.h"

struct h3_ingress_opts {
	struct h3_addr listen;
	const char *cert, *key;
	struct h3_route_table *routes;
	const char *upstream_ca;     /* trust this CA for upstreams (NULL: the system's) */
	bool upstream_insecure;      /* no certificate check of upstreams */
	unsigned health_interval_ms; /* GET /healthz on each upstream this often */
	uint64_t max_streams;        /* concurrent request streams per client connection */
	size_t max_conns;
	const uint8_t *secret; /* 16 bytes or NULL (as the backend's --secret-file) */
	bool retry;
	const char *metrics; /* ADDR:PORT or NULL */
	const char *qlog_dir;
	const char *id; /* metrics label */
	bool sniff;     /* route untyped and octet-stream bodies by their magic numbers */
	const struct h3_page *page; /* what GET / answers (h3_page_wanted), or NULL */
};

/* Serves until SIGINT or SIGTERM. Returns 0 on a clean stop, -errno if it could not start. */
int h3_ingress_run(const struct h3_ingress_opts *o);
