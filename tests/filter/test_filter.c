/* The XDP filter in the kernel (BPF_PROG_TEST_RUN, root) against the C reference
 * (ssa_check) on the same packets: every rule kind, conforming and altered addresses, and
 * odd packets (truncated, IPv4, extension headers). */
#include "../unit/test.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <arpa/inet.h>
#include <errno.h>
#include <linux/bpf.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "filter.h"
#include "loader.h"
#include "testpkt.h"
#include "peak/ssa.h"

#define K "000102030405060708090a0b0c0d0e0f"
#define S "f0e0d0c0b0a090807060504030201000"

static struct bpf_object *obj;
static int prog, prog_answered, map_svc, map_cnt, map_clock, map_sig, map_hits, map_flows, map_asks;

static int setup(void **state)
{
	(void)state;
	const char *path = getenv("FILTER_OBJ");
	if (geteuid() != 0 || !path)
		return 0;
	obj = bpf_object__open_file(path, NULL);
	if (!obj || bpf_object__load(obj))
		return -1;
	prog = bpf_program__fd(bpf_object__find_program_by_name(obj, "peak_filter"));
	map_svc = bpf_object__find_map_fd_by_name(obj, "services");
	map_cnt = bpf_object__find_map_fd_by_name(obj, "counters");
	map_clock = bpf_object__find_map_fd_by_name(obj, "clock");
	map_sig = bpf_object__find_map_fd_by_name(obj, "signatures");
	map_hits = bpf_object__find_map_fd_by_name(obj, "sighits");
	map_flows = bpf_object__find_map_fd_by_name(obj, "flows");
	map_asks = bpf_object__find_map_fd_by_name(obj, "asks");
	prog_answered = bpf_program__fd(bpf_object__find_program_by_name(obj, "peak_answered"));
	return prog < 0 || map_svc < 0 || map_cnt < 0 || map_clock < 0 || map_sig < 0 ||
	       map_hits < 0 || map_flows < 0 || map_asks < 0 || prog_answered < 0;
}

static int teardown(void **state)
{
	(void)state;
	bpf_object__close(obj);
	return 0;
}

#define NEED_BPF()                                                                                 \
	do {                                                                                       \
		if (!obj)                                                                          \
			skip(); /* not root, or FILTER_OBJ not set */                              \
	} while (0)

static uint64_t counter(unsigned c)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t v[512] = {0}, sum = 0;
	__u32 k = c;
	assert_true(ncpu > 0 && ncpu <= 512);
	assert_int_equal(bpf_map_lookup_elem(map_cnt, &k, v), 0);
	for (int i = 0; i < ncpu; i++)
		sum += v[i];
	return sum;
}

/* Installs a service's prefixes (and clears others). */
static void install(const struct ssa_space *sp, const uint8_t *secret, uint64_t now)
{
	struct filter_key key, next;
	while (bpf_map_get_next_key(map_svc, NULL, &next) == 0) {
		key = next;
		bpf_map_delete_elem(map_svc, &key);
	}
	for (unsigned i = 0; i < sp->n; i++) {
		struct filter_svc v;
		filter_svc_fill(&v, sp, i, secret);
		if (secret)
			memcpy(v.secret, secret, 16);
		key.prefixlen = sp->p;
		memcpy(key.addr, sp->pfx[i].addr, 16);
		assert_int_equal(bpf_map_update_elem(map_svc, &key, &v, BPF_ANY), 0);
	}
	struct filter_clock c = {.fixed_time = now};
	__u32 z = 0;
	assert_int_equal(bpf_map_update_elem(map_clock, &z, &c, BPF_ANY), 0);
}

/* Runs one packet; returns the XDP action. */
static int run(const uint8_t *pkt, size_t len)
{
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = pkt, .data_size_in = (__u32)len);
	assert_int_equal(bpf_prog_test_run_opts(prog, &o), 0);
	return (int)o.retval;
}

static size_t packet(uint8_t *p, const uint8_t src[16], const uint8_t dst[16], uint8_t nexthdr)
{
	memset(p, 0, 14 + 40 + 16);
	p[12] = 0x86;
	p[13] = 0xdd;
	p[14] = 0x60;
	p[19] = 16; /* payload length */
	p[20] = nexthdr;
	p[21] = 64;
	memcpy(p + 22, src, 16);
	memcpy(p + 38, dst, 16);
	if (nexthdr == 0)
		p[54] = 17; /* hop-by-hop options, then UDP */
	return 14 + 40 + 16;
}

static const unsigned want_counter[] = {
    [SSA_PASS] = FC_ASSUMED_GOOD,           [SSA_OUTSIDE] = FC_OUTSIDE,
    [SSA_REJECT_FANOUT] = FC_REJECT_FANOUT, [SSA_REJECT_SLICE] = FC_REJECT_SLICE,
    [SSA_REJECT_HOST] = FC_REJECT_HOST,     [SSA_REJECT_POW] = FC_REJECT_POW,
};

/* Random cases for one descriptor: conforming addresses, one bit of source or destination
 * flipped, random destinations in and out of the service. Verdict and reason must agree. */
static void differential(const char *desc, unsigned nprefixes, unsigned cases, uint64_t seed)
{
	struct ssa_desc d;
	struct ssa_space sp;
	struct prefix pfx[2];
	uint8_t secret[16];
	char err[SSA_ERRLEN];
	uint64_t now = 1767225600;
	if (ssa_desc_parse(desc, strlen(desc), &d, err, sizeof(err)))
		fail_msg("%s: %s", desc, err);
	bool wide = d.slice < 64; /* host fields wider than 64 bits need shorter prefixes */
	prefix_parse(wide ? "2001:db8:5::/56" : "2001:db8:5::/64", false, &pfx[0]);
	prefix_parse(wide ? "2001:db8:6::/56" : "2001:db8:6::/64", false, &pfx[1]);
	if (ssa_space_init(&sp, &d, pfx, nprefixes, err, sizeof(err)))
		fail_msg("%s: %s", desc, err);
	ssa_key_parse(S, 32, secret);
	install(&sp, secret, now);
	unsigned kinds[6] = {0};
	for (unsigned n = 0; n < cases; n++) {
		uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8}, dst[16], pkt[128];
		for (int i = 4; i < 16; i++)
			src[i] = (uint8_t)test_rand(&seed);
		struct ssa_req r = {.src = src,
		                    .index = (uint8_t)(test_rand(&seed) % d.fanout),
		                    .object = (const uint8_t *)"o",
		                    .object_len = 1,
		                    .time = now + test_rand(&seed) % 60 - 30,
		                    .secret = secret,
		                    .rand = {test_rand(&seed), test_rand(&seed), test_rand(&seed)}};
		assert_int_equal(ssa_compute(&sp, &r, dst), 0);
		switch (test_rand(&seed) % 5) {
		case 1: /* one destination bit below the prefix */
			dst[8 + test_rand(&seed) % 8] ^= (uint8_t)(1u << (test_rand(&seed) % 8));
			break;
		case 2: /* one source bit of the /64 */
			src[test_rand(&seed) % 8] ^= (uint8_t)(1u << (test_rand(&seed) % 8));
			break;
		case 3: /* anywhere in the prefix */
			for (int i = 8; i < 16; i++)
				dst[i] = (uint8_t)test_rand(&seed);
			break;
		case 4: /* elsewhere */
			if (test_rand(&seed) % 4 == 0)
				dst[5] ^= 0x40;
			break;
		}
		int want = ssa_check(&sp, src, dst, now, secret);
		assert_true(want >= 0);
		unsigned c = want_counter[want];
		uint64_t before = counter(c);
		int act = run(pkt, packet(pkt, src, dst, test_rand(&seed) % 3 ? 17 : 0));
		int want_act = want == SSA_PASS || want == SSA_OUTSIDE ? XDP_PASS : XDP_DROP;
		if (act != want_act || counter(c) != before + 1)
			fail_msg("%s case %u: filter %d, reference %s", desc, n, act,
			         ssa_verdict_name(want));
		kinds[want]++;
	}
	print_message("# %s: %u cases: pass %u outside %u fanout %u slice %u host %u pow %u\n",
	              desc, cases, kinds[0], kinds[1], kinds[2], kinds[3], kinds[4], kinds[5]);
}

static void test_src_rules(void **state)
{
	(void)state;
	NEED_BPF();
	differential("v=ssa1; slice=78; select=src; host=src; key=" K, 1, 3000, 1);
	differential("v=ssa1; slice=78; select=src; host=src; fanout=4; key=" K, 1, 2000, 2);
	differential("v=ssa1; slice=70; select=src; host=src; key=" K, 2, 2000, 3);
	differential("v=ssa1; slice=60; select=src; host=src; key=" K, 2, 500, 4); /* hb > 64 */
}

static void test_other_rules(void **state)
{
	(void)state;
	NEED_BPF();
	differential("v=ssa1; slice=78; select=obj; host=src; key=" K, 1, 2000, 5);
	differential("v=ssa1; slice=78; select=rand; host=src; key=" K, 1, 1000, 6);
	differential("v=ssa1; slice=78; select=src; host=rand; key=" K, 1, 1000, 7);
	differential("v=ssa1; slice=78", 1, 500, 8);
	differential("v=ssa1; slice=78; select=hop; host=hop; period=30; key=" K, 1, 2000, 9);
	differential("v=ssa1; slice=78; select=hop; host=src; period=10; skew=2; key=" K, 1, 1000,
	             10);
	differential("v=ssa1; slice=78; select=src; host=src; pow=8; nonce=16; key=" K, 1, 500, 11);
}

static void test_spec_vectors(void **state)
{
	(void)state;
	NEED_BPF();
	struct ssa_desc d;
	struct ssa_space sp;
	struct prefix p;
	uint8_t src[16], dst[16], pkt[128], fam;
	const char *desc = "v=ssa1; slice=78; select=src; host=src; key=" K;
	ssa_desc_parse(desc, strlen(desc), &d, NULL, 0);
	prefix_parse("2001:db8:5::/64", false, &p);
	ssa_space_init(&sp, &d, &p, 1, NULL, 0);
	install(&sp, NULL, 1);
	addr_parse("2001:db8:aa:bb::1", &fam, src);
	addr_parse("2001:db8:5:0:a94a:ac01:8d:78fe", &fam, dst);
	assert_int_equal(run(pkt, packet(pkt, src, dst, 17)), XDP_PASS);
	addr_parse("2001:db8:aa:bc::1", &fam, src);
	assert_int_equal(run(pkt, packet(pkt, src, dst, 17)), XDP_DROP);
	addr_parse("2001:db8:aa:bb::1", &fam, src);
	addr_parse("2001:db8:5::1", &fam, dst);
	assert_int_equal(run(pkt, packet(pkt, src, dst, 17)), XDP_DROP);
	addr_parse("2001:db8:7::1", &fam, dst);
	assert_int_equal(run(pkt, packet(pkt, src, dst, 17)), XDP_PASS);
}

static void test_odd_packets(void **state)
{
	(void)state;
	NEED_BPF();
	uint8_t pkt[128] = {0}, src[16] = {0x20, 1}, dst[16] = {0x20, 1, 0x0d, 0xb8, 0, 5};
	size_t len = packet(pkt, src, dst, 17);
	uint64_t m = counter(FC_MALFORMED), n4 = counter(FC_NOT_IPV6);
	assert_int_equal(run(pkt, 14 + 20), XDP_DROP); /* truncated IPv6 header */
	assert_int_equal(counter(FC_MALFORMED), m + 1);
	pkt[12] = 0x08;
	pkt[13] = 0x00; /* IPv4 */
	assert_int_equal(run(pkt, len), XDP_PASS);
	assert_int_equal(counter(FC_NOT_IPV6), n4 + 1);
	pkt[12] = 0x08;
	pkt[13] = 0x06; /* ARP */
	assert_int_equal(run(pkt, len), XDP_PASS);
	assert_int_equal(counter(FC_NOT_IPV6), n4 + 2);
}

/* Runs one packet through XDP; returns the action and the metadata word it left (0 if none). */
static int run_meta(const uint8_t *pkt, size_t len, uint32_t *meta)
{
	uint8_t out[256];
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = pkt, .data_size_in = (__u32)len,
	            .data_out = out, .data_size_out = sizeof(out));
	assert_int_equal(bpf_prog_test_run_opts(prog, &o), 0);
	*meta = 0;
	if (o.data_size_out == len + 4)
		memcpy(meta, out, 4);
	else
		assert_int_equal(o.data_size_out, len);
	return (int)o.retval;
}

/* Runs a packet the pod sends through the TC egress program. */
static void egress(const uint8_t *pkt, size_t len)
{
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = pkt, .data_size_in = (__u32)len);
	assert_int_equal(bpf_prog_test_run_opts(prog_answered, &o), 0);
	assert_int_equal(o.retval, 0); /* TC_ACT_OK: the filter never holds replies back */
}

/* The SPEC.md 8 src/src service on 2001:db8:5::/64, optionally rate limited. */
static void install_vector_service(uint32_t rate, uint32_t burst, uint8_t src[16], uint8_t dst[16])
{
	struct ssa_desc d;
	struct ssa_space sp;
	struct prefix p;
	uint8_t fam;
	const char *desc = "v=ssa1; slice=78; select=src; host=src; key=" K;
	ssa_desc_parse(desc, strlen(desc), &d, NULL, 0);
	prefix_parse("2001:db8:5::/64", false, &p);
	ssa_space_init(&sp, &d, &p, 1, NULL, 0);
	install(&sp, NULL, 1);
	struct filter_key key = {.prefixlen = 64};
	memcpy(key.addr, p.addr, 16);
	struct filter_svc v;
	filter_svc_fill(&v, &sp, 0, NULL);
	v.svc_id = 7;
	filter_svc_set_rate(&v, rate, burst);
	assert_int_equal(bpf_map_update_elem(map_svc, &key, &v, BPF_ANY), 0);
	addr_parse("2001:db8:aa:bb::1", &fam, src);
	addr_parse("2001:db8:5:0:a94a:ac01:8d:78fe", &fam, dst);
}

/* Clears every ask (the XDP program asks for each packet it passes of a flow it does not
 * know, so the random cases leave many). */
static void clear_asks(void)
{
	struct filter_asks none = {{0}};
	__u32 z = 0;
	assert_int_equal(bpf_map_update_elem(map_asks, &z, &none, BPF_ANY), 0);
}

/* Known good: once the filter has passed a packet of a flow and the pod has answered past
 * the handshake, the flow's packets pass before any rule check (even when the rule changed
 * and rejects the flow's address now); a SYN-ACK or RST from the pod does not make a flow
 * known, nor an answer on a flow no packet of which the filter passed; a FIN forgets it. */
static void test_known_good(void **state)
{
	(void)state;
	NEED_BPF();
	uint8_t src[16], dst[16], pkt[128], rep[128];
	uint32_t meta;
	install_vector_service(0, 0, src, dst);
	clear_asks(); /* the earlier tests' passed packets asked */
	size_t n = testpkt_tcp(pkt, src, dst, 40000, 80, 0x10);
	uint64_t kg = counter(FC_KNOWN_GOOD), host = counter(FC_REJECT_HOST);
	assert_int_equal(run_meta(pkt, n, &meta), XDP_PASS); /* conforming: asks */
	assert_int_equal(meta, FILTER_META_MAGIC | FCLASS_ASSUMED_GOOD);
	egress(rep, testpkt_tcp(rep, dst, src, 80, 40000, 0x12)); /* SYN-ACK */
	egress(rep, testpkt_tcp(rep, dst, src, 80, 40000, 0x14)); /* RST-ACK */
	assert_int_equal(run_meta(pkt, n, &meta), XDP_PASS);
	assert_int_equal(meta, FILTER_META_MAGIC | FCLASS_ASSUMED_GOOD);
	egress(rep, testpkt_tcp(rep, dst, src, 80, 40001, 0x10)); /* a flow nobody asked about */
	egress(rep, testpkt_tcp(rep, dst, src, 80, 40000, 0x18)); /* data: the pod answered */
	assert_int_equal(run_meta(pkt, n, &meta), XDP_PASS);
	assert_int_equal(meta, FILTER_META_MAGIC | FCLASS_KNOWN_GOOD);
	assert_int_equal(counter(FC_KNOWN_GOOD), kg + 1);
	/* another key: the rule rejects the address now, but not the flow the pod answered */
	struct filter_key key = {.prefixlen = 64};
	struct filter_svc v;
	memcpy(key.addr, dst, 8);
	assert_int_equal(bpf_map_lookup_elem(map_svc, &key, &v), 0);
	v.key[0] ^= 1;
	filter_svc_derive(&v);
	assert_int_equal(bpf_map_update_elem(map_svc, &key, &v, BPF_ANY), 0);
	assert_int_equal(run_meta(pkt, n, &meta), XDP_PASS);
	assert_int_equal(meta, FILTER_META_MAGIC | FCLASS_KNOWN_GOOD);
	uint8_t other_flow[128];
	size_t m = testpkt_tcp(other_flow, src, dst, 40002, 80, 0x10);
	assert_int_equal(run_meta(other_flow, m, &meta), XDP_DROP);
	assert_int_equal(counter(FC_REJECT_HOST) + counter(FC_REJECT_SLICE) > host, 1);
	egress(rep, testpkt_tcp(rep, dst, src, 80, 40000, 0x11)); /* FIN */
	assert_int_equal(run_meta(pkt, n, &meta), XDP_DROP);
	/* a reply from outside every service prefix records nothing */
	uint8_t other[16], fam;
	addr_parse("2001:db8:7::1", &fam, other);
	egress(rep, testpkt_tcp(rep, other, src, 80, 40000, 0x10));
	struct filter_flow k, next;
	int nflows = 0;
	for (int r = bpf_map_get_next_key(map_flows, NULL, &next); !r;
	     r = bpf_map_get_next_key(map_flows, &k, &next)) {
		k = next;
		nflows++;
	}
	assert_int_equal(nflows, 0); /* not the port-40001 flow either */
}

/* The coarse monotonic clock the programs read (bpf_ktime_get_coarse_ns), in ns. */
static uint64_t coarse_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Whether flow f's bit is set in the asks bitmap. */
static bool asked(const struct filter_flow *f)
{
	struct filter_asks a;
	__u32 z = 0, slot = filter_ask_slot(f);
	assert_int_equal(bpf_map_lookup_elem(map_asks, &z, &a), 0);
	return (a.bits[slot >> 6] >> (slot & 63)) & 1;
}

/* The pod's packets skip the flows table unless the XDP program asked about their flow: an
 * answer on a known flow leaves its entry alone (no refresh: a lookup would have done one),
 * one on a flow nobody asked about records nothing; the XDP program asks when it passes a
 * packet of a flow it does not know, or of a known one due for a refresh, and the answer
 * that records or refreshes the flow ends the ask. */
static void test_answers_skip_the_flows_table(void **state)
{
	(void)state;
	NEED_BPF();
	uint8_t src[16], dst[16], pkt[128], rep[128];
	uint32_t meta;
	install_vector_service(0, 0, src, dst);
	clear_asks();
	struct filter_flow fl = {.cport = htons(41000), .sport = htons(80), .proto = 6};
	memcpy(fl.client, src, 16);
	memcpy(fl.service, dst, 16);
	__u64 old = coarse_ns() - 10 * 1000000000ULL, seen = 0;
	/* known, seen 10 s ago: the answer does not touch it */
	assert_int_equal(bpf_map_update_elem(map_flows, &fl, &old, BPF_ANY), 0);
	egress(rep, testpkt_tcp(rep, dst, src, 80, 41000, 0x18));
	assert_int_equal(bpf_map_lookup_elem(map_flows, &fl, &seen), 0);
	assert_true(seen == old);
	/* due for a refresh (seen more than FILTER_FLOW_REFRESH_S ago): known good, and asks */
	old = coarse_ns() - (FILTER_FLOW_REFRESH_S + 1) * 1000000000ULL;
	assert_int_equal(bpf_map_update_elem(map_flows, &fl, &old, BPF_ANY), 0);
	size_t n = testpkt_tcp(pkt, src, dst, 41000, 80, 0x10);
	assert_false(asked(&fl));
	assert_int_equal(run_meta(pkt, n, &meta), XDP_PASS);
	assert_int_equal(meta, FILTER_META_MAGIC | FCLASS_KNOWN_GOOD);
	assert_true(asked(&fl));
	egress(rep, testpkt_tcp(rep, dst, src, 80, 41000, 0x18));
	assert_int_equal(bpf_map_lookup_elem(map_flows, &fl, &seen), 0);
	assert_true(seen > old + FILTER_FLOW_REFRESH_S * 1000000000ULL);
	assert_false(asked(&fl));
	assert_int_equal(bpf_map_delete_elem(map_flows, &fl), 0);
	/* unknown: an answer before any client packet records nothing; after one, it does */
	egress(rep, testpkt_tcp(rep, dst, src, 80, 41000, 0x18));
	assert_int_not_equal(bpf_map_lookup_elem(map_flows, &fl, &seen), 0);
	assert_int_equal(run_meta(pkt, n, &meta), XDP_PASS);
	assert_int_equal(meta, FILTER_META_MAGIC | FCLASS_ASSUMED_GOOD);
	assert_true(asked(&fl));
	egress(rep, testpkt_tcp(rep, dst, src, 80, 41000, 0x18));
	assert_int_equal(bpf_map_lookup_elem(map_flows, &fl, &seen), 0);
	assert_false(asked(&fl));
	assert_int_equal(run_meta(pkt, n, &meta), XDP_PASS);
	assert_int_equal(meta, FILTER_META_MAGIC | FCLASS_KNOWN_GOOD);
	/* a packet the rule rejects asks for nothing */
	uint8_t bad[16];
	memcpy(bad, dst, 16);
	bad[15] ^= 1;
	struct filter_flow bf = fl;
	memcpy(bf.service, bad, 16);
	n = testpkt_tcp(pkt, src, bad, 41000, 80, 0x10);
	assert_int_equal(run_meta(pkt, n, &meta), XDP_DROP);
	assert_false(asked(&bf));
	assert_int_equal(bpf_map_delete_elem(map_flows, &fl), 0);
}

/* Possibly bad by rate: a source /64 gets burst packets, then the rest are classed possibly
 * bad (still passed) until its bucket refills; another /64 has its own bucket. */
static void test_rate(void **state)
{
	(void)state;
	NEED_BPF();
	uint8_t src[16], dst[16], pkt[128];
	uint32_t meta;
	install_vector_service(1, 3, src, dst);
	size_t n = testpkt_tcp(pkt, src, dst, 40000, 80, 0x02);
	unsigned classes[FCLASS_N] = {0};
	for (int k = 0; k < 6; k++) {
		assert_int_equal(run_meta(pkt, n, &meta), XDP_PASS);
		assert_int_equal(meta & 0xffff0000, FILTER_META_MAGIC);
		classes[meta & 0xffff]++;
	}
	assert_int_equal(classes[FCLASS_ASSUMED_GOOD], 3);
	assert_int_equal(classes[FCLASS_POSSIBLY_BAD], 3);
	/* the same /64 with another interface id shares the bucket; the conforming address
	 * differs per source only in the /64, so reuse the vector's destination */
	src[15] = 2;
	assert_int_equal(run_meta(pkt, testpkt_tcp(pkt, src, dst, 40000, 80, 0x02), &meta),
	                 XDP_PASS);
	assert_int_equal(meta, FILTER_META_MAGIC | FCLASS_POSSIBLY_BAD);
	/* no limit: always assumed good */
	install_vector_service(0, 0, src, dst);
	for (int k = 0; k < 10; k++) {
		assert_int_equal(run_meta(pkt, n, &meta), XDP_PASS);
		assert_int_equal(meta, FILTER_META_MAGIC | FCLASS_ASSUMED_GOOD);
	}
}

static void set_sigs(const struct filter_sig *g, unsigned n, uint8_t action_drop_mask)
{
	struct filter_sigtab tab;
	memset(&tab, 0, sizeof(tab));
	for (unsigned k = 0; k < n; k++) {
		tab.sig[k] = g[k];
		tab.sig[k].action = (action_drop_mask >> k) & 1 ? FSIG_DROP : FSIG_CLASS;
		tab.used[k] = 1;
	}
	tab.n = n;
	__u32 z = 0;
	assert_int_equal(bpf_map_update_elem(map_sig, &z, &tab, BPF_ANY), 0);
}

static uint64_t hits(unsigned slot)
{
	uint64_t v[512] = {0}, sum = 0;
	__u32 k = slot;
	assert_int_equal(bpf_map_lookup_elem(map_hits, &k, v), 0);
	for (int i = 0; i < libbpf_num_possible_cpus(); i++)
		sum += v[i];
	return sum;
}

/* Signatures: each field narrows the match; a match classes the packet possibly bad or, with
 * the drop action, drops it; hits are counted per slot; an empty table classes nothing. */
static void test_signatures(void **state)
{
	(void)state;
	NEED_BPF();
	uint8_t src[16], dst[16], pkt[128];
	uint32_t meta;
	struct prefix sp;
	install_vector_service(0, 0, src, dst);
	size_t syn = testpkt_tcp(pkt, src, dst, 40000, 80, 0x02);
	struct filter_sig g[4];
	memset(g, 0, sizeof(g));
	prefix_parse("2001:db8:aa::/48", false, &sp);
	memcpy(g[0].src, sp.addr, 16);
	g[0].src_len = 48;
	g[0].proto = 6;
	g[0].dport = 443; /* not this packet's port */
	g[1].tcp_mask = 0x12;
	g[1].tcp_flags = 0x02; /* SYN without ACK */
	g[1].proto = 6;
	g[1].hop_limit = 64;
	g[1].min_len = 20;
	g[1].max_len = 20;
	set_sigs(g, 2, 0);
	uint64_t h0 = hits(0), h1 = hits(1);
	assert_int_equal(run_meta(pkt, syn, &meta), XDP_PASS);
	assert_int_equal(meta, FILTER_META_MAGIC | FCLASS_POSSIBLY_BAD);
	assert_int_equal(hits(0), h0);
	assert_int_equal(hits(1), h1 + 1);
	/* the ACK of the handshake does not match the SYN signature */
	size_t ack = testpkt_tcp(pkt, src, dst, 40000, 80, 0x10);
	assert_int_equal(run_meta(pkt, ack, &meta), XDP_PASS);
	assert_int_equal(meta, FILTER_META_MAGIC | FCLASS_ASSUMED_GOOD);
	/* a different hop limit, length or source prefix does not match either */
	g[1].hop_limit = 63;
	set_sigs(g, 2, 0);
	assert_int_equal(run_meta(pkt, testpkt_tcp(pkt, src, dst, 40000, 80, 0x02), &meta),
	                 XDP_PASS);
	assert_int_equal(meta, FILTER_META_MAGIC | FCLASS_ASSUMED_GOOD);
	g[1].hop_limit = 0;
	g[1].min_len = 21;
	g[1].max_len = 0;
	set_sigs(g, 2, 0);
	assert_int_equal(run_meta(pkt, syn, &meta), XDP_PASS);
	assert_int_equal(meta, FILTER_META_MAGIC | FCLASS_ASSUMED_GOOD);
	/* the drop action, by source prefix and port */
	g[0].dport = 80;
	set_sigs(g, 1, 1);
	uint64_t rs = counter(FC_REJECT_SIGNATURE);
	assert_int_equal(run_meta(pkt, syn, &meta), XDP_DROP);
	assert_int_equal(counter(FC_REJECT_SIGNATURE), rs + 1);
	g[0].src_len = 64;
	g[0].src[7] ^= 1; /* 2001:db8:aa:ba::/64: not this source */
	set_sigs(g, 1, 1);
	assert_int_equal(run_meta(pkt, syn, &meta), XDP_PASS);
	/* an unused slot below n is skipped */
	g[0].src[7] ^= 1;
	set_sigs(g, 1, 1);
	struct filter_sigtab tab;
	__u32 z = 0;
	assert_int_equal(bpf_map_lookup_elem(map_sig, &z, &tab), 0);
	tab.used[0] = 0;
	assert_int_equal(bpf_map_update_elem(map_sig, &z, &tab, BPF_ANY), 0);
	assert_int_equal(run_meta(pkt, syn, &meta), XDP_PASS);
	/* non-conforming packets are rejected by the rule whatever the signatures say */
	set_sigs(g, 1, 0);
	dst[15] ^= 1;
	assert_int_equal(run_meta(pkt, testpkt_tcp(pkt, src, dst, 40000, 80, 0x02), &meta),
	                 XDP_DROP);
	set_sigs(g, 0, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_spec_vectors),
	    cmocka_unit_test(test_src_rules),
	    cmocka_unit_test(test_other_rules),
	    cmocka_unit_test(test_odd_packets),
	    cmocka_unit_test(test_known_good),
	    cmocka_unit_test(test_answers_skip_the_flows_table),
	    cmocka_unit_test(test_rate),
	    cmocka_unit_test(test_signatures),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
