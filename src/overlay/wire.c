#include "wire.h"

#include <errno.h>
#include <nettle/curve25519.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <string.h>

enum { REPLAY_WINDOW = (OVW_REPLAY_WORDS - 1) * 64 };

int ovw_parse(struct cur *c, struct ovw_hdr *h, const uint8_t **body, size_t *body_len)
{
	memset(h, 0, sizeof(*h));
	h->type = cur_u8(c);
	uint8_t version = cur_u8(c);
	uint16_t rsv = cur_u16(c);
	cur_bytes(c, h->id, OVW_ID_LEN);
	h->epoch = (uint64_t)cur_u32(c) << 32;
	h->epoch |= cur_u32(c);
	h->counter = (uint64_t)cur_u32(c) << 32;
	h->counter |= cur_u32(c);
	if (c->err)
		return c->err;
	if (version || rsv || h->type < OVW_DATA ||
	    (h->type > OVW_LINKSTATE && h->type != OVW_MCAST_TREE))
		return -EBADMSG;
	size_t n = c->left;
	if (h->type == OVW_DATA_PLAIN) {
		if (!n || n > OVW_INNER_MAX)
			return -EBADMSG;
		*body = cur_ptr(c, n);
		*body_len = n;
		return c->err;
	}
	if (n < OVW_TAG_LEN || n > OVW_INNER_MAX + OVW_TAG_LEN)
		return -EBADMSG;
	if (h->type == OVW_KEEPALIVE && n != OVW_TAG_LEN)
		return -EBADMSG;
	bool carries_ip = h->type == OVW_DATA || h->type == OVW_RELAY || h->type == OVW_RELAYED;
	if ((carries_ip || h->type == OVW_MEMBERS || h->type == OVW_MCAST_TREE) && n == OVW_TAG_LEN)
		return -EBADMSG;
	if ((h->type == OVW_PROBE || h->type == OVW_PROBE_ACK || h->type == OVW_LOSS) &&
	    n != OVW_TAG_LEN + OVW_PROBE_LEN)
		return -EBADMSG;
	if (h->type == OVW_MAPPING && n != OVW_TAG_LEN + OVW_MAPPING_LEN)
		return -EBADMSG;
	if (h->type == OVW_RELAY_LOST && n != OVW_TAG_LEN + OVW_ID_LEN)
		return -EBADMSG;
	if (h->type == OVW_LINKSTATE && (n < OVW_TAG_LEN + 2 || n > OVW_TAG_LEN + OVW_LS_BODY_MAX))
		return -EBADMSG;
	*body = cur_ptr(c, n);
	*body_len = n;
	return c->err;
}

static bool ls_entry_ok(const struct ovw_ls_entry *e)
{
	return e->rtt_us && (e->loss_pct <= 100 || e->loss_pct == OVW_LS_LOSS_UNKNOWN);
}

long ovw_ls_encode(uint8_t flags, const struct ovw_ls_entry *e, size_t n, uint8_t *out, size_t cap)
{
	if (n > OVW_LS_MAX || (flags & ~OVW_LS_COMPLETE) || (!n && !(flags & OVW_LS_COMPLETE)))
		return -EINVAL;
	struct wcur w = wcur_make(out, cap);
	wcur_u8(&w, flags);
	wcur_u8(&w, (uint8_t)n);
	for (size_t i = 0; i < n; i++) {
		if (!ls_entry_ok(&e[i]))
			return -EINVAL;
		wcur_bytes(&w, e[i].id, OVW_ID_LEN);
		wcur_u32(&w, e[i].rtt_us);
		wcur_u8(&w, e[i].loss_pct);
	}
	return w.err ? -EMSGSIZE : (long)(2 + n * OVW_LS_ENTRY_LEN);
}

int ovw_ls_decode(const uint8_t *body, size_t len, uint8_t *flags,
                  struct ovw_ls_entry out[static OVW_LS_MAX], size_t *n)
{
	struct cur c = cur_make(body, len);
	*flags = cur_u8(&c);
	size_t cnt = cur_u8(&c);
	*n = 0;
	if (c.err || (*flags & ~OVW_LS_COMPLETE) || (!cnt && !(*flags & OVW_LS_COMPLETE)) ||
	    cnt > OVW_LS_MAX || c.left != cnt * OVW_LS_ENTRY_LEN)
		return -EBADMSG;
	for (size_t i = 0; i < cnt; i++) {
		cur_bytes(&c, out[i].id, OVW_ID_LEN);
		out[i].rtt_us = cur_u32(&c);
		out[i].loss_pct = cur_u8(&c);
		if (c.err || !ls_entry_ok(&out[i]))
			return -EBADMSG;
		for (size_t j = 0; j < i; j++)
			if (!memcmp(out[j].id, out[i].id, OVW_ID_LEN))
				return -EBADMSG;
	}
	*n = cnt;
	return c.err;
}

int ovw_aead_init(struct ovw_aead *a, const uint8_t key[static OVW_KEY_LEN])
{
	gnutls_datum_t k = {(unsigned char *)key, OVW_KEY_LEN};
	a->h = NULL;
	if (gnutls_aead_cipher_init(&a->h, GNUTLS_CIPHER_AES_256_GCM, &k) < 0) {
		a->h = NULL;
		return -ENOMEM;
	}
	return 0;
}

int ovw_aead_rekey(struct ovw_aead *a, const uint8_t key[static OVW_KEY_LEN])
{
	struct ovw_aead n;
	int ret = ovw_aead_init(&n, key);
	if (ret)
		return ret;
	ovw_aead_fini(a);
	*a = n;
	return 0;
}

void ovw_aead_fini(struct ovw_aead *a)
{
	if (a->h)
		gnutls_aead_cipher_deinit(a->h);
	a->h = NULL;
}

static void nonce_of(uint64_t counter, uint8_t nonce[static OVW_NONCE_LEN])
{
	memset(nonce, 0, 4);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(counter >> (56 - 8 * i));
}

/* The 28 header bytes of h with type; the cursor is then at the body. */
static void put_hdr(struct wcur *w, const struct ovw_hdr *h, uint8_t type)
{
	wcur_u8(w, type);
	wcur_u8(w, 0);
	wcur_u16(w, 0);
	wcur_bytes(w, h->id, OVW_ID_LEN);
	wcur_u32(w, (uint32_t)(h->epoch >> 32));
	wcur_u32(w, (uint32_t)h->epoch);
	wcur_u32(w, (uint32_t)(h->counter >> 32));
	wcur_u32(w, (uint32_t)h->counter);
}

long ovw_plain(const struct ovw_hdr *h, const uint8_t *inner, size_t n, uint8_t *out, size_t cap)
{
	if (!n)
		return -EINVAL;
	if (n > OVW_INNER_MAX)
		return -EMSGSIZE;
	struct wcur w = wcur_make(out, cap);
	put_hdr(&w, h, OVW_DATA_PLAIN);
	wcur_bytes(&w, inner, n);
	return w.err ? -EMSGSIZE : (long)(OVW_HDR_LEN + n);
}

long ovw_seal(const struct ovw_hdr *h, struct ovw_aead *a, const uint8_t *inner, size_t n,
              uint8_t *out, size_t cap)
{
	if (n > OVW_INNER_MAX)
		return -EMSGSIZE;
	struct wcur w = wcur_make(out, cap);
	put_hdr(&w, h, h->type);
	if (w.err || !wcur_room(&w, n + OVW_TAG_LEN))
		return -EMSGSIZE;
	uint8_t nonce[OVW_NONCE_LEN];
	nonce_of(h->counter, nonce);
	size_t clen = n + OVW_TAG_LEN;
	if (gnutls_aead_cipher_encrypt(a->h, nonce, sizeof(nonce), out, OVW_HDR_LEN, OVW_TAG_LEN,
	                               inner, n, out + OVW_HDR_LEN, &clen) < 0 ||
	    clen != n + OVW_TAG_LEN)
		return -EINVAL;
	return (long)(OVW_HDR_LEN + n + OVW_TAG_LEN);
}

long ovw_open(const uint8_t *pkt, size_t body_len, struct ovw_aead *a, uint8_t *out)
{
	if (body_len < OVW_TAG_LEN || body_len > OVW_INNER_MAX + OVW_TAG_LEN)
		return -EBADMSG;
	size_t n = body_len - OVW_TAG_LEN;
	uint64_t counter = 0;
	for (int i = 0; i < 8; i++)
		counter = counter << 8 | pkt[20 + i];
	uint8_t nonce[OVW_NONCE_LEN];
	nonce_of(counter, nonce);
	size_t plen = OVW_INNER_MAX;
	/* GnuTLS compares the tag in constant time and writes no plaintext if it differs */
	if (gnutls_aead_cipher_decrypt(a->h, nonce, sizeof(nonce), pkt, OVW_HDR_LEN, OVW_TAG_LEN,
	                               pkt + OVW_HDR_LEN, body_len, out, &plen) < 0 ||
	    plen != n)
		return -EBADMSG;
	return (long)n;
}

void ovw_key(const uint8_t prk[static 32], const uint8_t sender_pub[static 32],
             const uint8_t receiver_pub[static 32], uint64_t epoch, uint8_t key[static 32])
{
	struct hmac_sha256_ctx h;
	uint8_t e[9];
	for (int i = 0; i < 8; i++)
		e[i] = (uint8_t)(epoch >> (56 - 8 * i));
	e[8] = 1;
	hmac_sha256_set_key(&h, 32, prk);
	hmac_sha256_update(&h, 32, sender_pub);
	hmac_sha256_update(&h, 32, receiver_pub);
	hmac_sha256_update(&h, sizeof(e), e);
	hmac_sha256_digest(&h, 32, key);
}

int ovw_prk(const uint8_t priv[static 32], const uint8_t peer_pub[static 32],
            uint8_t prk[static 32])
{
	static const uint8_t zero[32];
	static const char salt[] = "peak-overlay-v1";
	uint8_t shared[32];
	struct hmac_sha256_ctx h;
	curve25519_mul(shared, priv, peer_pub);
	int ret = memeql_sec(shared, zero, 32) ? -EINVAL : 0;
	hmac_sha256_set_key(&h, sizeof(salt) - 1, (const uint8_t *)salt);
	hmac_sha256_update(&h, 32, shared);
	hmac_sha256_digest(&h, 32, prk);
	memset(shared, 0, sizeof(shared));
	return ret;
}

void ovw_pubkey(const uint8_t priv[static 32], uint8_t pub[static 32])
{
	curve25519_mul_g(pub, priv);
}

bool ovw_replay_fresh(const struct ovw_replay *r, uint64_t counter)
{
	if (!r->any || counter > r->top)
		return true;
	if (r->top - counter >= REPLAY_WINDOW)
		return false;
	uint64_t word = r->bits[(counter >> 6) % OVW_REPLAY_WORDS];
	return !(word >> (counter & 63) & 1);
}

bool ovw_replay_accept(struct ovw_replay *r, uint64_t counter)
{
	if (!ovw_replay_fresh(r, counter))
		return false;
	if (!r->any || counter > r->top) {
		/* clear the words between the old top's and the new one's, at most all */
		uint64_t from = r->any ? (r->top >> 6) + 1 : 0, to = counter >> 6;
		if (!r->any || to - from + 1 >= OVW_REPLAY_WORDS) {
			memset(r->bits, 0, sizeof(r->bits));
		} else {
			for (uint64_t i = from; i <= to && to >= from; i++)
				r->bits[i % OVW_REPLAY_WORDS] = 0;
		}
		r->top = counter;
		r->any = true;
	}
	r->bits[(counter >> 6) % OVW_REPLAY_WORDS] |= 1ULL << (counter & 63);
	return true;
}

int ovw_inner_check(const uint8_t *p, size_t n)
{
	struct cur c = cur_make(p, n);
	uint8_t v = cur_u8(&c);
	cur_skip(&c, 3);
	uint16_t plen = cur_u16(&c);
	cur_skip(&c, 34);
	if (c.err || v >> 4 != 6 || plen != c.left)
		return -EBADMSG;
	return 0;
}
