/* The object store's request heads (src/store/req.c): methods, keys and their rules,
 * percent-decoding, framing headers, and the status each refusal carries; replica sets
 * (src/store/replica.c); reply heads with bodies over 16 MiB (http_resp_head_parse). */
#include <errno.h>

#include "test.h"

#include "peak/assign.h"
#include "peak/http.h"
#include "peak/ssa.h"
#include "req.h"
#include "store.h"

static long parse(const char *s, struct store_req *r)
{
	return store_req_parse((const uint8_t *)s, strlen(s), 1000, r);
}

static void test_methods_and_keys(void **state)
{
	(void)state;
	struct store_req r;
	const char *put = "PUT /o/videos.cat.mp4 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
	                  "Expect: 100-continue\r\n\r\nhello";
	assert_int_equal(parse(put, &r), (long)strlen(put) - 5);
	assert_int_equal(r.method, STORE_PUT);
	assert_int_equal(r.body_len, 5);
	assert_true(r.expect_100);
	assert_false(r.close);
	assert_int_equal(r.key_len, 14);
	assert_memory_equal(r.key, "videos.cat.mp4", 14);
	const char *ok = "PUT /o/cat%20%C3%A9.mp4 HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
	assert_int_equal(parse(ok, &r), (long)strlen(ok));
	assert_int_equal(r.key_len, 10);
	assert_memory_equal(r.key, "cat \xc3\xa9.mp4", 10);
	/* every shorter prefix needs more, never an error */
	for (size_t n = 0; n < strlen(ok); n++)
		assert_int_equal(store_req_parse((const uint8_t *)ok, n, 1000, &r), 0);
	assert_true(parse("GET /o/k HTTP/1.1\r\n\r\n", &r) > 0);
	assert_int_equal(r.method, STORE_GET);
	assert_true(parse("HEAD /o/k HTTP/1.0\r\n\r\n", &r) > 0);
	assert_true(r.close); /* HTTP/1.0 */
	assert_true(parse("HEAD /o/k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r) > 0);
	assert_false(r.close);
	assert_true(parse("DELETE /o/k HTTP/1.1\r\nConnection: x, close\r\n\r\n", &r) > 0);
	assert_true(r.close);
	/* the longest key */
	char longkey[400];
	snprintf(longkey, sizeof(longkey), "GET /o/%0255d HTTP/1.1\r\n\r\n", 0);
	assert_true(parse(longkey, &r) > 0);
	assert_int_equal(r.key_len, 255);
}

static void test_refusals(void **state)
{
	(void)state;
	struct store_req r;
	static const struct {
		const char *req;
		long want;
	} cases[] = {
	    {"PUT /o/a%2Fb HTTP/1.1\r\nContent-Length: 1\r\n\r\n", -400},
	    {"GET /o/.. HTTP/1.1\r\n\r\n", -400},
	    {"GET /o/%2E%2e HTTP/1.1\r\n\r\n", -400},
	    {"GET /o/. HTTP/1.1\r\n\r\n", -400},
	    {"GET /o/a%00b HTTP/1.1\r\n\r\n", -400},
	    {"GET /o/ HTTP/1.1\r\n\r\n", -400},
	    {"GET /o/a/b HTTP/1.1\r\n\r\n", -400},
	    {"GET /o/a%2 HTTP/1.1\r\n\r\n", -400},
	    {"GET /o/a%g0 HTTP/1.1\r\n\r\n", -400},
	    {"GET /o/a?x=1 HTTP/1.1\r\n\r\n", -400},
	    {"GET /o/k HTTP/1.1\r\nContent-Length: 1\r\n\r\n", -400},
	    {"GET /o/k HTTP/1.1\r\nBad Header: 1\r\n\r\n", -400},
	    {"GET /o/k HTTP/1.1\r\nNoColon\r\n\r\n", -400},
	    {"GET /o/k HTTP/1.1\nHost: x\r\n\r\n", -400},
	    {"GET  /o/k HTTP/1.1\r\n\r\n", -400},
	    {"PUT /o/k HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", -400},
	    {"PUT /o/k HTTP/1.1\r\nContent-Length: -1\r\n\r\n", -400},
	    {"PUT /o/k HTTP/1.1\r\nExpect: something\r\nContent-Length: 1\r\n\r\n", -400},
	    {"GET /x/k HTTP/1.1\r\n\r\n", -404},
	    {"POST /o/k HTTP/1.1\r\n\r\n", -405},
	    {"get /o/k HTTP/1.1\r\n\r\n", -405},
	    {"PUT /o/k HTTP/1.1\r\n\r\n", -411},
	    {"PUT /o/k HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", -413},
	    {"PUT /o/k HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", -400},
	    {"PUT /o/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", -501},
	    {"GET /o/k HTTP/2.0\r\n\r\n", -505},
	    {"GET /o/k HTTP/1.10\r\n\r\n", -505},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (parse(cases[i].req, &r) != cases[i].want)
			fail_msg("case %zu: '%s': got %ld", i, cases[i].req,
			         parse(cases[i].req, &r));
	/* a key of 256 bytes */
	char longkey[400];
	snprintf(longkey, sizeof(longkey), "GET /o/%0256d HTTP/1.1\r\n\r\n", 0);
	assert_int_equal(parse(longkey, &r), -400);
	/* a head that does not end within STORE_HEAD_MAX */
	static uint8_t big[STORE_HEAD_MAX + 10];
	memset(big, 'a', sizeof(big));
	assert_int_equal(store_req_parse(big, sizeof(big), 1000, &r), -431);
	assert_int_equal(store_req_parse(big, STORE_HEAD_MAX - 1, 1000, &r), 0);
}

static void test_key_check(void **state)
{
	(void)state;
	assert_int_equal(store_key_check((const uint8_t *)"a", 1), 0);
	assert_int_equal(store_key_check((const uint8_t *)"...", 3), 0);
	assert_int_equal(store_key_check((const uint8_t *)"a..b", 4), 0);
	assert_int_equal(store_key_check((const uint8_t *)"..", 2), -EINVAL);
	assert_int_equal(store_key_check((const uint8_t *)"a\0", 2), -EINVAL);
	assert_int_equal(store_key_check((const uint8_t *)"", 0), -EINVAL);
}

static void test_acked_header(void **state)
{
	(void)state;
	struct store_req r;
	const char *h = "PUT /o/k HTTP/1.1\r\nContent-Length: 1\r\nX-Peak-Acked: s1, s2\r\n"
	                "x-peak-acked: s3\r\n\r\n";
	assert_true(parse(h, &r) > 0);
	assert_int_equal(r.acked_len, strlen("s1, s2,s3"));
	assert_memory_equal(r.acked, "s1, s2,s3", r.acked_len);
	assert_true(http_list_has(r.acked, r.acked_len, "s2"));
	assert_false(http_list_has(r.acked, r.acked_len, "s4"));
	/* a value past STORE_ACKED_MAX: 431, never a write past the buffer */
	char big[STORE_ACKED_MAX + 200];
	int n = snprintf(big, sizeof(big), "GET /o/k HTTP/1.1\r\nX-Peak-Acked: ");
	memset(big + n, 'a', STORE_ACKED_MAX);
	strcpy(big + n + STORE_ACKED_MAX, "\r\n\r\n");
	assert_int_equal(parse(big, &r), -431);
}

static void test_listing(void **state)
{
	(void)state;
	struct store_req r;
	assert_true(parse("GET /s/ HTTP/1.1\r\n\r\n", &r) > 0);
	assert_true(r.list);
	assert_int_equal(r.list_limit, STORE_LIST_DEF);
	assert_string_equal(r.list_after, "");
	assert_true(parse("GET /s/?limit=7&after=0000002a-ff HTTP/1.1\r\n\r\n", &r) > 0);
	assert_int_equal(r.list_limit, 7);
	assert_string_equal(r.list_after, "0000002a-ff");
	assert_true(parse("GET /s/?after= HTTP/1.1\r\n\r\n", &r) > 0);
	static const char *const bad[] = {
	    "GET /s/?limit=0 HTTP/1.1\r\n\r\n",
	    "GET /s/?limit=1001 HTTP/1.1\r\n\r\n",
	    "GET /s/?limit=99999999999 HTTP/1.1\r\n\r\n",
	    "GET /s/?after=../x HTTP/1.1\r\n\r\n",
	    "GET /s/?after=a&after=b HTTP/1.1\r\n\r\n",
	    "GET /s/?after=a&limit=1&x=1 HTTP/1.1\r\n\r\n",
	    "GET /s/x HTTP/1.1\r\n\r\n",
	    "GET /s/?after=" /* one past STORE_NAME_MAX - 1 */
	    "0123456789012345678901234567890123456789012345678901234567890123456789012345678"
	    "9 HTTP/1.1\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse(bad[i], &r), -400);
	assert_int_equal(parse("PUT /s/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r), -405);
	/* keys survive encoding and decoding, every byte value a key may hold */
	uint8_t key[STORE_KEY_MAX], back[STORE_KEY_MAX];
	char enc[3 * STORE_KEY_MAX + 1];
	size_t n;
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i % 255 + 1) == '/' ? 'x' : (uint8_t)(i % 255 + 1);
	store_key_encode(key, sizeof(key), enc, sizeof(enc));
	assert_int_equal(store_key_decode((uint8_t *)enc, strlen(enc), back, &n), 0);
	assert_int_equal(n, sizeof(key));
	assert_memory_equal(back, key, n);
	assert_int_equal(store_key_decode((const uint8_t *)"a%2Fb", 5, back, &n), -EINVAL);
}

static void test_replica_set(void **state)
{
	(void)state;
	int set[STORE_WALK_MAX];
	/* distinct owners in replica order; repeats and unowned slices are skipped */
	const int own[] = {2, 2, ASSIGN_NONE, 0, 2, 1, 3};
	assert_int_equal(store_replica_set(own, 7, 3, set), 3);
	assert_int_equal(set[0], 2);
	assert_int_equal(set[1], 0);
	assert_int_equal(set[2], 1);
	assert_int_equal(store_replica_set(own, 7, 1, set), 1);
	/* fewer pods than replicas: every pod once */
	const int two[] = {1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0};
	assert_int_equal(store_replica_set(two, 16, 3, set), 2);
}

static void test_descriptor_replicas(void **state)
{
	(void)state;
	struct ssa_desc d;
	char text[SSA_DESC_STRLEN];
	const char *k = "key=000102030405060708090a0b0c0d0e0f";
	char in[200];
	snprintf(in, sizeof(in), "v=ssa1; slice=72; select=obj; host=src; replicas=3; %s", k);
	assert_int_equal(ssa_desc_parse(in, strlen(in), &d, NULL, 0), 0);
	assert_int_equal(d.replicas, 3);
	assert_true(ssa_desc_print(&d, text, sizeof(text)) > 0);
	assert_non_null(strstr(text, "; replicas=3"));
	snprintf(in, sizeof(in), "v=ssa1; slice=72; select=obj; host=src; %s", k);
	assert_int_equal(ssa_desc_parse(in, strlen(in), &d, NULL, 0), 0);
	assert_int_equal(d.replicas, 1); /* the default, and not printed */
	assert_true(ssa_desc_print(&d, text, sizeof(text)) > 0);
	assert_null(strstr(text, "replicas"));
	for (int i = 0; i < 2; i++) {
		snprintf(in, sizeof(in), "v=ssa1; slice=72; select=obj; replicas=%s; %s",
		         i ? "0" : "9", k);
		assert_int_equal(ssa_desc_parse(in, strlen(in), &d, NULL, 0), -EINVAL);
	}
}

static void test_big_reply_head(void **state)
{
	(void)state;
	struct http_resp r;
	const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 68719476736\r\n\r\nabc";
	size_t n = strlen(h);
	/* the streaming entry takes 64 GiB, up to its caller's limit; the framing one still
	 * refuses bodies over HTTP_BODY_MAX */
	assert_int_equal(http_resp_head_parse((const uint8_t *)h, n, false, UINT64_MAX, &r),
	                 (long)n - 3);
	assert_true(r.body_len == (size_t)1 << 36);
	assert_int_equal(http_resp_head_parse((const uint8_t *)h, n, false, 1 << 30, &r), -EBADMSG);
	assert_int_equal(http_resp_parse((const uint8_t *)h, n, false, &r), -EBADMSG);
	assert_int_equal(http_resp_head_parse((const uint8_t *)h, 10, false, UINT64_MAX, &r), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_methods_and_keys), cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_key_check),        cmocka_unit_test(test_acked_header),
	    cmocka_unit_test(test_replica_set),      cmocka_unit_test(test_big_reply_head),
	    cmocka_unit_test(test_listing),          cmocka_unit_test(test_descriptor_replicas),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
