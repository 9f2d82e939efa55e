#pragma once
/* Socket address helpers shared by PEAK's daemons. */
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* Parses "ADDR:PORT" or "[IPV6]:PORT" (port 0..65535). Returns 0 or -EINVAL. */
int sockaddr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* The i-th element of a comma-separated list of ADDR:PORT (a --controller list) into out
 * (cap bytes). Returns 0, -ENOENT (no i-th element) or -ENAMETOOLONG (it does not fit). */
int addr_list_at(const char *list, unsigned i, char *out, size_t cap);

/* Checks a comma-separated list of 1 to max ADDR:PORT (each sockaddr_parse's, under
 * cap bytes). Returns how many it holds, or -EINVAL. */
int addr_list_check(const char *list, unsigned max, size_t cap);

/* Prints an address as "ADDR:PORT" / "[IPV6]:PORT" into out (at least 64 bytes). */
char *sockaddr_print(const struct sockaddr *sa, char *out, size_t cap);

/* The 16-byte IPv6 form of a socket address (IPv4 as ::ffff:a.b.c.d); true if it was a real
 * IPv6 address. */
bool sockaddr_to_in6(const struct sockaddr *sa, uint8_t out[16]);

/* Sends buf[*off, len) on a non-blocking socket, advancing *off. Returns 1 when all of it
 * went, 0 when the socket is full (EAGAIN: call again when it is writable), or -errno when
 * the connection broke. EINTR is retried. */
int sock_send_rest(int fd, const void *buf, size_t len, size_t *off);

/* Sends one command line to a running daemon's control socket at path and prints the reply
 * (errors on stderr prefixed with who, e.g. "peak dns-ctl"). Returns 0 if the daemon answered
 * "ok", 2 if it refused the command (bad input: the reason is in the reply), 1 if it could
 * not be reached or the reply was cut short. */
int ctl_request(const char *who, const char *path, const char *line);
