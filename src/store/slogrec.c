/* The small-object log's records (slog.h): the scanner and the writer. Pure code, for the
 * pod and the fuzz target. */
#include <nettle/sha2.h>
#include <string.h>

#include "peak/cur.h"
#include "slog.h"

static const uint8_t rec_magic[4] = {'P', 'K', 'L', '1'}, commit_mark[4] = {'P', 'K', 'C', '1'};

/* The record's check: the first 8 bytes of the SHA-256 of p[0..n). */
static void rec_check(const uint8_t *p, size_t n, uint8_t out[8])
{
	struct sha256_ctx h;
	sha256_init(&h);
	sha256_update(&h, n, p);
	sha256_digest(&h, 8, out);
}

static uint64_t cur_u64(struct cur *c)
{
	uint64_t hi = cur_u32(c);
	return hi << 32 | cur_u32(c);
}

/* Whether a delete record's key is an object's name: "SSSSSSSS-" and 64 hex digits. */
static bool name_ok(const uint8_t *n, size_t len)
{
	if (len != SLOG_NAME_LEN || n[8] != '-')
		return false;
	for (size_t i = 0; i < len; i++)
		if (i != 8 && !((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f')))
			return false;
	return true;
}

size_t slog_scan(const uint8_t *p, size_t n, slog_rec_fn fn, void *arg)
{
	size_t off = 0;
	while (off < n) {
		struct cur c = cur_make(p + off, n - off);
		struct slog_rec r = {.off = off};
		const uint8_t *magic = cur_ptr(&c, 4);
		r.type = cur_u8(&c);
		unsigned flags = cur_u8(&c);
		r.key_len = cur_u16(&c);
		r.body_len = cur_u32(&c);
		r.slice = cur_u32(&c);
		r.seq = cur_u64(&c);
		r.version = cur_u64(&c);
		r.key = cur_ptr(&c, r.key_len);
		r.body = cur_ptr(&c, r.body_len);
		const uint8_t *check = cur_ptr(&c, 8), *mark = cur_ptr(&c, 4);
		if (c.err || memcmp(magic, rec_magic, 4) || flags || memcmp(mark, commit_mark, 4))
			break;
		if (r.type == SLOG_PUT
		        ? !r.key_len || r.key_len > STORE_KEY_MAX
		        : r.type != SLOG_DEL || r.body_len || !name_ok(r.key, r.key_len))
			break;
		uint8_t want[8];
		r.len = SLOG_HDR + r.key_len + r.body_len + SLOG_TRAIL;
		rec_check(p + off, r.len - SLOG_TRAIL, want);
		if (memcmp(want, check, 8))
			break;
		if (fn)
			fn(arg, &r);
		off += r.len;
	}
	return off;
}

size_t slog_rec_write(uint8_t *out, unsigned type, uint32_t slice, uint64_t seq, uint64_t version,
                      const uint8_t *key, size_t kl, const uint8_t *body, size_t len)
{
	size_t total = SLOG_HDR + kl + len + SLOG_TRAIL;
	struct wcur w = wcur_make(out, total);
	wcur_bytes(&w, rec_magic, 4);
	wcur_u8(&w, (uint8_t)type);
	wcur_u8(&w, 0);
	wcur_u16(&w, (uint16_t)kl);
	wcur_u32(&w, (uint32_t)len);
	wcur_u32(&w, slice);
	wcur_u32(&w, (uint32_t)(seq >> 32));
	wcur_u32(&w, (uint32_t)seq);
	wcur_u32(&w, (uint32_t)(version >> 32));
	wcur_u32(&w, (uint32_t)version);
	wcur_bytes(&w, key, kl);
	wcur_bytes(&w, body, len);
	uint8_t check[8];
	rec_check(out, w.len, check);
	wcur_bytes(&w, check, 8);
	wcur_bytes(&w, commit_mark, 4);
	return w.err ? 0 : w.len;
}
