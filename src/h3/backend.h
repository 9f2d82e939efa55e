#pragma once
/* peak h3 backend: an HTTP/3 server that hashes uploads. POST bodies are hashed with SHA-256
 * as they stream in (never held whole) and answered 201 with JSON
 * {"checksum":"<hex>","bytes":N,"type":"<content-type>","backend":"<id>"}; GET /healthz is
 * 200, and with a page (--page) GET / gets it; a content type outside --type is 415, none at
 * all 400. */
#include <stddef.h>
#include <stdint.h>

#include "ctype.h"
#include "page.h"
#include "udp.h"

struct h3_backend_opts {
	struct h3_addr listen;
	const char *cert, *key;
	struct h3_ctype_set types;
	const char *id;
	uint64_t max_streams; /* concurrent request streams per connection */
	size_t max_conns;
	const uint8_t *secret;      /* 16 bytes (--secret-file) or NULL: random per process */
	bool retry;                 /* Retry every new connection, not only past max_conns / 2 */
	const char *metrics;        /* ADDR:PORT for GET /metrics (Prometheus), or NULL */
	const char *qlog_dir;       /* a qlog file per connection there, or NULL */
	bool h2;                    /* HTTP/2 over TLS/TCP on listen instead of HTTP/3 */
	const struct h3_page *page; /* what GET / answers (h3_page_wanted), or NULL: 404 */
};

/* Serves until SIGINT or SIGTERM. Returns 0 on a clean stop, -errno if it could not start. */
int h3_backend_run(const struct h3_backend_opts *o);
