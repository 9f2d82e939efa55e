/* The client library's pure steps: reading answers, validating SSA records, candidate
 * order and the proof-of-work cache, with DNS answers built by the project's codec. */
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"

#define K "000102030405060708090a0b0c0d0e0f"

static struct dns_name N(const char *s) {
	struct dns_name n;
	assert_int_equal(dns_name_parse(s, &n), 0);
	return n;
}

/* A reply to (name, type) with id, rcode, and one answer record of rdata (or none). */
static size_t
reply(uint8_t *buf, uint16_t id, const char *name, uint16_t type, int rcode, const void *rd,
      size_t rdlen, uint32_t ttl, bool soa)
{
	struct dns_writer w;
	struct dns_name n = N(name), z = N("svc.example.");
	dns_writer_init(&w, buf, 4096, id, (uint16_t)(DNS_F_QR | DNS_F_AA | rcode));
	dns_writer_question(&w, &n, type, DNS_C_IN);
	if (rd) {
		dns_writer_rr_begin(&w, DNS_S_ANSWER, &n, type, DNS_C_IN, ttl);
		dns_writer_bytes(&w, rd, rdlen);
		dns_writer_rr_end(&w);
	}
	if (soa) {
		struct dns_soa s = {N("ns1.svc.example."), N("h.svc.example."), 1, 2, 3, 4, 20};
		dns_writer_rr_begin(&w, DNS_S_AUTHORITY, &z, DNS_T_SOA, DNS_C_IN, 60);
		dns_writer_soa_rdata(&w, &s);
		dns_writer_rr_end(&w);
	}
	return (size_t)dns_writer_finish(&w);
}

static void test_answer_parse(void **state)
{
	(void)state;
	uint8_t buf[4096], rd[64];
	struct answer a;
	struct apl_item items[CLIENT_MAX_APL];
	int n;
	char txt[256];
	uint8_t aaaa[PEAK_MAX_CANDIDATES][16];
	unsigned na;
	struct dns_name api = N("api.svc.example.");
	struct apl_item it[2];
	int k = apl_parse_text("2:2001:db8:5::/64 2:2001:db8:6::/64", it, 2, NULL, 0);
	int rl = apl_write(it, (size_t)k, rd, sizeof(rd));
	size_t len = reply(buf, 7, "API.svc.example.", DNS_T_APL, 0, rd, (size_t)rl, 300, false);
	assert_int_equal(
	    answer_parse(buf, len, 7, &api, DNS_T_APL, &a, items, &n, NULL, 0, NULL, NULL), 0);
	assert_int_equal(n, 2);
	assert_int_equal(a.nrr, 1);
	assert_int_equal(a.ttl, 300);
	/* wrong id, wrong name, wrong type, not a reply, truncated */
	assert_int_equal(
	    answer_parse(buf, len, 8, &api, DNS_T_APL, &a, items, &n, NULL, 0, NULL, NULL),
	    PEAK_E_BADREPLY);
	struct dns_name other = N("web.svc.example.");
	assert_int_equal(
	    answer_parse(buf, len, 7, &other, DNS_T_APL, &a, items, &n, NULL, 0, NULL, NULL),
	    PEAK_E_BADREPLY);
	assert_int_equal(answer_parse(buf, len, 7, &api, DNS_T_TXT, &a, NULL, NULL, txt,
	                              sizeof(txt), NULL, NULL),
	                 PEAK_E_BADREPLY);
	assert_int_equal(
	    answer_parse(buf, len - 3, 7, &api, DNS_T_APL, &a, items, &n, NULL, 0, NULL, NULL),
	    PEAK_E_BADREPLY);
	buf[2] &= 0x7f; /* QR cleared: a query, not a reply */
	assert_int_equal(
	    answer_parse(buf, len, 7, &api, DNS_T_APL, &a, items, &n, NULL, 0, NULL, NULL),
	    PEAK_E_BADREPLY);
	/* TXT: strings joined */
	struct dns_name ssa = N("_ssa.api.svc.example.");
	uint8_t t[] = "\x08v=ssa1; \x09slice=78;";
	len = reply(buf, 9, "_ssa.api.svc.example.", DNS_T_TXT, 0, t, sizeof(t) - 1, 60, false);
	assert_int_equal(answer_parse(buf, len, 9, &ssa, DNS_T_TXT, &a, NULL, NULL, txt,
	                              sizeof(txt), NULL, NULL),
	                 0);
	assert_string_equal(txt, "v=ssa1; slice=78;");
	/* AAAA, and a malformed AAAA */
	uint8_t a6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
	len = reply(buf, 3, "api.svc.example.", DNS_T_AAAA, 0, a6, 16, 30, false);
	assert_int_equal(
	    answer_parse(buf, len, 3, &api, DNS_T_AAAA, &a, NULL, NULL, NULL, 0, aaaa, &na), 0);
	assert_int_equal(na, 1);
	assert_memory_equal(aaaa[0], a6, 16);
	len = reply(buf, 3, "api.svc.example.", DNS_T_AAAA, 0, a6, 15, 30, false);
	assert_int_equal(
	    answer_parse(buf, len, 3, &api, DNS_T_AAAA, &a, NULL, NULL, NULL, 0, aaaa, &na),
	    PEAK_E_BADREPLY);
	/* negative answers: the TTL is the SOA's minimum, bounded by its TTL (RFC 2308) */
	len = reply(buf, 4, "api.svc.example.", DNS_T_APL, DNS_R_NXDOMAIN, NULL, 0, 0, true);
	assert_int_equal(
	    answer_parse(buf, len, 4, &api, DNS_T_APL, &a, items, &n, NULL, 0, NULL, NULL), 0);
	assert_int_equal(a.rcode, DNS_R_NXDOMAIN);
	assert_int_equal(a.nrr, 0);
	assert_int_equal(a.ttl, 20);
	/* malformed APL rdata */
	uint8_t bad[] = {0, 2, 200, 1, 0x20};
	len = reply(buf, 5, "api.svc.example.", DNS_T_APL, 0, bad, sizeof(bad), 30, false);
	assert_int_equal(
	    answer_parse(buf, len, 5, &api, DNS_T_APL, &a, items, &n, NULL, 0, NULL, NULL),
	    PEAK_E_BADREPLY);
	assert_string_equal(a.why, "malformed record");
}

/* The limits an answer may reach (README, peak resolve): CLIENT_MAX_APL APL items in all,
 * a descriptor of txtcap - 1 characters; past them the error says which limit and by how
 * much, not 'malformed'. */
static void test_answer_limits(void **state)
{
	(void)state;
	uint8_t buf[4096], rd[1024];
	struct answer a;
	struct apl_item items[CLIENT_MAX_APL], it[CLIENT_MAX_APL + 1];
	struct dns_name api = N("api.svc.example.");
	int n;
	for (int i = 0; i <= CLIENT_MAX_APL; i++) {
		struct prefix p = {.family = PEAK_AFI_IP6,
		                   .len = 64,
		                   .addr = {0x20, 0x01, 0x0d, 0xb8, 0, (uint8_t)i}};
		apl_item_from_prefix(&it[i], &p);
	}
	/* exactly the limit: accepted */
	int rl = apl_write(it, CLIENT_MAX_APL, rd, sizeof(rd));
	size_t len = reply(buf, 7, "api.svc.example.", DNS_T_APL, 0, rd, (size_t)rl, 300, false);
	assert_int_equal(
	    answer_parse(buf, len, 7, &api, DNS_T_APL, &a, items, &n, NULL, 0, NULL, NULL), 0);
	assert_int_equal(n, CLIENT_MAX_APL);
	assert_int_equal(a.apl_items, CLIENT_MAX_APL);
	/* one more: refused as too many, counted */
	rl = apl_write(it, CLIENT_MAX_APL + 1, rd, sizeof(rd));
	len = reply(buf, 7, "api.svc.example.", DNS_T_APL, 0, rd, (size_t)rl, 300, false);
	assert_int_equal(
	    answer_parse(buf, len, 7, &api, DNS_T_APL, &a, items, &n, NULL, 0, NULL, NULL),
	    PEAK_E_APL);
	assert_int_equal(a.apl_items, CLIENT_MAX_APL + 1);
	/* counted with no output too (the cache's look at the answer) */
	assert_int_equal(
	    answer_parse(buf, len, 7, &api, DNS_T_APL, &a, NULL, NULL, NULL, 0, NULL, NULL),
	    PEAK_E_APL);
	/* a TXT record longer than the buffer: PEAK_E_DESC with its length, not cut short */
	struct dns_name ssa = N("_ssa.api.svc.example.");
	uint8_t t[2 + 2 * 200];
	t[0] = 200;
	memset(t + 1, 'x', 200);
	t[201] = 200;
	memset(t + 202, 'y', 200);
	char txt[256];
	len = reply(buf, 9, "_ssa.api.svc.example.", DNS_T_TXT, 0, t, sizeof(t), 60, false);
	assert_int_equal(answer_parse(buf, len, 9, &ssa, DNS_T_TXT, &a, NULL, NULL, txt,
	                              sizeof(txt), NULL, NULL),
	                 PEAK_E_DESC);
	assert_int_equal(a.txt_len, 400);
	char big[512];
	assert_int_equal(answer_parse(buf, len, 9, &ssa, DNS_T_TXT, &a, NULL, NULL, big,
	                              sizeof(big), NULL, NULL),
	                 0);
	assert_int_equal(strlen(big), 400);
}

/* answer_parse on mutated replies (no fuzz target of its own yet): whatever the bytes, it
 * returns 0 or an error, reads nothing past the message (ASan builds check) and, on
 * success, never more APL items or TXT characters than its outputs hold. */
static void test_answer_mutations(void **state)
{
	(void)state;
	uint8_t buf[4096], m[4096], rd[1024];
	struct apl_item it[CLIENT_MAX_APL + 2], items[CLIENT_MAX_APL];
	struct dns_name api = N("api.svc.example.");
	struct answer a;
	char txt[64];
	uint8_t aaaa[PEAK_MAX_CANDIDATES][16];
	unsigned na;
	int n;
	for (int i = 0; i < CLIENT_MAX_APL + 2; i++) {
		struct prefix p = {.family = PEAK_AFI_IP6, .len = (uint8_t)(i % 3 ? 64 : 48)};
		p.addr[0] = 0x20;
		p.addr[5] = (uint8_t)i;
		apl_item_from_prefix(&it[i], &p);
	}
	int rl = apl_write(it, CLIENT_MAX_APL + 2, rd, sizeof(rd));
	size_t len = reply(buf, 7, "api.svc.example.", DNS_T_APL, 0, rd, (size_t)rl, 300, true);
	uint64_t seed = 15;
	for (int round = 0; round < 20000; round++) {
		size_t ml = len - test_rand(&seed) % 16;
		memcpy(m, buf, ml);
		for (int k = 1 + (int)(test_rand(&seed) % 4); k > 0; k--)
			m[test_rand(&seed) % ml] = (uint8_t)test_rand(&seed);
		uint16_t type = round % 3 == 0   ? DNS_T_APL
		                : round % 3 == 1 ? DNS_T_TXT
		                                 : DNS_T_AAAA;
		m[DNS_HDR_LEN + api.len + 1] = (uint8_t)type; /* the question's type, low byte */
		int e =
		    answer_parse(m, ml, 7, &api, type, &a, items, &n, txt, sizeof(txt), aaaa, &na);
		assert_true(e == 0 || e == PEAK_E_BADREPLY || e == PEAK_E_APL || e == PEAK_E_DESC);
		if (!e) {
			assert_true(n >= 0 && n <= CLIENT_MAX_APL);
			assert_true(strlen(txt) < sizeof(txt));
			assert_true(na <= PEAK_MAX_CANDIDATES);
		} else {
			assert_non_null(a.why);
		}
	}
}

static void test_apl_validation(void **state)
{
	(void)state;
	struct apl_item it[4];
	struct prefix p[4];
	assert_int_equal(
	    ssa_prefixes_from_apl(it, apl_parse_text("2:2001:db8:5::/64", it, 4, NULL, 0), p), 1);
	int n = apl_parse_text("2:2001:db8:5::/64 !2:2001:db8:6::/64", it, 4, NULL, 0);
	assert_int_equal(ssa_prefixes_from_apl(it, n, p), PEAK_E_APL); /* negated */
	n = apl_parse_text("2:2001:db8:5::/64 2:2001:db8:6::/48", it, 4, NULL, 0);
	assert_int_equal(ssa_prefixes_from_apl(it, n, p), PEAK_E_APL); /* unequal lengths */
	n = apl_parse_text("1:192.0.2.0/24", it, 4, NULL, 0);
	assert_int_equal(ssa_prefixes_from_apl(it, n, p), PEAK_E_APL); /* IPv4 */
	assert_int_equal(ssa_prefixes_from_apl(it, 0, p), PEAK_E_APL); /* empty */
}

static void space(struct ssa_space *sp, const char *desc)
{
	struct ssa_desc d;
	struct prefix p;
	char err[SSA_ERRLEN];
	if (ssa_desc_parse(desc, strlen(desc), &d, err, sizeof(err)))
		fail_msg("%s", err);
	prefix_parse("2001:db8:5::/64", false, &p);
	assert_int_equal(ssa_space_init(sp, &d, &p, 1, err, sizeof(err)), 0);
}

static const char *dst(const struct peak_result *r, unsigned i, char out[ADDR_STRLEN])
{
	return addr_print(PEAK_AFI_IP6, (const uint8_t *)&r->cand[i].dst.sin6_addr, out);
}

static void test_candidates(void **state)
{
	(void)state;
	struct ssa_space sp;
	struct peak_result r;
	char a[ADDR_STRLEN];
	uint8_t src[16], fam, sec[16];
	addr_parse("2001:db8:aa:bb::1", &fam, src);
	struct cand_req q = {.sp = &sp, .src = src, .port = 443, .replicas = 2};

	/* src rule with fanout 4: index 0 (the SPEC vector's rule) first, then 1..3 */
	space(&sp, "v=ssa1; slice=78; select=src; host=src; fanout=4; key=" K);
	assert_int_equal(candidates_compute(&q, &r), 0);
	assert_int_equal(r.n, 4);
	assert_int_equal(r.cand[0].origin, PEAK_ORIGIN_RULE);
	assert_int_equal(r.cand[1].origin, PEAK_ORIGIN_FANOUT);
	assert_string_equal(dst(&r, 3, a), "2001:db8:5:0:a5:2379:4097:c03"); /* index 3 vector */
	assert_int_equal(r.cand[3].index, 3);
	assert_int_equal(ntohs(r.cand[0].dst.sin6_port), 443);
	assert_memory_equal(&r.cand[0].src.sin6_addr, src, 16);

	/* obj: replica 0 then 1, 2 (the SPEC vectors for r=0 and r=1) */
	space(&sp, "v=ssa1; slice=78; select=obj; host=src; key=" K);
	assert_int_equal(candidates_compute(&q, &r), PEAK_E_OBJECT);
	q.object = "videos/cat.mp4";
	assert_int_equal(candidates_compute(&q, &r), 0);
	assert_int_equal(r.n, 3);
	assert_string_equal(dst(&r, 0, a), "2001:db8:5:0:a7b:4da0:eb5d:78fb");
	assert_string_equal(dst(&r, 1, a), "2001:db8:5:0:e9ef:75ef:c305:fbf5");
	assert_int_equal(r.cand[1].origin, PEAK_ORIGIN_REPLICA);
	assert_int_equal(r.cand[2].replica, 2);

	/* hop: needs the secret */
	space(&sp, "v=ssa1; slice=78; select=hop; host=hop; period=30; key=" K);
	q.object = NULL;
	assert_int_equal(candidates_compute(&q, &r), PEAK_E_SECRET);
	ssa_key_parse("f0e0d0c0b0a090807060504030201000", 32, sec);
	q.secret = sec;
	q.now = 1767225600;
	assert_int_equal(candidates_compute(&q, &r), 0);
	assert_string_equal(dst(&r, 0, a), "2001:db8:5:0:94fa:aa89:ed7e:ea37");

	/* rand: three distinct draws */
	space(&sp, "v=ssa1; slice=78");
	q.rnd = 42;
	assert_int_equal(candidates_compute(&q, &r), 0);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.cand[2].origin, PEAK_ORIGIN_RANDOM);
	assert_memory_not_equal(&r.cand[0].dst.sin6_addr, &r.cand[1].dst.sin6_addr, 16);

	/* AAAA: as given, no source */
	uint8_t six[2][16] = {{0x20, 1, 0x0d, 0xb8, [15] = 1}, {0x20, 1, 0x0d, 0xb8, [15] = 2}};
	candidates_from_aaaa((const uint8_t(*)[16])six, 2, 80, &r);
	assert_int_equal(r.n, 2);
	assert_false(r.ssa);
	assert_int_equal(r.cand[1].origin, PEAK_ORIGIN_AAAA);
	assert_true(IN6_IS_ADDR_UNSPECIFIED(&r.cand[0].src.sin6_addr));
}

static void test_pow_cache(void **state)
{
	(void)state;
	struct ssa_space sp;
	struct peak_result r, r2;
	struct pow_cache pc = {0};
	char a[ADDR_STRLEN];
	uint8_t src[16], fam;
	addr_parse("2001:db8:aa:bb::1", &fam, src);
	space(&sp, "v=ssa1; slice=78; select=src; host=src; pow=12; nonce=16; key=" K);
	struct cand_req q = {.sp = &sp, .src = src, .pow = &pc};
	assert_int_equal(candidates_compute(&q, &r), 0);
	assert_string_equal(dst(&r, 0, a), "2001:db8:5:0:a949:8d:78fe:1541"); /* SPEC vector */
	assert_int_equal(pc.misses, 1);
	assert_int_equal(pc.hits, 0);
	assert_int_equal(candidates_compute(&q, &r2), 0); /* paid once */
	assert_int_equal(pc.hits, 1);
	assert_memory_equal(&r.cand[0].dst, &r2.cand[0].dst, sizeof(r.cand[0].dst));
	uint8_t other[16];
	memcpy(other, src, 16);
	other[15] = 2; /* another source: another search */
	q.src = other;
	assert_int_equal(candidates_compute(&q, &r2), 0);
	assert_int_equal(pc.misses, 2);
	/* a nonce too narrow for the work: a clear error */
	space(&sp, "v=ssa1; slice=78; select=src; host=src; pow=20; nonce=1; key=" K);
	assert_int_equal(candidates_compute(&q, &r2), PEAK_E_POW);
}

static unsigned stop_calls;

static bool stop_now(void *arg)
{
	(void)arg;
	stop_calls++;
	return true;
}

/* The proof of work stops at the caller's deadline (cand_req.stop): with nothing found a
 * clear error, with the rule's address found the candidates found so far. */
static void test_pow_deadline(void **state)
{
	(void)state;
	struct ssa_space sp;
	struct peak_result r;
	struct pow_cache pc = {0};
	uint8_t src[16], fam;
	addr_parse("2001:db8:aa:bb::1", &fam, src);
	/* 28 bits of work on 255 fanout addresses: hours of search without a deadline */
	space(&sp, "v=ssa1; slice=78; select=src; host=src; fanout=255; pow=28; key=" K);
	struct cand_req q = {.sp = &sp, .src = src, .pow = &pc, .stop = stop_now};
	stop_calls = 0;
	int e = candidates_compute(&q, &r);
	assert_int_equal(stop_calls, 1); /* the first check ends the whole computation */
	if (e == 0) /* the rule's address took fewer than SSA_POW_CHECK_NONCES nonces */
		assert_true(r.n >= 1);
	else
		assert_int_equal(e, PEAK_E_POW_TIME);
	/* pow=14 on 16 fanout addresses: some need more than SSA_POW_CHECK_NONCES nonces, the
	 * rule's address does not (fixed inputs). Stopped at the first check, the result is the
	 * prefix of the full one found before it. */
	struct peak_result full;
	space(&sp, "v=ssa1; slice=78; select=src; host=src; fanout=16; pow=14; nonce=24; key=" K);
	q.pow = NULL;
	q.stop = NULL;
	assert_int_equal(candidates_compute(&q, &full), 0);
	assert_int_equal(full.n, 16);
	q.stop = stop_now;
	stop_calls = 0;
	assert_int_equal(candidates_compute(&q, &r), 0);
	assert_int_equal(stop_calls, 1);
	assert_true(r.n >= 1 && r.n < full.n);
	assert_memory_equal(r.cand, full.cand, r.n * sizeof(r.cand[0]));
	assert_string_not_equal(peak_strerror(PEAK_E_POW_TIME), "unknown error");
}

/* ---- the source lookup, remembered per destination prefix ---- */

/* A DNS server on 127.0.0.1 for two services: NAME has APL 2001:db8:5::/64, "other." a
 * prefix of its own, and each _ssa. leaf an obj descriptor. */
struct fake_dns {
	int fd;
	atomic_bool stop;
	unsigned port;
};

static void *fake_dns_main(void *arg)
{
	struct fake_dns *f = arg;
	while (!atomic_load(&f->stop)) {
		struct pollfd pf = {.fd = f->fd, .events = POLLIN};
		if (poll(&pf, 1, 50) <= 0)
			continue;
		uint8_t q[512], out[4096], rd[64];
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t k = recvfrom(f->fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
		if (k < 17)
			continue;
		char name[256] = "";
		size_t i = 12, nl = 0;
		while (i < (size_t)k && q[i] && nl + q[i] + 2 < sizeof(name)) {
			memcpy(name + nl, q + i + 1, q[i]);
			nl += q[i];
			name[nl++] = '.';
			i += q[i] + 1u;
		}
		name[nl] = 0;
		if (i + 3 > (size_t)k)
			continue;
		uint16_t id = (uint16_t)(q[0] << 8 | q[1]),
		         type = (uint16_t)(q[i + 1] << 8 | q[i + 2]);
		bool other = strstr(name, "other.") != NULL;
		size_t len = 0;
		if (type == DNS_T_APL) {
			struct apl_item it[1];
			int n = apl_parse_text(other ? "2:2001:db8:6::/64" : "2:2001:db8:5::/64",
			                       it, 1, NULL, 0);
			int rl = apl_write(it, (size_t)n, rd, sizeof(rd));
			len = reply(out, id, name, DNS_T_APL, 0, rd, (size_t)rl, 300, false);
		} else if (type == DNS_T_TXT) {
			static const char d[] = "v=ssa1; slice=78; select=obj; host=src; key=" K;
			uint8_t t[sizeof(d)] = {sizeof(d) - 1};
			memcpy(t + 1, d, sizeof(d) - 1);
			len = reply(out, id, name, DNS_T_TXT, 0, t, sizeof(t), 300, false);
		} else {
			len = reply(out, id, name, type, DNS_R_NXDOMAIN, NULL, 0, 0, true);
		}
		sendto(f->fd, out, len, 0, (struct sockaddr *)&from, fl);
	}
	return NULL;
}

static unsigned lookups, traced;

/* peak_store_opts.trace: notes which replica numbers were tried ("replica N at ...") */
static void count_trace(void *arg, const char *line)
{
	unsigned n;
	(void)arg;
	if (sscanf(line, "replica %u", &n) == 1 && n < 16) {
		assert_false(traced & 1u << n); /* each once */
		traced |= 1u << n;
	}
}

/* A source lookup that counts its calls and answers 2001:db8:aa::1 */
static int count_lookup(void *arg, const uint8_t dst[16], uint8_t src[16])
{
	uint8_t fam;
	(void)arg;
	(void)dst;
	lookups++;
	addr_parse("2001:db8:aa::1", &fam, src);
	return 0;
}

/* A resolver reused for many resolves asks the kernel for its source once per destination
 * prefix (it was once per call: a UDP socket, connect, getsockname, close), and asks again
 * after resolver_sources_forget (a failed connect). */
static void test_source_remembered(void **state)
{
	(void)state;
	struct fake_dns f = {.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	assert_true(f.fd >= 0);
	assert_int_equal(bind(f.fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(f.fd, (struct sockaddr *)&a, &al), 0);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, fake_dns_main, &f), 0);
	char srv[64];
	snprintf(srv, sizeof(srv), "127.0.0.1:%u", ntohs(a.sin_port));
	struct peak_resolver_opts o = {.servers = {srv}, .timeout_ms = 2000};
	int err;
	struct peak_resolver *r = peak_resolver_new(&o, &err);
	assert_non_null(r);
	resolver_source_lookup_set(r, count_lookup, NULL);
	struct peak_result res, first;
	char key[32], ad[ADDR_STRLEN];
	lookups = 0;
	for (unsigned i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "k%u", i);
		if ((err = peak_resolve(r, "store.svc.example.", key, 80, &res)))
			fail_msg("%s: %s", peak_strerror(err), peak_last_detail(r));
		assert_true(res.n >= 1);
		assert_string_equal(
		    addr_print(PEAK_AFI_IP6, (const uint8_t *)&res.cand[0].src.sin6_addr, ad),
		    "2001:db8:aa::1");
		if (!i)
			first = res;
	}
	assert_int_equal(lookups, 1);
	/* another service's prefix: a lookup of its own, and both stay remembered */
	assert_int_equal(peak_resolve(r, "other.svc.example.", "k0", 80, &res), 0);
	assert_int_equal(lookups, 2);
	assert_int_equal(peak_resolve(r, "store.svc.example.", "k0", 80, &res), 0);
	assert_int_equal(peak_resolve(r, "other.svc.example.", "k1", 80, &res), 0);
	assert_int_equal(lookups, 2);
	assert_memory_equal(&res.cand[0].src, &first.cand[0].src, sizeof(res.cand[0].src));
	/* a failed connect forgets them: peak_connect from the made-up source to the
	 * documentation prefix fails (no route, or no answer within 200 ms) */
	assert_int_equal(peak_connect(r, "store.svc.example.", "k0", 80, 200, NULL),
	                 PEAK_E_CONNECT);
	assert_int_equal(lookups, 2); /* its own resolve was answered from memory */
	assert_int_equal(peak_resolve(r, "store.svc.example.", "k0", 80, &res), 0);
	assert_int_equal(lookups, 3);
	assert_memory_equal(&res.cand[0].dst, &first.cand[0].dst, sizeof(res.cand[0].dst));
	/* so does a store call's: its socket cannot be bound to the made-up source; the walk
	 * goes on from replica 0 (computed first) to 1..15 (computed then), each once */
	struct peak_store_opts so = {.timeout_ms = 200, .trace = count_trace};
	traced = 0;
	void *buf = NULL;
	size_t len = 0;
	assert_int_not_equal(
	    peak_store_get_buf(r, "store.svc.example.", "k0", &buf, &len, 4096, &so), 0);
	assert_null(buf);
	assert_int_equal(traced, (1u << 16) - 1);
	assert_int_equal(lookups, 3);
	assert_int_equal(peak_resolve(r, "store.svc.example.", "k0", 80, &res), 0);
	assert_int_equal(lookups, 4);
	peak_resolver_free(r);
	atomic_store(&f.stop, true);
	pthread_join(th, NULL);
	close(f.fd);
}

static void test_strerror(void **state)
{
	(void)state;
	for (int e = PEAK_E_POW_TIME; e <= PEAK_E_CONFIG; e++)
		assert_string_not_equal(peak_strerror(e), "unknown error");
	assert_string_equal(peak_strerror(-ENOENT), strerror(ENOENT));
	assert_string_equal(peak_origin_name(PEAK_ORIGIN_REPLICA), "replica");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_answer_parse),      cmocka_unit_test(test_answer_limits),
	    cmocka_unit_test(test_answer_mutations),  cmocka_unit_test(test_apl_validation),
	    cmocka_unit_test(test_candidates),        cmocka_unit_test(test_pow_cache),
	    cmocka_unit_test(test_strerror),          cmocka_unit_test(test_pow_deadline),
	    cmocka_unit_test(test_source_remembered),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
