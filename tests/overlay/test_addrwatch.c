/* The gateway's address watch (src/overlay/addrwatch.h): IPv4 address and route additions
 * and removals in a datagram of rtnetlink messages are counted, other families and message types
 * are not, the messages' padding is skipped, and a message that does not fit ends the count (what
 * came before it stays counted). The socket itself is only opened here (changing addresses needs
 * root): tests/regress/test_overlay_address_change_told_at_once.py watches it work. */
#include "../unit/test.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addrwatch.h"

/* Appends a message of type with an ifaddrmsg of family and extra bytes of attributes. */
static size_t put(uint8_t *buf, size_t off, uint16_t type, uint8_t family, size_t extra)
{
	struct nlmsghdr h = {.nlmsg_len = (uint32_t)NLMSG_LENGTH(sizeof(struct ifaddrmsg) + extra),
	                     .nlmsg_type = type};
	struct ifaddrmsg ifa = {.ifa_family = family, .ifa_prefixlen = 24};
	memset(buf + off, 0xee, NLMSG_ALIGN(h.nlmsg_len));
	memcpy(buf + off, &h, sizeof(h));
	memcpy(buf + off + NLMSG_HDRLEN, &ifa, sizeof(ifa));
	return off + NLMSG_ALIGN(h.nlmsg_len);
}

static void test_counts_ipv4_changes_only(void **state)
{
	(void)state;
	uint8_t buf[1024];
	size_t n = put(buf, 0, RTM_NEWADDR, AF_INET, 3); /* 3: padding follows */
	n = put(buf, n, RTM_DELADDR, AF_INET, 8);
	n = put(buf, n, RTM_NEWADDR, AF_INET6, 20);
	n = put(buf, n, RTM_NEWLINK, AF_INET, 0);
	n = put(buf, n, RTM_NEWADDR, AF_INET, 0);
	assert_int_equal(addrwatch_count(buf, n), 3);
	n = put(buf, n, RTM_NEWROUTE, AF_INET, 8); /* (an rtmsg is as long as 12 bytes) */
	n = put(buf, n, RTM_DELROUTE, AF_INET6, 8);
	n = put(buf, n, RTM_DELROUTE, AF_INET, 8);
	assert_int_equal(addrwatch_count(buf, n), 5);
	assert_int_equal(addrwatch_count(buf, 0), 0);
}

static void test_stops_at_what_does_not_fit(void **state)
{
	(void)state;
	uint8_t buf[1024];
	size_t one = put(buf, 0, RTM_NEWADDR, AF_INET, 0);
	size_t two = put(buf, one, RTM_NEWADDR, AF_INET, 0);
	assert_int_equal(addrwatch_count(buf, two - 1), 1); /* the second cut short */
	assert_int_equal(addrwatch_count(buf, one - 1), 0);
	struct nlmsghdr h;
	memcpy(&h, buf + one, sizeof(h));
	h.nlmsg_len = 4; /* shorter than its own header: the count ends there */
	memcpy(buf + one, &h, sizeof(h));
	assert_int_equal(addrwatch_count(buf, two), 1);
	h.nlmsg_len = NLMSG_HDRLEN + 2; /* too short for an ifaddrmsg: not counted, walked past */
	memcpy(buf + one, &h, sizeof(h));
	size_t three = put(buf, one + NLMSG_ALIGN(h.nlmsg_len), RTM_DELADDR, AF_INET, 0);
	assert_int_equal(addrwatch_count(buf, three), 2);
}

static void test_socket_opens(void **state)
{
	(void)state;
	int fd = addrwatch_open();
	assert_true(fd >= 0);
	assert_int_equal(addrwatch_read(fd), 0); /* nothing changed: nothing waiting */
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counts_ipv4_changes_only),
	    cmocka_unit_test(test_stops_at_what_does_not_fit),
	    cmocka_unit_test(test_socket_opens),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
