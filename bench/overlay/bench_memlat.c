/* The memory under bench_lpm6's figures: for arrays of each size given (MB, default 1 4 16 64
 * 160), on 2 MiB-aligned mappings advised MADV_HUGEPAGE (or not, with "-s" first), the time
 * of one read in a chain of dependent random reads (each address read from the line before:
 * the latency), and the rates of random reads one a lookup and two dependent reads a lookup
 * (the second address in the first line) over independent lookups, which the CPU overlaps:
 * what a table read by one, or two dependent, cache misses a lookup could do at most here.
 * Per second of this process's CPU time. Usage: bench_memlat [-s] [MB...] */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

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

enum { STEPS = 1 << 22, LINE = 8 /* uint64_t a line */ };

static int one(size_t mb, bool huge)
{
	size_t len = mb << 20, lines = len / 64;
	char *m =
	    mmap(NULL, len + (2 << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint32_t *perm = malloc(lines * sizeof(*perm)), *idx = malloc(STEPS * sizeof(*idx));
	if (m == MAP_FAILED || !perm || !idx || lines < 2) {
		fprintf(stderr, "bench_memlat: out of memory\n");
		return 1;
	}
	uint64_t *a = (uint64_t *)(((uintptr_t)m + (2 << 20) - 1) & ~(uintptr_t)((2 << 20) - 1));
	if (huge)
		(void)madvise(a, len, MADV_HUGEPAGE);
	uint64_t s = 0x5eed;
	for (size_t i = 0; i < lines; i++)
		perm[i] = (uint32_t)i;
	for (size_t i = lines - 1; i > 0; i--) { /* one cycle through every line */
		size_t j = rnd(&s) % (i + 1);
		uint32_t x = perm[i];
		perm[i] = perm[j];
		perm[j] = x;
	}
	for (size_t i = 0; i < lines; i++)
		a[(size_t)perm[i] * LINE] = (uint64_t)perm[(i + 1) % lines] * LINE;
	for (size_t i = 0; i < STEPS; i++)
		idx[i] = (uint32_t)(rnd(&s) % lines) * LINE;
	uint64_t x = 0, sum = 0;
	double t0 = now();
	for (size_t i = 0; i < STEPS; i++)
		x = a[x];
	double chain = now() - t0;
	t0 = now();
	for (size_t i = 0; i < STEPS; i++)
		sum += a[idx[i]];
	double indep = now() - t0;
	t0 = now();
	for (size_t i = 0; i < STEPS; i++)
		sum += a[a[idx[i]]];
	double two = now() - t0;
	printf("%5zu MB%s: dependent read %6.1f ns, 1 read a lookup %6.1f M/s, 2 dependent reads "
	       "a lookup %6.1f M/s (%llx)\n",
	       mb, huge ? "" : " (small pages)", chain / STEPS * 1e9, STEPS / indep / 1e6,
	       STEPS / two / 1e6, (unsigned long long)(x + sum) & 0xf);
	munmap(m, len + (2 << 20));
	free(perm);
	free(idx);
	return 0;
}

int main(int argc, char **argv)
{
	bool huge = !(argc > 1 && !strcmp(argv[1], "-s"));
	int first = huge ? 1 : 2, r = 0;
	static const size_t def[] = {1, 4, 16, 64, 160};
	if (argc <= first)
		for (size_t i = 0; i < sizeof(def) / sizeof(def[0]); i++)
			r |= one(def[i], huge);
	for (int i = first; i < argc; i++)
		r |= one(strtoul(argv[i], NULL, 10), huge);
	return r;
}
