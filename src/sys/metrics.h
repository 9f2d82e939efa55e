#pragma once
/* A Prometheus text endpoint (GET /metrics over HTTP, libmicrohttpd) for PEAK's daemons. */
#include <stddef.h>

/* A growing text buffer for rendering metrics. */
struct mbuf {
	char *p;
	size_t len, cap;
};

/* Appends formatted text; on allocation failure the buffer stays as it was. */
void mbuf_printf(struct mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Renders the metrics into b; called on the endpoint's thread for each scrape. */
typedef void (*metrics_render_fn)(struct mbuf *b, void *arg);

struct metrics_srv;

/* Serves http://ADDR:PORT/metrics ("IPV4:PORT" or "[IPV6]:PORT"). Returns NULL with the
 * reason logged. */
struct metrics_srv *metrics_start(const char *addr, metrics_render_fn fn, void *arg);

void metrics_stop(struct metrics_srv *m);
