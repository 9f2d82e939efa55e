/* libcurl resolved at run time (src/etcd/curl_load.h): a missing library and a library
 * without libcurl's functions are refused with why; the curl_* functions etcd.c and kube.c
 * call load the real library on first use and reach it, the variadic curl_easy_setopt and
 * curl_easy_getinfo passing a long, a curl_off_t, a string, a function and an object pointer
 * through (a file:// transfer: no network). */
#include "test.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/etcd/curl_load.h"

static void test_missing_library(void **state)
{
	(void)state;
	char err[256] = "";
	assert_int_equal(curl_open("libpeak-absent-curl.so.4", err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "libpeak-absent-curl.so.4"));
}

static void test_library_without_the_api(void **state)
{
	(void)state;
	char err[256] = "";
	assert_int_equal(curl_open("libc.so.6", err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no curl_global_init"));
}

static size_t count(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	*(size_t *)ud += size * n;
	return size * n;
}

static void test_loaded_on_first_use(void **state)
{
	(void)state;
	/* before any explicit load: the first call loads */
	struct curl_slist *l = curl_slist_append(NULL, "Content-Type: application/json");
	assert_non_null(l);
	assert_string_equal(l->data, "Content-Type: application/json");
	curl_slist_free_all(l);
	assert_int_equal(curl_load(), 0);
	assert_int_equal(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
	assert_string_equal(curl_easy_strerror(CURLE_OK), "No error");

	char path[] = "/tmp/peak-curl-load-XXXXXX", url[64];
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0123456789", 10), 10);
	close(fd);
	snprintf(url, sizeof(url), "file://%s", path);

	CURL *h = curl_easy_init();
	assert_non_null(h);
	char *esc = curl_easy_escape(h, "a b/c", 0);
	assert_string_equal(esc, "a%20b%2Fc");
	curl_free(esc);
	size_t got = 0;
	int tag = 7;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, count);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &got);
	curl_easy_setopt(h, CURLOPT_PRIVATE, &tag);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	assert_int_equal(curl_easy_perform(h), CURLE_OK);
	assert_int_equal(got, 10);
	curl_off_t size = 0;
	int *back = NULL;
	assert_int_equal(curl_easy_getinfo(h, CURLINFO_SIZE_DOWNLOAD_T, &size), CURLE_OK);
	assert_int_equal(size, 10);
	assert_int_equal(curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&back), CURLE_OK);
	assert_ptr_equal(back, &tag);
	/* a curl_off_t option: the transfer starts at byte 4 */
	got = 0;
	curl_easy_setopt(h, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)4);
	assert_int_equal(curl_easy_perform(h), CURLE_OK);
	assert_int_equal(got, 6);
	/* a long option: a body-less transfer writes nothing */
	curl_easy_reset(h);
	got = 0;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, count);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &got);
	curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	assert_int_equal(curl_easy_perform(h), CURLE_OK);
	assert_int_equal(got, 0);
	curl_easy_cleanup(h);

	CURLM *m = curl_multi_init();
	assert_non_null(m);
	assert_int_equal(curl_multi_cleanup(m), CURLM_OK);
	unlink(path);
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
