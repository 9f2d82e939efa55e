/* HTTP/2 over TLS/TCP: GnuTLS and nghttp2 on a non-blocking socket. */
#include "h2conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../sys/log.h"
#include "conn.h"
#include "qlog.h"

/* TLS 1.2 or 1.3; RFC 9113 §9.2.2's cipher suite blocklist is what GnuTLS's NORMAL leaves
 * out of TLS 1.2 anyway (AEAD suites with ephemeral key exchange come first). */
static const char H2_PRIORITY[] = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
static const gnutls_datum_t ALPN_H2 = {(unsigned char *)"h2", 2};

static struct log_limit h2_rl;

/* nghttp2 serializes frames into our buffer while it has room; WOULDBLOCK makes it keep the
 * rest for the next nghttp2_session_send. */
static ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t n, int flags, void *ud)
{
	struct h2_conn *c = ud;
	(void)s;
	(void)flags;
	size_t room = sizeof(c->out) - c->out_len;
	if (!room)
		return NGHTTP2_ERR_WOULDBLOCK;
	if (n > room)
		n = room;
	memcpy(c->out + c->out_len, data, n);
	c->out_len += n;
	return (ssize_t)n;
}

/* ---- qlog: the connection's events, and per stream its head, answer, resets and bytes ---- */

void h2_qlog_event(struct h2_conn *c, const char *name, const char *fmt, ...)
{
	va_list ap;
	if (!c->qlog)
		return;
	va_start(ap, fmt);
	h3_qlog_vevent(c->qlog, c->t_start, name, fmt, ap);
	va_end(ap);
}

/* The byte counts of stream sid, made if make (NULL: none, or no memory). A connection has
 * at most its concurrent streams open: a linear search, and only with qlog on. */
static struct h2_qstream *qstream(struct h2_conn *c, int32_t sid, bool make)
{
	for (size_t i = c->nqs; i-- > 0;)
		if (c->qs[i].sid == sid)
			return &c->qs[i];
	if (!make)
		return NULL;
	if (c->nqs == c->qs_cap) {
		size_t cap = c->qs_cap ? 2 * c->qs_cap : 16;
		struct h2_qstream *n = realloc(c->qs, cap * sizeof(*n));
		if (!n)
			return NULL;
		c->qs = n;
		c->qs_cap = cap;
	}
	c->qs[c->nqs] = (struct h2_qstream){.sid = sid};
	return &c->qs[c->nqs++];
}

static bool is_name(const uint8_t *n, size_t nl, const char *want)
{
	return nl == strlen(want) && !memcmp(n, want, nl);
}

/* Copies v[vl] into out[cap] (NUL-terminated, cut). */
static void keep(char *out, size_t cap, const uint8_t *v, size_t vl)
{
	size_t k = vl < cap - 1 ? vl : cap - 1;
	memcpy(out, v, k);
	out[k] = 0;
}

/* Notes one field of the header block being received (untrusted: kept cut, escaped when
 * written). */
static void qhead_field(struct h2_conn *c, int32_t sid, const uint8_t *n, size_t nl,
                        const uint8_t *v, size_t vl)
{
	struct h2_qhead *q = &c->qh;
	if (q->sid != sid)
		*q = (struct h2_qhead){.sid = sid};
	if (is_name(n, nl, ":method"))
		keep(q->method, sizeof(q->method), v, vl);
	else if (is_name(n, nl, ":path"))
		keep(q->path, sizeof(q->path), v, vl);
	else if (is_name(n, nl, ":status"))
		keep(q->status, sizeof(q->status), v, vl);
	else if (is_name(n, nl, "content-type")) {
		keep(q->ctype, sizeof(q->ctype), v, vl);
		q->has_ctype = true;
	}
}

/* The head in c->qh (a request's or an answer's, sent or received) as its event. */
static void qlog_head(struct h2_conn *c, int32_t sid, bool request)
{
	char m[2 * sizeof(c->qh.method)], p[2 * sizeof(c->qh.path)], t[2 * sizeof(c->qh.ctype)];
	struct h2_qhead *q = &c->qh;
	if (q->sid != sid)
		*q = (struct h2_qhead){.sid = sid};
	qstream(c, sid, true);
	if (!request) {
		h2_qlog_event(c, "http:response", "\"stream_id\":%" PRId32 ",\"status\":%d", sid,
		              atoi(q->status));
		return;
	}
	h2_qlog_event(c, "http:request_headers",
	              "\"stream_id\":%" PRId32 ",\"method\":\"%s\",\"path\":\"%s\","
	              "\"content_type\":%s%s%s",
	              sid, h3_qlog_str(m, sizeof(m), q->method, strlen(q->method)),
	              h3_qlog_str(p, sizeof(p), q->path, strlen(q->path)), q->has_ctype ? "\"" : "",
	              q->has_ctype ? h3_qlog_str(t, sizeof(t), q->ctype, strlen(q->ctype)) : "null",
	              q->has_ctype ? "\"" : "");
}

/* A frame sent or received: its event (heads, resets, GOAWAY) and the stream's bytes. */
static void qlog_frame(struct h2_conn *c, const nghttp2_frame *f, bool sent)
{
	const char *dir = sent ? "sent" : "received";
	struct h2_qstream *q;
	switch (f->hd.type) {
	case NGHTTP2_HEADERS:
		if (sent) { /* the fields are in the frame */
			c->qh = (struct h2_qhead){.sid = f->hd.stream_id};
			for (size_t i = 0; i < f->headers.nvlen; i++)
				qhead_field(c, f->hd.stream_id, f->headers.nva[i].name,
				            f->headers.nva[i].namelen, f->headers.nva[i].value,
				            f->headers.nva[i].valuelen);
		}
		/* a client sends requests and receives answers; a server the other way */
		qlog_head(c, f->hd.stream_id, sent != c->server);
		break;
	case NGHTTP2_DATA:
		if ((q = qstream(c, f->hd.stream_id, true))) {
			if (sent)
				q->sent += f->hd.length;
			else
				q->received += f->hd.length;
		}
		break;
	case NGHTTP2_RST_STREAM:
		h2_qlog_event(c, "http:stream_reset",
		              "\"stream_id\":%" PRId32
		              ",\"direction\":\"%s\",\"error_code\":%" PRIu32,
		              f->hd.stream_id, dir, f->rst_stream.error_code);
		break;
	case NGHTTP2_GOAWAY:
		h2_qlog_event(c, "http:goaway",
		              "\"direction\":\"%s\",\"last_stream_id\":%" PRId32
		              ",\"error_code\":%" PRIu32,
		              dir, f->goaway.last_stream_id, f->goaway.error_code);
		break;
	default:
		break;
	}
}

/* Notes the peer's first SETTINGS (a client must not count on a stream limit before it,
 * RFC 9113 §5.1.2: streams opened past it are refused), then the application's callback. */
static int frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct h2_conn *c = ud;
	if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK))
		c->settings = true;
	if (c->qlog)
		qlog_frame(c, f, false);
	return c->cfg->frame_recv ? c->cfg->frame_recv(s, f, ud) : 0;
}

static int frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct h2_conn *c = ud;
	if (c->qlog)
		qlog_frame(c, f, true);
	return c->cfg->frame_send ? c->cfg->frame_send(s, f, ud) : 0;
}

static int header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *n, size_t nl,
                  const uint8_t *v, size_t vl, uint8_t flags, void *ud)
{
	struct h2_conn *c = ud;
	if (c->qlog && f->hd.type == NGHTTP2_HEADERS)
		qhead_field(c, f->hd.stream_id, n, nl, v, vl);
	return c->cfg->header ? c->cfg->header(s, f, n, nl, v, vl, flags, ud) : 0;
}

static int stream_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
	struct h2_conn *c = ud;
	struct h2_qstream *q = c->qlog ? qstream(c, sid, false) : NULL;
	if (c->qlog) {
		h2_qlog_event(c, "http:stream_closed",
		              "\"stream_id\":%" PRId32 ",\"error_code\":%" PRIu32
		              ",\"bytes_sent\":%" PRIu64 ",\"bytes_received\":%" PRIu64,
		              sid, code, q ? q->sent : 0, q ? q->received : 0);
		if (q)
			*q = c->qs[--c->nqs];
	}
	return c->cfg->stream_close ? c->cfg->stream_close(s, sid, code, ud) : 0;
}

/* The connection's end in its qlog, once: why, as the failure or the caller says. */
static void qlog_closed(struct h2_conn *c, const char *why)
{
	char w[2 * sizeof(c->why)];
	if (!c->qlog || c->qlog_closed)
		return;
	c->qlog_closed = true;
	h2_qlog_event(c, "connectivity:connection_closed", "\"reason\":\"%s\"",
	              h3_qlog_str(w, sizeof(w), why, strlen(why)));
}

/* ---- resumption ---- */

/* Keeps the session a NewSessionTicket makes resumable (RFC 8446 §4.6.1): the latest one. */
static int ticket_hook(gnutls_session_t s, unsigned htype, unsigned when, unsigned incoming,
                       const gnutls_datum_t *msg)
{
	struct h2_conn *c = gnutls_session_get_ptr(s);
	gnutls_datum_t d = {NULL, 0};
	(void)htype;
	(void)when;
	(void)incoming;
	(void)msg;
	if (!c || !c->ticket || gnutls_session_get_data2(s, &d))
		return 0;
	gnutls_free(c->ticket->data);
	*c->ticket = d;
	return 0;
}

void h2_conn_resume(struct h2_conn *c, gnutls_datum_t *store)
{
	c->ticket = store;
	if (store->size && gnutls_session_set_data(c->tls, store->data, store->size))
		log_rl(&h2_rl, LOG_DEBUG, "h2: the stored session is not usable");
	else if (store->size)
		c->resuming = true;
	gnutls_handshake_set_hook_function(c->tls, GNUTLS_HANDSHAKE_NEW_SESSION_TICKET,
	                                   GNUTLS_HOOK_POST, ticket_hook);
}

static int session_new(struct h2_conn *c, const struct h2_conn_cfg *cfg)
{
	nghttp2_session_callbacks *cbs = NULL;
	nghttp2_option *opt = NULL;
	int ret = -ENOMEM;
	if (nghttp2_session_callbacks_new(&cbs) || nghttp2_option_new(&opt))
		goto out;
	cfg->callbacks(cbs);
	nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, frame_recv);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, frame_send);
	nghttp2_session_callbacks_set_on_header_callback(cbs, header);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, stream_close);
	/* window updates follow what the application used, not what arrived */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	int r = c->server ? nghttp2_session_server_new2(&c->s, cbs, c, opt)
	                  : nghttp2_session_client_new2(&c->s, cbs, c, opt);
	if (r)
		goto out;
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->max_streams ? cfg->max_streams : 100},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
	     cfg->stream_window ? cfg->stream_window : H2_STREAM_WINDOW},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_HEADER_LIST_MAX},
	    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	};
	/* a client announces no stream limit of its own that matters (no push) */
	if (nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, c->server ? iv : iv + 1,
	                            c->server ? 4 : 3) ||
	    nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW))
		goto out;
	ret = 0;
out:
	if (cbs)
		nghttp2_session_callbacks_del(cbs);
	if (opt)
		nghttp2_option_del(opt);
	return ret;
}

static int conn_new(struct h2_conn **out, int fd, bool server, const struct h3_addr *peer,
                    gnutls_certificate_credentials_t cred, const gnutls_datum_t *ticket_key,
                    const char *host, bool verify, const struct h2_conn_cfg *cfg, void *app)
{
	struct h2_conn *c = calloc(1, sizeof(*c));
	unsigned char buf[16];
	int ret = -ENOMEM, one = 1;
	*out = NULL;
	if (!c) {
		close(fd);
		return ret;
	}
	c->fd = fd;
	c->server = server;
	c->cfg = cfg;
	c->app = app;
	c->t_start = h3_now();
	c->remote.len = sizeof(c->remote.ss);
	if (peer)
		c->remote = *peer; /* a client, still connecting */
	else if (getpeername(fd, (struct sockaddr *)&c->remote.ss, &c->remote.len) == -1)
		c->remote.len = 0;
	if (h3_qlog_enabled() && (c->qlog = h3_qlog_open_tcp(server ? "server" : "client"))) {
		struct h3_addr local = {.len = sizeof(local.ss)};
		char l[80] = "", r[80] = "";
		if (getsockname(fd, (struct sockaddr *)&local.ss, &local.len) == 0)
			h3_addr_format(&local, l, sizeof(l));
		if (c->remote.len)
			h3_addr_format(&c->remote, r, sizeof(r));
		h2_qlog_event(c, "connectivity:connection_started",
		              "\"protocol\":\"TCP\",\"local\":\"%s\",\"remote\":\"%s\"", l, r);
	}
	/* frames are written whole into records: no Nagle delay on the last one */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ret = -EINVAL;
	/* early data needs a ticket to resume (RFC 8446 §4.2.10), and a server an anti-replay
	 * cache (§8) */
	bool early = server ? ticket_key && cfg->anti_replay : cfg->early_data;
	unsigned flags = GNUTLS_NONBLOCK | (early ? GNUTLS_ENABLE_EARLY_DATA : 0);
	/* a server's handshake returns once its flight is out (0.5-RTT, RFC 8446 §4.4.4), so
	 * that the early data is read and answered without waiting for the client's Finished,
	 * which gnutls_record_recv then checks */
	flags |= server ? GNUTLS_SERVER | (early ? GNUTLS_ENABLE_EARLY_START : 0) : GNUTLS_CLIENT;
	if (gnutls_init(&c->tls, flags)) {
		c->tls = NULL;
		goto out;
	}
	gnutls_session_set_ptr(c->tls, c);
	if (server && ticket_key && gnutls_session_ticket_enable_server(c->tls, ticket_key))
		goto out;
	if (server && early) {
		gnutls_anti_replay_enable(c->tls, cfg->anti_replay);
		if (gnutls_record_set_max_early_data_size(c->tls, H2_EARLY_MAX))
			goto out;
	}
	if (gnutls_priority_set_direct(c->tls, H2_PRIORITY, NULL) ||
	    gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, cred) ||
	    /* MANDATORY: a peer that does not offer h2 fails the handshake */
	    gnutls_alpn_set_protocols(c->tls, &ALPN_H2, 1, GNUTLS_ALPN_MANDATORY))
		goto out;
	if (!server) {
		/* SNI carries names only (RFC 6066 §3) */
		bool literal =
		    inet_pton(AF_INET6, host, buf) == 1 || inet_pton(AF_INET, host, buf) == 1;
		if (!literal && gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, host, strlen(host)))
			goto out;
		if (verify)
			gnutls_session_set_verify_cert(c->tls, host, 0);
	}
	gnutls_transport_set_int(c->tls, fd);
	gnutls_handshake_set_timeout(c->tls, 0);
	if ((ret = session_new(c, cfg)))
		goto out;
	*out = c;
	return 0;
out:
	h2_conn_free(c);
	return ret;
}

int h2_conn_server_new(struct h2_conn **out, int fd, gnutls_certificate_credentials_t cred,
                       const gnutls_datum_t *ticket_key, const struct h2_conn_cfg *cfg, void *app)
{
	return conn_new(out, fd, true, NULL, cred, ticket_key, NULL, false, cfg, app);
}

int h2_conn_client_new(struct h2_conn **out, int fd, const struct h3_addr *peer,
                       gnutls_certificate_credentials_t cred, const char *host, bool verify,
                       const struct h2_conn_cfg *cfg, void *app)
{
	return conn_new(out, fd, false, peer, cred, NULL, host, verify, cfg, app);
}

static int fail(struct h2_conn *c, int err, const char *what, const char *why)
{
	log_rl(&h2_rl, LOG_DEBUG, "h2: connection %s: %s", what, why);
	snprintf(c->why, sizeof(c->why), "%s: %s", what, why);
	c->dead = true;
	qlog_closed(c, c->why);
	return err;
}

/* Client, before its first handshake step: hands the first bytes of its frames (the preface,
 * SETTINGS, the requests submitted so far) to GnuTLS as early data, which goes out with the
 * ClientHello. The bytes stay at the start of out: after the handshake they are dropped if
 * the server took them, else written as ordinary records (the server skipped them unread, so
 * the byte stream it sees is the same either way). */
static void early_send(struct h2_conn *c)
{
	if (c->server || !c->cfg->early_data || !c->resuming || c->early != H3_EARLY_NONE)
		return;
	if (nghttp2_session_want_write(c->s) && nghttp2_session_send(c->s))
		return;
	size_t n = c->out_len < H2_EARLY_SEND ? c->out_len : H2_EARLY_SEND;
	/* GnuTLS 3.7 buffers all of it or nothing, and returns 0 when it took it all */
	ssize_t k = n ? gnutls_record_send_early_data(c->tls, c->out, n) : -1;
	if (k < 0) {
		log_rl(&h2_rl, LOG_DEBUG, "h2: no early data: %s",
		       n ? gnutls_strerror((int)k) : "nothing to send");
		return;
	}
	c->early_len = n;
	c->early = H3_EARLY_SENT;
}

static const char *early_name(int e)
{
	return e == H3_EARLY_ACCEPTED ? "accepted" : e == H3_EARLY_REJECTED ? "rejected" : "none";
}

static uint8_t rbuf[H2_RECORD_LEN + 256]; /* one record's plaintext, as it is read */

/* After the handshake: the early data's fate. A client drops what the server took from out. */
static void early_done(struct h2_conn *c)
{
	bool took = gnutls_session_get_flags(c->tls) & GNUTLS_SFLAGS_EARLY_DATA;
	if (!c->server) {
		if (c->early != H3_EARLY_SENT)
			return;
		c->early = took ? H3_EARLY_ACCEPTED : H3_EARLY_REJECTED;
		if (took) {
			c->out_off = c->early_len;
			if (c->out_off == c->out_len)
				c->out_off = c->out_len = 0;
		}
	} else if (took) {
		c->early = H3_EARLY_ACCEPTED;
	}
}

/* Server, after the handshake: feeds the early data it took to nghttp2, before any later
 * record (GnuTLS hands it over only now). Returns 0 or -errno. */
static int early_read(struct h2_conn *c)
{
	if (!c->server || c->early != H3_EARLY_ACCEPTED)
		return 0;
	for (;;) {
		ssize_t n = gnutls_record_recv_early_data(c->tls, rbuf, sizeof(rbuf));
		if (n == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
			return 0;
		if (n < 0)
			return fail(c, -EPROTO, "early data", gnutls_strerror((int)n));
		c->records_in++;
		ssize_t r = nghttp2_session_mem_recv(c->s, rbuf, (size_t)n);
		if (r < 0)
			return fail(c, -EPROTO, "frames", nghttp2_strerror((int)r));
	}
}

static int handshake(struct h2_conn *c)
{
	gnutls_datum_t p = {NULL, 0};
	early_send(c);
	int r = gnutls_handshake(c->tls);
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
		return -EAGAIN;
	if (r == GNUTLS_E_PUSH_ERROR || r == GNUTLS_E_PULL_ERROR)
		return fail(c, -EPROTO, "connect", strerror(errno)); /* refused, unreachable */
	if (r < 0)
		return fail(c, -EPROTO, "handshake", gnutls_strerror(r));
	if (gnutls_alpn_get_selected_protocol(c->tls, &p) || p.size != 2 || memcmp(p.data, "h2", 2))
		return fail(c, -EPROTO, "handshake", "no ALPN h2");
	c->hs_done = true;
	c->t_handshake = h3_now();
	c->resumed = gnutls_session_is_resumed(c->tls);
	early_done(c);
	gnutls_protocol_t v = gnutls_protocol_get_version(c->tls);
	/* TLS 1.2 has no NewSessionTicket after the handshake: its session is resumable now */
	gnutls_datum_t d = {NULL, 0};
	if (!c->server && c->ticket && v != GNUTLS_TLS1_3 &&
	    gnutls_session_get_data2(c->tls, &d) == 0) {
		gnutls_free(c->ticket->data);
		*c->ticket = d;
	}
	if (!c->remote.len) {
		c->remote.len = sizeof(c->remote.ss);
		if (getpeername(c->fd, (struct sockaddr *)&c->remote.ss, &c->remote.len) == -1)
			c->remote.len = 0;
	}
	if (c->qlog) {
		const char *vn = gnutls_protocol_get_name(v);
		const char *cn = gnutls_cipher_get_name(gnutls_cipher_get(c->tls));
		h2_qlog_event(c, "tls:handshake_done",
		              "\"resumed\":%s,\"version\":\"%s\",\"alpn\":\"h2\",\"cipher\":\"%s\","
		              "\"handshake_ms\":%.3f,\"early_data\":\"%s\"",
		              c->resumed ? "true" : "false", vn ? vn : "?", cn ? cn : "?",
		              (double)(c->t_handshake - c->t_start) / 1e6, early_name(c->early));
	}
	if (c->cfg->handshake_done)
		c->cfg->handshake_done(c);
	return early_read(c);
}

/* Reads every record the socket has now; nghttp2 calls the application's callbacks. */
static int pull(struct h2_conn *c)
{
	for (;;) {
		ssize_t n = gnutls_record_recv(c->tls, rbuf, sizeof(rbuf));
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			return 0;
		if (n == 0)
			return fail(c, -ECONNRESET, "read", "closed by the peer");
		if (n < 0)
			return fail(c, -EPROTO, "read", gnutls_strerror((int)n));
		c->records_in++;
		ssize_t r = nghttp2_session_mem_recv(c->s, rbuf, (size_t)n);
		if (r < 0)
			return fail(c, -EPROTO, "frames", nghttp2_strerror((int)r));
	}
}

/* Writes what nghttp2 has to send, as far as the socket takes it. */
static int push(struct h2_conn *c)
{
	for (;;) {
		if (c->out_off < c->out_len) {
			size_t k = c->out_len - c->out_off;
			/* after GNUTLS_E_AGAIN the same bytes are offered again, as GnuTLS
			 * requires: nothing before out_off moves until they are taken */
			ssize_t n = gnutls_record_send(c->tls, c->out + c->out_off,
			                               k > H2_RECORD_LEN ? H2_RECORD_LEN : k);
			if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
				return 0;
			if (n < 0)
				return fail(c, -EPIPE, "write", gnutls_strerror((int)n));
			c->out_off += (size_t)n;
			if (c->out_off == c->out_len)
				c->out_off = c->out_len = 0;
			continue;
		}
		if (!nghttp2_session_want_write(c->s))
			return 0;
		int r = nghttp2_session_send(c->s);
		if (r)
			return fail(c, -EPROTO, "send", nghttp2_strerror(r));
		if (!c->out_len)
			return 0;
	}
}

int h2_conn_io(struct h2_conn *c)
{
	int r;
	if (c->dead)
		return -EPIPE;
	if (!c->hs_done && (r = handshake(c)))
		return r == -EAGAIN ? 0 : r;
	if ((r = pull(c)) || (r = push(c)))
		return r;
	/* both sides are done: GOAWAY exchanged and no stream left */
	if (!nghttp2_session_want_read(c->s) && !nghttp2_session_want_write(c->s) &&
	    c->out_off == c->out_len)
		return fail(c, -ECONNRESET, "end", "no more streams");
	return 0;
}

short h2_conn_events(const struct h2_conn *c)
{
	if (!c->hs_done)
		return gnutls_record_get_direction(c->tls) ? POLLIN | POLLOUT : POLLIN;
	return c->out_off < c->out_len || nghttp2_session_want_write(c->s) ? POLLIN | POLLOUT
	                                                                   : POLLIN;
}

void h2_conn_free(struct h2_conn *c)
{
	if (!c)
		return;
	if (c->qlog) {
		qlog_closed(c, "closed here");
		fclose(c->qlog);
	}
	free(c->qs);
	if (c->s)
		nghttp2_session_del(c->s);
	c->s = NULL;
	if (c->tls)
		gnutls_deinit(c->tls);
	c->tls = NULL;
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

int h2_tcp_connect(const struct h3_addr *peer)
{
	int fd = socket(peer->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&peer->ss, peer->len) == -1 &&
	    errno != EINPROGRESS) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int h2_tcp_listen(const struct h3_addr *addr, struct h3_addr *bound)
{
	int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
	int ret;
	if (fd == -1)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (addr->ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one));
	bound->len = sizeof(bound->ss);
	if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) == -1 ||
	    listen(fd, 1024) == -1 ||
	    getsockname(fd, (struct sockaddr *)&bound->ss, &bound->len) == -1) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}
