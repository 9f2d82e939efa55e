#pragma once
/* A QUIC server endpoint: one UDP socket, the connection-ID map, the connections, their
 * timers. Datagrams are matched to connections by destination connection ID only. What runs
 * on the connections (backend, ingress) comes in through h3_conn_ops. */
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "replay.h"

/* Handshake time histogram bounds, microseconds (the last bucket is +Inf). */
enum { H3_HS_BUCKETS = 10 };
extern const uint64_t h3_hs_bucket_us[H3_HS_BUCKETS];

/* Counters, written by the endpoint's thread with relaxed atomics so that a metrics thread
 * may read them (h3_stat_get) at any time. */
#define h3_stat_add(field, n) __atomic_fetch_add(&(field), (n), __ATOMIC_RELAXED)
#define h3_stat_get(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

struct h3_endpoint_stats {
	uint64_t open;     /* connections now */
	uint64_t hs_count; /* handshakes completed */
	uint64_t hs_sum_us;
	uint64_t hs_bucket[H3_HS_BUCKETS + 1]; /* not cumulative; the last is over all bounds */
	uint64_t accepted;                     /* connections created */
	uint64_t dropped;    /* datagrams matching no connection and starting none */
	uint64_t refused;    /* Initials refused: connection limit or map full */
	uint64_t retries;    /* Retry packets sent (address validation, RFC 9000 §8.1.2) */
	uint64_t bad_tokens; /* Initials with a Retry token that did not verify */
	uint64_t resets;     /* stateless resets sent for unknown connections (§10.3) */
	uint64_t version_negotiations; /* answers to unknown versions (§6.1) */
	uint64_t resumed;              /* handshakes that resumed a session (a ticket) */
	uint64_t new_tokens_sent;      /* NEW_TOKEN frames queued for clients */
	uint64_t new_tokens_ok;        /* Initials whose NEW_TOKEN token verified: no Retry */
	uint64_t new_tokens_bad;       /* ... whose token did not (treated as no token) */
};

/* Counts one handshake that took ns nanoseconds into st's histogram (the h2 server's
 * handshakes too, which have no endpoint). */
void h3_stats_handshake(struct h3_endpoint_stats *st, uint64_t ns);

/* Makes the TLS session ticket key (GnuTLS rotates the keys it derives from it): from secret
 * (H3_SECRET_LEN bytes) when there is one, so that tickets survive a restart and work across
 * servers sharing it, else random. Returns 0 or -errno; free k->data with gnutls_free. */
int h3_ticket_key_init(gnutls_datum_t *k, const uint8_t *secret);

/* When a new connection must first prove its address with a Retry round trip. */
struct h3_retry_policy {
	bool always;
	size_t above; /* or once this many connections are open (0: never) */
};

struct h3_endpoint {
	int fd;
	struct h3_addr bound;
	gnutls_certificate_credentials_t cred;
	struct h3_limits lim;
	struct h3_cidmap map;
	struct h3_conn *conns; /* singly linked */
	size_t nconns, max_conns;
	uint8_t secret[H3_SECRET_LEN]; /* stateless reset tokens and Retry tokens */
	gnutls_datum_t ticket_key;     /* TLS session tickets (resumption) */
	struct h3_replay *replay;      /* 0-RTT anti-replay cache */
	struct h3_retry_policy retry;
	uint64_t reset_window_s; /* stateless resets: at most EP_RESETS_PER_S a second */
	unsigned resets_in_window;
	const struct h3_conn_ops *ops;
	void *app;
	struct h3_endpoint_stats stats;
	struct h3_udp_reader rx; /* the socket's reader and its counters */
};

/* Binds listen, loads the certificate and key, allocates the map for max_conns
 * connections. secret (H3_SECRET_LEN bytes, copied) keys the stateless reset and Retry
 * tokens, so that a restarted endpoint with the same secret resets its old connections; NULL
 * draws a random one. Returns 0 or -errno (a reason is logged). */
int h3_endpoint_init(struct h3_endpoint *ep, const struct h3_addr *listen, const char *cert,
                     const char *key, const struct h3_limits *lim, size_t max_conns,
                     const uint8_t *secret, const struct h3_retry_policy *retry,
                     const struct h3_conn_ops *ops, void *app);

/* Frees every connection (without telling the peers) and the endpoint's resources. */
void h3_endpoint_fini(struct h3_endpoint *ep);

/* Reads the datagrams queued on the socket (a bounded batch), feeds them to their
 * connections or accepts new ones, and writes what that caused. */
void h3_endpoint_on_readable(struct h3_endpoint *ep);

/* Runs due timers and frees the connections that are done. */
void h3_endpoint_on_timer(struct h3_endpoint *ep);

/* When the next timer is due (h3_now's clock, for h3_poll), UINT64_MAX if none. */
uint64_t h3_endpoint_deadline(struct h3_endpoint *ep);

/* Closes every connection with H3_NO_ERROR (a CONNECTION_CLOSE each). */
void h3_endpoint_close_all(struct h3_endpoint *ep);

struct mbuf;

/* Renders the endpoint's counters, open connections and handshake histogram as Prometheus
 * text into b, each series labelled lname="lvalue" (for a metrics thread: relaxed loads). */
void h3_endpoint_render(struct mbuf *b, const struct h3_endpoint *ep, const char *lname,
                        const char *lvalue);

/* Renders st's handshake histogram as the series NAME_bucket, NAME_sum and NAME_count, each
 * labelled with labels (rendered label pairs, values escaped: k="v"); no HELP or TYPE line. */
void h3_hs_render(struct mbuf *b, const char *name, const struct h3_endpoint_stats *st,
                  const char *labels);

/* The endpoint's secret (h3_endpoint_init) from an operator's 16-byte one (--secret-file),
 * so that every peak h3 server given the same file derives the same. */
void h3_secret_derive(uint8_t out[static H3_SECRET_LEN], const uint8_t in[static 16]);
