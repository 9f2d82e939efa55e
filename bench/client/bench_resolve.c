/* Client costs:
 *   bench_resolve resolve SERVER NAME [N]  one cold peak_resolve, then N warm ones (answers
 *                                          cached): microseconds cold, nanoseconds per warm call
 *   bench_resolve pow BITS [RUNS]          time to find a proof-of-work address for RUNS
 *                                          different sources: median and range, milliseconds */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peak/peak.h"
#include "peak/ssa.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int bench_resolve(const char *server, const char *name, long n)
{
	struct peak_resolver_opts o = {.servers = {server}};
	struct peak_result res;
	int err;
	struct peak_resolver *r = peak_resolver_new(&o, &err);
	if (!r) {
		fprintf(stderr, "resolver: %s\n", peak_strerror(err));
		return 1;
	}
	double t0 = now();
	err = peak_resolve(r, name, NULL, 80, &res);
	double t1 = now();
	if (err) {
		fprintf(stderr, "resolve: %s %s\n", peak_strerror(err), peak_last_detail(r));
		return 1;
	}
	for (long i = 0; i < n; i++)
		if (peak_resolve(r, name, NULL, 80, &res)) {
			fprintf(stderr, "warm resolve failed\n");
			return 1;
		}
	double t2 = now();
	printf("cold_us=%.0f warm_ns=%.0f calls=%ld\n", (t1 - t0) * 1e6, (t2 - t1) * 1e9 / n,
	       n + 1);
	peak_resolver_free(r);
	return 0;
}

static int bench_pow(unsigned bits, unsigned runs)
{
	char desc[160], err[SSA_ERRLEN];
	struct ssa_desc d;
	struct ssa_space sp;
	struct prefix p;
	snprintf(desc, sizeof(desc),
	         "v=ssa1; slice=78; select=src; host=src; pow=%u; nonce=32; "
	         "key=000102030405060708090a0b0c0d0e0f",
	         bits);
	prefix_parse("2001:db8:5::/64", false, &p);
	if (ssa_desc_parse(desc, strlen(desc), &d, err, sizeof(err)) ||
	    ssa_space_init(&sp, &d, &p, 1, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	double *ms = calloc(runs, sizeof(*ms));
	for (unsigned i = 0; i < runs; i++) {
		uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0xaa, 0, (uint8_t)i, [15] = 1},
		        out[16];
		struct ssa_req q = {.src = src};
		double t0 = now();
		if (ssa_compute(&sp, &q, out)) {
			fprintf(stderr, "no nonce\n");
			return 1;
		}
		ms[i] = (now() - t0) * 1e3;
	}
	qsort(ms, runs, sizeof(*ms), dcmp);
	printf("pow=%u runs=%u median_ms=%.1f min_ms=%.1f max_ms=%.1f\n", bits, runs, ms[runs / 2],
	       ms[0], ms[runs - 1]);
	free(ms);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "resolve"))
		return bench_resolve(argv[2], argv[3], argc > 4 ? atol(argv[4]) : 10000);
	if (argc >= 3 && !strcmp(argv[1], "pow"))
		return bench_pow((unsigned)atoi(argv[2]), argc > 3 ? (unsigned)atoi(argv[3]) : 9);
	fprintf(stderr, "usage: bench_resolve resolve SERVER NAME [N] | pow BITS [RUNS]\n");
	return 2;
}
