/* The IPv6 LPM table (include/peak/lpm6.h): fixed cases, then randomized differential tests
 * against a linear scan (fixed seeds): overlapping prefixes around a few bases, /0, /128,
 * replaced values and removed routes, checked after every phase; every length along one
 * address in random orders; random add/remove churn checked after every change; clusters on
 * both sides of the depth where tails may hold several trie nodes, in both popcount builds. */
#include "test.h"

#include <errno.h>
#include <stdlib.h>

#include "peak/lpm6.h"
#include "peak/prefix.h"

struct naive {
	uint8_t p[16];
	unsigned plen;
	uint32_t val;
	int live;
};

static bool naive_holds(const struct naive *e, const uint8_t a[16])
{
	unsigned full = e->plen / 8, rest = e->plen % 8;
	if (memcmp(e->p, a, full))
		return false;
	if (!rest)
		return true;
	uint8_t m = (uint8_t)(0xff << (8 - rest));
	return (e->p[full] & m) == (a[full] & m);
}

/* The longest live entry holding a (ties cannot happen: prefixes are kept unique). */
static const struct naive *naive_lookup(const struct naive *v, size_t n, const uint8_t a[16])
{
	const struct naive *best = NULL;
	for (size_t i = 0; i < n; i++)
		if (v[i].live && naive_holds(&v[i], a) && (!best || v[i].plen > best->plen))
			best = &v[i];
	return best;
}

static void pfx(const char *s, uint8_t out[16], unsigned *plen)
{
	struct prefix p;
	assert_int_equal(prefix_parse(s, true, &p), 0);
	memcpy(out, p.addr, 16);
	*plen = p.len;
}

static void expect(struct lpm6 *t, const char *addr, bool found, uint32_t want, unsigned wplen)
{
	uint8_t a[16], fam;
	uint32_t v = 0;
	unsigned pl = 0;
	assert_int_equal(addr_parse(addr, &fam, a), 0);
	assert_int_equal(lpm6_lookup(t, a, &v, &pl), found);
	if (found) {
		assert_int_equal(v, want);
		assert_int_equal(pl, wplen);
	}
}

static void test_fixed(void **state)
{
	(void)state;
	struct lpm6 *t = lpm6_new();
	uint8_t p[16];
	unsigned pl;
	assert_non_null(t);
	expect(t, "2001:db8::1", false, 0, 0);
	pfx("2001:db8::/32", p, &pl);
	assert_int_equal(lpm6_add(t, p, pl, 1), 0);
	pfx("2001:db8:1::/48", p, &pl);
	assert_int_equal(lpm6_add(t, p, pl, 2), 0);
	pfx("2001:db8:1::5/128", p, &pl);
	assert_int_equal(lpm6_add(t, p, pl, 3), 0);
	expect(t, "2001:db8::1", true, 1, 32);
	expect(t, "2001:db8:1::1", true, 2, 48);
	expect(t, "2001:db8:1::5", true, 3, 128);
	expect(t, "2001:db9::", false, 0, 0);
	pfx("::/0", p, &pl);
	assert_int_equal(lpm6_add(t, p, pl, 9), 0);
	expect(t, "2001:db9::", true, 9, 0);
	assert_int_equal(lpm6_add(t, p, pl, 10), 1); /* replaced */
	expect(t, "::", true, 10, 0);
	assert_int_equal(lpm6_count(t), 4);
	pfx("2001:db8:1::/48", p, &pl);
	assert_int_equal(lpm6_del(t, p, pl), 0);
	assert_int_equal(lpm6_del(t, p, pl), -ENOENT);
	expect(t, "2001:db8:1::1", true, 1, 32);
	expect(t, "2001:db8:1::5", true, 3, 128);
	pfx("2001:db8:1::/47", p, &pl); /* absent, though a longer and a shorter exist */
	assert_int_equal(lpm6_del(t, p, pl), -ENOENT);
	assert_int_equal(lpm6_add(t, p, 129, 1), -EINVAL);
	uint32_t v;
	pfx("2001:db8::/32", p, &pl);
	assert_true(lpm6_get(t, p, pl, &v));
	assert_int_equal(v, 1);
	pfx("2001:db8::/33", p, &pl);
	assert_false(lpm6_get(t, p, pl, &v));
	assert_int_equal(lpm6_count(t), 3);
	lpm6_free(t);
}

struct walk_ctx {
	const struct naive *v;
	size_t n, seen;
	uint8_t last[16];
	unsigned last_plen;
};

static int walk_cb(const uint8_t p[16], unsigned plen, uint32_t val, void *arg)
{
	struct walk_ctx *w = arg;
	int c = w->seen ? memcmp(w->last, p, 16) : -1;
	assert_true(c < 0 || (c == 0 && w->last_plen < plen)); /* address order */
	memcpy(w->last, p, 16);
	w->last_plen = plen;
	for (size_t i = 0; i < w->n; i++)
		if (w->v[i].live && w->v[i].plen == plen && !memcmp(w->v[i].p, p, 16)) {
			assert_int_equal(w->v[i].val, val);
			w->seen++;
			return 0;
		}
	fail_msg("walk returned a prefix the oracle does not hold");
	return 1;
}

static void random_addr(uint64_t *s, const struct naive *v, size_t n, uint8_t a[16])
{
	uint64_t r = test_rand(s);
	uint64_t x = test_rand(s), y = test_rand(s);
	memcpy(a, &x, 8);
	memcpy(a + 8, &y, 8);
	if (n && r % 4) { /* mostly inside some prefix, with random bits past it */
		const struct naive *e = &v[r / 4 % n];
		unsigned plen = e->plen > 128 ? 128 : e->plen; /* 129 marks an unused entry */
		unsigned full = plen / 8, rest = plen % 8;
		memcpy(a, e->p, full);
		if (rest) {
			uint8_t m = (uint8_t)(0xff << (8 - rest));
			a[full] = (uint8_t)((e->p[full] & m) | (a[full] & ~m));
		}
	}
}

static void check_all(struct lpm6 *t, const struct naive *v, size_t n, uint64_t *s,
                      unsigned lookups)
{
	size_t live = 0;
	for (size_t i = 0; i < n; i++)
		live += v[i].live != 0;
	assert_int_equal(lpm6_count(t), live);
	enum { B = 37 }; /* not a multiple of the lanes */
	uint8_t ba[B][16];
	uint32_t bv[B];
	bool bf[B];
	for (unsigned i = 0; i < lookups; i++) {
		uint8_t a[16];
		random_addr(s, v, n, a);
		memcpy(ba[i % B], a, 16);
		if (i % B == B - 1) { /* the batch agrees with one lookup at a time */
			lpm6_lookup_batch(t, (const uint8_t(*)[16])ba, B, bv, bf);
			for (unsigned j = 0; j < B; j++) {
				uint32_t one = 0;
				assert_int_equal(bf[j], lpm6_lookup(t, ba[j], &one, NULL));
				if (bf[j])
					assert_int_equal(bv[j], one);
			}
		}
		const struct naive *e = naive_lookup(v, n, a);
		uint32_t val = 0;
		unsigned pl = 0;
		bool got = lpm6_lookup(t, a, &val, &pl);
		assert_int_equal(got, e != NULL);
		if (e) {
			assert_int_equal(pl, e->plen);
			assert_int_equal(val, e->val);
		}
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t val = 0;
		assert_int_equal(lpm6_get(t, v[i].p, v[i].plen, &val), v[i].live != 0);
		if (v[i].live)
			assert_int_equal(val, v[i].val);
	}
	struct walk_ctx w = {.v = v, .n = n};
	assert_int_equal(lpm6_walk(t, walk_cb, &w), 0);
	assert_int_equal(w.seen, live);
}

enum { NPFX = 3000, NBASES = 12, NLOOKUPS = 20000 };

static void test_differential(void **state)
{
	(void)state;
	uint64_t s = 0x5eed1e5ULL;
	struct naive *v = calloc(NPFX, sizeof(*v));
	struct lpm6 *t = lpm6_new();
	assert_non_null(v);
	assert_non_null(t);
	uint8_t bases[NBASES][16];
	for (int b = 0; b < NBASES; b++)
		for (int j = 0; j < 16; j++)
			bases[b][j] = (uint8_t)test_rand(&s);
	size_t n = 0;
	/* /0 and a /128 always among them */
	v[n].plen = 0;
	v[n].val = 7;
	n++;
	memcpy(v[n].p, bases[0], 16);
	v[n].plen = 128;
	v[n].val = 8;
	n++;
	while (n < NPFX) {
		struct naive e = {0};
		uint64_t r = test_rand(&s);
		if (r % 8 == 0) { /* unrelated */
			for (int j = 0; j < 16; j++)
				e.p[j] = (uint8_t)test_rand(&s);
		} else { /* overlapping: a base with a few bits flipped deep down */
			memcpy(e.p, bases[r / 8 % NBASES], 16);
			unsigned flip = 16 + (unsigned)(test_rand(&s) % 112); /* bits 16..127 */
			e.p[flip / 8] ^= (uint8_t)(0x80 >> (flip % 8));
		}
		e.plen = (unsigned)(test_rand(&s) % 129);
		if (r % 5 == 0)
			e.plen = 128;
		prefix_mask_bits(e.p, e.plen);
		e.val = (uint32_t)test_rand(&s);
		bool dup = false;
		for (size_t i = 0; i < n && !dup; i++)
			dup = v[i].plen == e.plen && !memcmp(v[i].p, e.p, 16);
		if (dup)
			continue;
		v[n++] = e;
	}
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(lpm6_add(t, v[i].p, v[i].plen, v[i].val), 0);
		v[i].live = 1;
		if (i == 100 || i == 1000)
			check_all(t, v, i + 1, &s, 2000);
	}
	check_all(t, v, n, &s, NLOOKUPS);
	/* replace some values */
	for (size_t i = 0; i < n; i += 7) {
		v[i].val ^= 0xabcdef;
		assert_int_equal(lpm6_add(t, v[i].p, v[i].plen, v[i].val), 1);
	}
	check_all(t, v, n, &s, NLOOKUPS);
	/* remove about half, /0 included, then look again */
	for (size_t i = 0; i < n; i++)
		if (test_rand(&s) % 2 || i == 0) {
			assert_int_equal(lpm6_del(t, v[i].p, v[i].plen), 0);
			assert_int_equal(lpm6_del(t, v[i].p, v[i].plen), -ENOENT);
			v[i].live = 0;
		}
	check_all(t, v, n, &s, NLOOKUPS);
	/* put some back, remove everything */
	for (size_t i = 0; i < n; i += 3)
		if (!v[i].live) {
			assert_int_equal(lpm6_add(t, v[i].p, v[i].plen, v[i].val), 0);
			v[i].live = 1;
		}
	check_all(t, v, n, &s, NLOOKUPS);
	for (size_t i = 0; i < n; i++)
		if (v[i].live) {
			assert_int_equal(lpm6_del(t, v[i].p, v[i].plen), 0);
			v[i].live = 0;
		}
	check_all(t, v, n, &s, 1000);
	uint8_t a[16] = {0};
	assert_false(lpm6_lookup(t, a, NULL, NULL));
	lpm6_free(t);
	free(v);
}

/* Every length from /0 to /128 along one address, added and removed in random orders: each
 * change lands in a different node's stride or below it, and every lookup along the chain and
 * just off it must see the longest one left. */
static void test_nested(void **state)
{
	(void)state;
	uint64_t s = 0xc4a1bULL;
	struct lpm6 *t = lpm6_new();
	assert_non_null(t);
	uint8_t base[16];
	for (int j = 0; j < 16; j++)
		base[j] = (uint8_t)test_rand(&s);
	int live[129] = {0};
	unsigned order[129];
	for (unsigned round = 0; round < 4; round++) {
		for (unsigned i = 0; i <= 128; i++)
			order[i] = i;
		for (unsigned i = 128; i > 0; i--) {
			unsigned j = (unsigned)(test_rand(&s) % (i + 1)), x = order[i];
			order[i] = order[j];
			order[j] = x;
		}
		for (unsigned n = 0; n <= 128; n++) {
			unsigned pl = order[n];
			uint8_t p[16];
			memcpy(p, base, 16);
			prefix_mask_bits(p, pl);
			if (live[pl]) {
				assert_int_equal(lpm6_del(t, p, pl), 0);
				live[pl] = 0;
			} else {
				assert_int_equal(lpm6_add(t, p, pl, 1000 * round + pl), 0);
				live[pl] = 1 + (int)round;
			}
			/* the address itself, then one that leaves the chain after bit b */
			for (unsigned b = 0; b <= 128; b += (n % 7) + 1) {
				uint8_t a[16];
				memcpy(a, base, 16);
				if (b < 128)
					a[b / 8] ^= (uint8_t)(0x80 >> (b % 8));
				int want = -1;
				for (unsigned l = 0; l <= (b < 128 ? b : 128); l++)
					if (live[l])
						want = (int)l;
				uint32_t v = 0;
				unsigned got = 0;
				assert_int_equal(lpm6_lookup(t, a, &v, &got), want >= 0);
				if (want >= 0) {
					assert_int_equal(got, (unsigned)want);
					assert_int_equal(v % 1000, (unsigned)want);
				}
			}
		}
	}
	lpm6_free(t);
}

/* Three cycles of random adds and removes (ops per cycle, looks lookups checked after each),
 * then a full check, everything removed and checked again (after lookups): the table must
 * give back the same bytes in the second and third cycles. */
static void churn_cycles(struct lpm6 *t, struct naive *v, size_t n, uint64_t *s, unsigned ops,
                         unsigned looks, unsigned after)
{
	size_t bytes[2] = {0};
	for (unsigned cycle = 0; cycle < 3; cycle++) {
		for (unsigned op = 0; op < ops; op++) {
			size_t i = test_rand(s) % n;
			if (v[i].plen > 128)
				continue;
			if (v[i].live) {
				assert_int_equal(lpm6_del(t, v[i].p, v[i].plen), 0);
				v[i].live = 0;
			} else {
				v[i].val += (uint32_t)n;
				assert_int_equal(lpm6_add(t, v[i].p, v[i].plen, v[i].val), 0);
				v[i].live = 1;
			}
			for (unsigned q = 0; q < looks; q++) {
				uint8_t a[16];
				random_addr(s, v, n, a);
				const struct naive *e = naive_lookup(v, n, a);
				uint32_t val = 0;
				unsigned pl = 0;
				assert_int_equal(lpm6_lookup(t, a, &val, &pl), e != NULL);
				if (e) {
					assert_int_equal(pl, e->plen);
					assert_int_equal(val, e->val);
				}
			}
		}
		check_all(t, v, n, s, 3000);
		for (size_t i = 0; i < n; i++)
			if (v[i].live) {
				assert_int_equal(lpm6_del(t, v[i].p, v[i].plen), 0);
				v[i].live = 0;
			}
		check_all(t, v, n, s, after);
		if (cycle)
			bytes[cycle - 1] = lpm6_bytes(t);
	}
	assert_int_equal(bytes[0], bytes[1]);
}

/* Random adds and removes one at a time in a dense cluster (nodes several levels deep, tails,
 * folds after removal) and elsewhere, each followed by lookups against the linear scan; then
 * two fill-and-empty cycles must end at the same size (freed blocks are reused). */
static void test_churn(void **state)
{
	(void)state;
	enum { N = 1500, OPS = 6000 };
	uint64_t s = 0xc0ffeeULL;
	struct naive *v = calloc(N, sizeof(*v));
	struct lpm6 *t = lpm6_new();
	assert_non_null(v);
	assert_non_null(t);
	uint8_t base[16];
	for (int j = 0; j < 16; j++)
		base[j] = (uint8_t)test_rand(&s);
	for (size_t i = 0; i < N; i++) {
		uint64_t r = test_rand(&s);
		if (r % 4 == 0) { /* anywhere, any length */
			for (int j = 0; j < 16; j++)
				v[i].p[j] = (uint8_t)test_rand(&s);
			v[i].plen = (unsigned)(test_rand(&s) % 129);
		} else { /* inside base/24, lengths 24..128, random bits below */
			memcpy(v[i].p, base, 3);
			for (int j = 3; j < 16; j++)
				v[i].p[j] = (uint8_t)(test_rand(&s) & (r % 3 ? 0x01 : 0xff));
			v[i].plen = 24 + (unsigned)(test_rand(&s) % 105);
		}
		prefix_mask_bits(v[i].p, v[i].plen);
		v[i].val = (uint32_t)i;
		for (size_t k = 0; k < i; k++)
			if (v[k].plen == v[i].plen && !memcmp(v[k].p, v[i].p, 16))
				v[i].plen = 129; /* a duplicate: never used */
	}
	churn_cycles(t, v, N, &s, OPS, 4, 500);
	lpm6_free(t);
	free(v);
}

/* Value changes where the poptrie's leaves hold copies of trie nodes: families of nested and
 * sibling prefixes (so tails of one node, tails with children and glue nodes that later get a
 * value) spread thinly over 2000::/3; random replaces, adds and removes, each followed by
 * lookups inside the prefix just changed and elsewhere, against the linear scan. A leaf that
 * kept a stale copy of its tail's first node answers the old value here. */
static void test_replace_tails(void **state)
{
	(void)state;
	enum { NFAM = 250, PER = 6, N = NFAM * PER, OPS = 8000 };
	uint64_t s = 0x7a115ULL;
	struct naive *v = calloc(N, sizeof(*v));
	struct lpm6 *t = lpm6_new();
	assert_non_null(v);
	assert_non_null(t);
	for (size_t f = 0; f < NFAM; f++) {
		uint8_t base[16];
		for (int j = 0; j < 16; j++)
			base[j] = (uint8_t)test_rand(&s);
		base[0] = (uint8_t)(0x20 | (base[0] & 0x1f));
		unsigned fork = 24 + (unsigned)(test_rand(&s) % 100); /* where siblings part */
		for (size_t m = 0; m < PER; m++) {
			struct naive *e = &v[f * PER + m];
			memcpy(e->p, base, 16);
			unsigned r = (unsigned)(test_rand(&s) % 4);
			if (r == 0) { /* exactly the fork: a glue node until it is added */
				e->plen = fork;
			} else {
				if (r == 1) /* the sibling branch */
					e->p[fork / 8] ^= (uint8_t)(0x80 >> (fork % 8));
				e->plen = fork + 1 + (unsigned)(test_rand(&s) % (128 - fork));
				if (r == 3) /* or above the fork */
					e->plen = 20 + (unsigned)(test_rand(&s) % (fork - 19));
			}
			prefix_mask_bits(e->p, e->plen);
			e->val = (uint32_t)(f * PER + m);
			for (size_t k = 0; k < f * PER + m; k++)
				if (v[k].plen == e->plen && !memcmp(v[k].p, e->p, 16))
					e->plen = 129; /* a duplicate: never used */
		}
	}
	for (unsigned op = 0; op < OPS; op++) {
		size_t i = test_rand(&s) % N;
		if (v[i].plen > 128)
			continue;
		unsigned r = (unsigned)(test_rand(&s) % 3);
		if (v[i].live && r) {
			v[i].val = (uint32_t)test_rand(&s);
			assert_int_equal(lpm6_add(t, v[i].p, v[i].plen, v[i].val), 1);
		} else if (v[i].live) {
			assert_int_equal(lpm6_del(t, v[i].p, v[i].plen), 0);
			v[i].live = 0;
		} else {
			assert_int_equal(lpm6_add(t, v[i].p, v[i].plen, v[i].val), 0);
			v[i].live = 1;
		}
		for (unsigned q = 0; q < 4; q++) {
			uint8_t a[16];
			if (q < 2) { /* inside the prefix just changed, random bits below it */
				uint64_t x = test_rand(&s), y = test_rand(&s);
				memcpy(a, &x, 8);
				memcpy(a + 8, &y, 8);
				for (unsigned b = 0; b < v[i].plen; b++) {
					uint8_t m = (uint8_t)(0x80 >> (b % 8));
					a[b / 8] = (uint8_t)((a[b / 8] & ~m) | (v[i].p[b / 8] & m));
				}
			} else {
				random_addr(&s, v, N, a);
			}
			const struct naive *e = naive_lookup(v, N, a);
			uint32_t val = 0;
			unsigned pl = 0;
			assert_int_equal(lpm6_lookup(t, a, &val, &pl), e != NULL);
			if (e) {
				assert_int_equal(pl, e->plen);
				assert_int_equal(val, e->val);
			}
		}
	}
	check_all(t, v, N, &s, 5000);
	lpm6_free(t);
	free(v);
}

/* A table large enough that its arrays leave the heap for huge-page mappings (2 MiB and more)
 * and are copied into bigger ones as they grow: 70,000 prefixes, unique by construction (an
 * index in bits 16..39, lengths 40..128), looked up one at a time and batched against the
 * linear scan, then again after two thirds are removed. */
static void test_large(void **state)
{
	(void)state;
	enum { N = 70000, LOOKUPS = 640, B = 64 };
	uint64_t s = 0x1a26eULL;
	struct naive *v = calloc(N, sizeof(*v));
	struct lpm6 *t = lpm6_new();
	assert_non_null(v);
	assert_non_null(t);
	for (size_t i = 0; i < N; i++) {
		uint64_t x = test_rand(&s), y = test_rand(&s);
		memcpy(v[i].p, &x, 8);
		memcpy(v[i].p + 8, &y, 8);
		v[i].p[0] = 0x20;
		v[i].p[1] = 0x01;
		v[i].p[2] = (uint8_t)(i >> 16);
		v[i].p[3] = (uint8_t)(i >> 8);
		v[i].p[4] = (uint8_t)i;
		v[i].plen = 40 + (unsigned)(test_rand(&s) % 89);
		prefix_mask_bits(v[i].p, v[i].plen);
		v[i].val = (uint32_t)test_rand(&s);
		assert_int_equal(lpm6_add(t, v[i].p, v[i].plen, v[i].val), 0);
		v[i].live = 1;
	}
	assert_true(lpm6_bytes(t) > (4u << 20));
	for (unsigned round = 0; round < 2; round++) {
		uint8_t a[B][16];
		uint32_t bv[B];
		bool bf[B];
		for (unsigned q = 0; q < LOOKUPS; q++) {
			random_addr(&s, v, N, a[q % B]);
			a[q % B][0] = 0x20; /* mostly near the table, so misses and hits both */
			const struct naive *e = naive_lookup(v, N, a[q % B]);
			uint32_t val = 0;
			unsigned pl = 0;
			assert_int_equal(lpm6_lookup(t, a[q % B], &val, &pl), e != NULL);
			if (e) {
				assert_int_equal(pl, e->plen);
				assert_int_equal(val, e->val);
			}
			if (q % B == B - 1) {
				lpm6_lookup_batch(t, (const uint8_t(*)[16])a, B, bv, bf);
				for (unsigned j = 0; j < B; j++) {
					e = naive_lookup(v, N, a[j]);
					assert_int_equal(bf[j], e != NULL);
					if (e)
						assert_int_equal(bv[j], e->val);
				}
			}
		}
		for (size_t i = 0; i < N && round == 0; i++)
			if (i % 3) {
				assert_int_equal(lpm6_del(t, v[i].p, v[i].plen), 0);
				v[i].live = 0;
			}
		assert_int_equal(lpm6_count(t), N / 3 + 1); /* the i divisible by 3 */
	}
	lpm6_free(t);
	free(v);
}

/* lpm6_lookup_batch with more addresses than it has lanes (64), so lanes that finish take the
 * next address while the others are still walking: walks of very different lengths (misses in
 * the direct table, leaves, tails with children several trie nodes deep, /0 and /128) in one
 * call, for batch sizes around the lane count, each answer checked against the linear scan at
 * its own index. A lane that wrote its answer to another lane's address fails here. */
static void test_batch_lanes(void **state)
{
	(void)state;
	enum { N = 2000, NA = 1500 };
	uint64_t s = 0xba7c4ULL;
	struct naive *v = calloc(N, sizeof(*v));
	uint8_t(*a)[16] = calloc(NA, 16);
	uint32_t *bv = calloc(NA, sizeof(*bv));
	bool *bf = calloc(NA, sizeof(*bf));
	struct lpm6 *t = lpm6_new();
	assert_non_null(v);
	assert_non_null(a);
	assert_non_null(bv);
	assert_non_null(bf);
	assert_non_null(t);
	uint8_t base[16];
	for (int j = 0; j < 16; j++)
		base[j] = (uint8_t)test_rand(&s);
	size_t n = 0;
	while (n < N) {
		struct naive e = {0};
		uint64_t r = test_rand(&s);
		if (r % 3 == 0) { /* anywhere in 2000::/3: short walks */
			for (int j = 0; j < 16; j++)
				e.p[j] = (uint8_t)test_rand(&s);
			e.p[0] = (uint8_t)(0x20 | (e.p[0] & 0x1f));
			e.plen = 16 + (unsigned)(test_rand(&s) % 113);
		} else { /* a chain below base/40: tails with children, long trie walks */
			memcpy(e.p, base, 16);
			unsigned flip = 40 + (unsigned)(test_rand(&s) % 88);
			e.p[flip / 8] ^= (uint8_t)(0x80 >> (flip % 8));
			e.plen = 40 + (unsigned)(test_rand(&s) % 89);
		}
		prefix_mask_bits(e.p, e.plen);
		e.val = (uint32_t)test_rand(&s);
		bool dup = false;
		for (size_t i = 0; i < n && !dup; i++)
			dup = v[i].plen == e.plen && !memcmp(v[i].p, e.p, 16);
		if (dup)
			continue;
		assert_int_equal(lpm6_add(t, e.p, e.plen, e.val), 0);
		e.live = 1;
		v[n++] = e;
	}
	for (unsigned round = 0; round < 2; round++) {
		if (round) { /* then with a default route and a host route at the base */
			uint8_t zero[16] = {0};
			for (int k = 0; k < 2; k++)
				assert_int_equal(lpm6_del(t, v[k].p, v[k].plen), 0);
			memcpy(v[0].p, zero, 16);
			v[0].plen = 0;
			v[0].val = 77;
			memcpy(v[1].p, base, 16);
			v[1].plen = 128;
			v[1].val = 78;
			for (int k = 0; k < 2; k++)
				assert_true(lpm6_add(t, v[k].p, v[k].plen, v[k].val) >= 0);
			assert_int_equal(lpm6_count(t), N);
		}
		for (size_t q = 0; q < NA; q++) {
			random_addr(&s, v, N, a[q]);
			if (q % 5 == 0)
				memcpy(a[q], base, 16);
		}
		static const size_t sizes[] = {0, 1, 63, 64, 65, 200, NA};
		for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
			size_t m = sizes[z];
			memset(bf, 0xff, NA * sizeof(*bf));
			lpm6_lookup_batch(t, (const uint8_t(*)[16])a, m, bv, bf);
			for (size_t q = 0; q < m; q++) {
				const struct naive *e = naive_lookup(v, N, a[q]);
				assert_int_equal(bf[q], e != NULL);
				if (e)
					assert_int_equal(bv[q], e->val);
			}
			for (size_t q = m; q < NA; q++) /* nothing past n written */
				assert_int_equal(((uint8_t *)bf)[q], 0xff);
		}
	}
	lpm6_free(t);
	free(v);
	free(a);
	free(bv);
	free(bf);
}

/*
 * Regions on both sides of the depth where tails may hold more than one trie node (68 bits:
 * shallower regions get a poptrie node as soon as two prefixes share them, so a lookup there
 * never walks the trie; deeper ones keep tails of up to 3 nodes): clusters of prefixes of
 * lengths 56..128 that differ only in bytes 6..15, and ::/0 and a /128 at the edges, churned by
 * random adds and removes with lookups after each change, in both builds of the lookups (the
 * POPCNT one and the arithmetic one, picked when the table is made). Removing everything must
 * give back what the first cycle took, so folding nodes into tails follows the same depth rule.
 */
static void deep_tails(bool soft)
{
	enum { N = 1200, OPS = 5000 };
	uint64_t s = 0xdee9ULL;
	struct naive *v = calloc(N, sizeof(*v));
	struct lpm6 *t = soft ? lpm6_new_soft() : lpm6_new();
	assert_non_null(v);
	assert_non_null(t);
	uint8_t base[16];
	for (int j = 0; j < 16; j++)
		base[j] = (uint8_t)test_rand(&s);
	static const unsigned lens[] = {56, 60, 62, 63, 64, 66, 67, 68, 69, 72, 80, 96, 127, 128};
	for (size_t i = 0; i < N; i++) {
		memcpy(v[i].p, base, 16);
		if (i == 0) {
			v[i].plen = 0;
		} else if (i == 1) {
			v[i].plen = 128;
		} else {
			/* one or two flipped bits in bytes 6..15, so neighbours share long prefixes
			 */
			for (unsigned f = 0; f < 1 + test_rand(&s) % 2; f++) {
				unsigned b = 48 + (unsigned)(test_rand(&s) % 80);
				v[i].p[b / 8] ^= (uint8_t)(0x80 >> (b % 8));
			}
			v[i].plen = lens[test_rand(&s) % (sizeof(lens) / sizeof(lens[0]))];
		}
		prefix_mask_bits(v[i].p, v[i].plen);
		v[i].val = (uint32_t)i;
		for (size_t k = 0; k < i; k++)
			if (v[k].plen == v[i].plen && !memcmp(v[k].p, v[i].p, 16))
				v[i].plen = 129; /* a duplicate: never used */
	}
	churn_cycles(t, v, N, &s, OPS, 3, 300);
	lpm6_free(t);
	free(v);
}

static void test_deep_tails(void **state)
{
	(void)state;
	deep_tails(false);
	deep_tails(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fixed),         cmocka_unit_test(test_differential),
	    cmocka_unit_test(test_nested),        cmocka_unit_test(test_churn),
	    cmocka_unit_test(test_replace_tails), cmocka_unit_test(test_large),
	    cmocka_unit_test(test_batch_lanes),   cmocka_unit_test(test_deep_tails),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
