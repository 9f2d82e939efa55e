/* Prefixes: parsing, RFC 5952 printing, containment, slicing, aggregation. */
#include "test.h"

#include <errno.h>
#include <stdlib.h>

#include "peak/prefix.h"

static void canon(const char *in, const char *want)
{
	uint8_t a[16], fam;
	char out[ADDR_STRLEN];
	assert_int_equal(addr_parse(in, &fam, a), 0);
	assert_string_equal(addr_print(fam, a, out), want);
}

static void test_rfc5952(void **state)
{
	(void)state;
	canon("2001:0db8::0001", "2001:db8::1");               /* 4.1 leading zeros */
	canon("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1");    /* 4.2.3 first longest */
	canon("2001:db8:0:0:0:1:0:0", "2001:db8::1:0:0");      /* longest run */
	canon("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"); /* 4.2.2 single zero */
	canon("2001:DB8::A", "2001:db8::a");                   /* 4.3 lower case */
	canon("::", "::");
	canon("::1", "::1");
	canon("1::", "1::");
	canon("1:0:0:2::", "1:0:0:2::");
	canon("::ffff:192.0.2.1", "::ffff:192.0.2.1"); /* section 5 */
	canon("2001:db8:5:0:a94a:ac01:8d:78fe", "2001:db8:5:0:a94a:ac01:8d:78fe");
	canon("192.0.2.33", "192.0.2.33");
}

static void test_parse(void **state)
{
	(void)state;
	struct prefix p;
	char s[PREFIX_STRLEN];
	assert_int_equal(prefix_parse("2001:db8:5::/64", false, &p), 0);
	assert_int_equal(p.family, PEAK_AFI_IP6);
	assert_int_equal(p.len, 64);
	assert_string_equal(prefix_print(&p, s), "2001:db8:5::/64");
	assert_int_equal(prefix_parse("10.1.0.0/16", false, &p), 0);
	assert_string_equal(prefix_print(&p, s), "10.1.0.0/16");
	assert_int_equal(prefix_parse("::/0", false, &p), 0);
	assert_string_equal(prefix_print(&p, s), "::/0");

	/* bits past the length: an error unless masking is asked for */
	assert_int_equal(prefix_parse("2001:db8::1/32", false, &p), -EINVAL);
	assert_int_equal(prefix_parse("2001:db8::1/32", true, &p), 0);
	assert_string_equal(prefix_print(&p, s), "2001:db8::/32");

	const char *bad[] = {"2001:db8::/129",
	                     "10.0.0.0/33",
	                     "2001:db8::",
	                     "/64",
	                     "x/3",
	                     "2001:db8::/6a",
	                     "2001:db8::/ 64",
	                     "2001:db8::/",
	                     "2001:db8::/0064",
	                     "1.2.3/8",
	                     "2001:db8:::/48",
	                     ""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(prefix_parse(bad[i], true, &p), -EINVAL);
}

static void test_contains_cmp(void **state)
{
	(void)state;
	struct prefix a, b, c;
	uint8_t x[16], fam;
	prefix_parse("2001:db8::/32", false, &a);
	prefix_parse("2001:db8:5::/64", false, &b);
	prefix_parse("2001:db9::/32", false, &c);
	assert_true(prefix_contains(&a, &b));
	assert_false(prefix_contains(&b, &a));
	assert_false(prefix_contains(&a, &c));
	assert_true(prefix_contains(&a, &a));
	addr_parse("2001:db8:5::1", &fam, x);
	assert_true(prefix_contains_addr(&b, x));
	addr_parse("2001:db8:6::1", &fam, x);
	assert_false(prefix_contains_addr(&b, x));
	assert_true(prefix_cmp(&a, &b) < 0); /* same start, shorter first */
	assert_true(prefix_cmp(&b, &c) < 0);
	assert_int_equal(prefix_cmp(&a, &a), 0);
}

static void test_slice(void **state)
{
	(void)state;
	struct prefix p, s;
	char t[PREFIX_STRLEN];
	prefix_parse("2001:db8:5::/64", false, &p);
	assert_int_equal(prefix_slice(&p, 78, 0, &s), 0);
	assert_string_equal(prefix_print(&s, t), "2001:db8:5::/78");
	assert_int_equal(prefix_slice(&p, 78, 1, &s), 0);
	assert_string_equal(prefix_print(&s, t), "2001:db8:5:0:4::/78");
	assert_int_equal(prefix_slice(&p, 78, 16383, &s), 0);
	assert_string_equal(prefix_print(&s, t), "2001:db8:5:0:fffc::/78");
	assert_int_equal(prefix_slice(&p, 78, 16384, &s), -EINVAL);
	assert_int_equal(prefix_slice(&p, 63, 0, &s), -EINVAL);
	assert_int_equal(prefix_slice(&p, 129, 0, &s), -EINVAL);
}

static void test_bits(void **state)
{
	(void)state;
	uint8_t a[16] = {0};
	addr_set_bits(a, 64, 14, 0x3fff);
	assert_int_equal(a[8], 0xff);
	assert_int_equal(a[9], 0xfc);
	assert_int_equal(addr_get_bits(a, 64, 14), 0x3fff);
	addr_set_bits(a, 60, 64, 0x123456789abcdef0ULL);
	assert_true(addr_get_bits(a, 60, 64) == 0x123456789abcdef0ULL);
}

static void test_aggregate_examples(void **state)
{
	(void)state;
	const char *in[] = {"2001:db8::/33", "2001:db8:8000::/33", "2001:db8:1::/48", "10.0.0.0/25",
	                    "10.0.0.128/25", "10.0.1.0/24",        "10.0.3.0/24"};
	struct prefix v[8];
	char s[PREFIX_STRLEN];
	for (int i = 0; i < 7; i++)
		prefix_parse(in[i], false, &v[i]);
	size_t n = prefix_aggregate(v, 7);
	assert_int_equal(n, 3);
	assert_string_equal(prefix_print(&v[0], s), "10.0.0.0/23");
	assert_string_equal(prefix_print(&v[1], s), "10.0.3.0/24");
	assert_string_equal(prefix_print(&v[2], s), "2001:db8::/32");
	assert_int_equal(prefix_aggregate(v, 0), 0);
}

/* Brute force: the minimal exact cover of a set of addresses in a 256-address block is
 * found by recursion (a block fully set is one prefix, an empty one none). */
static size_t brute_cover(const uint8_t *set, unsigned start, unsigned size, unsigned len,
                          struct prefix *out, const struct prefix *base)
{
	unsigned cnt = 0;
	for (unsigned i = start; i < start + size; i++)
		cnt += set[i];
	if (!cnt)
		return 0;
	if (cnt == size) {
		*out = *base;
		out->len = (uint8_t)len;
		out->addr[15] = (uint8_t)start;
		return 1;
	}
	size_t n = brute_cover(set, start, size / 2, len + 1, out, base);
	return n + brute_cover(set, start + size / 2, size / 2, len + 1, out + n, base);
}

static void test_aggregate_random(void **state)
{
	(void)state;
	uint64_t seed = 0x5eed1234abcdULL;
	struct prefix base;
	prefix_parse("2001:db8:77::/120", false, &base);
	for (int round = 0; round < 2000; round++) {
		struct prefix v[64], want[256];
		uint8_t set[256] = {0};
		size_t n = 1 + test_rand(&seed) % 40;
		for (size_t i = 0; i < n; i++) {
			unsigned len = 120 + (unsigned)(test_rand(&seed) % 9);
			unsigned size = 1u << (128 - len);
			unsigned start = (unsigned)(test_rand(&seed) % 256) & ~(size - 1);
			v[i] = base;
			v[i].len = (uint8_t)len;
			v[i].addr[15] = (uint8_t)start;
			for (unsigned k = 0; k < size; k++)
				set[start + k] = 1;
		}
		size_t m = prefix_aggregate(v, n);
		size_t w = brute_cover(set, 0, 256, 120, want, &base);
		assert_int_equal(m, w);
		for (size_t i = 0; i < m; i++)
			assert_int_equal(prefix_cmp(&v[i], &want[i]), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rfc5952),
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_contains_cmp),
	    cmocka_unit_test(test_slice),
	    cmocka_unit_test(test_bits),
	    cmocka_unit_test(test_aggregate_examples),
	    cmocka_unit_test(test_aggregate_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
