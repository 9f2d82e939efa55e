/* Fuzzes the object store's request parser: whatever the bytes, a parse needs more, refuses
 * with an HTTP status, or reports a head within the input whose key passes the key rules (or
 * a listing page with a bounded query) and which parses again, alone, to the same request. */
#include "fuzz.h"
#include "req.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store_req a, b;
	long n = store_req_parse(data, size, 1 << 20, &a);
	if (n < 0 && (n > -400 || n < -599))
		__builtin_trap(); /* refusals are 4xx or 5xx */
	if (n <= 0)
		return 0;
	if ((size_t)n > size || a.head_len != (size_t)n || a.key_len > STORE_KEY_MAX ||
	    (a.list ? a.key_len || a.method != STORE_GET : store_key_check(a.key, a.key_len)) ||
	    !a.method || a.method > STORE_DELETE || a.acked_len > STORE_ACKED_MAX ||
	    (a.method == STORE_PUT && (!a.has_len || a.body_len > 1 << 20)))
		__builtin_trap();
	/* a listing page: a bounded limit, and an after= of name characters only */
	if (a.list && (!a.list_limit || a.list_limit > STORE_LIST_MAX ||
	               strlen(a.list_after) != strspn(a.list_after, "0123456789abcdef-")))
		__builtin_trap();
	if (store_req_parse(data, (size_t)n, 1 << 20, &b) != n || b.method != a.method ||
	    b.key_len != a.key_len || memcmp(b.key, a.key, a.key_len) || b.body_len != a.body_len ||
	    b.close != a.close || b.list != a.list || b.list_limit != a.list_limit ||
	    strcmp(b.list_after, a.list_after) || b.acked_len != a.acked_len ||
	    memcmp(b.acked, a.acked, a.acked_len))
		__builtin_trap(); /* the head alone parses the same */
	return 0;
}
