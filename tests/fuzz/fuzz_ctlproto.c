/* Fuzzes the control-line grammar (include/peak/ctlproto.h): the input is split into lines
 * as a daemon splits what a peer sends; every line either is refused or parses into a
 * message that writes back to exactly the same bytes (the grammar is canonical), but for an
 * add line's ADDRESS, read in any form inet_pton takes and written in RFC 5952's: such a line
 * writes back to one that parses into the same message and writes back to itself; a refused
 * line leaves the message empty. */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "peak/ctlproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ctl_msg m, again;
	static char out[CTL_LINE_MAX + 1], out2[CTL_LINE_MAX + 1];
	size_t at = 0, ll;
	long n;
	while ((n = ctl_line_split(data + at, size - at, &ll)) > 0) {
		if (ctl_parse((const char *)data + at, ll, &m)) {
			if (m.kind != CTL_NONE)
				__builtin_trap();
		} else {
			int w = ctl_write(&m, out, sizeof(out));
			bool same = w > 0 && (size_t)w == ll + 1 && !memcmp(out, data + at, ll);
			if (w < 0 || out[w - 1] != '\n' || (!same && m.kind != CTL_ADD))
				__builtin_trap();
			if (ctl_parse(out, (size_t)w - 1, &again) || memcmp(&m, &again, sizeof(m)))
				__builtin_trap();
			if (!same && (ctl_write(&again, out2, sizeof(out2)) != w ||
			              memcmp(out, out2, (size_t)w)))
				__builtin_trap();
		}
		at += (size_t)n;
	}
	if (n == 0 && at < size) /* a last line without '\n' is parsed as well */
		ctl_parse((const char *)data + at, size - at, &m);
	return 0;
}
