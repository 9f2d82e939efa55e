/* peak_resolve and peak_connect: the network side of the client library. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../store/client.h"
#include "../sys/net.h"
#include "client.h"
#include "peak/util.h"

enum {
	DEF_TIMEOUT_MS = 1000,
	DEF_ATTEMPTS = 2,
	DEF_UDP_SIZE = 1232,
	DEF_REPLICAS = 2,
	DEF_CACHE = 256,
	DEF_CONNECT_MS = 5000,
	HE_DELAY_MS = 250, /* RFC 8305 section 5: Connection Attempt Delay */
	HE_DELAY_MIN_MS = 100,
	HE_DELAY_MAX_MS = 2000,
	MAX_TTL_S = 86400,
	MSG_MAX = 65535,
	SRC_CACHE_N = 8,         /* destination prefixes whose source is remembered */
	SRC_CACHE_TTL_MS = 1000, /* how long a source found toward one is trusted */
};

/* The source the kernel picked toward a service's first prefix (source_toward), kept so a
 * resolver reused for many requests asks once a second, not once per call. */
struct src_ent {
	uint8_t pfx[16]; /* the destination prefix, as the APL record gave it */
	uint8_t len;
	uint8_t src[16];
	uint64_t expiry_ms; /* 0: unused */
};

struct cache_ent {
	struct dns_name name; /* lower case */
	uint16_t type, id;
	uint64_t expiry_ms;
	uint8_t *msg;
	size_t len;
};

struct peak_resolver {
	struct sockaddr_storage srv[PEAK_MAX_SERVERS];
	socklen_t srvlen[PEAK_MAX_SERVERS];
	unsigned nsrv;
	unsigned timeout_ms, attempts, replicas, attempt_delay_ms;
	bool no_tcp, has_secret, has_source;
	uint8_t source[16];
	uint16_t udp_size;
	uint8_t secret[16];
	struct cache_ent *cache;
	unsigned ncache;
	struct pow_cache pow;
	int last_errno;
	struct store_pool *store_pool; /* the store calls' kept connections (lazily made) */
	struct src_ent srcs[SRC_CACHE_N];
	unsigned src_next;
	source_lookup_fn source_lookup; /* NULL: source_toward */
	void *source_lookup_arg;
	uint64_t rnd;            /* splitmix64 state for rand rules, drawn once from getrandom */
	unsigned store_replicas; /* resolver_store_replicas */
	char detail[256];
	uint8_t buf[3][MSG_MAX];
};

static int set_detail(struct peak_resolver *r, int err, const char *what, const char *arg)
{
	snprintf(r->detail, sizeof(r->detail), "%s%s", what, arg);
	return err;
}

/* "ADDR", "IPV4:PORT" or "[IPV6]:PORT" (port 53 if none). */
static int server_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char buf[80];
	uint8_t fam, a[16];
	if (!sockaddr_parse(s, ss, len))
		return 0;
	snprintf(buf, sizeof(buf), "%s", s);
	char *pct = strchr(buf, '%'); /* a scope id: not supported, dropped */
	if (pct)
		*pct = '\0';
	if (addr_parse(buf, &fam, a))
		return -EINVAL;
	char full[96];
	snprintf(full, sizeof(full), fam == PEAK_AFI_IP6 ? "[%s]:53" : "%s:53", buf);
	return sockaddr_parse(full, ss, len);
}

static int load_resolv_conf(struct peak_resolver *r, const char *path)
{
	FILE *f = fopen(path ? path : "/etc/resolv.conf", "r");
	char line[256];
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f) && r->nsrv < PEAK_MAX_SERVERS) {
		char word[32], addr[80];
		if (sscanf(line, "%31s %79s", word, addr) == 2 && !strcmp(word, "nameserver") &&
		    !server_parse(addr, &r->srv[r->nsrv], &r->srvlen[r->nsrv]))
			r->nsrv++;
	}
	fclose(f);
	return 0;
}

struct peak_resolver *peak_resolver_new(const struct peak_resolver_opts *o, int *err)
{
	static const struct peak_resolver_opts defaults;
	struct peak_resolver *r = calloc(1, sizeof(*r));
	if (!o)
		o = &defaults;
	*err = -ENOMEM;
	if (!r)
		return NULL;
	r->timeout_ms = o->timeout_ms ? o->timeout_ms : DEF_TIMEOUT_MS;
	r->attempts = o->attempts ? o->attempts : DEF_ATTEMPTS;
	r->replicas = o->replicas ? o->replicas : DEF_REPLICAS;
	r->attempt_delay_ms = o->attempt_delay_ms ? o->attempt_delay_ms : HE_DELAY_MS;
	if (r->attempt_delay_ms < HE_DELAY_MIN_MS)
		r->attempt_delay_ms = HE_DELAY_MIN_MS;
	if (r->attempt_delay_ms > HE_DELAY_MAX_MS)
		r->attempt_delay_ms = HE_DELAY_MAX_MS;
	r->no_tcp = o->no_tcp;
	r->udp_size = o->udp_size ? o->udp_size : DEF_UDP_SIZE;
	r->ncache = o->cache_entries ? o->cache_entries : DEF_CACHE;
	if (o->secret) {
		memcpy(r->secret, o->secret, 16);
		r->has_secret = true;
	}
	if (o->source) {
		memcpy(r->source, o->source, 16);
		r->has_source = true;
	}
	if (getrandom(&r->rnd, sizeof(r->rnd), 0) != sizeof(r->rnd))
		r->rnd = peak_mono_ms() ^ (uint64_t)(uintptr_t)r;
	if (!(r->cache = calloc(r->ncache, sizeof(*r->cache)))) {
		peak_resolver_free(r);
		return NULL;
	}
	*err = PEAK_E_CONFIG;
	for (unsigned i = 0; i < PEAK_MAX_SERVERS && o->servers[i]; i++) {
		if (server_parse(o->servers[i], &r->srv[r->nsrv], &r->srvlen[r->nsrv])) {
			peak_resolver_free(r);
			return NULL;
		}
		r->nsrv++;
	}
	if (!r->nsrv)
		load_resolv_conf(r, o->resolv_conf);
	if (!r->nsrv) {
		peak_resolver_free(r);
		return NULL;
	}
	*err = 0;
	return r;
}

void peak_resolver_free(struct peak_resolver *r)
{
	if (!r)
		return;
	for (unsigned i = 0; r->cache && i < r->ncache; i++)
		free(r->cache[i].msg);
	free(r->cache);
	store_pool_free(r->store_pool);
	memset(r->secret, 0, sizeof(r->secret));
	free(r);
}

void peak_resolver_set_source(struct peak_resolver *r, const struct in6_addr *source)
{
	r->has_source = source != NULL;
	if (source)
		memcpy(r->source, source, 16);
}

int peak_last_errno(const struct peak_resolver *r)
{
	return r->last_errno;
}

const char *peak_last_detail(const struct peak_resolver *r)
{
	return r->detail;
}

/* ---- one DNS exchange: queries sent together, answers matched by id ---- */

struct pending {
	struct dns_name qname;
	uint16_t qtype, id;
	uint8_t q[512];
	size_t qlen;
	uint8_t *resp;
	size_t rlen;
	bool done, tc;
	unsigned server;
};

static void pending_init(struct peak_resolver *r, struct pending *p, const struct dns_name *n,
                         uint16_t type, uint8_t *buf)
{
	struct dns_writer w;
	memset(p, 0, sizeof(*p));
	p->qname = *n;
	p->qtype = type;
	p->resp = buf;
	if (getrandom(&p->id, sizeof(p->id), 0) != sizeof(p->id))
		p->id = (uint16_t)peak_mono_ms();
	dns_writer_init(&w, p->q, sizeof(p->q), p->id, DNS_F_RD);
	dns_writer_question(&w, n, type, DNS_C_IN);
	if (r->udp_size >= DNS_UDP_MIN)
		dns_writer_opt(&w, r->udp_size, 0, 0, false, NULL);
	int len = dns_writer_finish(&w);
	p->qlen = len > 0 ? (size_t)len : 0;
}

static bool all_done(const struct pending *p, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (!p[i].done)
			return false;
	return true;
}

/* Waits for fd to become ready for events until deadline. Returns 1 ready, 0 timeout. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		uint64_t t = peak_mono_ms();
		if (t >= deadline)
			return 0;
		struct pollfd pf = {.fd = fd, .events = events};
		int k = poll(&pf, 1, (int)(deadline - t));
		if (k > 0)
			return 1;
		if (k == -1 && errno != EINTR)
			return -1;
	}
}

static int udp_round(struct peak_resolver *r, unsigned s, struct pending *p, unsigned n)
{
	int fd = socket(r->srv[s].ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (connect(fd, (struct sockaddr *)&r->srv[s], r->srvlen[s]) == -1) {
		close(fd);
		return -errno;
	}
	for (unsigned i = 0; i < n; i++)
		if (!p[i].done)
			(void)send(fd, p[i].q, p[i].qlen, 0);
	uint64_t deadline = peak_mono_ms() + r->timeout_ms;
	while (!all_done(p, n) && wait_fd(fd, POLLIN, deadline) > 0) {
		uint8_t msg[MSG_MAX];
		ssize_t k = recv(fd, msg, sizeof(msg), 0);
		if (k < DNS_HDR_LEN)
			continue; /* an error (e.g. ICMP unreachable), or not DNS: keep waiting */
		uint16_t id = (uint16_t)(msg[0] << 8 | msg[1]);
		for (unsigned i = 0; i < n; i++) {
			if (p[i].done || p[i].id != id)
				continue;
			memcpy(p[i].resp, msg, (size_t)k);
			p[i].rlen = (size_t)k;
			p[i].done = true;
			p[i].tc = msg[2] & (DNS_F_TC >> 8);
			p[i].server = s;
		}
	}
	close(fd);
	return 0;
}

/* RFC 7766: the same query over TCP, two-byte length framing. */
static int tcp_exchange(struct peak_resolver *r, struct pending *p)
{
	unsigned s = p->server;
	uint64_t deadline = peak_mono_ms() + r->timeout_ms;
	int fd = socket(r->srv[s].ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int ret = PEAK_E_TIMEOUT;
	uint8_t lenb[2] = {(uint8_t)(p->qlen >> 8), (uint8_t)p->qlen};
	size_t want = 0, have = 0;
	if (fd == -1)
		return -errno;
	if (connect(fd, (struct sockaddr *)&r->srv[s], r->srvlen[s]) == -1 && errno != EINPROGRESS)
		goto out;
	if (wait_fd(fd, POLLOUT, deadline) <= 0)
		goto out;
	struct iovec iov[2] = {{lenb, 2}, {p->q, p->qlen}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
	if (sendmsg(fd, &mh, MSG_NOSIGNAL) != (ssize_t)(2 + p->qlen))
		goto out;
	uint8_t hdr[2];
	while (have < 2 + want || want == 0) {
		if (wait_fd(fd, POLLIN, deadline) <= 0)
			goto out;
		ssize_t k = have < 2 ? recv(fd, hdr + have, 2 - have, 0)
		                     : recv(fd, p->resp + have - 2, 2 + want - have, 0);
		if (k <= 0) {
			ret = set_detail(r, PEAK_E_BADREPLY,
			                 "TCP: the connection ended before the whole answer", "");
			goto out;
		}
		have += (size_t)k;
		if (have == 2) {
			/* the 2-byte length allows up to 65535 bytes: all of them fit p->resp */
			want = (size_t)hdr[0] << 8 | hdr[1];
			if (want < DNS_HDR_LEN) {
				ret = set_detail(r, PEAK_E_BADREPLY,
				                 "TCP: an answer shorter than a DNS header", "");
				goto out;
			}
		}
	}
	p->rlen = want;
	p->tc = false;
	ret = 0;
out:
	close(fd);
	return ret;
}

/* Sends the queries (in parallel over UDP, to each server in turn, attempts times), then
 * retries truncated answers over TCP. */
static int exchange(struct peak_resolver *r, struct pending *p, unsigned n)
{
	for (unsigned s = 0; s < r->nsrv && !all_done(p, n); s++)
		for (unsigned a = 0; a < r->attempts && !all_done(p, n); a++)
			udp_round(r, s, p, n);
	if (!all_done(p, n))
		return PEAK_E_TIMEOUT;
	for (unsigned i = 0; i < n; i++) {
		if (!p[i].tc)
			continue;
		if (r->no_tcp)
			return set_detail(r, PEAK_E_BADREPLY, "truncated answer, and TCP is off",
			                  "");
		int e = tcp_exchange(r, &p[i]);
		if (e)
			return e;
	}
	return 0;
}

/* ---- the cache ---- */

static struct cache_ent *cache_find(struct peak_resolver *r, const struct dns_name *n,
                                    uint16_t type)
{
	uint64_t t = peak_mono_ms();
	for (unsigned i = 0; i < r->ncache; i++) {
		struct cache_ent *c = &r->cache[i];
		if (c->msg && c->type == type && c->expiry_ms > t && dns_name_eq(&c->name, n))
			return c;
	}
	return NULL;
}

static void cache_put(struct peak_resolver *r, const struct pending *p, uint32_t ttl)
{
	if (!ttl)
		return;
	if (ttl > MAX_TTL_S)
		ttl = MAX_TTL_S;
	uint64_t t = peak_mono_ms();
	struct cache_ent *victim = &r->cache[0];
	for (unsigned i = 0; i < r->ncache; i++) {
		struct cache_ent *c = &r->cache[i];
		if (!c->msg || c->expiry_ms <= t ||
		    (c->type == p->qtype && dns_name_eq(&c->name, &p->qname))) {
			victim = c;
			break;
		}
		if (c->expiry_ms < victim->expiry_ms)
			victim = c;
	}
	uint8_t *m = malloc(p->rlen);
	if (!m)
		return;
	memcpy(m, p->resp, p->rlen);
	free(victim->msg);
	victim->msg = m;
	victim->len = p->rlen;
	victim->name = p->qname;
	dns_name_lower(&victim->name);
	victim->type = p->qtype;
	victim->id = p->id;
	victim->expiry_ms = t + (uint64_t)ttl * 1000;
}

/* Fills the answers of up to 3 (name, type) questions, from the cache or the network. Each
 * answer is in r->buf[i] (cached ones are copied there, so inserting into the cache can
 * never free an answer still in use) until the next call. */
struct question {
	const struct dns_name *name;
	uint16_t type;
	const uint8_t *msg; /* out */
	size_t len;
	uint16_t id;
};

static int ask(struct peak_resolver *r, struct question *q, unsigned n)
{
	struct pending p[3];
	unsigned np = 0, map[3];
	for (unsigned i = 0; i < n; i++) {
		struct cache_ent *c = cache_find(r, q[i].name, q[i].type);
		if (c) {
			memcpy(r->buf[i], c->msg, c->len);
			q[i].msg = r->buf[i];
			q[i].len = c->len;
			q[i].id = c->id;
			continue;
		}
		pending_init(r, &p[np], q[i].name, q[i].type, r->buf[i]);
		map[np++] = i;
	}
	if (!np)
		return 0;
	int e = exchange(r, p, np);
	if (e)
		return e;
	for (unsigned k = 0; k < np; k++) {
		struct answer a;
		struct question *qq = &q[map[k]];
		qq->msg = p[k].resp;
		qq->len = p[k].rlen;
		qq->id = p[k].id;
		if (answer_parse(qq->msg, qq->len, qq->id, qq->name, qq->type, &a, NULL, NULL, NULL,
		                 0, NULL, NULL) == 0 &&
		    (a.rcode == DNS_R_NOERROR || a.rcode == DNS_R_NXDOMAIN))
			cache_put(r, &p[k], a.ttl);
	}
	return 0;
}

/* The error of answer_parse, with which check or limit failed in r->detail. */
static int answer_error(struct peak_resolver *r, int e, const struct answer *a, const char *what)
{
	if (e == PEAK_E_APL && a->apl_items > CLIENT_MAX_APL)
		snprintf(r->detail, sizeof(r->detail),
		         "%u items, more than the %d prefixes a service may have", a->apl_items,
		         CLIENT_MAX_APL);
	else if (e == PEAK_E_DESC && a->txt_len)
		snprintf(r->detail, sizeof(r->detail),
		         "%zu characters, more than the %d a descriptor may have", a->txt_len,
		         PEAK_DESC_MAX - 1);
	else
		snprintf(r->detail, sizeof(r->detail), "%s answer: %s", what, a->why ? a->why : "");
	return e;
}

static int rcode_error(int rcode)
{
	return rcode == DNS_R_NXDOMAIN ? PEAK_E_NXDOMAIN : PEAK_E_SERVFAIL;
}

/* The source address the kernel picks toward dst: a connected UDP socket's name (no packet
 * is sent). Returns 0 or -errno. */
static int source_toward(void *arg, const uint8_t dst[16], uint8_t src[16])
{
	struct sockaddr_in6 to = {.sin6_family = AF_INET6, .sin6_port = htons(9)};
	struct sockaddr_in6 me;
	socklen_t ml = sizeof(me);
	(void)arg;
	memcpy(&to.sin6_addr, dst, 16);
	int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	int ret = 0;
	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) == -1 ||
	    getsockname(fd, (struct sockaddr *)&me, &ml) == -1)
		ret = -errno;
	else
		memcpy(src, &me.sin6_addr, 16);
	close(fd);
	return ret;
}

/* The source toward an address of the prefix: remembered per prefix for SRC_CACHE_TTL_MS
 * (a route or address change shows within that), forgotten earlier when a connect fails
 * (resolver_sources_forget). */
static int source_for(struct peak_resolver *r, const struct prefix *p, uint8_t src[16])
{
	const uint8_t *key = p->addr;
	uint64_t t = peak_mono_ms();
	for (unsigned i = 0; i < SRC_CACHE_N; i++) {
		struct src_ent *c = &r->srcs[i];
		if (c->expiry_ms > t && c->len == p->len && !memcmp(c->pfx, key, 16)) {
			memcpy(src, c->src, 16);
			return 0;
		}
	}
	uint8_t dst[16];
	memcpy(dst, p->addr, 16);
	dst[15] |= 1;
	int e = r->source_lookup ? r->source_lookup(r->source_lookup_arg, dst, src)
	                         : source_toward(NULL, dst, src);
	if (e) {
		r->last_errno = -e;
		return PEAK_E_NOROUTE;
	}
	struct src_ent *c = &r->srcs[r->src_next++ % SRC_CACHE_N];
	memcpy(c->pfx, key, 16);
	c->len = p->len;
	memcpy(c->src, src, 16);
	c->expiry_ms = t + SRC_CACHE_TTL_MS;
	return 0;
}

/* splitmix64: the seed of a call's rand rules, with no system call per call */
static uint64_t next_rnd(struct peak_resolver *r)
{
	uint64_t z = (r->rnd += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* cand_req.stop: the proof of work's deadline (ms, CLOCK_MONOTONIC) is past. */
static bool pow_deadline_past(void *arg)
{
	return peak_mono_ms() >= *(const uint64_t *)arg;
}

int peak_resolve(struct peak_resolver *r, const char *name, const char *object, uint16_t port,
                 struct peak_result *out)
{
	struct dns_name n, ssa;
	struct apl_item items[CLIENT_MAX_APL];
	struct prefix pfx[CLIENT_MAX_APL];
	struct answer aa, at;
	int napl = 0, e;

	memset(out, 0, sizeof(*out));
	r->detail[0] = '\0';
	r->last_errno = 0;
	if (dns_name_parse(name, &n))
		return set_detail(r, PEAK_E_CONFIG, "not a domain name: ", name);
	bool has_ssa = !dns_name_parse("_ssa", &ssa) && ssa.len - 1u + n.len <= DNS_NAME_MAX;
	if (has_ssa) {
		memcpy(ssa.wire + ssa.len - 1, n.wire, n.len);
		ssa.len = (uint8_t)(ssa.len - 1 + n.len);
		struct question q[2] = {{&n, DNS_T_APL}, {&ssa, DNS_T_TXT}};
		if ((e = ask(r, q, 2)))
			return e;
		if ((e = answer_parse(q[0].msg, q[0].len, q[0].id, &n, DNS_T_APL, &aa, items, &napl,
		                      NULL, 0, NULL, NULL)))
			return answer_error(r, e, &aa, "APL");
		if (aa.rcode)
			return rcode_error(aa.rcode);
		if ((e = answer_parse(q[1].msg, q[1].len, q[1].id, &ssa, DNS_T_TXT, &at, NULL, NULL,
		                      out->descriptor, sizeof(out->descriptor), NULL, NULL)))
			return answer_error(r, e, &at, "TXT");
		if (at.rcode && at.rcode != DNS_R_NXDOMAIN)
			return rcode_error(at.rcode);
		if (aa.nrr && at.nrr) {
			struct ssa_desc d;
			struct ssa_space sp;
			int np = ssa_prefixes_from_apl(items, napl, pfx);
			if (np < 0)
				return set_detail(r, np,
				                  "negated or IPv4 items, or prefixes of unequal "
				                  "length",
				                  "");
			if (ssa_desc_parse(out->descriptor, strlen(out->descriptor), &d, r->detail,
			                   sizeof(r->detail)) ||
			    ssa_space_init(&sp, &d, pfx, (unsigned)np, r->detail,
			                   sizeof(r->detail)))
				return PEAK_E_DESC;
			uint8_t src[16];
			if (r->has_source)
				memcpy(src, r->source, 16);
			else if ((e = source_for(r, &pfx[0], src)))
				return e;
			struct cand_req cq = {
			    .sp = &sp,
			    .src = src,
			    .object = object,
			    .secret = r->has_secret ? r->secret : NULL,
			    .now = (uint64_t)time(NULL),
			    .replicas = r->replicas,
			    .port = port,
			    .pow = &r->pow,
			    .rnd = next_rnd(r),
			};
			uint64_t t0 = peak_mono_ms(), deadline = t0 + r->timeout_ms;
			cq.stop = pow_deadline_past;
			cq.stop_arg = &deadline;
			e = candidates_compute(&cq, out);
			if (e == PEAK_E_POW_TIME) {
				snprintf(
				    r->detail, sizeof(r->detail),
				    "pow=%u (about 2^%u hashes per address): gave up after %llu "
				    "ms, the timeout",
				    sp.d.pow, sp.d.pow, (unsigned long long)(peak_mono_ms() - t0));
			}
			return e;
		}
	}
	/* No APL or no descriptor: the name's AAAA records. */
	struct question q = {&n, DNS_T_AAAA};
	uint8_t aaaa[PEAK_MAX_CANDIDATES][16];
	unsigned naaaa = 0;
	if ((e = ask(r, &q, 1)))
		return e;
	if ((e = answer_parse(q.msg, q.len, q.id, &n, DNS_T_AAAA, &aa, NULL, NULL, NULL, 0, aaaa,
	                      &naaaa)))
		return answer_error(r, e, &aa, "AAAA");
	if (aa.rcode)
		return rcode_error(aa.rcode);
	if (!naaaa)
		return PEAK_E_NODATA;
	candidates_from_aaaa((const uint8_t(*)[16])aaaa, naaaa, port, out);
	for (unsigned i = 0; r->has_source && i < out->n; i++)
		memcpy(&out->cand[i].src.sin6_addr, r->source, 16);
	return 0;
}

int peak_resolve_types(struct peak_resolver *r, const char *name, struct typemap *m)
{
	struct dns_name n, t;
	struct answer a;
	char text[TYPEMAP_TEXT_MAX];
	int e;

	memset(m, 0, sizeof(*m));
	r->detail[0] = '\0';
	r->last_errno = 0;
	if (dns_name_parse(name, &n))
		return set_detail(r, PEAK_E_CONFIG, "not a domain name: ", name);
	if (dns_name_parse("_types", &t) || t.len - 1u + n.len > DNS_NAME_MAX)
		return set_detail(r, PEAK_E_CONFIG, "too long for a _types leaf: ", name);
	memcpy(t.wire + t.len - 1, n.wire, n.len);
	t.len = (uint8_t)(t.len - 1 + n.len);
	struct question q = {&t, DNS_T_TXT};
	if ((e = ask(r, &q, 1)))
		return e;
	if ((e = answer_parse(q.msg, q.len, q.id, &t, DNS_T_TXT, &a, NULL, NULL, text, sizeof(text),
	                      NULL, NULL))) {
		if (e == PEAK_E_DESC) /* the text does not fit: the map's own limit */
			return set_detail(r, PEAK_E_TYPES, "longer than a map may be", "");
		return answer_error(r, e, &a, "TXT");
	}
	if (a.rcode == DNS_R_NXDOMAIN || (!a.rcode && !a.nrr))
		return set_detail(r, PEAK_E_NODATA, "no content-type map at _types.", name);
	if (a.rcode)
		return rcode_error(a.rcode);
	if (typemap_parse(text, strlen(text), m, r->detail, sizeof(r->detail)))
		return PEAK_E_TYPES;
	return 0;
}

/* ---- connecting: Happy Eyeballs over the candidates ---- */

static int attempt_start(const struct peak_candidate *c, int *err)
{
	static const struct in6_addr any = IN6ADDR_ANY_INIT;
	int one = 1;
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		*err = errno;
		return -1;
	}
	if (memcmp(&c->src.sin6_addr, &any, sizeof(any))) {
		/* The rule was computed for this source: send from it, nothing else. */
		setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one));
		if (bind(fd, (const struct sockaddr *)&c->src, sizeof(c->src)) == -1) {
			*err = errno;
			close(fd);
			return -1;
		}
	}
	if (connect(fd, (const struct sockaddr *)&c->dst, sizeof(c->dst)) == -1 &&
	    errno != EINPROGRESS) {
		*err = errno;
		close(fd);
		return -1;
	}
	return fd;
}

int peak_connect(struct peak_resolver *r, const char *name, const char *object, uint16_t port,
                 unsigned timeout_ms, struct peak_candidate *used)
{
	struct peak_result res;
	int e = peak_resolve(r, name, object, port, &res);
	if (e)
		return e;
	if (!res.n)
		return PEAK_E_NODATA;
	uint64_t start = peak_mono_ms(),
	         deadline = start + (timeout_ms ? timeout_ms : DEF_CONNECT_MS);
	uint64_t next = start;
	int fds[PEAK_MAX_CANDIDATES], err = ETIMEDOUT, winner = -1;
	unsigned started = 0, k;
	for (k = 0; k < PEAK_MAX_CANDIDATES; k++)
		fds[k] = -1;
	while (winner < 0) {
		uint64_t t = peak_mono_ms();
		if (t >= deadline)
			break;
		unsigned active = 0;
		for (k = 0; k < started; k++)
			active += fds[k] >= 0;
		if (started < res.n && (t >= next || !active)) {
			fds[started] = attempt_start(&res.cand[started], &err);
			started++;
			next = t + r->attempt_delay_ms;
			if (fds[started - 1] < 0)
				next = t; /* failed at once: the next one now */
			continue;
		}
		if (!active)
			break; /* every candidate failed */
		struct pollfd pf[PEAK_MAX_CANDIDATES];
		unsigned idx[PEAK_MAX_CANDIDATES], np = 0;
		for (k = 0; k < started; k++)
			if (fds[k] >= 0) {
				pf[np] = (struct pollfd){.fd = fds[k], .events = POLLOUT};
				idx[np++] = k;
			}
		uint64_t until = started < res.n && next < deadline ? next : deadline;
		int pr = poll(pf, np, (int)(until > t ? until - t : 0));
		if (pr <= 0)
			continue;
		for (unsigned i = 0; i < np; i++) {
			if (!pf[i].revents)
				continue;
			int so = 0;
			socklen_t sl = sizeof(so);
			getsockopt(pf[i].fd, SOL_SOCKET, SO_ERROR, &so, &sl);
			if (!so && winner < 0) {
				winner = (int)idx[i];
				continue;
			}
			if (so) {
				err = so;
				close(fds[idx[i]]);
				fds[idx[i]] = -1;
				next = peak_mono_ms(); /* RFC 8305 5: on failure, start the next at
				                          once */
			}
		}
	}
	for (k = 0; k < started; k++)
		if (fds[k] >= 0 && (int)k != winner)
			close(fds[k]);
	if (winner < 0) {
		r->last_errno = err;
		resolver_sources_forget(r); /* the source may be gone, or the route moved */
		return PEAK_E_CONNECT;
	}
	int fd = fds[winner];
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	if (used)
		*used = res.cand[winner];
	return fd;
}

const char *peak_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case PEAK_E_CONFIG:
		return "bad resolver options or no usable name server";
	case PEAK_E_TIMEOUT:
		return "DNS: no server answered in time";
	case PEAK_E_NXDOMAIN:
		return "DNS: the name does not exist";
	case PEAK_E_NODATA:
		return "DNS: the name has no SSA records and no AAAA records";
	case PEAK_E_SERVFAIL:
		return "DNS: the server failed or refused the query";
	case PEAK_E_BADREPLY:
		return "DNS: a malformed or mismatched reply";
	case PEAK_E_APL:
		return "SSA: the APL record is not a usable set of IPv6 prefixes";
	case PEAK_E_DESC:
		return "SSA: invalid descriptor";
	case PEAK_E_SECRET:
		return "SSA: the service uses hop rules and no secret was given";
	case PEAK_E_OBJECT:
		return "SSA: the service addresses objects (select=obj) and no object was given";
	case PEAK_E_NOROUTE:
		return "no source address toward the service (no route)";
	case PEAK_E_POW:
		return "SSA: no nonce meets the proof of work";
	case PEAK_E_POW_TIME:
		return "SSA: the proof of work did not finish in time";
	case PEAK_E_CONNECT:
		return "connect: every attempt failed or timed out";
	case PEAK_E_NOTFOUND:
		return "store: no replica has the object";
	case PEAK_E_REFUSED:
		return "store: the pods refused the request";
	case PEAK_E_REPLICAS:
		return "store: too few replicas could be reached";
	case PEAK_E_TYPES:
		return "the content-type map (_types) is invalid";
	default:
		return err < 0 && err > -4096 ? strerror(-err) : "unknown error";
	}
}

unsigned resolver_replicas_swap(struct peak_resolver *r, unsigned replicas)
{
	unsigned old = r->replicas;
	r->replicas = replicas;
	return old;
}

struct store_pool *resolver_store_pool(struct peak_resolver *r)
{
	if (!r->store_pool)
		r->store_pool = store_pool_new();
	return r->store_pool;
}

unsigned *resolver_store_replicas(struct peak_resolver *r)
{
	return &r->store_replicas;
}

void resolver_sources_forget(struct peak_resolver *r)
{
	memset(r->srcs, 0, sizeof(r->srcs));
}

void resolver_source_lookup_set(struct peak_resolver *r, source_lookup_fn fn, void *arg)
{
	r->source_lookup = fn;
	r->source_lookup_arg = arg;
	resolver_sources_forget(r);
}

void resolver_detail_set(struct peak_resolver *r, const char *detail)
{
	snprintf(r->detail, sizeof(r->detail), "%s", detail);
}

const char *peak_origin_name(enum peak_origin o)
{
	static const char *const names[] = {"rule", "fanout", "replica", "random", "aaaa"};
	return (unsigned)o < 5 ? names[o] : "?";
}
