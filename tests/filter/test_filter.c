/* The XDP filter in the kernel (BPF_PROG_TEST_RUN, root) against the C reference
 * (ssa_check) on the same packets: every rule kind, conforming and altered addresses, and
 * odd packets (truncated, IPv4, extension headers). */
#include "../unit/test.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <stdlib.h>
#include <unistd.h>

#include "filter.h"
#include "loader.h"
#include "peak/ssa.h"

#define K "000102030405060708090a0b0c0d0e0f"
#define S "f0e0d0c0b0a090807060504030201000"

static struct bpf_object *obj;
static int prog, map_svc, map_cnt, map_clock;

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
	return prog < 0 || map_svc < 0 || map_cnt < 0 || map_clock < 0;
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
    [SSA_PASS] = FC_PASS,
    [SSA_OUTSIDE] = FC_OUTSIDE,
    [SSA_REJECT_FANOUT] = FC_REJECT_FANOUT,
    [SSA_REJECT_SLICE] = FC_REJECT_SLICE,
    [SSA_REJECT_HOST] = FC_REJECT_HOST,
    [SSA_REJECT_POW] = FC_REJECT_POW,
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_spec_vectors),
	    cmocka_unit_test(test_src_rules),
	    cmocka_unit_test(test_other_rules),
	    cmocka_unit_test(test_odd_packets),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
