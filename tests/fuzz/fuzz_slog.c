/* Fuzzes the small-object log's record scanner (src/store/slogrec.c), which reads segment
 * bytes at start-up (a crash or a bad disk may leave anything there): whatever the bytes, the
 * valid prefix lies within them and is made of whole records, back to back, each of which the
 * writer encodes again to the very same bytes; and scanning the prefix alone finds it all. */
#include "fuzz.h"
#include "slog.h"

#include <stdlib.h>
#include <string.h>

struct ctx {
	const uint8_t *base;
	size_t next, n;
};

static void check(void *arg, const struct slog_rec *r)
{
	struct ctx *x = arg;
	if (r->off != x->next || r->len != SLOG_HDR + r->key_len + r->body_len + SLOG_TRAIL ||
	    r->off + r->len > x->n || (r->type != SLOG_PUT && r->type != SLOG_DEL) ||
	    r->key != x->base + r->off + SLOG_HDR || r->body != r->key + r->key_len)
		__builtin_trap();
	uint8_t *again = malloc(r->len);
	if (!again)
		return;
	size_t k = slog_rec_write(again, r->type, r->slice, r->seq, r->version, r->key, r->key_len,
	                          r->body, r->body_len);
	if (k != r->len || memcmp(again, x->base + r->off, r->len))
		__builtin_trap();
	free(again);
	x->next = r->off + r->len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctx x = {.base = data, .n = size};
	size_t ok = slog_scan(data, size, check, &x);
	if (ok > size || ok != x.next)
		__builtin_trap();
	struct ctx y = {.base = data, .n = ok};
	if (slog_scan(data, ok, check, &y) != ok || y.next != ok)
		__builtin_trap();
	return 0;
}
