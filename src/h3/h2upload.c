/* The upload client over HTTP/2 on TLS/TCP (peak h3 upload --proto h2): one connection, every
 * file its own request stream, all submitted at once; the session of --session-file offered
 * and the server's latest ticket stored there. nghttp2 keeps the streams past the
 * server's SETTINGS_MAX_CONCURRENT_STREAMS queued until others close (RFC 9113 §5.1.2), and
 * interleaves the bodies' DATA frames. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/sockios.h>
#include <linux/tcp.h>

#include "../sys/log.h"
#include "conn.h"
#include "h2conn.h"
#include "tls.h"
#include "uploadint.h"

enum {
	UP_H2_RETRIES = 3,    /* times a refused stream is sent again */
	UP_TLS13_RECORD = 22, /* bytes a TLS 1.3 record adds to its plaintext (AEAD tag 16,
	                       * header 5, content type 1) */
};

/* PEAK_H3_PROGRESS=FILE (opt-in, for bench/h3's per-stream stall measure): where each DATA
 * frame lies in the TCP byte stream, and the socket's written, sent and acknowledged byte
 * counters every millisecond, so that the benchmark can tell when each stream's bytes were
 * sent and when TCP acknowledged them in order (HTTP/2's head-of-line blocking). Lines:
 * 'D T_NS STREAM END LEN' (the frame's last byte's offset in the socket's stream, estimated
 * from what is written and what waits in our buffer, and its length) and
 * 'T T_NS WRITTEN SENT ACKED'; T_NS on h3_now's clock (CLOCK_MONOTONIC). */
static FILE *progress;
static uint64_t prog_last[3];

/* The socket's bytes written (acknowledged plus queued), sent at least once and acknowledged;
 * false if the kernel does not say. */
static bool tcp_counters(int fd, uint64_t v[3])
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int outq = 0;
	memset(&ti, 0, sizeof(ti));
	if (ioctl(fd, SIOCOUTQ, &outq) || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) ||
	    len < offsetof(struct tcp_info, tcpi_notsent_bytes) + sizeof(ti.tcpi_notsent_bytes))
		return false;
	v[0] = ti.tcpi_bytes_acked + (uint64_t)outq;
	v[1] = v[0] - ti.tcpi_notsent_bytes;
	v[2] = ti.tcpi_bytes_acked;
	return true;
}

/* Logs the counters when they changed since the last line. */
static void progress_sample(struct h2_conn *c)
{
	uint64_t v[3];
	if (!progress || !c->hs_done || !tcp_counters(c->fd, v) || !memcmp(v, prog_last, sizeof(v)))
		return;
	memcpy(prog_last, v, sizeof(v));
	fprintf(progress, "T %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", h3_now(), v[0],
	        v[1], v[2]);
}

/* A DATA frame left nghttp2: it ends after what the socket took and what waits in our
 * buffer, each record of that adding its overhead. */
static void progress_frame(struct h2_conn *c, const nghttp2_frame *fr)
{
	uint64_t v[3];
	if (!progress || !tcp_counters(c->fd, v))
		return;
	uint64_t wait = c->out_len - c->out_off;
	uint64_t end = v[0] + wait + (wait + H2_RECORD_LEN - 1) / H2_RECORD_LEN * UP_TLS13_RECORD;
	fprintf(progress, "D %" PRIu64 " %" PRId32 " %" PRIu64 " %zu\n", h3_now(), fr->hd.stream_id,
	        end, fr->hd.length + 9);
}

static ssize_t read_file(nghttp2_session *h, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
	struct ufile *f = src->ptr;
	(void)h;
	(void)sid;
	(void)ud;
	size_t k = f->size - f->sent < len ? f->size - f->sent : len;
	if (k)
		memcpy(buf, f->map + f->sent, k);
	f->sent += k;
	if (f->sent == f->size)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)k;
}

static struct ufile *file_of(nghttp2_session *h, int32_t sid)
{
	return nghttp2_session_get_stream_user_data(h, sid);
}

/* The request goes out now (it may have waited for the server's stream limit). */
static int frame_send(nghttp2_session *h, const nghttp2_frame *fr, void *ud)
{
	struct ufile *f = file_of(h, fr->hd.stream_id);
	if (f && fr->hd.type == NGHTTP2_HEADERS && !f->started) {
		f->started = true;
		f->t0 = h3_now();
	}
	if (f && fr->hd.type == NGHTTP2_DATA)
		progress_frame(ud, fr);
	return 0;
}

static int header(nghttp2_session *h, const nghttp2_frame *fr, const uint8_t *n, size_t nl,
                  const uint8_t *v, size_t vl, uint8_t flags, void *ud)
{
	(void)flags;
	(void)ud;
	struct ufile *f = file_of(h, fr->hd.stream_id);
	if (!f || fr->hd.type != NGHTTP2_HEADERS)
		return 0;
	h3_upload_field(f, n, nl, v, vl);
	return 0;
}

static int data(nghttp2_session *h, uint8_t flags, int32_t sid, const uint8_t *d, size_t n,
                void *ud)
{
	(void)flags;
	(void)ud;
	struct ufile *f = file_of(h, sid);
	if (f)
		h3_upload_body(f, d, n);
	nghttp2_session_consume(h, sid, n);
	return 0;
}

static int frame_recv(nghttp2_session *h, const nghttp2_frame *fr, void *ud)
{
	(void)ud;
	struct ufile *f = file_of(h, fr->hd.stream_id);
	if (f && (fr->hd.type == NGHTTP2_HEADERS || fr->hd.type == NGHTTP2_DATA) &&
	    (fr->hd.flags & NGHTTP2_FLAG_END_STREAM) && f->status) {
		f->ended = true;
		f->t1 = h3_now();
	}
	return 0;
}

static int stream_close(nghttp2_session *h, int32_t sid, uint32_t code, void *ud)
{
	struct h2_conn *c = ud;
	struct upload *u = c->app;
	struct ufile *f = file_of(h, sid);
	/* refused streams were not processed (RFC 9113 §8.7): send them again */
	if (f && !f->closed && code == NGHTTP2_REFUSED_STREAM && !f->status &&
	    f->retries < UP_H2_RETRIES) {
		f->refused = true;
		return 0;
	}
	if (f && !f->closed) {
		f->closed = true;
		f->close_code = code;
		if (!f->t1)
			f->t1 = h3_now();
		u->nclosed++;
	}
	return 0;
}

static void callbacks(nghttp2_session_callbacks *cbs)
{
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, data);
}

/* Submits f's request; nghttp2 holds it while the server's streams are all in use. */
static void submit(struct h2_conn *c, struct upload *u, struct ufile *f)
{
	char len[24];
	snprintf(len, sizeof(len), "%zu", f->size);
	nghttp2_nv nva[7] = {
	    {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":authority", (uint8_t *)u->authority, 10, strlen(u->authority),
	     NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":path", (uint8_t *)u->path, 5, strlen(u->path), NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"user-agent", (uint8_t *)"peak-h3/" PEAK_VERSION, 10,
	     strlen("peak-h3/" PEAK_VERSION), NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"content-length", (uint8_t *)len, 14, strlen(len), NGHTTP2_NV_FLAG_NONE},
	};
	size_t nv = 6;
	if (f->type)
		nva[nv++] = (nghttp2_nv){(uint8_t *)"content-type", (uint8_t *)f->type, 12,
		                         strlen(f->type), NGHTTP2_NV_FLAG_NONE};
	nghttp2_data_provider dp = {.source.ptr = f, .read_callback = read_file};
	if (u->get) {
		nva[0].value = (uint8_t *)"GET";
		nva[0].valuelen = 3;
		nv = 5; /* no content-length; a content-type when given (--type) */
		if (f->type)
			nva[nv++] = nva[6];
	}
	int32_t sid = nghttp2_submit_request(c->s, NULL, nva, nv, u->get ? NULL : &dp, f);
	if (sid < 0) {
		/* counted as closed: it never existed */
		f->closed = true;
		u->nclosed++;
		return;
	}
	f->sid = sid;
}

/* Sends the refused requests again, from their first byte. */
static void resubmit(struct h2_conn *c, struct upload *u)
{
	for (size_t i = 0; i < u->n; i++) {
		struct ufile *f = &u->f[i];
		if (!f->refused)
			continue;
		f->refused = f->started = false;
		f->retries++;
		f->sent = f->resp_len = 0;
		f->backend[0] = f->resp[0] = 0;
		submit(c, u, f);
	}
}

/* Whether a request the server refused waits to be sent again (resubmit). */
static bool any_refused(const struct upload *u)
{
	for (size_t i = 0; i < u->n; i++)
		if (u->f[i].refused)
			return true;
	return false;
}

int h2_upload_run(const struct h3_upload_opts *o, struct upload *u, const struct h3_addr *remote,
                  gnutls_certificate_credentials_t cred, const char *host)
{
	static const struct h2_conn_cfg cfg = {.callbacks = callbacks,
	                                       .frame_recv = frame_recv,
	                                       .frame_send = frame_send,
	                                       .header = header,
	                                       .stream_close = stream_close};
	static const struct h2_conn_cfg cfg_early = {.callbacks = callbacks,
	                                             .frame_recv = frame_recv,
	                                             .frame_send = frame_send,
	                                             .header = header,
	                                             .stream_close = stream_close,
	                                             .early_data = true};
	struct h2_conn *c = NULL;
	gnutls_datum_t ticket = {NULL, 0}, stored = {NULL, 0};
	/* a server that closes while we write (a failed handshake): an error, not death */
	signal(SIGPIPE, SIG_IGN);
	int fd = h2_tcp_connect(remote), r;
	uint64_t t0 = h3_now(), end = t0 + (uint64_t)o->timeout_ms * 1000000;
	if (fd < 0) {
		fprintf(stderr, "peak h3 upload: %s: %s\n", o->url, strerror(-fd));
		return 1;
	}
	if ((r = h2_conn_client_new(&c, fd, remote, cred, host, !o->insecure,
	                            o->early_data ? &cfg_early : &cfg, u))) {
		fprintf(stderr, "peak h3 upload: %s: %s\n", o->url, strerror(-r));
		return 1;
	}
	/* --session-file: the session stored there is offered, the server's latest kept */
	if (h3_tls_client_session_file()) {
		h3_tls_session_file_read(&ticket);
		stored = ticket;
		h2_conn_resume(c, &ticket);
	}
	const char *pf = getenv("PEAK_H3_PROGRESS");
	if (pf && *pf && !(progress = fopen(pf, "we")))
		fprintf(stderr, "peak h3 upload: %s: %s\n", pf, strerror(errno));
	bool submitted = false;
	/* --early-data on a resumed session: the requests go before the handshake, their first
	 * bytes as early data; the server's stream limit is not known yet, and streams past it
	 * come back refused and are sent again (stream_close) */
	if (c->resuming && o->early_data) {
		submitted = true;
		for (size_t i = 0; i < u->n; i++)
			submit(c, u, &u->f[i]);
	}
	r = h2_conn_io(c);
	while (!r && u->nclosed < u->n) {
		/* after the server's SETTINGS: streams past its limit would be refused */
		if (c->settings && !submitted) {
			submitted = true;
			for (size_t i = 0; i < u->n; i++)
				submit(c, u, &u->f[i]);
		}
		resubmit(c, u);
		if ((r = h2_conn_io(c)))
			break;
		/* That read may have brought the server's SETTINGS or refused a stream: the
		 * requests they let out go before any wait, as the server may send nothing more
		 * until it has them (a SETTINGS record behind a TLS 1.3 session ticket is read
		 * here, GnuTLS returning after the ticket) */
		if ((c->settings && !submitted) || any_refused(u))
			continue;
		uint64_t now = h3_now();
		if (now >= end)
			break;
		struct pollfd p = {c->fd, h2_conn_events(c), 0};
		int ms = (int)((end - now + 999999) / 1000000);
		if (progress && ms > 1)
			ms = 1; /* the acknowledgements wake nobody: look every millisecond */
		if (poll(&p, 1, ms) == -1 && errno != EINTR)
			break;
		r = h2_conn_io(c);
		progress_sample(c);
	}
	if (r || u->nclosed < u->n) {
		fprintf(stderr, "peak h3 upload: %s: %s%s%s%s\n", o->url,
		        !c->hs_done ? "handshake failed" : "connection ended early",
		        !r ? ": timed out" : "", c->why[0] ? ": " : "", c->why);
	}
	size_t bad = h3_upload_report(u);
	uint64_t total = 0;
	for (size_t i = 0; i < u->n; i++)
		total += u->f[i].size;
	double s = (double)(h3_now() - t0) / 1e9;
	printf("upload: %zu streams, %zu ok, %zu failed, %" PRIu64 " bytes in %.3f s, "
	       "handshake %.1f ms (h2)%s%s\n",
	       u->n, u->n - bad, bad, total, s,
	       c->hs_done ? (double)(c->t_handshake - c->t_start) / 1e6 : 0.0,
	       c->hs_done && c->resumed ? " (resumed)" : "",
	       c->early == H3_EARLY_ACCEPTED   ? " (0-RTT accepted)"
	       : c->early == H3_EARLY_REJECTED ? " (0-RTT rejected)"
	                                       : "");
	if (o->metrics_file) {
		struct up_conninfo ci = {
		    .proto = "h2",
		    .handshaked = c->hs_done,
		    .hs_ns = c->hs_done ? c->t_handshake - c->t_start : 0,
		    .resumed = c->hs_done && c->resumed,
		    .early = c->early,
		};
		int mr = h3_upload_metrics_write(o->metrics_file, u, &ci);
		if (mr)
			fprintf(stderr, "peak h3 upload: --metrics %s: %s\n", o->metrics_file,
			        strerror(-mr));
	}
	if (!c->dead) {
		nghttp2_session_terminate_session(c->s, NGHTTP2_NO_ERROR);
		h2_conn_io(c);
	}
	h2_conn_free(c);
	if (ticket.data != stored.data) /* a new ticket came */
		h3_tls_session_file_write(&ticket);
	gnutls_free(ticket.data);
	if (progress && fclose(progress))
		fprintf(stderr, "peak h3 upload: %s: %s\n", pf, strerror(errno));
	progress = NULL;
	return bad ? 1 : 0;
}
