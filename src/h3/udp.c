/* UDP sockets with per-datagram destination addresses (RFC 3542 §6 IPV6_PKTINFO). */
#define _GNU_SOURCE /* struct in6_pktinfo (RFC 3542) */
#include "udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../sys/net.h"

/* Asks for a socket buffer of H3_UDP_BUF_BYTES: above net.core.[rw]mem_max only with
 * CAP_NET_ADMIN (the FORCE option), else as much as that allows. */
static void udp_buf(int fd, int opt, int force)
{
	int want = H3_UDP_BUF_BYTES, have = 0;
	socklen_t len = sizeof(have);
	setsockopt(fd, SOL_SOCKET, opt, &want, sizeof(want));
	/* the kernel reports twice what it was asked (its bookkeeping overhead) */
	if (getsockopt(fd, SOL_SOCKET, opt, &have, &len) == 0 && have < want)
		setsockopt(fd, SOL_SOCKET, force, &want, sizeof(want));
}

void h3_udp_buffers(int fd)
{
	udp_buf(fd, SO_RCVBUF, SO_RCVBUFFORCE);
	udp_buf(fd, SO_SNDBUF, SO_SNDBUFFORCE);
}

void h3_udp_gro(int fd)
{
	int one = 1;
	/* many datagrams per read on a busy socket; a kernel without it gives one each */
	if (!getenv("PEAK_H3_NO_GRO"))
		setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one));
}

int h3_udp_bind(const struct h3_addr *addr)
{
	int one = 1;
	int fd = socket(addr->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (addr->ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) == -1)
		goto fail;
	/* a slice address of an AnyIP route is local but may not be on an interface yet */
	if (addr->ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one)) == -1)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) == -1)
		goto fail;
	h3_udp_buffers(fd);
	h3_udp_gro(fd);
	return fd;
fail:;
	int err = -errno;
	close(fd);
	return err;
}

int h3_udp_connect(const struct h3_addr *peer, struct h3_addr *local)
{
	int fd = socket(peer->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	local->len = sizeof(local->ss);
	h3_udp_buffers(fd);
	if (connect(fd, (const struct sockaddr *)&peer->ss, peer->len) == -1 ||
	    getsockname(fd, (struct sockaddr *)&local->ss, &local->len) == -1) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* Reads what the kernel says of a received message: the destination address into to (bound
 * when it does not say) and, with UDP GRO, the size of its coalesced datagrams into *seg (0: a
 * single datagram of r bytes). */
static void rx_meta(struct msghdr *msg, size_t r, struct h3_addr *to, const struct h3_addr *bound,
                    size_t *seg)
{
	*seg = 0;
	*to = *bound;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
			int g;
			memcpy(&g, CMSG_DATA(c), sizeof(g));
			if (g > 0 && (size_t)g < r)
				*seg = (size_t)g;
			continue;
		}
		if (c->cmsg_level != IPPROTO_IPV6 || c->cmsg_type != IPV6_PKTINFO ||
		    to->ss.ss_family != AF_INET6)
			continue;
		struct in6_pktinfo pi;
		memcpy(&pi, CMSG_DATA(c), sizeof(pi));
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&to->ss;
		sin6->sin6_addr = pi.ipi6_addr;
		/* a link-local destination needs its interface to answer from it */
		sin6->sin6_scope_id = IN6_IS_ADDR_LINKLOCAL(&pi.ipi6_addr) ? pi.ipi6_ifindex : 0;
	}
}

/* room for IPV6_PKTINFO and UDP_GRO */
union rx_cmsg {
	char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(int))];
	struct cmsghdr align;
};

ssize_t h3_udp_recv(int fd, uint8_t *buf, size_t n, struct h3_addr *from, struct h3_addr *to,
                    const struct h3_addr *bound, size_t *seg)
{
	union rx_cmsg cm;
	struct iovec iov = {buf, n};
	struct msghdr msg = {
	    .msg_name = &from->ss,
	    .msg_namelen = sizeof(from->ss),
	    .msg_iov = &iov,
	    .msg_iovlen = 1,
	    .msg_control = cm.buf,
	    .msg_controllen = sizeof(cm.buf),
	};
	ssize_t r;
	size_t g;
	do
		r = recvmsg(fd, &msg, MSG_DONTWAIT);
	while (r == -1 && errno == EINTR);
	if (r == -1) {
		if (seg)
			*seg = 0;
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
	from->len = msg.msg_namelen;
	rx_meta(&msg, (size_t)r, to, bound, &g);
	if (seg)
		*seg = g;
	return r;
}

int h3_udp_reader_init(struct h3_udp_reader *rd, size_t nmsg)
{
	memset(rd, 0, sizeof(*rd));
	if (getenv("PEAK_H3_NO_MMSG"))
		nmsg = 1;
	if (nmsg < 1)
		nmsg = 1;
	if (nmsg > H3_UDP_MMSG_MAX)
		nmsg = H3_UDP_MMSG_MAX;
	if (!(rd->buf = malloc(nmsg * H3_UDP_RX_BYTES)))
		return -ENOMEM;
	rd->nmsg = nmsg;
	return 0;
}

void h3_udp_reader_fini(struct h3_udp_reader *rd)
{
	free(rd->buf);
	rd->buf = NULL;
	rd->nmsg = 0;
}

ssize_t h3_udp_read(struct h3_udp_reader *rd, int fd, const struct h3_addr *bound, size_t max,
                    h3_udp_dgram_fn fn, void *arg)
{
	struct mmsghdr mm[H3_UDP_MMSG_MAX];
	struct iovec iov[H3_UDP_MMSG_MAX];
	union rx_cmsg cm[H3_UDP_MMSG_MAX];
	struct h3_addr from[H3_UDP_MMSG_MAX], to;
	size_t done = 0;
	while (done < max) {
		for (size_t i = 0; i < rd->nmsg; i++) {
			iov[i] = (struct iovec){rd->buf + i * H3_UDP_RX_BYTES, H3_UDP_RX_BYTES};
			mm[i].msg_hdr = (struct msghdr){
			    .msg_name = &from[i].ss,
			    .msg_namelen = sizeof(from[i].ss),
			    .msg_iov = &iov[i],
			    .msg_iovlen = 1,
			    .msg_control = cm[i].buf,
			    .msg_controllen = sizeof(cm[i].buf),
			};
			mm[i].msg_len = 0;
		}
		int got;
		do
			got = recvmmsg(fd, mm, (unsigned)rd->nmsg, MSG_DONTWAIT, NULL);
		while (got == -1 && errno == EINTR);
		if (got == -1)
			return errno == EWOULDBLOCK ? (ssize_t)done : -errno;
		if (got == 0)
			break;
		__atomic_fetch_add(&rd->st.calls, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&rd->st.msgs, (uint64_t)got, __ATOMIC_RELAXED);
		for (int i = 0; i < got; i++) {
			size_t n = mm[i].msg_len, seg;
			const uint8_t *p = rd->buf + (size_t)i * H3_UDP_RX_BYTES;
			from[i].len = mm[i].msg_hdr.msg_namelen;
			rx_meta(&mm[i].msg_hdr, n, &to, bound, &seg);
			if (!seg)
				seg = n ? n : 1;
			__atomic_fetch_add(&rd->st.bytes, (uint64_t)n, __ATOMIC_RELAXED);
			/* each GRO segment is a datagram of its own; an empty one is one too */
			size_t off = 0;
			do {
				size_t k = n - off < seg ? n - off : seg;
				__atomic_fetch_add(&rd->st.dgrams, 1, __ATOMIC_RELAXED);
				done++;
				if (fn(arg, &to, &from[i], p + off, k))
					return (ssize_t)done;
				off += k;
			} while (off < n);
		}
		if ((size_t)got < rd->nmsg)
			break; /* the queue is drained: spare the call that would say EAGAIN */
	}
	return (ssize_t)done;
}

int h3_udp_send(int fd, const struct h3_addr *from, const struct h3_addr *to, const uint8_t *p,
                size_t n, size_t gso)
{
	union {
		char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} cm;
	size_t clen = 0;
	struct iovec iov = {(void *)p, n};
	struct msghdr msg = {
	    .msg_name = (void *)&to->ss,
	    .msg_namelen = to->len,
	    .msg_iov = &iov,
	    .msg_iovlen = 1,
	};
	memset(&cm, 0, sizeof(cm));
	msg.msg_control = cm.buf;
	msg.msg_controllen = sizeof(cm.buf);
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (from && from->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *src = (const struct sockaddr_in6 *)&from->ss;
		if (!IN6_IS_ADDR_UNSPECIFIED(&src->sin6_addr)) {
			struct in6_pktinfo pi = {.ipi6_addr = src->sin6_addr,
			                         .ipi6_ifindex = src->sin6_scope_id};
			c->cmsg_level = IPPROTO_IPV6;
			c->cmsg_type = IPV6_PKTINFO;
			c->cmsg_len = CMSG_LEN(sizeof(pi));
			memcpy(CMSG_DATA(c), &pi, sizeof(pi));
			clen += CMSG_SPACE(sizeof(pi));
			c = CMSG_NXTHDR(&msg, c);
		}
	}
	if (gso && n > gso) {
		uint16_t seg = (uint16_t)gso;
		c->cmsg_level = SOL_UDP;
		c->cmsg_type = UDP_SEGMENT;
		c->cmsg_len = CMSG_LEN(sizeof(seg));
		memcpy(CMSG_DATA(c), &seg, sizeof(seg));
		clen += CMSG_SPACE(sizeof(seg));
	}
	msg.msg_controllen = clen;
	if (!clen)
		msg.msg_control = NULL;
	ssize_t r;
	do
		r = sendmsg(fd, &msg, 0);
	while (r == -1 && errno == EINTR);
	if (r == -1)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return 0;
}

int h3_addr_parse(const char *s, struct h3_addr *addr)
{
	memset(addr, 0, sizeof(*addr));
	return sockaddr_parse(s, &addr->ss, &addr->len);
}

void h3_addr_format(const struct h3_addr *addr, char *out, size_t n)
{
	sockaddr_print((const struct sockaddr *)&addr->ss, out, n);
}
