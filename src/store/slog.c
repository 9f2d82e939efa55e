/* The small-object log: segments, the index, and the object functions that see log and
 * file objects alike (slog.h). */
#define _GNU_SOURCE
#include "slog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../sys/log.h"
#include "repair.h"
#include "store.h"

struct slog_ent {
	struct slog_ent *next;
	char name[STORE_NAME_MAX];
	size_t seg;   /* index into segs (segments are never removed while open) */
	uint64_t off; /* of the record */
	uint64_t seq, version;
	uint32_t body_len;
	uint16_t key_len;
	bool del; /* only while start-up scans: a delete record seen, seq its */
};

static uint64_t ent_len(const struct slog_ent *e)
{
	return SLOG_HDR + (uint64_t)e->key_len + e->body_len + SLOG_TRAIL;
}

static size_t name_hash(const char *name, size_t tabsize)
{
	/* the name is hex of a SHA-256 after the slice: any 16 digits of it are uniform */
	uint64_t h = 0;
	for (int i = 9; i < 25 && name[i]; i++)
		h = h << 4 | (uint64_t)(name[i] <= '9' ? name[i] - '0' : name[i] - 'a' + 10);
	return (size_t)(h & (tabsize - 1));
}

static struct slog_ent **ent_slot(struct slog *l, const char *name)
{
	struct slog_ent **p = &l->tab[name_hash(name, l->tabsize)];
	while (*p && strcmp((*p)->name, name))
		p = &(*p)->next;
	return p;
}

static struct slog_ent *ent_find(struct slog *l, const char *name)
{
	return l->tabsize ? *ent_slot(l, name) : NULL;
}

/* Doubles the table when it is as full as it is long. False if out of memory. */
static bool tab_grow(struct slog *l)
{
	if (l->count < l->tabsize)
		return true;
	size_t n = l->tabsize ? 2 * l->tabsize : 1024;
	struct slog_ent **t = calloc(n, sizeof(*t));
	if (!t)
		return false;
	for (size_t i = 0; i < l->tabsize; i++)
		for (struct slog_ent *e = l->tab[i], *next; e; e = next) {
			next = e->next;
			size_t h = name_hash(e->name, n);
			e->next = t[h];
			t[h] = e;
		}
	free(l->tab);
	l->tab = t;
	l->tabsize = n;
	return true;
}

/* The entry of name for a record of seq: *ep is name's entry, made if it had none, its
 * record no longer counted live (it is being replaced); or NULL when the entry holds a
 * newer record. *fresh: name had no live record. Returns 0 or -ENOMEM. */
static int ent_take(struct slog *l, const char *name, uint64_t seq, struct slog_ent **ep,
                    int *fresh)
{
	*ep = NULL;
	if (!tab_grow(l))
		return -ENOMEM;
	struct slog_ent **p = ent_slot(l, name), *e = *p;
	*fresh = !e || e->del;
	if (e && e->seq > seq)
		return 0;
	if (!e) {
		if (!(e = calloc(1, sizeof(*e))))
			return -ENOMEM;
		memcpy(e->name, name, SLOG_NAME_LEN + 1);
		*p = e;
		l->count++;
	} else if (!e->del) {
		l->segs[e->seg].live -= ent_len(e);
	}
	*ep = e;
	return 0;
}

/* Points name at a record (newest seq wins). Returns 1 if it was new, 0, or -ENOMEM. */
static int ent_set(struct slog *l, const char *name, size_t seg, uint64_t off, uint64_t seq,
                   uint64_t version, size_t kl, size_t len)
{
	struct slog_ent *e;
	int fresh, r = ent_take(l, name, seq, &e, &fresh);
	if (r || !e)
		return r;
	l->segs[seg].live += SLOG_HDR + kl + len + SLOG_TRAIL;
	*e = (struct slog_ent){.next = e->next,
	                       .seg = seg,
	                       .off = off,
	                       .seq = seq,
	                       .version = version,
	                       .body_len = (uint32_t)len,
	                       .key_len = (uint16_t)kl};
	memcpy(e->name, name, SLOG_NAME_LEN + 1);
	return fresh;
}

/* Drops name from the index if its record is older than seq. */
static void ent_del(struct slog *l, const char *name, uint64_t seq)
{
	if (!l->tabsize)
		return;
	struct slog_ent **p = ent_slot(l, name), *e = *p;
	if (!e || e->seq > seq)
		return;
	if (!e->del)
		l->segs[e->seg].live -= ent_len(e);
	*p = e->next;
	free(e);
	l->count--;
}

/* Start-up: a delete record of seq: name's older record goes, and a marker stays until
 * the scan ends, so an older put found later (compaction moves records) stays hidden. */
static int ent_mark_del(struct slog *l, const char *name, uint64_t seq)
{
	struct slog_ent *e;
	int fresh, r = ent_take(l, name, seq, &e, &fresh);
	if (r || !e)
		return r;
	e->del = true;
	e->seq = seq;
	return 0;
}

/* Drops the delete markers of the scan. */
static void purge_dels(struct slog *l)
{
	for (size_t i = 0; i < l->tabsize; i++)
		for (struct slog_ent **p = &l->tab[i]; *p;) {
			struct slog_ent *e = *p;
			if (!e->del) {
				p = &e->next;
				continue;
			}
			*p = e->next;
			free(e);
			l->count--;
		}
}

struct scan_ctx {
	struct slog *l;
	size_t seg;
	int err;
};

static void scan_rec(void *arg, const struct slog_rec *r)
{
	struct scan_ctx *x = arg;
	char name[STORE_NAME_MAX];
	struct slog_seg *g = &x->l->segs[x->seg];
	if (r->seq >= x->l->seq)
		x->l->seq = r->seq + 1;
	if (r->seq < g->minseq)
		g->minseq = r->seq;
	if (r->type == SLOG_DEL) {
		memcpy(name, r->key, SLOG_NAME_LEN);
		name[SLOG_NAME_LEN] = 0;
		int k = ent_mark_del(x->l, name, r->seq);
		if (k < 0)
			x->err = k;
		return;
	}
	store_object_name(r->slice, r->key, r->key_len, name);
	int k = ent_set(x->l, name, x->seg, r->off, r->seq, r->version, r->key_len, r->body_len);
	if (k < 0)
		x->err = k;
}

static int seg_cmp(const void *a, const void *b)
{
	const struct slog_seg *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Opens segment id (creating it if create) and adds it to the table. Returns 0 or -errno. */
static int seg_add(struct slog *l, uint32_t id, bool create)
{
	char n[32];
	snprintf(n, sizeof(n), "seg-%08" PRIu32, id);
	int fd = openat(l->logfd, n, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0644);
	struct stat st;
	if (fd == -1 || fstat(fd, &st) == -1) {
		int err = -errno;
		if (fd != -1)
			close(fd);
		return err;
	}
	void *m = realloc(l->segs, (l->nsegs + 1) * sizeof(*l->segs));
	if (!m) {
		close(fd);
		return -ENOMEM;
	}
	l->segs = m;
	l->segs[l->nsegs++] = (struct slog_seg){
	    .id = id, .fd = fd, .size = (uint64_t)st.st_size, .minseq = UINT64_MAX};
	if (create && fsync(l->logfd) == -1)
		return -errno;
	return 0;
}

/* Scans segment i into the index; a torn or damaged tail is cut off (and logged). */
static int seg_scan(struct slog *l, size_t i)
{
	struct slog_seg *g = &l->segs[i];
	struct scan_ctx x = {.l = l, .seg = i};
	if (!g->size)
		return 0;
	void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, g->fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	size_t ok = slog_scan(m, g->size, scan_rec, &x);
	munmap(m, g->size);
	if (x.err)
		return x.err;
	if (ok < g->size) {
		log_msg(LOG_WARNING,
		        "store: log: seg-%08" PRIu32 ": torn or damaged record at offset %zu, "
		        "dropped the tail (%" PRIu64 " byte(s))",
		        g->id, ok, g->size - ok);
		if (ftruncate(g->fd, (off_t)ok) == -1 || fdatasync(g->fd) == -1)
			return -errno;
		g->size = ok;
		atomic_fetch_add(&l->torn, 1);
	}
	return 0;
}

static uint64_t file_version(int dirfd, const char *name)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, 0) == -1)
		return 0;
	return (uint64_t)st.st_mtim.tv_sec * 1000 + (uint64_t)st.st_mtim.tv_nsec / 1000000;
}

/* A crash between a log PUT and the unlink of the file it replaced, or between a file
 * PUT and the delete record of the log object it replaced, leaves both: the newer stays
 * (a tie: the log's, which is written after the file it replaces). */
static void settle_files(struct slog *l)
{
	for (size_t i = 0; i < l->tabsize; i++)
		for (struct slog_ent **p = &l->tab[i]; *p;) {
			struct slog_ent *e = *p;
			uint64_t fv = file_version(l->dirfd, e->name);
			if (fv > e->version) {
				l->segs[e->seg].live -= ent_len(e);
				*p = e->next;
				free(e);
				l->count--;
				continue;
			}
			if (fv)
				unlinkat(l->dirfd, e->name, 0);
			p = &e->next;
		}
}

int slog_open(struct slog *l, int dirfd, uint64_t seg_max)
{
	int ret;
	*l = (struct slog){.dirfd = dirfd, .logfd = -1, .seq = 1};
	l->seg_max = seg_max ? seg_max : SLOG_DEF_SEG;
	pthread_mutex_init(&l->amu, NULL);
	pthread_mutex_init(&l->mu, NULL);
	l->open = true;
	if (mkdirat(dirfd, "log", 0755) == -1 && errno != EEXIST)
		return -errno;
	if ((l->logfd = openat(dirfd, "log", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -errno;
	int fd = dup(l->logfd);
	DIR *d = fd == -1 ? NULL : fdopendir(fd);
	if (!d) {
		ret = -errno;
		if (fd != -1)
			close(fd);
		return ret;
	}
	ret = 0;
	for (struct dirent *e; !ret && (e = readdir(d));) {
		unsigned id;
		char tail;
		if (sscanf(e->d_name, "seg-%8u%c", &id, &tail) == 1 && strlen(e->d_name) == 12)
			ret = seg_add(l, id, false);
	}
	closedir(d);
	if (ret)
		return ret;
	if (l->nsegs)
		qsort(l->segs, l->nsegs, sizeof(*l->segs), seg_cmp);
	for (size_t i = 0; i < l->nsegs; i++)
		if ((ret = seg_scan(l, i)))
			return ret;
	purge_dels(l);
	if (!l->nsegs && (ret = seg_add(l, 1, true)))
		return ret;
	settle_files(l);
	return 0;
}

void slog_close(struct slog *l)
{
	if (!l->open)
		return;
	for (size_t i = 0; i < l->tabsize; i++)
		for (struct slog_ent *e = l->tab[i], *next; e; e = next) {
			next = e->next;
			free(e);
		}
	free(l->tab);
	for (size_t i = 0; i < l->nsegs; i++)
		if (l->segs[i].fd != -1)
			close(l->segs[i].fd);
	free(l->segs);
	if (l->logfd != -1)
		close(l->logfd);
	pthread_mutex_destroy(&l->amu);
	pthread_mutex_destroy(&l->mu);
	l->open = false;
}

/* With amu held: the segment to append total bytes to, rolling over to a new one when the
 * last is full. Returns its index or -errno. */
static long seg_for(struct slog *l, uint64_t total)
{
	struct slog_seg *g = &l->segs[l->nsegs - 1];
	if (!g->size || g->size + total <= l->seg_max)
		return (long)l->nsegs - 1;
	uint32_t id = g->id + 1;
	if (fdatasync(g->fd) == -1) /* what was written unflushed (store_object_drop) */
		return -errno;
	pthread_mutex_lock(&l->mu);
	int r = seg_add(l, id, true);
	pthread_mutex_unlock(&l->mu);
	if (r)
		return r;
	log_msg(LOG_INFO, "store: log: segment seg-%08" PRIu32 " started", id);
	return (long)l->nsegs - 1;
}

/* With amu held: writes buf[0..n) at the end of segment i and flushes it; on a failure
 * the segment is cut back. Returns 0 or -errno. */
static int seg_write(struct slog *l, size_t i, const uint8_t *buf, size_t n, bool counted,
                     bool sync)
{
	int fd = l->segs[i].fd;
	uint64_t at = l->segs[i].size;
	for (size_t done = 0; done < n;) {
		ssize_t k = pwrite(fd, buf + done, n - done, (off_t)(at + done));
		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0) {
			int err = k ? -errno : -EIO;
			(void)!ftruncate(fd, (off_t)at);
			return err;
		}
		done += (size_t)k;
	}
	if (counted)
		atomic_fetch_add(&l->syncs, 1);
	if (sync && fdatasync(fd) == -1) {
		int err = -errno;
		(void)!ftruncate(fd, (off_t)at);
		return err;
	}
	return 0;
}

int slog_append(struct slog *l, struct slog_put *p, size_t n)
{
	uint64_t total = 0, now = store_now_ms();
	bool files = atomic_load(&l->files);
	for (size_t i = 0; i < n; i++) {
		total += SLOG_HDR + p[i].key_len + p[i].body_len + SLOG_TRAIL;
		p[i].version = now;
		p[i].existed = files && !faccessat(l->dirfd, p[i].name, F_OK, 0);
	}
	uint8_t *buf = malloc(total ? total : 1);
	if (!buf)
		return -ENOMEM;
	pthread_mutex_lock(&l->amu);
	long seg = seg_for(l, total);
	int ret = seg < 0 ? (int)seg : 0;
	uint64_t at = seg < 0 ? 0 : l->segs[seg].size, off = 0, seq0 = l->seq;
	for (size_t i = 0; i < n && !ret; i++)
		off +=
		    slog_rec_write(buf + off, SLOG_PUT, (uint32_t)strtoul(p[i].name, NULL, 16),
		                   l->seq++, now, p[i].key, p[i].key_len, p[i].body, p[i].body_len);
	if (!ret)
		ret = seg_write(l, (size_t)seg, buf, total, true, true);
	if (!ret) {
		/* durable: now visible */
		pthread_mutex_lock(&l->mu);
		l->segs[seg].size = at + total;
		if (n && seq0 < l->segs[seg].minseq)
			l->segs[seg].minseq = seq0;
		off = at;
		for (size_t i = 0; i < n; i++) {
			int k = ent_set(l, p[i].name, (size_t)seg, off, seq0 + i, now, p[i].key_len,
			                p[i].body_len);
			if (!k)
				p[i].existed = true;
			off += SLOG_HDR + p[i].key_len + p[i].body_len + SLOG_TRAIL;
		}
		pthread_mutex_unlock(&l->mu);
		atomic_fetch_add(&l->records, n);
	}
	pthread_mutex_unlock(&l->amu);
	free(buf);
	for (size_t i = 0; i < n && !ret && files; i++)
		if (p[i].existed)
			unlinkat(l->dirfd, p[i].name, 0); /* a file it replaces (if any) */
	return ret;
}

int slog_del(struct slog *l, const char *name, bool sync)
{
	uint8_t rec[SLOG_HDR + SLOG_NAME_LEN + SLOG_TRAIL];
	pthread_mutex_lock(&l->amu);
	pthread_mutex_lock(&l->mu);
	bool has = ent_find(l, name) != NULL;
	pthread_mutex_unlock(&l->mu);
	int ret = has ? 0 : -ENOENT;
	long seg = has ? seg_for(l, sizeof(rec)) : 0;
	if (seg < 0)
		ret = (int)seg;
	uint64_t seq = l->seq++;
	if (!ret) {
		size_t n =
		    slog_rec_write(rec, SLOG_DEL, (uint32_t)strtoul(name, NULL, 16), seq,
		                   store_now_ms(), (const uint8_t *)name, SLOG_NAME_LEN, NULL, 0);
		ret = seg_write(l, (size_t)seg, rec, n, sync, sync);
		if (!ret) {
			pthread_mutex_lock(&l->mu);
			l->segs[seg].size += n;
			if (seq < l->segs[seg].minseq)
				l->segs[seg].minseq = seq;
			ent_del(l, name, seq);
			pthread_mutex_unlock(&l->mu);
		}
	}
	pthread_mutex_unlock(&l->amu);
	return ret;
}

int slog_get(struct slog *l, const char *name, struct slog_obj *o)
{
	pthread_mutex_lock(&l->mu);
	struct slog_ent *e = ent_find(l, name);
	int ret = -ENOENT;
	if (e) {
		o->fd = fcntl(l->segs[e->seg].fd, F_DUPFD_CLOEXEC, 0);
		o->key_off = e->off + SLOG_HDR;
		o->key_len = e->key_len;
		o->body_len = e->body_len;
		o->version = e->version;
		ret = o->fd == -1 ? -errno : 0;
	}
	pthread_mutex_unlock(&l->mu);
	return ret;
}

bool slog_has(struct slog *l, const char *name)
{
	pthread_mutex_lock(&l->mu);
	bool has = ent_find(l, name) != NULL;
	pthread_mutex_unlock(&l->mu);
	return has;
}

size_t slog_count(struct slog *l)
{
	pthread_mutex_lock(&l->mu);
	size_t n = l->count;
	pthread_mutex_unlock(&l->mu);
	return n;
}

char (*slog_names(struct slog *l, size_t *n))[STORE_NAME_MAX]
{
	pthread_mutex_lock(&l->mu);
	char(*v)[STORE_NAME_MAX] = malloc((l->count ? l->count : 1) * sizeof(*v));
	*n = 0;
	for (size_t i = 0; v && i < l->tabsize; i++)
		for (struct slog_ent *e = l->tab[i]; e; e = e->next)
			memcpy(v[(*n)++], e->name, SLOG_NAME_LEN + 1);
	pthread_mutex_unlock(&l->mu);
	return v;
}

uint64_t store_object_version(struct slog *l, const char *name)
{
	pthread_mutex_lock(&l->mu);
	struct slog_ent *e = ent_find(l, name);
	uint64_t v = e ? e->version : 0;
	pthread_mutex_unlock(&l->mu);
	return e ? v : file_version(l->dirfd, name);
}

bool store_object_info(struct slog *l, const char *name, uint8_t key[static STORE_KEY_MAX],
                       size_t *kl, uint64_t *size, uint64_t *version)
{
	struct slog_obj o;
	if (!slog_get(l, name, &o)) {
		ssize_t k = pread(o.fd, key, o.key_len, (off_t)o.key_off);
		close(o.fd);
		*kl = o.key_len;
		*size = o.body_len;
		*version = o.version;
		return k == (ssize_t)o.key_len;
	}
	uint8_t h[6 + STORE_KEY_MAX];
	struct stat st;
	int fd = openat(l->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return false;
	ssize_t n = fstat(fd, &st) == -1 ? -1 : pread(fd, h, sizeof(h), 0);
	close(fd);
	if (n < 6 || memcmp(h, "PKS1", 4))
		return false;
	*kl = (size_t)(h[4] << 8 | h[5]);
	if (!*kl || *kl > STORE_KEY_MAX || (size_t)n < 6 + *kl || (uint64_t)st.st_size < 6 + *kl)
		return false;
	memcpy(key, h + 6, *kl);
	*size = (uint64_t)st.st_size - 6 - *kl;
	*version = (uint64_t)st.st_mtim.tv_sec * 1000 + (uint64_t)st.st_mtim.tv_nsec / 1000000;
	return true;
}

/* Removes both forms of name (for a moment an object may be both: slog_append, the file
 * PUT in commit_run). Returns 0 if either was there, -ENOENT, or -errno. */
static int object_remove(struct slog *l, const char *name, bool sync)
{
	int r = slog_del(l, name, sync);
	if (r && r != -ENOENT)
		return r;
	if (unlinkat(l->dirfd, name, 0) == -1)
		return errno == ENOENT ? r : -errno;
	if (sync)
		fsync(l->dirfd);
	return 0;
}

int store_object_remove(struct slog *l, const char *name)
{
	return object_remove(l, name, true);
}

size_t slog_segments(struct slog *l)
{
	size_t n = 0;
	pthread_mutex_lock(&l->mu);
	for (size_t i = 0; i < l->nsegs; i++)
		n += l->segs[i].fd != -1;
	pthread_mutex_unlock(&l->mu);
	return n;
}

enum { COMPACT_CHUNK = 1 << 20, COMPACT_EVERY_MS = 500 };

/* A record of the segment being compacted, and whether it is copied. */
struct crec {
	uint64_t off, len, seq;
	unsigned type;
	bool keep;
	char name[STORE_NAME_MAX];
};

struct cscan {
	struct crec *v;
	size_t n, cap;
	int err;
};

static void compact_rec(void *arg, const struct slog_rec *r)
{
	struct cscan *x = arg;
	if (x->n == x->cap) {
		size_t c = x->cap ? 2 * x->cap : 256;
		void *m = realloc(x->v, c * sizeof(*x->v));
		if (!m) {
			x->err = -ENOMEM;
			return;
		}
		x->v = m;
		x->cap = c;
	}
	struct crec *c = &x->v[x->n++];
	*c = (struct crec){.off = r->off, .len = r->len, .seq = r->seq, .type = r->type};
	if (r->type == SLOG_DEL) {
		memcpy(c->name, r->key, SLOG_NAME_LEN);
		c->name[SLOG_NAME_LEN] = 0;
	} else {
		store_object_name(r->slice, r->key, r->key_len, c->name);
	}
}

/* With mu held: which records of segment k to copy: the puts the index points at, and the
 * deletes that may still hide an older put in another segment. */
static void compact_plan(struct slog *l, size_t k, struct cscan *x)
{
	for (size_t i = 0; i < x->n; i++) {
		struct crec *c = &x->v[i];
		if (c->type == SLOG_PUT) {
			struct slog_ent *e = ent_find(l, c->name);
			c->keep = e && e->seg == k && e->off == c->off;
			continue;
		}
		c->keep = false;
		for (size_t j = 0; j < l->nsegs && !c->keep; j++)
			c->keep = j != k && l->segs[j].fd != -1 && l->segs[j].minseq < c->seq;
	}
}

/* Appends the kept records of x->v[from..to) (their bytes in m) to the current segment,
 * flushed, then points the index at the copies of puts still pointing at k. */
static int compact_copy(struct slog *l, size_t k, const uint8_t *m, struct cscan *x, size_t from,
                        size_t to, uint64_t total)
{
	uint8_t *buf = malloc(total);
	uint64_t at, off = 0, minseq = UINT64_MAX;
	if (!buf)
		return -ENOMEM;
	for (size_t i = from; i < to; i++)
		if (x->v[i].keep) {
			memcpy(buf + off, m + x->v[i].off, x->v[i].len);
			off += x->v[i].len;
			if (x->v[i].seq < minseq)
				minseq = x->v[i].seq;
		}
	pthread_mutex_lock(&l->amu);
	long seg = seg_for(l, total);
	int ret = seg < 0 ? (int)seg : 0;
	if (!ret) {
		at = l->segs[seg].size;
		ret = seg_write(l, (size_t)seg, buf, total, false, true);
	}
	if (!ret) {
		pthread_mutex_lock(&l->mu);
		struct slog_seg *g = &l->segs[seg];
		g->size = at + total;
		if (minseq < g->minseq)
			g->minseq = minseq;
		for (size_t i = from; i < to; i++) {
			struct crec *c = &x->v[i];
			if (!c->keep)
				continue;
			struct slog_ent *e = c->type == SLOG_PUT ? ent_find(l, c->name) : NULL;
			if (e && e->seg == k && e->off == c->off) {
				l->segs[k].live -= c->len;
				g->live += c->len;
				e->seg = (size_t)seg;
				e->off = at;
			}
			at += c->len;
		}
		pthread_mutex_unlock(&l->mu);
	}
	pthread_mutex_unlock(&l->amu);
	free(buf);
	return ret;
}

/* Rewrites read-only segment k (slog.h): its live records to the current segment, then
 * the file goes. Returns 0 or -errno (the segment is then left as it is). */
static int seg_compact(struct slog *l, size_t k)
{
	struct cscan x = {0};
	uint64_t copied = 0, records = 0;
	pthread_mutex_lock(&l->mu);
	int fd = fcntl(l->segs[k].fd, F_DUPFD_CLOEXEC, 0);
	uint64_t size = l->segs[k].size;
	uint32_t id = l->segs[k].id;
	pthread_mutex_unlock(&l->mu);
	if (fd == -1)
		return -errno;
	void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return -errno;
	int ret = slog_scan(m, size, compact_rec, &x) == size ? x.err : -EIO;
	if (!ret) {
		pthread_mutex_lock(&l->mu);
		compact_plan(l, k, &x);
		pthread_mutex_unlock(&l->mu);
	}
	for (size_t i = 0; i < x.n && !ret;) {
		size_t j = i;
		uint64_t total = 0;
		for (; j < x.n && (!total || total + x.v[j].len <= COMPACT_CHUNK); j++)
			if (x.v[j].keep) {
				total += x.v[j].len;
				records++;
			}
		if (total)
			ret = compact_copy(l, k, m, &x, i, j, total);
		copied += total;
		i = j;
	}
	munmap(m, size);
	free(x.v);
	bool gone = false;
	if (!ret) {
		char n[32];
		snprintf(n, sizeof(n), "seg-%08" PRIu32, id);
		pthread_mutex_lock(&l->amu);
		pthread_mutex_lock(&l->mu);
		if (!l->segs[k].live) { /* nothing points into it now */
			close(l->segs[k].fd);
			l->segs[k].fd = -1;
			gone = true;
		}
		pthread_mutex_unlock(&l->mu);
		if (gone && (unlinkat(l->logfd, n, 0) == -1 || fsync(l->logfd) == -1))
			ret = -errno;
		pthread_mutex_unlock(&l->amu);
	}
	if (ret || !gone) {
		log_msg(LOG_WARNING, "store: log: compacting seg-%08" PRIu32 ": %s", id,
		        ret ? strerror(-ret) : "records still point into it; kept");
		return ret ? ret : -EAGAIN;
	}
	atomic_fetch_add(&l->compactions, 1);
	atomic_fetch_add(&l->compact_bytes, size - copied);
	log_msg(LOG_INFO,
	        "store: log: seg-%08" PRIu32 " compacted: %" PRIu64 " live record(s) (%" PRIu64
	        " byte(s)) copied, %" PRIu64 " byte(s) freed",
	        id, records, copied, size - copied);
	return 0;
}

/* The read-only segment with the smallest share of live bytes, below half; -1 if none. */
static long compact_pick(struct slog *l, const bool *failed)
{
	long best = -1;
	double share = 0.5;
	pthread_mutex_lock(&l->mu);
	for (size_t i = 0; i + 1 < l->nsegs; i++) {
		const struct slog_seg *g = &l->segs[i];
		if (g->fd == -1 || !g->size || (failed && failed[i]))
			continue;
		double s = (double)g->live / (double)g->size;
		if (s < share) {
			share = s;
			best = (long)i;
		}
	}
	pthread_mutex_unlock(&l->mu);
	return best;
}

static void *compact_main(void *arg)
{
	struct slog *l = arg;
	bool *failed = NULL; /* segments whose compaction failed: not tried again */
	size_t nfailed = 0;
	pthread_mutex_lock(&l->cmu);
	while (!l->cstop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += COMPACT_EVERY_MS * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&l->ccv, &l->cmu, &ts);
		if (l->cstop)
			break;
		pthread_mutex_unlock(&l->cmu);
		long k = compact_pick(l, failed);
		if (k >= 0 && seg_compact(l, (size_t)k)) {
			if ((size_t)k >= nfailed) {
				bool *f = realloc(failed, ((size_t)k + 1) * sizeof(*f));
				if (f) {
					memset(f + nfailed, 0,
					       ((size_t)k + 1 - nfailed) * sizeof(*f));
					failed = f;
					nfailed = (size_t)k + 1;
				}
			}
			if ((size_t)k < nfailed)
				failed[k] = true;
		}
		pthread_mutex_lock(&l->cmu);
	}
	pthread_mutex_unlock(&l->cmu);
	free(failed);
	return NULL;
}

int slog_compact_start(struct slog *l)
{
	pthread_mutex_init(&l->cmu, NULL);
	pthread_cond_init(&l->ccv, NULL);
	l->cstop = false;
	int r = pthread_create(&l->th, NULL, compact_main, l);
	if (r) {
		pthread_mutex_destroy(&l->cmu);
		pthread_cond_destroy(&l->ccv);
		return -r;
	}
	l->cstarted = true;
	return 0;
}

void slog_compact_stop(struct slog *l)
{
	if (!l->cstarted)
		return;
	pthread_mutex_lock(&l->cmu);
	l->cstop = true;
	pthread_cond_signal(&l->ccv);
	pthread_mutex_unlock(&l->cmu);
	pthread_join(l->th, NULL);
	pthread_mutex_destroy(&l->cmu);
	pthread_cond_destroy(&l->ccv);
	l->cstarted = false;
}

int store_object_drop(struct slog *l, const char *name)
{
	return object_remove(l, name, false);
}

int store_objects_flush(struct slog *l)
{
	pthread_mutex_lock(&l->amu);
	int r = fdatasync(l->segs[l->nsegs - 1].fd) == -1 || fsync(l->dirfd) == -1 ? -errno : 0;
	pthread_mutex_unlock(&l->amu);
	return r;
}
