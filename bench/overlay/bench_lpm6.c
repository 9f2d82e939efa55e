/* Measures the overlay's LPM table (include/peak/lpm6.h) on one core against its previous
 * versions and a variant (bench/overlay/lpm6_v2.c "before", the one just before it, lpm6_v1.c
 * "v1", the poptrie before its leaves copied trie nodes; the peers) in the same run, on the same
 * prefixes and addresses: N IPv6 prefixes in one of two layouts, then lookups per second for
 * addresses inside random prefixes of the table ("hit") and for uniformly random addresses in
 * 2000::/3
 * ("random"), one at a time and batched, and hits one at a time "dependent" (each address picked
 * by the value the lookup before returned: the latency of a lookup; the plain one-at-a-time
 * figures are independent calls, which the CPU may overlap), and the cost of changes on the full
 * table (remove+add of random prefixes, ::/0 added and gone). The tables are built first; then
 * each lookup figure is taken in 3 rounds alternating between them and the best round is printed
 * (other load only slows a round down), with the ratio current/peer; a smoke run (SECONDS under
 * 0.1, as the unit suite runs it) takes 1 round.
 * Layout "uniform": random prefixes of lengths 16..64 plus 10% /128 hosts, the worst case for
 * caches. Layout "bgp": like the global IPv6 table, N/16 /32 allocations in the RIR blocks
 * (2001::/16, 2400::/12, 2600::/12, 2800::/12, 2a00::/12, 2c00::/12) and more-specifics inside
 * them: mostly /48, some /33-/47, /56 and /64, 2% /128.
 * Usage: bench_lpm6 [PREFIXES [SECONDS [LAYOUT [WHICH]]]] (default 1000000 1 uniform both;
 * WHICH is both (before and current), all (the three), or names from v1, before and current,
 * comma-separated, e.g. v1,current). SECONDS is per round.
 * Rates are per second of this process's CPU time, so other load on the machine does not count
 * against it (its cache and memory-bus use still does). Fixed seed, so runs repeat. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peak/lpm6.h"

/* The peer "v1": lpm6_v1.c under the names lpm6v1_* (same signatures). */
struct lpm6v1;
struct lpm6v1 *lpm6v1_new(void);
void lpm6v1_free(struct lpm6v1 *t);
int lpm6v1_reserve(struct lpm6v1 *t, size_t n);
int lpm6v1_add(struct lpm6v1 *t, const uint8_t prefix[static 16], unsigned plen, uint32_t val);
int lpm6v1_del(struct lpm6v1 *t, const uint8_t prefix[static 16], unsigned plen);
bool lpm6v1_lookup(const struct lpm6v1 *t, const uint8_t addr[static 16], uint32_t *val,
                   unsigned *plen);
void lpm6v1_lookup_batch(const struct lpm6v1 *t, const uint8_t (*addr)[16], size_t n, uint32_t *val,
                         bool *found);
size_t lpm6v1_count(const struct lpm6v1 *t);
size_t lpm6v1_bytes(const struct lpm6v1 *t);

/* The peer "before": lpm6_v2.c under the names lpm6v2_*, the table before this one. */
struct lpm6v2;
struct lpm6v2 *lpm6v2_new(void);
void lpm6v2_free(struct lpm6v2 *t);
int lpm6v2_reserve(struct lpm6v2 *t, size_t n);
int lpm6v2_add(struct lpm6v2 *t, const uint8_t prefix[static 16], unsigned plen, uint32_t val);
int lpm6v2_del(struct lpm6v2 *t, const uint8_t prefix[static 16], unsigned plen);
bool lpm6v2_lookup(const struct lpm6v2 *t, const uint8_t addr[static 16], uint32_t *val,
                   unsigned *plen);
void lpm6v2_lookup_batch(const struct lpm6v2 *t, const uint8_t (*addr)[16], size_t n, uint32_t *val,
                         bool *found);
size_t lpm6v2_count(const struct lpm6v2 *t);
size_t lpm6v2_bytes(const struct lpm6v2 *t);

struct impl {
	const char *name;
	void *(*create)(void);
	void (*destroy)(void *t);
	int (*reserve)(void *t, size_t n);
	int (*add)(void *t, const uint8_t p[16], unsigned plen, uint32_t val);
	int (*del)(void *t, const uint8_t p[16], unsigned plen);
	bool (*lookup)(const void *t, const uint8_t a[16], uint32_t *val, unsigned *plen);
	void (*batch)(const void *t, const uint8_t (*a)[16], size_t n, uint32_t *val, bool *found);
	size_t (*count)(const void *t);
	size_t (*bytes)(const void *t);
	void *t;
	double best[5]; /* hit, hit batched, random, random batched, hit dependent */
};

#define IMPL(NAME, P, T)                                                                           \
	{                                                                                          \
		NAME, (void *(*)(void))P##_new, (void (*)(void *))P##_free,                        \
		    (int (*)(void *, size_t))P##_reserve,                                          \
		    (int (*)(void *, const uint8_t *, unsigned, uint32_t))P##_add,                 \
		    (int (*)(void *, const uint8_t *, unsigned))P##_del,                           \
		    (bool (*)(const void *, const uint8_t *, uint32_t *, unsigned *))P##_lookup,   \
		    (void (*)(const void *, const uint8_t(*)[16], size_t, uint32_t *,              \
		              bool *))P##_lookup_batch,                                            \
		    (size_t(*)(const void *))P##_count, (size_t(*)(const void *))P##_bytes, NULL,  \
		{                                                                                  \
			0                                                                          \
		}                                                                                  \
	}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

enum { NADDR = 1 << 20 };

/* Prefix i of the bgp layout: the first nalloc are /32 allocations, the rest fall inside one. */
static void bgp_prefix(uint64_t *s, uint8_t (*pf)[16], unsigned *pl, size_t i, size_t nalloc)
{
	static const uint16_t rir[] = {0x2001, 0x2400, 0x2600, 0x2800, 0x2a00, 0x2c00};
	uint64_t x = rnd(s), y = rnd(s);
	memcpy(pf[i], &x, 8);
	memcpy(pf[i] + 8, &y, 8);
	if (i < nalloc) {
		unsigned r = (unsigned)(rnd(s) % 6);
		uint16_t top = rir[r];
		pf[i][0] = (uint8_t)(top >> 8);
		if (r == 0)
			pf[i][1] = (uint8_t)top;
		else
			pf[i][1] = (uint8_t)((pf[i][1] & 0x0f) | (top & 0xf0));
		pl[i] = 32;
		return;
	}
	memcpy(pf[i], pf[rnd(s) % nalloc], 4);
	unsigned r = (unsigned)(rnd(s) % 100);
	pl[i] = r < 60   ? 48
	        : r < 78 ? 33 + (unsigned)(rnd(s) % 15)
	        : r < 90 ? 56
	        : r < 98 ? 64
	                 : 128;
}

/* How run calls the table: one address at a time, each independent of the lookups before it
 * (the CPU may overlap them); 64 a call (as the master reads them); or one at a time, each
 * address picked by the value the lookup before returned, so that no lookup starts before the
 * one before it ends (the latency of one lookup, not the rate). */
enum mode { ONE, BATCHED, DEPENDENT };

/* Lookups per CPU second over the addresses in mode m; *hits counts the matches of the last
 * pass. */
static double run(const struct impl *im, const uint8_t (*a)[16], double secs, enum mode m,
                  uint64_t *hits)
{
	enum { B = 64 };
	uint64_t n = 0, h = 0;
	uint32_t v[B];
	bool f[B];
	double t0 = now(), t1;
	do {
		h = 0;
		if (m == BATCHED) {
			for (unsigned i = 0; i < NADDR; i += B) {
				im->batch(im->t, a + i, B, v, f);
				for (unsigned j = 0; j < B; j++)
					h += f[j];
			}
		} else if (m == DEPENDENT) {
			uint32_t prev = 0;
			for (unsigned i = 0; i < NADDR; i++)
				h += im->lookup(im->t, a[(i + (prev & 1)) & (NADDR - 1)], &prev,
				                NULL);
		} else {
			for (unsigned i = 0; i < NADDR; i++)
				h += im->lookup(im->t, a[i], v, NULL);
		}
		n += NADDR;
		t1 = now();
	} while (t1 - t0 < secs);
	*hits = h;
	return (double)n / (t1 - t0);
}

/* Whether name is one of the comma-separated names in list. */
static bool listed(const char *list, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && !strncmp(p, name, n))
			return true;
		p += len + (e != NULL);
	}
	return false;
}

/* Huge pages this process holds (kB), or -1 if the kernel does not say. */
static long huge_kb(void)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

int main(int argc, char **argv)
{
	size_t np = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
	double secs = argc > 2 ? atof(argv[2]) : 1.0;
	const char *layout = argc > 3 ? argv[3] : "uniform";
	const char *which = argc > 4 ? argv[4] : "both";
	bool bgp = !strcmp(layout, "bgp");
	if (!bgp && strcmp(layout, "uniform")) {
		fprintf(stderr, "bench_lpm6: LAYOUT is uniform or bgp\n");
		return 2;
	}
	struct impl all[] = {IMPL("v1", lpm6v1, struct lpm6v1),
	                     IMPL("before", lpm6v2, struct lpm6v2),
	                     IMPL("current", lpm6, struct lpm6)};
	enum { NIMPL = sizeof(all) / sizeof(all[0]) };
	struct impl *im[NIMPL];
	unsigned ni = 0;
	for (unsigned i = 0; i < NIMPL; i++)
		if (!strcmp(which, "all") ||
		    (!strcmp(which, "both") && (i == 1 || i == NIMPL - 1)) ||
		    listed(which, all[i].name))
			im[ni++] = &all[i];
	if (!ni) {
		fprintf(stderr, "bench_lpm6: WHICH is both, all, or names from v1, before and "
		                "current, comma-separated\n");
		return 2;
	}
	uint64_t s = 0x0ddba11ULL;
	uint8_t(*pf)[16] = malloc(np ? np * 16 : 16);
	unsigned *pl = malloc(np ? np * sizeof(unsigned) : 1);
	uint8_t(*hit)[16] = malloc((size_t)NADDR * 16);
	uint8_t(*any)[16] = malloc((size_t)NADDR * 16);
	if (!pf || !pl || !hit || !any) {
		fprintf(stderr, "bench_lpm6: out of memory\n");
		return 1;
	}
	size_t nalloc = np / 16 ? np / 16 : 1;
	for (size_t i = 0; i < np; i++) {
		uint64_t x = rnd(&s), y = rnd(&s);
		if (bgp)
			bgp_prefix(&s, pf, pl, i, nalloc);
		else {
			pf[i][0] = 0x20; /* inside 2000::/3, as global unicast is */
			memcpy(pf[i] + 1, &x, 7);
			memcpy(pf[i] + 8, &y, 8);
			pl[i] = rnd(&s) % 10 == 0 ? 128 : 16 + (unsigned)(rnd(&s) % 49);
		}
	}
	for (unsigned i = 0; i < NADDR; i++) {
		size_t k = np ? rnd(&s) % np : 0;
		uint64_t x = rnd(&s), y = rnd(&s);
		memcpy(hit[i], &x, 8);
		memcpy(hit[i] + 8, &y, 8);
		if (np) { /* keep the first pl bits of prefix k */
			unsigned full = pl[k] / 8, rest = pl[k] % 8;
			memcpy(hit[i], pf[k], full);
			if (rest) {
				uint8_t m = (uint8_t)(0xff << (8 - rest));
				hit[i][full] = (uint8_t)((pf[k][full] & m) | (hit[i][full] & ~m));
			}
		}
		x = rnd(&s);
		y = rnd(&s);
		memcpy(any[i], &x, 8);
		memcpy(any[i] + 8, &y, 8);
		any[i][0] = (uint8_t)(0x20 | (any[i][0] & 0x1f));
	}
	enum { CHURN = 10000 };
	for (unsigned m = 0; m < ni; m++) {
		struct impl *p = im[m];
		long huge0 = huge_kb();
		p->t = p->create();
		if (!p->t || p->reserve(p->t, np)) {
			fprintf(stderr, "bench_lpm6: out of memory\n");
			return 1;
		}
		double t0 = now();
		for (size_t i = 0; i < np; i++)
			if (p->add(p->t, pf[i], pl[i], (uint32_t)i) < 0) {
				fprintf(stderr, "bench_lpm6: add failed\n");
				return 1;
			}
		double tadd = now() - t0;
		long huge1 = huge_kb();
		/* run-time changes on the full table: remove and re-add random prefixes, then ::/0
		 */
		uint64_t cs = 0xc4a26eULL;
		t0 = now();
		for (unsigned i = 0; np && i < CHURN; i++) {
			size_t k = rnd(&cs) % np;
			if (p->del(p->t, pf[k], pl[k]) == 0 &&
			    p->add(p->t, pf[k], pl[k], (uint32_t)k) < 0) {
				fprintf(stderr, "bench_lpm6: add failed\n");
				return 1;
			}
		}
		double tch = now() - t0;
		uint8_t zero[16] = {0};
		t0 = now();
		if (p->add(p->t, zero, 0, 0) < 0 || p->del(p->t, zero, 0)) {
			fprintf(stderr, "bench_lpm6: ::/0 failed\n");
			return 1;
		}
		double tdef = now() - t0;
		size_t cnt = p->count(p->t);
		printf("%-7s layout %s: prefixes %zu (unique %zu) added in %.2f s (%.0f adds/s), "
		       "%.1f MB (%.0f bytes/prefix), huge pages %ld MB\n",
		       p->name, layout, np, cnt, tadd, np / (tadd > 0 ? tadd : 1e-9),
		       p->bytes(p->t) / 1e6, cnt ? (double)p->bytes(p->t) / (double)cnt : 0.0,
		       huge0 >= 0 && huge1 >= 0 ? (huge1 - huge0) / 1024 : -1);
		printf(
		    "%-7s changes %.1f us per remove+add (%u random prefixes), %.1f ms to add and "
		    "remove ::/0\n",
		    p->name, np ? tch / CHURN * 1e6 : 0.0, CHURN, tdef * 1e3);
	}
	static const char *const what[5] = {"hit    ", "hit    ", "random ", "random ", "hit    "};
	static const char *const how[5] = {"", " batched", "", " batched", " dependent"};
	static const enum mode mode[5] = {ONE, BATCHED, ONE, BATCHED, DEPENDENT};
	uint64_t hits[NIMPL][5] = {{0}};
	unsigned rounds = secs < 0.1 ? 1 : 3;
	for (unsigned r = 0; r < rounds; r++)
		for (unsigned k = 0; k < 5; k++)
			for (unsigned m = 0; m < ni; m++) {
				double x =
				    run(im[m], (const uint8_t(*)[16])(k == 2 || k == 3 ? any : hit),
				        secs, mode[k], &hits[m][k]);
				if (x > im[m]->best[k])
					im[m]->best[k] = x;
			}
	for (unsigned k = 0; k < 5; k++) {
		for (unsigned m = 0; m < ni; m++)
			printf("%-7s %s %6.2f M lookups/s%s (%llu of %u matched)\n", im[m]->name,
			       what[k], im[m]->best[k] / 1e6, how[k],
			       (unsigned long long)hits[m][k], NADDR);
		/* the last one measured is the current table when more than one is */
		for (unsigned m = 0; ni > 1 && m + 1 < ni; m++) {
			printf("ratio   %s %6.2fx current/%s%s\n", what[k],
			       im[ni - 1]->best[k] / im[m]->best[k], im[m]->name, how[k]);
			if (hits[m][k] != hits[ni - 1][k]) {
				fprintf(stderr, "bench_lpm6: the tables disagree\n");
				return 1;
			}
		}
	}
	for (unsigned m = 0; m < ni; m++)
		im[m]->destroy(im[m]->t);
	free(pf);
	free(pl);
	free(hit);
	free(any);
	return 0;
}
