/* Fuzzes the HTTP/1.1 response framing: whatever the bytes, a parse either needs more,
 * fails, or reports a length within the input that parses again to the same result; the
 * streaming entry (http_resp_head_parse) agrees on the head. */
#include "fuzz.h"
#include "peak/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_resp a, b;
	for (int head = 0; head < 2; head++) {
		long n = http_resp_parse(data, size, head, &a);
		if (n > 0) {
			if ((size_t)n > size || a.head_len > (size_t)n || a.status < 100 ||
			    a.status > 599)
				__builtin_trap();
			if (http_resp_parse(data, (size_t)n, head, &b) != n ||
			    b.status != a.status || b.body_len != a.body_len || b.close != a.close)
				__builtin_trap(); /* the message alone frames the same */
		}
		/* the streaming entry frames the same head, and never a head past the input */
		long h = http_resp_head_parse(data, size, head, UINT64_MAX, &b);
		if ((n > 0 && (h != (long)a.head_len || b.body_len != a.body_len)) ||
		    (size_t)(h > 0 ? h : 0) > size)
			__builtin_trap();
	}
	return 0;
}
