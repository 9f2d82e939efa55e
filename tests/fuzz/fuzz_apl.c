/* Fuzzes APL rdata (wire) and the presentation parser; checks write/parse round trips. */
#include <string.h>

#include "fuzz.h"
#include "peak/apl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct apl_item a[512], b[512];
	static uint8_t out[70000];
	static char text[1 << 16];

	int n = apl_parse(data, size, a, 512);
	if (n >= 0) {
		int len = apl_write(a, (size_t)n, out, sizeof(out));
		if (len < 0 || apl_parse(out, (size_t)len, b, 512) != n)
			__builtin_trap();
		int len2 = apl_write(b, (size_t)n, out + 35000, 35000);
		if (len2 != len || memcmp(out, out + 35000, (size_t)len))
			__builtin_trap(); /* writing is a fixed point after one round */
		int tl = apl_print(a, (size_t)n, text, sizeof(text));
		if (tl >= 0 && apl_parse_text(text, b, 512, NULL, 0) != n)
			__builtin_trap();
	}
	/* the same bytes as presentation text */
	if (size < sizeof(text)) {
		memcpy(text, data, size);
		text[size] = '\0';
		apl_parse_text(text, a, 512, NULL, 0);
	}
	return 0;
}
