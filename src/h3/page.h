#pragma once
/* --page: the HTML page a peak h3 server answers GET / with, so that a browser loads it from
 * the server and its script uploads to the same origin (browser interop tests). The ingress
 * serves a built-in upload page, the backend a file read at start; both decide which
 * requests get it with h3_page_wanted. */
#include <stdbool.h>
#include <stddef.h>

#include "head.h"

enum { H3_PAGE_MAX_BYTES = 1024 * 1024 }; /* largest page file (it is held in memory) */

struct h3_page {
	const char *html; /* the page's bytes (not NUL-terminated when read from a file) */
	size_t len;
	char *owned; /* what h3_page_free frees (a file's copy), or NULL */
};

/* Sets p to the built-in upload page: its script POSTs three bodies to /upload with fetch(),
 * audio/ogg 300,000 bytes, video/mp4 1,000,000 and text/plain 1,500,000, byte k of body i
 * (i = 1, 2, 3) being (31 k + 7 i) mod 256, all at once, writes one line per answer into
 * <pre id="out"> (TYPE STATUS BODY, the body trimmed; TYPE error ... when fetch failed), then
 * sets the title to "done". Nothing to free. */
void h3_page_builtin(struct h3_page *p);

/* Reads the regular file at path (at most H3_PAGE_MAX_BYTES) into p, which h3_page_free
 * releases. Returns 0, or -errno with the reason in why[whylen] (e.g. -ENOENT, -EFBIG for a
 * file too large, -EINVAL for one that is not a regular file); p is then empty. */
int h3_page_load(struct h3_page *p, const char *path, char *why, size_t whylen);

/* Frees what h3_page_load read and empties p. */
void h3_page_free(struct h3_page *p);

/* Whether the request with head q asks for the page: GET / (or /?QUERY) without a
 * content-type. */
bool h3_page_wanted(const struct h3_req_head *q);
