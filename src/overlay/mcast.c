/* MLD and the multicast membership announcement (mcast.h): pure code over the cursor. */
#include "mcast.h"

#include <errno.h>
#include <string.h>

#include "io.h"
#include "peak/cur.h"

enum {
	NH_HOPOPTS = 0,
	NH_ICMP6 = 58,
	MLD_QUERY = 130,
	MLD_REPORT = 131,
	MLD_DONE = 132,
	MLD2_REPORT = 143,
	MLD2_IS_IN = 1,
	MLD2_IS_EX,
	MLD2_TO_IN,
	MLD2_TO_EX,
	MLD2_ALLOW,
	MLD2_BLOCK,
};

bool mc_crosses(const uint8_t addr[16])
{
	unsigned scope = addr[1] & 0x0f;
	return addr[0] == 0xff && scope > 5 && scope < 0xf;
}

void mc_mac(const uint8_t group[16], uint8_t mac[6])
{
	mac[0] = mac[1] = 0x33;
	memcpy(mac + 2, group + 12, 4);
}

static bool is_mcast(const uint8_t a[16])
{
	return a[0] == 0xff;
}

/* One pass over a message's records: checks them (fn NULL) or reports them. */
static int mld_walk(const uint8_t *icmp, size_t n, mc_group_fn fn, void *arg)
{
	struct cur c = cur_make(icmp, n);
	uint8_t type = cur_u8(&c);
	cur_skip(&c, 3); /* code, checksum */
	if (type == MLD_REPORT || type == MLD_DONE) {
		cur_skip(&c, 4); /* maximum response delay, reserved */
		const uint8_t *g = cur_ptr(&c, 16);
		if (c.err || !is_mcast(g))
			return -EBADMSG;
		if (fn)
			fn(arg, g, type == MLD_REPORT);
		return 1;
	}
	if (type != MLD2_REPORT)
		return 0;
	cur_skip(&c, 2);
	unsigned nrec = cur_u16(&c), calls = 0;
	for (unsigned i = 0; i < nrec && !c.err; i++) {
		uint8_t rt = cur_u8(&c);
		size_t aux = (size_t)cur_u8(&c) * 4;
		unsigned nsrc = cur_u16(&c);
		const uint8_t *g = cur_ptr(&c, 16);
		cur_skip(&c, (size_t)nsrc * 16 + aux);
		if (c.err || !is_mcast(g) || rt < MLD2_IS_IN || rt > MLD2_BLOCK)
			return -EBADMSG;
		bool join;
		if (rt == MLD2_BLOCK)
			continue;
		if (rt == MLD2_IS_IN || rt == MLD2_TO_IN)
			join = nsrc > 0;
		else if (rt == MLD2_ALLOW)
			join = true; /* with no source it changes nothing; a join is harmless */
		else
			join = true; /* IS_EX, TO_EX: any source but those excluded */
		if (fn)
			fn(arg, g, join);
		calls++;
	}
	return c.err ? -EBADMSG : (int)calls;
}

int mc_mld_parse(const uint8_t *pkt, size_t len, mc_group_fn fn, void *arg)
{
	struct cur c = cur_make(pkt, len);
	const uint8_t *ip = cur_ptr(&c, 40);
	if (!ip || ip[0] >> 4 != 6)
		return -EBADMSG;
	size_t plen = (size_t)ip[4] << 8 | ip[5];
	if (plen > c.left)
		return -EBADMSG;
	c.left = plen; /* link-layer padding past the payload is not the message's */
	uint8_t nh = ip[6], hops = ip[7];
	if (nh == NH_HOPOPTS) {
		nh = cur_u8(&c);
		size_t hl = ((size_t)cur_u8(&c) + 1) * 8;
		cur_skip(&c, hl - 2);
		if (c.err)
			return -EBADMSG;
	}
	if (nh != NH_ICMP6)
		return 0;
	size_t n = c.left;
	const uint8_t *icmp = cur_ptr(&c, n);
	if (n < 4 || !icmp)
		return -EBADMSG;
	if (icmp[0] != MLD_REPORT && icmp[0] != MLD_DONE && icmp[0] != MLD2_REPORT)
		return 0;
	if (ovio_csum_fold(ovio_csum_add(ovio_csum_pseudo(ip + 8, ip + 24, n, NH_ICMP6), icmp, n)))
		return -EBADMSG;
	static const uint8_t unspec[16];
	bool ll = ip[8] == 0xfe && (ip[9] & 0xc0) == 0x80;
	if ((!ll && memcmp(ip + 8, unspec, 16)) || hops != 1)
		return -EPERM;
	int r = mld_walk(icmp, n, NULL, NULL);
	if (r <= 0)
		return r;
	return mld_walk(icmp, n, fn, arg);
}

/* RFC 3810 §5.1.9: below 128 as is, else 1 | exp (3 bits) | mant (4 bits) with the value
 * (mant | 0x10) << (exp + 3). */
static uint8_t qqic(unsigned v)
{
	if (v < 128)
		return (uint8_t)v;
	unsigned exp = 0;
	while ((v >> (exp + 3)) > 31 && exp < 7)
		exp++;
	unsigned mant = (v >> (exp + 3)) & 0x0f;
	return (uint8_t)(0x80 | exp << 4 | mant);
}

size_t mc_query_build(uint8_t out[static MC_QUERY_LEN], const uint8_t src[static 16],
                      const uint8_t *group, unsigned max_resp_ms, unsigned qrv, unsigned qqi_s)
{
	static const uint8_t all_nodes[16] = {0xff, 0x02, [15] = 1};
	memset(out, 0, MC_QUERY_LEN);
	out[0] = 0x60;
	out[5] = 8 + 28; /* payload length */
	out[6] = NH_HOPOPTS;
	out[7] = 1; /* hop limit */
	memcpy(out + 8, src, 16);
	memcpy(out + 24, group ? group : all_nodes, 16);
	uint8_t *hbh = out + 40;
	hbh[0] = NH_ICMP6;
	hbh[1] = 0;
	hbh[2] = 5; /* router alert (RFC 2711), value 0: MLD */
	hbh[3] = 2;
	hbh[6] = 1; /* PadN of 0 bytes */
	uint8_t *q = out + 48;
	if (max_resp_ms > MC_MAX_RESP_MS)
		max_resp_ms = MC_MAX_RESP_MS;
	q[0] = MLD_QUERY;
	q[4] = (uint8_t)(max_resp_ms >> 8);
	q[5] = (uint8_t)max_resp_ms;
	if (group)
		memcpy(q + 8, group, 16);
	q[24] = (uint8_t)(qrv & 7);
	q[25] = qqic(qqi_s);
	uint16_t ck =
	    ovio_csum_fold(ovio_csum_add(ovio_csum_pseudo(out + 8, out + 24, 28, NH_ICMP6), q, 28));
	q[2] = (uint8_t)(ck >> 8);
	q[3] = (uint8_t)ck;
	return MC_QUERY_LEN;
}

int mc_members_parse(const uint8_t *b, size_t n, mc_group_fn fn, void *arg)
{
	if (!n || n % MC_ENTRY_LEN)
		return -EBADMSG;
	struct cur c = cur_make(b, n);
	while (c.left) {
		uint8_t op = cur_u8(&c);
		const uint8_t *g = cur_ptr(&c, 16);
		if (!g || op > MC_OP_JOIN || !mc_crosses(g))
			return -EBADMSG;
	}
	for (size_t i = 0; i < n; i += MC_ENTRY_LEN)
		fn(arg, b + i + 1, b[i] == MC_OP_JOIN);
	return (int)(n / MC_ENTRY_LEN);
}

bool mc_members_add(uint8_t *buf, size_t cap, size_t *len, const uint8_t group[static 16],
                    bool joined)
{
	if (cap < *len || cap - *len < MC_ENTRY_LEN)
		return false;
	buf[*len] = joined ? MC_OP_JOIN : MC_OP_LEAVE;
	memcpy(buf + *len + 1, group, 16);
	*len += MC_ENTRY_LEN;
	return true;
}

int mc_tree_parse(const uint8_t *b, size_t n, const uint8_t **ids, size_t *nids,
                  const uint8_t **pkt, size_t *pktlen)
{
	struct cur c = cur_make(b, n);
	size_t k = cur_u8(&c);
	const uint8_t *list = cur_ptr(&c, k * MC_TREE_ID_LEN);
	if (c.err || c.left < 40)
		return -EBADMSG;
	*ids = list;
	*nids = k;
	*pktlen = c.left;
	*pkt = cur_ptr(&c, c.left);
	return 0;
}

size_t mc_tree_build(uint8_t *out, size_t cap, const uint8_t *ids, size_t nids, const uint8_t *pkt,
                     size_t len)
{
	size_t head = 1 + nids * MC_TREE_ID_LEN;
	if (nids > MC_TREE_MAX_IDS || cap < head || cap - head < len)
		return 0;
	out[0] = (uint8_t)nids;
	if (nids)
		memcpy(out + 1, ids, nids * MC_TREE_ID_LEN);
	memcpy(out + head, pkt, len);
	return head + len;
}

void mc_tree_part(size_t n, size_t parts, size_t k, size_t *start, size_t *end)
{
	size_t q = n / parts, r = n % parts; /* the first r parts take one more */
	*start = k * q + (k < r ? k : r);
	*end = *start + q + (k < r);
}
