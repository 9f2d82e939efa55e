/* Regression: assign_blocks() on an endpoint that holds no slice called memcpy() from a NULL
 * source (the empty block list), which UBSan reports as undefined behaviour ("null pointer
 * passed as argument 2"). The controller hit it pushing the map of a weight-0 endpoint. */
#include "../unit/test.h"

#include "peak/assign.h"

static void test_blocks_of_empty_endpoint(void **state)
{
	(void)state;
	struct assign a;
	uint32_t w[2] = {1, 0}; /* the second endpoint holds nothing */
	struct assign_block out[4];
	assert_int_equal(assign_init(&a, 64, 6, w, 2), 0);
	assert_int_equal(assign_blocks(&a, 1, out, 4), 0);
	assert_int_equal(assign_blocks(&a, 1, NULL, 0), 0);
	assert_int_equal(assign_blocks(&a, 0, out, 0), 1); /* cap 0: count only, copy nothing */
	assign_fini(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_blocks_of_empty_endpoint),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
