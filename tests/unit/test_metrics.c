/* Metrics text: label values escaped as the Prometheus text format requires (backslash,
 * double quote, line feed), so an id or name cannot break or forge a sample line. */
#include "test.h"

#include <stdlib.h>

#include "metrics.h"

static void test_label_escape(void **state)
{
	(void)state;
	char out[64];
	assert_string_equal(metrics_label(out, sizeof(out), "pod-a"), "pod-a");
	assert_string_equal(metrics_label(out, sizeof(out), ""), "");
	assert_string_equal(metrics_label(out, sizeof(out), "a\"b"), "a\\\"b");
	assert_string_equal(metrics_label(out, sizeof(out), "a\\b"), "a\\\\b");
	assert_string_equal(metrics_label(out, sizeof(out), "a\nb"), "a\\nb");
	/* a forged sample: stays inside the one label value */
	assert_string_equal(metrics_label(out, sizeof(out), "x\"} 1\nfake 2"), "x\\\"} 1\\nfake 2");
	/* other bytes (tabs, UTF-8) stand for themselves */
	assert_string_equal(metrics_label(out, sizeof(out), "t\tü"), "t\tü");
	/* too long: cut before an escape, never inside one */
	assert_string_equal(metrics_label(out, 4, "abcdef"), "abc");
	assert_string_equal(metrics_label(out, 4, "ab\"c"), "ab");
	assert_string_equal(metrics_label(out, 1, "abc"), "");
}

static void test_mbuf_label(void **state)
{
	(void)state;
	struct mbuf b = {0};
	mbuf_printf(&b, "m{service=");
	mbuf_label(&b, "a\"b\\c\nd");
	mbuf_printf(&b, ",endpoint=");
	mbuf_label(&b, "pod-a");
	mbuf_printf(&b, "} %d\n", 3);
	assert_string_equal(b.p, "m{service=\"a\\\"b\\\\c\\nd\",endpoint=\"pod-a\"} 3\n");
	assert_int_equal(b.len, strlen(b.p));
	free(b.p);
	/* into an empty buffer, and past the first allocation */
	struct mbuf e = {0};
	mbuf_label(&e, "");
	assert_string_equal(e.p, "\"\"");
	char *big = malloc(40000);
	memset(big, '"', 39999);
	big[39999] = '\0';
	mbuf_label(&e, big);
	assert_int_equal(e.len, 2 + 2 + 2 * 39999);
	assert_int_equal(e.p[e.len], '\0');
	assert_int_equal(e.p[e.len - 1], '"');
	assert_int_equal(e.p[e.len - 2], '"');
	assert_int_equal(e.p[e.len - 3], '\\');
	free(big);
	free(e.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_label_escape),
	    cmocka_unit_test(test_mbuf_label),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
