/* Routing rules of peak h3 ingress: parsing (good specs, every refusal with its message),
 * matching by specificity, round robin among healthy upstreams. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "route.h"

static struct h3_route_table t;
static char err[256];

static const char *name_of(const char *v)
{
	struct h3_route *r = h3_route_match(&t, v, strlen(v));
	return r ? r->name : NULL;
}

static void test_parse_and_match(void **state)
{
	(void)state;
	memset(&t, 0, sizeof(t));
	assert_int_equal(h3_route_parse(&t,
	                                "audio/*=h3://[::1]:4001|h3://[::1]:4002,"
	                                "Video/MP4=h3://127.0.0.1:4003",
	                                err, sizeof(err)),
	                 0);
	assert_int_equal(
	    h3_route_parse(&t, "*/*=h3://[::1]:4002,audio/ogg=h3://[::1]:4001", err, sizeof(err)),
	    0);
	assert_int_equal(t.n, 4);
	assert_int_equal(t.nup, 3); /* [::1]:4001 and :4002 are shared between rules */
	assert_string_equal(t.up_name[0], "[::1]:4001");
	assert_string_equal(t.up_name[2], "127.0.0.1:4003");
	assert_int_equal(t.r[0].nup, 2);
	/* the most specific pattern wins, whatever the order of the rules */
	assert_string_equal(name_of("audio/ogg"), "audio/ogg");
	assert_string_equal(name_of("AUDIO/OGG; rate=1"), "audio/ogg");
	assert_string_equal(name_of("audio/mpeg"), "audio/*");
	assert_string_equal(name_of("video/mp4;codecs=\"avc1\""), "video/mp4");
	assert_string_equal(name_of("video/webm"), "*/*");
	assert_null(name_of("video"));
	assert_null(name_of(""));
	memset(&t, 0, sizeof(t));
	assert_int_equal(h3_route_parse(&t, "audio/*=h3://[::1]:1", err, sizeof(err)), 0);
	assert_null(name_of("video/mp4"));
}

static void refused(const char *spec, const char *msg)
{
	struct h3_route_table before;
	memset(&t, 0, sizeof(t));
	assert_int_equal(h3_route_parse(&t, "text/plain=h3://[::1]:9", err, sizeof(err)), 0);
	before = t;
	err[0] = 0;
	assert_int_equal(h3_route_parse(&t, spec, err, sizeof(err)), -EINVAL);
	if (!strstr(err, msg))
		fail_msg("'%s': got '%s', want '%s'", spec, err, msg);
	assert_memory_equal(&t, &before, sizeof(t)); /* nothing added on error */
}

static void test_refusals(void **state)
{
	(void)state;
	refused("", "empty");
	refused("audio/*", "rule 1 'audio/*': want TYPE=");
	refused("audio/*=h3://[::1]:1,video", "rule 2 'video': want TYPE=");
	refused("audio=h3://[::1]:1", "the type is not");
	refused("a*/b=h3://[::1]:1", "the type is not");
	refused("*/mp4=h3://[::1]:1", "the type is not");
	refused("audio/ogg;x=1=h3://[::1]:1", "the type is not");
	refused("=h3://[::1]:1", "the type is not");
	refused("audio/*=", "upstream '' is not");
	refused("audio/*=http://[::1]:1", "upstream 'http://[::1]:1' is not");
	refused("audio/*=h3://::1:1", "upstream 'h3://::1:1' is not");
	refused("audio/*=h3://[::1]:99999", "is not");
	refused("audio/*=h3://[::1]:1|", "upstream '' is not");
	refused("audio/*=h3://[::1]:1|h3://[::1]:1", "twice");
	refused("audio/*=h3://[::1]:1,AUDIO/*=h3://[::1]:2", "audio/* is routed twice");
	refused("text/plain=h3://[::1]:1", "text/plain is routed twice");
	refused("audio/*=h3://localhost:1", "is not");
	refused("audio/*=h3://[::1]:1,", "rule 2 '': want TYPE=");
	refused("a/b=h3://[::1]:1|h3://[::1]:2|h3://[::1]:3|h3://[::1]:4|h3://[::1]:5|"
	        "h3://[::1]:6|h3://[::1]:7|h3://[::1]:8|h3://[::1]:9",
	        "more than 8 upstreams");
	char many[2048] = "";
	for (int i = 0; i < 40; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "%sa/t%d=h3://[::1]:1",
		         i ? "," : "", i);
	refused(many, "more than 32 rules");
	char big[H3_ROUTE_SPEC_MAX + 10];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	refused(big, "longer than");
	/* a control byte in the message is shown as '?' */
	refused("au\001dio/*=h3://[::1]:1", "rule 1 'au?dio/*");
}

static void test_round_robin(void **state)
{
	(void)state;
	bool healthy[H3_ROUTE_UPS_ALL] = {true, true, true};
	int seen[3] = {0};
	memset(&t, 0, sizeof(t));
	assert_int_equal(
	    h3_route_parse(&t, "a/b=h3://[::1]:1|h3://[::1]:2|h3://[::1]:3", err, sizeof(err)), 0);
	struct h3_route *r = &t.r[0];
	for (int i = 0; i < 9; i++)
		seen[h3_route_pick(r, healthy)]++;
	assert_int_equal(seen[0], 3);
	assert_int_equal(seen[1], 3);
	assert_int_equal(seen[2], 3);
	healthy[1] = false;
	for (int i = 0; i < 6; i++)
		assert_int_not_equal(h3_route_pick(r, healthy), 1);
	int a = h3_route_pick(r, healthy), b = h3_route_pick(r, healthy);
	assert_true(a != b && a != 1 && b != 1);
	healthy[0] = healthy[2] = false;
	assert_int_equal(h3_route_pick(r, healthy), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_and_match),
	    cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_round_robin),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
