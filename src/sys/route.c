#define _GNU_SOURCE /* setns */
#include "route.h"

#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <netinet/in.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { NL_BUF = 32768 }; /* more than MNL_SOCKET_BUFFER_SIZE, and a constant */

int rt6_cmp(const void *a, const void *b)
{
	const struct rt6 *x = a, *y = b;
	int c = prefix_cmp(&x->dst, &y->dst);
	if (c)
		return c;
	c = memcmp(x->via, y->via, 16);
	if (c)
		return c < 0 ? -1 : 1;
	return (int)x->local - (int)y->local;
}

void rt6_diff(const struct rt6 *have, size_t nhave, const struct rt6 *want, size_t nwant,
              struct rt6 *add, size_t *nadd, struct rt6 *del, size_t *ndel)
{
	size_t i = 0, j = 0;
	*nadd = *ndel = 0;
	while (i < nhave || j < nwant) {
		int c = i == nhave ? 1 : j == nwant ? -1 : prefix_cmp(&have[i].dst, &want[j].dst);
		if (c < 0) {
			del[(*ndel)++] = have[i++];
		} else if (c > 0) {
			add[(*nadd)++] = want[j++];
		} else {
			/* Same destination: unchanged, or replaced in place (no delete, no gap). */
			if (rt6_cmp(&have[i], &want[j]))
				add[(*nadd)++] = want[j];
			i++, j++;
		}
	}
}

static struct mnl_socket *nl_open(void)
{
	struct mnl_socket *nl = mnl_socket_open(NETLINK_ROUTE);
	int one = 1, buf = 8 << 20;
	if (!nl)
		return NULL;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		mnl_socket_close(nl);
		return NULL;
	}
	mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &one, sizeof(one));
	setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	return nl;
}

static int dump_attr(const struct nlattr *a, void *data)
{
	const struct nlattr **tb = data;
	int t = mnl_attr_get_type(a);
	if (t <= RTA_MAX)
		tb[t] = a;
	return MNL_CB_OK;
}

static int dump_cb(const struct nlmsghdr *nlh, void *data)
{
	struct rt6_dump_ctx *d = data;
	const struct nlattr *tb[RTA_MAX + 1] = {0};
	if (nlh->nlmsg_flags & NLM_F_DUMP_INTR) {
		/* (libmnl 1.0.4 checks this before the callback; older ones do not) */
		d->err = -EINTR;
		return MNL_CB_ERROR;
	}
	if (nlh->nlmsg_type != RTM_NEWROUTE || nlh->nlmsg_len < NLMSG_LENGTH(sizeof(struct rtmsg)))
		return MNL_CB_OK;
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
	if (rtm->rtm_family != AF_INET6 || rtm->rtm_protocol != RTPROT_PEAK)
		return MNL_CB_OK;
	mnl_attr_parse(nlh, sizeof(*rtm), dump_attr, tb);
	unsigned table = tb[RTA_TABLE] ? mnl_attr_get_u32(tb[RTA_TABLE]) : rtm->rtm_table;
	if (table != d->table)
		return MNL_CB_OK;
	if (d->n == d->cap) {
		size_t nc = d->cap ? 2 * d->cap : 256;
		struct rt6 *nv = realloc(d->v, nc * sizeof(*nv));
		if (!nv) {
			d->err = -ENOMEM;
			return MNL_CB_ERROR;
		}
		d->v = nv;
		d->cap = nc;
	}
	struct rt6 *r = &d->v[d->n++];
	memset(r, 0, sizeof(*r));
	r->dst.family = PEAK_AFI_IP6;
	r->dst.len = rtm->rtm_dst_len;
	if (tb[RTA_DST] && mnl_attr_get_payload_len(tb[RTA_DST]) == 16)
		memcpy(r->dst.addr, mnl_attr_get_payload(tb[RTA_DST]), 16);
	if (tb[RTA_GATEWAY] && mnl_attr_get_payload_len(tb[RTA_GATEWAY]) == 16)
		memcpy(r->via, mnl_attr_get_payload(tb[RTA_GATEWAY]), 16);
	r->local = rtm->rtm_type == RTN_LOCAL;
	return MNL_CB_OK;
}

int rt6_dump_feed(struct rt6_dump_ctx *d, const void *buf, size_t len, uint32_t seq,
                  uint32_t portid)
{
	errno = 0;
	int r = mnl_cb_run(buf, len, seq, portid, dump_cb, d);
	if (r == MNL_CB_STOP)
		return 1;
	if (r >= 0)
		return 0;
	if (d->err)
		return d->err;
	return errno ? -errno : -EPROTO; /* EINTR: libmnl saw NLM_F_DUMP_INTR */
}

int nl_dump_retry(int (*dump)(void *arg), void *arg)
{
	int r = -EINTR;
	for (unsigned i = 0; i < NL_DUMP_TRIES && r == -EINTR; i++)
		r = dump(arg);
	return r;
}

struct dump_args {
	unsigned table;
	struct rt6 **out;
	size_t *n;
};

/* One try of rt6_dump. */
static int dump_once(void *arg)
{
	const struct dump_args *a = arg;
	char buf[NL_BUF];
	struct rt6_dump_ctx d = {.table = a->table};
	struct mnl_socket *nl = nl_open();
	int ret = 0;
	if (!nl)
		return -errno;
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_GETROUTE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = (uint32_t)time(NULL);
	uint32_t seq = nlh->nlmsg_seq;
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = AF_INET6;
	unsigned portid = mnl_socket_get_portid(nl);
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		ret = -errno;
		goto out;
	}
	while (!ret) {
		ssize_t k = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (k < 0) {
			ret = -errno;
			goto out;
		}
		ret = rt6_dump_feed(&d, buf, (size_t)k, seq, portid);
	}
	if (ret < 0)
		goto out;
	ret = 0;
	if (d.n > 1) /* (qsort of a NULL array is undefined even for 0 elements) */
		qsort(d.v, d.n, sizeof(*d.v), rt6_cmp);
	*a->out = d.v;
	*a->n = d.n;
	d.v = NULL;
out:
	free(d.v);
	mnl_socket_close(nl); /* with whatever an interrupted dump left unread */
	return ret;
}

int rt6_dump(unsigned table, struct rt6 **out, size_t *n)
{
	struct dump_args a = {table, out, n};
	*out = NULL;
	*n = 0;
	return nl_dump_retry(dump_once, &a);
}

/* Puts one route message into the batch's current slot. */
static void put_route(char *at, uint16_t type, uint16_t flags, uint32_t seq, unsigned table,
                      const struct rt6 *r, uint32_t lo_index)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(at);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = flags;
	nlh->nlmsg_seq = seq;
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = AF_INET6;
	rtm->rtm_dst_len = r->dst.len;
	rtm->rtm_table = table < 256 ? (uint8_t)table : RT_TABLE_UNSPEC;
	rtm->rtm_protocol = RTPROT_PEAK;
	rtm->rtm_scope = r->local ? RT_SCOPE_HOST : RT_SCOPE_UNIVERSE;
	rtm->rtm_type = r->local ? RTN_LOCAL : RTN_UNICAST;
	mnl_attr_put(nlh, RTA_DST, 16, r->dst.addr);
	if (table >= 256)
		mnl_attr_put_u32(nlh, RTA_TABLE, table);
	static const uint8_t zero[16];
	if (memcmp(r->via, zero, 16))
		mnl_attr_put(nlh, RTA_GATEWAY, 16, r->via);
	if (r->local)
		mnl_attr_put_u32(nlh, RTA_OIF, lo_index);
	else if (r->oif)
		mnl_attr_put_u32(nlh, RTA_OIF, r->oif);
}

/* Sends a batch of count requests and reads their acks. Returns the first error. */
static int batch_send(struct mnl_socket *nl, struct mnl_nlmsg_batch *b, unsigned count,
                      bool deleting)
{
	char buf[NL_BUF];
	int ret = 0;
	if (!count)
		return 0;
	if (mnl_socket_sendto(nl, mnl_nlmsg_batch_head(b), mnl_nlmsg_batch_size(b)) < 0)
		return -errno;
	for (unsigned acks = 0; acks < count;) {
		ssize_t k = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (k < 0)
			return -errno;
		struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
		int len = (int)k;
		for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
			if (nlh->nlmsg_type != NLMSG_ERROR)
				continue;
			const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
			acks++;
			bool gone = deleting && (e->error == -ESRCH || e->error == -ENOENT);
			if (e->error && !gone && !ret)
				ret = e->error;
		}
	}
	return ret;
}

static int apply_one_kind(struct mnl_socket *nl, unsigned table, const struct rt6 *v, size_t n,
                          bool add, uint32_t lo_index)
{
	static char buf[1 << 17];
	struct mnl_nlmsg_batch *b = mnl_nlmsg_batch_start(buf, sizeof(buf) / 2);
	uint16_t type = add ? RTM_NEWROUTE : RTM_DELROUTE;
	uint16_t flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_REPLACE : 0);
	unsigned count = 0;
	uint32_t seq = (uint32_t)time(NULL);
	int ret = 0, e;
	for (size_t i = 0; i < n; i++) {
		put_route(mnl_nlmsg_batch_current(b), type, flags, seq++, table, &v[i], lo_index);
		count++;
		if (mnl_nlmsg_batch_next(b))
			continue;
		/* The batch is full (the last message did not fit): send the others; reset moves
		 * the last one to the start of the next batch. */
		if ((e = batch_send(nl, b, count - 1, !add)) && !ret)
			ret = e;
		mnl_nlmsg_batch_reset(b);
		count = 1;
	}
	if ((e = batch_send(nl, b, count, !add)) && !ret)
		ret = e;
	mnl_nlmsg_batch_stop(b);
	return ret;
}

int rt6_apply(unsigned table, const struct rt6 *add, size_t nadd, const struct rt6 *del,
              size_t ndel)
{
	struct mnl_socket *nl = nl_open();
	if (!nl)
		return -errno;
	uint32_t lo = if_nametoindex("lo");
	/* Additions first: when a block splits or merges, the new routes are in place before
	 * the old ones go, so no address is without a route in between. */
	int r1 = apply_one_kind(nl, table, add, nadd, true, lo);
	int r2 = apply_one_kind(nl, table, del, ndel, false, lo);
	mnl_socket_close(nl);
	return r1 ? r1 : r2;
}

int netns_run(const char *name, int (*fn)(void *), void *arg)
{
	char path[256];
	int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self == -1)
		return -errno;
	snprintf(path, sizeof(path), "/run/netns/%s", name);
	int ns = open(path, O_RDONLY | O_CLOEXEC);
	if (ns == -1 || setns(ns, CLONE_NEWNET) == -1) {
		int e = -errno;
		if (ns != -1)
			close(ns);
		close(self);
		return e;
	}
	int r = fn(arg);
	if (setns(self, CLONE_NEWNET) == -1)
		r = -errno; /* cannot happen for our own namespace; reported all the same */
	close(ns);
	close(self);
	return r;
}
