/* HTTP/1.1 response framing for the load generator: complete, partial and malformed
 * responses (RFC 9112 sections 4 and 6.3). */
#include <errno.h>

#include "test.h"

#include "peak/http.h"

static long parse(const char *s, bool head, struct http_resp *r)
{
	return http_resp_parse((const uint8_t *)s, strlen(s), head, r);
}

static void test_complete(void **state)
{
	(void)state;
	struct http_resp r;
	const char *ok = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
	                 "X-Peak-Endpoint: n1p1\r\n\r\nn1p1\n";
	assert_int_equal(parse(ok, false, &r), (long)strlen(ok));
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 5);
	assert_false(r.close);
	/* every shorter prefix is incomplete, never an error */
	for (size_t n = 0; n < strlen(ok); n++)
		assert_int_equal(http_resp_parse((const uint8_t *)ok, n, false, &r), 0);
	/* HEAD: no body whatever the length says */
	const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
	assert_int_equal(parse(head, true, &r), (long)strlen(head));
	/* 204 and 304 have no body */
	assert_int_equal(parse("HTTP/1.1 204 No Content\r\n\r\n", false, &r), 27);
	/* close: explicit, in a list, or HTTP/1.0 without keep-alive */
	assert_true(parse("HTTP/1.1 200 OK\r\nconnection: Keep-Alive, CLOSE\r\n"
	                  "content-length: 0\r\n\r\n",
	                  false, &r) > 0);
	assert_true(r.close);
	assert_true(parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false, &r) > 0);
	assert_true(r.close);
	assert_true(parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
	                  false, &r) > 0);
	assert_false(r.close);
	/* a 502 from a proxy, no reason phrase, white space around the value */
	assert_true(parse("HTTP/1.1 502\r\nContent-Length:  2 \r\n\r\nab", false, &r) > 0);
	assert_int_equal(r.status, 502);
	/* bytes after the message are not part of it */
	const char *two = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1";
	assert_int_equal(parse(two, false, &r), (long)strlen(two) - 8);
}

static void test_malformed(void **state)
{
	(void)state;
	struct http_resp r;
	static const char *const bad[] = {
	    "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
	    "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
	    "HTTP/1.1 600 Nope\r\nContent-Length: 0\r\n\r\n",
	    "HTTP/1.1 200OK\r\nContent-Length: 0\r\n\r\n",
	    "http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
	    "HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
	    "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
	    "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
	    "HTTP/1.1 200 OK\r\n\r\n", /* a body delimited by close */
	    "\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], false, &r) != -EBADMSG) {
			print_error("accepted: %s\n", bad[i]);
			fail();
		}
	}
	/* a head that never ends */
	static uint8_t big[HTTP_HEAD_MAX + 10];
	memcpy(big, "HTTP/1.1 200 OK\r\n", 17);
	memset(big + 17, 'a', sizeof(big) - 17);
	assert_int_equal(http_resp_parse(big, sizeof(big), false, &r), -EBADMSG);
	assert_int_equal(http_resp_parse(big, 100, false, &r), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_complete),
	    cmocka_unit_test(test_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
