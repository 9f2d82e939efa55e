/* Many small objects through the library calls of peak.h, for the migration test and the
 * demo (make demo-store), run in the testbed's client namespace as
 *	store_bulk DNS-SERVER PORT NAME put|get [FIRST:]END [STOP-FILE]
 * put stores keys "obj-FIRST" .. "obj-(END-1)" (FIRST 0 if not given), each a body derived from its
 *number (16 to 527 bytes); get reads them all back and checks the bytes, round after round until
 * STOP-FILE exists (once without one). Progress goes to stderr every 1000 objects; the last
 * line on stdout is "done OPS failed FAILS seconds S". Exits 0 if nothing failed. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "peak/peak.h"

enum { BODY_MAX = 16 + 511 };

static size_t body_of(unsigned i, uint8_t out[static BODY_MAX])
{
	size_t n = 16 + (i * 2654435761u >> 7) % 512;
	for (size_t k = 0; k < n; k++)
		out[k] = (uint8_t)(i * 31 + k * 7 + k / 13);
	return n;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 6 || argc > 7 || (strcmp(argv[4], "put") && strcmp(argv[4], "get"))) {
		fprintf(stderr,
		        "usage: store_bulk DNS-SERVER PORT NAME put|get [FIRST:]END [STOP-FILE]\n");
		return 2;
	}
	struct peak_resolver_opts ro = {.servers = {argv[1]}, .timeout_ms = 2000};
	struct peak_store_opts so = {.port = (uint16_t)atoi(argv[2]), .timeout_ms = 2000};
	const char *name = argv[3], *stop = argc == 7 ? argv[6] : NULL;
	bool put = !strcmp(argv[4], "put");
	char *colon = strchr(argv[5], ':');
	unsigned first = colon ? (unsigned)strtoul(argv[5], NULL, 10) : 0;
	unsigned count = (unsigned)strtoul(colon ? colon + 1 : argv[5], NULL, 10);
	uint64_t ops = 0, fails = 0;
	int err;
	struct peak_resolver *r = peak_resolver_new(&ro, &err);
	if (!r) {
		fprintf(stderr, "resolver: %s\n", peak_strerror(err));
		return 1;
	}
	double t0 = now_s();
	do {
		for (unsigned i = first; i < count; i++) {
			uint8_t want[BODY_MAX];
			char key[32];
			void *got = NULL;
			size_t len = 0, n = body_of(i, want);
			snprintf(key, sizeof(key), "obj-%u", i);
			if (put)
				err = peak_store_put_buf(r, name, key, want, n, &so);
			else
				err = peak_store_get_buf(r, name, key, &got, &len, BODY_MAX, &so);
			if (!err && !put && (len != n || memcmp(got, want, n)))
				err = -EBADMSG;
			free(got);
			ops++;
			if (err) {
				fails++;
				fprintf(stderr, "%s %s: %s (%s)\n", argv[4], key,
				        peak_strerror(err), peak_last_detail(r));
			}
			if (ops % 1000 == 0)
				fprintf(stderr,
				        "%s: %" PRIu64 " done, %" PRIu64 " failed, %.1f s\n",
				        argv[4], ops, fails, now_s() - t0);
		}
	} while (stop && access(stop, F_OK) == -1);
	printf("done %" PRIu64 " failed %" PRIu64 " seconds %.3f\n", ops, fails, now_s() - t0);
	peak_resolver_free(r);
	return fails != 0;
}
