#pragma once
/* One HTTP/2 connection over TLS/TCP (RFC 9113 §3.2: ALPN "h2", TLS 1.2 or later): a
 * non-blocking TCP socket, a GnuTLS session and an nghttp2 session, glued so that the
 * application only supplies nghttp2 callbacks. Shared by the h2 backend (server), the h2
 * upload client and the ingress's h2 upstreams. With --qlog each connection writes its own
 * qlog file (its start, TLS handshake, close, and per stream the heads, status, resets and
 * bytes; qlog.h); a client can resume its last TLS session (h2_conn_resume), a server issues
 * session tickets. Memory per connection is bounded: one output buffer of H2_OUT_LEN (nghttp2
 * is asked for frames only while it has room) and nghttp2's own state, which its settings
 * bound (streams, windows, header table). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <gnutls/gnutls.h>
#include <nghttp2/nghttp2.h>

#include "udp.h"

enum {
	H2_OUT_LEN = 64 * 1024,     /* serialized frames waiting for gnutls_record_send */
	H2_RECORD_LEN = 16 * 1024,  /* plaintext per TLS record written */
	H2_HEADER_LIST_MAX = 16384, /* a header section over this is refused (431 or reset) */
	H2_STREAM_WINDOW = 1 << 20, /* receive window per stream we announce */
	H2_CONN_WINDOW = 8 << 20,   /* receive window per connection */
	H2_EARLY_MAX = 16 * 1024,   /* TLS 1.3 early data a server takes */
	H2_EARLY_SEND = 8 * 1024,   /* ... a client sends (the first bytes of its frames): a
	                             * server that rejects early data skips at most its limit,
	                             * counting each record's overhead (GnuTLS), and fails the
	                             * handshake past it */
};

/* qlog: the bytes of one open stream (h2_conn.qs), and the head of the header block being
 * received (one at a time: RFC 9113 §4.3 lets no other frame come between its frames). */
struct h2_qstream {
	int32_t sid;
	uint64_t sent, received; /* DATA payload bytes */
};
struct h2_qhead {
	int32_t sid;
	char method[16], path[128], ctype[128], status[4];
	bool has_ctype;
};

struct h2_conn {
	int fd;
	gnutls_session_t tls;
	nghttp2_session *s;
	bool server;
	bool hs_done;           /* TLS handshake finished and ALPN said h2 */
	bool resumed;           /* that handshake resumed a session (a ticket) */
	int early;              /* H3_EARLY_* of conn.h: TLS 1.3 early data (0-RTT) sent by a
	                         * client and its fate; a server: NONE or ACCEPTED */
	size_t early_len;       /* client: the bytes at the start of out sent as early data */
	bool resuming;          /* client: a stored session is offered (h2_conn_resume) */
	gnutls_datum_t *ticket; /* client: the session offered, then the server's latest
	                         * (h2_conn_resume); the application's */
	FILE *qlog;             /* this connection's qlog (h3_qlog_set_dir), or NULL */
	bool qlog_closed;       /* its connection_closed event is written */
	struct h2_qstream *qs;  /* qlog: the open streams' bytes */
	size_t nqs, qs_cap;
	struct h2_qhead qh;
	bool settings;       /* the peer's first SETTINGS arrived: its stream limit is known */
	bool dead;           /* free it: closed by either side, or failed */
	uint64_t records_in; /* TLS records read so far (the application sees that a read
	                      * brought something it may have to act on before a wait) */
	char why[128];       /* why it died (the TLS or HTTP/2 error), for the client's message */
	uint8_t out[H2_OUT_LEN];
	size_t out_off, out_len;
	uint64_t t_start, t_handshake; /* ns, h3_now's clock */
	uint64_t t_last;               /* the application's: last activity */
	uint32_t polled;               /* the application's: events it polls for */
	struct h3_addr remote;
	const struct h2_conn_cfg *cfg; /* the application's, outlives the connection */
	void *app;                     /* the application's, untouched here */
	void *app_conn;                /* the application's per-connection state */
	struct h2_conn *prev, *next;   /* the application's list */
};

/* What the application plugs in. */
struct h2_conn_cfg {
	/* Sets the application's nghttp2 callbacks (user_data is the h2_conn); the send, frame
	 * send and receive, header and stream close callbacks are set here and must not be. */
	void (*callbacks)(nghttp2_session_callbacks *cbs);
	/* The application's callbacks that the connection's own (the qlog's events) call after
	 * theirs; each may be NULL. */
	nghttp2_on_frame_recv_callback frame_recv;
	nghttp2_on_frame_send_callback frame_send;
	nghttp2_on_header_callback header;
	nghttp2_on_stream_close_callback stream_close;
	/* Called once the TLS handshake is done and ALPN said h2 (c->resumed is set). */
	void (*handshake_done)(struct h2_conn *c);
	uint32_t max_streams;   /* server: SETTINGS_MAX_CONCURRENT_STREAMS (0: 100) */
	uint32_t stream_window; /* SETTINGS_INITIAL_WINDOW_SIZE (0: H2_STREAM_WINDOW) */
	/* Client: on resumption, send the first H2_EARLY_SEND bytes of the preface and of the
	 * requests submitted before the first h2_conn_io as TLS 1.3 early data (RFC 8446 §2.3);
	 * if the server refuses them they are sent again after the handshake. */
	bool early_data;
	/* Server (with a ticket key): accept early data that this cache has not seen (RFC 8446
	 * §8); NULL: none. */
	gnutls_anti_replay_t anti_replay;
};

/* TLS credentials for h2 are the certificate ones of tls.h (h3_tls_server_cred,
 * h3_tls_client_cred). */

/* Takes over the accepted, non-blocking socket fd (closed by h2_conn_free, also on failure)
 * and starts the server side (TLS 1.3 session tickets for resumption with ticket_key, a key
 * as h3_ticket_key_init makes, or none with NULL): TLS handshake, then the connection preface and
 * our SETTINGS (manual flow control: the application calls nghttp2_session_consume as it uses body
 * bytes). Returns 0 and *out or -errno. */
int h2_conn_server_new(struct h2_conn **out, int fd, gnutls_certificate_credentials_t cred,
                       const gnutls_datum_t *ticket_key, const struct h2_conn_cfg *cfg, void *app);

/* Takes over the connecting, non-blocking socket fd to peer and starts the client side for host
 * (SNI unless it is an address; the certificate is checked against host when verify). Requests may
 * be submitted at once: they go out after the handshake. Returns 0 and *out or -errno. */
int h2_conn_client_new(struct h2_conn **out, int fd, const struct h3_addr *peer,
                       gnutls_certificate_credentials_t cred, const char *host, bool verify,
                       const struct h2_conn_cfg *cfg, void *app);

/* Client, before the first h2_conn_io: offers the session in *store (if it holds one; a stale
 * one costs a full handshake only) and keeps the server's latest session ticket there
 * (gnutls_free'd and replaced as tickets come). store must outlive the connection. */
void h2_conn_resume(struct h2_conn *c, gnutls_datum_t *store);

/* Appends an event to c's qlog (h3_qlog_event's format, the time counted from c->t_start);
 * no-op without qlog. */
void h2_qlog_event(struct h2_conn *c, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Drives the connection after fd polled ready (or the application submitted something):
 * the handshake, every TLS record readable now into nghttp2, and as many frames as the socket
 * takes. Returns 0, or -errno once the connection is over (then c->dead is set; the reason is
 * logged at debug level, rate-limited). */
int h2_conn_io(struct h2_conn *c);

/* The poll events the connection waits for: POLLIN always, POLLOUT while bytes wait. */
short h2_conn_events(const struct h2_conn *c);

/* Frees the nghttp2 session (no stream close callbacks run), the TLS session, closes fd and
 * the qlog (its last event connection_closed). NULL is a no-op. */
void h2_conn_free(struct h2_conn *c);

/* Opens a non-blocking TCP socket to peer; the connection completes in the background
 * (h2_conn_io copes with it). Returns the descriptor or -errno. */
int h2_tcp_connect(const struct h3_addr *peer);

/* Opens a non-blocking listening TCP socket on addr (IPv6 sockets with IPV6_FREEBIND, so
 * that an AnyIP slice address can be listened on) and writes the bound address to bound.
 * Returns the descriptor or -errno. */
int h2_tcp_listen(const struct h3_addr *addr, struct h3_addr *bound);
