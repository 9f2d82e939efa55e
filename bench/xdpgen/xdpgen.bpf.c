/* The frame generator's XDP program: run by BPF_PROG_TEST_RUN in live-frames mode, it gives
 * each copy of the template packet a random source (and destination) inside the configured
 * prefixes and redirects it out of the configured interface as an XDP frame. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ipv6.h>

#include <bpf/bpf_helpers.h>

struct gen_cfg {
	__u8 src[16], dst[16]; /* the prefixes' addresses */
	__u8 src_keep[16];     /* per byte: 0xff where the source is fixed, 0 where random */
	__u8 dst_keep[16];
	__u32 ifindex; /* where the frames go */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_cfg);
} cfg SEC(".maps");

static __always_inline void fill(__u8 *a, const __u8 *base, const __u8 *keep)
{
	__u32 r[4] = {bpf_get_prandom_u32(), bpf_get_prandom_u32(), bpf_get_prandom_u32(),
	              bpf_get_prandom_u32()};
	const __u8 *rb = (const __u8 *)r;
#pragma unroll
	for (int i = 0; i < 16; i++)
		a[i] = (__u8)((base[i] & keep[i]) | (rb[i] & ~keep[i]));
}

SEC("xdp")
int xdpgen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ipv6hdr *ip = data + sizeof(struct ethhdr);
	__u32 zero = 0;
	struct gen_cfg *c = bpf_map_lookup_elem(&cfg, &zero);
	if (!c || (void *)(ip + 1) > end)
		return XDP_ABORTED;
	fill(ip->saddr.in6_u.u6_addr8, c->src, c->src_keep);
	fill(ip->daddr.in6_u.u6_addr8, c->dst, c->dst_keep);
	return bpf_redirect(c->ifindex, 0);
}

char LICENSE[] SEC("license") = "GPL";
