/* One object store request from the client side; see client.h. The reply's head is
 * framed by the project's HTTP response parser (src/lib/http.c). */
#define _GNU_SOURCE /* memmem */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peak/http.h"

static const char *const method_names[] = {"", "GET", "HEAD", "PUT", "DELETE"};

/* Percent-encodes everything but RFC 3986 unreserved characters. */
static void key_encode(const char *key, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)key; *p && n + 4 < cap; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
			out[n++] = (char)*p;
		} else {
			out[n++] = '%';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
	}
	out[n] = 0;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0)
			return k ? -errno : -EPIPE;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);
		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0)
			return -errno;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Copies a header's value (the first line named name) into out; "" if absent. */
static void header_value(const uint8_t *h, size_t hl, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);
	out[0] = 0;
	for (size_t i = 0; i + nl + 3 < hl; i++) {
		if (h[i] != '\n' || strncasecmp((const char *)h + i + 1, name, nl) ||
		    h[i + 1 + nl] != ':')
			continue;
		size_t j = i + 2 + nl, k = 0;
		while (j < hl && h[j] == ' ')
			j++;
		while (j < hl && h[j] != '\r' && k + 1 < cap)
			out[k++] = (char)h[j++];
		out[k] = 0;
		return;
	}
}

int store_call_run(int fd, struct store_call *call)
{
	char target[3 * 255 + 1], head[1024 + sizeof(target)];
	uint8_t buf[HTTP_HEAD_MAX + 65536];
	size_t len = 0, hl = 0;
	int r;
	call->status = 0;
	call->body_len = 0;
	call->detail[0] = 0;
	key_encode(call->key, target, sizeof(target));
	int n = snprintf(head, sizeof(head), "%s /o/%s HTTP/1.1\r\nHost: %s\r\n",
	                 method_names[call->method], target, call->host);
	if (call->method == STORE_PUT)
		n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %llu\r\n",
		              (unsigned long long)call->in_len);
	n += snprintf(head + n, sizeof(head) - (size_t)n, "Connection: close\r\n\r\n");
	int sent = send_all(fd, head, (size_t)n);
	if (!sent && call->method == STORE_PUT) {
		off_t off = 0;
		for (uint64_t left = call->in_len; left && !sent;) {
			ssize_t k =
			    sendfile(fd, call->infd, &off, left < (1u << 30) ? left : (1u << 30));
			if (k == -1 && errno == EINTR)
				continue;
			if (k <= 0)
				sent = k ? -errno : -EIO; /* the file shrank */
			else
				left -= (uint64_t)k;
		}
	}
	/* a refusal (421, 413) can come before the body is all sent: read the reply anyway */
	for (;;) {
		ssize_t k = recv(fd, buf + len, HTTP_HEAD_MAX - len, 0);
		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0) {
			r = k ? -errno : -EBADMSG;
			if (sent)
				r = sent;
			snprintf(call->detail, sizeof(call->detail), "no reply: %s", strerror(-r));
			return r;
		}
		len += (size_t)k;
		uint8_t *e = memmem(buf, len, "\r\n\r\n", 4);
		if (e) {
			hl = (size_t)(e - buf) + 4;
			break;
		}
		if (len == HTTP_HEAD_MAX) {
			snprintf(call->detail, sizeof(call->detail), "reply head too long");
			return -EBADMSG;
		}
	}
	/* only the head is given: a complete head with a body returns 0 with out filled */
	struct http_resp resp;
	if (http_resp_parse(buf, hl, call->method == STORE_HEAD, &resp) < 0) {
		snprintf(call->detail, sizeof(call->detail), "a reply that does not parse");
		return -EBADMSG;
	}
	call->status = resp.status;
	call->body_len = resp.body_len;
	if (resp.status == 421) {
		char owner[80], addr[64];
		header_value(buf, hl, "X-Peak-Owner", owner, sizeof(owner));
		header_value(buf, hl, "X-Peak-Address", addr, sizeof(addr));
		snprintf(call->detail, sizeof(call->detail), "owner %s at %s", *owner ? owner : "?",
		         *addr ? addr : "?");
	}
	if (call->method != STORE_GET || resp.status != 200)
		return 0;
	uint64_t left = resp.body_len;
	size_t have = len - hl < left ? len - hl : (size_t)left;
	if ((r = write_all(call->outfd, buf + hl, have)))
		return r;
	left -= have;
	while (left) {
		ssize_t k = recv(fd, buf, left < sizeof(buf) ? left : sizeof(buf), 0);
		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0) {
			snprintf(call->detail, sizeof(call->detail), "reply cut short");
			return k ? -errno : -EBADMSG;
		}
		if ((r = write_all(call->outfd, buf, (size_t)k)))
			return r;
		left -= (uint64_t)k;
	}
	return 0;
}
