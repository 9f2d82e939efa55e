/* The repair thread; see repair.h. */
#define _GNU_SOURCE /* renameat2 */
#include "repair.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
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

static int peer_connect(const struct store_repair *r, unsigned e)
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
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static void peer_host(const struct store_repair *r, unsigned e, char *out, size_t cap)
{
	char a[INET6_ADDRSTRLEN];
	inet_ntop(AF_INET6, r->svc->ep[e].addr, a, sizeof(a));
	snprintf(out, cap, "[%s]:%u", a, r->svc->port);
}

/* Fetches one listing page into buf (its body, NUL-terminated, length in *n). Returns 0,
 * or -errno / -EBADMSG. */
static int page_get(const struct store_repair *r, unsigned e, const char *after, char *buf,
                    size_t cap, size_t *n, bool *more)
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

int store_repair_pull(struct store_repair *r, unsigned e, const uint8_t *key, size_t kl,
                      const char *name)
{
	static atomic_uint seq; /* the walk and the pod's read-through both pull */
	char tmp[40], host[INET6_ADDRSTRLEN + 8], ckey[STORE_KEY_MAX + 1];
	uint8_t h[6 + STORE_KEY_MAX] = {'P', 'K', 'S', '1', (uint8_t)(kl >> 8), (uint8_t)kl};
	int ret, fd = -1, sock = -1;
	memcpy(h + 6, key, kl);
	memcpy(ckey, key, kl);
	ckey[kl] = 0;
	snprintf(tmp, sizeof(tmp), ".tmp-repair-%u", atomic_fetch_add(&seq, 1) + 1);
	fd = openat(r->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1 || write(fd, h, 6 + kl) != (ssize_t)(6 + kl)) {
		ret = -errno;
		goto out;
	}
	if ((sock = peer_connect(r, e)) < 0) {
		ret = sock;
		goto out;
	}
	peer_host(r, e, host, sizeof(host));
	struct store_call call = {
	    .method = STORE_GET, .key = ckey, .host = host, .infd = -1, .outfd = fd};
	ret = store_call_run(sock, &call);
	if (!ret && (call.status != 200 || call.body_out != call.body_len))
		ret = call.status == 404 ? -ENOENT : -EPROTO;
	if (ret)
		goto out;
	if (fsync(fd) == -1 || close(fd) == -1) {
		fd = -1;
		ret = -errno;
		goto out;
	}
	fd = -1;
	if (renameat2(r->dirfd, tmp, r->dirfd, name, RENAME_NOREPLACE) == -1) {
		ret = errno == EEXIST ? 0 : -errno; /* a PUT stored it meanwhile: keep that */
		goto out;
	}
	fsync(r->dirfd);
	atomic_fetch_add(&r->pulled, 1);
	atomic_fetch_add(&r->bytes, call.body_out);
	ret = 1;
out:
	if (sock >= 0)
		close(sock);
	if (fd != -1)
		close(fd);
	if (ret != 1)
		unlinkat(r->dirfd, tmp, 0);
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

/* Walks endpoint e's listing to its end, pulling what this pod lacks. Returns true when
 * it reached the end; a listing that fails counts as a failure only if last. */
static bool peer_repair(struct store_repair *r, unsigned e, char *buf, bool last)
{
	char after[STORE_NAME_MAX] = "";
	uint64_t listed = 0, pulled = 0, failed = 0;
	bool more = true;
	const char *peer = r->svc->ep[e].id;
	for (unsigned page = 0; more && !atomic_load(&r->stop); page++) {
		size_t n;
		int err = page_get(r, e, after, buf, PAGE_BODY_MAX + 4096, &n, &more);
		if (err) {
			log_msg(LOG_WARNING, "store: repair: %s: listing after '%s': %s%s", peer,
			        after, strerror(-err), last ? "" : " (will retry)");
			if (last)
				atomic_fetch_add(&r->failed, 1);
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
			if (store_key_decode((uint8_t *)sp + 1, strlen(sp + 1), key, &kl) ||
			    !in_set(r, key, kl) || !faccessat(r->dirfd, line, F_OK, 0))
				continue;
			atomic_fetch_add(&r->wanted, 1);
			char name[STORE_NAME_MAX];
			store_object_name(0, key, kl, name); /* check the name is the key's */
			int k = strcmp(name + 9, line + 9) ? -EBADMSG
			                                   : store_repair_pull(r, e, key, kl, line);
			if (k < 0) {
				failed++;
				atomic_fetch_add(&r->failed, 1);
			} else if (k > 0) {
				pulled++;
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
	if (!more)
		atomic_fetch_add(&r->peers, 1);
	return !more;
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
	        " read through), %" PRIu64 " listed, %" PRIu64 " failure(s), %" PRIu64
	        " of %u peer(s) walked",
	        r->old ? "migration" : "repair", (uint64_t)atomic_load(&r->pulled),
	        (uint64_t)atomic_load(&r->bytes), (uint64_t)atomic_load(&r->readthrough),
	        (uint64_t)atomic_load(&r->listed), (uint64_t)atomic_load(&r->failed),
	        (uint64_t)atomic_load(&r->peers), npeers);
	atomic_store(&r->done, true);
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
