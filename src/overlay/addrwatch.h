#pragma once
/*
 * Watching the host's own IPv4 addresses and routes (rtnetlink, RTMGRP_IPV4_IFADDR and
 * RTMGRP_IPV4_ROUTE): a gateway whose uplink address or default route changed (a roaming
 * host, a reconnecting router) tells its peers at once
 * instead of at its next keepalive, so they answer with its new mapping and follow it.
 * addrwatch_count is pure (fuzzed); the rest is the socket.
 */
#include <stddef.h>
#include <stdint.h>

/* Counts the IPv4 address and route additions and removals (RTM_NEWADDR / RTM_DELADDR,
 * RTM_NEWROUTE / RTM_DELROUTE, family AF_INET) in one datagram of netlink messages; stops
 * at the first message that does not fit (what came before it counts). */
unsigned addrwatch_count(const uint8_t *buf, size_t n);

/* Opens a non-blocking rtnetlink socket subscribed to IPv4 address and route changes.
 * Returns the descriptor or -errno. */
int addrwatch_open(void);

/* Reads every datagram waiting on fd: the IPv4 changes they report, or -errno
 * (ENOBUFS: the socket overflowed, so some change may have been missed: count it as one). */
int addrwatch_read(int fd);
