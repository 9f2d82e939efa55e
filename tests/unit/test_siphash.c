/* SipHash-2-4 against the reference vectors, and streaming against one-shot. */
#include "test.h"

#include "peak/siphash.h"

static void test_reference(void **state)
{
	(void)state;
	uint8_t k[16], m[64];
	for (int i = 0; i < 16; i++)
		k[i] = (uint8_t)i;
	for (int i = 0; i < 64; i++)
		m[i] = (uint8_t)i;
	/* From the SipHash paper's vectors (key 00..0f, message 00..len-1). */
	assert_true(siphash24(k, m, 0) == 0x726fdb47dd0e0e31ULL);
	assert_true(siphash24(k, m, 1) == 0x74f839c593dc67fdULL);
	assert_true(siphash24(k, m, 15) == 0xa129ca6149be45e5ULL); /* SPEC.md section 4 */
}

static void test_streaming(void **state)
{
	(void)state;
	uint64_t seed = 42;
	uint8_t k[16], m[300];
	for (int i = 0; i < 16; i++)
		k[i] = (uint8_t)test_rand(&seed);
	for (int i = 0; i < 300; i++)
		m[i] = (uint8_t)test_rand(&seed);
	for (size_t len = 0; len < 300; len += 7) {
		uint64_t want = siphash24(k, m, len);
		struct siphash_state st;
		siphash_init(&st, k);
		size_t off = 0;
		while (off < len) {
			size_t step = 1 + test_rand(&seed) % 13;
			if (step > len - off)
				step = len - off;
			siphash_update(&st, m + off, step);
			off += step;
		}
		assert_true(siphash_final(&st) == want);
	}
}

static void test_tagged(void **state)
{
	(void)state;
	uint8_t k[16] = {1, 2, 3}, m[40], buf[41];
	for (int i = 0; i < 40; i++)
		m[i] = (uint8_t)(i * 7);
	for (size_t len = 0; len < 40; len++) {
		buf[0] = 0x11;
		memcpy(buf + 1, m, len);
		assert_true(ssa_h64(k, 0x11, m, len) == siphash24(k, buf, len + 1));
	}
	uint8_t h[16];
	ssa_h128(k, 0x11, m, 9, h);
	buf[0] = 0x11;
	memcpy(buf + 1, m, 9);
	uint64_t hi = siphash24(k, buf, 10);
	buf[0] = 0x91;
	uint64_t lo = siphash24(k, buf, 10);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(h[i], (uint8_t)(hi >> (56 - 8 * i)));
		assert_int_equal(h[8 + i], (uint8_t)(lo >> (56 - 8 * i)));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reference),
	    cmocka_unit_test(test_streaming),
	    cmocka_unit_test(test_tagged),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
