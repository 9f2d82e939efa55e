/* Fuzzes the agent's parser of the blocks of a controller 'ep' line (untrusted: it comes off
 * a socket). Accepted blocks must each lie in the space, and counting must agree with
 * storing. The parser is compiled in from src/agent (it is not in a library). */
#include <string.h>

#include "../../src/agent/mapline.c"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char desc[] = "v=ssa1; slice=78; select=src; host=src; "
	                           "key=000102030405060708090a0b0c0d0e0f";
	struct ssa_desc d;
	struct ssa_space sp;
	struct prefix p[2];
	char err[SSA_ERRLEN];
	struct assign_block out[64];
	size_t n, m;
	if (ssa_desc_parse(desc, sizeof(desc) - 1, &d, err, sizeof(err)) ||
	    prefix_parse("2001:db8:5::/64", false, &p[0]) ||
	    prefix_parse("2001:db8:6::/64", false, &p[1]) ||
	    ssa_space_init(&sp, &d, p, 2, err, sizeof(err)))
		__builtin_trap();
	if (mapline_blocks_parse((const char *)data, size, &sp, NULL, 0, &n))
		return 0;
	if (mapline_blocks_parse((const char *)data, size, &sp, out, 64, &m) || m != n)
		__builtin_trap();
	for (size_t k = 0; k < n && k < 64; k++) {
		struct prefix q;
		if (out[k].log2 > MAPLINE_MAX_LOG2 || assign_block_prefix(&sp, &out[k], &q))
			__builtin_trap();
	}
	return 0;
}
