#pragma once
/* One QUIC connection carrying HTTP/3: ngtcp2 (transport), GnuTLS (handshake), nghttp3
 * (HTTP/3 and QPACK), glued so that the application only supplies nghttp3 callbacks.
 * Shared by the server endpoint and the client. */
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <gnutls/gnutls.h>
#include <nghttp3/nghttp3.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include "cidmap.h"
#include "udp.h"

enum {
	H3_SCID_LEN = 18,          /* our connection IDs */
	H3_SECRET_LEN = 32,        /* the endpoint's static secret (stateless reset tokens) */
	H3_IDLE_TIMEOUT_S = 30,    /* max_idle_timeout (RFC 9000 §10.1) */
	H3_MAX_UDP_PAYLOAD = 1472, /* the largest datagram we write */
	H3_GSO_SEGS = 44,          /* datagrams per sendmsg: 44 x 1472 fits in 64 KiB */
	H3_TOKEN_MAX = 256,        /* the longest NEW_TOKEN token a client keeps */
};

struct h3_conn;

/* What the application plugs into a connection. */
struct h3_conn_ops {
	/* Creates c->h with nghttp3_conn_server_new or _client_new and the application's
	 * callbacks (conn_user_data must be c). Called once the 1-RTT keys exist. */
	int (*http_new)(struct h3_conn *c);
	/* Client: the peer allows more bidirectional streams (may be NULL). */
	void (*streams_more)(struct h3_conn *c);
	/* nghttp3 has no stream to write while the congestion window has room: the
	 * application may resume streams it paused (nghttp3_conn_resume_stream) and return
	 * true to be asked for data again (may be NULL). */
	bool (*streams_idle)(struct h3_conn *c);
	/* The connection is being freed: release what the application still holds for its
	 * open streams (nghttp3_conn_del calls no stream_close). May be NULL. */
	void (*conn_free)(struct h3_conn *c);
	/* Client: the server refused the early data; c->h is gone with every request sent in
	 * 0-RTT, and http_new will be called again: forget the streams and submit anew once
	 * c->h is back. May be NULL. */
	void (*early_rejected)(struct h3_conn *c);
};

/* Transport limits a server grants each client. */
struct h3_limits {
	uint64_t max_streams_bidi; /* concurrent request streams */
	uint64_t max_stream_data;  /* per stream receive window, bytes */
	uint64_t max_data;         /* per connection receive window, bytes */
	/* nonzero: the windows above grow up to these when the peer is held back by them
	 * within a round trip (ngtcp2's window auto-tuning) */
	uint64_t max_stream_window, max_window;
	/* nonzero: the max_ack_delay announced (ns; ngtcp2's default 25 ms otherwise). ngtcp2
	 * delays an ACK by at most the smoothed RTT / 8 anyway, but the peer adds the announced
	 * value to its probe timeout, which is what repairs a loss at the end of a burst */
	uint64_t max_ack_delay;
};

struct h3_conn {
	ngtcp2_crypto_conn_ref ref;
	ngtcp2_conn *q;
	nghttp3_conn *h;
	gnutls_session_t tls;
	ngtcp2_connection_close_error err;
	const struct h3_conn_ops *ops;
	void *app;             /* the application's, untouched here */
	void *app_conn;        /* the application's per-connection state */
	struct h3_cidmap *map; /* server: where every ID we issue is mapped */
	size_t nmapped;        /* entries of map pointing at this connection */
	ngtcp2_cid first_dcid; /* the client's destination ID we mapped at accept */
	const uint8_t *secret; /* server: H3_SECRET_LEN bytes, owned by the endpoint */
	int fd;
	struct h3_addr local, remote; /* the path the last packet came on */
	bool server;
	bool dead;         /* free it: closed, drained or timed out */
	uint64_t close_at; /* nonzero: closing or draining until then (ns) */
	uint64_t t_start, t_handshake;
	bool hs_counted;     /* the endpoint counted its handshake time */
	unsigned retries;    /* client: Retry packets received (address validation) */
	bool token_used;     /* client: the Initial carried a stored NEW_TOKEN token */
	bool new_token_sent; /* server: a NEW_TOKEN frame was queued for the client */
	enum { H3_EARLY_NONE, H3_EARLY_SENT, H3_EARLY_ACCEPTED, H3_EARLY_REJECTED } early;
	FILE *qlog;           /* this connection's qlog (h3_qlog_set_dir), or NULL */
	struct h3_conn *next; /* the endpoint's list */
};

/* Monotonic time in ns, the clock ngtcp2 is driven by. */
uint64_t h3_now(void);

/* Waits like poll(2) on p[n] until deadline (h3_now's clock; at or before now: no wait,
 * UINT64_MAX: none), to the microsecond: a pacing gap of tens of microseconds rounded up to
 * poll's millisecond held every connection to one send quantum (64 KiB) per millisecond.
 * Returns what ppoll returns. */
int h3_poll(struct pollfd *p, nfds_t n, uint64_t deadline);

/* The ngtcp2_cc_algo a congestion-control name stands for ("reno", "cubic", "bbr", "bbr2";
 * white space after it ignored), or -1. */
int h3_cc_parse(const char *name);

/* The congestion control of every QUIC connection: PEAK_H3_CC if set and known, else the
 * host's TCP choice (net.ipv4.tcp_congestion_control), else CUBIC. Read once. */
int h3_cc_algo(void);

/* Accepts the client Initial described by hd, which came from remote to local over fd:
 * makes the connection, maps its connection IDs (our first ID and the client's current
 * destination ID) in map. ocid is the client's original destination ID when hd carried a
 * valid Retry token (RFC 9000 §8.1.2), else NULL. Returns 0 and *out, or -errno (-EEXIST:
 * an ID collides, -ENOSPC: the map is full). */
int h3_conn_server_new(struct h3_conn **out, int fd, const struct h3_addr *local,
                       const struct h3_addr *remote, const ngtcp2_pkt_hd *hd,
                       const ngtcp2_cid *ocid, gnutls_certificate_credentials_t cred,
                       const gnutls_datum_t *ticket_key, gnutls_anti_replay_t ar,
                       const struct h3_limits *lim, struct h3_cidmap *map, const uint8_t *secret,
                       const struct h3_conn_ops *ops, void *app);

/* Starts a client connection to remote over the connected socket fd; host is checked
 * against the certificate when verify. With a stored session and the server's transport
 * parameters (h3_tls_client_set_session_file, FILE and FILE.tp) it resumes and makes c->h at
 * once, so requests submitted before the handshake ends go out as 0-RTT (c->early says what
 * became of them). The server's NEW_TOKEN token is kept in FILE.token and sent in the next
 * Initial (c->token_used). Returns 0 and *out or -errno. */
int h3_conn_client_new(struct h3_conn **out, int fd, const struct h3_addr *local,
                       const struct h3_addr *remote, gnutls_certificate_credentials_t cred,
                       const char *host, bool verify, const struct h3_conn_ops *ops, void *app);

/* The clock of NEW_TOKEN tokens (ns, CLOCK_REALTIME): unlike h3_now's, it means the same to
 * every server sharing a secret, and across their restarts. */
uint64_t h3_token_now(void);

/* remote without its port: what a NEW_TOKEN token is bound to (a client's next connection
 * comes from a new port). */
void h3_token_addr(const struct h3_addr *remote, struct h3_addr *out);

/* Whether h3_conn_client_new may send 0-RTT when it resumes (default off). */
void h3_conn_client_early_data(bool on);

/* Unmaps every connection ID of c and frees it. NULL is a no-op. */
void h3_conn_free(struct h3_conn *c);

/* Feeds one datagram. Errors are handled here (close, drain, drop: see c->dead and
 * c->close_at); returns 0, or -EPROTO when the connection failed. */
int h3_conn_read(struct h3_conn *c, const struct h3_addr *local, const struct h3_addr *remote,
                 const uint8_t *pkt, size_t n);

/* Writes what the connection has to send: handshake, acknowledgements, stream data, as far
 * as congestion control and pacing allow. Returns 0 or -EPROTO (then it is closing). */
int h3_conn_write(struct h3_conn *c);

/* Runs the connection's timers when due (loss detection, idle, pacing, closing period). */
void h3_conn_on_timer(struct h3_conn *c, uint64_t now);

/* When h3_conn_on_timer must run next (ns, h3_now's clock). */
uint64_t h3_conn_deadline(struct h3_conn *c);

/* Closes with an application error (H3_NO_ERROR for a clean close): sends
 * CONNECTION_CLOSE once and enters the closing period (RFC 9000 §10.2). */
void h3_conn_close(struct h3_conn *c, uint64_t h3_error);

/* Grants the peer n more bytes of flow control on stream sid and on the connection, after
 * the application consumed n body bytes. */
void h3_conn_consume(struct h3_conn *c, int64_t sid, size_t n);

/* nghttp3 callbacks every application uses as they are (conn_user_data is the h3_conn). */
int h3_cb_deferred_consume(nghttp3_conn *h, int64_t sid, size_t n, void *cu, void *su);
int h3_cb_stop_sending(nghttp3_conn *h, int64_t sid, uint64_t code, void *cu, void *su);
int h3_cb_reset_stream(nghttp3_conn *h, int64_t sid, uint64_t code, void *cu, void *su);

/* The HTTP/3 settings every peak h3 connection announces (RFC 9114 §7.2.4.1): header sections
 * over 16 KiB are a stream error, a 4 KiB QPACK table, 16 blocked streams. */
void h3_http_settings(nghttp3_settings *st);

/* True if the field name is s (names arrive lower case, RFC 9114 §4.2). */
bool h3_field_is(nghttp3_rcbuf *name, const char *s);

/* Copies the field value v (untrusted) into dst[cap] as a string, cut to cap - 1 bytes
 * (then *too_long is set when too_long is not NULL); control bytes and obs-text become '?':
 * never a token character, so logs, forwarded values and answers stay printable. */
void h3_field_copy(char *dst, size_t cap, nghttp3_rcbuf *v, bool *too_long);

/* The same for a name or value as bytes (HTTP/2's nghttp2 hands them so). */
bool h3_field_is_raw(const uint8_t *name, size_t n, const char *s);
void h3_field_copy_raw(char *dst, size_t cap, const uint8_t *v, size_t n, bool *too_long);
