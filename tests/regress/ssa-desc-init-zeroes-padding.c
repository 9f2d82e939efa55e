/* Regression: ssa_desc_init() set the fields through a compound literal, which leaves the
 * padding bytes after 'replicas' undefined (clang leaves what was there). Descriptors are
 * compared with memcmp (the descriptor fuzz target: parse, print, parse back, compare), so
 * the clang fuzz build trapped on its first seed, "v=ssa1; slice=70". Here the memory is
 * dirtied first, as the stack would be. (gcc happens to zero the padding: the check bites
 * in clang builds, such as the fuzz build, which fail it before the fix.) */
#include "../unit/test.h"

#include <string.h>

#include "peak/ssa.h"

static void test_init_is_bytewise_defined(void **state)
{
	(void)state;
	struct ssa_desc a, b;
	memset(&a, 0xa5, sizeof(a));
	memset(&b, 0x5a, sizeof(b));
	ssa_desc_init(&a);
	ssa_desc_init(&b);
	assert_memory_equal(&a, &b, sizeof(a));
}

static void test_parse_print_parse_equal_bytewise(void **state)
{
	(void)state;
	struct ssa_desc d, e;
	char err[SSA_ERRLEN], out[SSA_DESC_STRLEN];
	const char *in = "v=ssa1; slice=70";
	memset(&d, 0xa5, sizeof(d));
	memset(&e, 0x5a, sizeof(e));
	assert_int_equal(ssa_desc_parse(in, strlen(in), &d, err, sizeof(err)), 0);
	int n = ssa_desc_print(&d, out, sizeof(out));
	assert_true(n > 0);
	assert_int_equal(ssa_desc_parse(out, (size_t)n, &e, err, sizeof(err)), 0);
	assert_memory_equal(&d, &e, sizeof(d));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_init_is_bytewise_defined),
	    cmocka_unit_test(test_parse_print_parse_equal_bytewise),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
