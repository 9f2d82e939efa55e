#pragma once
/*
 * Facts about the TCP sockets of the current network namespace, from sock_diag and /proc:
 * how many connections are open, which socket listens on a port, and which process holds
 * a socket. The agent runs these inside each pod's namespace (netns_run).
 */
#include <stdint.h>
#include <sys/types.h>

/* Counts the TCP connections of the current network namespace (IPv6 and IPv4): sockets in
 * use (/proc/thread-self/net/sockstat[6], per-namespace counters) minus listeners (a
 * sock_diag dump of the listening table alone). Connecting and closing sockets count,
 * TIME_WAIT ones do not. O(listeners): the kernel's connection table, shared by all
 * namespaces and full of TIME_WAIT under a connection per request, is never walked.
 * Dumps the kernel flags interrupted are read again (nl_dump_retry). Returns 0 or -errno. */
int tcp_open_count(uint64_t *out);

/* The inode number of a TCP socket listening on port (IPv6 first, then IPv4) in the
 * current namespace. Returns 0, -ENOENT when nothing listens there, or -errno. */
int tcp_listener_inode(uint16_t port, uint64_t *ino);

/* A process holding the socket with this inode number (a scan of /proc/PID/fd, so
 * O(processes x descriptors): for occasional use). Returns the PID, -ENOENT, or -errno. */
pid_t socket_owner(uint64_t ino);
