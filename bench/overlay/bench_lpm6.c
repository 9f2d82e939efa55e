/* Measures the overlay's LPM table (include/peak/lpm6.h) on one core: N IPv6 prefixes in one
 * of two layouts, then lookups per second for addresses inside random prefixes of the table
 * ("hit") and for uniformly random addresses in 2000::/3 ("random"), one at a time and batched,
 * and the cost of changes on the full table (remove+add of random prefixes, ::/0 added and gone).
 * Layout "uniform": random prefixes of lengths 16..64 plus 10% /128 hosts, the worst case for
 * caches. Layout "bgp": like the global IPv6 table, N/16 /32 allocations in the RIR blocks
 * (2001::/16, 2400::/12, 2600::/12, 2800::/12, 2a00::/12, 2c00::/12) and more-specifics inside
 * them: mostly /48, some /33-/47, /56 and /64, 2% /128.
 * Usage: bench_lpm6 [PREFIXES [SECONDS [LAYOUT]]] (default 1000000 1 uniform). Rates are per
 * second of this process's CPU time, so other load on the machine does not count against it
 * (its cache and memory-bus use still does). Fixed seed, so runs repeat. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peak/lpm6.h"

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

static double run(const struct lpm6 *t, const uint8_t (*a)[16], double secs, uint64_t *hits)
{
	uint64_t n = 0, h = 0;
	double t0 = now(), t1;
	do {
		for (unsigned i = 0; i < NADDR; i++) {
			uint32_t v;
			h += lpm6_lookup(t, a[i], &v, NULL);
		}
		n += NADDR;
		t1 = now();
	} while (t1 - t0 < secs);
	*hits = h;
	return (double)n / (t1 - t0);
}

/* The same through lpm6_lookup_batch, 64 addresses a call (as the master reads them). */
static double run_batch(const struct lpm6 *t, const uint8_t (*a)[16], double secs, uint64_t *hits)
{
	enum { B = 64 };
	uint64_t n = 0, h = 0;
	uint32_t v[B];
	bool f[B];
	double t0 = now(), t1;
	do {
		for (unsigned i = 0; i < NADDR; i += B) {
			lpm6_lookup_batch(t, a + i, B, v, f);
			for (unsigned j = 0; j < B; j++)
				h += f[j];
		}
		n += NADDR;
		t1 = now();
	} while (t1 - t0 < secs);
	*hits = h;
	return (double)n / (t1 - t0);
}

int main(int argc, char **argv)
{
	size_t np = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
	double secs = argc > 2 ? atof(argv[2]) : 1.0;
	const char *layout = argc > 3 ? argv[3] : "uniform";
	bool bgp = !strcmp(layout, "bgp");
	if (!bgp && strcmp(layout, "uniform")) {
		fprintf(stderr, "bench_lpm6: LAYOUT is uniform or bgp\n");
		return 2;
	}
	uint64_t s = 0x0ddba11ULL;
	struct lpm6 *t = lpm6_new();
	uint8_t(*pf)[16] = malloc(np ? np * 16 : 16);
	unsigned *pl = malloc(np ? np * sizeof(unsigned) : 1);
	uint8_t(*a)[16] = malloc((size_t)NADDR * 16);
	if (!t || !pf || !pl || !a || lpm6_reserve(t, np)) {
		fprintf(stderr, "bench_lpm6: out of memory\n");
		return 1;
	}
	double t0 = now();
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
		if (lpm6_add(t, pf[i], pl[i], (uint32_t)i) < 0) {
			fprintf(stderr, "bench_lpm6: add failed\n");
			return 1;
		}
	}
	double tadd = now() - t0;
	printf("layout %s: prefixes %zu (unique %zu) added in %.2f s (%.0f adds/s), %.1f MB "
	       "(%.0f bytes/prefix)\n",
	       layout, np, lpm6_count(t), tadd, np / (tadd > 0 ? tadd : 1e-9), lpm6_bytes(t) / 1e6,
	       lpm6_count(t) ? (double)lpm6_bytes(t) / (double)lpm6_count(t) : 0.0);
	for (unsigned i = 0; i < NADDR; i++) {
		size_t k = np ? rnd(&s) % np : 0;
		uint64_t x = rnd(&s), y = rnd(&s);
		memcpy(a[i], &x, 8);
		memcpy(a[i] + 8, &y, 8);
		if (np) { /* keep the first pl bits of prefix k */
			unsigned full = pl[k] / 8, rest = pl[k] % 8;
			memcpy(a[i], pf[k], full);
			if (rest) {
				uint8_t m = (uint8_t)(0xff << (8 - rest));
				a[i][full] = (uint8_t)((pf[k][full] & m) | (a[i][full] & ~m));
			}
		}
	}
	/* run-time changes on the full table: remove and re-add random prefixes, then ::/0 */
	enum { CHURN = 10000 };
	t0 = now();
	for (unsigned i = 0; np && i < CHURN; i++) {
		size_t k = rnd(&s) % np;
		if (lpm6_del(t, pf[k], pl[k]) == 0 && lpm6_add(t, pf[k], pl[k], (uint32_t)k) < 0) {
			fprintf(stderr, "bench_lpm6: add failed\n");
			return 1;
		}
	}
	double tch = now() - t0;
	uint8_t zero[16] = {0};
	t0 = now();
	if (lpm6_add(t, zero, 0, 0) < 0 || lpm6_del(t, zero, 0)) {
		fprintf(stderr, "bench_lpm6: ::/0 failed\n");
		return 1;
	}
	double tdef = now() - t0;
	printf(
	    "changes %.1f us per remove+add (%u random prefixes), %.1f ms to add and remove ::/0\n",
	    np ? tch / CHURN * 1e6 : 0.0, CHURN, tdef * 1e3);
	uint64_t hits;
	double r = run(t, (const uint8_t(*)[16])a, secs, &hits);
	printf("hit     %.2f M lookups/s (%llu matched)\n", r / 1e6, (unsigned long long)hits);
	r = run_batch(t, (const uint8_t(*)[16])a, secs, &hits);
	printf("hit     %.2f M lookups/s batched (%llu matched)\n", r / 1e6,
	       (unsigned long long)hits);
	for (unsigned i = 0; i < NADDR; i++) {
		uint64_t x = rnd(&s), y = rnd(&s);
		memcpy(a[i], &x, 8);
		memcpy(a[i] + 8, &y, 8);
		a[i][0] = (uint8_t)(0x20 | (a[i][0] & 0x1f));
	}
	r = run(t, (const uint8_t(*)[16])a, secs, &hits);
	printf("random  %.2f M lookups/s (%llu matched)\n", r / 1e6, (unsigned long long)hits);
	r = run_batch(t, (const uint8_t(*)[16])a, secs, &hits);
	printf("random  %.2f M lookups/s batched (%llu matched)\n", r / 1e6,
	       (unsigned long long)hits);
	lpm6_free(t);
	free(pf);
	free(pl);
	free(a);
	return 0;
}
