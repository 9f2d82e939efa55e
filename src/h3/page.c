/* --page: the page a browser loads from a peak h3 server (page.h). */
#include "page.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The built-in upload page (h3_page_builtin says what its script does); a test computes the
 * checksums it must get from the same formula. */
static const char page_upload_html[] =
    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>peak h3 upload</title>"
    "</head><body>\n<pre id=\"out\"></pre>\n<script>\n"
    "const bodies = [[\"audio/ogg\", 300000, 1], [\"video/mp4\", 1000000, 2],\n"
    "                [\"text/plain\", 1500000, 3]];\n"
    "function bytes(n, seed) {\n"
    "  const b = new Uint8Array(n);\n"
    "  for (let k = 0; k < n; k++) b[k] = (31 * k + 7 * seed) & 255;\n"
    "  return b;\n"
    "}\n"
    "Promise.all(bodies.map(([t, n, seed]) =>\n"
    "  fetch(\"/upload\", {method: \"POST\", headers: {\"content-type\": t},\n"
    "                      body: bytes(n, seed)})\n"
    "    .then(async r => t + \" \" + r.status + \" \" + (await r.text()).trim(),\n"
    "          e => t + \" error \" + e))).then(lines => {\n"
    "  document.getElementById(\"out\").textContent = lines.join(\"\\n\");\n"
    "  document.title = \"done\";\n"
    "});\n"
    "</script>\n</body></html>\n";

void h3_page_builtin(struct h3_page *p)
{
	p->html = page_upload_html;
	p->len = sizeof(page_upload_html) - 1;
	p->owned = NULL;
}

int h3_page_load(struct h3_page *p, const char *path, char *why, size_t whylen)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	int fd, ret;
	memset(p, 0, sizeof(*p));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		ret = -errno;
		snprintf(why, whylen, "cannot open: %s", strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st) == -1) {
		ret = -errno;
		snprintf(why, whylen, "cannot stat: %s", strerror(-ret));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		snprintf(why, whylen, "not a regular file");
		goto out;
	}
	if (st.st_size > H3_PAGE_MAX_BYTES) {
		ret = -EFBIG;
		snprintf(why, whylen, "too large: %lld bytes, a page may have at most %d",
		         (long long)st.st_size, H3_PAGE_MAX_BYTES);
		goto out;
	}
	/* one byte more than the limit, to see a file that grew since fstat */
	if (!(buf = malloc(H3_PAGE_MAX_BYTES + 1))) {
		ret = -ENOMEM;
		snprintf(why, whylen, "%s", strerror(ENOMEM));
		goto out;
	}
	for (;;) {
		ssize_t k = read(fd, buf + n, H3_PAGE_MAX_BYTES + 1 - n);
		if (k == -1 && errno == EINTR)
			continue;
		if (k == -1) {
			ret = -errno;
			snprintf(why, whylen, "cannot read: %s", strerror(-ret));
			goto out;
		}
		if (k == 0)
			break;
		n += (size_t)k;
		if (n > H3_PAGE_MAX_BYTES) {
			ret = -EFBIG;
			snprintf(why, whylen, "too large: over %d bytes, the most a page may have",
			         H3_PAGE_MAX_BYTES);
			goto out;
		}
	}
	char *fit = realloc(buf, n ? n : 1); /* give back the slack */
	if (fit)
		buf = fit;
	p->owned = buf;
	p->html = buf;
	p->len = n;
	buf = NULL;
	ret = 0;
out:
	free(buf);
	close(fd);
	return ret;
}

void h3_page_free(struct h3_page *p)
{
	free(p->owned);
	p->owned = NULL;
	p->html = NULL;
	p->len = 0;
}

bool h3_page_wanted(const struct h3_req_head *q)
{
	return !q->has_ctype && !strcmp(q->method, "GET") &&
	       (!strcmp(q->path, "/") || !strncmp(q->path, "/?", 2));
}
