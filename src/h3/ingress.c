/* The content-type ingress on HTTP/3: client connections on the server endpoint, one client
 * connection per upstream, and the streams joined across them. */
#include "ingress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "../sys/log.h"
#include "../sys/metrics.h"
#include "../sys/notify.h"
#include "endpoint.h"
#include "h2conn.h"
#include "head.h"
#include "pipe.h"
#include "qlog.h"
#include "sniff.h"
#include "tls.h"

enum {
	IN_FIELD_LEN = 256,        /* request header values kept and forwarded */
	IN_TURN_BYTES = 32 * 1024, /* request body bytes per turn on an upstream connection */
	IN_WINDOW = 256 * 1024,    /* a client's per stream window: at most this is held */
	IN_CONN_WINDOW = 16 * 1024 * 1024,
	IN_UP_STREAMS_MAX = 4096,  /* streams waiting or open on one upstream */
	IN_HC_MISSES = 3,          /* unanswered health check rounds before reconnecting */
	IN_UP_RECV_BATCH = 64,     /* datagrams per upstream read before the loop goes on */
	IN_UP_MMSG = 4,            /* messages per upstream receive call (recvmmsg) */
	IN_ROUNDS_BEFORE_POLL = 4, /* loop rounds an HTTP/2 upstream's reads may take in a row */
	IN_RENEW_RATIO = 4,        /* smoothed RTT over the least seen that renews the path */
};

/* An HTTP/3 upstream's path estimate is renewed (up_renew_path) when the path's RTT is
 * IN_RENEW_RATIO times the least the connection ever saw and at least IN_RENEW_FLOOR_NS above
 * it (sub-ms jitter on a loaded host is not a slower path): in IN_RENEW_SAMPLES samples in a
 * row taken with at most IN_RENEW_QUIET_BYTES in flight (more can queue up behind a busy
 * backend and look like a slower path: 64 KiB at 16 MB/s is 4 ms), or in one idle health
 * check's. At most once per IN_RENEW_GAP_NS: a renewal costs a slow start from the initial
 * window, and a host starved of CPU inflates every sample for a while too; the gap is short,
 * as a renewal measures the least RTT anew, so that one made by such a spell does not keep
 * the one a slower path needs waiting. */
#define IN_RENEW_FLOOR_NS (4 * NGTCP2_MILLISECONDS)
#define IN_RENEW_QUIET_BYTES (64 * 1024)
#define IN_RENEW_SAMPLES 8
#define IN_RENEW_GAP_NS (1 * NGTCP2_SECONDS)
#define IN_RENEW_RETRY_NS (1 * NGTCP2_SECONDS)

/* The max_ack_delay announced to clients (ngtcp2's default is 25 ms): a client whose last
 * packets of a burst were lost finds it out by its probe timeout, smoothed RTT + 4 x its
 * variation + this; ngtcp2 delays an ACK by at most the smoothed RTT / 8 anyway. */
#define IN_MAX_ACK_DELAY_NS (5 * NGTCP2_MILLISECONDS)

/* One request stream: the client's side (on a connection of the endpoint) joined to the
 * upstream's side. A health check has no client side. Freed when both sides are gone. */
struct istream {
	struct h3_conn *cc; /* the client's connection; NULL once its side closed */
	int64_t csid;
	struct upstream *up; /* NULL: answered here (no route, no upstream) */
	int64_t usid;        /* -1 until the upstream stream is open */
	bool up_open;        /* the upstream stream exists and has not closed */
	bool health;         /* our GET /healthz */
	struct h3_route *route;
	struct h3_pipe req, resp;
	uint64_t credited; /* of the client's body: flow-control credit given back (req_credit) */
	bool req_fin;      /* the client's body ended */
	bool resp_fin;     /* the answer's body ended (from upstream or ours) */
	bool answered;     /* answer headers submitted to the client */
	bool discard;      /* the rest of the client's body is read and dropped */
	bool up_paused, turn_used, cl_paused;
	bool cancelled;       /* the client's side went first: not the upstream's failure */
	bool sniffing;        /* --sniff: waiting for the body's first bytes to route by */
	int status;           /* the answer's, or the upstream's status seen */
	struct h3_req_head q; /* the request's head (a health check's: GET only) */
	char r_ctype[IN_FIELD_LEN], r_clen[24], r_backend[80];
	struct istream *cprev, *cnext; /* the client connection's streams (cc->app_conn) */
	struct istream *uprev, *unext; /* the upstream's streams, open or waiting */
};

struct upstream {
	size_t idx;
	const char *name;
	struct h3_addr addr;
	char host[64];       /* the address alone, for the certificate check */
	struct h3_conn *c;   /* HTTP/3 upstream */
	bool h2;             /* an HTTP/2 over TLS/TCP upstream (h2://) instead */
	struct h2_conn *h2c; /* its connection (owns the socket; fd is -1) */
	int fd;
	struct h3_addr local;
	bool healthy;
	bool check_now; /* send a health check as soon as the connection can */
	struct istream *hc;
	unsigned hc_misses;      /* rounds the outstanding check went unanswered */
	struct istream *streams; /* head of the list */
	size_t nstreams;
	gnutls_datum_t ticket; /* h2: the TLS session to resume on the next connection */
	uint64_t requests, errors, checks_failed; /* relaxed atomics for the metrics thread */
	uint64_t handshakes, resumed;             /* h2: TLS handshakes, and those resumed */
	uint64_t renewals;                        /* path estimates renewed (up_renew_path) */
	uint64_t renew_after;                     /* no renewal before then (ns) */
	uint64_t last_rtt;                        /* the latest RTT sample seen (up_renew_path) */
	unsigned rtt_risen;                       /* samples in a row far above the least RTT */
	bool idle_rtt_risen; /* an idle health check's RTT says the path is slower */
	int up_gauge;
	struct h3_udp_reader rx; /* HTTP/3: the socket's reader (GRO, recvmmsg) and counters */
};

/* Answers by route (the last row: none matched, or no content-type) and status. */
static const int in_status[] = {200, 201, 400, 404, 405, 413, 415, 500, 502, 503, -1, 0};
enum { IN_NSTATUS = sizeof(in_status) / sizeof(in_status[0]) }; /* -1: other, 0: reset */

static struct {
	const struct h3_ingress_opts *o;
	struct h3_route_table *t;
	struct upstream up[H3_ROUTE_UPS_ALL];
	bool healthy[H3_ROUTE_UPS_ALL];
	gnutls_certificate_credentials_t cred;
	uint64_t streams[H3_ROUTE_MAX + 1][IN_NSTATUS];
	uint64_t req_bytes[H3_ROUTE_MAX + 1], resp_bytes[H3_ROUTE_MAX + 1];
	uint64_t sniffed[H3_ROUTE_MAX + 1]; /* streams routed by sniffing, by route */
	struct h3_ctype_set octet;          /* application/octet-stream */
} in;

static struct log_limit in_rl;

static size_t route_row(const struct istream *s)
{
	return s->route ? (size_t)(s->route - in.t->r) : H3_ROUTE_MAX;
}

static void count_status(struct istream *s, int status)
{
	size_t i = 0;
	while (i < IN_NSTATUS - 2 && in_status[i] != status)
		i++;
	if (status == 0)
		i = IN_NSTATUS - 1;
	h3_stat_add(in.streams[route_row(s)][i], 1);
}

static nghttp3_nv nv(const char *n, const char *v)
{
	return (nghttp3_nv){(uint8_t *)n, (uint8_t *)v, strlen(n), strlen(v), NGHTTP3_NV_FLAG_NONE};
}

/* Frees s once neither side holds it. */
static void maybe_free(struct istream *s)
{
	if (s->cc || s->up_open || s->up)
		return;
	h3_pipe_free(&s->req);
	h3_pipe_free(&s->resp);
	free(s);
}

static void up_unlink(struct istream *s)
{
	struct upstream *u = s->up;
	if (!u)
		return;
	if (s->uprev)
		s->uprev->unext = s->unext;
	else
		u->streams = s->unext;
	if (s->unext)
		s->unext->uprev = s->uprev;
	s->uprev = s->unext = NULL;
	u->nstreams--;
	if (u->hc == s)
		u->hc = NULL;
	s->up = NULL;
}

static void cl_unlink(struct istream *s)
{
	if (!s->cc)
		return;
	if (s->cprev)
		s->cprev->cnext = s->cnext;
	else
		s->cc->app_conn = s->cnext;
	if (s->cnext)
		s->cnext->cprev = s->cprev;
	s->cprev = s->cnext = NULL;
	s->cc = NULL;
}

/* The upstream's connection exists (it may still be in its handshake). */
static bool up_has_conn(const struct upstream *u)
{
	return u->h2 ? u->h2c != NULL : u->c != NULL;
}

/* The upstream's connection can carry requests now. */
static bool up_ready(const struct upstream *u)
{
	return u->h2 ? u->h2c && u->h2c->settings && !u->h2c->dead : u->c && u->c->h;
}

/* Resets s's upstream stream (HTTP/3 error code, or the HTTP/2 one). */
static void up_reset(struct istream *s, uint64_t h3code, uint32_t h2code)
{
	struct upstream *u = s->up;
	if (!u || !s->up_open)
		return;
	if (u->h2 && u->h2c)
		nghttp2_submit_rst_stream(u->h2c->s, NGHTTP2_FLAG_NONE, (int32_t)s->usid, h2code);
	else if (!u->h2 && u->c)
		ngtcp2_conn_shutdown_stream(u->c->q, s->usid, h3code);
}

/* n bytes of the upstream's answer on s left the ingress: the upstream may send as many more
 * (its stream window). */
static void up_consume(struct istream *s, size_t n)
{
	struct upstream *u = s->up;
	if (!u || !s->up_open)
		return;
	if (u->h2 && u->h2c)
		nghttp2_session_consume(u->h2c->s, (int32_t)s->usid, n);
	else if (!u->h2 && u->c)
		h3_conn_consume(u->c, s->usid, n);
}

/* ---- the client's side ---- */

static nghttp3_ssize read_resp(nghttp3_conn *h, int64_t sid, nghttp3_vec *vec, size_t veccnt,
                               uint32_t *pflags, void *cu, void *su)
{
	struct istream *s = su;
	(void)h;
	(void)sid;
	(void)cu;
	if (!s)
		return 0;
	size_t k = h3_pipe_peek(&s->resp, vec, veccnt, SIZE_MAX);
	if (!h3_pipe_unsent(&s->resp) && s->resp_fin) {
		*pflags |= NGHTTP3_DATA_FLAG_EOF;
		return (nghttp3_ssize)k;
	}
	if (!k) {
		s->cl_paused = true;
		return NGHTTP3_ERR_WOULDBLOCK;
	}
	return (nghttp3_ssize)k;
}

static void resume_client(struct istream *s)
{
	if (s->cc && s->cc->h && s->answered && s->cl_paused) {
		s->cl_paused = false;
		nghttp3_conn_resume_stream(s->cc->h, s->csid);
	}
}

/* Submits the answer's headers to the client; its body follows through s->resp. */
static int answer(struct istream *s, int status, const char *ctype, const char *clen,
                  const char *backend)
{
	char st[8];
	nghttp3_nv nva[5];
	size_t n = 0;
	if (s->answered || !s->cc || !s->cc->h)
		return 0;
	s->answered = true;
	s->status = status;
	count_status(s, status);
	snprintf(st, sizeof(st), "%d", status);
	nva[n++] = nv(":status", st);
	if (ctype && *ctype)
		nva[n++] = nv("content-type", ctype);
	if (clen && *clen)
		nva[n++] = nv("content-length", clen);
	if (backend && *backend)
		nva[n++] = nv("x-peak-backend", backend);
	if (s->up)
		nva[n++] = nv("x-peak-upstream", s->up->name);
	h3_qlog_event(s->cc, "http:response", "\"stream_id\":%" PRId64 ",\"status\":%d", s->csid,
	              status);
	nghttp3_data_reader dr = {read_resp};
	int r = nghttp3_conn_submit_response(s->cc->h, s->csid, nva, n, &dr);
	if (r) {
		log_rl(&in_rl, LOG_WARNING, "h3 ingress: stream %" PRId64 ": response: %s", s->csid,
		       nghttp3_strerror(r));
		ngtcp2_conn_shutdown_stream(s->cc->q, s->csid, NGHTTP3_H3_INTERNAL_ERROR);
	}
	return 0;
}

/* Gives the client flow-control credit for its body as the bytes arrive, up to IN_WINDOW
 * ahead of what the upstream acknowledged, instead of only once the upstream acknowledges
 * them: a packet lost on the upstream leg holds its acknowledgement back, and credit that
 * waited for it left the client with nothing to send, the ingress with nothing new to put in
 * flight upstream, and the loss to be found by a probe timeout (seconds on a loaded machine:
 * issue 16, 1% loss). Bytes stay held until acknowledged (the upstream's stack points into
 * them), so a stream holds at most 2 x IN_WINDOW (the credit's lead plus the client's window),
 * and a slow upstream still slows its own client stream. */
static void req_credit(struct istream *s)
{
	uint64_t lim = s->req.acked + IN_WINDOW;
	uint64_t to = s->req.written < lim ? s->req.written : lim;
	if (to <= s->credited)
		return;
	if (s->cc)
		h3_conn_consume(s->cc, s->csid, (size_t)(to - s->credited));
	s->credited = to;
}

/* Gives the client the credit for every body byte it sent that is not credited yet and drops
 * whatever more it sends: the answer is ours (RFC 9114 §4.1.1 lets a server answer before the
 * request ends; no STOP_SENDING, which stalls some clients). */
static void discard_rest(struct istream *s)
{
	if (s->discard)
		return;
	s->discard = true;
	uint64_t owed = s->req.written - s->credited;
	if (s->cc && owed)
		h3_conn_consume(s->cc, s->csid, (size_t)owed);
	s->credited = s->req.written;
	h3_pipe_free(&s->req);
}

/* Answers here with the n bytes at body, of type ctype, and drops the rest of the request. */
static void answer_body(struct istream *s, int status, const char *ctype, const char *body,
                        size_t n)
{
	char len[24];
	discard_rest(s);
	if (s->answered || !s->cc)
		return;
	h3_pipe_free(&s->resp);
	h3_pipe_write(&s->resp, (const uint8_t *)body, n);
	s->resp_fin = true;
	snprintf(len, sizeof(len), "%zu", n);
	answer(s, status, ctype, len, NULL);
}

static void answer_local(struct istream *s, int status, const char *text)
{
	answer_body(s, status, "text/plain", text, strlen(text));
}

static void up_fail_stream(struct istream *s, const char *why);
static nghttp3_ssize in_read_req(nghttp3_conn *h, int64_t sid, nghttp3_vec *vec, size_t veccnt,
                                 uint32_t *pflags, void *cu, void *su);
static bool up_submit_h2(struct istream *s, const char *f[][2], size_t n);

/* ---- a request's way to its upstream, whatever the protocol (HTTP/3 or HTTP/2) ---- */

enum { UP_FIELDS_MAX = 7 };

static void field(const char *f[UP_FIELDS_MAX][2], size_t *n, const char *name, const char *val)
{
	f[*n][0] = name;
	f[*n][1] = val;
	(*n)++;
}

/* The header fields s is forwarded with, as name/value strings into f; returns how many. A
 * health check is GET /healthz. */
static size_t up_fields(const struct istream *s, const char *f[UP_FIELDS_MAX][2])
{
	const struct upstream *u = s->up;
	size_t n = 0;
	field(f, &n, ":method", s->health ? "GET" : s->q.method);
	field(f, &n, ":scheme", "https");
	field(f, &n, ":authority", s->health || !*s->q.authority ? u->name : s->q.authority);
	field(f, &n, ":path", s->health ? "/healthz" : s->q.path);
	if (s->q.has_ctype)
		field(f, &n, "content-type", s->q.ctype);
	if (*s->q.clen)
		field(f, &n, "content-length", s->q.clen);
	field(f, &n, "user-agent", "peak-h3-ingress/" PEAK_VERSION);
	return n;
}

/* Whether s's request carries a body (a data reader) upstream. */
static bool up_has_body(const struct istream *s)
{
	return !s->health && strcmp(s->q.method, "GET") && strcmp(s->q.method, "HEAD");
}

/* s's stream sid on its upstream was submitted. */
static void up_opened(struct istream *s, int64_t sid)
{
	s->usid = sid;
	s->up_open = true;
	if (!s->health)
		h3_stat_add(s->up->requests, 1);
}

/* The next bytes of s's request body for its upstream, at most max, as vectors into v[nv]:
 * *k of them, and *eof once the body ended and every byte is handed out. Returns false when
 * there is nothing to hand out yet: the stream is then marked paused (resume_upstream). */
static bool req_next(struct istream *s, nghttp3_vec *v, size_t nv, size_t max, size_t *k, bool *eof)
{
	*k = h3_pipe_peek(&s->req, v, nv, max);
	*eof = !h3_pipe_unsent(&s->req) && s->req_fin;
	if (!*k && !*eof) {
		s->up_paused = true;
		return false;
	}
	return true;
}

/* Opens s's stream on its upstream, or leaves it waiting for stream credit (RFC 9000 §4.6;
 * an HTTP/2 upstream's nghttp2 holds it past SETTINGS_MAX_CONCURRENT_STREAMS instead).
 * Returns true when it was opened. */
static bool up_submit(struct istream *s)
{
	struct upstream *u = s->up;
	const char *f[UP_FIELDS_MAX][2];
	size_t n = up_fields(s, f);
	int64_t sid;
	if (u->h2)
		return up_submit_h2(s, f, n);
	if (!u->c || !u->c->h || ngtcp2_conn_get_streams_bidi_left(u->c->q) == 0)
		return false;
	if (ngtcp2_conn_open_bidi_stream(u->c->q, &sid, NULL))
		return false;
	nghttp3_nv nva[UP_FIELDS_MAX];
	for (size_t i = 0; i < n; i++)
		nva[i] = nv(f[i][0], f[i][1]);
	nghttp3_data_reader dr = {in_read_req};
	int r = nghttp3_conn_submit_request(u->c->h, sid, nva, n, up_has_body(s) ? &dr : NULL, s);
	if (r) {
		log_rl(&in_rl, LOG_WARNING, "h3 ingress: upstream %s: request: %s", u->name,
		       nghttp3_strerror(r));
		ngtcp2_conn_shutdown_stream(u->c->q, sid, NGHTTP3_H3_INTERNAL_ERROR);
		s->usid = sid; /* not open (nghttp3 has no stream to close), not to submit again */
		up_fail_stream(s, "request refused");
		return false;
	}
	up_opened(s, sid);
	return true;
}

/* Opens the waiting streams of u as far as its stream credit goes. */
static void up_submit_waiting(struct upstream *u)
{
	for (struct istream *s = u->streams, *nx; s; s = nx) {
		nx = s->unext;
		if (s->usid == -1 && !up_submit(s))
			break;
	}
}

static void up_attach(struct istream *s, struct upstream *u)
{
	s->up = u;
	s->usid = -1;
	s->unext = u->streams;
	if (u->streams)
		u->streams->uprev = s;
	u->streams = s;
	u->nstreams++;
}

static int begin_headers(nghttp3_conn *h, int64_t sid, void *cu, void *su)
{
	struct h3_conn *c = cu;
	if (su)
		return 0;
	struct istream *s = calloc(1, sizeof(*s));
	if (!s)
		return NGHTTP3_ERR_CALLBACK_FAILURE;
	if (nghttp3_conn_set_stream_user_data(h, sid, s)) {
		free(s);
		return NGHTTP3_ERR_CALLBACK_FAILURE;
	}
	s->cc = c;
	s->csid = sid;
	s->usid = -1;
	s->cnext = c->app_conn;
	if (s->cnext)
		s->cnext->cprev = s;
	c->app_conn = s;
	return 0;
}

static int recv_header(nghttp3_conn *h, int64_t sid, int32_t token, nghttp3_rcbuf *name,
                       nghttp3_rcbuf *value, uint8_t flags, void *cu, void *su)
{
	struct istream *s = su;
	(void)h;
	(void)sid;
	(void)token;
	(void)flags;
	(void)cu;
	if (s) {
		nghttp3_vec n = nghttp3_rcbuf_get_buf(name), v = nghttp3_rcbuf_get_buf(value);
		h3_req_head_field(&s->q, n.base, n.len, v.base, v.len);
	}
	return 0;
}

/* Routes the request: to an upstream of its rule, or an answer of our own (400: no
 * content-type or no rule; 503: no healthy upstream). With sn.type set, the type was sniffed
 * from the body's first bytes (--sniff): it is routed by, and forwarded as, that type. */
static void route_stream(struct istream *s, bool sniffed, struct h3_sniff sn)
{
	struct h3_conn *c = s->cc;
	char t[2 * IN_FIELD_LEN], w[160];
	bool had = s->q.has_ctype;
	if (!c)
		return;
	if (c->qlog)
		h3_qlog_str(t, sizeof(t), s->q.ctype, strlen(s->q.ctype));
	if (sn.type) {
		snprintf(s->q.ctype, sizeof(s->q.ctype), "%s", sn.type);
		s->q.has_ctype = true;
		s->q.ctype_long = false;
	}
	s->route = s->q.has_ctype && !s->q.ctype_long
	               ? h3_route_match(in.t, s->q.ctype, strlen(s->q.ctype))
	               : NULL;
	int ui = s->route ? h3_route_pick(s->route, in.healthy) : -1;
	if (sniffed)
		h3_stat_add(in.sniffed[route_row(s)], 1);
	w[0] = 0;
	if (sniffed)
		snprintf(w, sizeof(w), ",\"sniffed\":%s%s%s,\"why\":\"%s\"", sn.type ? "\"" : "",
		         sn.type ? sn.type : "null", sn.type ? "\"" : "",
		         sn.why ? sn.why : "no known signature");
	if (c->qlog)
		h3_qlog_event(c, "http:routing",
		              "\"stream_id\":%" PRId64 ",\"content_type\":%s%s%s,\"route\":%s%s%s,"
		              "\"upstream\":\"%s\"%s",
		              s->csid, had ? "\"" : "", had ? t : "null", had ? "\"" : "",
		              s->route ? "\"" : "", s->route ? s->route->name : "null",
		              s->route ? "\"" : "", ui >= 0 ? in.up[ui].name : "-", w);
	if (in.o->page && h3_page_wanted(&s->q)) {
		answer_body(s, 200, "text/html; charset=utf-8", in.o->page->html, in.o->page->len);
		return;
	}
	if (!s->q.has_ctype) {
		answer_local(s, 400, "no content-type\n");
		return;
	}
	if (!s->route) {
		answer_local(s, 400, "no route for this content-type\n");
		return;
	}
	if (ui < 0) {
		answer_local(s, 503, "no healthy upstream for this content-type\n");
		return;
	}
	struct upstream *u = &in.up[ui];
	if (u->nstreams >= IN_UP_STREAMS_MAX) {
		answer_local(s, 503, "upstream busy\n");
		return;
	}
	log_msg(LOG_DEBUG, "h3 ingress: stream %" PRId64 ": %s %s -> %s (%s)%s%s", s->csid,
	        s->q.method, s->q.ctype, u->name, s->route->name, sniffed ? ", sniffed: " : "",
	        sniffed && sn.why ? sn.why : "");
	up_attach(s, u);
	up_submit(s);
}

/* --sniff: the body's first bytes are in (H3_SNIFF_LEN of them, or the whole body): route
 * by what they are. They wait in s->req, within the client's stream window. */
static void sniff_route(struct istream *s)
{
	uint8_t first[H3_SNIFF_LEN];
	size_t k = 0;
	s->sniffing = false;
	for (struct h3_pipe_chunk *ch = s->req.head; ch && k < sizeof(first); ch = ch->next) {
		size_t m = ch->len < sizeof(first) - k ? ch->len : sizeof(first) - k;
		memcpy(first + k, ch->d, m);
		k += m;
	}
	route_stream(s, true, h3_sniff_type(first, k));
	/* the bytes held while sniffing count for the route chosen, if forwarded */
	if (!s->discard)
		h3_stat_add(in.req_bytes[route_row(s)], h3_pipe_held(&s->req));
}

/* Routes the request once its headers are in; with --sniff, one with no content-type or
 * application/octet-stream waits for its first body bytes. */
static int end_headers(nghttp3_conn *h, int64_t sid, int fin, void *cu, void *su)
{
	struct istream *s = su;
	(void)h;
	(void)sid;
	(void)cu;
	if (!s)
		return 0;
	if (fin)
		s->req_fin = true;
	if (!*s->q.path)
		snprintf(s->q.path, sizeof(s->q.path), "/");
	if (!*s->q.method)
		snprintf(s->q.method, sizeof(s->q.method), "POST");
	bool octet = s->q.has_ctype && !s->q.ctype_long &&
	             h3_ctype_set_match(&in.octet, s->q.ctype, strlen(s->q.ctype));
	if (in.o->sniff && (!s->q.has_ctype || octet)) {
		s->sniffing = true;
		if (fin)
			sniff_route(s);
		return 0;
	}
	route_stream(s, false, (struct h3_sniff){NULL, NULL});
	return 0;
}

static void resume_upstream(struct istream *s)
{
	if (s->up && s->up_open && s->up_paused && s->up->h2 && s->up->h2c) {
		s->up_paused = false;
		nghttp2_session_resume_data(s->up->h2c->s, (int32_t)s->usid);
		return;
	}
	if (s->up && s->up_open && s->up_paused && !s->turn_used && s->up->c && s->up->c->h) {
		s->up_paused = false;
		nghttp3_conn_resume_stream(s->up->c->h, s->usid);
	}
}

static int recv_data(nghttp3_conn *h, int64_t sid, const uint8_t *data, size_t n, void *cu,
                     void *su)
{
	struct h3_conn *c = cu;
	struct istream *s = su;
	(void)h;
	if (!s || s->discard || (!s->up && !s->sniffing)) {
		h3_conn_consume(c, sid, n);
		return 0;
	}
	/* credit runs at most IN_WINDOW ahead of the upstream's acknowledgements (req_credit):
	 * a client cannot have more than twice its window here, whatever it sends */
	if (h3_pipe_held(&s->req) + n > 2 * IN_WINDOW || h3_pipe_write(&s->req, data, n)) {
		h3_conn_consume(c, sid, n); /* never written: outside the pipe's count */
		up_fail_stream(s, "request body over the window");
		return 0;
	}
	req_credit(s);
	if (!s->sniffing)
		h3_stat_add(in.req_bytes[route_row(s)], n);
	else if (h3_pipe_held(&s->req) >= H3_SNIFF_LEN)
		sniff_route(s);
	resume_upstream(s);
	return 0;
}

static int end_stream(nghttp3_conn *h, int64_t sid, void *cu, void *su)
{
	struct istream *s = su;
	(void)h;
	(void)sid;
	(void)cu;
	if (!s)
		return 0;
	s->req_fin = true;
	if (s->sniffing)
		sniff_route(s);
	resume_upstream(s);
	return 0;
}

/* The answer's bytes the client acknowledged: dropped, and credited to the upstream. */
static int acked_resp(nghttp3_conn *h, int64_t sid, uint64_t n, void *cu, void *su)
{
	struct istream *s = su;
	(void)h;
	(void)sid;
	(void)cu;
	if (!s)
		return 0;
	h3_pipe_ack(&s->resp, n);
	up_consume(s, n);
	return 0;
}

static int stream_close(nghttp3_conn *h, int64_t sid, uint64_t code, void *cu, void *su)
{
	struct h3_conn *c = cu;
	struct istream *s = su;
	(void)h;
	(void)code;
	if (s) {
		if (!s->answered)
			count_status(s, 0);
		cl_unlink(s);
		s->cancelled = true;
		if (s->up && s->up_open)
			up_reset(s, NGHTTP3_H3_REQUEST_CANCELLED, NGHTTP2_CANCEL);
		else if (s->up && !s->up_open)
			up_unlink(s); /* still waiting: forget it */
		maybe_free(s);
	}
	/* a finished request stream makes room for one more (RFC 9000 §4.6) */
	if (!ngtcp2_conn_is_local_stream(c->q, sid))
		ngtcp2_conn_extend_max_streams_bidi(c->q, 1);
	return 0;
}

/* A client connection goes: its streams lose their client side. */
static void client_conn_free(struct h3_conn *c)
{
	while (c->app_conn) {
		struct istream *s = c->app_conn;
		if (!s->answered)
			count_status(s, 0);
		cl_unlink(s);
		s->cancelled = true;
		if (s->up && s->up_open)
			up_reset(s, NGHTTP3_H3_REQUEST_CANCELLED, NGHTTP2_CANCEL);
		else if (s->up && !s->up_open)
			up_unlink(s);
		maybe_free(s);
	}
}

static int server_http_new(struct h3_conn *c)
{
	static const nghttp3_callbacks cbs = {
	    .acked_stream_data = acked_resp,
	    .stream_close = stream_close,
	    .recv_data = recv_data,
	    .deferred_consume = h3_cb_deferred_consume,
	    .begin_headers = begin_headers,
	    .recv_header = recv_header,
	    .end_headers = end_headers,
	    .stop_sending = h3_cb_stop_sending,
	    .end_stream = end_stream,
	    .reset_stream = h3_cb_reset_stream,
	};
	nghttp3_settings st;
	h3_http_settings(&st);
	return nghttp3_conn_server_new(&c->h, &cbs, &st, NULL, c) ? -ENOMEM : 0;
}

static const struct h3_conn_ops server_ops = {.http_new = server_http_new,
                                              .conn_free = client_conn_free};

/* ---- the upstreams' side ---- */

static void mark(struct upstream *u, bool healthy, const char *why)
{
	if (u->healthy == healthy && u->up_gauge != -1)
		return;
	u->healthy = healthy;
	in.healthy[u->idx] = healthy;
	__atomic_store_n(&u->up_gauge, healthy ? 1 : 0, __ATOMIC_RELAXED);
	log_msg(healthy ? LOG_INFO : LOG_WARNING, "h3 ingress: upstream %s %s%s%s", u->name,
	        healthy ? "up" : "down", why ? ": " : "", why ? why : "");
}

/* Whether rtt is far above the least RTT the connection saw (IN_RENEW_RATIO, IN_RENEW_FLOOR_NS). */
static bool up_rtt_risen(const ngtcp2_conn_stat *st, uint64_t rtt)
{
	return st->min_rtt != UINT64_MAX && rtt != UINT64_MAX &&
	       rtt >= IN_RENEW_RATIO * st->min_rtt && rtt >= st->min_rtt + IN_RENEW_FLOOR_NS;
}

/* The upstream side of s failed before its answer ended: 502 when the client has no answer
 * yet, else the client's stream is reset; only this stream. */
static void up_fail_stream(struct istream *s, const char *why)
{
	struct upstream *u = s->up;
	if (u && !s->health && !s->cancelled) {
		h3_stat_add(u->errors, 1);
		log_rl(&in_rl, LOG_NOTICE, "h3 ingress: stream %" PRId64 " to %s: %s", s->csid,
		       u->name, why);
	}
	if (s->cc && !s->answered)
		answer_local(s, 502, "upstream failed\n");
	else if (s->cc && !s->resp_fin)
		ngtcp2_conn_shutdown_stream(s->cc->q, s->csid, NGHTTP3_H3_INTERNAL_ERROR);
	discard_rest(s);
}

static nghttp3_ssize in_read_req(nghttp3_conn *h, int64_t sid, nghttp3_vec *vec, size_t veccnt,
                                 uint32_t *pflags, void *cu, void *su)
{
	struct istream *s = su;
	(void)h;
	(void)sid;
	(void)cu;
	if (!s)
		return 0;
	if (s->discard) { /* the client's side failed: end the upstream's request */
		*pflags |= NGHTTP3_DATA_FLAG_EOF;
		return 0;
	}
	/* nghttp3 0.8 sends a client's bodies one after the other; turns of IN_TURN_BYTES
	 * interleave them (as peak h3 upload does) */
	if (s->turn_used) {
		s->up_paused = true;
		return NGHTTP3_ERR_WOULDBLOCK;
	}
	size_t k;
	bool eof;
	if (!req_next(s, vec, veccnt, IN_TURN_BYTES, &k, &eof))
		return NGHTTP3_ERR_WOULDBLOCK;
	if (k)
		s->turn_used = true;
	if (eof)
		*pflags |= NGHTTP3_DATA_FLAG_EOF;
	return (nghttp3_ssize)k;
}

static bool up_streams_idle(struct h3_conn *c)
{
	struct upstream *u = c->app;
	bool any = false;
	for (struct istream *s = u->streams; s; s = s->unext) {
		s->turn_used = false;
		if (s->up_open && s->up_paused &&
		    (h3_pipe_unsent(&s->req) || s->req_fin || s->discard)) {
			s->up_paused = false;
			if (nghttp3_conn_resume_stream(c->h, s->usid) == 0)
				any = true;
		}
	}
	return any;
}

static void up_streams_more(struct h3_conn *c)
{
	up_submit_waiting(c->app);
}

/* Keeps the upstream's answer fields that are forwarded (untrusted: cut, made printable). */
static void up_field(struct istream *s, const uint8_t *n, size_t nl, const uint8_t *v, size_t vl)
{
	if (h3_field_is_raw(n, nl, ":status")) {
		int st = 0;
		for (size_t i = 0; i < vl && i < 3; i++)
			st = st * 10 + (v[i] >= '0' && v[i] <= '9' ? v[i] - '0' : 0);
		s->status = vl == 3 ? st : 0;
	} else if (h3_field_is_raw(n, nl, "content-type")) {
		h3_field_copy_raw(s->r_ctype, sizeof(s->r_ctype), v, vl, NULL);
	} else if (h3_field_is_raw(n, nl, "content-length")) {
		h3_field_copy_raw(s->r_clen, sizeof(s->r_clen), v, vl, NULL);
	} else if (h3_field_is_raw(n, nl, "x-peak-backend")) {
		h3_field_copy_raw(s->r_backend, sizeof(s->r_backend), v, vl, NULL);
	}
}

static int up_recv_header(nghttp3_conn *h, int64_t sid, int32_t token, nghttp3_rcbuf *name,
                          nghttp3_rcbuf *value, uint8_t flags, void *cu, void *su)
{
	struct istream *s = su;
	(void)h;
	(void)sid;
	(void)token;
	(void)flags;
	(void)cu;
	if (s) {
		nghttp3_vec n = nghttp3_rcbuf_get_buf(name), v = nghttp3_rcbuf_get_buf(value);
		up_field(s, n.base, n.len, v.base, v.len);
	}
	return 0;
}

/* The upstream's answer head is in: forwarded to the client, unless it is interim (1xx: the
 * final answer follows) or garbage (the stream is reset: a 502). */
static void up_head(struct istream *s, bool fin)
{
	if (s->status < 200) {
		if (s->status < 100)
			up_reset(s, NGHTTP3_H3_GENERAL_PROTOCOL_ERROR, NGHTTP2_PROTOCOL_ERROR);
		return;
	}
	if (fin)
		s->resp_fin = true;
	if (!s->health)
		answer(s, s->status, s->r_ctype, s->r_clen, s->r_backend);
}

static int up_end_headers(nghttp3_conn *h, int64_t sid, int fin, void *cu, void *su)
{
	(void)h;
	(void)sid;
	(void)cu;
	if (su)
		up_head(su, fin);
	return 0;
}

/* n bytes of the upstream's answer body: into the client's answer, or dropped and consumed
 * at once (a health check, a client gone). Over the window the upstream was granted: reset. */
static void up_body(struct istream *s, const uint8_t *data, size_t n)
{
	if (s->health || !s->cc || !s->answered) {
		up_consume(s, n);
		return;
	}
	if (h3_pipe_held(&s->resp) + n > 2 * IN_WINDOW || h3_pipe_write(&s->resp, data, n)) {
		up_consume(s, n);
		up_reset(s, NGHTTP3_H3_INTERNAL_ERROR, NGHTTP2_INTERNAL_ERROR);
		return;
	}
	h3_stat_add(in.resp_bytes[route_row(s)], n);
	resume_client(s);
}

static int up_recv_data(nghttp3_conn *h, int64_t sid, const uint8_t *data, size_t n, void *cu,
                        void *su)
{
	(void)h;
	if (su)
		up_body(su, data, n);
	else
		h3_conn_consume(cu, sid, n);
	return 0;
}

/* The upstream's answer ended: a health check's verdict, or the end of the client's answer. */
static void up_resp_end(struct istream *s)
{
	s->resp_fin = true;
	if (s->health && s->up) {
		struct upstream *u = s->up;
		char why[64];
		snprintf(why, sizeof(why), "/healthz answered %d", s->status);
		if (s->status != 200)
			h3_stat_add(u->checks_failed, 1);
		mark(u, s->status == 200, s->status == 200 ? NULL : why);
		if (u->hc == s)
			u->hc = NULL;
		u->hc_misses = 0;
		/* the check alone on the connection: its RTT is the path's, with no queue of
		 * ours in it (acted on in the loop: no migration inside ngtcp2's callbacks) */
		if (u->nstreams == 1 && !u->h2 && u->c) {
			ngtcp2_conn_stat st;
			ngtcp2_conn_get_conn_stat(u->c->q, &st);
			u->idle_rtt_risen = up_rtt_risen(&st, st.latest_rtt);
		}
	}
	resume_client(s);
}

static int up_end_stream(nghttp3_conn *h, int64_t sid, void *cu, void *su)
{
	(void)h;
	(void)sid;
	(void)cu;
	if (su)
		up_resp_end(su);
	return 0;
}

/* The request bytes the upstream acknowledged: dropped, which lets the credit run further
 * (req_credit; the back-pressure of a slow upstream). */
static int up_acked(nghttp3_conn *h, int64_t sid, uint64_t n, void *cu, void *su)
{
	struct istream *s = su;
	(void)h;
	(void)sid;
	(void)cu;
	if (!s || s->discard)
		return 0;
	h3_pipe_ack(&s->req, n);
	req_credit(s);
	return 0;
}

/* s's upstream stream closed: a failure unless its answer ended (clean says how it closed). */
static void up_closed(struct istream *s, bool clean)
{
	s->up_open = false;
	if (!s->resp_fin)
		up_fail_stream(s, clean ? "stream closed early" : "stream reset by the upstream");
	else if (!s->req_fin || h3_pipe_unsent(&s->req))
		discard_rest(s); /* answered before the whole body: drop the rest */
	up_unlink(s);
	maybe_free(s);
}

static int up_stream_close(nghttp3_conn *h, int64_t sid, uint64_t code, void *cu, void *su)
{
	(void)h;
	(void)sid;
	(void)cu;
	if (su)
		up_closed(su, code == NGHTTP3_H3_NO_ERROR);
	return 0;
}

static int up_http_new(struct h3_conn *c)
{
	static const nghttp3_callbacks cbs = {
	    .acked_stream_data = up_acked,
	    .stream_close = up_stream_close,
	    .recv_data = up_recv_data,
	    .deferred_consume = h3_cb_deferred_consume,
	    .recv_header = up_recv_header,
	    .end_headers = up_end_headers,
	    .stop_sending = h3_cb_stop_sending,
	    .end_stream = up_end_stream,
	    .reset_stream = h3_cb_reset_stream,
	};
	nghttp3_settings st;
	h3_http_settings(&st);
	return nghttp3_conn_client_new(&c->h, &cbs, &st, NULL, c) ? -ENOMEM : 0;
}

static const struct h3_conn_ops up_ops = {
    .http_new = up_http_new,
    .streams_more = up_streams_more,
    .streams_idle = up_streams_idle,
};

/* ---- HTTP/2 upstreams (h2://): the same streams over one TLS/TCP connection ---- */

static nghttp2_nv nv2(const char *n, const char *v)
{
	return (nghttp2_nv){(uint8_t *)n, (uint8_t *)v, strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE};
}

/* The client's body bytes for the upstream: copied into the frame nghttp2 is writing (it asks
 * only within the upstream's flow-control window, and only while the connection's output
 * buffer has room), dropped from the pipe, and only then credited to the client. */
static ssize_t h2_read_req(nghttp2_session *h, int32_t sid, uint8_t *buf, size_t len,
                           uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct istream *s = src->ptr;
	nghttp3_vec v[8];
	size_t nv, k = 0;
	bool eof;
	(void)h;
	(void)sid;
	(void)ud;
	if (s->discard) /* the client's side failed: reset the upstream's request */
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (!req_next(s, v, sizeof(v) / sizeof(v[0]), len, &nv, &eof))
		return NGHTTP2_ERR_DEFERRED; /* resume_upstream when the client sends more */
	for (size_t i = 0; i < nv; i++) {
		memcpy(buf + k, v[i].base, v[i].len);
		k += v[i].len;
	}
	if (k) {
		h3_pipe_ack(&s->req, k);
		req_credit(s);
	}
	if (eof)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)k;
}

/* Opens s's stream on its HTTP/2 upstream; nghttp2 holds it while the upstream's
 * SETTINGS_MAX_CONCURRENT_STREAMS are in use. Returns true when it was submitted. */
static bool up_submit_h2(struct istream *s, const char *f[][2], size_t n)
{
	struct upstream *u = s->up;
	nghttp2_nv nva[UP_FIELDS_MAX];
	if (!up_ready(u))
		return false;
	for (size_t i = 0; i < n; i++)
		nva[i] = nv2(f[i][0], f[i][1]);
	nghttp2_data_provider dp = {.source.ptr = s, .read_callback = h2_read_req};
	int32_t sid =
	    nghttp2_submit_request(u->h2c->s, NULL, nva, n, up_has_body(s) ? &dp : NULL, s);
	if (sid < 0) {
		log_rl(&in_rl, LOG_WARNING, "h3 ingress: upstream %s: request: %s", u->name,
		       nghttp2_strerror(sid));
		up_fail_stream(s, "request refused");
		return false;
	}
	up_opened(s, sid);
	if (u->h2c->qlog) { /* the client's stream it carries, and why it came here */
		char t[2 * IN_FIELD_LEN];
		h2_qlog_event(u->h2c, "http:routing",
		              "\"stream_id\":%" PRId32 ",\"client_stream_id\":%" PRId64
		              ",\"content_type\":\"%s\",\"route\":\"%s\",\"upstream\":\"%s\"",
		              sid, s->health ? -1 : s->csid,
		              h3_qlog_str(t, sizeof(t), s->q.ctype, strlen(s->q.ctype)),
		              s->route ? s->route->name : "-", u->name);
	}
	return true;
}

static int h2_up_header(nghttp2_session *h, const nghttp2_frame *f, const uint8_t *n, size_t nl,
                        const uint8_t *v, size_t vl, uint8_t flags, void *ud)
{
	(void)flags;
	(void)ud;
	struct istream *s = nghttp2_session_get_stream_user_data(h, f->hd.stream_id);
	if (s && f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_RESPONSE)
		up_field(s, n, nl, v, vl);
	return 0;
}

static int h2_up_frame_recv(nghttp2_session *h, const nghttp2_frame *f, void *ud)
{
	(void)ud;
	if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
		return 0;
	struct istream *s = nghttp2_session_get_stream_user_data(h, f->hd.stream_id);
	if (!s)
		return 0;
	bool fin = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
	if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_RESPONSE) {
		up_head(s, fin);
		if (s->status < 200)
			return 0;
	}
	if (fin)
		up_resp_end(s);
	return 0;
}

static int h2_up_data(nghttp2_session *h, uint8_t flags, int32_t sid, const uint8_t *d, size_t n,
                      void *ud)
{
	(void)flags;
	(void)ud;
	struct istream *s = nghttp2_session_get_stream_user_data(h, sid);
	if (s)
		up_body(s, d, n);
	else
		nghttp2_session_consume(h, sid, n);
	return 0;
}

static int h2_up_stream_close(nghttp2_session *h, int32_t sid, uint32_t code, void *ud)
{
	(void)ud;
	struct istream *s = nghttp2_session_get_stream_user_data(h, sid);
	if (s) {
		nghttp2_session_set_stream_user_data(h, sid, NULL);
		up_closed(s, code == NGHTTP2_NO_ERROR);
	}
	return 0;
}

static void h2_up_callbacks(nghttp2_session_callbacks *cbs)
{
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_up_data);
}

static void h2_up_handshake(struct h2_conn *c)
{
	struct upstream *u = c->app;
	h3_stat_add(u->handshakes, 1);
	if (c->resumed)
		h3_stat_add(u->resumed, 1);
}

/* Connects to u, offering the TLS session of its last connection (a reconnect resumes). */
static int up_connect_h2(struct upstream *u)
{
	/* the upstream's window per stream is the client's: what one answer can hold here */
	static const struct h2_conn_cfg cfg = {.callbacks = h2_up_callbacks,
	                                       .frame_recv = h2_up_frame_recv,
	                                       .header = h2_up_header,
	                                       .stream_close = h2_up_stream_close,
	                                       .handshake_done = h2_up_handshake,
	                                       .stream_window = IN_WINDOW};
	int fd = h2_tcp_connect(&u->addr), r;
	if (fd < 0)
		return fd;
	if ((r = h2_conn_client_new(&u->h2c, fd, &u->addr, in.cred, u->host,
	                            !in.o->upstream_insecure, &cfg, u)))
		return r;
	h2_conn_resume(u->h2c, &u->ticket);
	return 0;
}

/* The connection to u is gone (closed, refused, timed out): every stream on it fails, the
 * upstream is down until a health check passes on a new connection. */
static void up_lost(struct upstream *u, const char *why)
{
	while (u->streams) {
		struct istream *s = u->streams;
		bool was_open = s->up_open;
		s->up_open = false;
		if (was_open && !s->resp_fin)
			up_fail_stream(s, why);
		else if (!was_open && s->cc && !s->answered)
			up_fail_stream(s, why);
		up_unlink(s);
		maybe_free(s);
	}
	if (why) { /* NULL: at exit */
		h3_stat_add(u->checks_failed, 1);
		mark(u, false, why);
	}
	u->hc_misses = 0;
	if (u->c) {
		h3_conn_free(u->c);
		u->c = NULL;
	}
	if (u->h2c) {
		h2_conn_free(u->h2c); /* no stream callbacks: u->streams is empty already */
		u->h2c = NULL;
	}
	if (u->fd >= 0) {
		close(u->fd);
		u->fd = -1;
	}
}

static void up_connect(struct upstream *u)
{
	if (up_has_conn(u))
		return;
	if (u->h2) {
		int r = up_connect_h2(u);
		if (r) {
			mark(u, false, strerror(-r));
			return;
		}
		u->check_now = true;
		return;
	}
	int fd = h3_udp_connect(&u->addr, &u->local);
	if (fd < 0) {
		mark(u, false, strerror(-fd));
		return;
	}
	h3_udp_gro(fd); /* a response-heavy upstream: many datagrams per read */
	if (h3_conn_client_new(&u->c, fd, &u->local, &u->addr, in.cred, u->host,
	                       !in.o->upstream_insecure, &up_ops, u)) {
		close(fd);
		mark(u, false, "cannot start a connection");
		return;
	}
	u->fd = fd;
	u->check_now = true;
	h3_conn_write(u->c);
}

/* One health check round for u. The last check still unanswered takes u out of the
 * rotation but leaves its streams running (a busy upstream may answer late); after
 * IN_HC_MISSES rounds without an answer the connection is given up. A connection that did
 * not come up is dropped and tried again. */
static void up_check(struct upstream *u)
{
	if (u->hc) {
		h3_stat_add(u->checks_failed, 1);
		mark(u, false, "no answer to /healthz in time");
		if (++u->hc_misses < IN_HC_MISSES)
			return; /* one check outstanding at a time */
		up_lost(u, "no answer to /healthz in several rounds");
	}
	if (up_has_conn(u) && !up_ready(u)) {
		up_lost(u, "no handshake (or no SETTINGS) in time");
	}
	if (!up_has_conn(u)) {
		up_connect(u);
		return;
	}
	u->check_now = true;
}

static void up_check_send(struct upstream *u)
{
	if (!u->check_now || !up_ready(u) || u->hc)
		return;
	struct istream *s = calloc(1, sizeof(*s));
	if (!s)
		return;
	u->check_now = false;
	s->health = true;
	s->req_fin = true;
	snprintf(s->q.method, sizeof(s->q.method), "GET");
	up_attach(s, u);
	u->hc = s;
	bool ok = up_submit(s);
	log_msg(LOG_DEBUG, "h3 ingress: upstream %s: GET /healthz %s (stream %" PRId64 ")", u->name,
	        ok ? "sent" : "not sent", s->usid);
	if (!ok && s->up) {
		up_unlink(s); /* no stream credit now: the next round tries again */
		maybe_free(s);
	}
}

/* A long-lived upstream connection whose path became slower than it was: ngtcp2 0.12's
 * congestion controllers (CUBIC and Reno) stop growing the window beyond 2.89 x the best
 * delivery rate x the least RTT the connection ever saw, with no sliding window over either.
 * A connection made while the path took 50 us (the bench's, before its relay adds 5 ms each
 * way; in a cluster, a route or a pod that moved) keeps a cap of ~46 KB, 4.5 MB/s at 10 ms,
 * and every client stream routed to it crawls (issue 16: the audio streams' p99 under 1% loss
 * 450 to 950 ms through the ingress, 140 ms straight to the pod). When the path's RTT (in
 * IN_RENEW_SAMPLES samples in a row, or an idle health check's) is far above the least one,
 * the connection moves to a new local port (RFC 9000 §9.4: a new path starts a new RTT estimate
 * and congestion state; the streams go on, the backend follows by connection ID), so that
 * the window is sized for the path as it is now. Called every loop round. */
static void up_renew_path(struct upstream *u, uint64_t now)
{
	ngtcp2_conn_stat st;
	struct h3_addr local;
	if (u->h2 || !u->c || !u->c->h || u->c->dead || u->c->close_at)
		return;
	ngtcp2_conn_get_conn_stat(u->c->q, &st);
	/* a new sample, most likely; one taken with much in flight says nothing */
	if (st.latest_rtt && st.latest_rtt != u->last_rtt &&
	    st.bytes_in_flight <= IN_RENEW_QUIET_BYTES) {
		u->last_rtt = st.latest_rtt;
		u->rtt_risen = up_rtt_risen(&st, st.latest_rtt) ? u->rtt_risen + 1 : 0;
	}
	bool risen = u->idle_rtt_risen || u->rtt_risen >= IN_RENEW_SAMPLES;
	u->idle_rtt_risen = false;
	if (!risen || now < u->renew_after)
		return;
	const ngtcp2_transport_params *tp = ngtcp2_conn_get_remote_transport_params(u->c->q);
	if (!tp || tp->disable_active_migration)
		return; /* the backend takes no migration: the connection stays as it is */
	u->renew_after = now + IN_RENEW_RETRY_NS; /* no spare connection ID yet, no socket */
	int fd = h3_udp_connect(&u->addr, &local);
	if (fd < 0)
		return;
	h3_udp_gro(fd);
	ngtcp2_path path = {{(ngtcp2_sockaddr *)&local.ss, local.len},
	                    {(ngtcp2_sockaddr *)&u->addr.ss, u->addr.len},
	                    NULL};
	int r = ngtcp2_conn_initiate_immediate_migration(u->c->q, &path, now);
	if (r) {
		close(fd);
		log_rl(&in_rl, LOG_DEBUG, "h3 ingress: upstream %s: path not renewed: %s", u->name,
		       ngtcp2_strerror(r));
		return;
	}
	log_msg(LOG_INFO,
	        "h3 ingress: upstream %s: RTT %.2f ms, least seen %.3f ms: moved to a new local "
	        "port for a fresh RTT estimate and congestion window",
	        u->name, (double)st.latest_rtt / 1e6, (double)st.min_rtt / 1e6);
	h3_qlog_event(u->c, "peak:path_renewed",
	              "\"latest_rtt_us\":%" PRIu64 ",\"min_rtt_us\":%" PRIu64, st.latest_rtt / 1000,
	              st.min_rtt / 1000);
	close(u->fd);
	u->fd = u->c->fd = fd;
	u->local = u->c->local = local;
	u->renew_after = now + IN_RENEW_GAP_NS;
	u->rtt_risen = 0;
	h3_stat_add(u->renewals, 1);
	h3_conn_write(u->c);
}

static int up_datagram(void *arg, const struct h3_addr *to, const struct h3_addr *from,
                       const uint8_t *p, size_t n)
{
	struct upstream *u = arg;
	(void)to, (void)from;
	return !u->c || h3_conn_read(u->c, &u->local, &u->addr, p, n);
}

static void up_on_readable(struct upstream *u)
{
	ssize_t r = h3_udp_read(&u->rx, u->fd, &u->local, IN_UP_RECV_BATCH, up_datagram, u);
	/* ICMP unreachable on the connected socket: nobody listens any more */
	if (r < 0 && r != -EAGAIN && u->c)
		up_lost(u, strerror((int)-r));
}

/* ---- metrics ---- */

static void render(struct mbuf *b, void *arg)
{
	const struct h3_endpoint *ep = arg;
	char id[METRICS_LABEL_MAX], rt[METRICS_LABEL_MAX];
	metrics_label(id, sizeof(id), in.o->id);
	mbuf_printf(b, "# HELP peak_h3_ingress_streams_total Request streams by route and the "
	               "status answered (reset: closed without an answer; route none: no "
	               "content-type or no rule).\n# TYPE peak_h3_ingress_streams_total counter\n");
	for (size_t r = 0; r <= in.t->n; r++) {
		size_t row = r < in.t->n ? r : H3_ROUTE_MAX;
		metrics_label(rt, sizeof(rt), r < in.t->n ? in.t->r[r].name : "none");
		for (size_t i = 0; i < IN_NSTATUS; i++) {
			char st[16];
			if (in_status[i] > 0)
				snprintf(st, sizeof(st), "%d", in_status[i]);
			else
				snprintf(st, sizeof(st), "%s", in_status[i] ? "other" : "reset");
			mbuf_printf(b,
			            "peak_h3_ingress_streams_total{ingress=\"%s\",route=\"%s\","
			            "status=\"%s\"} %llu\n",
			            id, rt, st,
			            (unsigned long long)h3_stat_get(in.streams[row][i]));
		}
	}
	mbuf_printf(b, "# HELP peak_h3_ingress_bytes_total Body bytes forwarded by route and "
	               "direction.\n# TYPE peak_h3_ingress_bytes_total counter\n");
	for (size_t r = 0; r < in.t->n; r++) {
		metrics_label(rt, sizeof(rt), in.t->r[r].name);
		mbuf_printf(b,
		            "peak_h3_ingress_bytes_total{ingress=\"%s\",route=\"%s\","
		            "direction=\"request\"} %llu\n"
		            "peak_h3_ingress_bytes_total{ingress=\"%s\",route=\"%s\","
		            "direction=\"response\"} %llu\n",
		            id, rt, (unsigned long long)h3_stat_get(in.req_bytes[r]), id, rt,
		            (unsigned long long)h3_stat_get(in.resp_bytes[r]));
	}
	if (in.o->sniff) {
		mbuf_printf(b, "# HELP peak_h3_ingress_sniffed_total Request streams routed by the "
		               "magic numbers of their body (--sniff), by the route chosen (none: "
		               "no known signature or no rule).\n"
		               "# TYPE peak_h3_ingress_sniffed_total counter\n");
		for (size_t r = 0; r <= in.t->n; r++) {
			size_t row = r < in.t->n ? r : H3_ROUTE_MAX;
			metrics_label(rt, sizeof(rt), r < in.t->n ? in.t->r[r].name : "none");
			mbuf_printf(b,
			            "peak_h3_ingress_sniffed_total{ingress=\"%s\",route=\"%s\"} "
			            "%llu\n",
			            id, rt, (unsigned long long)h3_stat_get(in.sniffed[row]));
		}
	}
	const struct {
		const char *name, *type, *help;
		size_t off;
	} ups[] = {
	    {"up", "gauge", "1 if the upstream passes its health checks.",
	     offsetof(struct upstream, up_gauge)},
	    {"requests_total", "counter", "Request streams forwarded to the upstream.",
	     offsetof(struct upstream, requests)},
	    {"errors_total", "counter",
	     "Streams that failed on the upstream's side (502 or reset to the client).",
	     offsetof(struct upstream, errors)},
	    {"health_checks_failed_total", "counter",
	     "Health checks unanswered, not 200, or on a lost connection.",
	     offsetof(struct upstream, checks_failed)},
	    {"tls_handshakes_total", "counter",
	     "TLS handshakes with an HTTP/2 upstream (one per connection).",
	     offsetof(struct upstream, handshakes)},
	    {"tls_resumed_total", "counter",
	     "Of those, the handshakes that resumed the last connection's session (a ticket).",
	     offsetof(struct upstream, resumed)},
	    {"udp_receive_calls_total", "counter",
	     "HTTP/3: receive system calls (recvmmsg) on the upstream's socket that returned "
	     "data.",
	     offsetof(struct upstream, rx.st.calls)},
	    {"udp_messages_received_total", "counter",
	     "HTTP/3: messages those calls returned (several per call when more than a GRO "
	     "message is queued).",
	     offsetof(struct upstream, rx.st.msgs)},
	    {"udp_datagrams_received_total", "counter",
	     "HTTP/3: datagrams in those messages (UDP GRO: several per message).",
	     offsetof(struct upstream, rx.st.dgrams)},
	    {"path_renewals_total", "counter",
	     "Times the HTTP/3 upstream connection moved to a new local port because its RTT "
	     "had grown far above the least it saw (a fresh RTT estimate and congestion window).",
	     offsetof(struct upstream, renewals)},
	};
	for (size_t k = 0; k < sizeof(ups) / sizeof(ups[0]); k++) {
		mbuf_printf(b, "# HELP peak_h3_upstream_%s %s\n# TYPE peak_h3_upstream_%s %s\n",
		            ups[k].name, ups[k].help, ups[k].name, ups[k].type);
		for (size_t i = 0; i < in.t->nup; i++) {
			const char *base = (const char *)&in.up[i];
			unsigned long long v;
			if (ups[k].off == offsetof(struct upstream, up_gauge)) {
				int g = __atomic_load_n((const int *)(base + ups[k].off),
				                        __ATOMIC_RELAXED);
				v = g > 0 ? 1 : 0;
			} else {
				v = __atomic_load_n((const uint64_t *)(base + ups[k].off),
				                    __ATOMIC_RELAXED);
			}
			mbuf_printf(b, "peak_h3_upstream_%s{ingress=\"%s\",upstream=\"%s\"} %llu\n",
			            ups[k].name, id, in.t->up_name[i], v);
		}
	}
	h3_endpoint_render(b, ep, "ingress", in.o->id);
}

/* ---- the loop ---- */

int h3_ingress_run(const struct h3_ingress_opts *o)
{
	struct h3_endpoint ep;
	struct h3_limits lim = {
	    .max_streams_bidi = o->max_streams,
	    .max_stream_data = IN_WINDOW,
	    .max_data = IN_CONN_WINDOW,
	    .max_ack_delay = IN_MAX_ACK_DELAY_NS,
	};
	struct h3_retry_policy retry = {.always = o->retry, .above = o->max_conns / 2};
	struct metrics_srv *ms = NULL;
	uint8_t secret[H3_SECRET_LEN];
	char a[80];
	int sfd = signals_fd(1), ret;
	bool ep_up = false;
	if (sfd < 0)
		return sfd;
	memset(&in, 0, sizeof(in));
	in.o = o;
	h3_ctype_set_parse(&in.octet, "application/octet-stream");
	in.t = o->routes;
	for (size_t i = 0; i < in.t->nup; i++) {
		struct upstream *u = &in.up[i];
		u->idx = i;
		u->name = in.t->up_name[i];
		u->addr = in.t->up[i];
		u->h2 = in.t->up_h2[i];
		u->fd = -1;
		u->up_gauge = -1; /* the first verdict is logged either way */
		if (!u->h2 && (ret = h3_udp_reader_init(&u->rx, IN_UP_MMSG)))
			goto out;
		const struct sockaddr *sa = (const struct sockaddr *)&u->addr.ss;
		if (sa->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, u->host,
			          sizeof(u->host));
		else
			inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, u->host,
			          sizeof(u->host));
	}
	h3_qlog_set_dir(o->qlog_dir);
	if ((ret = h3_tls_client_cred(&in.cred, o->upstream_insecure ? NULL : o->upstream_ca)))
		goto out;
	if (o->secret)
		h3_secret_derive(secret, o->secret);
	if ((ret = h3_endpoint_init(&ep, &o->listen, o->cert, o->key, &lim, o->max_conns,
	                            o->secret ? secret : NULL, &retry, &server_ops, NULL)))
		goto out;
	ep_up = true;
	if (o->metrics && !(ms = metrics_start(o->metrics, render, &ep))) {
		ret = -EINVAL;
		goto out;
	}
	h3_addr_format(&ep.bound, a, sizeof(a));
	log_msg(LOG_INFO, "h3 ingress %s: listening on %s (udp), %zu routes, %zu upstreams", o->id,
	        a, in.t->n, in.t->nup);
	notify_ready("ingress %s listening on %s (udp), %zu routes", o->id, a, in.t->n);
	uint64_t next_check = 0, interval = (uint64_t)o->health_interval_ms * 1000000;
	unsigned rounds = 0; /* loop rounds since the last poll() */
	for (;;) {
		uint64_t now = h3_now();
		if (now >= next_check) {
			for (size_t i = 0; i < in.t->nup; i++)
				up_check(&in.up[i]);
			next_check = now + interval;
		}
		for (size_t i = 0; i < in.t->nup; i++) {
			struct upstream *u = &in.up[i];
			if (up_ready(u))
				up_submit_waiting(u);
			up_check_send(u);
		}
		/* what one side's events gave the other to send */
		for (struct h3_conn *c = ep.conns; c; c = c->next)
			h3_conn_write(c);
		bool again = false;
		for (size_t i = 0; i < in.t->nup; i++) {
			struct upstream *u = &in.up[i];
			if (u->c)
				h3_conn_write(u->c);
			if (!u->h2c)
				continue;
			uint64_t seen = u->h2c->records_in;
			if (h2_conn_io(u->h2c))
				up_lost(u, u->h2c->why[0] ? u->h2c->why : "connection closed");
			else if (u->h2c->records_in != seen)
				again = true;
		}
		/* That read may have brought what the loop acts on above: the upstream's
		 * SETTINGS (its waiting requests and health check may go now, and the upstream
		 * sends nothing more until they come), an answer for a client. GnuTLS returns
		 * after a TLS 1.3 session ticket, leaving a record behind it for this read, and
		 * poll() would not wake for it. Go round again first (a few times at most, so
		 * that a busy upstream does not keep the clients' socket unread). */
		if (again && rounds++ < IN_ROUNDS_BEFORE_POLL)
			continue;
		rounds = 0;
		struct pollfd p[2 + H3_ROUTE_UPS_ALL];
		size_t np = 0, upfd[H3_ROUTE_UPS_ALL];
		p[np++] = (struct pollfd){ep.fd, POLLIN, 0};
		p[np++] = (struct pollfd){sfd, POLLIN, 0};
		uint64_t deadline = next_check;
		for (size_t i = 0; i < in.t->nup; i++) {
			struct upstream *u = &in.up[i];
			if (u->h2c) {
				upfd[np] = i;
				p[np++] = (struct pollfd){u->h2c->fd, h2_conn_events(u->h2c), 0};
				continue;
			}
			if (!u->c)
				continue;
			upfd[np] = i;
			p[np++] = (struct pollfd){u->fd, POLLIN, 0};
			uint64_t d = h3_conn_deadline(u->c);
			if (d && d < deadline)
				deadline = d;
		}
		uint64_t d_ep = h3_endpoint_deadline(&ep);
		int n = h3_poll(p, np, d_ep < deadline ? d_ep : deadline);
		if (n == -1 && errno != EINTR) {
			ret = -errno;
			break;
		}
		if (n > 0 && (p[1].revents & POLLIN)) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si) &&
			    si.ssi_signo != SIGHUP) {
				log_msg(LOG_INFO, "h3 ingress %s: signal %u, stopping", o->id,
				        si.ssi_signo);
				notify_stopping();
				ret = 0;
				break;
			}
		}
		if (n > 0 && (p[0].revents & POLLIN))
			h3_endpoint_on_readable(&ep);
		for (size_t k = 2; n > 0 && k < np; k++) {
			struct upstream *u = &in.up[upfd[k]];
			if (u->h2c && p[k].revents && h2_conn_io(u->h2c))
				up_lost(u, u->h2c->why[0] ? u->h2c->why : "connection closed");
			else if (!u->h2 && (p[k].revents & (POLLIN | POLLERR)))
				up_on_readable(u);
		}
		now = h3_now();
		for (size_t i = 0; i < in.t->nup; i++) {
			struct upstream *u = &in.up[i];
			if (u->h2 || !u->c)
				continue;
			h3_conn_on_timer(u->c, now);
			if (u->c->dead || u->c->close_at)
				up_lost(u, "connection closed");
			else
				up_renew_path(u, now);
		}
		h3_endpoint_on_timer(&ep);
	}
	h3_endpoint_close_all(&ep);
	for (size_t i = 0; i < in.t->nup; i++) {
		if (in.up[i].c)
			h3_conn_close(in.up[i].c, NGHTTP3_H3_NO_ERROR);
		if (in.up[i].h2c) { /* a GOAWAY, as far as the socket takes it now */
			nghttp2_session_terminate_session(in.up[i].h2c->s, NGHTTP2_NO_ERROR);
			h2_conn_io(in.up[i].h2c);
		}
	}
	log_msg(LOG_INFO, "h3 ingress %s: %" PRIu64 " connections", o->id, ep.stats.accepted);
out:
	if (ms)
		metrics_stop(ms);
	/* client connections first: their streams let go of the upstreams' */
	if (ep_up)
		h3_endpoint_fini(&ep);
	for (size_t i = 0; i < in.t->nup; i++) {
		up_lost(&in.up[i], NULL);
		gnutls_free(in.up[i].ticket.data);
		h3_udp_reader_fini(&in.up[i].rx);
	}
	if (in.cred)
		gnutls_certificate_free_credentials(in.cred);
	close(sfd);
	return ret;
}
