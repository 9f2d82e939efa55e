/* The file store: the live state in one file (CONFIG.state by default), written atomically
 * on every change. The controller is its only writer: always the leader, nothing to watch,
 * no revision to compare (see store.h). */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../sys/log.h"
#include "ctl.h"

struct store_file {
	struct store st;
	char *path; /* NULL: --state none, nothing is kept */
};

static int file_load(struct store *st, char **text, size_t *len)
{
	struct store_file *f = (struct store_file *)st;
	*text = NULL;
	*len = 0;
	if (!f->path)
		return 0;
	int r = ctlr_file_read(f->path, text, len);
	if (r == -ENOENT)
		return 0;
	if (r)
		log_msg(LOG_WARNING, "controller: state file %s: %s", f->path, strerror(-r));
	return r;
}

/* Writes the records into the file atomically: a temporary file beside it, fsync, rename,
 * fsync of the directory. Failures are logged; the controller goes on. */
static int file_save(struct store *st, const struct store_rec *r, unsigned n)
{
	struct store_file *f = (struct store_file *)st;
	char tmp[4096 + 8], dir[4096];
	int fd = -1, dfd = -1, err = 0;
	if (!f->path)
		return 0;
	snprintf(tmp, sizeof(tmp), "%s.tmp", f->path);
	snprintf(dir, sizeof(dir), "%s", f->path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1) {
		err = -errno;
		goto out;
	}
	for (unsigned i = 0; i < n; i++) {
		for (size_t off = 0; off < r[i].len;) {
			ssize_t k = write(fd, r[i].text + off, r[i].len - off);
			if (k == -1 && errno == EINTR)
				continue;
			if (k == -1) {
				err = -errno;
				goto out;
			}
			off += (size_t)k;
		}
	}
	if (fsync(fd) == -1 || close(fd) == -1) {
		err = -errno;
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, f->path) == -1) {
		err = -errno;
		goto out;
	}
	if ((dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1)
		fsync(dfd);
out:
	if (err) {
		log_msg(LOG_WARNING, "controller: state file %s: %s", f->path, strerror(-err));
		unlink(tmp);
	}
	if (fd != -1)
		close(fd);
	if (dfd != -1)
		close(dfd);
	return err;
}

static int file_watch(struct store *st)
{
	(void)st;
	return 0;
}

static int file_keepalive(struct store *st)
{
	(void)st;
	return 1;
}

static unsigned file_interval_ms(const struct store *st)
{
	(void)st;
	return 1000;
}

static void file_free(struct store *st)
{
	struct store_file *f = (struct store_file *)st;
	if (!f)
		return;
	free(f->path);
	free(f);
}

static const struct store_ops file_ops = {
    .name = "file",
    .load = file_load,
    .save = file_save,
    .watch = file_watch,
    .keepalive = file_keepalive,
    .interval_ms = file_interval_ms,
    .free = file_free,
};

/* A file store at path (copied), or keeping nothing when path is NULL. NULL: no memory. */
struct store *store_file_open(const char *path)
{
	struct store_file *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->st.ops = &file_ops;
	if (path && !(f->path = strdup(path))) {
		free(f);
		return NULL;
	}
	return &f->st;
}

struct store *store_open(const struct controller_opts *o, char *err, size_t errlen)
{
	char path[4096];
	struct store *st = NULL;
	if (!o->store || !strcmp(o->store, "file")) {
		if (o->etcd) {
			snprintf(err, errlen, "--etcd needs --store etcd");
			return NULL;
		}
		if (o->state && !strcmp(o->state, "none"))
			st = store_file_open(NULL);
		else if (o->state)
			st = store_file_open(o->state);
		else if ((size_t)snprintf(path, sizeof(path), "%s.state", o->config) >=
		         sizeof(path))
			snprintf(err, errlen, "--config: path too long");
		else
			st = store_file_open(path);
		if (!st && !err[0])
			snprintf(err, errlen, "out of memory");
		return st;
	}
	if (!strcmp(o->store, "etcd")) {
		if (o->state) {
			snprintf(err, errlen, "--state is for --store file");
			return NULL;
		}
		return store_etcd_open(o, err, errlen);
	}
	if (!strcmp(o->store, "kubernetes")) {
		if (o->state || o->etcd) {
			snprintf(err, errlen, "%s is not for --store kubernetes",
			         o->state ? "--state" : "--etcd");
			return NULL;
		}
		return store_kube_open(o, err, errlen);
	}
	snprintf(err, errlen, "--store: '%s' is not file, etcd or kubernetes", o->store);
	return NULL;
}
