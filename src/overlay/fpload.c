/* The gateway's kernel fast path, the daemon's side: see fpload.h. Routes through libmnl
 * (RTM_NEWROUTE with an lwt BPF encap, protocol RTPROT_PEAK_FP), tc through libbpf. */
#include "fpload.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <ifaddrs.h>
#include <libmnl/libmnl.h>
#include <linux/lwtunnel.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fastpath.skel.h"

enum {
	RTPROT_PEAK_FP = 0xa6, /* the fast path's routes (RTPROT_PEAK 0xa5 is the agent's) */
	FP_MAX_UPLINKS = 16,
	FP_TC_HANDLE = 0xa6,
};

struct fp_route {
	struct prefix p;
};

struct ov_fp {
	struct fastpath_bpf *skel;
	int tun_ifindex;
	struct bpf_tc_hook hook[FP_MAX_UPLINKS];
	struct bpf_tc_opts opts[FP_MAX_UPLINKS];
	unsigned nup;
	struct fp_route *routes;
	size_t nroutes, cap;
};

/* Adds (replacing) or deletes the route of p through the TUN with the transmit program. */
static int route_req(struct ov_fp *f, const struct prefix *p, bool add)
{
	char buf[1024];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = add ? RTM_NEWROUTE : RTM_DELROUTE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_REPLACE : 0);
	nlh->nlmsg_seq = (uint32_t)time(NULL);
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = AF_INET6;
	rtm->rtm_dst_len = p->len;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_PEAK_FP;
	rtm->rtm_scope = RT_SCOPE_UNIVERSE;
	rtm->rtm_type = RTN_UNICAST;
	mnl_attr_put(nlh, RTA_DST, 16, p->addr);
	mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)f->tun_ifindex);
	if (add) {
		mnl_attr_put_u16(nlh, RTA_ENCAP_TYPE, LWTUNNEL_ENCAP_BPF);
		struct nlattr *e = mnl_attr_nest_start(nlh, RTA_ENCAP);
		struct nlattr *x = mnl_attr_nest_start(nlh, LWT_BPF_XMIT);
		mnl_attr_put_u32(nlh, LWT_BPF_PROG_FD,
		                 (uint32_t)bpf_program__fd(f->skel->progs.peak_fp_xmit));
		mnl_attr_put_strz(nlh, LWT_BPF_PROG_NAME, "peak_fp_xmit");
		mnl_attr_nest_end(nlh, x);
		mnl_attr_put_u32(nlh, LWT_BPF_XMIT_HEADROOM, FP_OUTER);
		mnl_attr_nest_end(nlh, e);
	}
	struct mnl_socket *nl = mnl_socket_open(NETLINK_ROUTE);
	if (!nl)
		return -errno;
	int ret = 0;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0 ||
	    mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		ret = -errno;
	} else {
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0)
			ret = -errno;
		else if (mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, mnl_socket_get_portid(nl), NULL,
		                    NULL) < 0)
			ret = -errno;
	}
	mnl_socket_close(nl);
	return ret;
}

static int attach_uplink(struct ov_fp *f, int ifindex)
{
	if (f->nup == FP_MAX_UPLINKS)
		return -ENOSPC;
	struct bpf_tc_hook *h = &f->hook[f->nup];
	struct bpf_tc_opts *o = &f->opts[f->nup];
	*h = (struct bpf_tc_hook){
	    .sz = sizeof(*h), .ifindex = ifindex, .attach_point = BPF_TC_INGRESS};
	int ret = bpf_tc_hook_create(h);
	if (ret && ret != -EEXIST)
		return ret;
	*o = (struct bpf_tc_opts){.sz = sizeof(*o),
	                          .handle = FP_TC_HANDLE,
	                          .priority = FP_TC_HANDLE,
	                          .prog_fd = bpf_program__fd(f->skel->progs.peak_fp_rx),
	                          .flags = BPF_TC_F_REPLACE};
	if ((ret = bpf_tc_attach(h, o)))
		return ret;
	f->nup++;
	return 0;
}

/* The uplinks (see fpload.h). */
static int attach_uplinks(struct ov_fp *f, const struct sockaddr_in *listen)
{
	struct ifaddrs *ifa, *i;
	int ret = 0;
	if (getifaddrs(&ifa) == -1)
		return -errno;
	for (i = ifa; i && !ret; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
		    (i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP))
			continue;
		const struct sockaddr_in *a = (const void *)i->ifa_addr;
		if (listen->sin_addr.s_addr && a->sin_addr.s_addr != listen->sin_addr.s_addr)
			continue;
		int ix = (int)if_nametoindex(i->ifa_name);
		bool seen = ix <= 0 || ix == f->tun_ifindex;
		for (unsigned k = 0; k < f->nup && !seen; k++)
			seen = f->hook[k].ifindex == ix;
		if (!seen)
			ret = attach_uplink(f, ix);
	}
	freeifaddrs(ifa);
	if (!ret && !f->nup)
		ret = -ENODEV;
	return ret;
}

struct ov_fp *fp_open(const char *tun, const struct sockaddr_in *listen, const uint8_t id[8],
                      uint64_t epoch, char *err, size_t errlen)
{
	struct ov_fp *f = calloc(1, sizeof(*f));
	struct fp_conf c = {.epoch = epoch, .port = listen->sin_port};
	uint32_t zero = 0;
	int ret;
	if (!f) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	f->tun_ifindex = (int)if_nametoindex(tun);
	if (f->tun_ifindex <= 0) {
		snprintf(err, errlen, "%s: %s", tun, strerror(errno));
		goto fail;
	}
	if (!(f->skel = fastpath_bpf__open_and_load())) {
		snprintf(err, errlen, "loading the BPF programs: %s", strerror(errno));
		goto fail;
	}
	memcpy(c.id, id, 8);
	c.tun_ifindex = (uint32_t)f->tun_ifindex;
	if (bpf_map_update_elem(bpf_map__fd(f->skel->maps.fp_conf), &zero, &c, BPF_ANY)) {
		snprintf(err, errlen, "fp_conf: %s", strerror(errno));
		goto fail;
	}
	if ((ret = attach_uplinks(f, listen))) {
		snprintf(err, errlen, "tc ingress on the uplinks: %s", strerror(-ret));
		goto fail;
	}
	return f;
fail:
	fp_close(f);
	return NULL;
}

int fp_peer_add(struct ov_fp *f, uint32_t idx, const uint8_t id[8], const struct prefix *pfx,
                size_t n)
{
	struct fp_peer v = {.flags = FP_RX};
	uint64_t key;
	int ret;
	if (idx >= FP_MAX_PEERS)
		return -ENOSPC;
	memcpy(&key, id, 8);
	if (bpf_map_update_elem(bpf_map__fd(f->skel->maps.fp_peers), &idx, &v, BPF_ANY) ||
	    bpf_map_update_elem(bpf_map__fd(f->skel->maps.fp_ids), &key, &idx, BPF_ANY))
		return -errno;
	for (size_t i = 0; i < n; i++) {
		struct fp_key k = {.plen = pfx[i].len};
		memcpy(k.addr, pfx[i].addr, 16);
		if (pfx[i].family != PEAK_AFI_IP6)
			continue;
		if (bpf_map_update_elem(bpf_map__fd(f->skel->maps.fp_prefixes), &k, &idx, BPF_ANY))
			return -errno;
		if (f->nroutes == f->cap) {
			size_t cap = f->cap ? 2 * f->cap : 16;
			struct fp_route *r = realloc(f->routes, cap * sizeof(*r));
			if (!r)
				return -ENOMEM;
			f->routes = r;
			f->cap = cap;
		}
		if ((ret = route_req(f, &pfx[i], true)))
			return ret;
		f->routes[f->nroutes++].p = pfx[i];
	}
	return 0;
}

int fp_peer_endpoint(struct ov_fp *f, uint32_t idx, const struct sockaddr_in *ep)
{
	int fd = bpf_map__fd(f->skel->maps.fp_peers);
	struct fp_peer v;
	if (bpf_map_lookup_elem(fd, &idx, &v))
		return -errno;
	v.flags &= ~(uint32_t)FP_TX;
	if (ep) { /* our source toward it: what a connected UDP socket is given */
		struct sockaddr_in me;
		socklen_t len = sizeof(me);
		int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (s == -1)
			return -errno;
		int ret = connect(s, (const struct sockaddr *)ep, sizeof(*ep)) ||
		                  getsockname(s, (struct sockaddr *)&me, &len)
		              ? -errno
		              : 0;
		close(s);
		if (ret)
			return ret;
		v.daddr = ep->sin_addr.s_addr;
		v.dport = ep->sin_port;
		v.saddr = me.sin_addr.s_addr;
		v.flags |= FP_TX;
	}
	/* the counter is the program's: a lookup and update race it by a packet or two,
	 * harmless for a plain packet's counter */
	return bpf_map_update_elem(fd, &idx, &v, BPF_ANY) ? -errno : 0;
}

void fp_counters(struct ov_fp *f, uint64_t out[FC_N])
{
	int ncpu = libbpf_num_possible_cpus();
	memset(out, 0, FC_N * sizeof(*out));
	if (ncpu <= 0)
		return;
	uint64_t *v = calloc((size_t)ncpu, sizeof(*v));
	if (!v)
		return;
	for (uint32_t c = 0; c < FC_N; c++) {
		if (bpf_map_lookup_elem(bpf_map__fd(f->skel->maps.fp_counters), &c, v))
			continue;
		for (int k = 0; k < ncpu; k++)
			out[c] += v[k];
	}
	free(v);
}

unsigned fp_uplinks(const struct ov_fp *f)
{
	return f->nup;
}

void fp_detach(struct ov_fp *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->nroutes; i++)
		(void)route_req(f, &f->routes[i].p, false);
	f->nroutes = 0;
	for (unsigned i = 0; i < f->nup; i++) {
		f->opts[i].flags = f->opts[i].prog_fd = f->opts[i].prog_id = 0;
		bpf_tc_detach(&f->hook[i], &f->opts[i]);
	}
	f->nup = 0;
}

void fp_close(struct ov_fp *f)
{
	if (!f)
		return;
	fp_detach(f);
	fastpath_bpf__destroy(f->skel);
	free(f->routes);
	free(f);
}
