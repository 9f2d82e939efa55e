/* A bounded flood of TCP SYNs from random sources, for the benchmarks' flood scenario.
 * Each packet comes from a random address of --sources (a random /64 and interface id) and
 * goes to a random address of --prefix (most of which break the service's SSA rule) or to
 * one of the --dst addresses in turn, at --pps for --seconds, through a raw IPv6 socket.
 * It stops by itself; it never sends outside the prefixes it is given.
 * Usage: flood (--prefix P | --dst A[,A...]) --port N --pps N --seconds S --sources P */
#define _GNU_SOURCE /* sendmmsg */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/ip6.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "peak/prefix.h"

enum { BATCH = 64, MAX_DST = 64, PKT_LEN = sizeof(struct ip6_hdr) + sizeof(struct tcphdr) };

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545F4914F6CDD1Dull;
}

/* A random address of p (its bits kept, the rest random). */
static void addr_in(const struct prefix *p, uint8_t out[16])
{
	uint64_t r[2] = {rnd(), rnd()};
	memcpy(out, r, 16);
	for (unsigned b = 0; b < p->len; b++) {
		uint8_t m = (uint8_t)(0x80 >> (b % 8));
		out[b / 8] = (uint8_t)((out[b / 8] & ~m) | (p->addr[b / 8] & m));
	}
}

static uint16_t tcp_csum(const struct ip6_hdr *ip, const struct tcphdr *t)
{
	uint32_t sum = 0;
	const uint16_t *w = (const uint16_t *)&ip->ip6_src;
	for (int i = 0; i < 16; i++)
		sum += ntohs(w[i]);
	sum += (uint32_t)sizeof(*t) + IPPROTO_TCP;
	w = (const uint16_t *)t;
	for (size_t i = 0; i < sizeof(*t) / 2; i++)
		sum += ntohs(w[i]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct prefix dst_pfx = {0}, src_pfx = {0};
	struct in6_addr dsts[MAX_DST];
	unsigned ndst = 0, port = 0;
	double pps = 0, seconds = 0;
	bool have_pfx = false, have_src = false;
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *o = argv[i], *v = argv[i + 1];
		if (!strcmp(o, "--prefix")) {
			have_pfx =
			    !prefix_parse(v, true, &dst_pfx) && dst_pfx.family == PEAK_AFI_IP6;
		} else if (!strcmp(o, "--sources")) {
			have_src =
			    !prefix_parse(v, true, &src_pfx) && src_pfx.family == PEAK_AFI_IP6;
		} else if (!strcmp(o, "--dst")) {
			char buf[1024];
			snprintf(buf, sizeof(buf), "%s", v);
			for (char *t = strtok(buf, ","); t && ndst < MAX_DST; t = strtok(NULL, ","))
				if (inet_pton(AF_INET6, t, &dsts[ndst]) == 1)
					ndst++;
		} else if (!strcmp(o, "--port")) {
			port = (unsigned)atoi(v);
		} else if (!strcmp(o, "--pps")) {
			pps = atof(v);
		} else if (!strcmp(o, "--seconds")) {
			seconds = atof(v);
		}
	}
	if ((!have_pfx && !ndst) || !have_src || !port || port > 65535 || pps <= 0 || pps > 1e7 ||
	    seconds <= 0 || seconds > 600) {
		fprintf(stderr, "usage: flood (--prefix P | --dst A[,A...]) --port N --pps N "
		                "--seconds S --sources P\n");
		return 2;
	}
	int fd = socket(AF_INET6, SOCK_RAW, IPPROTO_RAW); /* we write the IPv6 header */
	if (fd == -1) {
		fprintf(stderr, "flood: raw socket: %s\n", strerror(errno));
		return 1;
	}
	rng ^= (uint64_t)getpid() << 17;
	static uint8_t pkt[BATCH][PKT_LEN];
	struct sockaddr_in6 to[BATCH];
	struct iovec iov[BATCH];
	struct mmsghdr msg[BATCH];
	uint64_t sent = 0, errors = 0;
	double t0 = now_s();
	for (;;) {
		double t = now_s() - t0;
		if (t >= seconds)
			break;
		uint64_t due = (uint64_t)(t * pps);
		if (due <= sent) {
			struct timespec ts = {0, 200000};
			nanosleep(&ts, NULL);
			continue;
		}
		unsigned n = due - sent > BATCH ? BATCH : (unsigned)(due - sent);
		for (unsigned k = 0; k < n; k++) {
			struct ip6_hdr *ip = (struct ip6_hdr *)pkt[k];
			struct tcphdr *tcp = (struct tcphdr *)(ip + 1);
			memset(pkt[k], 0, PKT_LEN);
			ip->ip6_flow = htonl(6u << 28);
			ip->ip6_plen = htons(sizeof(*tcp));
			ip->ip6_nxt = IPPROTO_TCP;
			ip->ip6_hlim = 64;
			addr_in(&src_pfx, ip->ip6_src.s6_addr);
			if (ndst)
				ip->ip6_dst = dsts[(sent + k) % ndst];
			else
				addr_in(&dst_pfx, ip->ip6_dst.s6_addr);
			tcp->th_sport = htons((uint16_t)(1024 + rnd() % 60000));
			tcp->th_dport = htons((uint16_t)port);
			tcp->th_seq = (uint32_t)rnd();
			tcp->th_off = 5;
			tcp->th_flags = TH_SYN;
			tcp->th_win = htons(65535);
			tcp->th_sum = tcp_csum(ip, tcp);
			memset(&to[k], 0, sizeof(to[k]));
			to[k].sin6_family = AF_INET6;
			to[k].sin6_addr = ip->ip6_dst;
			iov[k] = (struct iovec){pkt[k], PKT_LEN};
			msg[k] = (struct mmsghdr){.msg_hdr = {.msg_name = &to[k],
			                                      .msg_namelen = sizeof(to[k]),
			                                      .msg_iov = &iov[k],
			                                      .msg_iovlen = 1}};
		}
		int k = sendmmsg(fd, msg, n, 0);
		if (k < 0) {
			errors += n;
			k = (int)n; /* counted as due anyway: the rate must not run away */
		}
		sent += (unsigned)k;
	}
	close(fd);
	printf("{\"sent\": %llu, \"errors\": %llu, \"seconds\": %.3f}\n", (unsigned long long)sent,
	       (unsigned long long)errors, now_s() - t0);
	return 0;
}
