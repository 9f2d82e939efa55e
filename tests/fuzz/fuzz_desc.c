/* Fuzzes the SSA descriptor parser; a parsed descriptor must print and parse back equal,
 * and computing an address under it must not fail on a valid space. */
#include <string.h>

#include "fuzz.h"
#include "peak/ssa.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ssa_desc d, e;
	char err[SSA_ERRLEN], out[SSA_DESC_STRLEN];

	if (ssa_desc_parse((const char *)data, size, &d, err, sizeof(err)))
		return 0;
	int n = ssa_desc_print(&d, out, sizeof(out));
	if (n < 0 || ssa_desc_parse(out, (size_t)n, &e, err, sizeof(err)) ||
	    memcmp(&d, &e, sizeof(d)))
		__builtin_trap();
	struct prefix p;
	struct ssa_space sp;
	prefix_parse("2001:db8:5::/64", false, &p);
	if (ssa_space_init(&sp, &d, &p, 1, err, sizeof(err)) || d.pow > 8)
		return 0;
	uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8, 1}, sec[16] = {1}, dst[16];
	struct ssa_req r = {
	    .src = src, .object = data, .object_len = size, .secret = sec, .time = 1767225600};
	int rc = ssa_compute(&sp, &r, dst);
	if (rc == 0 && ssa_check(&sp, src, dst, r.time, sec) != SSA_PASS)
		__builtin_trap();
	return 0;
}
