/* Fuzzes the ingress's content sniffing (request body bytes from any client): whatever the
 * bytes, no read past them, and a type comes with its reason; the answer for a prefix of
 * H3_SNIFF_LEN bytes is the answer for the whole (the ingress decides on that many). */
#include <stdlib.h>
#include <string.h>

#include "../../src/h3/sniff.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *c = malloc(size ? size : 1); /* exact size for ASan */
	if (!c)
		return 0;
	memcpy(c, data, size);
	struct h3_sniff s = h3_sniff_type(c, size);
	if ((s.type == NULL) != (s.why == NULL))
		__builtin_trap();
	if (size > H3_SNIFF_LEN) {
		struct h3_sniff t = h3_sniff_type(c, H3_SNIFF_LEN);
		if (s.type != t.type)
			__builtin_trap();
	}
	free(c);
	return 0;
}
