/* OpenDHT's C API resolved at run time (src/overlay/odht_load.h): a missing library and a
 * library without OpenDHT's functions are refused with why; the functions of
 * opendht/opendht_c.h that dht.c calls load the real library on first use and reach it
 * (dht_infohash_get is SHA-1: FIPS 180 "abc"; a value's bytes come back). */
#include "../unit/test.h"

#include <errno.h>
#include <opendht/opendht_c.h>
#include <string.h>

#include "odht_load.h"

static void test_missing_library(void **state)
{
	(void)state;
	char err[256] = "";
	assert_int_equal(odht_open("libpeak-absent-opendht.so.0", err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "libpeak-absent-opendht.so.0"));
}

static void test_library_without_the_api(void **state)
{
	(void)state;
	char err[256] = "";
	assert_int_equal(odht_open("libc.so.6", err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no dht_version"));
}

static void test_loaded_on_first_use(void **state)
{
	(void)state;
	dht_infohash h;
	dht_infohash_get(&h, (const uint8_t *)"abc", 3);
	assert_string_equal(dht_infohash_print(&h), "a9993e364706816aba3e25717850c26c9cd0d89d");
	assert_int_equal(odht_load(), 0);
	assert_true(strlen(dht_version()) > 0);
	static const uint8_t data[] = {1, 2, 3, 250};
	dht_value *v = dht_value_new(data, sizeof(data));
	assert_non_null(v);
	dht_data_view dv = dht_value_get_data(v);
	assert_int_equal(dv.size, sizeof(data));
	assert_memory_equal(dv.data, data, sizeof(data));
	dht_value_unref(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_missing_library),
	    cmocka_unit_test(test_library_without_the_api),
	    cmocka_unit_test(test_loaded_on_first_use),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
