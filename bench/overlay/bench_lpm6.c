/* Measures the overlay's LPM table (include/peak/lpm6.h) on one core: N random IPv6
 * prefixes (lengths 16..64 as routed IPv6 tables have, plus /128 hosts), then lookups per
 * second for addresses inside random prefixes of the table ("hit") and for uniformly random
 * addresses ("random"). Usage: bench_lpm6 [PREFIXES [SECONDS]] (default 1000000 1). Prints
 * one line per case; fixed seed, so runs repeat. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peak/lpm6.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
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
	for (size_t i = 0; i < np; i++) {
		uint64_t x = rnd(&s), y = rnd(&s);
		pf[i][0] = 0x20; /* inside 2000::/3, as global unicast is */
		memcpy(pf[i] + 1, &x, 7);
		memcpy(pf[i] + 8, &y, 8);
		pl[i] = rnd(&s) % 10 == 0 ? 128 : 16 + (unsigned)(rnd(&s) % 49);
		if (lpm6_add(t, pf[i], pl[i], (uint32_t)i) < 0) {
			fprintf(stderr, "bench_lpm6: add failed\n");
			return 1;
		}
	}
	double tadd = now() - t0;
	printf("prefixes %zu (unique %zu) added in %.2f s (%.0f adds/s), %.1f MB\n", np,
	       lpm6_count(t), tadd, np / (tadd > 0 ? tadd : 1e-9), lpm6_bytes(t) / 1e6);
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
