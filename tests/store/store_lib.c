/* The object store calls of peak.h (peak_store_put/get/delete and their buffer forms)
 * against a running store: run by test_library.py in the testbed's client namespace as
 *	store_lib DNS-SERVER PORT NAME
 * Prints one line per check and exits 0 if all passed. */
#define _GNU_SOURCE /* memfd_create */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "peak/peak.h"

static int failed;

static void check(int ok, const char *what, int err, struct peak_resolver *r)
{
	printf("%s %s", ok ? "ok" : "FAIL", what);
	if (!ok)
		printf(" (%d: %s; %s)", err, peak_strerror(err), peak_last_detail(r));
	printf("\n");
	failed |= !ok;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: store_lib DNS-SERVER PORT NAME\n");
		return 2;
	}
	struct peak_resolver_opts ro = {.servers = {argv[1]}, .timeout_ms = 2000};
	struct peak_store_opts so = {.port = (uint16_t)atoi(argv[2]), .timeout_ms = 2000};
	const char *name = argv[3];
	int err;
	struct peak_resolver *r = peak_resolver_new(&ro, &err);
	if (!r) {
		fprintf(stderr, "resolver: %s\n", peak_strerror(err));
		return 1;
	}
	size_t n = 300000;
	uint8_t *body = malloc(n);
	for (size_t i = 0; i < n; i++)
		body[i] = (uint8_t)(i * 7 + i / 251);
	void *got = NULL;
	size_t len = 0;

	err = peak_store_put_buf(r, name, "lib-buffer", body, n, &so);
	check(!err, "put_buf", err, r);
	err = peak_store_get_buf(r, name, "lib-buffer", &got, &len, n, &so);
	check(!err && len == n && !memcmp(got, body, n), "get_buf returns the bytes", err, r);
	free(got);
	err = peak_store_get_buf(r, name, "lib-buffer", &got, &len, n - 1, &so);
	check(err == -EFBIG && !got, "get_buf over max: -EFBIG", err, r);

	/* put from a pipe (spooled), get into a memfd */
	int p[2];
	if (pipe(p))
		return 1;
	if (write(p[1], "from a pipe", 11) != 11)
		return 1;
	close(p[1]);
	err = peak_store_put(r, name, "lib-pipe", p[0], &so);
	close(p[0]);
	check(!err, "put from a pipe", err, r);
	int m = memfd_create("out", 0);
	char out[32] = "";
	err = peak_store_get(r, name, "lib-pipe", m, &so);
	check(!err && pread(m, out, sizeof(out), 0) == 11 && !memcmp(out, "from a pipe", 11),
	      "get into a fd", err, r);
	close(m);

	err = peak_store_delete(r, name, "lib-buffer", &so);
	check(!err, "delete", err, r);
	err = peak_store_get_buf(r, name, "lib-buffer", &got, &len, n, &so);
	check(err == PEAK_E_NOTFOUND, "get after delete: PEAK_E_NOTFOUND", err, r);
	err = peak_store_delete(r, name, "lib-buffer", &so);
	check(err == PEAK_E_NOTFOUND, "delete again: PEAK_E_NOTFOUND", err, r);
	err = peak_store_put_buf(r, name, "a/b", "x", 1, &so);
	check(err == -EINVAL, "a key with '/': -EINVAL", err, r);
	err = peak_store_get_buf(r, name, "lib-missing", &got, &len, n, &so);
	check(err == PEAK_E_NOTFOUND, "a missing key: PEAK_E_NOTFOUND", err, r);
	err = peak_store_get_buf(r, "nonexistent.svc.example.", "k", &got, &len, n, &so);
	check(err == PEAK_E_NXDOMAIN, "an unknown name: the resolver's error", err, r);

	free(body);
	peak_resolver_free(r);
	return failed;
}
