#pragma once
/* peak h3 upload: one HTTP/3 connection, every file its own POST stream, all at once as far
 * as the server's stream limit allows; each answer's checksum is checked against the file's
 * own SHA-256. */
#include <stdbool.h>
#include <stddef.h>
#include <netinet/in.h>

enum { H3_UPLOAD_MAX_FILES = 256 };

struct h3_upload_file {
	const char *path;
	const char *type; /* NULL: sent without content-type */
};

struct h3_upload_opts {
	const char *url; /* https://HOST[:PORT][/PATH] */
	struct h3_upload_file files[H3_UPLOAD_MAX_FILES];
	size_t nfiles;
	const char *ca;           /* trust this CA file instead of the system's */
	bool insecure;            /* no certificate check */
	bool get;                 /* no files: one GET of the URL (health checks) */
	const char *get_type;     /* the GET's content-type (an ingress routes by it), or NULL */
	size_t migrate_after;     /* nonzero: move to a new local port after this many body bytes */
	const char *qlog_dir;     /* the connection's qlog file there, or NULL */
	const char *session_file; /* TLS session store for resumption, or NULL */
	bool early_data;          /* with a stored session, send the requests as 0-RTT */
	unsigned timeout_ms;
	/* PEAK-direct: the URL's host is the address a service's SSA rule gave. */
	const struct in6_addr *source; /* send from this address (the rule's), or NULL */
	const char *server_name;       /* TLS name (SNI, certificate check) if not the URL's host */
	const char *metrics_file; /* the client's Prometheus text written there at exit, or NULL */
	bool h2; /* HTTP/2 over TLS/TCP instead of HTTP/3 (no migration, 0-RTT, qlog) */
};

/* Runs the uploads (or the GET) and prints one line per stream on stdout. Returns 0 when every
 * stream got 201 with the right checksum and size (a GET: any 2xx), 1 when any did not (or the
 * connection failed), or -errno when it could not start (bad URL, unreadable file: a reason is
 * printed). */
int h3_upload_run(const struct h3_upload_opts *o);

/* Writes to path (atomically) the metrics files parts[0..nparts) that exist (NULL or missing
 * ones are skipped), one connection each: every family once, its samples labelled
 * connection="K" with the part's index. 0, or -errno (-ENOENT if none was there). */
int h3_upload_metrics_merge(const char *path, const char *const *parts, size_t nparts);
