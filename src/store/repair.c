/* The repair thread; see repair.h. */
#define _GNU_SOURCE /* renameat2 */
#include "repair.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "peak/http.h"
#include "../sys/log.h"
#include "client.h"
#include "store.h"

enum {
	PAGE = STORE_LIST_DEF,
	/* a page's body at its longest: a name, a space, a key encoded, a newline per object */
	PAGE_BODY_MAX = PAGE * (STORE_NAME_MAX + 3 * STORE_KEY_MAX + 2),
	ROUNDS = 5, /* tries per peer, RETRY_MS apart */
	RETRY_MS = 1000,
};

static void peer_host(const struct store_repair *r, unsigned e, char *out, size_t cap)
{
	char a[INET6_ADDRSTRLEN];
	inet_ntop(AF_INET6, r->svc->ep[e].addr, a, sizeof(a));
	snprintf(out, cap, "[%s]:%u", a, r->svc->port);
}

static int peer_connect(struct store_repair *r, unsigned e)
{
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6,
	                          .sin6_port = htons((uint16_t)r->svc->port)};
	struct timeval tv = {.tv_sec = r->timeout_ms / 1000,
	                     .tv_usec = (r->timeout_ms % 1000) * 1000};
	memcpy(&sa.sin6_addr, r->svc->ep[e].addr, 16);
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	atomic_fetch_add(&r->conns, 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* One request to endpoint e on the kept connection *sock (-1: none yet), opened here if
 * needed and kept there if the pod keeps it (else closed, *sock -1). A kept connection the
 * pod closed before answering (its idle timeout) is replaced once. Returns as
 * store_call_run, or a connect's -errno. */
static int peer_call(struct store_repair *r, unsigned e, int *sock, struct store_call *call)
{
	char host[INET6_ADDRSTRLEN + 8];
	int ret = -EIO;
	peer_host(r, e, host, sizeof(host));
	call->host = host;
	call->keep = true;
	for (int attempt = 0; attempt < 2; attempt++) {
		bool reused = *sock >= 0;
		if (!reused && (*sock = peer_connect(r, e)) < 0) {
			ret = *sock;
			*sock = -1;
			break;
		}
		ret = store_call_run(*sock, call);
		if (ret || !call->reusable) {
			close(*sock);
			*sock = -1;
		}
		if (!(reused && ret && !call->replied && !call->body_out))
			break;
	}
	call->host = NULL;
	return ret;
}

/* Fetches one listing page into buf (its body, NUL-terminated, length in *n). Returns 0,
 * or -errno / -EBADMSG. */
static int page_get(struct store_repair *r, unsigned e, const char *after, char *buf, size_t cap,
                    size_t *n, bool *more)
{
	char head[512], host[INET6_ADDRSTRLEN + 8];
	struct http_resp resp;
	size_t len = 0;
	int ret = -EBADMSG;
	peer_host(r, e, host, sizeof(host));
	int fd = peer_connect(r, e);
	if (fd < 0)
		return fd;
	int hn = snprintf(head, sizeof(head),
	                  "GET /s/?after=%s&limit=%d HTTP/1.1\r\nHost: %s\r\n"
	                  "Connection: close\r\n\r\n",
	                  after, PAGE, host);
	if (send(fd, head, (size_t)hn, MSG_NOSIGNAL) != hn) {
		ret = -errno;
		goto out;
	}
	long hl = 0;
	for (;;) {
		if (len == cap - 1)
			goto out; /* longer than a page can be */
		ssize_t k = recv(fd, buf + len, cap - 1 - len, 0);
		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0) {
			ret = k ? -errno : -EBADMSG;
			goto out;
		}
		len += (size_t)k;
		if (!hl) {
			hl = http_resp_head_parse((uint8_t *)buf, len, false, cap - 1, &resp);
			if (hl < 0)
				goto out;
			if (hl && resp.status != 200) {
				ret = -EPROTO;
				goto out;
			}
		}
		if (hl && len - (size_t)hl >= resp.body_len)
			break;
	}
	*more = memmem(buf, (size_t)hl, "X-Peak-More: 1\r\n", 16) != NULL;
	*n = resp.body_len;
	memmove(buf, buf + hl, *n);
	buf[*n] = 0;
	ret = 0;
out:
	close(fd);
	return ret;
}

int store_repair_pull_on(struct store_repair *r, unsigned e, const uint8_t *key, size_t kl,
                         const char *name, int *sock)
{
	static atomic_uint seq; /* the walk and the pod's read-through both pull */
	char tmp[40], ckey[STORE_KEY_MAX + 1];
	uint8_t h[6 + STORE_KEY_MAX] = {'P', 'K', 'S', '1', (uint8_t)(kl >> 8), (uint8_t)kl};
	int ret, fd = -1;
	uint64_t t0 = store_now_ms();
	memcpy(h + 6, key, kl);
	memcpy(ckey, key, kl);
	ckey[kl] = 0;
	snprintf(tmp, sizeof(tmp), ".tmp-repair-%u", atomic_fetch_add(&seq, 1) + 1);
	fd = openat(r->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1 || write(fd, h, 6 + kl) != (ssize_t)(6 + kl)) {
		ret = -errno;
		goto out;
	}
	struct store_call call = {.method = STORE_GET, .key = ckey, .infd = -1, .outfd = fd};
	ret = peer_call(r, e, sock, &call);
	if (!ret && (call.status != 200 || call.body_out != call.body_len))
		ret = call.status == 404 ? -ENOENT : -EPROTO;
	if (ret)
		goto out;
	/* the copy keeps the original's version, so tombstones compare with that */
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT},
	                         {.tv_sec = (time_t)(call.version / 1000),
	                          .tv_nsec = (long)(call.version % 1000) * 1000000}};
	if (call.version && futimens(fd, ts) == -1) {
		ret = -errno;
		goto out;
	}
	if (fsync(fd) == -1 || close(fd) == -1) {
		fd = -1;
		ret = -errno;
		goto out;
	}
	fd = -1;
	if (slog_has(r->log, name)) {
		ret = 0; /* a small PUT stored it meanwhile (slog.h): keep that */
		goto out;
	}
	atomic_store(&r->log->files, true);
	if (renameat2(r->dirfd, tmp, r->dirfd, name, RENAME_NOREPLACE) == -1) {
		ret = errno == EEXIST ? 0 : -errno; /* a PUT stored it meanwhile: keep that */
		goto out;
	}
	fsync(r->dirfd);
	if (slog_has(r->log, name)) {
		/* a small PUT landed between the look and the rename: it is the newer */
		unlinkat(r->dirfd, name, 0);
		ret = 0;
		goto out;
	}
	if (store_tomb_get(r->tombfd, name, NULL, NULL) >= t0) {
		/* a DELETE came while the object travelled: it wins */
		unlinkat(r->dirfd, name, 0);
		fsync(r->dirfd);
		ret = -ENOENT;
		goto out;
	}
	atomic_fetch_add(&r->pulled, 1);
	atomic_fetch_add(&r->bytes, call.body_out);
	ret = 1;
out:
	if (fd != -1)
		close(fd);
	if (ret != 1)
		unlinkat(r->dirfd, tmp, 0);
	return ret;
}

int store_repair_pull(struct store_repair *r, unsigned e, const uint8_t *key, size_t kl,
                      const char *name)
{
	int sock = -1, ret = store_repair_pull_on(r, e, key, kl, name, &sock);
	if (sock != -1)
		close(sock);
	return ret;
}

static bool in_set(const struct store_repair *r, const uint8_t *key, size_t kl)
{
	int set[STORE_WALK_MAX];
	int n = store_key_replicas(r->space, r->a, r->replicas, key, kl, set);
	for (int j = 0; j < n; j++)
		if (set[j] == r->me)
			return true;
	return false;
}

/* A peer listed name's tombstone of time t: a copy here older than it goes (this pod
 * missed the delete), and the tombstone is kept here too, so it spreads and expires with
 * the others. A copy put again after it stays. */
static void tomb_apply(struct store_repair *r, const char *name, const uint8_t *key, size_t kl,
                       uint64_t t)
{
	uint64_t v = store_object_version(r->log, name);
	if (v >= t)
		return;
	atomic_store(&r->tombs, true);
	int err = store_tomb_put(r->tombfd, name, key, kl, t);
	if (err) {
		log_msg(LOG_WARNING, "store: repair: tombstone %s: %s", name, strerror(-err));
		return;
	}
	if (v && !store_object_remove(r->log, name))
		atomic_fetch_add(&r->tombstoned, 1);
}

/* Walks endpoint e's listing to its end, pulling what this pod lacks. Returns true when
 * it reached the end; a listing that fails counts as a failure only if last. */
static bool peer_repair(struct store_repair *r, unsigned e, char *buf, bool last)
{
	char after[STORE_NAME_MAX] = "";
	uint64_t listed = 0, pulled = 0, failed = 0;
	bool more = true;
	const char *peer = r->svc->ep[e].id;
	int sock = -1; /* the pulls' kept connection to e: not one per object */
	for (unsigned page = 0; more && !atomic_load(&r->stop); page++) {
		size_t n;
		int err = page_get(r, e, after, buf, PAGE_BODY_MAX + 4096, &n, &more);
		if (err) {
			log_msg(LOG_WARNING, "store: repair: %s: listing after '%s': %s%s", peer,
			        after, strerror(-err), last ? "" : " (will retry)");
			if (last)
				atomic_fetch_add(&r->failed, 1);
			if (sock != -1)
				close(sock);
			return false;
		}
		for (char *line = buf, *nl; (nl = strchr(line, '\n')) && !atomic_load(&r->stop);
		     line = nl + 1) {
			*nl = 0;
			char *sp = strchr(line, ' ');
			uint8_t key[STORE_KEY_MAX];
			size_t kl;
			if (!sp || sp - line >= STORE_NAME_MAX)
				continue;
			*sp = 0;
			snprintf(after, sizeof(after), "%s", line);
			listed++;
			atomic_fetch_add(&r->listed, 1);
			/* "NAME KEY VERSION", or "NAME KEY TIME D" for a tombstone */
			char *ks = sp + 1, *vs = strchr(ks, ' '), *end = NULL;
			uint64_t v = 0;
			bool tomb = false;
			if (vs) {
				*vs = 0;
				v = strtoull(vs + 1, &end, 10);
				tomb = !strcmp(end, " D");
			}
			char name[STORE_NAME_MAX];
			if (store_key_decode((uint8_t *)ks, strlen(ks), key, &kl) ||
			    !in_set(r, key, kl))
				continue;
			store_object_name(0, key, kl, name); /* check the name is the key's */
			if (strcmp(name + 9, line + 9))
				continue;
			if (tomb) {
				tomb_apply(r, line, key, kl, v);
				continue;
			}
			uint64_t t;
			if (store_object_version(r->log, line) ||
			    ((t = store_tomb_get(r->tombfd, line, NULL, NULL)) && t >= v))
				continue; /* held, or deleted after that copy was written */
			atomic_fetch_add(&r->wanted, 1);
			int k = store_repair_pull_on(r, e, key, kl, line, &sock);
			if (k < 0 && k != -ENOENT) {
				failed++;
				atomic_fetch_add(&r->failed, 1);
			} else if (k > 0) {
				pulled++;
				unlinkat(r->tombfd, line, 0); /* the copy is newer than it */
			}
			atomic_fetch_add(&r->handled, 1);
			if (r->pull_rate)
				usleep(1000000 / r->pull_rate);
		}
		log_msg(LOG_INFO,
		        "store: %s: %s: page %u, listed %" PRIu64 ", pulled %" PRIu64
		        ", failed %" PRIu64 "; in all %" PRIu64 " object(s), %" PRIu64
		        " byte(s) pulled",
		        r->old ? "migration" : "repair", peer, page + 1, listed, pulled, failed,
		        (uint64_t)atomic_load(&r->pulled), (uint64_t)atomic_load(&r->bytes));
	}
	if (sock != -1)
		close(sock);
	if (!more)
		atomic_fetch_add(&r->peers, 1);
	return !more;
}

/* Sleeps ms, waking every 50 ms to see whether the thread is asked to stop; false if so. */
static bool nap(struct store_repair *r, uint64_t ms)
{
	for (uint64_t t = 0; t < ms && !atomic_load(&r->stop); t += 50)
		usleep(50 * 1000);
	return !atomic_load(&r->stop);
}

/* The objects' names, the log's then the data directory's files (malloc'ed,
 * STORE_NAME_MAX each), their count in *n; NULL with *n 0 if there are none or on an
 * error. */
static char (*obj_names(struct slog *l, size_t *n))[STORE_NAME_MAX]
{
	char(*v)[STORE_NAME_MAX] = slog_names(l, n);
	size_t cap = *n;
	int fd = dup(l->dirfd);
	DIR *d = fd == -1 ? NULL : fdopendir(fd);
	if (!d) {
		if (fd != -1)
			close(fd);
		return v;
	}
	rewinddir(d);
	for (struct dirent *e; (e = readdir(d));) {
		if (strlen(e->d_name) != 73 || e->d_name[8] != '-')
			continue; /* not an object: temps, the tombstone directory */
		if (*n == cap) {
			size_t c = cap ? 2 * cap : 256;
			void *m = realloc(v, c * sizeof(*v));
			if (!m)
				break;
			v = m;
			cap = c;
		}
		memcpy(v[(*n)++], e->d_name, 74);
	}
	closedir(d);
	return v;
}

/* Whether endpoint e holds key's object as new as this pod's copy (size bytes, version
 * ver): its HEAD answers 200 with a version above, or the same version and size, and not
 * as a former holder (X-Peak-Former): so two pods whose maps disagree never drop a key
 * each on the other's word. A 404 with a tombstone at least as new as the copy
 * (X-Peak-Deleted) counts too: the key was deleted since, and the copy is superseded (it
 * would otherwise stay here, asked about every minute, since the tombstone does not
 * spread to a pod outside the key's replica set). */
static bool held_by(struct store_repair *r, unsigned e, int *sock, const char *ckey, uint64_t size,
                    uint64_t ver)
{
	struct store_call call = {.method = STORE_HEAD, .key = ckey, .infd = -1, .outfd = -1};
	int ret = peer_call(r, e, sock, &call);
	if (!ret && call.status == 404 && call.deleted && call.deleted >= ver)
		return true;
	return !ret && call.status == 200 && !call.former &&
	       (call.version > ver || (call.version == ver && call.head_size == size));
}

/* One drop pass (repair.h): deletes each object here whose replica set under r->a has left
 * this pod and whose every holder confirms a copy. Returns how many it kept unconfirmed. */
static uint64_t drop_pass(struct store_repair *r, int *socks)
{
	size_t n = 0;
	uint64_t kept = 0, dropped = 0, bytes = 0;
	char(*names)[STORE_NAME_MAX] = obj_names(r->log, &n);
	for (size_t i = 0; i < n && !atomic_load(&r->stop); i++) {
		uint8_t key[STORE_KEY_MAX];
		char ckey[STORE_KEY_MAX + 1];
		size_t kl;
		uint64_t size, ver;
		int set[STORE_WALK_MAX];
		if (!store_object_info(r->log, names[i], key, &kl, &size, &ver) ||
		    memchr(key, 0, kl))
			continue;
		int k = store_key_replicas(r->space, r->a, r->replicas, key, kl, set);
		bool mine = false, confirmed = k > 0;
		for (int j = 0; j < k; j++)
			mine |= set[j] == r->me;
		if (mine)
			continue;
		memcpy(ckey, key, kl);
		ckey[kl] = 0;
		for (int j = 0; j < k && confirmed; j++) {
			unsigned e = 0;
			while (e < r->svc->nep && r->slot[e] != set[j])
				e++;
			confirmed = e < r->svc->nep && held_by(r, e, &socks[e], ckey, size, ver);
		}
		/* the copy the holders confirmed, not one written since */
		if (!confirmed || store_object_version(r->log, names[i]) != ver) {
			kept++;
			continue;
		}
		if (!store_object_drop(r->log, names[i])) {
			dropped++;
			bytes += size;
			atomic_fetch_add(&r->dropped, 1);
			atomic_fetch_add(&r->dropped_bytes, size);
		}
	}
	free(names);
	if (dropped)
		store_objects_flush(r->log);
	atomic_store(&r->unconfirmed, kept);
	if (dropped || kept)
		log_msg(LOG_INFO,
		        "store: drop: %" PRIu64 " object(s) no longer here dropped (%" PRIu64
		        " byte(s)), %" PRIu64 " kept until their holders confirm them",
		        dropped, bytes, kept);
	return kept;
}

/* After a walk under a new map: drop_delay_ms, then drop passes until nothing is left
 * unconfirmed, 1 s, 2 s, ... up to a minute apart, or the thread is stopped (a new map). */
static void drop_run(struct store_repair *r)
{
	int *socks = malloc((r->svc->nep ? r->svc->nep : 1) * sizeof(*socks));
	if (!socks) {
		log_msg(LOG_ERR, "store: drop: out of memory; moved objects kept");
		return;
	}
	for (unsigned e = 0; e < r->svc->nep; e++)
		socks[e] = -1;
	uint64_t wait_ms = 1000;
	if (nap(r, r->drop_delay_ms))
		while (drop_pass(r, socks) && nap(r, wait_ms))
			wait_ms = wait_ms < 60000 / 2 ? 2 * wait_ms : 60000;
	for (unsigned e = 0; e < r->svc->nep; e++)
		if (socks[e] != -1)
			close(socks[e]);
	free(socks);
}

static void *repair_main(void *arg)
{
	struct store_repair *r = arg;
	char *buf = malloc(PAGE_BODY_MAX + 4096);
	unsigned npeers = 0;
	bool *unrepaired = calloc(r->svc->nep ? r->svc->nep : 1, sizeof(*unrepaired));
	if (!unrepaired) {
		free(buf);
		buf = NULL;
	}
	for (unsigned e = 0; unrepaired && e < r->svc->nep; e++)
		if (r->slot[e] != r->me)
			unrepaired[e] = true, npeers++;
	/* a peer that cannot be listed (down, or starting with this pod) is tried again */
	for (unsigned round = 0; buf && round < ROUNDS && !atomic_load(&r->stop); round++) {
		bool left = false;
		for (unsigned e = 0; e < r->svc->nep; e++)
			left |= unrepaired[e];
		if (!left)
			break;
		if (round)
			for (unsigned t = 0; t < RETRY_MS / 50 && !atomic_load(&r->stop); t++)
				usleep(50 * 1000);
		for (unsigned e = 0; e < r->svc->nep; e++)
			if (unrepaired[e] && !atomic_load(&r->stop))
				unrepaired[e] = !peer_repair(r, e, buf, round + 1 == ROUNDS);
	}
	free(buf);
	free(unrepaired);
	log_msg(LOG_INFO,
	        "store: %s done: %" PRIu64 " object(s) pulled (%" PRIu64 " byte(s), %" PRIu64
	        " read through), %" PRIu64 " removed by tombstones, %" PRIu64 " listed, %" PRIu64
	        " failure(s), %" PRIu64 " of %u peer(s) walked",
	        r->old ? "migration" : "repair", (uint64_t)atomic_load(&r->pulled),
	        (uint64_t)atomic_load(&r->bytes), (uint64_t)atomic_load(&r->readthrough),
	        (uint64_t)atomic_load(&r->tombstoned), (uint64_t)atomic_load(&r->listed),
	        (uint64_t)atomic_load(&r->failed), (uint64_t)atomic_load(&r->peers), npeers);
	atomic_store(&r->done, true);
	if (r->drop && !atomic_load(&r->stop))
		drop_run(r);
	return NULL;
}

int store_repair_start(struct store_repair *r)
{
	int err = pthread_create(&r->thread, NULL, repair_main, r);
	if (err)
		return -err;
	r->started = true;
	return 0;
}

void store_repair_stop(struct store_repair *r)
{
	if (!r->started)
		return;
	atomic_store(&r->stop, true);
	pthread_join(r->thread, NULL);
	r->started = false;
}

/* -- tombstones (repair.h) -- */

enum { TOMB_HDR = 4 + 8 + 2 };

uint64_t store_now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

uint64_t store_tomb_get(int tombfd, const char *name, uint8_t *key, size_t *kl)
{
	uint8_t b[TOMB_HDR + STORE_KEY_MAX];
	uint64_t ms = 0;
	int fd = openat(tombfd, name, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return 0;
	ssize_t n = pread(fd, b, sizeof(b), 0);
	close(fd);
	if (n < TOMB_HDR || memcmp(b, "PKT1", 4))
		return 0;
	size_t len = (size_t)(b[12] << 8 | b[13]);
	if (!len || len > STORE_KEY_MAX || (size_t)n != TOMB_HDR + len)
		return 0; /* damaged: as if absent */
	for (int i = 0; i < 8; i++)
		ms = ms << 8 | b[4 + i];
	if (key) {
		memcpy(key, b + TOMB_HDR, len);
		*kl = len;
	}
	return ms;
}

int store_tomb_put(int tombfd, const char *name, const uint8_t *key, size_t kl, uint64_t ms)
{
	static atomic_uint seq; /* the pod's loop and the repair thread both write */
	uint8_t b[TOMB_HDR + STORE_KEY_MAX] = {'P', 'K', 'T', '1'};
	char tmp[40];
	int ret = 0, fd;
	if (!kl || kl > STORE_KEY_MAX)
		return -EINVAL;
	if (store_tomb_get(tombfd, name, NULL, NULL) >= ms)
		return 0; /* one as new is there */
	for (int i = 0; i < 8; i++)
		b[4 + i] = (uint8_t)(ms >> (56 - 8 * i));
	b[12] = (uint8_t)(kl >> 8);
	b[13] = (uint8_t)kl;
	memcpy(b + TOMB_HDR, key, kl);
	snprintf(tmp, sizeof(tmp), ".tmp-%u", atomic_fetch_add(&seq, 1) + 1);
	fd = openat(tombfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1)
		return -errno;
	if (write(fd, b, TOMB_HDR + kl) != (ssize_t)(TOMB_HDR + kl) || fsync(fd) == -1)
		ret = errno ? -errno : -EIO;
	if (close(fd) == -1 && !ret)
		ret = -errno;
	if (!ret && (renameat(tombfd, tmp, tombfd, name) == -1 || fsync(tombfd) == -1))
		ret = -errno;
	if (ret)
		unlinkat(tombfd, tmp, 0);
	return ret;
}

int store_tomb_expire(struct slog *l, int tombfd, uint64_t now_ms, uint64_t ttl_ms)
{
	int fd = dup(tombfd), n = 0;
	DIR *d = fd == -1 ? NULL : fdopendir(fd);
	bool synced = true;
	if (!d) {
		if (fd != -1)
			close(fd);
		return -errno;
	}
	rewinddir(d); /* the dup shares tombfd's position: a scan before left it at the end */
	for (struct dirent *e; (e = readdir(d));) {
		if (e->d_name[0] == '.') {
			if (!strncmp(e->d_name, ".tmp-", 5) && !unlinkat(tombfd, e->d_name, 0))
				synced = false;
			continue;
		}
		uint64_t t = store_tomb_get(tombfd, e->d_name, NULL, NULL);
		uint64_t v = store_object_version(l, e->d_name);
		bool put_again = v && v > t; /* a crash between a PUT's rename and its unlink */
		if (!t || t + ttl_ms < now_ms || put_again) {
			if (!unlinkat(tombfd, e->d_name, 0)) {
				synced = false;
				n += t && !put_again; /* expired (a damaged one is not counted) */
			}
		} else if (v && v < t) {
			store_object_remove(l, e->d_name); /* a crash between a DELETE's
			                                      tombstone and its removal */
		}
	}
	closedir(d);
	if (!synced)
		fsync(tombfd);
	return n;
}
