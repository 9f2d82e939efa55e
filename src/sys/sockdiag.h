#pragma once
/*
 * Facts about the TCP sockets of the current network namespace, from sock_diag and /proc:
 * how many connections are open, which socket listens on a port, and which process holds
 * a socket. The agent runs these inside each pod's namespace (netns_run).
 */
#include <stdbool.h>
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

/* The accept queue of the TCP sockets listening on port in the current namespace (IPv6
 * and IPv4, every SO_REUSEPORT member): connections the kernel completed that the pod has
 * not accepted yet (*queued), and the queues' limit, listen()'s backlog (*backlog), both
 * summed over the listeners. A pod that keeps up holds its queue near 0. Returns 0,
 * -ENOENT when nothing listens there, or -errno. */
int tcp_accept_queue(uint16_t port, uint32_t *queued, uint32_t *backlog);

/* A process holding the socket with this inode number (a scan of /proc/PID/fd, so
 * O(processes x descriptors): for occasional use). Returns the PID, -ENOENT, or -errno. */
pid_t socket_owner(uint64_t ino);

/* Counts the IPv6 TCP connections of the current namespace that someone still holds (not
 * listening, TIME_WAIT or closed) whose local address want() accepts. IPv4 sockets are
 * walked too and not counted. Returns 0, -EINTR (the dump was interrupted: nl_dump_retry)
 * or -errno; *out gets the count so far. */
int tcp6_count_local(bool (*want)(const uint8_t addr[16], void *arg), void *arg, uint64_t *out);

/* The TCP state (TCP_ESTABLISHED ...) of the IPv6 connection of the current namespace with
 * this local and remote address and port (host order), found by one lookup in the kernel's
 * connection hash (no walk of the table). Returns 0, -ENOENT if there is none, or -errno. */
int tcp6_conn_state(const uint8_t local[16], uint16_t lport, const uint8_t remote[16],
                    uint16_t rport, int *state);

/* Destroys the TCP connections of the current namespace on local port (host order; 0: any)
 * whose local address want() accepts (NULL: any; with want, IPv6 ones only), in the states
 * in which the kernel then sends the peer a reset (SOCK_DESTROY; needs CONFIG_INET_DIAG_DESTROY
 * and CAP_NET_ADMIN). Dumps again while a dump was interrupted or filled the batch (at most
 * three times). The connections that received data last are destroyed first (the clients
 * waiting now before idle or abandoned ones). *done counts them. Returns 0 or -errno. */
int tcp_destroy(uint16_t port, bool (*want)(const uint8_t addr[16], void *arg), void *arg,
                unsigned *done);
