/* The host's IPv4 address changes through rtnetlink (addrwatch.h). */
#include "addrwatch.h"

#include <errno.h>
#include <stdbool.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peak/cur.h"

unsigned addrwatch_count(const uint8_t *buf, size_t n)
{
	struct cur c = cur_make(buf, n);
	unsigned changes = 0;
	while (c.left >= sizeof(struct nlmsghdr)) {
		struct nlmsghdr h; /* (host byte order, unlike the cursor's integers) */
		memcpy(&h, c.p, sizeof(h));
		if (h.nlmsg_len < sizeof(h) || h.nlmsg_len > c.left)
			break;
		const uint8_t *msg = cur_ptr(&c, h.nlmsg_len);
		bool addr = h.nlmsg_type == RTM_NEWADDR || h.nlmsg_type == RTM_DELADDR;
		bool route = h.nlmsg_type == RTM_NEWROUTE || h.nlmsg_type == RTM_DELROUTE;
		/* both bodies start with the family byte (ifa_family, rtm_family) */
		if ((addr && h.nlmsg_len >= NLMSG_LENGTH(sizeof(struct ifaddrmsg))) ||
		    (route && h.nlmsg_len >= NLMSG_LENGTH(sizeof(struct rtmsg)))) {
			if (msg[NLMSG_HDRLEN] == AF_INET)
				changes++;
		}
		size_t pad = NLMSG_ALIGN(h.nlmsg_len) - h.nlmsg_len;
		if (pad > c.left)
			break; /* the last message's padding: nothing follows */
		cur_skip(&c, pad);
	}
	return changes;
}

int addrwatch_open(void)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd == -1)
		return -errno;
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK,
	                         .nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE};
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

int addrwatch_read(int fd)
{
	static uint8_t buf[8192];
	int changes = 0;
	for (;;) {
		struct sockaddr_nl from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return changes;
			if (errno == ENOBUFS) { /* overflowed: something changed, we missed what */
				changes++;
				continue;
			}
			return -errno;
		}
		if (fl == sizeof(from) && from.nl_pid == 0) /* the kernel's, not another process' */
			changes += (int)addrwatch_count(buf, (size_t)n);
	}
}
