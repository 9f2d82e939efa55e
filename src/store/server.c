/* The object store pod: one epoll loop, a state machine per connection; see store.h.
 * An object is a file "SLICE-SHA256(KEY)" holding "PKS1", u16 key length, the key, then the
 * body. A PUT streams into ".tmp-*", fsyncs it, renames it over the name and fsyncs the
 * directory, so after a crash an object is whole or absent; start-up removes stray temps. */
#define _GNU_SOURCE /* accept4 */
#include "store.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <nettle/sha2.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "peak/config.h"
#include "peak/http.h"
#include "peak/util.h"
#include "../sys/log.h"
#include "../sys/metrics.h"
#include "../sys/net.h"
#include "repair.h"
#include "../sys/notify.h"
#include "req.h"

enum {
	IN_CAP = STORE_HEAD_MAX + 8192,
	OUT_CAP = 1024,
	IO_CHUNK = 64 << 10,
	OBJ_HDR_MAX = 6 + STORE_KEY_MAX,
	SWEEP_MS = 200,
};

/* C_DRAIN: the reply to a refused request went out and writing is shut down; what the
 * client still sends is read and dropped for a moment, so closing does not reset the
 * connection before the client has read the reply (a lingering close). */
enum conn_state { C_HEAD, C_BODY, C_SEND, C_DRAIN };

enum { DRAIN_MS = 1000 };

struct conn {
	int fd;
	enum conn_state st;
	struct store_req req;
	uint64_t deadline_ms;
	bool close_after, dead;
	unsigned timeout_ms;
	const char *pod; /* this pod's id, in every reply's X-Peak-Pod */
	uint8_t peer[16];
	size_t inlen, outlen, outoff;
	int tmpfd; /* C_BODY: the temp file, else -1 */
	uint64_t body_left;
	char tmpname[32];
	char objname[80];
	int objfd; /* C_SEND: the object to send, else -1 */
	off_t objoff;
	uint64_t objleft;
	uint8_t in[IN_CAP];
	char out[OUT_CAP];
};

struct store {
	const struct store_opts *o;
	struct peak_config *cfg;
	const struct cfg_service *svc;
	struct ssa_space space; /* the service's, with no proof of work: only the slice counts */
	struct assign a;
	struct assign old; /* before the last --joined, if has_old */
	bool has_old;
	int *slot;
	int me;            /* this pod's assignment slot */
	unsigned replicas; /* the rule's replicas=R */
	int dirfd, ep;
	uint64_t tmp_seq;
	struct conn **conns;
	struct log_limit rl;
	struct store_repair repair;
};

static uint8_t iobuf[IO_CHUNK];

/* Counters for --metrics, read by the endpoint's thread: so atomic. */
static const unsigned stat_codes[] = {100, 200, 201, 204, 208, 400, 404, 405, 408,
                                      411, 413, 421, 431, 500, 501, 503, 505};
static const char *const stat_methods[] = {"other", "GET", "HEAD", "PUT", "DELETE", "LIST"};
enum {
	NCODES = sizeof(stat_codes) / sizeof(stat_codes[0]) + 1, /* the last: any other */
	NMETHODS = sizeof(stat_methods) / sizeof(stat_methods[0]),
};
struct store_stats {
	atomic_uint_fast64_t req[NMETHODS][NCODES];
	atomic_uint_fast64_t bytes_in, bytes_out; /* bodies received and sent */
	atomic_int_fast64_t objects;              /* on disk, less what repair pulled */
	const struct store_repair *repair;
};
static struct store_stats stats;

static void count(const struct conn *c, unsigned status)
{
	unsigned m = c->req.list ? 5 : c->req.method < 5 ? (unsigned)c->req.method : 0, k = 0;
	while (k < NCODES - 1 && stat_codes[k] != status)
		k++;
	atomic_fetch_add(&stats.req[m][k], 1);
}

static void stats_render(struct mbuf *b, void *arg)
{
	const struct store_stats *st = arg;
	const struct store_repair *r = st->repair;
	mbuf_printf(b, "# HELP peak_store_requests_total Requests answered, by method and "
	               "status (LIST: GET /s/).\n# TYPE peak_store_requests_total counter\n");
	for (unsigned m = 0; m < NMETHODS; m++)
		for (unsigned k = 0; k < NCODES; k++) {
			uint64_t v = atomic_load(&st->req[m][k]);
			if (!v)
				continue;
			mbuf_printf(b, "peak_store_requests_total{method=\"%s\",status=\"",
			            stat_methods[m]);
			if (k < NCODES - 1)
				mbuf_printf(b, "%u\"} %" PRIu64 "\n", stat_codes[k], v);
			else
				mbuf_printf(b, "other\"} %" PRIu64 "\n", v);
		}
	mbuf_printf(b,
	            "# HELP peak_store_bytes_in_total Body bytes received (PUT).\n"
	            "# TYPE peak_store_bytes_in_total counter\npeak_store_bytes_in_total %" PRIu64
	            "\n# HELP peak_store_bytes_out_total Body bytes sent (GET, listings).\n"
	            "# TYPE peak_store_bytes_out_total counter\npeak_store_bytes_out_total %" PRIu64
	            "\n# HELP peak_store_objects Objects in the data directory.\n"
	            "# TYPE peak_store_objects gauge\npeak_store_objects %" PRId64 "\n",
	            (uint64_t)atomic_load(&st->bytes_in), (uint64_t)atomic_load(&st->bytes_out),
	            (int64_t)atomic_load(&st->objects) +
	                (int64_t)(r ? atomic_load(&r->pulled) : 0));
	if (!r)
		return;
	mbuf_printf(
	    b,
	    "# HELP peak_store_repair_running 1 while the start-up repair runs.\n"
	    "# TYPE peak_store_repair_running gauge\npeak_store_repair_running %d\n"
	    "# HELP peak_store_repair_listed_total Objects seen in peers' listings.\n"
	    "# TYPE peak_store_repair_listed_total counter\n"
	    "peak_store_repair_listed_total %" PRIu64 "\n"
	    "# HELP peak_store_repair_pulled_total Objects fetched from peers.\n"
	    "# TYPE peak_store_repair_pulled_total counter\n"
	    "peak_store_repair_pulled_total %" PRIu64 "\n"
	    "# HELP peak_store_repair_failed_total Objects or listings that failed.\n"
	    "# TYPE peak_store_repair_failed_total counter\n"
	    "peak_store_repair_failed_total %" PRIu64 "\n"
	    "# HELP peak_store_repair_peers_done Peers whose listing was walked.\n"
	    "# TYPE peak_store_repair_peers_done gauge\npeak_store_repair_peers_done %" PRIu64 "\n"
	    "# HELP peak_store_repair_bytes_total Body bytes of the objects pulled.\n"
	    "# TYPE peak_store_repair_bytes_total counter\n"
	    "peak_store_repair_bytes_total %" PRIu64 "\n"
	    "# HELP peak_store_repair_pending Listed objects to pull not yet handled.\n"
	    "# TYPE peak_store_repair_pending gauge\npeak_store_repair_pending %" PRIu64 "\n"
	    "# HELP peak_store_migrate_readthrough_total Reads that missed during a migration "
	    "and were fetched from the key's old holder.\n"
	    "# TYPE peak_store_migrate_readthrough_total counter\n"
	    "peak_store_migrate_readthrough_total %" PRIu64 "\n",
	    r->started && !atomic_load(&r->done), (uint64_t)atomic_load(&r->listed),
	    (uint64_t)atomic_load(&r->pulled), (uint64_t)atomic_load(&r->failed),
	    (uint64_t)atomic_load(&r->peers), (uint64_t)atomic_load(&r->bytes),
	    (uint64_t)(atomic_load(&r->wanted) - atomic_load(&r->handled)),
	    (uint64_t)atomic_load(&r->readthrough));
}

void store_object_name(uint64_t g, const uint8_t *key, size_t len, char out[static 80])
{
	struct sha256_ctx h;
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_init(&h);
	sha256_update(&h, len, key);
	sha256_digest(&h, sizeof(d), d);
	int n = snprintf(out, 80, "%08" PRIx64 "-", g);
	for (size_t i = 0; i < sizeof(d); i++)
		n += snprintf(out + n, 80 - (size_t)n, "%02x", d[i]);
}

/* The slice of the key's replica r (its address for the peer in addr), UINT64_MAX if none. */
static uint64_t key_slice(const struct store *s, const struct conn *c, unsigned r,
                          uint8_t addr[static 16])
{
	struct ssa_req q = {.src = c->peer,
	                    .object = c->req.key,
	                    .object_len = c->req.key_len,
	                    .replica = (uint8_t)r};
	if (ssa_compute(&s->space, &q, addr))
		return UINT64_MAX;
	int64_t g = ssa_slice_of(&s->space, addr);
	return g < 0 ? UINT64_MAX : (uint64_t)g;
}

/* Whether this pod holds the request's key: it is in the key's replica set (store.h). */
static bool key_mine(const struct store *s, const struct conn *c)
{
	int set[STORE_WALK_MAX];
	int n = store_key_replicas(&s->space, &s->a, s->replicas, c->req.key, c->req.key_len, set);
	for (int j = 0; j < n; j++)
		if (set[j] == s->me)
			return true;
	return false;
}

static void out_add(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_add(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(c->out + c->outlen, sizeof(c->out) - c->outlen, fmt, ap);
	va_end(ap);
	if (n > 0)
		c->outlen += (size_t)n < sizeof(c->out) - c->outlen
		                 ? (size_t)n
		                 : sizeof(c->out) - c->outlen - 1;
}

/* Queues a response with a short text body (none for HEAD); extra is more header lines. */
static void respond(struct conn *c, unsigned status, const char *extra, bool close)
{
	const char *text = store_status_text(status);
	size_t blen = status == 204 || status == 100 ? 0 : strlen(text) + 1;
	count(c, status);
	c->close_after |= close;
	out_add(c, "HTTP/1.1 %u %s\r\nContent-Length: %zu\r\nX-Peak-Pod: %s\r\n%s%s\r\n", status,
	        text, blen, c->pod, extra ? extra : "",
	        c->close_after ? "Connection: close\r\n" : "");
	if (blen && c->req.method != STORE_HEAD)
		out_add(c, "%s\n", text);
	c->st = C_SEND;
	c->deadline_ms = peak_mono_ms() + (uint64_t)c->timeout_ms;
}

static void temp_drop(struct store *s, struct conn *c)
{
	if (c->tmpfd == -1)
		return;
	close(c->tmpfd);
	c->tmpfd = -1;
	unlinkat(s->dirfd, c->tmpname, 0);
}

static void conn_free(struct store *s, struct conn *c)
{
	temp_drop(s, c);
	if (c->objfd != -1)
		close(c->objfd);
	close(c->fd);
	free(c);
}

static uint64_t phase_deadline(const struct store *s, uint64_t bytes)
{
	return peak_mono_ms() + s->o->timeout_ms + bytes / STORE_MIN_RATE_BPMS;
}

/* Answers 421 with where the key lives, if the assignment knows an owner. */
static void misdirected(struct store *s, struct conn *c, uint64_t g, const uint8_t addr[16],
                        bool close)
{
	char extra[300] = "", a1[INET6_ADDRSTRLEN], a2[INET6_ADDRSTRLEN];
	int owner = s->a.owner[g];
	for (unsigned e = 0; e < s->svc->nep; e++)
		if (owner != ASSIGN_NONE && s->slot[e] == owner)
			snprintf(extra, sizeof(extra),
			         "X-Peak-Owner: %s\r\nX-Peak-Owner-Address: %s\r\n"
			         "X-Peak-Address: %s\r\n",
			         s->svc->ep[e].id,
			         inet_ntop(AF_INET6, s->svc->ep[e].addr, a1, sizeof(a1)),
			         inet_ntop(AF_INET6, addr, a2, sizeof(a2)));
	respond(c, 421, extra, close);
}

/* Opens the object and checks its header names this key; returns the fd or -errno. */
static int object_open(struct store *s, struct conn *c, uint64_t *size)
{
	uint8_t h[OBJ_HDR_MAX];
	struct stat st;
	int fd = openat(s->dirfd, c->objname, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return -errno;
	size_t hl = 6 + c->req.key_len;
	ssize_t k = pread(fd, h, hl, 0);
	if (fstat(fd, &st) == -1 || k != (ssize_t)hl || memcmp(h, "PKS1", 4) ||
	    (size_t)(h[4] << 8 | h[5]) != c->req.key_len ||
	    memcmp(h + 6, c->req.key, c->req.key_len)) {
		close(fd);
		return -EIO; /* not this key's object: a damaged file */
	}
	*size = (uint64_t)st.st_size - hl;
	c->objoff = (off_t)hl;
	return fd;
}

static bool object_name_ok(const char *n)
{
	if (strlen(n) != 73 || n[8] != '-')
		return false;
	for (int i = 0; i < 73; i++)
		if (i != 8 && !((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f')))
			return false;
	return true;
}

static int name_cmp(const void *x, const void *y)
{
	return strcmp((const char *)x, (const char *)y);
}

/* Writes the listing page into an unnamed file: one line "NAME KEY" per object (KEY
 * percent-encoded) for the first limit names after `after`, in name order. Returns the
 * file (its size in *size, *more set if names remain) or -errno. */
static int list_write(struct store *s, const char *after, unsigned limit, uint64_t *size,
                      bool *more)
{
	char(*names)[STORE_NAME_MAX] = NULL;
	size_t n = 0, cap = 0;
	int ret = -ENOMEM, fd = -1, dfd = dup(s->dirfd);
	DIR *d = dfd == -1 ? NULL : fdopendir(dfd);
	FILE *f = NULL;
	if (!d) {
		ret = -errno;
		if (dfd != -1)
			close(dfd);
		goto out;
	}
	rewinddir(d);
	for (struct dirent *e; (e = readdir(d));) {
		if (!object_name_ok(e->d_name) || strcmp(e->d_name, after) <= 0)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			void *m = realloc(names, cap * sizeof(*names));
			if (!m)
				goto out;
			names = m;
		}
		memcpy(names[n++], e->d_name, 74);
	}
	if (n)
		qsort(names, n, sizeof(*names), name_cmp);
	*more = n > limit;
	fd = openat(s->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd == -1 || !(f = fdopen(dup(fd), "w"))) {
		ret = -errno;
		goto out;
	}
	for (size_t i = 0; i < n && i < limit; i++) {
		uint8_t h[OBJ_HDR_MAX];
		char enc[3 * STORE_KEY_MAX + 1];
		int of = openat(s->dirfd, names[i], O_RDONLY | O_CLOEXEC);
		ssize_t k = of == -1 ? -1 : pread(of, h, sizeof(h), 0);
		if (of != -1)
			close(of);
		size_t kl = k >= 6 ? (size_t)(h[4] << 8 | h[5]) : 0;
		if (k < 6 || memcmp(h, "PKS1", 4) || !kl || kl > STORE_KEY_MAX ||
		    (size_t)k < 6 + kl)
			continue; /* deleted meanwhile, or damaged */
		store_key_encode(h + 6, kl, enc, sizeof(enc));
		fprintf(f, "%s %s\n", names[i], enc);
	}
	if (fflush(f) || fsync(fd) == -1) {
		ret = -EIO;
		goto out;
	}
	*size = (uint64_t)lseek(fd, 0, SEEK_END);
	ret = fd;
	fd = -1;
out:
	if (f)
		fclose(f);
	if (fd != -1)
		close(fd);
	if (d)
		closedir(d);
	free(names);
	return ret;
}

/* GET /s/: a page of the listing, sent from its unnamed file like an object. */
static void list_start(struct store *s, struct conn *c)
{
	uint64_t size = 0;
	bool more = false;
	int fd = list_write(s, c->req.list_after, c->req.list_limit, &size, &more);
	if (fd < 0) {
		log_rl(&s->rl, LOG_ERR, "store: listing: %s", strerror(-fd));
		respond(c, 500, NULL, false);
		return;
	}
	out_add(c,
	        "HTTP/1.1 200 OK\r\nContent-Length: %" PRIu64
	        "\r\nContent-Type: text/plain\r\nX-Peak-Pod: %s\r\nX-Peak-More: %d\r\n%s\r\n",
	        size, c->pod, more, c->close_after ? "Connection: close\r\n" : "");
	count(c, 200);
	c->objfd = fd;
	c->objoff = 0;
	c->objleft = size;
	c->st = C_SEND;
	c->deadline_ms = phase_deadline(s, size);
}

/* A GET or HEAD missed while a migration runs: fetches the object from the key's holders
 * before the last join, so a read never fails during the move. Blocks the loop for that
 * fetch (bounded by the pod's timeout per step). Returns whether it was stored. */
static bool read_through(struct store *s, struct conn *c)
{
	int set[STORE_WALK_MAX];
	if (!s->has_old || !s->repair.started || atomic_load(&s->repair.done))
		return false;
	int n =
	    store_key_replicas(&s->space, &s->old, s->replicas, c->req.key, c->req.key_len, set);
	for (int j = 0; j < n; j++)
		for (unsigned e = 0; e < s->svc->nep; e++) {
			if (set[j] == s->me || s->slot[e] != set[j])
				continue;
			int r = store_repair_pull(&s->repair, e, c->req.key, c->req.key_len,
			                          c->objname);
			if (r >= 0) {
				atomic_fetch_add(&s->repair.readthrough, 1);
				return true;
			}
			if (r != -ENOENT)
				log_rl(&s->rl, LOG_WARNING, "store: read-through from %s: %s",
				       s->svc->ep[e].id, strerror(-r));
		}
	return false;
}

/* Starts serving the request just parsed. */
static void request_start(struct store *s, struct conn *c)
{
	uint8_t addr[16];
	uint64_t g, size = 0;
	bool put = c->req.method == STORE_PUT;
	c->close_after = c->req.close;
	if (c->req.list) {
		list_start(s, c);
		return;
	}
	g = key_slice(s, c, 0, addr);
	if (g == UINT64_MAX) {
		respond(c, 500, NULL, true);
		return;
	}
	if (!key_mine(s, c)) {
		misdirected(s, c, g, addr, put); /* a PUT's body is not read: close */
		return;
	}
	if (c->req.acked_len && http_list_has(c->req.acked, c->req.acked_len, s->o->id)) {
		respond(c, 208, NULL, put); /* the client counted this pod already */
		return;
	}
	store_object_name(g, c->req.key, c->req.key_len, c->objname);
	if (put) {
		snprintf(c->tmpname, sizeof(c->tmpname), ".tmp-%" PRIu64, ++s->tmp_seq);
		c->tmpfd =
		    openat(s->dirfd, c->tmpname, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		uint8_t h[OBJ_HDR_MAX] = {
		    'P', 'K', 'S', '1', (uint8_t)(c->req.key_len >> 8), (uint8_t)c->req.key_len};
		memcpy(h + 6, c->req.key, c->req.key_len);
		if (c->tmpfd == -1 ||
		    write(c->tmpfd, h, 6 + c->req.key_len) != (ssize_t)(6 + c->req.key_len)) {
			log_rl(&s->rl, LOG_ERR, "store: temp file: %s", strerror(errno));
			temp_drop(s, c);
			respond(c, 500, NULL, true);
			return;
		}
		c->body_left = c->req.body_len;
		c->st = C_BODY;
		c->deadline_ms = phase_deadline(s, c->body_left);
		if (c->req.expect_100)
			out_add(c, "HTTP/1.1 100 Continue\r\n\r\n");
		return;
	}
	if (c->req.method == STORE_DELETE) {
		if (unlinkat(s->dirfd, c->objname, 0) == -1) {
			respond(c, errno == ENOENT ? 404 : 500, NULL, false);
			return;
		}
		fsync(s->dirfd);
		atomic_fetch_sub(&stats.objects, 1);
		respond(c, 204, NULL, false);
		return;
	}
	int fd = object_open(s, c, &size);
	if (fd == -ENOENT && read_through(s, c))
		fd = object_open(s, c, &size);
	if (fd < 0) {
		respond(c, fd == -ENOENT ? 404 : 500, NULL, false);
		return;
	}
	c->close_after = c->req.close;
	count(c, 200);
	out_add(c,
	        "HTTP/1.1 200 OK\r\nContent-Length: %" PRIu64
	        "\r\nContent-Type: application/octet-stream\r\nX-Peak-Pod: %s\r\n%s\r\n",
	        size, c->pod, c->close_after ? "Connection: close\r\n" : "");
	if (c->req.method == STORE_GET && size) {
		c->objfd = fd;
		c->objleft = size;
	} else {
		close(fd);
	}
	c->st = C_SEND;
	c->deadline_ms = phase_deadline(s, size);
}

/* The whole body is in the temp file: make it the object, durably. */
static void body_done(struct store *s, struct conn *c)
{
	bool existed = !faccessat(s->dirfd, c->objname, F_OK, 0);
	if (fsync(c->tmpfd) == -1 || close(c->tmpfd) == -1) {
		c->tmpfd = -1;
		unlinkat(s->dirfd, c->tmpname, 0);
		respond(c, 500, NULL, true);
		return;
	}
	c->tmpfd = -1;
	if (renameat(s->dirfd, c->tmpname, s->dirfd, c->objname) == -1 || fsync(s->dirfd) == -1) {
		unlinkat(s->dirfd, c->tmpname, 0);
		respond(c, 500, NULL, true);
		return;
	}
	if (!existed)
		atomic_fetch_add(&stats.objects, 1);
	respond(c, existed ? 204 : 201, NULL, false);
}

/* Writes n body bytes to the temp file; false (and a 500 queued) on a disk error. */
static bool body_write(struct store *s, struct conn *c, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = write(c->tmpfd, p, n);
		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0) {
			log_rl(&s->rl, LOG_ERR, "store: write: %s", strerror(errno));
			temp_drop(s, c);
			respond(c, 500, NULL, true);
			return false;
		}
		p += k;
		n -= (size_t)k;
		c->body_left -= (uint64_t)k;
		atomic_fetch_add(&stats.bytes_in, (uint64_t)k);
	}
	return true;
}

/* Sends what is queued, then the object. Returns 1 when all went, 0 to wait, -1 broken. */
static int send_some(struct conn *c)
{
	if (c->outlen) {
		int r = sock_send_rest(c->fd, c->out, c->outlen, &c->outoff);
		if (r <= 0)
			return r < 0 ? -1 : 0;
		c->outlen = c->outoff = 0;
	}
	while (c->objleft) {
		ssize_t k = sendfile(c->fd, c->objfd, &c->objoff,
		                     c->objleft < (1u << 30) ? c->objleft : (1u << 30));
		if (k == -1 && errno == EINTR)
			continue;
		if (k == -1 && errno == EAGAIN)
			return 0;
		if (k <= 0)
			return -1; /* a broken peer, or the file shrank under us */
		c->objleft -= (uint64_t)k;
		atomic_fetch_add(&stats.bytes_out, (uint64_t)k);
	}
	if (c->objfd != -1) {
		close(c->objfd);
		c->objfd = -1;
	}
	return 1;
}

/* Receives into the input buffer. Returns bytes read, 0 at EOF, -EAGAIN, or -errno. */
static ssize_t fill(struct conn *c)
{
	if (c->inlen == sizeof(c->in))
		return -EAGAIN;
	ssize_t k = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);
	if (k == -1)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	c->inlen += (size_t)k;
	return k;
}

/* Runs the connection as far as its socket allows (edge-triggered: until EAGAIN). */
static void conn_run(struct store *s, struct conn *c, uint64_t slot)
{
	for (unsigned turn = 0; !c->dead; turn++) {
		if (turn == 64) {
			/* fair to the others: re-arming makes epoll report it again if ready */
			struct epoll_event ev = {
			    .events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP, .data.u64 = slot};
			epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
			return;
		}
		if (c->st == C_SEND || c->outlen) {
			int r = send_some(c);
			if (r < 0) {
				c->dead = true;
				return;
			}
			if (!r)
				return;
			if (c->st == C_SEND) {
				if (c->close_after) {
					shutdown(c->fd, SHUT_WR);
					c->st = C_DRAIN;
					c->deadline_ms = peak_mono_ms() + DRAIN_MS;
					continue;
				}
				c->st = C_HEAD;
				c->deadline_ms = phase_deadline(s, 0);
			}
		}
		if (c->st == C_DRAIN) {
			ssize_t k = recv(c->fd, iobuf, sizeof(iobuf), 0);
			if (k == -1 && (errno == EAGAIN || errno == EINTR))
				return;
			if (k <= 0)
				c->dead = true;
			continue;
		}
		if (c->st == C_HEAD) {
			long n = store_req_parse(c->in, c->inlen, s->o->max_body, &c->req);
			if (n < 0) {
				c->req.method = 0;
				respond(c, (unsigned)-n,
				        n == -405 ? "Allow: GET, HEAD, PUT, DELETE\r\n" : NULL,
				        true);
				continue;
			}
			if (n > 0) {
				memmove(c->in, c->in + n, c->inlen - (size_t)n);
				c->inlen -= (size_t)n;
				request_start(s, c);
				continue;
			}
			ssize_t k = fill(c);
			if (k == -EAGAIN)
				return;
			if (k <= 0)
				c->dead = true; /* EOF or error between requests or mid-head */
			continue;
		}
		/* C_BODY: buffered bytes first, then straight from the socket */
		if (c->inlen) {
			size_t n = c->inlen < c->body_left ? c->inlen : (size_t)c->body_left;
			if (!body_write(s, c, c->in, n))
				continue;
			memmove(c->in, c->in + n, c->inlen - n);
			c->inlen -= n;
		}
		for (unsigned chunk = 0; c->body_left && chunk < 16; chunk++) {
			size_t want = c->body_left < sizeof(iobuf) ? c->body_left : sizeof(iobuf);
			ssize_t k = recv(c->fd, iobuf, want, 0);
			if (k == -1 && errno == EINTR)
				continue;
			if (k == -1 && errno == EAGAIN)
				return;
			if (k <= 0) {
				temp_drop(s, c); /* a truncated upload: nothing is stored */
				c->dead = true;
				return;
			}
			if (!body_write(s, c, iobuf, (size_t)k))
				break;
		}
		if (c->st == C_BODY && c->body_left)
			continue;
		if (c->st == C_BODY && !c->body_left)
			body_done(s, c);
	}
}

/* Cuts off connections past their phase's deadline: 408 to a request half read. */
static void sweep(struct store *s, uint64_t now)
{
	for (unsigned i = 0; i < s->o->max_conns; i++) {
		struct conn *c = s->conns[i];
		if (!c || now < c->deadline_ms)
			continue;
		if ((c->st == C_HEAD && c->inlen) || c->st == C_BODY) {
			temp_drop(s, c);
			c->req.method = 0;
			c->inlen = 0;
			respond(c, 408, NULL, true);
			c->deadline_ms = now + 1000; /* then it goes, sent or not */
			conn_run(s, c, i);
		} else {
			c->dead = true;
		}
		if (c->dead) {
			conn_free(s, c);
			s->conns[i] = NULL;
		}
	}
}

/* Removes what a crash left: temp files of PUTs that never finished. */
static int data_clean(int dirfd)
{
	int fd = dup(dirfd), n = 0;
	DIR *d = fd == -1 ? NULL : fdopendir(fd);
	if (!d) {
		if (fd != -1)
			close(fd);
		return -errno;
	}
	for (struct dirent *e; (e = readdir(d));) {
		if (!strncmp(e->d_name, ".tmp-", 5) && !unlinkat(dirfd, e->d_name, 0))
			n++;
		else if (object_name_ok(e->d_name))
			atomic_fetch_add(&stats.objects, 1);
	}
	closedir(d);
	if (n)
		fsync(dirfd);
	return n;
}

/* The index of endpoint id in the service, or -1. */
static int ep_index(const struct cfg_service *svc, const char *id)
{
	for (unsigned e = 0; e < svc->nep; e++)
		if (!strcmp(svc->ep[e].id, id))
			return (int)e;
	return -1;
}

/* The slices (store.h, --joined): the initial assignment of the endpoints that did not
 * join, then each joined one added in order; s->old keeps the map before the last. Fills
 * s->a, s->slot. Returns 0, -ENOENT (a joined id unknown, repeated, or every endpoint
 * joined) or -ENOMEM. */
static int store_assign(struct store *s, const struct store_opts *o)
{
	struct cfg_service base = *s->svc;
	int *bslot = NULL, ret = -ENOMEM;
	bool *joined = calloc(s->svc->nep, sizeof(*joined));
	base.ep = calloc(s->svc->nep, sizeof(*base.ep));
	bslot = calloc(s->svc->nep, sizeof(*bslot));
	if (!joined || !base.ep || !bslot)
		goto out;
	ret = -ENOENT;
	for (unsigned k = 0; k < o->njoined; k++) {
		int e = ep_index(s->svc, o->joined[k]);
		if (e < 0 || joined[e])
			goto out;
		joined[e] = true;
	}
	base.nep = 0;
	for (unsigned e = 0; e < s->svc->nep; e++)
		if (!joined[e])
			base.ep[base.nep++] = s->svc->ep[e];
	if (!base.nep || (ret = config_service_assign(&base, &s->a, bslot)))
		goto out;
	for (unsigned e = 0, b = 0; e < s->svc->nep; e++)
		s->slot[e] = joined[e] ? ASSIGN_NONE : bslot[b++];
	for (unsigned k = 0; k < o->njoined; k++) {
		int e = ep_index(s->svc, o->joined[k]);
		if (k + 1 == o->njoined) {
			if ((ret = assign_copy(&s->old, &s->a)))
				goto out;
			s->has_old = true;
		}
		int slot = assign_add(&s->a, s->svc->ep[e].weight, NULL);
		if (slot < 0) {
			ret = slot;
			goto out;
		}
		s->slot[e] = slot;
	}
	ret = 0;
out:
	free(joined);
	free(base.ep);
	free(bslot);
	return ret;
}

/* Finds the service holding endpoint id; 0, or 2 with a message logged. */
static int store_setup(struct store *s, const struct store_opts *o)
{
	char err[CFG_ERRLEN];
	int r = config_load(o->config, &s->cfg, err, sizeof(err));
	if (r) {
		log_msg(LOG_ERR, "store: %s", err);
		return 2;
	}
	unsigned found = 0, ep = 0;
	for (unsigned i = 0; i < s->cfg->nsvc; i++)
		for (unsigned e = 0; e < s->cfg->svc[i].nep; e++)
			if (!strcmp(s->cfg->svc[i].ep[e].id, o->id)) {
				s->svc = &s->cfg->svc[i];
				ep = e;
				found++;
			}
	if (found != 1) {
		log_msg(LOG_ERR, "store: endpoint id '%s' is in %u services of %s (want 1)", o->id,
		        found, o->config);
		return 2;
	}
	if (s->svc->space.d.select != SSA_OBJ) {
		log_msg(LOG_ERR,
		        "store: the service of '%s' has select=%s; a store needs select=obj", o->id,
		        ssa_rule_name(s->svc->space.d.select));
		return 2;
	}
	if (s->svc->space.d.host == SSA_HOP) {
		/* the slice needs no secret, but ssa_compute asks for one with host=hop */
		log_msg(LOG_ERR, "store: the service of '%s' has host=hop; not supported yet",
		        o->id);
		return 2;
	}
	s->space = s->svc->space;
	s->space.d.pow = 0; /* the slice is all a pod needs: no proof-of-work search */
	s->slot = calloc(s->svc->nep, sizeof(*s->slot));
	if (!s->slot || (r = store_assign(s, o))) {
		log_msg(LOG_ERR, "store: cannot assign the slices of '%s'%s", o->id,
		        r == -ENOENT
		            ? ": a --joined id is not an endpoint of its service, or all are"
		            : "");
		return 2;
	}
	s->me = s->slot[ep];
	s->replicas = s->svc->space.d.replicas;
	return 0;
}

/* Logs the prefixes of this pod's slices, one line each (what routes toward it). */
static void log_blocks(const struct store *s)
{
	struct assign_block b[64];
	size_t n = assign_blocks(&s->a, (unsigned)s->me, b, 64);
	for (size_t i = 0; i < n && i < 64; i++) {
		struct prefix p;
		char text[PREFIX_STRLEN];
		if (!assign_block_prefix(&s->space, &b[i], &p))
			log_msg(LOG_INFO, "store: %s holds %s", s->o->id, prefix_print(&p, text));
	}
	if (n > 64)
		log_msg(LOG_INFO, "store: %s holds %zu more block(s)", s->o->id, n - 64);
}

static void conn_accept(struct store *s, int ep, int lfd)
{
	for (;;) {
		struct sockaddr_in6 peer;
		socklen_t pl = sizeof(peer);
		int fd = accept4(lfd, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1)
			return;
		unsigned i = 0;
		while (i < s->o->max_conns && s->conns[i])
			i++;
		struct conn *c = i < s->o->max_conns ? malloc(sizeof(*c)) : NULL;
		if (!c) {
			static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
			                           "Content-Length: 0\r\nConnection: close\r\n\r\n";
			(void)!send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
			close(fd);
			continue;
		}
		memset(c, 0, offsetof(struct conn, in));
		c->fd = fd;
		c->timeout_ms = s->o->timeout_ms;
		c->pod = s->o->id;
		c->tmpfd = c->objfd = -1;
		sockaddr_to_in6((struct sockaddr *)&peer, c->peer);
		c->deadline_ms = phase_deadline(s, 0);
		s->conns[i] = c;
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP,
		                         .data.u64 = i};
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	}
}

int store_serve(const struct store_opts *o)
{
	struct store s = {.o = o, .dirfd = -1};
	int ret = 1, lfd = -1, sfd = -1, ep = -1, one = 1, zero = 0;
	struct metrics_srv *ms = NULL;
	int r = store_setup(&s, o);
	if (r) {
		ret = r;
		goto out;
	}
	if (mkdir(o->data, 0755) == -1 && errno != EEXIST) {
		log_msg(LOG_ERR, "store: data directory %s: %s", o->data, strerror(errno));
		goto out;
	}
	s.dirfd = open(o->data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s.dirfd == -1 || (r = data_clean(s.dirfd)) < 0) {
		log_msg(LOG_ERR, "store: data directory %s: %s", o->data, strerror(errno));
		goto out;
	}
	if (r)
		log_msg(LOG_INFO, "store: removed %d unfinished upload(s)", r);
	struct sockaddr_storage ls = o->listen;
	socklen_t ll = o->listen_len;
	if (!ll) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ls;
		memset(&ls, 0, sizeof(ls));
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)s.svc->port);
		ll = sizeof(*a6);
	}
	lfd = socket(ls.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd == -1)
		goto out;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ls.ss_family == AF_INET6)
		setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	char where[64];
	sockaddr_print((struct sockaddr *)&ls, where, sizeof(where));
	if (bind(lfd, (struct sockaddr *)&ls, ll) == -1 || listen(lfd, 1024) == -1) {
		log_msg(LOG_ERR, "store: listen %s: %s", where, strerror(errno));
		goto out;
	}
	sfd = signals_fd(1);
	ep = s.ep = epoll_create1(EPOLL_CLOEXEC);
	s.conns = calloc(o->max_conns, sizeof(*s.conns));
	if (sfd < 0 || ep == -1 || !s.conns) {
		log_msg(LOG_ERR, "store: cannot set up the event loop");
		goto out;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	ev.data.u64 = UINT64_MAX - 1;
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
	char name[1024];
	if (dns_name_print(&s.svc->name, name, sizeof(name)) < 0)
		strcpy(name, "?");
	log_msg(LOG_INFO, "store: %s serving %s on %s, data %s, replicas %u, %zu slice block(s)",
	        o->id, name, where, o->data, s.replicas, assign_routes(&s.a, (unsigned)s.me));
	log_blocks(&s);
	if (o->metrics && !(ms = metrics_start(o->metrics, stats_render, &stats)))
		goto out;
	if (s.replicas > 1 || s.has_old) {
		stats.repair = &s.repair;
		s.repair = (struct store_repair){.svc = s.svc,
		                                 .space = &s.space,
		                                 .a = &s.a,
		                                 .old = s.has_old ? &s.old : NULL,
		                                 .slot = s.slot,
		                                 .me = s.me,
		                                 .replicas = s.replicas,
		                                 .dirfd = s.dirfd,
		                                 .id = o->id,
		                                 .timeout_ms = o->timeout_ms,
		                                 .pull_rate = o->pull_rate};
		if ((r = store_repair_start(&s.repair)))
			log_msg(LOG_ERR, "store: repair: %s", strerror(-r));
	}
	notify_ready("%s serving %s on %s", o->id, name, where);
	uint64_t last_sweep = peak_mono_ms();
	for (bool run = true; run;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, SWEEP_MS);
		for (int i = 0; i < n; i++) {
			uint64_t d = evs[i].data.u64;
			if (d == UINT64_MAX - 1) {
				struct signalfd_siginfo si;
				if (read(sfd, &si, sizeof(si)) == sizeof(si) &&
				    si.ssi_signo == SIGHUP) {
					log_msg(LOG_INFO, "store: SIGHUP: nothing to reload");
					continue;
				}
				notify_stopping();
				run = false;
				break;
			}
			if (d == UINT64_MAX) {
				conn_accept(&s, ep, lfd);
				continue;
			}
			struct conn *c = s.conns[d];
			if (!c)
				continue;
			conn_run(&s, c, d);
			if (c->dead) {
				conn_free(&s, c);
				s.conns[d] = NULL;
			}
		}
		uint64_t now = peak_mono_ms();
		if (now - last_sweep >= SWEEP_MS) {
			last_sweep = now;
			sweep(&s, now);
		}
	}
	log_msg(LOG_INFO, "store: stopped");
	ret = 0;
out:
	if (ms)
		metrics_stop(ms);
	store_repair_stop(&s.repair);
	if (s.conns)
		for (unsigned k = 0; k < o->max_conns; k++)
			if (s.conns[k])
				conn_free(&s, s.conns[k]);
	free(s.conns);
	if (ep != -1)
		close(ep);
	if (sfd >= 0)
		close(sfd);
	if (lfd != -1)
		close(lfd);
	if (s.dirfd != -1)
		close(s.dirfd);
	if (s.slot)
		assign_fini(&s.a);
	if (s.has_old)
		assign_fini(&s.old);
	free(s.slot);
	config_free(s.cfg);
	return ret;
}
