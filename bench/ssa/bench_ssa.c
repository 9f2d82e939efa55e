/* Measures SSA address computation and checking: addresses per second on one core, per
 * rule kind, from distinct client sources. Usage: bench_ssa [SECONDS_PER_CASE] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peak/ssa.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	static const char *cases[][2] = {
	    {"src/src", "slice=78; select=src; host=src"},
	    {"src/src fanout=4", "slice=78; select=src; host=src; fanout=4"},
	    {"obj/src", "slice=78; select=obj; host=src"},
	    {"hop/hop", "slice=78; select=hop; host=hop"},
	    {"rand/rand", "slice=78"},
	    {"src/src pow=8", "slice=78; select=src; host=src; pow=8; nonce=16"},
	};
	uint8_t secret[16] = {0xf0, 0xe0};
	struct prefix p;
	prefix_parse("2001:db8:5::/64", false, &p);
	printf("%-20s %14s %14s\n", "rule", "compute/s", "check/s");
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		char text[256], err[SSA_ERRLEN];
		struct ssa_desc d;
		struct ssa_space sp;
		snprintf(text, sizeof(text), "v=ssa1; key=000102030405060708090a0b0c0d0e0f; %s",
		         cases[c][1]);
		if (ssa_desc_parse(text, strlen(text), &d, err, sizeof(err)) ||
		    ssa_space_init(&sp, &d, &p, 1, err, sizeof(err))) {
			fprintf(stderr, "%s: %s\n", cases[c][0], err);
			return 1;
		}
		uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8}, dst[16];
		struct ssa_req r = {.src = src,
		                    .object = (const uint8_t *)"videos/cat.mp4",
		                    .object_len = 14,
		                    .secret = secret,
		                    .time = 1767225600,
		                    .rand = {1, 2, 3}};
		uint64_t n = 0, sink = 0;
		double t0 = now(), t1;
		do {
			for (int k = 0; k < 1000; k++, n++) {
				memcpy(src + 4, &n, sizeof(n)); /* a new client /64 each time */
				ssa_compute(&sp, &r, dst);
				sink += dst[15];
			}
		} while ((t1 = now()) - t0 < secs);
		double crate = (double)n / (t1 - t0);
		uint64_t m = 0;
		t0 = now();
		do {
			for (int k = 0; k < 1000; k++, m++) {
				dst[15] ^= (uint8_t)m;
				sink += (uint64_t)ssa_check(&sp, src, dst, r.time, secret);
			}
		} while ((t1 = now()) - t0 < secs);
		double krate = (double)m / (t1 - t0);
		printf("%-20s %14.0f %14.0f\n", cases[c][0], crate, krate);
		if (sink == 42)
			putchar(' ');
	}
	return 0;
}
