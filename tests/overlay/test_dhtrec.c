/* The DHT slave's records, keys and lookups (src/overlay/dhtrec.h): a record written by a
 * certified site parses back; every malformed or unauthorised variant is refused with its
 * reason; both lookups (binary search with markers, and the zero-the-last-set-bit walk) find
 * the longest registered prefix for random layouts, against a linear-scan oracle over an
 * in-memory DHT (fixed seed), and the binary search needs at most 8 gets without markers
 * that mislead it. The parallel driver (dhr_par_*) gives the sequential answer whatever
 * the order its gets answer in. */
#include "../unit/test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dhtrec.h"

static uint8_t auth_seed[32], auth_pub[32], site_priv[32], site_seed[32];

static void setup_keys(void)
{
	for (int i = 0; i < 32; i++) {
		auth_seed[i] = (uint8_t)(i * 3 + 1);
		site_priv[i] = (uint8_t)(i * 11 + 7);
	}
	dhr_ed_pub(auth_seed, auth_pub);
}

static void pfx(struct prefix *p, const char *s)
{
	assert_int_equal(prefix_parse(s, false, p), 0);
}

/* A certified site with prefixes fd00:b::/48 and fd00:c::/64, its record for prefix s. */
static void make_rec(struct dhr_rec *r, const char *s)
{
	memset(r, 0, sizeof(*r));
	for (int i = 0; i < 32; i++)
		r->cert.x_pub[i] = (uint8_t)(0xa0 + i);
	dhr_sign_key(site_priv, site_seed, r->cert.ed_pub);
	pfx(&r->cert.prefixes[0], "fd00:b::/48");
	pfx(&r->cert.prefixes[1], "fd00:c::/64");
	r->cert.nprefixes = 2;
	dhr_cert_sign(&r->cert, auth_seed);
	pfx(&r->prefix, s);
	r->time_s = 1000000;
	r->nloc = 1;
	r->loc[0].sin_family = AF_INET;
	r->loc[0].sin_port = htons(51820);
	inet_pton(AF_INET, "192.0.2.7", &r->loc[0].sin_addr);
}

static int parse(const uint8_t *b, size_t n, uint64_t now, struct dhr_rec *out)
{
	struct cur c = cur_make(b, n);
	return dhr_rec_parse(&c, auth_pub, now, out);
}

static void test_record_round_trip(void **state)
{
	(void)state;
	setup_keys();
	struct dhr_rec r, back;
	uint8_t buf[DHR_REC_MAX];
	make_rec(&r, "fd00:b:0:1::/64");
	long n = dhr_rec_write(&r, site_seed, buf, sizeof(buf));
	assert_true(n > 0 && n <= DHR_REC_MAX);
	assert_int_equal(parse(buf, (size_t)n, 1000100, &back), 0);
	assert_int_equal(prefix_cmp(&back.prefix, &r.prefix), 0);
	assert_int_equal(back.loc[0].sin_port, htons(51820));
	assert_memory_equal(back.cert.x_pub, r.cert.x_pub, 32);
	/* too old, too far ahead */
	assert_int_equal(parse(buf, (size_t)n, 1000000 + DHR_MAX_AGE_S + 1, &back), -ESTALE);
	assert_int_equal(parse(buf, (size_t)n, 1000000 - DHR_MAX_SKEW_S - 1, &back), -ESTALE);
	/* every truncation and one extra byte: malformed */
	for (long k = 0; k < n; k++)
		assert_int_equal(parse(buf, (size_t)k, 1000100, &back), -EBADMSG);
	assert_int_equal(parse(buf, (size_t)n + 1, 1000100, &back), -EBADMSG);
	/* any flipped bit: refused (malformed, or a signature that does not verify) */
	for (long k = 0; k < n; k++) {
		buf[k] ^= 0x10;
		assert_int_not_equal(parse(buf, (size_t)n, 1000100, &back), 0);
		buf[k] ^= 0x10;
	}
	/* a prefix outside the certificate, signed by the site: not certified */
	make_rec(&r, "fd00:d::/64");
	n = dhr_rec_write(&r, site_seed, buf, sizeof(buf));
	assert_int_equal(parse(buf, (size_t)n, 1000100, &back), -ERANGE);
	/* a certificate from another authority */
	make_rec(&r, "fd00:c::/64");
	uint8_t rogue[32] = {5};
	dhr_cert_sign(&r.cert, rogue);
	n = dhr_rec_write(&r, site_seed, buf, sizeof(buf));
	assert_int_equal(parse(buf, (size_t)n, 1000100, &back), -EPERM);
	/* a valid certificate, the record signed by someone else (a copied certificate) */
	make_rec(&r, "fd00:c::/64");
	n = dhr_rec_write(&r, rogue, buf, sizeof(buf));
	assert_int_equal(parse(buf, (size_t)n, 1000100, &back), -EACCES);
	/* bits past the prefix length */
	make_rec(&r, "fd00:c::/64");
	r.prefix.addr[15] = 1;
	n = dhr_rec_write(&r, site_seed, buf, sizeof(buf));
	assert_int_equal(parse(buf, (size_t)n, 1000100, &back), -EBADMSG);
	/* counts out of range are refused by the writer */
	make_rec(&r, "fd00:c::/64");
	r.nloc = 0;
	assert_int_equal(dhr_rec_write(&r, site_seed, buf, sizeof(buf)), -EINVAL);
	r.nloc = 1;
	assert_int_equal(dhr_rec_write(&r, site_seed, buf, 100), -EMSGSIZE);
	r.flags = 0x40; /* a flag nobody defined */
	assert_int_equal(dhr_rec_write(&r, site_seed, buf, sizeof(buf)), -EINVAL);
	/* the endpoint-dependent NAT flag shares a byte with the locator count: both kept */
	make_rec(&r, "fd00:c::/64");
	r.flags = DHR_F_EDM;
	r.loc[1] = r.loc[0];
	r.nloc = 2;
	n = dhr_rec_write(&r, site_seed, buf, sizeof(buf));
	assert_int_equal(buf[93], DHR_F_EDM | 2);
	assert_int_equal(parse(buf, (size_t)n, 1000100, &back), 0);
	assert_int_equal(back.flags, DHR_F_EDM);
	assert_int_equal(back.nloc, 2);
	r.flags = 0;
	n = dhr_rec_write(&r, site_seed, buf, sizeof(buf));
	assert_int_equal(parse(buf, (size_t)n, 1000100, &back), 0);
	assert_int_equal(back.flags, 0);
	/* an unknown flag on the wire: malformed, before any signature is checked */
	buf[93] |= 0x40;
	assert_int_equal(parse(buf, (size_t)n, 1000100, &back), -EBADMSG);
}

/* A group record (DHR_F_GROUP): the group is signed with the rest and comes back; a leave
 * (DHR_F_LEFT) too; a leave without a group, or a group that is not multicast, is refused
 * both ways; the group key is the group's. */
static void test_group_record(void **state)
{
	(void)state;
	setup_keys();
	struct dhr_rec r, back;
	uint8_t buf[DHR_REC_MAX];
	static const uint8_t g[16] = {0xff, 0x0e, [14] = 0x0d, [15] = 1};
	make_rec(&r, "fd00:b::/48");
	r.flags = DHR_F_GROUP;
	memcpy(r.group, g, 16);
	long n = dhr_rec_write(&r, site_seed, buf, sizeof(buf));
	assert_true(n > 0 && n <= DHR_REC_MAX);
	assert_int_equal(parse(buf, (size_t)n, 1000000, &back), 0);
	assert_int_equal(back.flags, DHR_F_GROUP);
	assert_memory_equal(back.group, g, 16);
	buf[DHR_FIXED_LEN + 6 + 15] ^= 1; /* the group's last byte: the signature breaks */
	assert_int_equal(parse(buf, (size_t)n, 1000000, &back), -EACCES);
	buf[DHR_FIXED_LEN + 6] = 0xfd; /* not multicast */
	assert_int_equal(parse(buf, (size_t)n, 1000000, &back), -EBADMSG);
	r.flags = DHR_F_GROUP | DHR_F_LEFT;
	n = dhr_rec_write(&r, site_seed, buf, sizeof(buf));
	assert_int_equal(parse(buf, (size_t)n, 1000000, &back), 0);
	assert_int_equal(back.flags, DHR_F_GROUP | DHR_F_LEFT);
	buf[93] &= (uint8_t)~DHR_F_GROUP; /* a leave without a group (the group's bytes now
	                                   * read as the prefix count: refused either way) */
	assert_int_equal(parse(buf, (size_t)n, 1000000, &back), -EBADMSG);
	r.flags = DHR_F_LEFT;
	assert_int_equal(dhr_rec_write(&r, site_seed, buf, sizeof(buf)), -EINVAL);
	r.flags = DHR_F_GROUP;
	r.group[0] = 0xfd;
	assert_int_equal(dhr_rec_write(&r, site_seed, buf, sizeof(buf)), -EINVAL);
	uint8_t k[DHR_KEY_LEN], kp[DHR_KEY_LEN];
	dhr_key_group(g, k);
	assert_int_equal(k[8], 'g');
	assert_memory_equal(k + 10, g, 16);
	dhr_key_prefix(g, 128, kp);
	assert_memory_not_equal(k, kp, DHR_KEY_LEN);
}

/* An anycast record (DHR_F_ANYCAST): the flag is signed with the rest and comes back; with
 * DHR_F_GROUP or DHR_F_LEFT it is refused both ways; a prefix outside the certificate is
 * refused as any record's; the anycast key differs from the prefix's own key. */
static void test_anycast_record(void **state)
{
	(void)state;
	setup_keys();
	struct dhr_rec r, back;
	uint8_t buf[DHR_REC_MAX];
	make_rec(&r, "fd00:c::/64");
	r.flags = DHR_F_ANYCAST | DHR_F_EDM;
	long n = dhr_rec_write(&r, site_seed, buf, sizeof(buf));
	assert_true(n > 0 && n <= DHR_REC_MAX);
	assert_int_equal(parse(buf, (size_t)n, 1000000, &back), 0);
	assert_int_equal(back.flags, DHR_F_ANYCAST | DHR_F_EDM);
	assert_int_equal(prefix_cmp(&back.prefix, &r.prefix), 0);
	buf[93] &= (uint8_t)~DHR_F_ANYCAST; /* the flag is signed */
	assert_int_equal(parse(buf, (size_t)n, 1000000, &back), -EACCES);
	buf[93] |= DHR_F_ANYCAST | DHR_F_LEFT; /* a leave without a group */
	assert_int_equal(parse(buf, (size_t)n, 1000000, &back), -EBADMSG);
	r.flags = DHR_F_ANYCAST | DHR_F_GROUP;
	r.group[0] = 0xff;
	assert_int_equal(dhr_rec_write(&r, site_seed, buf, sizeof(buf)), -EINVAL);
	r.flags = DHR_F_GROUP;
	n = dhr_rec_write(&r, site_seed, buf, sizeof(buf));
	assert_true(n > 0);
	buf[93] |= DHR_F_ANYCAST; /* a group record marked anycast: refused before the signature */
	assert_int_equal(parse(buf, (size_t)n, 1000000, &back), -EBADMSG);
	make_rec(&r, "fd00:d::/64"); /* not certified */
	r.flags = DHR_F_ANYCAST;
	n = dhr_rec_write(&r, site_seed, buf, sizeof(buf));
	assert_int_equal(parse(buf, (size_t)n, 1000000, &back), -ERANGE);
	uint8_t ka[DHR_KEY_LEN], kp[DHR_KEY_LEN];
	dhr_key_anycast(&r.prefix, ka);
	dhr_key_prefix(r.prefix.addr, r.prefix.len, kp);
	assert_int_equal(ka[8], 'a');
	assert_int_equal(ka[9], 64);
	assert_memory_equal(ka + 10, kp + 10, 16);
	assert_memory_not_equal(ka, kp, DHR_KEY_LEN);
}

static void test_keys_distinct(void **state)
{
	(void)state;
	struct prefix a, b;
	uint8_t ka[DHR_KEY_LEN], kb[DHR_KEY_LEN], x[32] = {1};
	pfx(&a, "fd00:b::/48");
	pfx(&b, "fd00:b::/64");
	dhr_key_prefix(a.addr, a.len, ka);
	dhr_key_prefix(b.addr, b.len, kb);
	assert_memory_not_equal(ka, kb, DHR_KEY_LEN); /* same address, other length */
	uint8_t keys[DHR_MAX_KEYS][DHR_KEY_LEN];
	size_t n = dhr_pub_keys(&b, x, keys);
	assert_true(n >= 3 && n <= DHR_MAX_KEYS);
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			assert_memory_not_equal(keys[i], keys[j], DHR_KEY_LEN);
}

/* The in-memory DHT: key -> records (indices into the layout). */
enum { NP = 40, NSLOT = NP * DHR_MAX_KEYS };
static struct {
	uint8_t key[DHR_KEY_LEN];
	int rec;
} dht[NSLOT];
static int ndht;
static struct dhr_rec layout[NP];
static struct dhr_lens lens; /* the lengths the layout uses (DHR_LENGTHS lookups) */

/* Starts s as a lookup of dst in mode (DHR_LENGTHS: over lens). */
static void search_init(struct dhr_search *s, const uint8_t dst[16], int mode)
{
	if (mode == DHR_LENGTHS)
		dhr_search_init_lengths(s, dst, &lens);
	else
		dhr_search_init(s, dst, (enum dhr_mode)mode);
}

/* The lengths of the layout's first np prefixes into lens, and how many there are. */
static unsigned layout_lens(int np)
{
	unsigned n = 0;
	memset(&lens, 0, sizeof(lens));
	for (int i = 0; i < np; i++) {
		n += !dhr_lens_has(&lens, layout[i].prefix.len);
		dhr_lens_add(&lens, layout[i].prefix.len);
	}
	return n;
}

static void rand_addr(uint8_t a[16], const uint8_t base[16], unsigned keep)
{
	for (int i = 0; i < 16; i++)
		a[i] = (uint8_t)rand();
	/* share the first keep bits with base, so prefixes nest and overlap */
	for (unsigned b = 0; b < keep; b++) {
		uint8_t m = (uint8_t)(0x80u >> (b % 8));
		a[b / 8] = (uint8_t)((a[b / 8] & ~m) | (base[b / 8] & m));
	}
}

/* A random layout around a random base in the in-memory DHT, each prefix under its keys:
 * 1..NP prefixes of lengths from plens (np of them; with any_len, one in three of any
 * length), sharing up to keep_max - 1 bits with the base; with repub, one in four (past the
 * first) the same prefix as an earlier one, republished. Returns how many prefixes. */
static int make_layout(const int *plens, int nplens, bool any_len, unsigned keep_max, bool repub)
{
	uint8_t base[16];
	rand_addr(base, base, 0);
	ndht = 0;
	int np = 1 + rand() % NP;
	for (int i = 0; i < np; i++) {
		struct dhr_rec *r = &layout[i];
		memset(r, 0, sizeof(*r));
		r->prefix.family = PEAK_AFI_IP6;
		r->prefix.len =
		    (uint8_t)(!any_len || rand() % 3 ? plens[rand() % nplens] : rand() % 129);
		rand_addr(r->prefix.addr, base, (unsigned)rand() % keep_max);
		prefix_mask_bits(r->prefix.addr, r->prefix.len);
		if (repub && i && rand() % 4 == 0)
			r->prefix = layout[rand() % i].prefix;
		r->time_s = (uint64_t)i;
		uint8_t keys[DHR_MAX_KEYS][DHR_KEY_LEN], x[32] = {(uint8_t)i};
		size_t nk = dhr_pub_keys(&r->prefix, x, keys);
		for (size_t k = 0; k < nk; k++) {
			memcpy(dht[ndht].key, keys[k], DHR_KEY_LEN);
			dht[ndht++].rec = i;
		}
	}
	return np;
}

static const int PLENS[] = {1, 8, 16, 32, 47, 48, 56, 63, 64, 96, 127, 128};

static void test_lookups_match_oracle(void **state)
{
	(void)state;
	srand(17);
	unsigned max_gets = 0, max_walk = 0;
	for (int round = 0; round < 300; round++) {
		int np = make_layout(PLENS, 12, true, 129, false);
		unsigned nlens = layout_lens(np);
		for (int q = 0; q < 40; q++) {
			uint8_t dst[16];
			rand_addr(dst, layout[rand() % np].prefix.addr, (unsigned)(rand() % 129));
			int want = -1;
			for (int i = 0; i < np; i++)
				if (prefix_contains_addr(&layout[i].prefix, dst) &&
				    (want < 0 || layout[i].prefix.len > layout[want].prefix.len ||
				     (layout[i].prefix.len == layout[want].prefix.len && i > want)))
					want = i;
			for (int mode = DHR_BSEARCH; mode <= DHR_LENGTHS; mode++) {
				struct dhr_search s;
				uint8_t key[DHR_KEY_LEN];
				struct dhr_rec got[NSLOT];
				search_init(&s, dst, mode);
				while (dhr_search_next(&s, key)) {
					size_t n = 0;
					for (int k = 0; k < ndht; k++)
						if (!memcmp(dht[k].key, key, DHR_KEY_LEN))
							got[n++] = layout[dht[k].rec];
					dhr_search_feed(&s, got, n);
				}
				if (mode == DHR_WALK && s.gets >= DHR_MAX_GETS)
					continue; /* a walk over many set bits gives up: bounded */
				assert_int_equal(s.found, want >= 0);
				if (want >= 0)
					assert_int_equal(
					    prefix_cmp(&s.best.prefix, &layout[want].prefix), 0);
				if (mode == DHR_BSEARCH && s.gets > max_gets)
					max_gets = s.gets;
				if (mode == DHR_WALK && s.gets > max_walk)
					max_walk = s.gets;
				if (mode == DHR_LENGTHS) /* one get a length at most */
					assert_true(s.gets <= nlens);
			}
		}
	}
	print_message("# most gets: binary search %u, walk %u\n", max_gets, max_walk);
	assert_true(max_gets < DHR_MAX_GETS);
}

/* The parallel driver (dhr_par_*) against the sequential search, in a deterministic
 * simulation of gets answered out of order: random layouts as above, each get's values
 * delivered in random chunks at random moments and its end later still, speculation at
 * random moments, superseded gets answered anyway. The answer (found, prefix, record) must be
 * the sequential one's, the lookup must never stall, and the gets stay bounded. */
enum { SIM_GETS = 4 * DHR_MAX_GETS };

struct sim_get {
	uint32_t id;
	struct dhr_rec recs[NSLOT];
	size_t n, sent;
	bool live;
};

static size_t dht_get_all(const uint8_t key[DHR_KEY_LEN], struct dhr_rec *out)
{
	size_t n = 0;
	for (int k = 0; k < ndht; k++)
		if (!memcmp(dht[k].key, key, DHR_KEY_LEN))
			out[n++] = layout[dht[k].rec];
	for (size_t i = n; i > 1; i--) { /* any order */
		size_t j = (size_t)rand() % i;
		struct dhr_rec t = out[i - 1];
		out[i - 1] = out[j];
		out[j] = t;
	}
	return n;
}

/* The sequential lookup of dst in mode over the simulated DHT, every get answered whole. */
static void search_all(struct dhr_search *s, const uint8_t dst[16], int mode)
{
	uint8_t key[DHR_KEY_LEN];
	struct dhr_rec got[NSLOT];
	search_init(s, dst, mode);
	while (dhr_search_next(s, key))
		dhr_search_feed(s, got, dht_get_all(key, got));
}

static struct dhr_par par;
static struct sim_get sim[SIM_GETS];

/* How run_par answers and what it saw: each get's values in one chunk (whole), a running
 * get assumed absent after one event in assume_pct (dhr_par_assume); the first early answer
 * (dhr_par_answer) in early, if any. */
static struct {
	bool whole;
	int assume_pct;
	bool has_early;
	struct dhr_rec early;
} sim_opt;

static void run_par(const uint8_t dst[16], enum dhr_mode mode, unsigned *max_issued)
{
	int nsim = 0;
	const struct dhr_search *r;
	sim_opt.has_early = false;
	if (mode == DHR_LENGTHS)
		dhr_par_init_lengths(&par, dst, &lens);
	else
		dhr_par_init(&par, dst, mode);
	while (!(r = dhr_par_result(&par))) {
		uint8_t key[DHR_KEY_LEN];
		uint32_t id;
		if (rand() % 3 == 0)
			dhr_par_speculate(&par);
		while (dhr_par_want(&par, rand() % 4 != 0, key, &id)) {
			assert_true(nsim < SIM_GETS);
			struct sim_get *g = &sim[nsim++];
			g->id = id;
			g->n = dht_get_all(key, g->recs);
			g->sent = 0;
			g->live = true;
		}
		int live[SIM_GETS], nl = 0;
		for (int i = 0; i < nsim; i++)
			if (sim[i].live)
				live[nl++] = i;
		assert_true(nl > 0); /* else the lookup stalls */
		struct sim_get *g = &sim[live[rand() % nl]];
		if (g->sent < g->n && rand() % 4 != 0) {
			size_t k = sim_opt.whole ? g->n : 1 + (size_t)rand() % (g->n - g->sent);
			dhr_par_value(&par, g->id, g->recs + g->sent, k);
			g->sent += k;
		} else if (g->sent == g->n) {
			dhr_par_done(&par, g->id);
			g->live = false;
		}
		if (rand() % 100 < sim_opt.assume_pct) {
			g = &sim[live[rand() % nl]];
			if (g->live)
				dhr_par_assume(&par, g->id);
		}
		if (!sim_opt.has_early && (r = dhr_par_answer(&par))) {
			sim_opt.has_early = true;
			sim_opt.early = r->best;
		}
	}
	if (par.issued > *max_issued)
		*max_issued = par.issued;
}

static void test_par_matches_sequential(void **state)
{
	(void)state;
	srand(21);
	unsigned max_issued = 0, spec = 0, superseded = 0, lookups = 0;
	for (int round = 0; round < 150; round++) {
		int np = make_layout(PLENS, 12, true, 129, true);
		layout_lens(np);
		for (int q = 0; q < 30; q++) {
			uint8_t dst[16];
			rand_addr(dst, layout[rand() % np].prefix.addr, (unsigned)(rand() % 129));
			for (int mode = DHR_BSEARCH; mode <= DHR_LENGTHS; mode++) {
				struct dhr_search s;
				search_all(&s, dst, mode);
				for (int rep = 0; rep < 4; rep++) {
					run_par(dst, (enum dhr_mode)mode, &max_issued);
					const struct dhr_search *r = dhr_par_result(&par);
					assert_int_equal(r->found, s.found);
					assert_int_equal(r->gets >= DHR_MAX_GETS,
					                 s.gets >= DHR_MAX_GETS);
					if (s.found) {
						assert_int_equal(
						    prefix_cmp(&r->best.prefix, &s.best.prefix), 0);
						assert_int_equal(r->best.time_s, s.best.time_s);
					}
					spec += par.spec;
					superseded += par.superseded;
					lookups++;
				}
			}
		}
	}
	print_message("# %u parallel lookups: most gets %u, speculative %u, superseded %u\n",
	              lookups, max_issued, spec, superseded);
	assert_true(max_issued <= 2 * DHR_MAX_GETS);
	assert_true(spec > 0 && superseded > 0); /* both paths ran */
}

/* Early answers (dhr_par_answer) in the same simulation, against the sequential search (the
 * oracle's answer, test_lookups_match_oracle): the final answer stays the sequential one;
 * an early one is a registered prefix holding the destination, never longer than the final
 * one, and the final one itself when no get was assumed absent and each get's values came
 * at once (a hit's get may still be running: nothing it has not sent yet can change it). */
static void test_par_early_answer(void **state)
{
	(void)state;
	srand(23);
	unsigned lookups = 0, early = 0, differ = 0, max_issued = 0;
	for (int round = 0; round < 120; round++) {
		int np = make_layout(PLENS, 12, true, 129, true);
		layout_lens(np);
		for (int q = 0; q < 25; q++) {
			uint8_t dst[16];
			rand_addr(dst, layout[rand() % np].prefix.addr, (unsigned)(rand() % 129));
			for (int mode = DHR_BSEARCH; mode <= DHR_LENGTHS; mode++) {
				struct dhr_search s;
				search_all(&s, dst, mode);
				for (int rep = 0; rep < 3; rep++) {
					sim_opt.whole = rep == 0;
					sim_opt.assume_pct = rep == 2 ? 30 : 0;
					run_par(dst, (enum dhr_mode)mode, &max_issued);
					const struct dhr_search *r = dhr_par_result(&par);
					lookups++;
					assert_int_equal(r->found, s.found);
					if (s.found) {
						assert_int_equal(
						    prefix_cmp(&r->best.prefix, &s.best.prefix), 0);
						assert_int_equal(r->best.time_s, s.best.time_s);
					}
					if (!sim_opt.has_early)
						continue;
					const struct dhr_rec *e = &sim_opt.early;
					early++;
					assert_true(s.found); /* nothing found: no early answer */
					assert_true(prefix_contains_addr(&e->prefix, dst));
					assert_int_equal(
					    prefix_cmp(&layout[e->time_s].prefix, &e->prefix), 0);
					assert_true(e->prefix.len <= s.best.prefix.len);
					bool same = !prefix_cmp(&e->prefix, &s.best.prefix) &&
					            e->time_s == s.best.time_s;
					if (rep == 0)
						assert_true(same);
					differ += !same;
				}
			}
		}
	}
	print_message("# %u parallel lookups: %u answered early, %u of them corrected at the end\n",
	              lookups, early, differ);
	assert_true(early > lookups / 4 && differ > 0); /* both paths ran */
}

/* Gets that answer in the order they were asked, absent ones ending 10 times later than
 * present ones: with speculation, a lookup whose answers are absent after one hit costs
 * about one get time (its gets run at once), not one per get. Counted in the simulation's time
 * units. */
static void test_par_speculation_time(void **state)
{
	(void)state;
	struct dhr_rec r;
	memset(&r, 0, sizeof(r));
	pfx(&r.prefix, "fd00:b:c:d::/64");
	uint8_t keys[DHR_MAX_KEYS][DHR_KEY_LEN], x[32] = {0}, key[DHR_KEY_LEN];
	size_t nk = dhr_pub_keys(&r.prefix, x, keys);
	uint8_t dst[16];
	memcpy(dst, r.prefix.addr, 16);
	dst[15] = 2;
	struct {
		uint32_t id;
		bool hit;
		unsigned t0;
	} g[SIM_GETS];
	int ng = 0;
	unsigned now = 0;
	dhr_par_init(&par, dst, DHR_BSEARCH);
	while (!dhr_par_result(&par)) {
		uint32_t id;
		dhr_par_speculate(&par);
		while (dhr_par_want(&par, true, key, &id)) {
			bool hit = false;
			for (size_t k = 0; k < nk; k++)
				hit |= !memcmp(keys[k], key, DHR_KEY_LEN);
			g[ng].id = id;
			g[ng].hit = hit;
			g[ng++].t0 = now;
		}
		now++;
		for (int i = 0; i < ng; i++) {
			if (g[i].hit && now == g[i].t0 + 1)
				dhr_par_value(&par, g[i].id, &r, 1); /* a value comes soon */
			if (now == g[i].t0 + 10)
				dhr_par_done(&par, g[i].id); /* every end is slow */
		}
	}
	const struct dhr_search *s = dhr_par_result(&par);
	assert_true(s->found);
	assert_int_equal(s->best.prefix.len, 64);
	print_message("# /64 with slow ends: %u time units, %u gets (sequential: %u)\n", now,
	              par.issued, s->gets * 10);
	assert_true(now <= 10 + 2);
}

/* As under churn: present values come at once, every get's end (so every absent answer)
 * only after 100 time units. A binary search for a /64 whose gets are assumed absent after
 * 10 units answers early, with the /64, in about 10 units plus the speculation's; a lookup
 * over the listed length 64 at the /64's first value; the final answer, at about 100 units,
 * is the same. */
static void churn_time(enum dhr_mode mode)
{
	struct dhr_rec r;
	memset(&r, 0, sizeof(r));
	pfx(&r.prefix, "fd00:b:c:d::/64");
	uint8_t keys[DHR_MAX_KEYS][DHR_KEY_LEN], x[32] = {0}, key[DHR_KEY_LEN];
	size_t nk = dhr_pub_keys(&r.prefix, x, keys);
	uint8_t dst[16];
	memcpy(dst, r.prefix.addr, 16);
	dst[15] = 2;
	struct {
		uint32_t id;
		bool hit;
		unsigned t0;
	} g[SIM_GETS];
	int ng = 0;
	unsigned now = 0, early_at = 0;
	memset(&lens, 0, sizeof(lens));
	dhr_lens_add(&lens, 64);
	if (mode == DHR_LENGTHS)
		dhr_par_init_lengths(&par, dst, &lens);
	else
		dhr_par_init(&par, dst, mode);
	while (!dhr_par_result(&par)) {
		uint32_t id;
		if (now >= 1) /* the first get unanswered for a while: speculate */
			dhr_par_speculate(&par);
		while (dhr_par_want(&par, true, key, &id)) {
			bool hit = false;
			for (size_t k = 0; k < nk; k++)
				hit |= !memcmp(keys[k], key, DHR_KEY_LEN);
			g[ng].id = id;
			g[ng].hit = hit;
			g[ng++].t0 = now;
		}
		now++;
		for (int i = 0; i < ng; i++) {
			if (g[i].hit && now == g[i].t0 + 1)
				dhr_par_value(&par, g[i].id, &r, 1);
			if (now == g[i].t0 + 10)
				dhr_par_assume(&par, g[i].id); /* a no-op for a hit */
			if (now == g[i].t0 + 100)
				dhr_par_done(&par, g[i].id);
		}
		const struct dhr_search *e = dhr_par_answer(&par);
		if (e && !early_at) {
			early_at = now;
			assert_int_equal(prefix_cmp(&e->best.prefix, &r.prefix), 0);
		}
	}
	const struct dhr_search *s = dhr_par_result(&par);
	assert_true(s->found);
	assert_int_equal(s->best.prefix.len, 64);
	print_message("# /64 under churn, %s: early answer after %u time units, final after %u, "
	              "%u gets\n",
	              mode == DHR_LENGTHS ? "lengths" : "bsearch", early_at, now, par.issued);
	assert_true(early_at > 0 && early_at <= (mode == DHR_LENGTHS ? 1 : 10 + 2));
	assert_true(now >= 100);
}

static void test_par_churn_time(void **state)
{
	(void)state;
	churn_time(DHR_BSEARCH);
	churn_time(DHR_LENGTHS);
}

/* DHR_LENGTHS over lengths that leave some of the layout's out: the longest prefix holding
 * the destination among those of the listed lengths (what an operator's list publishes),
 * longest first, so a destination under a listed length costs a single get. */
static void test_lengths_listed_only(void **state)
{
	(void)state;
	srand(5);
	struct dhr_rec got[NSLOT];
	for (int round = 0; round < 200; round++) {
		static const int ls[] = {32, 48, 56, 64};
		int np = make_layout(ls, 4, false, 70, false);
		memset(&lens, 0, sizeof(lens));
		dhr_lens_add(&lens, 64);
		if (round % 2)
			dhr_lens_add(&lens, 48);
		for (int q = 0; q < 20; q++) {
			uint8_t dst[16];
			rand_addr(dst, layout[rand() % np].prefix.addr, (unsigned)(rand() % 129));
			int want = -1;
			for (int i = 0; i < np; i++)
				if (dhr_lens_has(&lens, layout[i].prefix.len) &&
				    prefix_contains_addr(&layout[i].prefix, dst) &&
				    (want < 0 || layout[i].prefix.len > layout[want].prefix.len ||
				     (layout[i].prefix.len == layout[want].prefix.len && i > want)))
					want = i;
			struct dhr_search s;
			uint8_t key[DHR_KEY_LEN];
			dhr_search_init_lengths(&s, dst, &lens);
			while (dhr_search_next(&s, key))
				dhr_search_feed(&s, got, dht_get_all(key, got));
			assert_int_equal(s.found, want >= 0);
			if (want >= 0) {
				assert_int_equal(prefix_cmp(&s.best.prefix, &layout[want].prefix),
				                 0);
				if (layout[want].prefix.len == 64)
					assert_int_equal(s.gets, 1);
			}
			assert_true(s.gets <= (round % 2 ? 2u : 1u));
		}
	}
	/* no length listed: over at once */
	struct dhr_search s;
	uint8_t key[DHR_KEY_LEN], dst[16] = {0x20};
	memset(&lens, 0, sizeof(lens));
	dhr_search_init_lengths(&s, dst, &lens);
	assert_false(dhr_search_next(&s, key));
	assert_false(s.found);
	dhr_par_init_lengths(&par, dst, &lens);
	assert_non_null(dhr_par_result(&par));
	assert_false(dhr_par_result(&par)->found);
	/* the extremes: /0 and /128 */
	dhr_lens_add(&lens, 0);
	dhr_lens_add(&lens, 128);
	assert_true(dhr_lens_has(&lens, 0) && dhr_lens_has(&lens, 128));
	assert_false(dhr_lens_has(&lens, 64));
	dhr_search_init_lengths(&s, dst, &lens);
	assert_true(dhr_search_next(&s, key));
	assert_int_equal(s.probe, 128);
	dhr_search_feed(&s, NULL, 0);
	assert_true(dhr_search_next(&s, key));
	assert_int_equal(s.probe, 0);
	dhr_search_feed(&s, NULL, 0);
	assert_false(dhr_search_next(&s, key));
}

/* One prefix: the binary search takes at most 8 gets (lengths 0..128). */
static void test_bsearch_eight_gets(void **state)
{
	(void)state;
	for (unsigned len = 0; len <= 128; len++) {
		struct dhr_rec r;
		memset(&r, 0, sizeof(r));
		pfx(&r.prefix, "fd00:b:c:d:e:f:1:2/128");
		prefix_mask_bits(r.prefix.addr, len);
		r.prefix.len = (uint8_t)len;
		uint8_t keys[DHR_MAX_KEYS][DHR_KEY_LEN], x[32] = {0}, key[DHR_KEY_LEN];
		size_t nk = dhr_pub_keys(&r.prefix, x, keys);
		struct dhr_search s;
		uint8_t dst[16];
		memcpy(dst, r.prefix.addr, 16);
		dst[15] |= 1;
		if (len == 128)
			memcpy(dst, r.prefix.addr, 16);
		dhr_search_init(&s, dst, DHR_BSEARCH);
		while (dhr_search_next(&s, key)) {
			bool hit = false;
			for (size_t k = 0; k < nk; k++)
				hit |= !memcmp(keys[k], key, DHR_KEY_LEN);
			dhr_search_feed(&s, &r, hit ? 1 : 0);
		}
		assert_true(s.found);
		assert_int_equal(s.best.prefix.len, len);
		assert_true(s.gets <= 8);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_record_round_trip),
	    cmocka_unit_test(test_group_record),
	    cmocka_unit_test(test_anycast_record),
	    cmocka_unit_test(test_keys_distinct),
	    cmocka_unit_test(test_lookups_match_oracle),
	    cmocka_unit_test(test_lengths_listed_only),
	    cmocka_unit_test(test_bsearch_eight_gets),
	    cmocka_unit_test(test_par_matches_sequential),
	    cmocka_unit_test(test_par_speculation_time),
	    cmocka_unit_test(test_par_early_answer),
	    cmocka_unit_test(test_par_churn_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
