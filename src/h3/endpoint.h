#pragma once
/* A QUIC server endpoint: one UDP socket, the connection-ID map, the connections, their
 * timers. Datagrams are matched to connections by destination connection ID only. What runs
 * on the connections (backend, ingress) comes in through h3_conn_ops. */
#include <stddef.h>
#include <stdint.h>

#include "conn.h"

struct h3_endpoint_stats {
	uint64_t accepted;   /* connections created */
	uint64_t dropped;    /* datagrams matching no connection and starting none */
	uint64_t refused;    /* Initials refused: connection limit or map full */
};

struct h3_endpoint {
	int fd;
	struct h3_addr bound;
	gnutls_certificate_credentials_t cred;
	struct h3_limits lim;
	struct h3_cidmap map;
	struct h3_conn *conns; /* singly linked */
	size_t nconns, max_conns;
	uint8_t secret[H3_SECRET_LEN];
	const struct h3_conn_ops *ops;
	void *app;
	struct h3_endpoint_stats stats;
};

/* Binds listen, loads the certificate and key, allocates the map for max_conns
 * connections. Returns 0 or -errno (a reason is logged). */
int h3_endpoint_init(struct h3_endpoint *ep, const struct h3_addr *listen, const char *cert,
                     const char *key, const struct h3_limits *lim, size_t max_conns,
                     const struct h3_conn_ops *ops, void *app);

/* Frees every connection (without telling the peers) and the endpoint's resources. */
void h3_endpoint_fini(struct h3_endpoint *ep);

/* Reads the datagrams queued on the socket (a bounded batch), feeds them to their
 * connections or accepts new ones, and writes what that caused. */
void h3_endpoint_on_readable(struct h3_endpoint *ep);

/* Runs due timers and frees the connections that are done. */
void h3_endpoint_on_timer(struct h3_endpoint *ep);

/* Milliseconds until the next timer (poll's timeout), -1 if none. */
int h3_endpoint_timeout_ms(struct h3_endpoint *ep);

/* Closes every connection with H3_NO_ERROR (a CONNECTION_CLOSE each). */
void h3_endpoint_close_all(struct h3_endpoint *ep);
