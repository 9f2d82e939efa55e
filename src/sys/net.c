#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

int sockaddr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[64];
	const char *colon, *hb = s, *he;
	memset(ss, 0, sizeof(*ss));
	if (*s == '[') {
		hb = s + 1;
		he = strchr(hb, ']');
		if (!he || he[1] != ':')
			return -EINVAL;
		colon = he + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || strchr(s, ':') != colon)
			return -EINVAL; /* a bare IPv6 address needs brackets */
		he = colon;
	}
	if ((size_t)(he - hb) >= sizeof(host) || he == hb)
		return -EINVAL;
	memcpy(host, hb, (size_t)(he - hb));
	host[he - hb] = '\0';
	char *end;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || colon[1] == '+' || colon[1] == '-' || *end || errno || port > 65535)
		return -EINVAL;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	if (*s == '[' && inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*s6);
		return 0;
	}
	if (*s != '[' && inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*len = sizeof(*s4);
		return 0;
	}
	return -EINVAL;
}

int addr_list_at(const char *list, unsigned i, char *out, size_t cap)
{
	const char *p = list, *end;
	for (unsigned k = 0; k < i; k++) {
		if (!(p = strchr(p, ',')))
			return -ENOENT;
		p++;
	}
	end = strchr(p, ',');
	size_t n = end ? (size_t)(end - p) : strlen(p);
	if (n >= cap)
		return -ENAMETOOLONG;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

int addr_list_check(const char *list, unsigned max, size_t cap)
{
	char at[128];
	struct sockaddr_storage ss;
	socklen_t sl;
	unsigned n = 0;
	if (cap > sizeof(at))
		cap = sizeof(at);
	for (int r; (r = addr_list_at(list, n, at, cap)) != -ENOENT; n++)
		if (r || n == max || sockaddr_parse(at, &ss, &sl))
			return -EINVAL;
	return (int)n;
}

char *sockaddr_print(const struct sockaddr *sa, char *out, size_t cap)
{
	char a[INET6_ADDRSTRLEN];
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		snprintf(out, cap, "[%s]:%u", a, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		snprintf(out, cap, "%s:%u", a, ntohs(s4->sin_port));
	}
	return out;
}

bool sockaddr_to_in6(const struct sockaddr *sa, uint8_t out[16])
{
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		memcpy(out, &s6->sin6_addr, 16);
		return !IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr);
	}
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
	memset(out, 0, 10);
	out[10] = out[11] = 0xff;
	memcpy(out + 12, &s4->sin_addr, 4);
	return false;
}

int ctl_request(const char *who, const char *path, const char *line)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "%s: control path too long\n", who);
		return 1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		fprintf(stderr, "%s: cannot reach %s: %s\n", who, path, strerror(errno));
		if (fd != -1)
			close(fd);
		return 1;
	}
	size_t len = strlen(line);
	if (send(fd, line, len, MSG_NOSIGNAL) != (ssize_t)len ||
	    send(fd, "\n", 1, MSG_NOSIGNAL) != 1) {
		fprintf(stderr, "%s: cannot send to %s\n", who, path);
		close(fd);
		return 1;
	}
	shutdown(fd, SHUT_WR);
	char buf[4096], last[1024] = "";
	size_t have = 0;
	ssize_t k;
	while ((k = recv(fd, buf, sizeof(buf), 0)) > 0) {
		fwrite(buf, 1, (size_t)k, stdout);
		for (ssize_t i = 0; i < k; i++) {
			if (buf[i] == '\n') {
				if (have)
					last[have < sizeof(last) ? have : sizeof(last) - 1] = '\0';
				have = 0;
				continue;
			}
			if (have < sizeof(last) - 1)
				last[have] = buf[i];
			have++;
		}
	}
	close(fd);
	return !strncmp(last, "ok", 2) ? 0 : !strncmp(last, "error", 5) ? 2 : 1;
}

int sock_send_rest(int fd, const void *buf, size_t len, size_t *off)
{
	while (*off < len) {
		ssize_t k = send(fd, (const char *)buf + *off, len - *off, MSG_NOSIGNAL);
		if (k == -1 && errno == EINTR)
			continue;
		if (k == -1)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		*off += (size_t)k;
	}
	return 1;
}
