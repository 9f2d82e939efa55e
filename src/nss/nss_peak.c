/*
 * libnss_peak.so.2: SSA addresses for unmodified programs, as a glibc NSS hosts module
 * ("hosts: files peak dns" in /etc/nsswitch.conf). For a name that publishes an SSA
 * descriptor (SPEC.md 2, 3), getaddrinfo() and gethostbyname2() get the addresses the
 * service's rule gives this host, computed by libpeak's peak_resolve() for the source the
 * kernel picks toward the service. Every other name is NSS_STATUS_NOTFOUND, so the next
 * module answers as before.
 *
 * One resolver per process, behind one mutex: libpeak's resolver (and its TTL cache) is not
 * thread-safe, so the module serialises lookups and shares the cache between threads.
 * Time is bounded by the module's timeout T (/etc/peak/nss.conf, default 1000 ms): the
 * resolver gets T split over the name servers with one attempt each, a lookup waits at most
 * T for the lock, and a lookup that waited behind one that timed out gives up at once.
 */
#define _GNU_SOURCE /* secure_getenv, pthread_mutex_clocklock */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <nss.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "peak/peak.h"
#include "peak/ssa.h"
#include "peak/util.h"

#define NSS_PEAK_API __attribute__((visibility("default")))

/* glibc's prototypes of the entry points (nss.h), checked against the definitions below */
NSS_DECLARE_MODULE_FUNCTIONS(peak)

enum {
	NSS_TIMEOUT_MS_DEF = 1000,
	NSS_TIMEOUT_MS_MIN = 10,
	NSS_TIMEOUT_MS_MAX = 30000,
	NSS_LINE_MAX = 512,
	NSS_SECRET_FILE_MAX = 128, /* bytes read from a secret file: 32 hex digits and space */
	NSS_NAME_MAX = 253,        /* characters of a name in presentation form, no final dot */
};

static const char conf_path_def[] = "/etc/peak/nss.conf";
static const char resolv_path[] = "/etc/resolv.conf";

/* What identifies a version of a file: a change of any field rebuilds the resolver. */
struct file_id {
	bool exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim;
};

struct nss_conf {
	unsigned timeout_ms;
	bool has_secret;
	uint8_t secret[16];
};

static struct {
	pthread_mutex_t lock;
	bool busy;               /* the lock is held: read by the fork handler */
	struct peak_resolver *r; /* NULL before the first lookup or with no name server */
	bool built;
	struct file_id conf_id, resolv_id;
	uint64_t timeout_end_ms; /* when the last lookup that timed out gave up */
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

static unsigned g_timeout_ms = NSS_TIMEOUT_MS_DEF; /* read without the lock: atomics */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* A fork while another thread held the lock leaves the child a locked mutex and a resolver
 * in the middle of a change: the child starts over (the old resolver is left, not freed,
 * since its state may be half written). */
static void fork_child(void)
{
	if (g.busy)
		g.r = NULL;
	g.busy = false;
	g.built = false;
	pthread_mutex_init(&g.lock, NULL);
}

static void init_once(void)
{
	pthread_atfork(NULL, NULL, fork_child);
}

static const char *conf_path(void)
{
	/* secure_getenv: a set-user-ID program never takes the path from its caller */
	const char *p = secure_getenv("PEAK_NSS_CONF");
	return p && *p ? p : conf_path_def;
}

static struct file_id file_id_of(const char *path)
{
	struct file_id id = {0};
	struct stat st;
	if (stat(path, &st) == 0) {
		id.exists = true;
		id.dev = st.st_dev;
		id.ino = st.st_ino;
		id.size = st.st_size;
		id.mtim = st.st_mtim;
	}
	return id;
}

static bool file_id_eq(const struct file_id *a, const struct file_id *b)
{
	return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino &&
	       a->size == b->size && a->mtim.tv_sec == b->mtim.tv_sec &&
	       a->mtim.tv_nsec == b->mtim.tv_nsec;
}

/* Reads a hop secret (32 hex digits) from path into out. Refuses a file that is not a
 * regular file, that others may read or group or others may write (as the control link's
 * key files). Returns 0, -EPERM (mode), -EINVAL or -errno. */
static int secret_read(const char *path, uint8_t out[static 16])
{
	char buf[NSS_SECRET_FILE_MAX];
	struct stat st;
	ssize_t n = 0, k;
	int ret, fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd == -1)
		return -errno;
	if (fstat(fd, &st) == -1) {
		ret = -errno;
		goto out;
	}
	ret = -EINVAL;
	if (!S_ISREG(st.st_mode))
		goto out;
	ret = -EPERM;
	if (st.st_mode & (S_IRWXO | S_IWGRP))
		goto out;
	while ((size_t)n < sizeof(buf) - 1 && (k = read(fd, buf + n, sizeof(buf) - 1 - n)) != 0) {
		if (k == -1 && errno == EINTR)
			continue;
		if (k == -1) {
			ret = -errno;
			goto out;
		}
		n += k;
	}
	char *b = buf, *e = buf + n;
	while (b < e && (*b == ' ' || *b == '\t' || *b == '\n' || *b == '\r'))
		b++;
	while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		e--;
	ret = ssa_key_parse(b, (size_t)(e - b), out) ? -EINVAL : 0;
out:
	explicit_bzero(buf, sizeof(buf));
	close(fd);
	return ret;
}

/* Reads nss.conf into c (defaults for what it does not say). Lines: "timeout MS" (10..30000,
 * the most one lookup spends in the module) and "secret-file PATH" (the hop secret); "#"
 * starts a comment; unknown keys and bad values are ignored, so a newer file still loads.
 * A file that group or others may write is ignored as a whole: it decides which addresses
 * every program on the host connects to. A missing file is the defaults. */
static void conf_read(const char *path, struct nss_conf *c)
{
	char line[NSS_LINE_MAX];
	struct stat st;
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	if (fstat(fileno(f), &st) == -1 || !S_ISREG(st.st_mode) ||
	    (st.st_mode & (S_IWGRP | S_IWOTH)))
		goto out;
	while (fgets(line, sizeof(line), f)) {
		char key[32], val[NSS_LINE_MAX];
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		if (sscanf(line, "%31s %511s", key, val) != 2)
			continue;
		if (!strcmp(key, "timeout")) {
			char *end;
			errno = 0;
			unsigned long v = strtoul(val, &end, 10);
			if (!errno && !*end && val[0] >= '0' && val[0] <= '9' &&
			    v >= NSS_TIMEOUT_MS_MIN && v <= NSS_TIMEOUT_MS_MAX)
				c->timeout_ms = (unsigned)v;
		} else if (!strcmp(key, "secret-file")) {
			c->has_secret = secret_read(val, c->secret) == 0;
		}
	}
out:
	fclose(f);
}

/* The nameserver lines of resolv.conf that the library will use (at most PEAK_MAX_SERVERS),
 * at least 1. */
static unsigned resolv_count(const char *path)
{
	char line[256];
	unsigned n = 0;
	FILE *f = fopen(path, "re");
	if (!f)
		return 1;
	while (fgets(line, sizeof(line), f) && n < PEAK_MAX_SERVERS) {
		char word[32], addr[80];
		if (sscanf(line, "%31s %79s", word, addr) == 2 && !strcmp(word, "nameserver"))
			n++;
	}
	fclose(f);
	return n ? n : 1;
}

/* Called with the lock held: (re)builds the resolver when nss.conf or resolv.conf changed
 * (a new resolver starts with an empty cache). */
static void resolver_refresh(void)
{
	const char *cp = conf_path();
	struct file_id cid = file_id_of(cp), rid = file_id_of(resolv_path);
	if (g.built && file_id_eq(&cid, &g.conf_id) && file_id_eq(&rid, &g.resolv_id))
		return;
	struct nss_conf c = {.timeout_ms = NSS_TIMEOUT_MS_DEF};
	conf_read(cp, &c);
	unsigned nsrv = resolv_count(resolv_path);
	/* one attempt per server, T split over them: a silent server costs at most T */
	struct peak_resolver_opts o = {
	    .timeout_ms = c.timeout_ms / nsrv ? c.timeout_ms / nsrv : 1,
	    .attempts = 1,
	    .secret = c.has_secret ? c.secret : NULL,
	};
	int err;
	peak_resolver_free(g.r);
	g.r = peak_resolver_new(&o, &err);
	explicit_bzero(&c.secret, sizeof(c.secret));
	__atomic_store_n(&g_timeout_ms, c.timeout_ms, __ATOMIC_RELAXED);
	g.conf_id = cid;
	g.resolv_id = rid;
	g.built = true;
}

static enum nss_status fail(enum nss_status s, int err, int herr, int *errnop, int *herrnop)
{
	*errnop = err;
	*herrnop = herr;
	return s;
}

/* Resolves name through the service's SSA rule into res. Returns NSS_STATUS_SUCCESS (res
 * holds at least one address), NSS_STATUS_NOTFOUND (no SSA answer for this host: no
 * descriptor, an invalid one, a hop service without the secret, select=obj; the next module
 * answers with the AAAA records) or NSS_STATUS_UNAVAIL (no answer in time, a server error,
 * no route toward the service), with *errnop and *herrnop set. */
static enum nss_status lookup(const char *name, struct peak_result *res, int *errnop, int *herrnop)
{
	size_t len = strlen(name);
	/* Single labels ("localhost", names the search list completes) are the dns module's. */
	if (!len || len > NSS_NAME_MAX + 1 || !memchr(name, '.', len - 1))
		return fail(NSS_STATUS_NOTFOUND, ENOENT, HOST_NOT_FOUND, errnop, herrnop);
	pthread_once(&g_once, init_once);
	uint64_t start = peak_mono_ms();
	unsigned t = __atomic_load_n(&g_timeout_ms, __ATOMIC_RELAXED);
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += t / 1000;
	until.tv_nsec += (long)(t % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	if (pthread_mutex_clocklock(&g.lock, CLOCK_MONOTONIC, &until))
		return fail(NSS_STATUS_UNAVAIL, ETIMEDOUT, TRY_AGAIN, errnop, herrnop);
	g.busy = true;
	enum nss_status s = NSS_STATUS_UNAVAIL;
	*errnop = ETIMEDOUT;
	*herrnop = TRY_AGAIN;
	if (g.timeout_end_ms >= start)
		goto out; /* waited behind a lookup that got no answer in time */
	resolver_refresh();
	*errnop = ENOENT;
	*herrnop = NO_RECOVERY;
	if (!g.r)
		goto out; /* no name server */
	int e = peak_resolve(g.r, name, NULL, 0, res);
	switch (e) {
	case 0:
		s = res->ssa && res->n ? NSS_STATUS_SUCCESS : NSS_STATUS_NOTFOUND;
		*herrnop = res->ssa && res->n ? NETDB_SUCCESS : HOST_NOT_FOUND;
		*errnop = 0;
		break;
	case PEAK_E_CONFIG: /* not a domain name */
	case PEAK_E_NXDOMAIN:
	case PEAK_E_NODATA:
	case PEAK_E_APL:
	case PEAK_E_DESC:
	case PEAK_E_SECRET:
	case PEAK_E_OBJECT:
	case PEAK_E_POW:
	case PEAK_E_POW_TIME:
		s = NSS_STATUS_NOTFOUND;
		*herrnop = HOST_NOT_FOUND;
		break;
	case PEAK_E_TIMEOUT:
		g.timeout_end_ms = peak_mono_ms();
		*errnop = ETIMEDOUT;
		*herrnop = TRY_AGAIN;
		break;
	default:
		break; /* SERVFAIL, a bad reply, no route, no memory: UNAVAIL */
	}
out:
	g.busy = false;
	pthread_mutex_unlock(&g.lock);
	return s;
}

/* Carves n bytes aligned to align from the caller's buffer. NULL if it does not fit. */
static void *carve(char **p, size_t *left, size_t n, size_t align)
{
	size_t pad = (align - (uintptr_t)*p % align) % align;
	if (pad > *left || n > *left - pad)
		return NULL;
	void *r = *p + pad;
	*p += pad + n;
	*left -= pad + n;
	return r;
}

/* The name as programs see it: the query's, without a final dot. Copied into the buffer. */
static char *carve_name(char **p, size_t *left, const char *name)
{
	size_t len = strlen(name);
	if (len > 1 && name[len - 1] == '.')
		len--;
	char *s = carve(p, left, len + 1, 1);
	if (s) {
		memcpy(s, name, len);
		s[len] = '\0';
	}
	return s;
}

static enum nss_status too_small(int *errnop, int *herrnop)
{
	return fail(NSS_STATUS_TRYAGAIN, ERANGE, NETDB_INTERNAL, errnop, herrnop);
}

/* glibc's getaddrinfo() entry: the addresses as a list of tuples in buffer. *pat is either
 * NULL (the list's head is returned there) or a tuple the caller provides (the first
 * address goes into it), as glibc versions differ. ttlp is left alone. */
NSS_PEAK_API enum nss_status _nss_peak_gethostbyname4_r(const char *name,
                                                        struct gaih_addrtuple **pat, char *buffer,
                                                        size_t buflen, int *errnop, int *herrnop,
                                                        int32_t *ttlp)
{
	struct peak_result res;
	(void)ttlp;
	enum nss_status s = lookup(name, &res, errnop, herrnop);
	if (s != NSS_STATUS_SUCCESS)
		return s;
	char *p = buffer;
	size_t left = buflen;
	char *cname = carve_name(&p, &left, name);
	struct gaih_addrtuple *t =
	    cname ? carve(&p, &left, res.n * sizeof(*t), alignof(struct gaih_addrtuple)) : NULL;
	if (!t)
		return too_small(errnop, herrnop);
	for (unsigned i = 0; i < res.n; i++) {
		t[i] = (struct gaih_addrtuple){
		    .next = i + 1 < res.n ? &t[i + 1] : NULL,
		    .name = i ? NULL : cname,
		    .family = AF_INET6,
		};
		memcpy(t[i].addr, &res.cand[i].dst.sin6_addr, 16);
	}
	if (*pat)
		**pat = t[0];
	else
		*pat = t;
	return NSS_STATUS_SUCCESS;
}

/* gethostbyname2_r() and friends: a hostent in buffer. Only AF_INET6 has SSA addresses;
 * AF_INET is NSS_STATUS_NOTFOUND (the next module answers). */
NSS_PEAK_API enum nss_status _nss_peak_gethostbyname3_r(const char *name, int af,
                                                        struct hostent *host, char *buffer,
                                                        size_t buflen, int *errnop, int *herrnop,
                                                        int32_t *ttlp, char **canonp)
{
	struct peak_result res;
	(void)ttlp;
	if (af != AF_INET6)
		return fail(NSS_STATUS_NOTFOUND, EAFNOSUPPORT, HOST_NOT_FOUND, errnop, herrnop);
	enum nss_status s = lookup(name, &res, errnop, herrnop);
	if (s != NSS_STATUS_SUCCESS)
		return s;
	char *p = buffer;
	size_t left = buflen;
	char **addrs = carve(&p, &left, (res.n + 1) * sizeof(char *), alignof(char *));
	char **aliases = addrs ? carve(&p, &left, sizeof(char *), alignof(char *)) : NULL;
	char *a = aliases ? carve(&p, &left, res.n * 16u, alignof(struct in6_addr)) : NULL;
	char *cname = a ? carve_name(&p, &left, name) : NULL;
	if (!cname)
		return too_small(errnop, herrnop);
	for (unsigned i = 0; i < res.n; i++) {
		memcpy(a + 16 * i, &res.cand[i].dst.sin6_addr, 16);
		addrs[i] = a + 16 * i;
	}
	addrs[res.n] = NULL;
	aliases[0] = NULL;
	*host = (struct hostent){
	    .h_name = cname,
	    .h_aliases = aliases,
	    .h_addrtype = AF_INET6,
	    .h_length = 16,
	    .h_addr_list = addrs,
	};
	if (canonp)
		*canonp = cname;
	return NSS_STATUS_SUCCESS;
}

NSS_PEAK_API enum nss_status _nss_peak_gethostbyname2_r(const char *name, int af,
                                                        struct hostent *host, char *buffer,
                                                        size_t buflen, int *errnop, int *herrnop)
{
	return _nss_peak_gethostbyname3_r(name, af, host, buffer, buflen, errnop, herrnop, NULL,
	                                  NULL);
}

/* gethostbyname_r() asks for AF_INET: never an SSA answer. */
NSS_PEAK_API enum nss_status _nss_peak_gethostbyname_r(const char *name, struct hostent *host,
                                                       char *buffer, size_t buflen, int *errnop,
                                                       int *herrnop)
{
	return _nss_peak_gethostbyname3_r(name, AF_INET, host, buffer, buflen, errnop, herrnop,
	                                  NULL, NULL);
}
