/* Fuzzes the overlay gateway's packet decoder (src/overlay/wire.h) as a receiver runs it:
 * parse through the cursor, open under a fixed pair key, check the inner packet, and the
 * replay window with the packet's counter. Then the input as an inner packet: sealed and
 * opened again it must come back byte for byte, and opening it with one bit flipped must
 * fail; written as OVW_DATA_PLAIN it must parse back to the same bytes. An OVW_DATA_PLAIN input
 * is the inner packet itself: checked in place, never opened. The input as a link-state body
 * (OVW_LINKSTATE): if it decodes, it encodes back byte for byte. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t inner[OVW_INNER_MAX], pkt[OVW_PKT_MAX];
	static struct ovw_replay rp;
	static const uint8_t key[OVW_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
	static struct ovw_aead a;
	static bool ready;
	if (!ready) {
		ovw_aead_init(&a, key);
		ready = true;
	}
	struct cur c = cur_make(data, size);
	struct ovw_hdr h;
	const uint8_t *body;
	size_t body_len;
	if (!ovw_parse(&c, &h, &body, &body_len)) {
		if (body != data + OVW_HDR_LEN || body_len + OVW_HDR_LEN != size)
			__builtin_trap();
		if (h.type == OVW_DATA_PLAIN) {
			if (!body_len || body_len > OVW_INNER_MAX)
				__builtin_trap();
			ovw_inner_check(body, body_len);
		} else {
			long n = ovw_open(data, body_len, &a, inner);
			if (n >= 0)
				ovw_inner_check(inner, (size_t)n);
		}
		if (ovw_replay_fresh(&rp, h.counter)) {
			if (!ovw_replay_accept(&rp, h.counter) || ovw_replay_fresh(&rp, h.counter))
				__builtin_trap();
		} else if (ovw_replay_accept(&rp, h.counter)) {
			__builtin_trap();
		}
	}
	struct ovw_ls_entry ls[OVW_LS_MAX];
	size_t nls;
	uint8_t lsf;
	if (!ovw_ls_decode(data, size, &lsf, ls, &nls)) {
		uint8_t enc[OVW_LS_BODY_MAX];
		if (nls > OVW_LS_MAX ||
		    ovw_ls_encode(lsf, ls, nls, enc, sizeof(enc)) != (long)size ||
		    memcmp(enc, data, size))
			__builtin_trap();
	}
	if (size > OVW_INNER_MAX)
		return 0;
	struct ovw_hdr w = {.type = size ? OVW_DATA : OVW_KEEPALIVE, .counter = size * 7919u};
	long len = ovw_seal(&w, &a, data, size, pkt, sizeof(pkt));
	if (len != (long)(OVW_HDR_LEN + size + OVW_TAG_LEN))
		__builtin_trap();
	c = cur_make(pkt, (size_t)len);
	if (ovw_parse(&c, &h, &body, &body_len) || h.counter != w.counter)
		__builtin_trap();
	if (ovw_open(pkt, body_len, &a, inner) != (long)size || memcmp(inner, data, size))
		__builtin_trap();
	pkt[(size_t)len - 1 - size % (size_t)len] ^= 0x20;
	if (ovw_open(pkt, body_len, &a, inner) >= 0)
		__builtin_trap();
	len = ovw_plain(&w, data, size, pkt, sizeof(pkt));
	if (!size ? len != -EINVAL : len != (long)(OVW_HDR_LEN + size))
		__builtin_trap();
	if (len < 0)
		return 0;
	c = cur_make(pkt, (size_t)len);
	if (ovw_parse(&c, &h, &body, &body_len) || h.type != OVW_DATA_PLAIN ||
	    h.counter != w.counter || body_len != size || memcmp(body, data, size))
		__builtin_trap();
	return 0;
}
