/* Fuzzes the control-line grammar (include/peak/ctlproto.h): the input is split into lines
 * as a daemon splits what a peer sends; every line either is refused or parses into a
 * message that writes back to exactly the same bytes (the grammar is canonical), but for an
 * add line's ADDRESS, read in any form inet_pton takes and written in RFC 5952's: such a line
 * writes back to one that parses into the same message and writes back to itself; a refused
 * line leaves the message empty. The lines also run through what an agent does with them on
 * its controller link (ctlrt.h): add and del lines are collected, and each map line composes
 * them with a file's endpoints: the file's come first and unchanged, every id once, no
 * address that ctlrt refuses. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "peak/ctlproto.h"
#include "peak/ctlrt.h"

/* A file's two endpoints, pod-a and pod-b, then one the last map added at run time. */
static void agent_map(struct ctlrt *r, const char *svc)
{
	static const struct cfg_endpoint file[3] = {
	    {.id = "pod-a", .addr = {0x20, 0x01, 0x0d, 0xb8, [15] = 0xa}, .weight = 1, .line = 3},
	    {.id = "pod-b", .addr = {0x20, 0x01, 0x0d, 0xb8, [15] = 0xb}, .weight = 1, .line = 4},
	    {.id = "rt-x", .addr = {0x20, 0x01, 0x0d, 0xb8, [15] = 0xc}, .weight = 1, .line = 0},
	};
	struct cfg_endpoint *out = NULL;
	unsigned n = 0, shadowed = 0;
	if (!ctlrt_for(r, svc))
		ctlrt_reset(r);
	uint32_t had = r->n;
	int ret = ctlrt_compose(r, file, 3, &out, &n, &shadowed);
	if (r->n || (ret && out) || (!ret && (n < 2 || n - 2 + shadowed > had)))
		__builtin_trap();
	for (unsigned i = 0; !ret && i < n; i++) {
		if (i < 2 && memcmp(&out[i], &file[i], sizeof(file[i])))
			__builtin_trap();
		if (i >= 2 && (out[i].line || out[i].addr[0] == 0xff))
			__builtin_trap();
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(out[i].id, out[j].id))
				__builtin_trap();
	}
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ctl_msg m, again;
	static char out[CTL_LINE_MAX + 1], out2[CTL_LINE_MAX + 1];
	struct ctlrt rt = {0};
	uint32_t dropped = 0;
	const char *why = NULL;
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
			if (m.kind == CTL_ADD || m.kind == CTL_DEL) {
				uint32_t had = rt.n;
				int r = ctlrt_take(&rt, &m, &dropped, &why);
				if ((r && (!why || rt.n != had - dropped)) ||
				    (!r && rt.n != had - dropped + 1))
					__builtin_trap();
			} else if (m.kind == CTL_MAP) {
				agent_map(&rt, m.svc);
			}
		}
		at += (size_t)n;
	}
	if (n == 0 && at < size) /* a last line without '\n' is parsed as well */
		ctl_parse((const char *)data + at, size - at, &m);
	ctlrt_free(&rt);
	return 0;
}
