/* Fuzzes the multicast slave's parsers (src/overlay/mcast.h): the input as an IPv6 packet
 * heard on the site's LAN (an MLD report or done), as an OVW_MEMBERS announcement's body and as
 * an OVW_MCAST_TREE body. Every group reported must be a multicast address inside the input;
 * an announcement or a tree body that parses is written again and must come back byte for
 * byte. */
#include <string.h>

#include "fuzz.h"
#include "mcast.h"

struct ctx {
	const uint8_t *data;
	size_t size;
	uint8_t out[8192];
	size_t len;
	unsigned calls;
};

static void on_group(void *arg, const uint8_t group[16], bool joined)
{
	struct ctx *x = arg;
	if (group < x->data || group + 16 > x->data + x->size || group[0] != 0xff)
		__builtin_trap();
	x->calls++;
	if (!mc_members_add(x->out, sizeof(x->out), &x->len, group, joined))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ctx x;
	x.data = data;
	x.size = size;
	x.len = x.calls = 0;
	int r = mc_mld_parse(data, size, on_group, &x);
	if (r >= 0 ? (unsigned)r != x.calls : x.calls != 0)
		__builtin_trap();
	x.len = x.calls = 0;
	if (size > sizeof(x.out))
		return 0;
	r = mc_members_parse(data, size, on_group, &x);
	if (r >= 0 && ((unsigned)r != x.calls || x.len != size || memcmp(x.out, data, size)))
		__builtin_trap();
	const uint8_t *ids, *pkt;
	size_t nids, plen;
	if (!mc_tree_parse(data, size, &ids, &nids, &pkt, &plen)) {
		if (plen < 40 || ids < data || pkt + plen != data + size ||
		    mc_tree_build(x.out, sizeof(x.out), ids, nids, pkt, plen) != size ||
		    memcmp(x.out, data, size))
			__builtin_trap();
	}
	return 0;
}
