/* Fuzzes the routing rules of peak h3 ingress: the bytes up to the first newline are a
 * --route spec, the rest a content-type header value (untrusted, from any client). Whatever
 * the bytes: no overread, a refused spec leaves the table as it was with a message, a
 * parsed table holds only valid indexes, and matching does not depend on the value's case. */
#include <stdlib.h>
#include <string.h>

#include "../../src/h3/route.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct h3_route_table t, before;
	static char spec[H3_ROUTE_SPEC_MAX + 2];
	char err[256] = "";
	const uint8_t *nl = memchr(data, '\n', size);
	size_t sl = nl ? (size_t)(nl - data) : size;
	if (sl >= sizeof(spec))
		return 0;
	memcpy(spec, data, sl);
	spec[sl] = 0;
	memset(&t, 0, sizeof(t));
	before = t;
	if (h3_route_parse(&t, spec, err, sizeof(err))) {
		if (!err[0] || memcmp(&t, &before, sizeof(t)))
			__builtin_trap();
		return 0;
	}
	for (size_t i = 0; i < t.n; i++) {
		if (!t.r[i].nup || t.r[i].nup > H3_ROUTE_UPS)
			__builtin_trap();
		for (size_t k = 0; k < t.r[i].nup; k++)
			if (t.r[i].up[k] >= t.nup)
				__builtin_trap();
	}
	if (!nl)
		return 0;
	size_t vl = size - sl - 1;
	char *v = malloc(vl ? vl : 1), *u = malloc(vl ? vl : 1); /* exact sizes for ASan */
	if (!v || !u)
		goto out;
	memcpy(v, nl + 1, vl);
	for (size_t i = 0; i < vl; i++)
		u[i] = v[i] >= 'a' && v[i] <= 'z' ? (char)(v[i] - 'a' + 'A') : v[i];
	struct h3_route *a = h3_route_match(&t, v, vl), *b = h3_route_match(&t, u, vl);
	if (a != b)
		__builtin_trap();
	bool healthy[H3_ROUTE_UPS_ALL] = {true};
	if (a) {
		int i = h3_route_pick(a, healthy);
		if (i >= (int)t.nup || (i >= 0 && !healthy[i]))
			__builtin_trap();
	}
out:
	free(v);
	free(u);
	return 0;
}
