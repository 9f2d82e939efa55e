/* Request heads: the fields kept from untrusted header sections (HTTP/3 and HTTP/2 alike). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "head.h"

static void field(struct h3_req_head *h, const char *n, const char *v, size_t vl)
{
	h3_req_head_field(h, (const uint8_t *)n, strlen(n), (const uint8_t *)v, vl);
}

static void test_kept_fields(void **state)
{
	struct h3_req_head h;
	(void)state;
	memset(&h, 0, sizeof(h));
	field(&h, ":method", "POST", 4);
	field(&h, ":path", "/up", 3);
	field(&h, ":authority", "[::1]:443", 9);
	field(&h, "content-length", "12", 2);
	field(&h, "x-other", "ignored", 7);
	field(&h, ":method2", "GET", 3);
	assert_string_equal(h.method, "POST");
	assert_string_equal(h.path, "/up");
	assert_string_equal(h.authority, "[::1]:443");
	assert_string_equal(h.clen, "12");
	assert_false(h.has_ctype);
	field(&h, "content-type", "audio/ogg; x=1", 14);
	assert_true(h.has_ctype);
	assert_false(h.ctype_long);
	assert_string_equal(h.ctype, "audio/ogg; x=1");
	/* an empty content-type is present, not absent */
	memset(&h, 0, sizeof(h));
	field(&h, "content-type", "", 0);
	assert_true(h.has_ctype);
	assert_string_equal(h.ctype, "");
	/* names are matched exactly: upper case is not a field HTTP/2 or HTTP/3 allows */
	memset(&h, 0, sizeof(h));
	field(&h, "Content-Type", "audio/ogg", 9);
	assert_false(h.has_ctype);
}

static void test_untrusted_values(void **state)
{
	struct h3_req_head h;
	char big[3 * H3_HEAD_FIELD_LEN];
	(void)state;
	memset(&h, 0, sizeof(h));
	/* control bytes, NUL and obs-text become '?' */
	field(&h, ":path", "/a\r\nb\0c\xff", 8);
	assert_string_equal(h.path, "/a??b?c?");
	/* a long value is cut, and a long content-type marked so that it matches nothing */
	memset(big, 'a', sizeof(big));
	field(&h, "content-type", big, sizeof(big));
	assert_true(h.ctype_long);
	assert_int_equal(strlen(h.ctype), H3_HEAD_FIELD_LEN - 1);
	field(&h, ":method", big, sizeof(big));
	assert_int_equal(strlen(h.method), sizeof(h.method) - 1);
	field(&h, "content-length", big, 100);
	assert_int_equal(strlen(h.clen), sizeof(h.clen) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kept_fields),
	    cmocka_unit_test(test_untrusted_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
