/* Fuzzes the overlay management slave's request grammar (src/overlay/mgmtproto.h): any
 * input is refused (the request left empty) or parses into a request that writes back to
 * exactly the same bytes (the grammar is canonical) and parses again to the same request. */
#include <string.h>

#include "fuzz.h"
#include "mgmtproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mg_req r, again;
	char out[MG_LINE_MAX + 2];
	if (mg_parse(data, size, &r)) {
		if (r.kind != MG_NONE)
			__builtin_trap();
		return 0;
	}
	int w = mg_write(&r, out, sizeof(out));
	size_t body = size && data[size - 1] == '\n' ? size - 1 : size;
	if (w < 0 || (size_t)w != body + 1 || memcmp(out, data, body) || out[body] != '\n')
		__builtin_trap();
	if (mg_parse((const uint8_t *)out, (size_t)w, &again) || memcmp(&r, &again, sizeof(r)))
		__builtin_trap();
	return 0;
}
