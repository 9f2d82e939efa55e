/* The multicast slave's pure parts (src/overlay/mcast.h): MLDv2 reports (join, leave, block,
 * several records with sources and aux data), MLDv1 report and done, what is refused (bad
 * checksum, not link-local, hop limit not 1, truncated records, a record of a unicast
 * address: then no group is reported at all), the query the querier sends (checksum, router
 * alert, QQIC encoding), which scopes cross sites, and the membership announcement. */
#include "../unit/test.h"

#include <errno.h>
#include <stdbool.h>

#include "io.h"
#include "mcast.h"

static const uint8_t LL[16] = {0xfe, 0x80, [15] = 2};
static const uint8_t G1[16] = {0xff, 0x0e, [14] = 0x0d, [15] = 1};
static const uint8_t G2[16] = {0xff, 0x08, [15] = 2};

struct seen {
	uint8_t g[8][16];
	bool j[8];
	int n;
};

static void on_group(void *arg, const uint8_t group[16], bool joined)
{
	struct seen *s = arg;
	assert_true(s->n < 8);
	memcpy(s->g[s->n], group, 16);
	s->j[s->n++] = joined;
}

/* An IPv6 packet from src with hop limit hops, hop-by-hop router alert, ICMPv6 body (n
 * bytes; its checksum filled). Returns the length. */
static size_t wrap(uint8_t *out, const uint8_t src[16], uint8_t hops, uint8_t *icmp, size_t n)
{
	static const uint8_t dst[16] = {0xff, 0x02, [15] = 0x16};
	memset(out, 0, 48);
	out[0] = 0x60;
	out[4] = (uint8_t)((n + 8) >> 8);
	out[5] = (uint8_t)(n + 8);
	out[6] = 0;
	out[7] = hops;
	memcpy(out + 8, src, 16);
	memcpy(out + 24, dst, 16);
	out[40] = 58;
	out[42] = 5;
	out[43] = 2;
	out[46] = 1;
	icmp[2] = icmp[3] = 0;
	uint16_t ck =
	    ovio_csum_fold(ovio_csum_add(ovio_csum_pseudo(out + 8, out + 24, n, 58), icmp, n));
	icmp[2] = (uint8_t)(ck >> 8);
	icmp[3] = (uint8_t)ck;
	memcpy(out + 48, icmp, n);
	return 48 + n;
}

/* An MLDv2 report: TO_EX({}) G1, a BLOCK of one source for G1, TO_IN({}) G2, IS_IN({S})
 * with one aux word for G2. */
static size_t report(uint8_t *icmp)
{
	size_t n = 8;
	memset(icmp, 0, 256);
	icmp[0] = 143;
	icmp[7] = 4;
	uint8_t *r = icmp + n;
	r[0] = 4; /* TO_EX, no source */
	memcpy(r + 4, G1, 16);
	n += 20;
	r = icmp + n;
	r[0] = 6; /* BLOCK one source */
	r[3] = 1;
	memcpy(r + 4, G1, 16);
	memcpy(r + 20, LL, 16);
	n += 36;
	r = icmp + n;
	r[0] = 3; /* TO_IN({}): leave */
	memcpy(r + 4, G2, 16);
	n += 20;
	r = icmp + n;
	r[0] = 1; /* IS_IN({S}) with one aux word */
	r[1] = 1;
	r[3] = 1;
	memcpy(r + 4, G2, 16);
	n += 20 + 16 + 4;
	return n;
}

static void test_mld2_report(void **state)
{
	(void)state;
	uint8_t icmp[256], pkt[512];
	size_t n = report(icmp);
	size_t len = wrap(pkt, LL, 1, icmp, n);
	struct seen s = {0};
	assert_int_equal(mc_mld_parse(pkt, len, on_group, &s), 3);
	assert_memory_equal(s.g[0], G1, 16);
	assert_true(s.j[0]);
	assert_memory_equal(s.g[1], G2, 16);
	assert_false(s.j[1]);
	assert_memory_equal(s.g[2], G2, 16);
	assert_true(s.j[2]);
	/* link-layer padding past the payload length is ignored */
	memset(pkt + len, 0xee, 6);
	s.n = 0;
	assert_int_equal(mc_mld_parse(pkt, len + 6, on_group, &s), 3);
}

static void test_refused(void **state)
{
	(void)state;
	uint8_t icmp[256], pkt[512];
	size_t n = report(icmp);
	struct seen s = {0};
	size_t len = wrap(pkt, LL, 1, icmp, n);
	pkt[60] ^= 1; /* the checksum no longer holds */
	assert_int_equal(mc_mld_parse(pkt, len, on_group, &s), -EBADMSG);
	static const uint8_t global[16] = {0xfd, 0, [15] = 2};
	len = wrap(pkt, global, 1, icmp, n);
	assert_int_equal(mc_mld_parse(pkt, len, on_group, &s), -EPERM);
	len = wrap(pkt, LL, 2, icmp, n);
	assert_int_equal(mc_mld_parse(pkt, len, on_group, &s), -EPERM);
	/* every truncation of the message is refused, nothing reported */
	for (size_t cut = 1; cut < n; cut++) {
		uint8_t small[256];
		memcpy(small, icmp, cut);
		len = wrap(pkt, LL, 1, small, cut);
		int r = mc_mld_parse(pkt, len, on_group, &s);
		assert_true(r == -EBADMSG);
	}
	/* a record count past the records */
	icmp[7] = 5;
	len = wrap(pkt, LL, 1, icmp, n);
	assert_int_equal(mc_mld_parse(pkt, len, on_group, &s), -EBADMSG);
	/* the last record's group is not multicast: none of the message is taken */
	n = report(icmp);
	icmp[n - 40] = 0xfd;
	len = wrap(pkt, LL, 1, icmp, n);
	assert_int_equal(mc_mld_parse(pkt, len, on_group, &s), -EBADMSG);
	/* a payload length past the packet */
	n = report(icmp);
	len = wrap(pkt, LL, 1, icmp, n);
	assert_int_equal(mc_mld_parse(pkt, len - 1, on_group, &s), -EBADMSG);
	assert_int_equal(s.n, 0);
}

static void test_mld1(void **state)
{
	(void)state;
	uint8_t icmp[24] = {131}, pkt[128];
	memcpy(icmp + 8, G1, 16);
	struct seen s = {0};
	size_t len = wrap(pkt, LL, 1, icmp, sizeof(icmp));
	assert_int_equal(mc_mld_parse(pkt, len, on_group, &s), 1);
	icmp[0] = 132;
	len = wrap(pkt, LL, 1, icmp, sizeof(icmp));
	assert_int_equal(mc_mld_parse(pkt, len, on_group, &s), 1);
	assert_true(s.j[0]);
	assert_false(s.j[1]);
	/* another ICMPv6 type (an echo) is not MLD: 0, nothing reported */
	icmp[0] = 128;
	len = wrap(pkt, LL, 1, icmp, sizeof(icmp));
	assert_int_equal(mc_mld_parse(pkt, len, on_group, &s), 0);
	assert_int_equal(s.n, 2);
}

static void test_query(void **state)
{
	(void)state;
	uint8_t q[MC_QUERY_LEN];
	assert_int_equal(mc_query_build(q, LL, NULL, 10000, 2, 125), MC_QUERY_LEN);
	assert_int_equal(q[0], 0x60);
	assert_int_equal(q[7], 1);
	assert_int_equal(q[24], 0xff);
	assert_int_equal(q[39], 1); /* ff02::1 */
	assert_int_equal(q[42], 5); /* router alert */
	assert_int_equal(q[48], 130);
	assert_int_equal(q[52] << 8 | q[53], 10000);
	assert_int_equal(q[72], 2);
	assert_int_equal(q[73], 125);
	assert_int_equal(
	    ovio_csum_fold(ovio_csum_add(ovio_csum_pseudo(q + 8, q + 24, 28, 58), q + 48, 28)), 0);
	/* group-specific, to the group; QQIC 1000 s: (mant | 0x10) << (exp + 3) */
	mc_query_build(q, LL, G1, 1000, 2, 1000);
	assert_memory_equal(q + 24, G1, 16);
	assert_memory_equal(q + 56, G1, 16);
	unsigned c = q[73], exp = (c >> 4) & 7, mant = c & 15;
	assert_true(c & 0x80);
	unsigned v = (mant | 0x10) << (exp + 3);
	assert_true(v <= 1000 && v > 1000 - (1000 >> 4));
}

static void test_scope_and_members(void **state)
{
	(void)state;
	static const uint8_t site[16] = {0xff, 0x05, [15] = 1}, link[16] = {0xff, 0x02, [15] = 1},
	                     rsv[16] = {0xff, 0x0f, [15] = 1};
	assert_true(mc_crosses(G1));
	assert_true(mc_crosses(G2));
	assert_false(mc_crosses(site));
	assert_false(mc_crosses(link));
	assert_false(mc_crosses(rsv));
	assert_false(mc_crosses(LL));
	uint8_t mac[6];
	mc_mac(G1, mac);
	static const uint8_t want[6] = {0x33, 0x33, 0, 0, 0x0d, 1};
	assert_memory_equal(mac, want, 6);

	uint8_t b[3 * MC_ENTRY_LEN];
	size_t len = 0;
	assert_true(mc_members_add(b, sizeof(b), &len, G1, true));
	assert_true(mc_members_add(b, sizeof(b), &len, G2, false));
	assert_true(mc_members_add(b, sizeof(b), &len, G2, true));
	assert_false(mc_members_add(b, sizeof(b), &len, G1, true));
	assert_int_equal(len, sizeof(b));
	struct seen s = {0};
	assert_int_equal(mc_members_parse(b, len, on_group, &s), 3);
	assert_false(s.j[1]);
	assert_true(s.j[2]);
	s.n = 0;
	assert_int_equal(mc_members_parse(b, len - 1, on_group, &s), -EBADMSG);
	assert_int_equal(mc_members_parse(b, 0, on_group, &s), -EBADMSG);
	b[MC_ENTRY_LEN] = 2; /* an unknown op */
	assert_int_equal(mc_members_parse(b, len, on_group, &s), -EBADMSG);
	b[MC_ENTRY_LEN] = MC_OP_JOIN;
	b[MC_ENTRY_LEN + 2] = 0x05; /* a site-local group does not cross */
	assert_int_equal(mc_members_parse(b, len, on_group, &s), -EBADMSG);
	assert_int_equal(s.n, 0);
}

/* Every site of a list of n reached once through the tree mc_tree_part cuts (fanout f at
 * every level, as slave_mcast.c forwards): returns the depth, counts visits in hits. */
static unsigned walk(const unsigned *list, size_t n, size_t f, unsigned *hits)
{
	unsigned depth = 0;
	size_t parts = n < f ? n : f;
	for (size_t k = 0; k < parts; k++) {
		size_t s, e;
		mc_tree_part(n, parts, k, &s, &e);
		assert_true(s < e && e <= n);
		hits[list[s]]++;
		unsigned d = 1 + walk(list + s + 1, e - s - 1, f, hits);
		if (d > depth)
			depth = d;
	}
	return depth;
}

static void test_tree(void **state)
{
	(void)state;
	uint8_t pkt[60] = {0x60}, ids[3 * MC_TREE_ID_LEN], b[256];
	memcpy(pkt + 24, G1, 16);
	for (size_t i = 0; i < sizeof(ids); i++)
		ids[i] = (uint8_t)i;
	size_t n = mc_tree_build(b, sizeof(b), ids, 3, pkt, sizeof(pkt));
	assert_int_equal(n, 1 + sizeof(ids) + sizeof(pkt));
	const uint8_t *gi, *gp;
	size_t gn, gl;
	assert_int_equal(mc_tree_parse(b, n, &gi, &gn, &gp, &gl), 0);
	assert_int_equal(gn, 3);
	assert_memory_equal(gi, ids, sizeof(ids));
	assert_int_equal(gl, sizeof(pkt));
	assert_memory_equal(gp, pkt, sizeof(pkt));
	/* no ids: a leaf's packet */
	n = mc_tree_build(b, sizeof(b), NULL, 0, pkt, sizeof(pkt));
	assert_int_equal(mc_tree_parse(b, n, &gi, &gn, &gp, &gl), 0);
	assert_int_equal(gn, 0);
	assert_int_equal(gl, sizeof(pkt));
	/* truncated ids, a packet shorter than its fixed header, nothing */
	b[0] = 40;
	assert_int_equal(mc_tree_parse(b, n, &gi, &gn, &gp, &gl), -EBADMSG);
	b[0] = 3;
	assert_int_equal(mc_tree_parse(b, 1 + 3 * MC_TREE_ID_LEN + 39, &gi, &gn, &gp, &gl),
	                 -EBADMSG);
	assert_int_equal(mc_tree_parse(b, 0, &gi, &gn, &gp, &gl), -EBADMSG);
	/* no room, too many ids */
	assert_int_equal(
	    mc_tree_build(b, 1 + sizeof(ids) + sizeof(pkt) - 1, ids, 3, pkt, sizeof(pkt)), 0);
	static uint8_t many[(MC_TREE_MAX_IDS + 1) * MC_TREE_ID_LEN], big[4096];
	assert_int_equal(mc_tree_build(big, sizeof(big), many, MC_TREE_MAX_IDS + 1, pkt, 40), 0);
	assert_int_equal(mc_tree_build(big, sizeof(big), many, MC_TREE_MAX_IDS, pkt, 40),
	                 1 + MC_TREE_MAX_IDS * MC_TREE_ID_LEN + 40);
	/* the parts cover a list once, in order, sizes within one; the tree reaches every site
	 * once, in about log_f(n) levels */
	static unsigned list[600], hits[600];
	for (unsigned i = 0; i < 600; i++)
		list[i] = i;
	for (size_t len = 1; len <= 600; len += len < 40 ? 1 : 37) {
		for (size_t parts = 1; parts <= len && parts <= 20; parts++) {
			size_t next = 0, lo = len, hi = 0;
			for (size_t k = 0; k < parts; k++) {
				size_t s, e;
				mc_tree_part(len, parts, k, &s, &e);
				assert_int_equal(s, next);
				next = e;
				lo = e - s < lo ? e - s : lo;
				hi = e - s > hi ? e - s : hi;
			}
			assert_int_equal(next, len);
			assert_true(hi - lo <= 1);
		}
		for (size_t f = 2; f <= 8; f++) {
			memset(hits, 0, sizeof(hits));
			unsigned depth = walk(list, len, f, hits), want = 1;
			for (size_t reach = f; reach < len; reach = reach * f + f)
				want++;
			for (size_t i = 0; i < len; i++)
				assert_int_equal(hits[i], 1);
			assert_true(depth <= want + 1);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mld2_report),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_mld1),
	    cmocka_unit_test(test_query),
	    cmocka_unit_test(test_scope_and_members),
	    cmocka_unit_test(test_tree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
