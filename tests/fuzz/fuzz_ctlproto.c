/* Fuzzes the control-line grammar (include/peak/ctlproto.h): the input is split into lines
 * as a daemon splits what a peer sends; every line either is refused or parses into a
 * message that writes back to exactly the same bytes (the grammar is canonical), and a
 * refused line leaves the message empty. */
#include <string.h>

#include "fuzz.h"
#include "peak/ctlproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ctl_msg m, again;
	static char out[CTL_LINE_MAX + 1];
	size_t at = 0, ll;
	long n;
	while ((n = ctl_line_split(data + at, size - at, &ll)) > 0) {
		if (ctl_parse((const char *)data + at, ll, &m)) {
			if (m.kind != CTL_NONE)
				__builtin_trap();
		} else {
			int w = ctl_write(&m, out, sizeof(out));
			if (w < 0 || (size_t)w != ll + 1 || memcmp(out, data + at, ll) ||
			    out[ll] != '\n')
				__builtin_trap();
			if (ctl_parse(out, ll, &again) || memcmp(&m, &again, sizeof(m)))
				__builtin_trap();
		}
		at += (size_t)n;
	}
	if (n == 0 && at < size) /* a last line without '\n' is parsed as well */
		ctl_parse((const char *)data + at, size - at, &m);
	return 0;
}
