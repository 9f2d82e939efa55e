/* The congestion control of the QUIC connections: names, and the host's TCP choice followed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conn.h"

static void test_parse(void **state)
{
	(void)state;
	assert_int_equal(h3_cc_parse("reno"), NGTCP2_CC_ALGO_RENO);
	assert_int_equal(h3_cc_parse("cubic"), NGTCP2_CC_ALGO_CUBIC);
	assert_int_equal(h3_cc_parse("bbr"), NGTCP2_CC_ALGO_BBR);
	assert_int_equal(h3_cc_parse("bbr2"), NGTCP2_CC_ALGO_BBR2);
	assert_int_equal(h3_cc_parse("bbr\n"), NGTCP2_CC_ALGO_BBR); /* as /proc has it */
	assert_int_equal(h3_cc_parse("bbr "), NGTCP2_CC_ALGO_BBR);
	assert_int_equal(h3_cc_parse("bb"), -1);
	assert_int_equal(h3_cc_parse("bbr3"), -1);
	assert_int_equal(h3_cc_parse("BBR"), -1);
	assert_int_equal(h3_cc_parse("vegas"), -1);
	assert_int_equal(h3_cc_parse(""), -1);
	assert_int_equal(h3_cc_parse("\n"), -1);
	assert_int_equal(h3_cc_parse(NULL), -1);
}

/* Without PEAK_H3_CC the host's TCP congestion control is followed (CUBIC for one ngtcp2 does
 * not have, or when /proc cannot be read). */
static void test_host_choice(void **state)
{
	(void)state;
	char buf[32] = "";
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_congestion_control", "re");
	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = 0;
		fclose(f);
	}
	int want = h3_cc_parse(buf);
	unsetenv("PEAK_H3_CC");
	assert_int_equal(h3_cc_algo(), want >= 0 ? want : NGTCP2_CC_ALGO_CUBIC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_host_choice),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
