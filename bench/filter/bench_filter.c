/* Nanoseconds per packet of the XDP filter's check, from BPF_PROG_TEST_RUN with repeat (the
 * kernel times the runs), per rule kind and verdict path. Root. Usage:
 *   bench_filter FILTER_OBJ [REPEAT] */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "loader.h"
#include "peak/ssa.h"

static int prog, map_svc, map_clock;

static void install(const struct ssa_space *sp, const uint8_t *secret)
{
	struct filter_key key, next;
	while (bpf_map_get_next_key(map_svc, NULL, &next) == 0) {
		key = next;
		bpf_map_delete_elem(map_svc, &key);
	}
	struct filter_svc v;
	filter_svc_fill(&v, sp, 0, secret);
	memcpy(v.secret, secret, 16);
	key.prefixlen = sp->p;
	memcpy(key.addr, sp->pfx[0].addr, 16);
	bpf_map_update_elem(map_svc, &key, &v, BPF_ANY);
	struct filter_clock c = {.fixed_time = 1767225600};
	__u32 z = 0;
	bpf_map_update_elem(map_clock, &z, &c, BPF_ANY);
}

static double ns(const uint8_t *src, const uint8_t *dst, unsigned repeat, int *act)
{
	uint8_t p[70] = {0};
	p[12] = 0x86;
	p[13] = 0xdd;
	p[14] = 0x60;
	p[19] = 16;
	p[20] = 17;
	p[21] = 64;
	memcpy(p + 22, src, 16);
	memcpy(p + 38, dst, 16);
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = p, .data_size_in = sizeof(p),
	            .repeat = repeat);
	if (bpf_prog_test_run_opts(prog, &o))
		return -1;
	*act = (int)o.retval;
	return o.duration;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bench_filter FILTER_OBJ [REPEAT]\n");
		return 2;
	}
	unsigned repeat = argc > 2 ? (unsigned)atoi(argv[2]) : 1000000;
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	if (!obj || bpf_object__load(obj)) {
		fprintf(stderr, "cannot load %s (root?)\n", argv[1]);
		return 1;
	}
	prog = bpf_program__fd(bpf_object__find_program_by_name(obj, "peak_filter"));
	map_svc = bpf_object__find_map_fd_by_name(obj, "services");
	map_clock = bpf_object__find_map_fd_by_name(obj, "clock");
	static const char *rules[][2] = {
	    {"src/src", "slice=78; select=src; host=src"},
	    {"src/src fanout=4", "slice=78; select=src; host=src; fanout=4"},
	    {"obj/src", "slice=78; select=obj; host=src"},
	    {"hop/hop skew=1", "slice=78; select=hop; host=hop"},
	    {"src/src pow=8", "slice=78; select=src; host=src; pow=8; nonce=16"},
	    {"rand/rand", "slice=78"},
	};
	uint8_t secret[16] = {0xf0, 0xe0};
	printf("%-18s %12s %12s %12s\n", "rule", "pass ns", "drop ns", "outside ns");
	for (size_t k = 0; k < sizeof(rules) / sizeof(rules[0]); k++) {
		char text[200];
		struct ssa_desc d;
		struct ssa_space sp;
		struct prefix p;
		snprintf(text, sizeof(text), "v=ssa1; key=000102030405060708090a0b0c0d0e0f; %s",
		         rules[k][1]);
		ssa_desc_parse(text, strlen(text), &d, NULL, 0);
		prefix_parse("2001:db8:5::/64", false, &p);
		ssa_space_init(&sp, &d, &p, 1, NULL, 0);
		install(&sp, secret);
		uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0xaa, 0, 0xbb, [15] = 1}, dst[16],
		        bad[16], out[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 7};
		struct ssa_req r = {.src = src,
		                    .object = (const uint8_t *)"o",
		                    .object_len = 1,
		                    .time = 1767225600,
		                    .secret = secret,
		                    .rand = {1, 2, 3}};
		ssa_compute(&sp, &r, dst);
		memcpy(bad, dst, 16);
		bad[15] ^= 1;
		bad[8] ^= 0x80;
		int a1, a2, a3;
		double t1 = ns(src, dst, repeat, &a1), t2 = ns(src, bad, repeat, &a2),
		       t3 = ns(src, out, repeat, &a3);
		printf("%-18s %12.0f %12.0f %12.0f%s\n", rules[k][0], t1, t2, t3,
		       a1 == XDP_PASS && a3 == XDP_PASS ? "" : "  (unexpected verdict)");
	}
	bpf_object__close(obj);
	return 0;
}
