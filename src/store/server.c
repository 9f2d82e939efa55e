/* The object store pod: one epoll loop, a state machine per connection; see store.h.
 * A large object is a file "SLICE-SHA256(KEY)" holding "PKS1", u16 key length, the key,
 * then the body. Its PUT streams into ".tmp-*", fsyncs it, renames it over the name and
 * fsyncs the directory, so after a crash an object is whole or absent; start-up removes
 * stray temps. A small one (up to --log-max bytes) is buffered and appended to the
 * small-object log (slog.h) with the others of its group: one flush for all. */
#define _GNU_SOURCE /* accept4 */
#include "store.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include "ctlsub.h"
#include "req.h"
#include "slog.h"
#include "work.h"

enum {
	IN_CAP = STORE_HEAD_MAX + 8192,
	/* a reply's head, and the body of an object up to SMALL_BODY bytes, which goes out
	 * with its head in one send (no sendfile, one segment) */
	HEAD_CAP = 1536,
	/* the X-Peak-Routes line of a connection's first keep-alive reply (at most) */
	ROUTES_HDR_MAX = 512,
	SMALL_BODY = 4096,
	/* the replies of pipelined requests go out together (conn_run): room for a few */
	OUT_CAP = 4 * (HEAD_CAP + SMALL_BODY),
	/* small PUTs pipelined behind one on a connection that join its commit group */
	MORE_MAX = 32,
	IO_CHUNK = 64 << 10,
	OBJ_HDR_MAX = 6 + STORE_KEY_MAX,
	SWEEP_MS = 200,
};

/* C_DRAIN: the reply to a refused request went out and writing is shut down; what the
 * client still sends is read and dropped for a moment, so closing does not reset the
 * connection before the client has read the reply (a lingering close). */
/* C_WAIT: a job of the connection's is with a thread (work.h): the commit of its PUT, or
 * a read-through's fetch; the connection is left alone (no reads, no deadline) until the
 * loop takes the job back. */
enum conn_state { C_HEAD, C_BODY, C_SEND, C_DRAIN, C_WAIT };

enum {
	DRAIN_MS = 1000,
	/* PUTs one group commit takes at most, and connections kept for reuse */
	COMMIT_BATCH = 256,
	POOL_MAX = 64,
	FETCH_THREADS = 4,  /* read-throughs at once: a large one does not hold up the others */
	FETCH_KEEP_EP = 64, /* old holders a fetch thread keeps a connection to (the first) */
};

enum job_kind { JOB_COMMIT = 1, JOB_FETCH };

struct conn {
	int fd;
	unsigned slot; /* its index in struct store's conns */
	enum conn_state st;
	struct store_req req;
	uint64_t deadline_ms;
	bool close_after, dead;
	/* the last read came short, so the socket is empty until epoll reports it again
	 * (edge-triggered: any new bytes do): the loop waits rather than calling recv for an
	 * EAGAIN; not after a hang-up, which epoll reports once */
	bool rd_empty, rd_hup;
	/* the reply refused the request (its body may be unread): close with a linger */
	bool linger;
	/* out holds replies kept back while pipelined requests behind them are answered, so
	 * they all go in one send (conn_run) */
	bool held;
	enum job_kind kind; /* C_WAIT: what job is out */
	bool existed;       /* JOB_COMMIT: the object was there before this PUT */
	/* the reply is a former holder's copy (a key the map took away): X-Peak-Former */
	bool former;
	struct work_job job;
	unsigned fetch_ep[STORE_WALK_MAX], nfetch; /* JOB_FETCH: whom to ask (fetch_plan) */
	unsigned timeout_ms;
	const char *pod; /* this pod's id, in every reply's X-Peak-Pod */
	/* the X-Peak-Routes line (struct store's routes_hdr) until a keep-alive reply took
	 * it, then "" */
	const char *routes;
	uint8_t peer[16];
	int64_t local_slice; /* the slice of the address it was opened to, or -1 */
	size_t inlen, outlen, outoff;
	int tmpfd; /* C_BODY: the temp file, else -1 */
	/* C_BODY of a small PUT: the body buffered for the log (slog.h), else NULL */
	uint8_t *logbuf;
	size_t loglen;
	bool logput;   /* JOB_COMMIT: the PUT goes to the log */
	bool log_over; /* JOB_COMMIT of a file: it replaces a log object */
	uint64_t body_left;
	/* JOB_COMMIT of a log PUT: the small PUTs pipelined behind it, whole in the input
	 * buffer, that go to the log in the same group (more_take) and are answered after it */
	unsigned nmore;
	char tmpname[32];
	char objname[80];
	int objfd; /* C_SEND: the object to send, else -1 */
	off_t objoff;
	uint64_t objleft;
	struct conn *pool_next;
	uint8_t in[IN_CAP];
	char out[OUT_CAP];
	struct more_put {
		uint8_t key[STORE_KEY_MAX];
		size_t key_len, body_len;
		uint8_t *body; /* malloc'd, freed by commit_log */
		char objname[STORE_NAME_MAX];
		bool existed;
	} more[MORE_MAX];
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
	int dirfd, tombfd, ep;
	struct slog log;        /* the small-object log */
	uint64_t tomb_sweep_ms; /* when tombstones were last expired */
	uint64_t tmp_seq;
	struct conn **conns;
	struct conn *pool; /* freed connections for reuse, through pool_next */
	unsigned npool;
	struct work_queue commit, fetch;
	/* PUTs whose bodies arrived in this pass of the loop, handed to the commit thread
	 * together at its end (commit_flush): one group, one directory fsync */
	struct work_job *commit_next, **commit_next_tail;
	struct store_ctl ctl;
	struct ctlauth_key key;
	char node[CTL_ID_MAX]; /* the default node name of the controller link */
	/* "X-Peak-Routes: PREFIX ...\r\n": the prefixes of this pod's slices (as many as
	 * fit), sent once per keep-alive connection so a client can send it the requests of
	 * other keys in them (README); rebuilt in place when the map changes */
	char routes_hdr[ROUTES_HDR_MAX];
	/* a controller's map is in force: the pod's map is the one the routes follow, so it
	 * may offer X-Peak-Routes (a static map may be stale: pods that --joined later are
	 * not told to the others) */
	bool map_live;
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
	atomic_uint_fast64_t conns;               /* connections accepted */
	atomic_int_fast64_t objects;              /* on disk, less what repair pulled */
	atomic_uint_fast64_t commits, dir_syncs;  /* PUTs committed, their groups' dir fsyncs */
	/* pipelined requests: replies sent with the one before (held), small PUTs taken into
	 * the group of the one before on their connection (joined) */
	atomic_uint_fast64_t held, joined;
	const struct store_repair *repair;
	struct slog *log;
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
	            "# TYPE peak_store_objects gauge\npeak_store_objects %" PRId64 "\n"
	            "# HELP peak_store_connections_total Connections accepted.\n"
	            "# TYPE peak_store_connections_total counter\n"
	            "peak_store_connections_total %" PRIu64 "\n"
	            "# HELP peak_store_commits_total PUTs made durable by the commit thread.\n"
	            "# TYPE peak_store_commits_total counter\npeak_store_commits_total %" PRIu64
	            "\n# HELP peak_store_dir_syncs_total Directory fsyncs of the commit thread, "
	            "one per group of PUTs (group commit).\n"
	            "# TYPE peak_store_dir_syncs_total counter\npeak_store_dir_syncs_total %" PRIu64
	            "\n# HELP peak_store_pipelined_held_total Replies held back to go out with "
	            "those of the pipelined requests behind them.\n"
	            "# TYPE peak_store_pipelined_held_total counter\n"
	            "peak_store_pipelined_held_total %" PRIu64
	            "\n# HELP peak_store_pipelined_joined_total Small PUTs pipelined behind "
	            "another that joined its commit group.\n"
	            "# TYPE peak_store_pipelined_joined_total counter\n"
	            "peak_store_pipelined_joined_total %" PRIu64 "\n",
	            (uint64_t)atomic_load(&st->bytes_in), (uint64_t)atomic_load(&st->bytes_out),
	            (int64_t)atomic_load(&st->objects) +
	                (int64_t)(r ? atomic_load(&r->pulled) - atomic_load(&r->tombstoned) -
	                                  atomic_load(&r->dropped)
	                            : 0),
	            (uint64_t)atomic_load(&st->conns), (uint64_t)atomic_load(&st->commits),
	            (uint64_t)atomic_load(&st->dir_syncs), (uint64_t)atomic_load(&st->held),
	            (uint64_t)atomic_load(&st->joined));
	if (st->log)
		mbuf_printf(
		    b,
		    "# HELP peak_store_log_syncs_total Flushes (fdatasync) of the small-object "
		    "log, "
		    "one per group of small PUTs and per delete of a log object.\n"
		    "# TYPE peak_store_log_syncs_total counter\npeak_store_log_syncs_total %" PRIu64
		    "\n# HELP peak_store_log_records_total PUTs appended to the small-object log.\n"
		    "# TYPE peak_store_log_records_total counter\n"
		    "peak_store_log_records_total %" PRIu64 "\n"
		    "# HELP peak_store_log_objects Objects held in the small-object log.\n"
		    "# TYPE peak_store_log_objects gauge\npeak_store_log_objects %zu\n"
		    "# HELP peak_store_log_torn_total Segment tails dropped at start-up (a torn or "
		    "damaged record).\n"
		    "# TYPE peak_store_log_torn_total counter\npeak_store_log_torn_total %" PRIu64
		    "\n# HELP peak_store_log_segments Segment files of the small-object log.\n"
		    "# TYPE peak_store_log_segments gauge\npeak_store_log_segments %zu\n"
		    "# HELP peak_store_log_compactions_total Segments rewritten without their dead "
		    "records and removed.\n"
		    "# TYPE peak_store_log_compactions_total counter\n"
		    "peak_store_log_compactions_total %" PRIu64 "\n"
		    "# HELP peak_store_log_compacted_bytes_total Bytes of dead records compaction "
		    "freed.\n# TYPE peak_store_log_compacted_bytes_total counter\n"
		    "peak_store_log_compacted_bytes_total %" PRIu64 "\n",
		    (uint64_t)atomic_load(&st->log->syncs),
		    (uint64_t)atomic_load(&st->log->records), slog_count(st->log),
		    (uint64_t)atomic_load(&st->log->torn), slog_segments(st->log),
		    (uint64_t)atomic_load(&st->log->compactions),
		    (uint64_t)atomic_load(&st->log->compact_bytes));
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
	    "# HELP peak_store_repair_tombstoned_total Copies removed because a peer listed a "
	    "newer tombstone (a delete this pod missed).\n"
	    "# TYPE peak_store_repair_tombstoned_total counter\n"
	    "peak_store_repair_tombstoned_total %" PRIu64 "\n"
	    "# HELP peak_store_migrate_readthrough_total Reads that missed during a migration "
	    "and were fetched from the key's old holder.\n"
	    "# TYPE peak_store_migrate_readthrough_total counter\n"
	    "peak_store_migrate_readthrough_total %" PRIu64 "\n"
	    "# HELP peak_store_dropped_total Objects deleted here after a map moved them away "
	    "and every pod now holding them confirmed a copy.\n"
	    "# TYPE peak_store_dropped_total counter\npeak_store_dropped_total %" PRIu64 "\n"
	    "# HELP peak_store_dropped_bytes_total Body bytes of the objects dropped.\n"
	    "# TYPE peak_store_dropped_bytes_total counter\n"
	    "peak_store_dropped_bytes_total %" PRIu64 "\n"
	    "# HELP peak_store_drop_unconfirmed Objects moved away kept by the last drop pass "
	    "(a holder did not confirm them yet).\n"
	    "# TYPE peak_store_drop_unconfirmed gauge\npeak_store_drop_unconfirmed %" PRIu64 "\n"
	    "# HELP peak_store_peer_connections_total Connections this pod opened to its peers "
	    "(listings, pulls, read-throughs, drop confirmations).\n"
	    "# TYPE peak_store_peer_connections_total counter\n"
	    "peak_store_peer_connections_total %" PRIu64 "\n",
	    r->started && !atomic_load(&r->done), (uint64_t)atomic_load(&r->listed),
	    (uint64_t)atomic_load(&r->pulled), (uint64_t)atomic_load(&r->failed),
	    (uint64_t)atomic_load(&r->peers), (uint64_t)atomic_load(&r->bytes),
	    (uint64_t)(atomic_load(&r->wanted) - atomic_load(&r->handled)),
	    (uint64_t)atomic_load(&r->tombstoned), (uint64_t)atomic_load(&r->readthrough),
	    (uint64_t)atomic_load(&r->dropped), (uint64_t)atomic_load(&r->dropped_bytes),
	    (uint64_t)atomic_load(&r->unconfirmed), (uint64_t)atomic_load(&r->conns));
}

void store_object_name(uint64_t g, const uint8_t *key, size_t len, char out[static 80])
{
	struct sha256_ctx h;
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_init(&h);
	sha256_update(&h, len, key);
	sha256_digest(&h, sizeof(d), d);
	static const char hex[] = "0123456789abcdef";
	/* by hand: 33 snprintf calls were a tenth of a small GET's time on the pod */
	for (int i = 7; i >= 0; i--, g >>= 4)
		out[i] = hex[g & 15];
	out[8] = '-';
	for (size_t i = 0; i < sizeof(d); i++) {
		out[9 + 2 * i] = hex[d[i] >> 4];
		out[10 + 2 * i] = hex[d[i] & 15];
	}
	out[9 + 2 * sizeof(d)] = 0;
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
static bool key_mine_in(const struct store *s, const struct assign *a, const struct conn *c)
{
	int set[STORE_WALK_MAX];
	int n = store_key_replicas(&s->space, a, s->replicas, c->req.key, c->req.key_len, set);
	for (int j = 0; j < n; j++)
		if (set[j] == s->me)
			return true;
	return false;
}

static bool key_mine(const struct store *s, const struct conn *c)
{
	return key_mine_in(s, &s->a, c);
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

/* The X-Peak-Routes line for this reply: the connection's first that keeps it open. */
static const char *routes_take(struct conn *c)
{
	const char *r = c->routes;
	if (c->close_after || !r)
		return "";
	c->routes = "";
	return r;
}

/* Queues a response with a short text body (none for HEAD); extra is more header lines. */
static void respond(struct conn *c, unsigned status, const char *extra, bool close)
{
	const char *text = store_status_text(status);
	size_t blen = status == 204 || status == 100 ? 0 : strlen(text) + 1;
	count(c, status);
	c->close_after |= close;
	c->linger |= close;
	out_add(c, "HTTP/1.1 %u %s\r\nContent-Length: %zu\r\nX-Peak-Pod: %s\r\n%s%s%s\r\n", status,
	        text, blen, c->pod, extra ? extra : "", status == 100 ? "" : routes_take(c),
	        c->close_after ? "Connection: close\r\n" : "");
	if (blen && c->req.method != STORE_HEAD)
		out_add(c, "%s\n", text);
	c->st = C_SEND;
	c->deadline_ms = peak_mono_ms() + (uint64_t)c->timeout_ms;
}

static void temp_drop(struct store *s, struct conn *c)
{
	free(c->logbuf);
	c->logbuf = NULL;
	for (; c->nmore; c->nmore--) {
		free(c->more[c->nmore - 1].body);
		c->more[c->nmore - 1].body = NULL;
	}
	if (c->tmpfd == -1)
		return;
	close(c->tmpfd);
	c->tmpfd = -1;
	unlinkat(s->dirfd, c->tmpname, 0);
}

/* Closes the connection; its memory is kept for the next (up to POOL_MAX) or freed. */
static void conn_free(struct store *s, struct conn *c)
{
	temp_drop(s, c);
	if (c->objfd != -1)
		close(c->objfd);
	close(c->fd);
	if (s->npool < POOL_MAX) {
		c->pool_next = s->pool;
		s->pool = c;
		s->npool++;
		return;
	}
	free(c);
}

static struct conn *conn_of(struct work_job *j)
{
	return (struct conn *)(void *)((char *)j - offsetof(struct conn, job));
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

/* Opens the object and checks its header names this key; returns the fd or -errno, with
 * the body's size and the object's version (mtime in ms, repair.h). A body of at most
 * SMALL_BODY bytes is read with the header, into iobuf from *body (else *body is NULL). */
static int object_open(struct store *s, struct conn *c, uint64_t *size, uint64_t *version,
                       const uint8_t **body)
{
	uint8_t *h = iobuf;
	struct stat st;
	struct slog_obj lo;
	*body = NULL;
	if (!slog_get(&s->log, c->objname, &lo)) {
		/* a log object: its key, then its body if small, in one read */
		size_t want = lo.key_len + (lo.body_len < SMALL_BODY ? lo.body_len : SMALL_BODY);
		ssize_t k = pread(lo.fd, h, want, (off_t)lo.key_off);
		if (k != (ssize_t)want || lo.key_len != c->req.key_len ||
		    memcmp(h, c->req.key, lo.key_len)) {
			close(lo.fd);
			return -EIO;
		}
		*size = lo.body_len;
		if (lo.body_len <= SMALL_BODY)
			*body = h + lo.key_len;
		*version = lo.version;
		c->objoff = (off_t)(lo.key_off + lo.key_len);
		return lo.fd;
	}
	int fd = openat(s->dirfd, c->objname, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return -errno;
	size_t hl = 6 + c->req.key_len;
	ssize_t k = pread(fd, h, hl + SMALL_BODY, 0);
	if (fstat(fd, &st) == -1 || k < (ssize_t)hl || memcmp(h, "PKS1", 4) ||
	    (size_t)(h[4] << 8 | h[5]) != c->req.key_len ||
	    memcmp(h + 6, c->req.key, c->req.key_len)) {
		close(fd);
		return -EIO; /* not this key's object: a damaged file */
	}
	*size = (uint64_t)st.st_size - hl;
	if ((uint64_t)k == (uint64_t)st.st_size)
		*body = h + hl; /* the whole body came with the header */
	*version = (uint64_t)st.st_mtim.tv_sec * 1000 + (uint64_t)st.st_mtim.tv_nsec / 1000000;
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

struct list_ent {
	char name[STORE_NAME_MAX];
	bool tomb; /* a tombstone's name (repair.h), else an object's */
};

static int ent_cmp(const void *x, const void *y)
{
	const struct list_ent *a = x, *b = y;
	int c = strcmp(a->name, b->name);
	return c ? c : (int)a->tomb - (int)b->tomb;
}

/* Appends name (tomb: a tombstone's) to *ents (*n of *cap, grown by doubling). Returns 0
 * or -ENOMEM. */
static int ents_push(struct list_ent **ents, size_t *n, size_t *cap, const char *name, bool tomb)
{
	if (*n == *cap) {
		size_t c = *cap ? 2 * *cap : 256;
		void *m = realloc(*ents, c * sizeof(**ents));
		if (!m)
			return -ENOMEM;
		*ents = m;
		*cap = c;
	}
	snprintf((*ents)[*n].name, sizeof((*ents)[*n].name), "%s", name);
	(*ents)[(*n)++].tomb = tomb;
	return 0;
}

/* Adds the names after `after` in directory fd (closed here) to *ents. Returns 0 or -errno. */
static int list_scan(int fd, bool tomb, const char *after, struct list_ent **ents, size_t *n,
                     size_t *cap)
{
	DIR *d = fd == -1 ? NULL : fdopendir(fd);
	int ret = 0;
	if (!d) {
		ret = -errno;
		if (fd != -1)
			close(fd);
		return ret;
	}
	rewinddir(d);
	for (struct dirent *e; (e = readdir(d));) {
		if (!object_name_ok(e->d_name) || strcmp(e->d_name, after) <= 0)
			continue;
		if ((ret = ents_push(ents, n, cap, e->d_name, tomb)))
			break;
	}
	closedir(d);
	return ret;
}

/* Adds the log's names after `after` to *ents. Returns 0 or -ENOMEM. */
static int list_log(struct slog *l, const char *after, struct list_ent **ents, size_t *n,
                    size_t *cap)
{
	size_t m = 0;
	char(*names)[STORE_NAME_MAX] = slog_names(l, &m);
	int ret = names ? 0 : -ENOMEM;
	for (size_t i = 0; i < m && !ret; i++) {
		if (strcmp(names[i], after) <= 0)
			continue;
		ret = ents_push(ents, n, cap, names[i], false);
	}
	free(names);
	return ret;
}

/* Writes the listing page into an unnamed file, in name order, for the first limit names
 * after `after`: "NAME KEY VERSION" per object (VERSION its mtime in ms) and "NAME KEY
 * TIME D" per tombstone (KEY percent-encoded); a name with both shows the newer. Returns
 * the file (its size in *size, *more set if names remain) or -errno. */
static int list_write(struct store *s, const char *after, unsigned limit, uint64_t *size,
                      bool *more)
{
	struct list_ent *ents = NULL;
	size_t n = 0, cap = 0, k = 0;
	int ret, fd = -1;
	FILE *f = NULL;
	if ((ret = list_scan(dup(s->dirfd), false, after, &ents, &n, &cap)) ||
	    (ret = list_scan(dup(s->tombfd), true, after, &ents, &n, &cap)) ||
	    (ret = list_log(&s->log, after, &ents, &n, &cap)))
		goto out;
	if (n)
		qsort(ents, n, sizeof(*ents), ent_cmp);
	/* one entry a name: an object and its tombstone (a crash, or a race with the
	 * repair thread) show as the newer of the two */
	for (size_t i = 0; i < n; i++) {
		/* a name both a file and in the log (for a moment: store_object_* pick one) */
		if (i + 1 < n && !strcmp(ents[i].name, ents[i + 1].name) &&
		    ents[i].tomb == ents[i + 1].tomb)
			continue;
		if (i + 1 < n && !strcmp(ents[i].name, ents[i + 1].name)) {
			uint64_t v = store_object_version(&s->log, ents[i].name);
			uint64_t t = store_tomb_get(s->tombfd, ents[i].name, NULL, NULL);
			ents[k++] = ents[v > t ? i : i + 1];
			i++;
			continue;
		}
		ents[k++] = ents[i];
	}
	n = k;
	*more = n > limit;
	fd = openat(s->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd == -1 || !(f = fdopen(dup(fd), "w"))) {
		ret = -errno;
		goto out;
	}
	for (size_t i = 0; i < n && i < limit; i++) {
		uint8_t h[OBJ_HDR_MAX];
		char enc[3 * STORE_KEY_MAX + 1];
		size_t kl = 0;
		if (ents[i].tomb) {
			uint64_t t = store_tomb_get(s->tombfd, ents[i].name, h, &kl);
			if (!t)
				continue; /* expired meanwhile, or damaged */
			store_key_encode(h, kl, enc, sizeof(enc));
			fprintf(f, "%s %s %" PRIu64 " D\n", ents[i].name, enc, t);
			continue;
		}
		uint64_t osize, version;
		if (!store_object_info(&s->log, ents[i].name, h, &kl, &osize, &version))
			continue; /* deleted meanwhile, or damaged */
		store_key_encode(h, kl, enc, sizeof(enc));
		fprintf(f, "%s %s %" PRIu64 "\n", ents[i].name, enc, version);
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
	free(ents);
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

/* Whether a migration runs: a miss reads through from the key's old holders. */
static bool migrating(const struct store *s)
{
	return s->has_old && s->repair.started && !atomic_load(&s->repair.done);
}

/* A GET or HEAD missed while a migration runs: fetches the object from the key's holders
 * before the last join, so a read never fails during the move. Runs on a fetch thread
 * (fetch_run), so a slow or large fetch holds up no other request. Returns 0 if it was
 * stored, -ENOENT if no old holder has it, or the last other error. */
static int read_through(struct store *s, struct conn *c)
{
	/* each fetch thread keeps a connection per old holder (fd + 1; 0: none), so the
	 * read-throughs of a move do not open one each */
	static _Thread_local int kept[FETCH_KEEP_EP];
	int ret = -ENOENT;
	for (unsigned i = 0; i < c->nfetch; i++) {
		unsigned e = c->fetch_ep[i];
		int sock = e < FETCH_KEEP_EP ? kept[e] - 1 : -1;
		int r = store_repair_pull_on(&s->repair, e, c->req.key, c->req.key_len, c->objname,
		                             &sock);
		if (e < FETCH_KEEP_EP)
			kept[e] = sock + 1;
		else if (sock != -1)
			close(sock);
		if (r >= 0) {
			atomic_fetch_add(&s->repair.readthrough, 1);
			return 0;
		}
		if (r != -ENOENT)
			ret = r;
	}
	return ret;
}

/* The endpoints a read-through asks, in order: the key's holders before the last change
 * of the map, but this pod. Made on the loop, so a fetch thread never reads a map that a
 * controller's next one may replace. */
static void fetch_plan(struct store *s, struct conn *c)
{
	int set[STORE_WALK_MAX];
	int n =
	    store_key_replicas(&s->space, &s->old, s->replicas, c->req.key, c->req.key_len, set);
	c->nfetch = 0;
	for (int j = 0; j < n; j++)
		for (unsigned e = 0; e < s->svc->nep && c->nfetch < STORE_WALK_MAX; e++)
			if (set[j] != s->me && s->slot[e] == set[j])
				c->fetch_ep[c->nfetch++] = e;
}

static void fetch_run(struct work_queue *q, struct work_job *batch, void *arg)
{
	(void)q;
	for (struct work_job *j = batch; j; j = j->next)
		j->result = read_through(arg, conn_of(j));
}

/* Hands the connection's job to queue q; the loop takes it back in job_finish. */
static void job_add(struct store *s, struct conn *c, enum job_kind kind)
{
	c->kind = kind;
	c->st = C_WAIT;
	if (kind == JOB_COMMIT) { /* with the others of this pass (commit_flush) */
		c->job.next = NULL;
		*s->commit_next_tail = &c->job;
		s->commit_next_tail = &c->job.next;
		return;
	}
	work_add(&s->fetch, &c->job);
}

/* At the end of a pass of the loop: the PUTs finished in it go to the commit thread as one
 * list, so they are committed in one group (with any that queued while it was busy). */
static void commit_flush(struct store *s)
{
	work_add_list(&s->commit, s->commit_next);
	s->commit_next = NULL;
	s->commit_next_tail = &s->commit_next;
}

/* DELETE: the tombstone first (repair.h), then the object, so a crash between leaves a
 * tombstone newer than the object, which start-up settles. 204 if a copy went, or while a
 * migration runs (the old owner may hold it: the tombstone keeps the move and a read from
 * bringing it back); else 404. */
static void object_delete(struct store *s, struct conn *c)
{
	atomic_store(&s->repair.tombs, true);
	int err = store_tomb_put(s->tombfd, c->objname, c->req.key, c->req.key_len, store_now_ms());
	if (err) {
		log_rl(&s->rl, LOG_ERR, "store: tombstone: %s", strerror(-err));
		respond(c, 500, NULL, false);
		return;
	}
	int r = store_object_remove(&s->log, c->objname);
	bool had = r == 0;
	if (r && r != -ENOENT) {
		respond(c, 500, NULL, false);
		return;
	}
	if (had)
		atomic_fetch_sub(&stats.objects, 1);
	bool moving = s->has_old && s->repair.started && !atomic_load(&s->repair.done);
	respond(c, had || moving ? 204 : 404, NULL, false);
}

static void object_reply(struct store *s, struct conn *c, int fd, uint64_t size, uint64_t version,
                         const uint8_t *body);

/* Whether the connection came to a slice this pod holds under its map: then a key it does
 * not hold was sent by a route hint (X-Peak-Routes), not by a route that has yet to move,
 * and gets 421 rather than a copy the map took away from this pod. */
static bool route_current(const struct store *s, const struct conn *c)
{
	return c->local_slice >= 0 && (uint64_t)c->local_slice < s->a.nslices &&
	       s->a.owner[c->local_slice] == s->me;
}

/* Whether the connection came, under a controller's map, to a slice this pod no longer
 * holds: opened before the slice moved, or by a route that has yet to move. It is closed
 * after its reply, so no kept connection stays pinned to this pod once the routes moved
 * (there it would read a stale copy, or miss one dropped since). */
static bool route_lost(const struct store *s, const struct conn *c)
{
	return s->map_live && c->local_slice >= 0 && !route_current(s, c);
}

/* Starts serving the request just parsed. */
static void request_start(struct store *s, struct conn *c)
{
	uint8_t addr[16];
	uint64_t g, size = 0, version = 0;
	bool put = c->req.method == STORE_PUT;
	c->close_after = c->req.close || route_lost(s, c);
	c->former = false;
	c->logput = false;
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
		/* a read of a key this pod held before the map changed, while the routes
		 * still bring it here (they move after the map): answered from what is here */
		const uint8_t *body;
		int fd = -ENOENT;
		if (!put && c->req.method != STORE_DELETE && s->has_old && !route_current(s, c) &&
		    key_mine_in(s, &s->old, c)) {
			store_object_name(g, c->req.key, c->req.key_len, c->objname);
			fd = object_open(s, c, &size, &version, &body);
			c->former = true;
		}
		if (fd >= 0) {
			object_reply(s, c, fd, size, version, body);
			return;
		}
		misdirected(s, c, g, addr, put); /* a PUT's body is not read: close */
		return;
	}
	if (c->req.acked_len && http_list_has(c->req.acked, c->req.acked_len, s->o->id)) {
		respond(c, 208, NULL, put); /* the client counted this pod already */
		return;
	}
	store_object_name(g, c->req.key, c->req.key_len, c->objname);
	if (put && s->o->log_max && c->req.body_len <= s->o->log_max) {
		/* small: buffered, then appended to the log with its group (commit_run) */
		c->logbuf = malloc(c->req.body_len ? c->req.body_len : 1);
		if (!c->logbuf) {
			respond(c, 500, NULL, true);
			return;
		}
		c->loglen = 0;
		c->logput = true;
		c->body_left = c->req.body_len;
		c->st = C_BODY;
		c->deadline_ms = phase_deadline(s, c->body_left);
		if (c->req.expect_100)
			out_add(c, "HTTP/1.1 100 Continue\r\n\r\n");
		return;
	}
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
		object_delete(s, c);
		return;
	}
	const uint8_t *body;
	int fd = object_open(s, c, &size, &version, &body);
	/* a miss reads through during a move, unless the key was deleted here since */
	if (fd == -ENOENT && migrating(s) && !store_tomb_get(s->tombfd, c->objname, NULL, NULL)) {
		fetch_plan(s, c);
		job_add(s, c, JOB_FETCH);
		return;
	}
	object_reply(s, c, fd, size, version, body);
}

/* Answers a GET or HEAD from the object object_open gave (fd, or its error). */
static void object_reply(struct store *s, struct conn *c, int fd, uint64_t size, uint64_t version,
                         const uint8_t *body)
{
	if (fd < 0) {
		/* a miss deleted here says when (X-Peak-Deleted): a former holder of the key
		 * asking before it drops its copy (repair.h) learns that an older copy is
		 * superseded, not lacking */
		char extra[48] = "";
		uint64_t t = fd == -ENOENT ? store_tomb_get(s->tombfd, c->objname, NULL, NULL) : 0;
		if (t)
			snprintf(extra, sizeof(extra), "X-Peak-Deleted: %" PRIu64 "\r\n", t);
		respond(c, fd == -ENOENT ? 404 : 500, extra, false);
		return;
	}
	c->close_after = c->req.close || route_lost(s, c);
	count(c, 200);
	out_add(c,
	        "HTTP/1.1 200 OK\r\nContent-Length: %" PRIu64
	        "\r\nContent-Type: application/octet-stream\r\nX-Peak-Pod: %s\r\n"
	        "X-Peak-Version: %" PRIu64 "\r\n%s%s%s\r\n",
	        size, c->pod, version, c->former ? "X-Peak-Former: 1\r\n" : "", routes_take(c),
	        c->close_after ? "Connection: close\r\n" : "");
	if (c->req.method == STORE_GET && size && body && c->outlen + size < sizeof(c->out)) {
		memcpy(c->out + c->outlen, body, size); /* one send for head and body */
		c->outlen += size;
		atomic_fetch_add(&stats.bytes_out, size);
		close(fd);
	} else if (c->req.method == STORE_GET && size) {
		c->objfd = fd;
		c->objleft = size;
	} else {
		close(fd);
	}
	c->st = C_SEND;
	c->deadline_ms = phase_deadline(s, size);
}

/* A log PUT's body is whole: the small PUTs pipelined behind it whose heads and bodies are
 * in the input buffer already join it (up to MORE_MAX), so they go to the log in the same
 * group, one flush, rather than one group each as the connection takes them in turn. Only
 * PUTs this pod takes without a word (its key, no X-Peak-Acked, no Expect, not closing)
 * join; the first that does not, and what follows it, wait for their turn. */
static void more_take(struct store *s, struct conn *c)
{
	size_t off = 0;
	if (c->close_after)
		return;
	while (c->nmore < MORE_MAX && off < c->inlen) {
		struct store_req q;
		long n = store_req_parse(c->in + off, c->inlen - off, s->o->max_body, &q);
		if (n <= 0 || q.method != STORE_PUT || q.list || q.close || q.expect_100 ||
		    q.acked_len || q.body_len > s->o->log_max ||
		    q.body_len > c->inlen - off - (size_t)n)
			break;
		uint8_t addr[16];
		int set[STORE_WALK_MAX];
		struct ssa_req sq = {
		    .src = c->peer, .object = q.key, .object_len = q.key_len, .replica = 0};
		int64_t g = ssa_compute(&s->space, &sq, addr) ? -1 : ssa_slice_of(&s->space, addr);
		if (g < 0)
			break;
		bool mine = false;
		int k = store_key_replicas(&s->space, &s->a, s->replicas, q.key, q.key_len, set);
		for (int i = 0; i < k; i++)
			mine |= set[i] == s->me;
		char name[STORE_NAME_MAX];
		store_object_name((uint64_t)g, q.key, q.key_len, name);
		/* a key twice in one group: the second is answered in its turn (204) */
		bool again = !strcmp(name, c->objname);
		for (unsigned i = 0; i < c->nmore && !again; i++)
			again = !strcmp(name, c->more[i].objname);
		uint8_t *body = mine && !again ? malloc(q.body_len ? q.body_len : 1) : NULL;
		if (!body)
			break;
		struct more_put *m = &c->more[c->nmore++];
		memcpy(m->objname, name, sizeof(name));
		memcpy(m->key, q.key, q.key_len);
		m->key_len = q.key_len;
		memcpy(body, c->in + off + n, q.body_len);
		m->body = body;
		m->body_len = q.body_len;
		m->existed = false;
		atomic_fetch_add(&stats.bytes_in, q.body_len);
		atomic_fetch_add(&stats.joined, 1);
		off += (size_t)n + q.body_len;
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
}

/* The whole body is in the temp file: the commit thread makes it the object, durably
 * (commit_run), and the reply waits for that (job_finish). */
static void body_done(struct store *s, struct conn *c)
{
	if (c->logput)
		more_take(s, c);
	job_add(s, c, JOB_COMMIT);
}

/* The small PUTs of the batch (their bodies buffered) are appended to the log with one
 * write and one fdatasync (slog_append); sets their results and existed. */
static void commit_log(struct store *s, struct work_job *batch)
{
	/* the commit thread's alone (one thread): a batch and the PUTs pipelined behind each */
	static struct slog_put p[COMMIT_BATCH * (1 + MORE_MAX)];
	static struct conn *cs[COMMIT_BATCH];
	size_t n = 0, nc = 0;
	for (struct work_job *j = batch; j && nc < COMMIT_BATCH; j = j->next) {
		struct conn *c = conn_of(j);
		if (!c->logput)
			continue;
		cs[nc++] = c;
		p[n++] = (struct slog_put){.name = c->objname,
		                           .key = c->req.key,
		                           .key_len = c->req.key_len,
		                           .body = c->logbuf,
		                           .body_len = c->loglen};
		for (unsigned i = 0; i < c->nmore; i++)
			p[n++] = (struct slog_put){.name = c->more[i].objname,
			                           .key = c->more[i].key,
			                           .key_len = c->more[i].key_len,
			                           .body = c->more[i].body,
			                           .body_len = c->more[i].body_len};
	}
	if (!n)
		return;
	int err = slog_append(&s->log, p, n);
	n = 0;
	for (size_t i = 0; i < nc; i++) {
		struct conn *c = cs[i];
		c->job.result = err;
		c->existed = p[n++].existed;
		free(c->logbuf);
		c->logbuf = NULL;
		for (unsigned k = 0; k < c->nmore; k++) {
			c->more[k].existed = p[n++].existed;
			free(c->more[k].body);
			c->more[k].body = NULL;
		}
	}
}

/* Group commit, on the commit thread: the small PUTs go to the log (commit_log), one
 * flush for them all. The large ones' temp files are flushed together (their
 * writeback started at once, then each fsync waits for its own; on a journalling file
 * system the first one's commit carries the others' inodes), renamed over their names, and
 * the directory synced once for all the renames. So n PUTs that finished together cost n
 * file flushes and one directory flush, not 2n flushes, and each is acknowledged only
 * after both: after a crash an object is
 * whole or absent, and an acknowledged one is there. Sets each job's result: 0, or -errno
 * (the temp file gone). */
static void commit_run(struct work_queue *q, struct work_job *batch, void *arg)
{
	struct store *s = arg;
	bool renamed = false, tombs = false;
	/* a DELETE's tombstone made after this read is newer than these PUTs: it stays */
	bool tombs_maybe = atomic_load(&s->repair.tombs);
	(void)q;
	for (struct work_job *j = batch; j; j = j->next)
		if (!conn_of(j)->logput)
			sync_file_range(conn_of(j)->tmpfd, 0, 0, SYNC_FILE_RANGE_WRITE);
	commit_log(s, batch);
	for (struct work_job *j = batch; j; j = j->next) {
		struct conn *c = conn_of(j);
		if (c->logput)
			continue; /* done above */
		j->result = fsync(c->tmpfd) == -1 ? -errno : 0;
		if (close(c->tmpfd) == -1 && !j->result)
			j->result = -errno;
		c->tmpfd = -1;
		c->log_over = slog_has(&s->log, c->objname);
		c->existed = c->log_over || !faccessat(s->dirfd, c->objname, F_OK, 0);
		if (!j->result)
			atomic_store(&s->log.files, true);
		if (!j->result && renameat(s->dirfd, c->tmpname, s->dirfd, c->objname) == -1)
			j->result = -errno;
		if (j->result)
			unlinkat(s->dirfd, c->tmpname, 0);
		renamed |= !j->result;
	}
	int err = renamed && fsync(s->dirfd) == -1 ? -errno : 0;
	if (renamed)
		atomic_fetch_add(&stats.dir_syncs, 1);
	for (struct work_job *j = batch; j; j = j->next) {
		struct conn *c = conn_of(j);
		if (!j->result && !c->logput)
			j->result = err;
		if (!j->result && !c->logput && c->log_over) {
			/* a large PUT over a log object, durable now: the log's copy goes */
			int k = slog_del(&s->log, c->objname, true);
			if (k && k != -ENOENT)
				j->result = k;
		}
		if (!j->result)
			atomic_fetch_add(&stats.commits, 1);
		/* put again after a delete: the tombstone goes once the object is durable */
		if (!j->result && tombs_maybe && !unlinkat(s->tombfd, conn_of(j)->objname, 0))
			tombs = true;
		for (unsigned k = 0; !j->result && k < c->nmore; k++) {
			atomic_fetch_add(&stats.commits, 1);
			if (tombs_maybe && !unlinkat(s->tombfd, c->more[k].objname, 0))
				tombs = true;
		}
	}
	if (tombs)
		fsync(s->tombfd);
}

/* The loop takes back a connection whose job is done and goes on with its request. */
static void job_finish(struct store *s, struct conn *c)
{
	c->st = C_HEAD; /* out of C_WAIT; the reply below sets the real state */
	if (c->kind == JOB_COMMIT) {
		unsigned more = c->nmore;
		c->nmore = 0; /* their bodies went with the commit (commit_log) */
		if (c->job.result) {
			log_rl(&s->rl, LOG_ERR, "store: commit: %s", strerror(-c->job.result));
			respond(c, 500, NULL, true);
			return;
		}
		if (!c->existed)
			atomic_fetch_add(&stats.objects, 1);
		respond(c, c->existed ? 204 : 201, NULL, false);
		for (unsigned k = 0; k < more; k++) { /* the pipelined ones, in order */
			if (!c->more[k].existed)
				atomic_fetch_add(&stats.objects, 1);
			respond(c, c->more[k].existed ? 204 : 201, NULL, false);
		}
		return;
	}
	uint64_t size = 0, version = 0;
	const uint8_t *body = NULL;
	/* the object may be here whatever the fetch gave: the walk, another read-through or
	 * a former holder's drop (whose HEAD here reads it through, repair.h) can store it
	 * while the fetch runs, and that holder then drops its copy and answers the fetch
	 * 404; so the disk decides, not the fetch's result */
	int fd = object_open(s, c, &size, &version, &body);
	if (fd < 0 && c->job.result && c->job.result != -ENOENT)
		log_rl(&s->rl, LOG_WARNING, "store: read-through: %s", strerror(-c->job.result));
	object_reply(s, c, fd, size, version, body);
}

/* Writes n body bytes to the temp file; false (and a 500 queued) on a disk error. */
static bool body_write(struct store *s, struct conn *c, const uint8_t *p, size_t n)
{
	if (c->logbuf) {
		memcpy(c->logbuf + c->loglen, p, n); /* n <= body_left: the request's length */
		c->loglen += n;
		c->body_left -= n;
		atomic_fetch_add(&stats.bytes_in, n);
		return true;
	}
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
	size_t want = sizeof(c->in) - c->inlen;
	if (c->rd_empty)
		return -EAGAIN;
	ssize_t k = recv(c->fd, c->in + c->inlen, want, 0);
	if (k == -1)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	c->inlen += (size_t)k;
	c->rd_empty = k > 0 && (size_t)k < want && !c->rd_hup;
	return k;
}

/* Runs the connection as far as its socket allows (edge-triggered: until EAGAIN). */
static void conn_run(struct store *s, struct conn *c, uint64_t slot)
{
	for (unsigned turn = 0; !c->dead && c->st != C_WAIT; turn++) {
		if (turn == 64) {
			/* fair to the others: re-arming makes epoll report it again if ready */
			struct epoll_event ev = {
			    .events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP, .data.u64 = slot};
			epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
			return;
		}
		if (c->st == C_SEND && !c->objleft && !c->close_after && c->inlen &&
		    c->outlen + HEAD_CAP + SMALL_BODY <= sizeof(c->out)) {
			/* a pipelined request follows: its reply goes out with this one */
			c->held = true;
			atomic_fetch_add(&stats.held, 1);
			c->st = C_HEAD;
			c->deadline_ms = phase_deadline(s, 0);
		}
		if (c->st == C_SEND || (c->outlen && !c->held)) {
			c->held = false;
			int r = send_some(c);
			if (r < 0) {
				c->dead = true;
				return;
			}
			if (!r)
				return;
			if (c->st == C_SEND) {
				if (c->close_after && !c->linger && !c->inlen) {
					/* the request was read whole and nothing follows:
					 * closing sends a FIN, not a reset */
					c->dead = true;
					return;
				}
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
				if (c->st != C_SEND || c->objleft)
					c->held = false; /* no reply to join: send what waits */
				continue;
			}
			ssize_t k = fill(c);
			if (k == -EAGAIN && c->held) {
				c->held = false; /* nothing more to answer now: send the replies */
				continue;
			}
			if (k == -EAGAIN)
				return;
			if (k <= 0) {
				if (c->outlen) /* the replies to what came before the EOF */
					(void)send_some(c);
				c->dead = true; /* EOF or error between requests or mid-head */
			}
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
			if (c->rd_empty)
				return;
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
			c->rd_empty = (size_t)k < want && !c->rd_hup;
			if (!body_write(s, c, iobuf, (size_t)k))
				break;
		}
		if (c->st == C_BODY && c->body_left)
			continue;
		if (c->st == C_BODY && !c->body_left)
			body_done(s, c);
	}
	/* replies held for pipelined requests go before the wait (a broken connection shows
	 * when the job's reply is sent: the job holds the connection till then) */
	if (c->st == C_WAIT && c->outlen && !c->dead)
		(void)send_some(c);
}

/* Cuts off connections past their phase's deadline: 408 to a request half read. */
static void sweep(struct store *s, uint64_t now)
{
	for (unsigned i = 0; i < s->o->max_conns; i++) {
		struct conn *c = s->conns[i];
		if (!c || c->st == C_WAIT || now < c->deadline_ms)
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

static uint64_t tomb_ttl_ms(const struct store_opts *o)
{
	return (uint64_t)(o->tomb_ttl_s ? o->tomb_ttl_s : STORE_TOMB_DEF_TTL_S) * 1000;
}

/* How often tombstones are expired: half their lifetime, from SWEEP_MS to a minute. */
static uint64_t tomb_sweep_every_ms(const struct store_opts *o)
{
	uint64_t h = tomb_ttl_ms(o) / 2;
	return h < SWEEP_MS ? SWEEP_MS : h > 60000 ? 60000 : h;
}

/* Removes what a crash left: temp files of PUTs that never finished; sets *files if an
 * object file is there. */
static int data_clean(int dirfd, atomic_bool *files)
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
		else if (object_name_ok(e->d_name)) {
			atomic_store(files, true);
			atomic_fetch_add(&stats.objects, 1);
		}
	}
	closedir(d);
	if (n)
		fsync(dirfd);
	return n;
}

/* Whether the tombstone directory holds a tombstone (a name not starting with '.'); true
 * when it cannot be read, so PUTs go on removing theirs. */
static bool tombs_any(int tombfd)
{
	int fd = dup(tombfd);
	DIR *d = fd == -1 ? NULL : fdopendir(fd);
	bool any = !d;
	if (fd != -1 && !d)
		close(fd);
	if (d) {
		rewinddir(d); /* the dup shares tombfd's position */
		for (struct dirent *e; !any && (e = readdir(d));)
			any = e->d_name[0] != '.';
		closedir(d);
	}
	return any;
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

/* Logs the prefixes of this pod's slices, one line each (what routes toward it), and
 * keeps the first that fit in s->routes_hdr. */
static void log_blocks(struct store *s)
{
	struct assign_block b[64];
	size_t n = assign_blocks(&s->a, (unsigned)s->me, b, 64), hl;
	hl = (size_t)snprintf(s->routes_hdr, sizeof(s->routes_hdr), "X-Peak-Routes:");
	for (size_t i = 0; i < n && i < 64; i++) {
		struct prefix p;
		char text[PREFIX_STRLEN];
		if (assign_block_prefix(&s->space, &b[i], &p))
			continue;
		log_msg(LOG_INFO, "store: %s holds %s", s->o->id, prefix_print(&p, text));
		size_t tl = strlen(text);
		if (hl + 1 + tl + 3 <= sizeof(s->routes_hdr)) {
			s->routes_hdr[hl++] = ' ';
			memcpy(s->routes_hdr + hl, text, tl);
			hl += tl;
		}
	}
	if (hl == strlen("X-Peak-Routes:") || !s->map_live)
		s->routes_hdr[0] = 0; /* no slices here, or a static map: no line */
	else
		memcpy(s->routes_hdr + hl, "\r\n", 3);
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
		struct conn *c = i < s->o->max_conns ? s->pool : NULL;
		if (c) {
			s->pool = c->pool_next;
			s->npool--;
		} else if (i < s->o->max_conns) {
			c = malloc(sizeof(*c));
		}
		if (!c) {
			static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
			                           "Content-Length: 0\r\nConnection: close\r\n\r\n";
			(void)!send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
			close(fd);
			continue;
		}
		memset(c, 0, offsetof(struct conn, in));
		/* a reply is a head then its body (sendfile): with Nagle the body waits for
		 * the head's ACK, which a keep-alive peer (a proxy) delays by up to 40 ms */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		c->slot = i;
		c->timeout_ms = s->o->timeout_ms;
		c->pod = s->o->id;
		c->routes = s->routes_hdr;
		atomic_fetch_add(&stats.conns, 1);
		c->tmpfd = c->objfd = -1;
		sockaddr_to_in6((struct sockaddr *)&peer, c->peer);
		struct sockaddr_in6 local;
		socklen_t ll = sizeof(local);
		c->local_slice = -1;
		if (!getsockname(fd, (struct sockaddr *)&local, &ll) &&
		    local.sin6_family == AF_INET6)
			c->local_slice = ssa_slice_of(&s->space, local.sin6_addr.s6_addr);
		c->deadline_ms = phase_deadline(s, 0);
		s->conns[i] = c;
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP,
		                         .data.u64 = i};
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
		/* the request is usually in already: no wait for epoll to say so */
		conn_run(s, c, i);
		if (c->dead) {
			conn_free(s, c);
			s->conns[i] = NULL;
		}
	}
}

/* Moves the pod to the controller's map own (per slice, the owner's index in the service's
 * endpoints, or -1). The map before becomes the old one, and the walk starts again (it
 * pulls what this pod now holds and lacks: the slices it gained, from their old owners),
 * with misses read through from the old holders until it is done; so a slice the
 * controller moves here migrates with no operator step. A map equal to the one in force
 * changes nothing. Waits for the walk under way to stop (at most a request's timeout). */
static void map_apply(struct store *s, const int32_t *own)
{
	struct assign next;
	bool same = true;
	uint32_t was = 0, now = 0;
	if (assign_copy(&next, &s->a)) {
		log_msg(LOG_ERR, "store: the controller's map: out of memory; kept the old one");
		return;
	}
	for (unsigned k = 0; k < next.nep; k++)
		next.ep[k].count = 0;
	for (uint32_t g = 0; g < next.nslices; g++) {
		int32_t o = own[g] < 0 ? ASSIGN_NONE : s->slot[own[g]];
		same &= next.owner[g] == o;
		was += s->a.owner[g] == s->me;
		now += o == s->me;
		next.owner[g] = o;
		if (o != ASSIGN_NONE)
			next.ep[o].count++;
	}
	if (!s->map_live) {
		s->map_live = true;
		if (same)
			log_blocks(s); /* the routes line, now that the map is the controller's */
	}
	if (same) {
		assign_fini(&next);
		return;
	}
	store_repair_stop(&s->repair);
	if (s->has_old)
		assign_fini(&s->old);
	s->old = s->a;
	s->a = next;
	s->has_old = true;
	log_msg(LOG_INFO, "store: %s: new map from the controller: %u slice(s) here (were %u)",
	        s->o->id, now, was);
	log_blocks(s);
	/* kept connections to the slices lost go now (their next request would come here by a
	 * route that moves); a busy one closes after its reply (route_lost) */
	for (unsigned i = 0; i < s->o->max_conns; i++) {
		struct conn *c = s->conns[i];
		if (c && c->st == C_HEAD && !c->inlen && route_lost(s, c)) {
			conn_free(s, c);
			s->conns[i] = NULL;
		}
	}
	s->repair.a = &s->a;
	s->repair.old = &s->old;
	/* the objects this map took away are dropped after the walk, once confirmed */
	s->repair.drop = s->o->drop_delay_s >= 0;
	s->repair.drop_delay_ms = s->o->drop_delay_s >= 0 ? (uint64_t)s->o->drop_delay_s * 1000 : 0;
	atomic_store(&s->repair.done, false);
	atomic_store(&s->repair.stop, false);
	atomic_store(&s->repair.peers, 0); /* of this walk */
	int r = store_repair_start(&s->repair);
	if (r)
		log_msg(LOG_ERR, "store: migration: %s", strerror(-r));
}

/* Takes back the connections whose jobs q finished and runs them on. */
static void jobs_finish(struct store *s, struct work_queue *q)
{
	for (struct work_job *j = work_done(q), *next; j; j = next) {
		next = j->next;
		struct conn *c = conn_of(j);
		unsigned i = c->slot;
		job_finish(s, c);
		conn_run(s, c, i);
		if (c->dead) {
			conn_free(s, c);
			s->conns[i] = NULL;
		}
	}
}

int store_serve(const struct store_opts *o)
{
	struct store s = {.o = o, .dirfd = -1, .tombfd = -1};
	s.commit_next_tail = &s.commit_next;
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
	if (s.dirfd != -1 && mkdirat(s.dirfd, "tomb", 0755) == -1 && errno != EEXIST) {
		log_msg(LOG_ERR, "store: data directory %s/tomb: %s", o->data, strerror(errno));
		goto out;
	}
	if (s.dirfd != -1)
		s.tombfd = openat(s.dirfd, "tomb", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	/* the log's index first (its torn tail cut), so the rest sees its objects */
	if (s.tombfd != -1 && (r = slog_open(&s.log, s.dirfd, o->log_segment))) {
		log_msg(LOG_ERR, "store: data directory %s/log: %s", o->data, strerror(-r));
		goto out;
	}
	/* what a crash left half done between a tombstone and its object is settled first */
	if (s.tombfd == -1 ||
	    store_tomb_expire(&s.log, s.tombfd, store_now_ms(), tomb_ttl_ms(o)) < 0 ||
	    (r = data_clean(s.dirfd, &s.log.files)) < 0) {
		log_msg(LOG_ERR, "store: data directory %s: %s", o->data, strerror(errno));
		goto out;
	}
	if (r)
		log_msg(LOG_INFO, "store: removed %d unfinished upload(s)", r);
	atomic_fetch_add(&stats.objects, (int64_t)slog_count(&s.log));
	stats.log = &s.log;
	log_msg(LOG_INFO,
	        "store: log: %zu object(s) in %zu segment(s), bodies up to %" PRIu64
	        " byte(s) go to it",
	        slog_count(&s.log), s.log.nsegs, o->log_max);
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
	if ((r = work_start(&s.commit, 1, COMMIT_BATCH, commit_run, &s)) ||
	    (r = work_start(&s.fetch, FETCH_THREADS, 1, fetch_run, &s)) ||
	    (r = slog_compact_start(&s.log))) {
		log_msg(LOG_ERR, "store: cannot start the commit, fetch and compaction threads: %s",
		        strerror(-r));
		goto out;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	ev.data.u64 = UINT64_MAX - 1;
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
	ev.data.u64 = UINT64_MAX - 2;
	epoll_ctl(ep, EPOLL_CTL_ADD, s.commit.efd, &ev);
	ev.data.u64 = UINT64_MAX - 3;
	epoll_ctl(ep, EPOLL_CTL_ADD, s.fetch.efd, &ev);
	char name[1024];
	if (dns_name_print(&s.svc->name, name, sizeof(name)) < 0)
		strcpy(name, "?");
	/* the blocks first: whoever waits for "serving" finds them in the log */
	log_blocks(&s);
	log_msg(LOG_INFO, "store: %s serving %s on %s, data %s, replicas %u, %zu slice block(s)",
	        o->id, name, where, o->data, s.replicas, assign_routes(&s.a, (unsigned)s.me));
	if (o->metrics && !(ms = metrics_start(o->metrics, stats_render, &stats)))
		goto out;
	/* the repair's settings serve read-throughs too, and a controller's map may start a
	 * walk later (map_apply) */
	s.repair = (struct store_repair){.svc = s.svc,
	                                 .space = &s.space,
	                                 .a = &s.a,
	                                 .old = s.has_old ? &s.old : NULL,
	                                 .slot = s.slot,
	                                 .me = s.me,
	                                 .replicas = s.replicas,
	                                 .dirfd = s.dirfd,
	                                 .log = &s.log,
	                                 .tombfd = s.tombfd,
	                                 .id = o->id,
	                                 .timeout_ms = o->timeout_ms,
	                                 .pull_rate = o->pull_rate};
	atomic_store(&s.repair.tombs, tombs_any(s.tombfd));
	if (s.replicas > 1 || s.has_old || o->controller)
		stats.repair = &s.repair;
	if ((s.replicas > 1 || s.has_old) && (r = store_repair_start(&s.repair)))
		log_msg(LOG_ERR, "store: repair: %s", strerror(-r));
	if (o->controller) {
		char err[256];
		if (o->key_file && ctlauth_key_load(o->key_file, &s.key, err, sizeof(err))) {
			log_msg(LOG_ERR, "store: --key-file: %s", err);
			ret = 2;
			goto out;
		}
		snprintf(s.node, sizeof(s.node), "store-%s", o->id);
		s.ctl = (struct store_ctl){.addr = o->controller,
		                           .key = o->key_file ? &s.key : NULL,
		                           .node = o->node ? o->node : s.node,
		                           .svc = s.svc,
		                           .nslices = s.a.nslices,
		                           .efd = -1};
		if ((r = store_ctl_start(&s.ctl))) {
			log_msg(LOG_ERR, "store: controller link: %s", strerror(-r));
			goto out;
		}
		ev.data.u64 = UINT64_MAX - 4;
		epoll_ctl(ep, EPOLL_CTL_ADD, s.ctl.efd, &ev);
	}
	notify_ready("%s serving %s on %s", o->id, name, where);
	uint64_t last_sweep = peak_mono_ms();
	s.tomb_sweep_ms = last_sweep;
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
			if (d == UINT64_MAX - 4) {
				int32_t *own = store_ctl_take(&s.ctl);
				if (own)
					map_apply(&s, own);
				free(own);
				continue;
			}
			if (d == UINT64_MAX - 2 || d == UINT64_MAX - 3) {
				jobs_finish(&s, d == UINT64_MAX - 2 ? &s.commit : &s.fetch);
				continue;
			}
			struct conn *c = s.conns[d];
			if (!c)
				continue;
			c->rd_empty = false; /* new bytes, or a hang-up: read again */
			c->rd_hup |= (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
			conn_run(&s, c, d);
			if (c->dead) {
				conn_free(&s, c);
				s.conns[d] = NULL;
			}
		}
		commit_flush(&s);
		uint64_t now = peak_mono_ms();
		if (now - last_sweep >= SWEEP_MS) {
			last_sweep = now;
			sweep(&s, now);
		}
		if (now - s.tomb_sweep_ms >= tomb_sweep_every_ms(o)) {
			s.tomb_sweep_ms = now;
			int k = store_tomb_expire(&s.log, s.tombfd, store_now_ms(), tomb_ttl_ms(o));
			if (k > 0)
				log_msg(LOG_INFO, "store: %d tombstone(s) expired", k);
		}
	}
	log_msg(LOG_INFO, "store: stopped");
	ret = 0;
out:
	if (ms)
		metrics_stop(ms);
	store_ctl_stop(&s.ctl);
	ctlauth_key_wipe(&s.key);
	work_stop(&s.commit); /* the PUTs under way are committed, not cut */
	work_stop(&s.fetch);
	store_repair_stop(&s.repair);
	if (s.conns)
		for (unsigned k = 0; k < o->max_conns; k++)
			if (s.conns[k])
				conn_free(&s, s.conns[k]);
	free(s.conns);
	while (s.pool) {
		struct conn *c = s.pool;
		s.pool = c->pool_next;
		free(c);
	}
	if (ep != -1)
		close(ep);
	if (sfd >= 0)
		close(sfd);
	if (lfd != -1)
		close(lfd);
	stats.log = NULL;
	slog_compact_stop(&s.log);
	slog_close(&s.log);
	if (s.tombfd != -1)
		close(s.tombfd);
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
