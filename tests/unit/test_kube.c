/* The Kubernetes client's pure parts (src/k8s/kube.c): the watch stream's lines whatever
 * the chunks (every cut of a stream gives the same lines), an overlong line dropped whole,
 * and the events applied to the object copies (ADDED/MODIFIED/DELETED, BOOKMARK, ERROR,
 * malformed objects). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "../../src/k8s/kube.h"
#include "../../src/sys/log.h"

struct got {
	char lines[8][64];
	unsigned n, over;
};

static int collect(void *arg, const char *line, size_t len)
{
	struct got *g = arg;
	if (!line) {
		g->over++;
		return 0;
	}
	assert_true(len < 64 && g->n < 8);
	memcpy(g->lines[g->n], line, len);
	g->lines[g->n++][len] = 0;
	return 0;
}

static void test_lines_every_cut(void **state)
{
	(void)state;
	static const char s[] = "{\"a\":1}\nbb\n\n{\"c\":\"x\"}\ntail";
	size_t n = sizeof(s) - 1;
	for (size_t step = 1; step <= n; step++) {
		struct kube_lines l = {0};
		struct got g = {0};
		for (size_t at = 0; at < n; at += step)
			assert_int_equal(kube_lines_feed(&l, s + at, n - at < step ? n - at : step,
			                                 64, collect, &g),
			                 0);
		assert_int_equal(g.n, 3); /* the empty line is skipped, "tail" not ended yet */
		assert_string_equal(g.lines[0], "{\"a\":1}");
		assert_string_equal(g.lines[1], "bb");
		assert_string_equal(g.lines[2], "{\"c\":\"x\"}");
		assert_int_equal(kube_lines_feed(&l, "!\n", 2, 64, collect, &g), 0);
		assert_string_equal(g.lines[3], "tail!");
		kube_lines_fini(&l);
	}
}

static void test_lines_overlong(void **state)
{
	(void)state;
	static const char s[] = "abcdefghij\nxy\nabcde";
	for (size_t step = 1; step < sizeof(s); step++) {
		struct kube_lines l = {0};
		struct got g = {0};
		for (size_t at = 0; at < sizeof(s) - 1; at += step)
			kube_lines_feed(&l, s + at,
			                sizeof(s) - 1 - at < step ? sizeof(s) - 1 - at : step, 4,
			                collect, &g);
		assert_int_equal(g.over, 2); /* the first line, and the unfinished last one */
		assert_int_equal(g.n, 1);
		assert_string_equal(g.lines[0], "xy");
		kube_lines_fini(&l);
	}
}

static enum kube_ev apply(json_t *o, char *rv, const char *line)
{
	json_t *ch[2] = {NULL, NULL};
	enum kube_ev e = kube_event_apply(o, "services", rv, line, strlen(line), ch);
	if (e == KUBE_EV_CHANGED) /* the object before and after */
		assert_true(ch[0] || ch[1]);
	else
		assert_true(!ch[0] && !ch[1]);
	json_decref(ch[0]);
	json_decref(ch[1]);
	return e;
}

static void test_events(void **state)
{
	(void)state;
	json_t *o = json_object();
	char rv[KUBE_RV_MAX] = "1";
	assert_int_equal(apply(o, rv,
	                       "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\","
	                       "\"namespace\":\"ns\",\"resourceVersion\":\"7\"}}}"),
	                 KUBE_EV_CHANGED);
	assert_string_equal(rv, "7");
	assert_non_null(json_object_get(o, "ns/a"));
	assert_int_equal(apply(o, rv,
	                       "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":"
	                       "{\"resourceVersion\":\"12\"}}}"),
	                 KUBE_EV_NONE);
	assert_string_equal(rv, "12");
	/* a resourceVersion that would change the watch's query is not taken */
	assert_int_equal(apply(o, rv,
	                       "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":"
	                       "{\"resourceVersion\":\"1&watch=0\"}}}"),
	                 KUBE_EV_NONE);
	assert_string_equal(rv, "12");
	assert_int_equal(apply(o, rv,
	                       "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\","
	                       "\"code\":410}}"),
	                 KUBE_EV_RELIST);
	assert_int_equal(apply(o, rv,
	                       "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":"
	                       "\"A B\",\"namespace\":\"ns\"}}}"),
	                 KUBE_EV_BAD);
	assert_int_equal(apply(o, rv,
	                       "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":"
	                       "\"b\"}}}"),
	                 KUBE_EV_BAD);
	assert_int_equal(apply(o, rv, "{\"type\":\"ADDED\""), KUBE_EV_BAD);
	assert_int_equal(apply(o, rv, "{\"type\":\"PATCHED\",\"object\":{}}"), KUBE_EV_BAD);
	assert_int_equal(json_object_size(o), 1);
	assert_int_equal(apply(o, rv,
	                       "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":"
	                       "\"a\",\"namespace\":\"ns\",\"resourceVersion\":\"13\"}}}"),
	                 KUBE_EV_CHANGED);
	assert_int_equal(json_object_size(o), 0);
	assert_string_equal(rv, "13");
	json_decref(o);
}

int main(void)
{
	log_set_level(LOG_CRIT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lines_every_cut),
	    cmocka_unit_test(test_lines_overlong),
	    cmocka_unit_test(test_events),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
