/* APL (RFC 3123): wire and presentation formats and every malformed-input class. */
#include "test.h"

#include <errno.h>

#include "peak/apl.h"

static int unhex(const char *h, uint8_t *out)
{
	int n = 0;
	for (; h[0] && h[1]; h += 2)
		sscanf(h, "%2hhx", &out[n++]);
	return n;
}

static void test_rfc_example(void **state)
{
	(void)state;
	/* RFC 3123 section 5 style example */
	const char *t = "1:192.168.32.0/21 !1:192.168.38.0/28 2:2001:db8::/32";
	struct apl_item it[8];
	uint8_t rd[128];
	char out[256];
	int n = apl_parse_text(t, it, 8, NULL, 0);
	assert_int_equal(n, 3);
	assert_true(it[1].negate);
	int len = apl_write(it, (size_t)n, rd, sizeof(rd));
	uint8_t want[64];
	int wl = unhex("00011503c0a820"
	               "00011c83c0a826"
	               "0002200420010db8",
	               want);
	assert_int_equal(len, wl);
	assert_memory_equal(rd, want, (size_t)wl);
	assert_int_equal(apl_print(it, (size_t)n, out, sizeof(out)), (int)strlen(t));
	assert_string_equal(out, t);
	struct apl_item back[8];
	assert_int_equal(apl_parse(rd, (size_t)len, back, 8), 3);
	assert_int_equal(apl_print(back, 3, out, sizeof(out)), (int)strlen(t));
	assert_string_equal(out, t);
}

static void test_trim_and_mask(void **state)
{
	(void)state;
	struct apl_item it[2];
	uint8_t rd[64];
	char out[128];
	/* bits past the prefix are accepted and masked on input, never written */
	assert_int_equal(apl_parse_text("2:2001:db8::1/32", it, 2, NULL, 0), 1);
	int len = apl_write(it, 1, rd, sizeof(rd));
	assert_int_equal(len, 8); /* 4 header bytes + 2001:0db8, trailing zeros trimmed */
	/* on the wire: AFDLENGTH 16 with host bits set -> masked */
	uint8_t w[20] = {0, 2, 32, 16, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
	assert_int_equal(apl_parse(w, 20, it, 2), 1);
	apl_print(it, 1, out, sizeof(out));
	assert_string_equal(out, "2:2001:db8::/32");
	/* prefix 0: no address octets at all */
	assert_int_equal(apl_parse_text("1:0.0.0.0/0", it, 2, NULL, 0), 1);
	assert_int_equal(apl_write(it, 1, rd, sizeof(rd)), 4);
	assert_int_equal(rd[3], 0);
	/* a zero inside the address is kept, only trailing ones go */
	assert_int_equal(apl_parse_text("1:10.0.0.1/32", it, 2, NULL, 0), 1);
	assert_int_equal(apl_write(it, 1, rd, sizeof(rd)), 8);
	/* empty rdata: no items */
	assert_int_equal(apl_parse(rd, 0, it, 2), 0);
	assert_int_equal(apl_parse_text("", it, 2, NULL, 0), 0);
}

static void test_wire_errors(void **state)
{
	(void)state;
	struct apl_item it[4];
	const char *bad[] = {
	    "0002",                                 /* truncated header */
	    "000240",                               /* truncated header */
	    "00024002",                             /* AFDLENGTH 2, no data */
	    "0002400320",                           /* truncated AFDPART */
	    "0002801120010db800000000000000000000", /* AFDLENGTH 17 > 16 */
	    "0002810220010db8",                     /* prefix 129 > 128 */
	    "0001210100",                           /* IPv4 prefix 33 > 32 */
	    "000120050a00000000",                   /* IPv4 AFDLENGTH 5 > 4 */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t rd[64];
		int n = unhex(bad[i], rd);
		assert_int_equal(apl_parse(rd, (size_t)n, it, 4), -EBADMSG);
	}
	/* more items than room */
	uint8_t rd[40] = {0};
	for (int i = 0; i < 10; i++)
		rd[4 * i + 1] = 1; /* family 1, prefix 0, afdlen 0 */
	assert_int_equal(apl_parse(rd, 40, it, 4), -E2BIG);
	assert_int_equal(apl_parse(rd, 40, it, 0), -E2BIG);
	/* writing into too small a buffer */
	apl_parse_text("2:2001:db8::/32", it, 4, NULL, 0);
	assert_int_equal(apl_write(it, 1, rd, 5), -EMSGSIZE);
	/* an item whose prefix exceeds its family is refused on output */
	it[0].prefix = 200;
	assert_int_equal(apl_write(it, 1, rd, sizeof(rd)), -EINVAL);
}

static void test_unknown_family(void **state)
{
	(void)state;
	struct apl_item it[4];
	uint8_t rd[64], w[64];
	char out[256];
	int n = unhex("00070883aabbcc"
	              "0002200420010db8",
	              rd);
	assert_int_equal(apl_parse(rd, (size_t)n, it, 4), 2);
	assert_int_equal(it[0].family, 7);
	assert_true(it[0].negate);
	assert_int_equal(it[0].afdlen, 3);
	/* kept as written, both ways */
	assert_int_equal(apl_write(it, 2, w, sizeof(w)), n);
	assert_memory_equal(w, rd, (size_t)n);
	/* no presentation form: the RFC 3597 generic form stands for the whole record */
	int pl = apl_print(it, 2, out, sizeof(out));
	assert_int_equal(pl, (int)strlen(out));
	assert_string_equal(out, "\\# 15 00070883aabbcc0002200420010db8");
	struct apl_item back[4];
	assert_int_equal(apl_parse_text(out, back, 4, NULL, 0), 2);
	assert_int_equal(apl_write(back, 2, w, sizeof(w)), n);
	assert_memory_equal(w, rd, (size_t)n);
	assert_int_equal(apl_print(it, 2, out, 10), -ENOSPC);
}

static void bad_text(const char *t, const char *why)
{
	struct apl_item it[4];
	char err[256] = "";
	assert_int_equal(apl_parse_text(t, it, 4, err, sizeof(err)), -EINVAL);
	if (!strstr(err, why))
		fail_msg("'%s': error '%s' lacks '%s'", t, err, why);
}

static void test_text_errors(void **state)
{
	(void)state;
	bad_text("3:1.2.3.4/8", "want");
	bad_text("2:2001:db8::/129", "bad address");
	bad_text("2:10.0.0.0/8", "does not match family");
	bad_text("1:2001:db8::/32", "does not match family");
	bad_text("2:2001:db8::", "bad address");
	bad_text("!!1:10.0.0.0/8", "want");
	bad_text("2:zz::/8", "bad address");
	bad_text("\\# 3 0001", "3");
	bad_text("\\# 2 0001ff", "more data");
	bad_text("\\# 2 00x1", "hex");
	bad_text("\\# 4 00020801", "malformed");
	struct apl_item it[1];
	assert_int_equal(apl_parse_text("1:1.0.0.0/8 1:2.0.0.0/8", it, 1, NULL, 0), -E2BIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rfc_example), cmocka_unit_test(test_trim_and_mask),
	    cmocka_unit_test(test_wire_errors), cmocka_unit_test(test_unknown_family),
	    cmocka_unit_test(test_text_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
