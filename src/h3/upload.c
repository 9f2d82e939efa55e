/* The HTTP/3 upload client. */
#include "upload.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/sha2.h>

#include "../sys/log.h"
#include "conn.h"
#include "qlog.h"
#include "tls.h"
#include "uploadint.h"

/* Splits https://HOST[:PORT][/PATH]; HOST is a name, an IPv4 address or [IPv6]. */
static int url_parse(const char *url, char *host, size_t hcap, char *port, size_t pcap, char *path,
                     size_t pathcap)
{
	const char *p = url, *h, *he, *rest;
	if (strncmp(p, "https://", 8))
		return -EINVAL;
	p += 8;
	if (*p == '[') {
		h = p + 1;
		he = strchr(h, ']');
		if (!he)
			return -EINVAL;
		rest = he + 1;
	} else {
		h = p;
		he = h + strcspn(h, ":/");
		rest = he;
	}
	if (he == h || (size_t)(he - h) >= hcap)
		return -EINVAL;
	memcpy(host, h, (size_t)(he - h));
	host[he - h] = 0;
	if (*rest == ':') {
		size_t pl = strcspn(rest + 1, "/");
		if (!pl || pl >= pcap)
			return -EINVAL;
		memcpy(port, rest + 1, pl);
		port[pl] = 0;
		rest += 1 + pl;
	} else {
		snprintf(port, pcap, "443");
	}
	if (*rest && *rest != '/')
		return -EINVAL;
	if (strlen(*rest ? rest : "/") >= pathcap)
		return -EINVAL;
	snprintf(path, pathcap, "%s", *rest ? rest : "/");
	return 0;
}

/* Opens and maps f's file; the body is sent from the mapping: the page cache holds it, not
 * our heap. Its checksum is file_hash's. */
static int file_open(struct ufile *f)
{
	struct stat st;
	f->fd = open(f->path, O_RDONLY | O_CLOEXEC);
	if (f->fd == -1 || fstat(f->fd, &st) == -1)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	f->size = (size_t)st.st_size;
	if (f->size) {
		f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, f->fd, 0);
		if (f->map == MAP_FAILED) {
			f->map = NULL;
			return -errno;
		}
	}
	return 0;
}

/* Computes the SHA-256 of every mapped body (f->hex), the answers' reference. It runs on a
 * thread of its own (h3_upload_hash_start): hashing 16 MiB first (8 ms with SHA-NI, more on
 * a busy host) delayed the connection by as much, and after the first flight, during the
 * handshake, it still delayed the first bodies by what the handshake did not cover. */
static void files_hash(struct upload *u)
{
	for (size_t i = 0; i < u->n && !u->get; i++) {
		struct ufile *f = &u->f[i];
		struct sha256_ctx sha;
		uint8_t d[SHA256_DIGEST_SIZE];
		sha256_init(&sha);
		sha256_update(&sha, f->size, f->map ? f->map : (const uint8_t *)"");
		sha256_digest(&sha, sizeof(d), d);
		for (size_t k = 0; k < sizeof(d); k++)
			snprintf(f->hex + 2 * k, 3, "%02x", d[k]);
	}
}

static void *hash_main(void *arg)
{
	files_hash(arg);
	return NULL;
}

void h3_upload_hash_start(struct upload *u)
{
	if (u->hashing || u->get)
		return;
	if (pthread_create(&u->hasher, NULL, hash_main, u)) {
		files_hash(u);
		return;
	}
	u->hashing = true;
}

void h3_upload_hash_wait(struct upload *u)
{
	if (!u->hashing)
		return;
	pthread_join(u->hasher, NULL);
	u->hashing = false;
}

static nghttp3_ssize read_file(nghttp3_conn *h, int64_t sid, nghttp3_vec *vec, size_t veccnt,
                               uint32_t *pflags, void *cu, void *su)
{
	struct ufile *f = su;
	struct h3_conn *c = cu;
	struct upload *u = c->app;
	(void)h;
	(void)sid;
	if (f->sent == f->size) {
		*pflags |= NGHTTP3_DATA_FLAG_EOF;
		return 0;
	}
	/* in 0-RTT, bodies may fill at most UP_EARLY_BYTES: a flight that fills the initial
	 * congestion window leaves no room for our TLS Finished, and the handshake then
	 * stalled for a quarter of a second on loopback */
	bool early = c->early == H3_EARLY_SENT && !c->t_handshake;
	if (f->turn_used || !veccnt || (early && u->early_sent >= UP_EARLY_BYTES)) {
		f->paused = true;
		return NGHTTP3_ERR_WOULDBLOCK;
	}
	size_t k = f->size - f->sent < UP_TURN_BYTES ? f->size - f->sent : UP_TURN_BYTES;
	if (early && k > UP_EARLY_BYTES - u->early_sent)
		k = UP_EARLY_BYTES - u->early_sent;
	if (early)
		u->early_sent += k;
	vec[0].base = f->map + f->sent;
	vec[0].len = k;
	f->sent += k;
	f->turn_used = true;
	if (f->sent == f->size)
		*pflags |= NGHTTP3_DATA_FLAG_EOF;
	return 1;
}

/* nghttp3 0.8 sends a client's request bodies one after the other (its scheduler treats
 * them as non-incremental and a client cannot change that). Bodies are therefore handed
 * over UP_TURN_BYTES per turn: a stream that used its turn pauses, and when no stream has
 * data left to write every paused one is resumed, so the bodies interleave round robin and
 * a small upload is not stuck behind a large one. */
static bool streams_idle(struct h3_conn *c)
{
	struct upload *u = c->app;
	bool any = false;
	for (size_t i = 0; i < u->next; i++) {
		struct ufile *f = &u->f[i];
		f->turn_used = false;
		if (f->paused && !f->closed) {
			f->paused = false;
			if (nghttp3_conn_resume_stream(c->h, f->sid) == 0)
				any = true;
		}
	}
	return any;
}

/* Opens request streams while the server's limit allows (RFC 9000 §4.6). */
static void submit_more(struct h3_conn *c)
{
	struct upload *u = c->app;
	while (u->next < u->n && ngtcp2_conn_get_streams_bidi_left(c->q) > 0) {
		struct ufile *f = &u->f[u->next];
		char len[24];
		int64_t sid;
		snprintf(len, sizeof(len), "%zu", f->size);
		nghttp3_nv nva[7] = {
		    {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, NGHTTP3_NV_FLAG_NONE},
		    {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, NGHTTP3_NV_FLAG_NONE},
		    {(uint8_t *)":authority", (uint8_t *)u->authority, 10, strlen(u->authority),
		     NGHTTP3_NV_FLAG_NONE},
		    {(uint8_t *)":path", (uint8_t *)u->path, 5, strlen(u->path),
		     NGHTTP3_NV_FLAG_NONE},
		    {(uint8_t *)"user-agent", (uint8_t *)"peak-h3/" PEAK_VERSION, 10,
		     strlen("peak-h3/" PEAK_VERSION), NGHTTP3_NV_FLAG_NONE},
		    {(uint8_t *)"content-length", (uint8_t *)len, 14, strlen(len),
		     NGHTTP3_NV_FLAG_NONE},
		};
		size_t nv = 6;
		if (f->type)
			nva[nv++] = (nghttp3_nv){(uint8_t *)"content-type", (uint8_t *)f->type, 12,
			                         strlen(f->type), NGHTTP3_NV_FLAG_NONE};
		nghttp3_data_reader dr = {read_file};
		if (u->get) {
			nva[0].value = (uint8_t *)"GET";
			nva[0].valuelen = 3;
			nv = 5; /* no content-length; a content-type when given (--type) */
			if (f->type)
				nva[nv++] = nva[6];
		}
		if (ngtcp2_conn_open_bidi_stream(c->q, &sid, f))
			break;
		f->sid = sid;
		f->started = true;
		f->t0 = h3_now();
		u->next++;
		if (c->qlog) {
			char p[2 * UP_PATH_MAX], t[512];
			h3_qlog_event(c, "http:request_headers",
			              "\"stream_id\":%" PRId64 ",\"method\":\"%s\",\"path\":\"%s\","
			              "\"content_type\":%s%s%s,\"content_length\":%zu",
			              sid, u->get ? "GET" : "POST",
			              h3_qlog_str(p, sizeof(p), u->path, strlen(u->path)),
			              f->type ? "\"" : "",
			              f->type ? h3_qlog_str(t, sizeof(t), f->type, strlen(f->type))
			                      : "null",
			              f->type ? "\"" : "", f->size);
		}
		if (nghttp3_conn_submit_request(c->h, sid, nva, nv, u->get ? NULL : &dr, f)) {
			ngtcp2_conn_shutdown_stream(c->q, sid, NGHTTP3_H3_INTERNAL_ERROR);
			continue;
		}
	}
}

void h3_upload_field(struct ufile *f, const uint8_t *n, size_t nl, const uint8_t *v, size_t vl)
{
	if (h3_field_is_raw(n, nl, ":status") && vl == 3) {
		int st = 0;
		for (size_t i = 0; i < 3; i++)
			st = st * 10 + (v[i] >= '0' && v[i] <= '9' ? v[i] - '0' : 0);
		/* interim answers (1xx) are followed by the final one */
		if (st >= 200)
			f->status = st;
	} else if (h3_field_is_raw(n, nl, "x-peak-backend")) {
		h3_field_copy_raw(f->backend, sizeof(f->backend), v, vl, NULL);
		/* one word in the stream line: key=value pairs are split at spaces */
		for (char *p = f->backend; *p; p++)
			if (*p == ' ')
				*p = '?';
	}
}

void h3_upload_body(struct ufile *f, const uint8_t *d, size_t n)
{
	size_t room = UP_RESP_MAX - f->resp_len, k = n < room ? n : room;
	f->down += n;
	memcpy(f->resp + f->resp_len, d, k);
	f->resp_len += k;
	f->resp[f->resp_len] = 0;
}

static int recv_header(nghttp3_conn *h, int64_t sid, int32_t token, nghttp3_rcbuf *name,
                       nghttp3_rcbuf *value, uint8_t flags, void *cu, void *su)
{
	(void)h;
	(void)sid;
	(void)token;
	(void)flags;
	(void)cu;
	if (su) {
		nghttp3_vec n = nghttp3_rcbuf_get_buf(name), v = nghttp3_rcbuf_get_buf(value);
		h3_upload_field(su, n.base, n.len, v.base, v.len);
	}
	return 0;
}

static int recv_data(nghttp3_conn *h, int64_t sid, const uint8_t *data, size_t n, void *cu,
                     void *su)
{
	(void)h;
	if (su)
		h3_upload_body(su, data, n);
	h3_conn_consume(cu, sid, n);
	return 0;
}

static int end_stream(nghttp3_conn *h, int64_t sid, void *cu, void *su)
{
	struct ufile *f = su;
	(void)h;
	if (f) {
		f->ended = true;
		f->t1 = h3_now();
		h3_qlog_event(cu, "http:response",
		              "\"stream_id\":%" PRId64 ",\"status\":%d,"
		              "\"body_bytes\":%zu",
		              sid, f->status, f->resp_len);
	}
	return 0;
}

/* Keeps the count of f's lost packets (ngtcp2 forgets it with the stream). */
static void stream_lost(struct h3_conn *c, struct ufile *f)
{
	if (!f->started || f->sid < 0)
		return;
	uint64_t n = ngtcp2_conn_get_stream_loss_count(c->q, f->sid);
	if (n > f->lost)
		f->lost = n;
}

static int stream_close(nghttp3_conn *h, int64_t sid, uint64_t code, void *cu, void *su)
{
	struct h3_conn *c = cu;
	struct upload *u = c->app;
	struct ufile *f = su;
	(void)h;
	(void)sid;
	if (f)
		stream_lost(c, f);
	if (f && !f->closed) {
		f->closed = true;
		f->close_code = code;
		if (!f->t1)
			f->t1 = h3_now();
		u->nclosed++;
	}
	return 0;
}

static int http_new(struct h3_conn *c)
{
	static const nghttp3_callbacks cbs = {
	    .stream_close = stream_close,
	    .recv_data = recv_data,
	    .deferred_consume = h3_cb_deferred_consume,
	    .recv_header = recv_header,
	    .stop_sending = h3_cb_stop_sending,
	    .end_stream = end_stream,
	    .reset_stream = h3_cb_reset_stream,
	};
	nghttp3_settings st;
	h3_http_settings(&st);
	if (nghttp3_conn_client_new(&c->h, &cbs, &st, NULL, c))
		return -ENOMEM;
	return 0;
}

static void streams_more(struct h3_conn *c)
{
	submit_more(c);
}

/* The server refused our 0-RTT requests: they never happened; send them all again on the
 * new HTTP/3 connection after the handshake. */
static void early_rejected(struct h3_conn *c)
{
	struct upload *u = c->app;
	for (size_t i = 0; i < u->n; i++) {
		struct ufile *f = &u->f[i];
		f->sid = -1;
		f->status = 0;
		f->sent = f->resp_len = 0;
		f->turn_used = f->paused = f->started = f->ended = f->closed = false;
		f->close_code = f->t0 = f->t1 = 0;
		f->backend[0] = f->resp[0] = 0;
	}
	u->next = u->nclosed = 0;
	u->early_sent = 0;
	u->resubmit = true;
}

static const struct h3_conn_ops upload_ops = {
    .http_new = http_new,
    .streams_more = streams_more,
    .streams_idle = streams_idle,
    .early_rejected = early_rejected,
};

/* Copies the JSON string value of "key" from the answer (untrusted: bounded, no escapes
 * expected in our backends' answers). Returns false if absent. */
static bool json_str(const char *resp, const char *key, char *out, size_t cap)
{
	char pat[32];
	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	const char *p = strstr(resp, pat);
	if (!p)
		return false;
	p += strlen(pat);
	size_t k = 0;
	while (*p && *p != '"' && k + 1 < cap)
		out[k++] = *p++;
	out[k] = 0;
	return *p == '"';
}

static bool json_u64(const char *resp, const char *key, uint64_t *v)
{
	char pat[32];
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *p = strstr(resp, pat);
	if (!p)
		return false;
	p += strlen(pat);
	*v = 0;
	int digits = 0;
	for (; *p >= '0' && *p <= '9' && digits < 19; p++, digits++)
		*v = *v * 10 + (uint64_t)(*p - '0');
	return digits > 0;
}

/* Moves the connection to a new UDP socket (a new local port: what a NAT rebinding or a
 * network change looks like to the server, RFC 9000 §9). The server must follow by
 * connection ID. Returns 0, -EAGAIN while ngtcp2 cannot migrate yet (handshake not
 * confirmed, no spare connection ID) or -errno. */
static int migrate(struct h3_conn *c, const struct h3_addr *remote)
{
	struct h3_addr local;
	int fd = h3_udp_connect(remote, &local);
	if (fd < 0)
		return fd;
	h3_udp_gro(fd);
	ngtcp2_path path = {
	    {(ngtcp2_sockaddr *)&local.ss, local.len},
	    {(ngtcp2_sockaddr *)&remote->ss, remote->len},
	    NULL,
	};
	int r = ngtcp2_conn_initiate_immediate_migration(c->q, &path, h3_now());
	if (r) {
		close(fd);
		return r == NGTCP2_ERR_INVALID_STATE || r == NGTCP2_ERR_CONN_ID_BLOCKED ? -EAGAIN
		                                                                        : -EIO;
	}
	char a[80], b[80];
	h3_addr_format(&c->local, a, sizeof(a));
	h3_addr_format(&local, b, sizeof(b));
	fprintf(stderr, "peak h3 upload: migrated from %s to %s\n", a, b);
	close(c->fd);
	c->fd = fd;
	c->local = local;
	return 0;
}

static const char *base(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

size_t h3_upload_report(struct upload *u)
{
	size_t bad = 0;
	h3_upload_hash_wait(u);
	for (size_t i = 0; i < u->n; i++) {
		struct ufile *f = &u->f[i];
		char sum[80] = "", backend[80] = "-", status[16];
		uint64_t bytes = 0;
		const char *check = "-";
		bool ok = false;
		if (f->ended && f->status) {
			snprintf(status, sizeof(status), "%d", f->status);
			if (!json_str(f->resp, "backend", backend, sizeof(backend)) &&
			    f->backend[0])
				snprintf(backend, sizeof(backend), "%s", f->backend);
			if (u->get) {
				ok = f->status >= 200 && f->status < 300;
				check = "-";
			} else if (f->status == 201) {
				bool have = json_str(f->resp, "checksum", sum, sizeof(sum)) &&
				            json_u64(f->resp, "bytes", &bytes);
				ok = have && !strcmp(sum, f->hex) && bytes == f->size;
				check = ok ? "ok" : "MISMATCH";
				f->mismatch = !ok;
			}
		} else if (f->closed) {
			snprintf(status, sizeof(status), "reset:%" PRIu64, f->close_code);
		} else {
			snprintf(status, sizeof(status), f->started ? "unfinished" : "unsent");
		}
		double ms = f->t1 && f->t0 ? (double)(f->t1 - f->t0) / 1e6 : 0.0;
		if (u->get) {
			size_t k = strcspn(f->resp, "\r\n");
			printf("stream=%" PRId64 " status=%s backend=%s time_ms=%.1f body=%.*s\n",
			       f->started ? f->sid : -1, status, backend, ms,
			       (int)(k > 200 ? 200 : k), f->resp);
		} else {
			printf("stream=%" PRId64
			       " file=%s type=%s status=%s backend=%s checksum=%s "
			       "bytes=%zu sha256=%s time_ms=%.1f\n",
			       f->started ? f->sid : -1, base(f->path), f->type ? f->type : "-",
			       status, backend, check, f->size, f->hex, ms);
		}
		if (!ok)
			bad++;
	}
	return bad;
}

/* A non-blocking UDP socket bound to src (any port) and connected to peer (IPv6): the source
 * an SSA rule computed the destination for. Returns the descriptor or -errno. */
static int udp_connect_from(const struct h3_addr *peer, const struct in6_addr *src,
                            struct h3_addr *local)
{
	struct sockaddr_in6 me = {.sin6_family = AF_INET6, .sin6_addr = *src};
	int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), err, one = 1;
	if (fd == -1)
		return -errno;
	/* a source from an AnyIP range (one /64 per emulated client) is local without being
	 * an interface address: as peak connect does */
	setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one));
	h3_udp_buffers(fd);
	local->len = sizeof(local->ss);
	if (peer->ss.ss_family != AF_INET6 ||
	    bind(fd, (const struct sockaddr *)&me, sizeof(me)) == -1 ||
	    connect(fd, (const struct sockaddr *)&peer->ss, peer->len) == -1 ||
	    getsockname(fd, (struct sockaddr *)&local->ss, &local->len) == -1) {
		err = peer->ss.ss_family != AF_INET6 ? -EAFNOSUPPORT : -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* The connection the client's reader feeds, and its path. */
struct up_rx {
	struct h3_conn *c;
	const struct h3_addr *local, *remote;
};

static int up_datagram(void *arg, const struct h3_addr *to, const struct h3_addr *from,
                       const uint8_t *p, size_t n)
{
	const struct up_rx *a = arg;
	(void)to, (void)from;
	return h3_conn_read(a->c, a->local, a->remote, p, n);
}

int h3_upload_run(const struct h3_upload_opts *o)
{
	struct h3_udp_reader rx = {0};
	static struct upload u;
	char host[UP_HOST_MAX], port[8];
	struct addrinfo hints = {.ai_socktype = o->h2 ? SOCK_STREAM : SOCK_DGRAM}, *ai = NULL;
	struct h3_addr remote, local;
	gnutls_certificate_credentials_t cred = NULL;
	struct h3_conn *c = NULL;
	int fd = -1, ret = -EINVAL;
	memset(&u, 0, sizeof(u));
	h3_qlog_set_dir(o->qlog_dir);
	h3_tls_client_set_session_file(o->session_file);
	h3_conn_client_early_data(o->early_data);
	for (size_t i = 0; i < o->nfiles; i++)
		u.f[i].fd = -1;
	if (url_parse(o->url, host, sizeof(host), port, sizeof(port), u.path, sizeof(u.path))) {
		fprintf(stderr, "peak h3 upload: '%s' is not https://HOST[:PORT][/PATH]\n", o->url);
		goto out;
	}
	snprintf(u.authority, sizeof(u.authority), strchr(host, ':') ? "[%s]:%s" : "%s:%s", host,
	         port);
	u.n = o->nfiles;
	u.get = o->get;
	if (u.get) {
		u.n = 1;
		u.f[0].path = "-";
		u.f[0].type = o->get_type;
	}
	for (size_t i = 0; i < u.n && !u.get; i++) {
		u.f[i].path = o->files[i].path;
		u.f[i].type = o->files[i].type;
		if ((ret = file_open(&u.f[i]))) {
			fprintf(stderr, "peak h3 upload: %s: %s\n", u.f[i].path, strerror(-ret));
			goto out;
		}
	}
	h3_upload_hash_start(&u);
	int gr = getaddrinfo(host, port, &hints, &ai);
	if (gr || !ai) {
		fprintf(stderr, "peak h3 upload: %s: %s\n", host, gai_strerror(gr));
		ret = -EHOSTUNREACH;
		goto out;
	}
	memcpy(&remote.ss, ai->ai_addr, ai->ai_addrlen);
	remote.len = ai->ai_addrlen;
	if ((ret = h3_tls_client_cred(&cred, o->insecure ? NULL : o->ca)))
		goto out;
	if (o->h2) {
		ret = h2_upload_run(o, &u, &remote, cred, o->server_name ? o->server_name : host);
		goto out;
	}
	if ((fd = o->source ? udp_connect_from(&remote, o->source, &local)
	                    : h3_udp_connect(&remote, &local)) < 0) {
		ret = fd;
		fprintf(stderr, "peak h3 upload: %s: %s\n", o->url, strerror(-ret));
		goto out;
	}
	h3_udp_gro(fd);
	if ((ret = h3_udp_reader_init(&rx, UP_RECV_MMSG)))
		goto out;
	if ((ret = h3_conn_client_new(&c, fd, &local, &remote, cred,
	                              o->server_name ? o->server_name : host, !o->insecure,
	                              &upload_ops, &u)))
		goto out;
	/* qlog times count from the connection's start; its CLOCK_MONOTONIC reading lets
	 * bench/h3 line them up with the lossy relay's drops (per-stream stalls) */
	h3_qlog_event(c, "peak:clock", "\"start_monotonic_ns\":%" PRIu64, c->t_start);
	uint64_t t0 = h3_now(), end;
	bool submitted = false, migrated = false;
	struct up_conninfo ci = {.proto = "h3"};
	if (c->h) { /* resuming: the requests go out as 0-RTT */
		submitted = true;
		submit_more(c);
	}
	h3_conn_write(c);
	/* --timeout counts from here, as it did when the hashing came first */
	end = h3_now() + (uint64_t)o->timeout_ms * 1000000;
	while (u.nclosed < u.n && !c->dead && !c->close_at) {
		uint64_t now = h3_now(), d = h3_conn_deadline(c);
		if (now >= end)
			break;
		if (d > end)
			d = end;
		struct pollfd p = {fd, POLLIN, 0};
		if (h3_poll(&p, 1, d) == -1 && errno != EINTR)
			break;
		if (p.revents & POLLIN) {
			/* up to UP_RECV_BATCH datagrams, then the timers and our
			 * acknowledgements get a turn; with UDP GRO one message holds
			 * several back to back, split by the reader the servers use */
			struct up_rx a = {c, &local, &remote};
			h3_udp_read(&rx, fd, &local, UP_RECV_BATCH, up_datagram, &a);
			for (size_t i = 0; i < u.next; i++)
				if (!u.f[i].closed)
					stream_lost(c, &u.f[i]);
		}
		h3_conn_on_timer(c, h3_now());
		if (c->h && (!submitted || u.resubmit)) {
			submitted = true;
			u.resubmit = false;
			submit_more(c);
		}
		if (o->migrate_after && !migrated) {
			size_t sent = 0;
			for (size_t i = 0; i < u.next; i++)
				sent += u.f[i].sent;
			int r = sent >= o->migrate_after ? migrate(c, &remote) : -EAGAIN;
			if (r != -EAGAIN) {
				migrated = true;
				if (r)
					fprintf(stderr, "peak h3 upload: migration: %s\n",
					        strerror(-r));
			}
			fd = c->fd;
			local = c->local;
		}
		h3_conn_write(c);
	}
	bool conn_failed = c->dead || c->close_at;
	if (conn_failed || u.nclosed < u.n) {
		/* the peer's reason if it sent one, else ours (a TLS alert 0x1XX: 0x12a is
		 * bad_certificate, RFC 9001 §4.8) */
		ngtcp2_connection_close_error ce;
		ngtcp2_conn_get_connection_close_error(c->q, &ce);
		if (!ce.error_code && c->err.error_code)
			ce = c->err;
		fprintf(stderr, "peak h3 upload: %s: %s%s (error 0x%" PRIx64 " %.*s)\n", o->url,
		        !c->t_handshake ? "handshake failed" : "connection ended early",
		        u.nclosed < u.n && !conn_failed ? ": timed out" : "", ce.error_code,
		        ce.reason ? (int)(ce.reasonlen > 200 ? 200 : ce.reasonlen) : 0,
		        ce.reason ? (const char *)ce.reason : "");
	}
	size_t bad = h3_upload_report(&u);
	uint64_t total = 0;
	for (size_t i = 0; i < u.n; i++)
		total += u.f[i].size;
	double s = (double)(h3_now() - t0) / 1e9;
	printf("upload: %zu streams, %zu ok, %zu failed, %" PRIu64 " bytes in %.3f s, "
	       "handshake %.1f ms%s%s\n",
	       u.n, u.n - bad, bad, total, s,
	       c->t_handshake ? (double)(c->t_handshake - c->t_start) / 1e6 : 0.0,
	       c->t_handshake && gnutls_session_is_resumed(c->tls) ? " (resumed)" : "",
	       c->early == H3_EARLY_ACCEPTED   ? " (0-RTT accepted)"
	       : c->early == H3_EARLY_REJECTED ? " (0-RTT rejected)"
	                                       : "");
	if (o->metrics_file) {
		ngtcp2_conn_stat cs;
		ngtcp2_conn_get_conn_stat(c->q, &cs);
		ci.handshaked = c->t_handshake != 0;
		ci.hs_ns = ci.handshaked ? c->t_handshake - c->t_start : 0;
		ci.resumed = ci.handshaked && gnutls_session_is_resumed(c->tls);
		ci.early = (int)c->early;
		ci.retries = c->retries;
		ci.token = c->token_used;
		ci.pto = cs.pto_count;
		ci.rx_calls = rx.st.calls;
		ci.rx_msgs = rx.st.msgs;
		ci.rx_dgrams = rx.st.dgrams;
		ci.rx_bytes = rx.st.bytes;
		int mr = h3_upload_metrics_write(o->metrics_file, &u, &ci);
		if (mr)
			fprintf(stderr, "peak h3 upload: --metrics %s: %s\n", o->metrics_file,
			        strerror(-mr));
	}
	h3_conn_close(c, NGHTTP3_H3_NO_ERROR);
	ret = bad ? 1 : 0;
out:
	h3_udp_reader_fini(&rx);
	h3_upload_hash_wait(&u); /* before the bodies are unmapped */
	h3_conn_free(c);
	if (fd >= 0)
		close(fd);
	if (cred)
		gnutls_certificate_free_credentials(cred);
	if (ai)
		freeaddrinfo(ai);
	for (size_t i = 0; i < u.n; i++) {
		if (u.f[i].map)
			munmap(u.f[i].map, u.f[i].size);
		if (u.f[i].fd >= 0)
			close(u.f[i].fd);
	}
	return ret;
}
