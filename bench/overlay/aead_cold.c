/* Measures one AES-256-GCM seal of a small packet (an echo request: 104 bytes, 28 bytes of
 * header authenticated) when the call follows a sleep, as the overlay's first seal of a lone
 * packet does, against calls back to back: GnuTLS's AEAD API (gnutls_aead_cipher_encrypt,
 * what src/overlay/wire.c uses) and nettle's gcm_aes256, with memcpy of the same bytes as the
 * reference. After the sleep the code and tables are out of the caches: that cost, not the
 * cipher's speed, is what a lone packet pays (bench/overlay/rtt_trace.py shows it as the step
 * before sendmmsg). Each figure is the least and the median of ROUNDS calls, each after
 * sleeping GAP microseconds (0: none).
 * Usage: aead_cold [GAP_US [ROUNDS [BYTES]]] (default 10000 200 104) */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <nettle/gcm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { AD_LEN = 28, TAG_LEN = 16, MAX_BYTES = 1500, MAX_ROUNDS = 10000 };

static uint8_t key[32] = {1}, nonce[12], ad[AD_LEN], in[MAX_BYTES], out[MAX_BYTES + TAG_LEN];
static size_t nbytes = 104;
static gnutls_aead_cipher_hd_t gh;
static struct gcm_aes256_ctx nh;

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double d = *(const double *)a - *(const double *)b;
	return d < 0 ? -1 : d > 0;
}

static void seal_memcpy(void)
{
	memcpy(out, in, nbytes);
	__asm__ volatile("" : : "r"(out) : "memory");
}

static void seal_gnutls(void)
{
	size_t olen = sizeof(out);
	if (gnutls_aead_cipher_encrypt(gh, nonce, sizeof(nonce), ad, AD_LEN, TAG_LEN, in, nbytes,
	                               out, &olen) < 0)
		abort();
}

static void seal_nettle(void)
{
	gcm_aes256_set_iv(&nh, sizeof(nonce), nonce);
	gcm_aes256_update(&nh, AD_LEN, ad);
	gcm_aes256_encrypt(&nh, nbytes, out, in);
	gcm_aes256_digest(&nh, TAG_LEN, out + nbytes);
}

static void run(const char *name, void (*fn)(void), unsigned gap_us, int rounds)
{
	static double t[MAX_ROUNDS];
	for (int i = 0; i < rounds; i++) {
		if (gap_us)
			usleep(gap_us);
		nonce[11] = (uint8_t)i;
		double s = now_ns();
		fn();
		t[i] = now_ns() - s;
	}
	qsort(t, (size_t)rounds, sizeof(t[0]), cmp);
	printf("%-8s %zu bytes, %u us apart: least %.2f us, median %.2f us\n", name, nbytes, gap_us,
	       t[0] / 1e3, t[rounds / 2] / 1e3);
}

int main(int argc, char **argv)
{
	unsigned gap = argc > 1 ? (unsigned)atoi(argv[1]) : 10000;
	int rounds = argc > 2 ? atoi(argv[2]) : 200;
	if (argc > 3)
		nbytes = (size_t)atoi(argv[3]);
	if (rounds < 1 || rounds > MAX_ROUNDS || nbytes < 1 || nbytes > MAX_BYTES) {
		fprintf(stderr, "usage: aead_cold [GAP_US [ROUNDS (1..%d) [BYTES (1..%d)]]]\n",
		        MAX_ROUNDS, MAX_BYTES);
		return 2;
	}
	gnutls_datum_t k = {key, sizeof(key)};
	if (gnutls_aead_cipher_init(&gh, GNUTLS_CIPHER_AES_256_GCM, &k) < 0)
		return 1;
	gcm_aes256_set_key(&nh, key);
	run("memcpy", seal_memcpy, gap, rounds);
	run("gnutls", seal_gnutls, gap, rounds);
	run("nettle", seal_nettle, gap, rounds);
	gnutls_aead_cipher_deinit(gh);
	return 0;
}
