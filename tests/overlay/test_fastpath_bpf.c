/* The fast path's receive program (src/overlay/fastpath.bpf.c, tc ingress) in the kernel
 * (BPF_PROG_TEST_RUN, root): input packet -> verdict and output packet. A trusted peer's
 * OVW_DATA_PLAIN leaves as its inner IPv6 packet behind the same Ethernet header (type
 * IPv6), redirected; a spoofed inner source is dropped and counted; everything else (an
 * unknown sender, sealed data, another port, IPv4 options, fragments, a short packet, an
 * inner length that disagrees) passes unchanged. The transmit program (lwt xmit) is not
 * run here: BPF_PROG_TEST_RUN gives it no route, which bpf_lwt_push_encap needs; the
 * namespace test (test_overlay_fastpath.py) covers it. */
#include "../unit/test.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>
#include <unistd.h>

#include "fastpath.h"
#include "fastpath.skel.h"

enum { PORT = 51820, TUN_IFINDEX = 7, PEER = 3, INNER = 40 + 8 };

static struct fastpath_bpf *skel;
static const uint8_t peer_id[8] = {0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8};
static const uint8_t good_src[16] = {0xfd, 0, 0, 0xa, [15] = 2};
static const uint8_t bad_src[16] = {0xfd, 0, 0, 0xe, [15] = 1};
static const uint8_t dst[16] = {0xfd, 0, 0, 0xb, [15] = 2};

static int setup(void **state)
{
	(void)state;
	if (geteuid() != 0)
		return 0;
	if (!(skel = fastpath_bpf__open_and_load()))
		return -1;
	__u32 zero = 0, idx = PEER;
	uint64_t id;
	struct fp_conf c = {.port = htons(PORT), .tun_ifindex = TUN_IFINDEX};
	struct fp_peer p = {.flags = FP_RX};
	struct fp_key k = {.plen = 64, .addr = {0xfd, 0, 0, 0xa}};
	memcpy(&id, peer_id, 8);
	return bpf_map_update_elem(bpf_map__fd(skel->maps.fp_conf), &zero, &c, BPF_ANY) ||
	       bpf_map_update_elem(bpf_map__fd(skel->maps.fp_peers), &idx, &p, BPF_ANY) ||
	       bpf_map_update_elem(bpf_map__fd(skel->maps.fp_ids), &id, &idx, BPF_ANY) ||
	       bpf_map_update_elem(bpf_map__fd(skel->maps.fp_prefixes), &k, &idx, BPF_ANY);
}

static int teardown(void **state)
{
	(void)state;
	fastpath_bpf__destroy(skel);
	return 0;
}

#define NEED_BPF()                                                                                 \
	do {                                                                                       \
		if (!skel)                                                                         \
			skip(); /* not root */                                                     \
	} while (0)

static uint64_t counter(unsigned c)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t v[512] = {0}, sum = 0;
	__u32 k = c;
	assert_true(ncpu > 0 && ncpu <= 512);
	assert_int_equal(bpf_map_lookup_elem(bpf_map__fd(skel->maps.fp_counters), &k, v), 0);
	for (int i = 0; i < ncpu; i++)
		sum += v[i];
	return sum;
}

/* Ethernet, IPv4, UDP to PORT, the 28-byte header of type from id, an inner IPv6 packet
 * from src (UDP, 8 bytes of payload). Returns the length. */
static size_t packet(uint8_t *p, uint8_t type, const uint8_t id[8], const uint8_t src[16])
{
	size_t n = 14 + FP_OUTER + INNER;
	memset(p, 0, n);
	memset(p, 0x02, 12); /* MAC addresses */
	p[12] = 0x08;        /* IPv4 */
	uint8_t *ip = p + 14, *udp = ip + 20, *h = udp + 8, *in = h + 28;
	ip[0] = 0x45;
	ip[2] = (uint8_t)((n - 14) >> 8);
	ip[3] = (uint8_t)(n - 14);
	ip[6] = 0x40; /* DF */
	ip[8] = 64;
	ip[9] = 17;
	memcpy(ip + 12, (uint8_t[]){192, 0, 2, 1, 192, 0, 2, 2}, 8);
	udp[0] = 0xca;
	udp[2] = PORT >> 8;
	udp[3] = PORT & 0xff;
	udp[4] = (uint8_t)((n - 34) >> 8);
	udp[5] = (uint8_t)(n - 34);
	h[0] = type;
	memcpy(h + 4, id, 8);
	h[27] = 9; /* counter */
	in[0] = 0x60;
	in[5] = 8; /* payload length */
	in[6] = 17;
	in[7] = 64;
	memcpy(in + 8, src, 16);
	memcpy(in + 24, dst, 16);
	memset(in + 40, 0x5a, 8);
	return n;
}

/* Runs the program on pkt; the output packet into out (*olen). Returns the verdict. */
static int run(const uint8_t *pkt, size_t len, uint8_t *out, __u32 *olen)
{
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = pkt, .data_size_in = (__u32)len,
	            .data_out = out, .data_size_out = 256);
	assert_int_equal(bpf_prog_test_run_opts(bpf_program__fd(skel->progs.peak_fp_rx), &o), 0);
	*olen = o.data_size_out;
	return (int)o.retval;
}

static void test_trusted_plain_is_decapsulated(void **state)
{
	(void)state;
	NEED_BPF();
	uint8_t pkt[256], out[256];
	__u32 olen;
	size_t n = packet(pkt, FP_TYPE_PLAIN, peer_id, good_src);
	uint64_t rx = counter(FC_RX_PACKETS), bytes = counter(FC_RX_BYTES);
	assert_int_equal(run(pkt, n, out, &olen), TC_ACT_REDIRECT);
	assert_int_equal(olen, 14 + INNER);
	assert_memory_equal(out, pkt, 12);                         /* MAC addresses kept */
	assert_memory_equal(out + 12, "\x86\xdd", 2);              /* IPv6 now */
	assert_memory_equal(out + 14, pkt + 14 + FP_OUTER, INNER); /* the inner packet whole */
	assert_int_equal(counter(FC_RX_PACKETS), rx + 1);
	assert_int_equal(counter(FC_RX_BYTES), bytes + INNER);
}

static void test_spoofed_source_dropped(void **state)
{
	(void)state;
	NEED_BPF();
	uint8_t pkt[256], out[256];
	__u32 olen;
	size_t n = packet(pkt, FP_TYPE_PLAIN, peer_id, bad_src);
	uint64_t drops = counter(FC_RX_SOURCE);
	assert_int_equal(run(pkt, n, out, &olen), TC_ACT_SHOT);
	assert_int_equal(counter(FC_RX_SOURCE), drops + 1);
}

/* pkt passes unchanged; counted as left to the daemon if counted. */
static void passes(const uint8_t *pkt, size_t n, bool counted)
{
	uint8_t out[256];
	__u32 olen;
	uint64_t pass = counter(FC_RX_PASS), rx = counter(FC_RX_PACKETS);
	assert_int_equal(run(pkt, n, out, &olen), TC_ACT_OK);
	assert_int_equal(olen, n);
	assert_memory_equal(out, pkt, n);
	assert_int_equal(counter(FC_RX_PASS), pass + (counted ? 1 : 0));
	assert_int_equal(counter(FC_RX_PACKETS), rx);
}

static void test_others_pass(void **state)
{
	(void)state;
	NEED_BPF();
	uint8_t pkt[256];
	size_t n;
	static const uint8_t stranger[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	n = packet(pkt, FP_TYPE_PLAIN, stranger, good_src); /* unknown or untrusted sender */
	passes(pkt, n, true);
	n = packet(pkt, 1 /* OVW_DATA */, peer_id, good_src); /* sealed: the daemon's */
	passes(pkt, n, true);
	n = packet(pkt, 2 /* OVW_KEEPALIVE */, peer_id, good_src);
	passes(pkt, n, true);
	n = packet(pkt, FP_TYPE_PLAIN, peer_id, good_src);
	pkt[14 + 20 + 8 + 1] = 1; /* a version we do not know */
	passes(pkt, n, true);
	n = packet(pkt, FP_TYPE_PLAIN, peer_id, good_src);
	pkt[14 + FP_OUTER + 5] = 9; /* inner length disagrees: the daemon counts it */
	passes(pkt, n, true);
	n = packet(pkt, FP_TYPE_PLAIN, peer_id, good_src);
	pkt[14 + FP_OUTER] = 0x40; /* not IPv6 inside */
	passes(pkt, n, true);
	n = packet(pkt, FP_TYPE_PLAIN, peer_id, good_src);
	pkt[14 + 20 + 3]++; /* another port: not ours at all */
	passes(pkt, n, false);
	n = packet(pkt, FP_TYPE_PLAIN, peer_id, good_src);
	pkt[14 + 7] = 1; /* a fragment */
	passes(pkt, n, false);
	n = packet(pkt, FP_TYPE_PLAIN, peer_id, good_src);
	pkt[14] = 0x46; /* IPv4 options */
	passes(pkt, n, false);
	n = packet(pkt, FP_TYPE_PLAIN, peer_id, good_src);
	pkt[14 + 9] = 6; /* TCP */
	passes(pkt, n, false);
	n = packet(pkt, FP_TYPE_PLAIN, peer_id, good_src);
	passes(pkt, 14 + FP_OUTER + 20, true); /* cut inside the inner header */
	passes(pkt, 14 + 20 + 4, false);       /* cut inside UDP */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_trusted_plain_is_decapsulated),
	    cmocka_unit_test(test_spoofed_source_dropped),
	    cmocka_unit_test(test_others_pass),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
