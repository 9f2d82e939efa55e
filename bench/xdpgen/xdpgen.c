/* xdpgen: a bounded flood of XDP frames for the filter benchmark's drop path. It runs its
 * BPF program (xdpgen.bpf.o) with BPF_PROG_TEST_RUN in live-frames mode, so each copy of a
 * template TCP SYN leaves --dev as an XDP frame: a veth hands such frames to its peer's
 * NAPI without ever building an skb, as a NIC's driver would. Sources are random inside
 * --sources, destinations random inside --prefix or the fixed --dst; it stops after
 * --seconds and prints {"generated": N, "seconds": S} (frames the peer could not take are
 * dropped at the veth and not told apart here: count what arrives at the receiver).
 * Usage: xdpgen --dev IFACE --dst-mac MAC (--prefix P | --dst ADDR) --sources P
 *               --seconds S [--object PATH] */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <limits.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netinet/ip6.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "peak/prefix.h"

struct gen_cfg { /* as in xdpgen.bpf.c */
	uint8_t src[16], dst[16], src_keep[16], dst_keep[16];
	uint32_t ifindex;
};

static void usage(const char *why)
{
	fprintf(stderr,
	        "xdpgen: %s\nusage: xdpgen --dev IFACE --dst-mac MAC (--prefix P | --dst ADDR) "
	        "--sources P --seconds S [--object PATH]\n",
	        why);
	exit(2);
}

static void keep_mask(unsigned len, uint8_t keep[16])
{
	for (unsigned b = 0; b < 16; b++)
		keep[b] = len >= 8 * (b + 1) ? 0xff
		                             : (uint8_t)(0xff00 >> (len > 8 * b ? len - 8 * b : 0));
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	const char *dev = NULL, *mac = NULL, *pfx = NULL, *dst = NULL, *src = NULL, *obj = NULL;
	double seconds = 0;
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		if (!strcmp(k, "--dev"))
			dev = v;
		else if (!strcmp(k, "--dst-mac"))
			mac = v;
		else if (!strcmp(k, "--prefix"))
			pfx = v;
		else if (!strcmp(k, "--dst"))
			dst = v;
		else if (!strcmp(k, "--sources"))
			src = v;
		else if (!strcmp(k, "--seconds"))
			seconds = atof(v);
		else if (!strcmp(k, "--object"))
			obj = v;
		else
			usage("unknown option");
	}
	if (argc % 2 == 0 || !dev || !mac || !src || !(pfx || dst) || (pfx && dst) ||
	    seconds <= 0 || seconds > 60)
		usage("missing or bad options (--seconds: 0 to 60)");
	struct gen_cfg c = {0};
	struct prefix sp, dp;
	if (prefix_parse(src, true, &sp) || sp.family != PEAK_AFI_IP6 ||
	    (pfx && (prefix_parse(pfx, true, &dp) || dp.family != PEAK_AFI_IP6)))
		usage("--sources and --prefix take an IPv6 ADDR/LEN");
	if (dst) {
		if (inet_pton(AF_INET6, dst, dp.addr) != 1)
			usage("--dst takes an IPv6 address");
		dp.len = 128;
	}
	memcpy(c.src, sp.addr, 16);
	memcpy(c.dst, dp.addr, 16);
	keep_mask(sp.len, c.src_keep);
	keep_mask(dp.len, c.dst_keep);
	if (!(c.ifindex = if_nametoindex(dev)))
		usage("no such interface");

	/* the template: Ethernet to the peer's MAC, IPv6, a TCP SYN to port 8080 */
	uint8_t pkt[ETH_HLEN + sizeof(struct ip6_hdr) + sizeof(struct tcphdr)] = {0};
	struct ethhdr *eth = (struct ethhdr *)pkt;
	if (sscanf(mac, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &eth->h_dest[0], &eth->h_dest[1],
	           &eth->h_dest[2], &eth->h_dest[3], &eth->h_dest[4], &eth->h_dest[5]) != 6)
		usage("--dst-mac takes xx:xx:xx:xx:xx:xx");
	struct ifreq ifr = {0};
	int fd = socket(AF_INET6, SOCK_DGRAM, 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
	if (fd < 0 || ioctl(fd, SIOCGIFHWADDR, &ifr))
		usage("cannot read the interface's MAC");
	close(fd);
	memcpy(eth->h_source, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
	eth->h_proto = htons(ETH_P_IPV6);
	struct ip6_hdr *ip = (struct ip6_hdr *)(pkt + ETH_HLEN);
	ip->ip6_flow = htonl(6u << 28);
	ip->ip6_plen = htons(sizeof(struct tcphdr));
	ip->ip6_nxt = IPPROTO_TCP;
	ip->ip6_hlim = 64;
	struct tcphdr *t = (struct tcphdr *)(ip + 1);
	t->th_sport = htons(40000);
	t->th_dport = htons(8080);
	t->th_seq = htonl(1);
	t->th_off = 5;
	t->th_flags = TH_SYN;
	t->th_win = htons(65535);

	char path[PATH_MAX];
	if (!obj) { /* beside this binary */
		ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 32);
		if (n < 0)
			usage("cannot find the object: give --object");
		path[n] = '\0';
		strcpy(strrchr(path, '/') + 1, "xdpgen.bpf.o");
		obj = path;
	}
	struct bpf_object *o = bpf_object__open_file(obj, NULL);
	if (!o || bpf_object__load(o)) {
		fprintf(stderr, "xdpgen: cannot load %s (root?)\n", obj);
		return 1;
	}
	int map = bpf_object__find_map_fd_by_name(o, "cfg");
	int prog = bpf_program__fd(bpf_object__find_program_by_name(o, "xdpgen"));
	uint32_t zero = 0;
	if (map < 0 || prog < 0 || bpf_map_update_elem(map, &zero, &c, BPF_ANY)) {
		fprintf(stderr, "xdpgen: %s is not the generator's object\n", obj);
		return 1;
	}
	uint64_t generated = 0;
	double t0 = now(), t1 = t0;
	while (t1 - t0 < seconds) {
		LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = pkt, .data_size_in = sizeof(pkt),
		            .repeat = 20000, .flags = BPF_F_TEST_XDP_LIVE_FRAMES, .batch_size = 64);
		if (bpf_prog_test_run_opts(prog, &run)) {
			fprintf(stderr, "xdpgen: test run: %s\n", strerror(errno));
			return 1;
		}
		generated += run.repeat;
		t1 = now();
	}
	printf("{\"generated\": %llu, \"seconds\": %.3f}\n", (unsigned long long)generated,
	       t1 - t0);
	bpf_object__close(o);
	return 0;
}
