#pragma once
/* UDP datagrams for the QUIC endpoints: a non-blocking socket that learns each datagram's
 * destination address (IPV6_RECVPKTINFO), so a server bound to [::] or to an AnyIP prefix
 * answers from the address the client used. */
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

enum {
	/* each socket's receive and send buffer: the default 208 KiB holds three 64 KiB UDP
	 * GRO aggregates, and a sender's burst within its congestion window overflowed it
	 * (Udp6RcvbufErrors: 44 datagrams lost at a time on a clean path) */
	H3_UDP_BUF_BYTES = 4 * 1024 * 1024,
	/* one message of h3_udp_read: a datagram, or with UDP GRO several of one flow */
	H3_UDP_RX_BYTES = 65536,
	/* messages one h3_udp_read system call takes at most (recvmmsg) */
	H3_UDP_MMSG_MAX = 16,
};

/* A socket address with its length, as ngtcp2 paths take them. */
struct h3_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* Sets fd's receive and send buffers to H3_UDP_BUF_BYTES, or as near as the host allows
 * (net.core.rmem_max and wmem_max, exceeded only with CAP_NET_ADMIN). Every socket of
 * h3_udp_bind and h3_udp_connect has it. */
void h3_udp_buffers(int fd);

/* Lets the kernel coalesce datagrams of one flow on fd (UDP GRO), unless PEAK_H3_NO_GRO is
 * set: its reader must then pass seg to h3_udp_recv and split what it gets. */
void h3_udp_gro(int fd);

/* Opens a non-blocking UDP socket bound to addr (IPv6 sockets also learn each datagram's
 * destination; the kernel may coalesce datagrams of one flow, UDP GRO: see h3_udp_recv).
 * Returns the descriptor or -errno. */
int h3_udp_bind(const struct h3_addr *addr);

/* Opens a non-blocking UDP socket connected to peer and writes the local address chosen by
 * the kernel to local. Returns the descriptor or -errno. */
int h3_udp_connect(const struct h3_addr *peer, struct h3_addr *local);

/* Receives one datagram into buf[n], or on a socket of h3_udp_bind or h3_udp_gro several of one
 * flow back to back (UDP GRO): then *seg (when seg is not NULL) gets their size, each but the last
 * being seg bytes, and 0 for a single datagram. from gets the sender; to gets the destination
 * address with the socket's port (bound, the socket's own address when the kernel does not say).
 * Returns the length, -EAGAIN when nothing is queued, or -errno. */
ssize_t h3_udp_recv(int fd, uint8_t *buf, size_t n, struct h3_addr *from, struct h3_addr *to,
                    const struct h3_addr *bound, size_t *seg);

/* What a reader received: receive system calls that returned data, the messages they
 * returned (recvmmsg: several per call), the datagrams in those (UDP GRO: several per message)
 * and their bytes. Relaxed atomics: a metrics thread may read them at any time. */
struct h3_udp_rx_stats {
	uint64_t calls, msgs, dgrams, bytes;
};

/* The receive side of one socket loop: nmsg buffers of H3_UDP_RX_BYTES and the counters. */
struct h3_udp_reader {
	uint8_t *buf;
	size_t nmsg;
	struct h3_udp_rx_stats st;
};

/* Called by h3_udp_read for each datagram p[n] from from to to; nonzero stops the read. */
typedef int (*h3_udp_dgram_fn)(void *arg, const struct h3_addr *to, const struct h3_addr *from,
                               const uint8_t *p, size_t n);

/* Makes rd take up to nmsg messages per system call (at most H3_UDP_MMSG_MAX; 1 when
 * PEAK_H3_NO_MMSG is set). Returns 0 or -ENOMEM; h3_udp_reader_fini frees it. */
int h3_udp_reader_init(struct h3_udp_reader *rd, size_t nmsg);
void h3_udp_reader_fini(struct h3_udp_reader *rd);

/* Reads what is queued on fd, up to rd->nmsg messages per recvmmsg call, splits each UDP GRO
 * message into its datagrams and calls fn for each, until about max datagrams (the last call's
 * messages are all delivered), the queue is empty or fn says stop. bound is as for h3_udp_recv.
 * Returns the datagrams delivered, or -errno when a call failed (after delivering earlier ones). */
ssize_t h3_udp_read(struct h3_udp_reader *rd, int fd, const struct h3_addr *bound, size_t max,
                    h3_udp_dgram_fn fn, void *arg);

/* Sends p[n] to to, from the source address from when it is an IPv6 address (NULL or
 * unspecified: the kernel picks). With gso nonzero, p holds datagrams of gso bytes each (the
 * last may be shorter) that the kernel splits (UDP GSO, UDP_SEGMENT). Returns 0, -EAGAIN
 * when the socket buffer is full (the datagrams are dropped; QUIC recovers them) or -errno
 * (-EIO or -EINVAL when the kernel or the device cannot segment). */
int h3_udp_send(int fd, const struct h3_addr *from, const struct h3_addr *to, const uint8_t *p,
                size_t n, size_t gso);

/* Parses "[ADDR]:PORT", "ADDR:PORT" (IPv4) or "HOST:PORT" into addr; numeric only. Returns 0
 * or -EINVAL. */
int h3_addr_parse(const char *s, struct h3_addr *addr);

/* Writes addr as "[ADDR]:PORT" or "ADDR:PORT" into out[n]. */
void h3_addr_format(const struct h3_addr *addr, char *out, size_t n);
