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

/* Appends v as a label value of the Prometheus text format, quotes included: "v" with
 * backslash, double quote and line feed written as \\, \" and \n (the exposition format's
 * escapes), every other byte as it is. E.g. for name{service="a\"b"}:
 *	mbuf_printf(b, "name{service=");
 *	mbuf_label(b, svc);
 *	mbuf_printf(b, "} %llu\n", v);
 * On allocation failure the buffer stays as it was. */
void mbuf_label(struct mbuf *b, const char *v);

/* The same escapes into out (cap bytes, cap > 0, always NUL-terminated, no quotes added),
 * for a label value inside one mbuf_printf: "service=\"%s\"". A value that does not fit is
 * cut before an escape sequence, never inside one. Returns out. METRICS_LABEL_MAX bytes hold
 * any value of up to METRICS_LABEL_MAX / 2 - 1 bytes. */
const char *metrics_label(char *out, size_t cap, const char *v);

enum { METRICS_LABEL_MAX = 2 * 1024 };

/* Renders the metrics into b; called on the endpoint's thread for each scrape. */
typedef void (*metrics_render_fn)(struct mbuf *b, void *arg);

struct metrics_srv;

/* Serves http://ADDR:PORT/metrics ("IPV4:PORT" or "[IPV6]:PORT"). Returns NULL with the
 * reason logged. */
struct metrics_srv *metrics_start(const char *addr, metrics_render_fn fn, void *arg);

void metrics_stop(struct metrics_srv *m);
