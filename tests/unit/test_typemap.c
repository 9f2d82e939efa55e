/* The content-type map published at _types.NAME (peak/typemap.h): parsing, canonical
 * printing, the most specific match, and every malformed input class. */
#include "test.h"

#include <errno.h>
#include <stdlib.h>

#include "peak/config.h"
#include "peak/typemap.h"

static int parse(const char *s, struct typemap *m, char *err)
{
	return typemap_parse(s, strlen(s), m, err, TYPEMAP_ERRLEN);
}

static void test_parse_and_print(void **state)
{
	(void)state;
	struct typemap m, m2;
	char err[TYPEMAP_ERRLEN], out[TYPEMAP_TEXT_MAX];
	assert_int_equal(parse(" v=types1 ;Audio/*=Audio.SVC.example. ; video/mp4 = @#clips/cat;"
	                       ";future=1; */*=@",
	                       &m, err),
	                 0);
	assert_int_equal(m.n, 3);
	assert_string_equal(m.e[0].pat, "audio/*");
	assert_string_equal(m.e[0].name, "audio.svc.example.");
	assert_string_equal(m.e[0].key, "");
	assert_string_equal(m.e[1].pat, "video/mp4");
	assert_string_equal(m.e[1].name, "@");
	assert_string_equal(m.e[1].key, "clips/cat");
	int n = typemap_print(&m, out, sizeof(out));
	assert_true(n > 0);
	assert_string_equal(out, "v=types1; audio/*=audio.svc.example.; video/mp4=@#clips/cat; "
	                         "*/*=@");
	assert_int_equal(typemap_parse(out, (size_t)n, &m2, err, sizeof(err)), 0);
	assert_memory_equal(&m, &m2, sizeof(m));
	assert_int_equal(typemap_print(&m, out, 20), -ENOSPC);
	/* only the version: an empty map is valid text */
	assert_int_equal(parse("v=types1", &m, err), 0);
	assert_int_equal(m.n, 0);
}

static void test_lookup_most_specific(void **state)
{
	(void)state;
	struct typemap m;
	char err[TYPEMAP_ERRLEN];
	assert_int_equal(parse("v=types1; */*=any.; video/*=video.; video/mp4=mp4.", &m, err), 0);
	const struct typemap_entry *e;
#define LOOK(s) typemap_lookup(&m, s, strlen(s))
	assert_non_null(e = LOOK("video/mp4"));
	assert_string_equal(e->name, "mp4.");
	assert_non_null(e = LOOK(" VIDEO/MP4 ; codecs=avc1"));
	assert_string_equal(e->name, "mp4.");
	assert_non_null(e = LOOK("video/webm"));
	assert_string_equal(e->name, "video.");
	assert_non_null(e = LOOK("audio/ogg"));
	assert_string_equal(e->name, "any.");
	assert_null(LOOK("video"));
	assert_null(LOOK("video/"));
	assert_null(LOOK("/mp4"));
	assert_null(LOOK("video/mp4 x"));
	assert_null(typemap_lookup(&m, "video/mp4", 3));
	assert_int_equal(parse("v=types1; audio/*=a.", &m, err), 0);
	assert_null(LOOK("video/mp4"));
#undef LOOK
}

static void test_malformed(void **state)
{
	(void)state;
	struct typemap m;
	char err[TYPEMAP_ERRLEN];
	static const char *const bad[] = {
	    "",
	    "v=types2; a/b=c.",
	    "a/b=c.; v=types1",
	    "v=types1; v=types1",
	    "v=types1; audio/*",
	    "v=types1; audio=x.; a/b",
	    "v=types1; audio/=a.",
	    "v=types1; /ogg=a.",
	    "v=types1; */ogg=a.",
	    "v=types1; au*/ogg=a.",
	    "v=types1; audio/o*=a.",
	    "v=types1; au(dio/ogg=a.",
	    "v=types1; audio/ogg=",
	    "v=types1; audio/ogg=#k",
	    "v=types1; audio/ogg=a.#",
	    "v=types1; audio/ogg=a b.",
	    "v=types1; audio/ogg=a..b.",
	    "v=types1; audio/ogg=.a",
	    "v=types1; audio/ogg=a.#k#l",
	    "v=types1; audio/ogg=a.#k l",
	    "v=types1; audio/ogg=a.; AUDIO/OGG=b.",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		if (parse(bad[i], &m, err) != -EINVAL)
			fail_msg("accepted: '%s'", bad[i]);
		assert_true(err[0] != 0);
	}
	/* a label over 63, a name over 254, a key over 127, too many entries, too long */
	char buf[4 * TYPEMAP_TEXT_MAX];
	snprintf(buf, sizeof(buf), "v=types1; a/b=%070d.", 0);
	assert_int_equal(parse(buf, &m, err), -EINVAL);
	snprintf(buf, sizeof(buf), "v=types1; a/b=%s", "");
	for (int i = 0; i < 60; i++)
		strcat(buf, "abcd.");
	assert_int_equal(parse(buf, &m, err), -EINVAL);
	snprintf(buf, sizeof(buf), "v=types1; a/b=a.#%0130d", 0);
	assert_int_equal(parse(buf, &m, err), -EINVAL);
	strcpy(buf, "v=types1");
	for (int i = 0; i <= TYPEMAP_MAX; i++)
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "; a/t%d=a.", i);
	assert_int_equal(parse(buf, &m, err), -EINVAL);
	assert_non_null(strstr(err, "more than"));
	memset(buf, ' ', TYPEMAP_TEXT_MAX);
	memcpy(buf, "v=types1", 8);
	assert_int_equal(typemap_parse(buf, TYPEMAP_TEXT_MAX, &m, err, sizeof(err)), -EINVAL);
	/* not NUL-terminated: the parser reads only len bytes */
	assert_int_equal(typemap_parse("v=types1; a/b=c.XXXX", 16, &m, err, sizeof(err)), 0);
	assert_string_equal(m.e[0].name, "c.");
}

static const char cfg_head[] = "zone:\n"
                               "  name: svc.example.\n"
                               "  ns: [{name: ns1.svc.example., address: 2001:db8:53::1}]\n"
                               "services:\n"
                               "  - name: api.svc.example.\n"
                               "    prefixes: [2001:db8:5::/64]\n"
                               "    slice: 78\n";

static int cfg(const char *tail, struct peak_config **c, char *err)
{
	char text[2048];
	snprintf(text, sizeof(text), "%s%s", cfg_head, tail);
	return config_parse("t.yaml", (const uint8_t *)text, strlen(text), c, err, CFG_ERRLEN);
}

static void test_config_key(void **state)
{
	(void)state;
	struct peak_config *c = NULL;
	char err[CFG_ERRLEN];
	assert_int_equal(cfg("", &c, err), 0);
	assert_string_equal(c->svc[0].types, "");
	config_free(c);
	c = NULL;
	assert_int_equal(cfg("    types:\n      Audio/*: audio.svc.example.\n"
	                     "      \"*/*\": \"@#rest\"\n",
	                     &c, err),
	                 0);
	assert_string_equal(c->svc[0].types, "v=types1; audio/*=audio.svc.example.; */*=@#rest");
	config_free(c);
	c = NULL;
	assert_int_equal(cfg("    types:\n      audio: a.\n", &c, err), -EINVAL);
	assert_non_null(strstr(err, "t.yaml:9: 'types': 'audio' is not a media type"));
	assert_int_equal(cfg("    types: audio/*=a.\n", &c, err), -EINVAL);
	assert_non_null(strstr(err, "must map"));
	assert_int_equal(cfg("    types: {}\n", &c, err), -EINVAL);
	assert_int_equal(cfg("    types:\n      a/b: \"x;y\"\n", &c, err), -EINVAL);
	assert_int_equal(cfg("    types:\n      a/b: [x]\n", &c, err), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_and_print),
	    cmocka_unit_test(test_lookup_most_specific),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_config_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
