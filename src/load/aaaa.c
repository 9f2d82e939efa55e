/* peak load's legacy client: a plain AAAA lookup, as a stub resolver on the client's host
 * makes it (see load.h). */
#define _GNU_SOURCE
#include "load.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peak/dns.h"
#include "peak/util.h"

enum {
	AAAA_MSG_MAX = 1232, /* the reply is read up to this; a truncated one is refused */
	AAAA_TRIES = 3,
};

int load_aaaa_lookup(const struct sockaddr_in6 *server, const struct in6_addr *src,
                     const char *name, unsigned timeout_ms, struct in6_addr *out, unsigned max,
                     uint32_t *ttl)
{
	struct dns_name qn;
	uint8_t q[512], m[AAAA_MSG_MAX];
	uint16_t id;
	int fd = -1, ret = -EINVAL, one = 1;
	unsigned n = 0;
	*ttl = 0;
	if (dns_name_parse(name, &qn))
		goto out;
	if (getrandom(&id, sizeof(id), 0) != sizeof(id))
		id = (uint16_t)peak_mono_ns();
	struct dns_writer dw;
	dns_writer_init(&dw, q, sizeof(q), id, DNS_F_RD);
	dns_writer_question(&dw, &qn, DNS_T_AAAA, DNS_C_IN);
	int qlen = dns_writer_finish(&dw);
	if (qlen < 0) {
		ret = qlen;
		goto out;
	}
	fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		ret = -errno;
		goto out;
	}
	if (src && !IN6_IS_ADDR_UNSPECIFIED(src)) {
		struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = *src};
		setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one));
		if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) == -1) {
			ret = -errno;
			goto out;
		}
	}
	if (connect(fd, (const struct sockaddr *)server, sizeof(*server)) == -1) {
		ret = -errno;
		goto out;
	}
	ret = -ETIMEDOUT;
	for (unsigned t = 0; t < AAAA_TRIES && ret == -ETIMEDOUT; t++) {
		if (send(fd, q, (size_t)qlen, 0) != qlen) {
			ret = -errno;
			goto out;
		}
		uint64_t end = peak_mono_ms() + timeout_ms;
		for (uint64_t now = peak_mono_ms(); now < end; now = peak_mono_ms()) {
			struct pollfd pf = {.fd = fd, .events = POLLIN};
			if (poll(&pf, 1, (int)(end - now)) != 1)
				continue;
			ssize_t k = recv(fd, m, sizeof(m), 0);
			struct dns_reader r;
			struct dns_question qq;
			if (k <= 0 || dns_reader_init(&r, m, (size_t)k) || r.hdr.id != id ||
			    !(r.hdr.flags & DNS_F_QR) || dns_reader_question(&r, &qq) ||
			    !dns_name_eq(&qq.name, &qn) || qq.type != DNS_T_AAAA)
				continue; /* not the answer to this query: wait on */
			if (r.hdr.flags & DNS_F_TC) {
				ret = -EMSGSIZE;
				goto out;
			}
			if (r.hdr.flags & 0xf) {
				ret = -ENOENT; /* an error rcode */
				goto out;
			}
			struct dns_rr rr;
			while (!dns_reader_rr(&r, &rr) && rr.section == DNS_S_ANSWER) {
				if (rr.type != DNS_T_AAAA || rr.class != DNS_C_IN ||
				    rr.rdlen != 16 || !dns_name_eq(&rr.name, &qn))
					continue;
				if (!n || rr.ttl < *ttl)
					*ttl = rr.ttl;
				if (n < max)
					memcpy(&out[n++], rr.rdata, 16);
			}
			ret = n ? (int)n : -ENOENT;
			goto out;
		}
	}
out:
	if (fd != -1)
		close(fd);
	return ret;
}
