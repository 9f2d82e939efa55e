/* The object store calls of peak.h: resolve, then walk the key's replicas with the store's
 * client protocol (src/store/client.h). */
#define _GNU_SOURCE /* memfd_create */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../store/client.h"
#include "../store/store.h"
#include "client.h"
#include "peak/peak.h"
#include "peak/ssa.h"

enum { DEF_TIMEOUT_MS = 5000, COPY_CHUNK = 65536 };

/* The key's candidates for replica 0, 1, ... in that order (fanout index 0), and the
 * rule's replicas=R; a name without SSA records gives its AAAA addresses, R = 1. */
static unsigned replica_candidates(const struct peak_result *res, struct peak_candidate *out,
                                   unsigned *replicas)
{
	struct ssa_desc d;
	unsigned n = 0;
	*replicas = 1;
	if (!res->ssa) {
		for (unsigned i = 0; i < res->n; i++)
			out[n++] = res->cand[i];
		return n;
	}
	if (!ssa_desc_parse(res->descriptor, strlen(res->descriptor), &d, NULL, 0))
		*replicas = d.replicas;
	for (unsigned r = 0; r < STORE_WALK_MAX; r++)
		for (unsigned i = 0; i < res->n; i++)
			if (res->cand[i].index == 0 && res->cand[i].replica == r &&
			    (res->cand[i].origin == PEAK_ORIGIN_RULE ||
			     res->cand[i].origin == PEAK_ORIGIN_REPLICA))
				out[n++] = res->cand[i];
	return n;
}

/* store_op.more: the walk went past the replica numbers computed first (a replica failed,
 * was misdirected or shared a pod), so the rest up to STORE_WALK_MAX are computed now. */
struct walk_more {
	struct peak_resolver *r;
	const char *name;
	uint16_t port;
	struct peak_candidate *cand;
};

static unsigned walk_more(struct store_op *op)
{
	struct walk_more *m = op->more_arg;
	struct peak_result res;
	struct peak_candidate all[PEAK_MAX_CANDIDATES];
	unsigned n = op->ncand, replicas;
	unsigned old = resolver_replicas_swap(m->r, STORE_WALK_MAX - 1);
	int err = peak_resolve(m->r, m->name, op->key, m->port, &res);
	resolver_replicas_swap(m->r, old);
	if (err || !res.ssa)
		return n;
	unsigned k = replica_candidates(&res, all, &replicas);
	/* after the last replica number given (a host=rand rule draws other addresses for
	 * the ones before: they were tried already) */
	unsigned last = n ? m->cand[n - 1].replica : 0;
	for (unsigned i = 0; i < k && n < PEAK_MAX_CANDIDATES; i++)
		if (all[i].replica > last)
			m->cand[n++] = all[i];
	return n;
}

/* Resolves and runs op (method, in/out set by the caller); maps the outcome to 0 or an
 * error with the detail left in r. The key's addresses are computed for the replica
 * numbers the rule's replicas=R names (R as the last call found it: usually all the walk
 * needs), the rest only if the walk goes past them (walk_more). */
static int store_run(struct peak_resolver *r, const char *name, const char *key,
                     struct store_op *op, const struct peak_store_opts *o)
{
	struct peak_result res;
	struct peak_candidate cand[PEAK_MAX_CANDIDATES];
	uint16_t port = o && o->port ? o->port : 80;
	if (!key || store_key_check((const uint8_t *)key, strlen(key))) {
		resolver_detail_set(r, "bad key: 1 to 255 bytes, no '/', not '.' or '..'");
		return -EINVAL;
	}
	unsigned *hint = resolver_store_replicas(r);
	unsigned first = *hint ? *hint - 1 : 0; /* further replicas computed at first */
	unsigned old = resolver_replicas_swap(r, first);
	int err = peak_resolve(r, name, key, port, &res);
	resolver_replicas_swap(r, old);
	if (err)
		return err;
	struct walk_more more = {.r = r, .name = name, .port = port, .cand = cand};
	op->key = key;
	op->cand = cand;
	op->ncand = replica_candidates(&res, cand, &op->replicas);
	op->more = NULL;
	if (res.ssa && first < STORE_WALK_MAX - 1) {
		*hint = op->replicas;
		op->more = walk_more;
		op->more_arg = &more;
		if (op->replicas - 1 > first) { /* R went up since the last call */
			op->ncand = walk_more(op);
			op->more = NULL;
		}
	}
	op->timeout_ms = o && o->timeout_ms ? o->timeout_ms : DEF_TIMEOUT_MS;
	op->pool = o && o->no_keepalive ? NULL : resolver_store_pool(r);
	op->trace = o ? o->trace : NULL;
	op->trace_arg = o ? o->trace_arg : NULL;
	err = store_op_run(op);
	resolver_detail_set(r, op->detail);
	if (op->connect_failures)
		resolver_sources_forget(r); /* the source may be gone, or the route moved */
	if (err)
		return op->method == STORE_PUT || op->method == STORE_DELETE ? PEAK_E_REPLICAS
		                                                             : err;
	if (op->status == 404)
		return PEAK_E_NOTFOUND;
	if (op->status >= 300) {
		char d[STORE_DETAIL_MAX + 64];
		snprintf(d, sizeof(d), "%u %s%s%.200s", op->status, store_status_text(op->status),
		         *op->detail ? ": " : "", op->detail);
		resolver_detail_set(r, d);
		return PEAK_E_REFUSED;
	}
	return 0;
}

/* Copies what fd holds to an unnamed temp file, so the length is known; returns it. */
static int spool(int fd, uint64_t *len)
{
	char buf[COPY_CHUNK];
	int t = memfd_create("peak-store", MFD_CLOEXEC);
	ssize_t k;
	*len = 0;
	if (t == -1)
		return -errno;
	while ((k = read(fd, buf, sizeof(buf))) > 0 || (k == -1 && errno == EINTR)) {
		if (k > 0 && write(t, buf, (size_t)k) != k) {
			k = -1;
			break;
		}
		*len += k > 0 ? (uint64_t)k : 0;
	}
	if (k < 0) {
		int e = -errno;
		close(t);
		return e ? e : -EIO;
	}
	return t;
}

int peak_store_put(struct peak_resolver *r, const char *name, const char *key, int fd,
                   const struct peak_store_opts *o)
{
	struct stat st;
	struct store_op op = {.method = STORE_PUT, .infd = fd, .outfd = -1};
	int t = -1, ret;
	if (fstat(fd, &st) == -1)
		return -errno;
	if (S_ISREG(st.st_mode)) {
		op.in_len = (uint64_t)st.st_size;
	} else {
		if ((t = spool(fd, &op.in_len)) < 0)
			return t;
		op.infd = t;
	}
	ret = store_run(r, name, key, &op, o);
	if (t != -1)
		close(t);
	return ret;
}

int peak_store_put_buf(struct peak_resolver *r, const char *name, const char *key, const void *buf,
                       size_t len, const struct peak_store_opts *o)
{
	int t = memfd_create("peak-store", MFD_CLOEXEC), ret = -EIO;
	if (t == -1)
		return -errno;
	for (size_t off = 0; off < len;) {
		ssize_t k = write(t, (const char *)buf + off, len - off);
		if (k <= 0 && errno != EINTR)
			goto out;
		off += k > 0 ? (size_t)k : 0;
	}
	ret = peak_store_put(r, name, key, t, o);
out:
	close(t);
	return ret;
}

int peak_store_get(struct peak_resolver *r, const char *name, const char *key, int fd,
                   const struct peak_store_opts *o)
{
	struct store_op op = {.method = STORE_GET, .infd = -1, .outfd = fd};
	return store_run(r, name, key, &op, o);
}

int peak_store_get_buf(struct peak_resolver *r, const char *name, const char *key, void **out,
                       size_t *len, size_t max, const struct peak_store_opts *o)
{
	struct stat st;
	int t = memfd_create("peak-store", MFD_CLOEXEC), ret;
	void *p = NULL;
	*out = NULL;
	*len = 0;
	if (t == -1)
		return -errno;
	ret = peak_store_get(r, name, key, t, o);
	if (!ret && fstat(t, &st) == -1)
		ret = -errno;
	if (!ret && (uint64_t)st.st_size > max)
		ret = -EFBIG;
	if (!ret && !(p = malloc(st.st_size ? (size_t)st.st_size : 1)))
		ret = -ENOMEM;
	if (!ret && st.st_size && pread(t, p, (size_t)st.st_size, 0) != st.st_size)
		ret = -EIO;
	close(t);
	if (ret) {
		free(p);
		return ret;
	}
	*out = p;
	*len = (size_t)st.st_size;
	return 0;
}

int peak_store_delete(struct peak_resolver *r, const char *name, const char *key,
                      const struct peak_store_opts *o)
{
	struct store_op op = {.method = STORE_DELETE, .infd = -1, .outfd = -1};
	return store_run(r, name, key, &op, o);
}
