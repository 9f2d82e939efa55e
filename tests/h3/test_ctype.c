/* Content-type patterns: parsing of --type lists and matching of header values. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ctype.h"

static bool match(const char *list, const char *v)
{
	struct h3_ctype_set s;
	assert_int_equal(h3_ctype_set_parse(&s, list), 0);
	return h3_ctype_set_match(&s, v, strlen(v));
}

static void test_match(void **state)
{
	(void)state;
	assert_true(match("audio/*,video/mp4", "audio/ogg"));
	assert_true(match("audio/*,video/mp4", "AUDIO/Ogg"));
	assert_true(match("audio/*,video/mp4", "video/mp4"));
	assert_true(match("audio/*,video/mp4", "video/MP4; codecs=\"avc1\""));
	assert_true(match("audio/*,video/mp4", "  audio/mpeg ;rate=1"));
	assert_true(match(" video/mp4 , Audio/Ogg ", "audio/ogg"));
	assert_true(match("*/*", "application/octet-stream"));
	assert_false(match("audio/*,video/mp4", "video/webm"));
	assert_false(match("audio/*,video/mp4", "video/mp4x"));
	assert_false(match("audio/*,video/mp4", "audio"));
	assert_false(match("audio/*,video/mp4", "audio/"));
	assert_false(match("audio/*,video/mp4", "/ogg"));
	assert_false(match("audio/*,video/mp4", ""));
	assert_false(match("audio/*,video/mp4", "audio/ogg x"));
	assert_false(match("audio/*,video/mp4", "audio /ogg"));
	assert_false(match("audio/*", "audiox/ogg"));
	/* NUL and bytes past the given length do not count */
	struct h3_ctype_set s;
	assert_int_equal(h3_ctype_set_parse(&s, "audio/ogg"), 0);
	assert_false(h3_ctype_set_match(&s, "audio/ogg\0", 10));
	assert_true(h3_ctype_set_match(&s, "audio/oggvorbis", 9));
}

static void test_parse_errors(void **state)
{
	struct h3_ctype_set s;
	(void)state;
	const char *bad[] = {
	    "",
	    "audio",
	    "audio/",
	    "/mp4",
	    "audio/*,",
	    ",audio/*",
	    "audio/ogg;x=1",
	    "*/mp4",
	    "au*/ogg",
	    "audio/og*",
	    "a/b,c/d,e/f,g/h,i/j,k/l,m/n,o/p,q/r",
	    "audio/ogg x",
	    "aud\"io/ogg",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(h3_ctype_set_parse(&s, bad[i]), -EINVAL);
	char longp[200];
	memset(longp, 'a', sizeof(longp));
	longp[100] = '/';
	longp[199] = 0;
	assert_int_equal(h3_ctype_set_parse(&s, longp), -EINVAL);
	assert_int_equal(h3_ctype_set_parse(&s, "a/b,c/d,e/f,g/h,i/j,k/l,m/n,o/p"), 0);
	assert_int_equal(s.n, 8);
	assert_string_equal(s.pat[0], "a/b");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_match),
	    cmocka_unit_test(test_parse_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
