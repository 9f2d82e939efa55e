/* Fuzzes the figure parser (peak_figure_parse: a pod's own load figure, from a file the pod
 * writes): accepted input is 1 to 19 digits and at most one newline after them, and the value
 * is what those digits say, at most 2^63 - 1; anything else is refused. */
#include <stdbool.h>

#include "fuzz.h"
#include "peak/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t v = 0;
	int r = peak_figure_parse(data, size, &v);
	size_t n = size && data[size - 1] == '\n' ? size - 1 : size;
	bool digits = n >= 1 && n <= 19;
	unsigned __int128 x = 0;
	for (size_t i = 0; digits && i < n; i++) {
		digits = data[i] >= '0' && data[i] <= '9';
		x = x * 10 + (unsigned)(data[i] - '0');
	}
	bool ok = digits && x <= INT64_MAX;
	if ((r == 0) != ok || (ok && v != (uint64_t)x))
		__builtin_trap();
	return 0;
}
