/* Fuzzes what the object store's client reads from a pod's response head (src/store/client.c):
 * whatever the bytes, a header value stays within its buffer and its line, and X-Peak-Routes
 * yields at most max IPv6 prefixes, each of a valid length. */
#include "fuzz.h"
#include "../../src/store/client.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char v[64];
	store_header_value(data, size, "X-Peak-Pod", v, sizeof(v));
	if (strlen(v) >= sizeof(v) || strchr(v, '\r'))
		__builtin_trap();
	struct prefix r[4];
	unsigned n = store_routes_parse(data, size, r, 4);
	if (n > 4)
		__builtin_trap();
	for (unsigned i = 0; i < n; i++)
		if (r[i].family != PEAK_AFI_IP6 || r[i].len > 128)
			__builtin_trap();
	return 0;
}
