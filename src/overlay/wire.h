#pragma once
/*
 * The gateway slave's wire format (IPv6 in UDP/IPv4 between sites' gateways), its crypto
 * and its replay window. Pure code: no I/O, so all of it is fuzzed and unit-tested.
 *
 * A packet (every multi-byte field big-endian):
 *	0  u8   type: OVW_DATA (an IPv6 packet follows), OVW_KEEPALIVE (nothing follows) or
 *	        OVW_MAPPING (a keepalive carrying the receiver's address as the sender sees it:
 *	        IPv4 address and UDP port, 6 bytes, so a gateway behind NAT learns its public
 *	        mapping, STUN-like (RFC 8489 §14.2's XOR-MAPPED-ADDRESS, sealed instead)),
 *	        OVW_PROBE / OVW_PROBE_ACK (the resiliency slave's path probe and its echo: 8
 *	        opaque bytes, the prober's send time, echoed unchanged), OVW_RELAY (an IPv6
 *	        packet the receiver forwards to the site its destination belongs to: the
 *	        sender's direct path there is down) or OVW_RELAYED (an IPv6 packet forwarded so:
 *	        its source is a third site's, whose direct path to the receiver is down) or
 *	        OVW_RELAY_LOST (a relay's answer to an OVW_RELAY it did not forward: it has not
 *	        heard the site the packet was for lately; 8 bytes, that site's sender id) or
 *	        OVW_LOSS (the resiliency slave's loss report: of the last packets the receiver of
 *	        the report sent the reporter directly, by their counters, u32 how many arrived and
 *	        u32 how many were sent; 8 bytes) or OVW_DATA_PLAIN (an IPv6 packet in the
 *	        clear, no tag: only between peers that both mark each other trusted, an
 *	        underlay the operator vouches for; what the kernel fast path (fastpath.h)
 *	        encapsulates and decapsulates in BPF. Nothing authenticates it: a receiver takes
 *	        it only from a peer it marks trusted, from the sender id's prefixes, and it moves
 *	        no state of the peer's (endpoint, epoch, replay window)) or OVW_MEMBERS (the
 *	        multicast slave's membership announcement: entries of the groups the sender's
 *	        site listens to or left, mcast.h; not empty) or OVW_LINKSTATE (the resiliency
 *	        slave's link-state report, RON's: the sender's measured paths to its other live
 *	        peers, ovw_ls_decode below; 2 + 13 * n bytes, n <= OVW_LS_MAX) or
 *	        OVW_MCAST_TREE (a packet to a multicast group and the member sites the receiver
 *	        passes it on to: the multicast slave's distribution tree, mcast.h; not empty.
 *	        Type 13 is not used)
 *	1  u8   version, 0
 *	2  u16  reserved, 0
 *	4  8    sender id: the first 8 bytes of the sender's X25519 public key
 *	12 u64  epoch: the sender's start time in ns (grows across restarts)
 *	20 u64  counter: per sender, epoch and receiver, from 0
 *	28 ...  OVW_DATA_PLAIN: the inner packet as is, 1..OVW_INNER_MAX bytes. Any other type:
 *	        AES-256-GCM (NIST SP 800-38D, RFC 5116 AEAD_AES_256_GCM) ciphertext of the
 *	        inner packet, 16-byte tag; the 28 header bytes are the associated data, the
 *	        96-bit nonce is 4 zero bytes and the counter. (AES-GCM, not ChaCha20-Poly1305:
 *	        with AES-NI and PCLMUL it seals 1400 bytes about 5 times faster here. Sealed
 *	        through GnuTLS's AEAD API, whose own AES-NI/PCLMUL GCM code is about twice as
 *	        fast as nettle's gcm_aes256 on 1400-byte packets: ~1.9 against ~3.5 us.)
 * Each direction of each pair of sites has its own key per sender epoch:
 *	prk = HMAC-SHA256("peak-overlay-v1", X25519(own private, peer public))
 *	key = HMAC-SHA256(prk, sender public | receiver public | epoch | 1)
 * so a nonce never repeats under one key (a restart changes the epoch), and a receiver
 * takes an epoch only forward: packets of an older epoch are replays.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/crypto.h>

#include "peak/cur.h"

enum {
	OVW_DATA = 1,
	OVW_KEEPALIVE = 2,
	OVW_MAPPING = 3,
	OVW_PROBE = 4,
	OVW_PROBE_ACK = 5,
	OVW_RELAY = 6,
	OVW_RELAYED = 7,
	OVW_RELAY_LOST = 8,
	OVW_LOSS = 9,
	OVW_DATA_PLAIN = 10,
	OVW_MEMBERS = 11,
	OVW_LINKSTATE = 12,
	OVW_MCAST_TREE = 14,
	OVW_PROBE_LEN = 8,
	OVW_MAPPING_LEN = 6,
	OVW_HDR_LEN = 28,
	OVW_TAG_LEN = 16,
	OVW_KEY_LEN = 32,
	OVW_ID_LEN = 8,
	OVW_NONCE_LEN = 12,   /* 4 zero bytes and the counter */
	OVW_INNER_MAX = 1500, /* largest inner packet sent or accepted */
	OVW_PKT_MAX = OVW_HDR_LEN + OVW_INNER_MAX + OVW_TAG_LEN,
	OVW_REPLAY_WORDS = 32, /* a window of (32 - 1) * 64 = 1984 counters */
	OVW_LS_ENTRY_LEN = OVW_ID_LEN + 4 + 1,
	OVW_LS_MAX = 12, /* entries per report: one report is 230 bytes on the wire at most,
	                  * which the probe bucket's spare tokens pay (slave_resil.c) */
	OVW_LS_BODY_MAX = 2 + OVW_LS_MAX * OVW_LS_ENTRY_LEN,
	OVW_LS_COMPLETE = 1, /* flags: every peer the sender hears is listed */
	OVW_LS_LOSS_UNKNOWN = 255,
};

struct ovw_hdr {
	uint8_t type;
	uint8_t id[OVW_ID_LEN];
	uint64_t epoch;
	uint64_t counter;
};

/* Parses a packet's header through the cursor. On success *body and *body_len are the
 * ciphertext and tag (at least OVW_TAG_LEN bytes, at most OVW_INNER_MAX + OVW_TAG_LEN) and
 * the cursor is consumed. Returns 0 or -EBADMSG (truncated, unknown type or version,
 * reserved bits set, a keepalive with a body, a mapping whose body is not OVW_MAPPING_LEN
 * bytes, a probe, probe ack or loss report whose body is not OVW_PROBE_LEN bytes, a relay-lost
 * whose body is not OVW_ID_LEN bytes, a data, relay, relayed, members or tree packet with an
 * empty body, a link-state body below 2 or above OVW_LS_BODY_MAX bytes, a body out of
 * bounds). An OVW_DATA_PLAIN's body is the inner packet itself: 1..OVW_INNER_MAX bytes, no
 * tag. */
int ovw_parse(struct cur *c, struct ovw_hdr *h, const uint8_t **body, size_t *body_len);

/* One entry of a link-state report: the reporter's path to the peer whose sender id is id
 * (its public key's first 8 bytes): the path's RTT in us (> 0) and the share of the
 * reporter's last probes on it that were lost, in percent (0..100, or OVW_LS_LOSS_UNKNOWN).
 * Wire: id, u32 rtt_us, u8 loss_pct. The body is u8 flags (OVW_LS_COMPLETE: the list is every
 * peer the sender hears, so a peer missing is one it does not; else it is a part of them), u8
 * n and n entries (n = 0 only in a complete list). */
struct ovw_ls_entry {
	uint8_t id[OVW_ID_LEN];
	uint32_t rtt_us;
	uint8_t loss_pct;
};

/* Writes a link-state body of flags and e[0..n) (n <= OVW_LS_MAX) into out (cap bytes).
 * Returns its length, -EINVAL (n or flags out of range, an entry that would not decode) or
 * -EMSGSIZE. */
long ovw_ls_encode(uint8_t flags, const struct ovw_ls_entry *e, size_t n, uint8_t *out, size_t cap);

/* Decodes a link-state body (len bytes, untrusted) through the cursor into *flags and out; *n is
 * the entry count. Returns 0 or -EBADMSG (truncated or trailing bytes, unknown flags, a count
 * above OVW_LS_MAX or of 0 in a partial list, an RTT of 0, a loss above 100 that is not
 * OVW_LS_LOSS_UNKNOWN, an id twice). */
int ovw_ls_decode(const uint8_t *body, size_t len, uint8_t *flags,
                  struct ovw_ls_entry out[static OVW_LS_MAX], size_t *n);

/* An AEAD key expanded once (AES round keys, GHASH table) in a GnuTLS handle; a seal or
 * open uses its per-message state, so one context serves one thread. */
struct ovw_aead {
	gnutls_aead_cipher_hd_t h; /* NULL: none */
};

/* Allocates a's handle and expands key into it (a's old contents are not looked at: call
 * ovw_aead_fini first on a live one). Returns 0, or -ENOMEM (a->h is then NULL). */
int ovw_aead_init(struct ovw_aead *a, const uint8_t key[static OVW_KEY_LEN]);

/* Replaces a live a's key: a new handle (GnuTLS 3.7.9's gnutls_aead_cipher_set_key returns
 * success on an accelerated AES-GCM handle but keeps sealing under the old key, so a key is
 * never changed in place). Returns 0, or -ENOMEM (a then keeps its old key). */
int ovw_aead_rekey(struct ovw_aead *a, const uint8_t key[static OVW_KEY_LEN]);

/* Frees a's handle (a NULL one is fine) and sets it to NULL. */
void ovw_aead_fini(struct ovw_aead *a);

/* Writes header h and seals inner (n bytes, at most OVW_INNER_MAX) under a into out
 * (cap bytes). Returns the packet length, -EMSGSIZE, or -EINVAL if the AEAD fails. */
long ovw_seal(const struct ovw_hdr *h, struct ovw_aead *a, const uint8_t *inner, size_t n,
              uint8_t *out, size_t cap);

/* Writes header h (its type is ignored: OVW_DATA_PLAIN) and inner (n bytes, at most
 * OVW_INNER_MAX, at least 1) in the clear into out (cap bytes). Returns the packet length,
 * -EMSGSIZE or -EINVAL (n is 0). */
long ovw_plain(const struct ovw_hdr *h, const uint8_t *inner, size_t n, uint8_t *out, size_t cap);

/* Opens a packet whose header pkt[0..OVW_HDR_LEN) was parsed and whose body follows it
 * (body_len bytes, from ovw_parse). Writes body_len - OVW_TAG_LEN bytes of plaintext to
 * out (room for OVW_INNER_MAX). Returns the plaintext length or -EBADMSG if the tag does
 * not verify (out then holds garbage the caller must not use). */
long ovw_open(const uint8_t *pkt, size_t body_len, struct ovw_aead *a, uint8_t *out);

/* The key sender -> receiver for an epoch (see above), from the pair's prk. */
void ovw_key(const uint8_t prk[static 32], const uint8_t sender_pub[static 32],
             const uint8_t receiver_pub[static 32], uint64_t epoch, uint8_t key[static 32]);

/* The pair's prk from own private key and the peer's public key. Returns 0, or -EINVAL if
 * the shared secret is all zero (a low-order peer key, RFC 7748 §6.1). */
int ovw_prk(const uint8_t priv[static 32], const uint8_t peer_pub[static 32],
            uint8_t prk[static 32]);

/* The public key of a private key (X25519, RFC 7748). */
void ovw_pubkey(const uint8_t priv[static 32], uint8_t pub[static 32]);

/* The replay window of one receiver epoch (RFC 6479's bitmap, as WireGuard's counter.c). */
struct ovw_replay {
	uint64_t top; /* highest counter accepted, valid once any is */
	bool any;
	uint64_t bits[OVW_REPLAY_WORDS];
};

/* True if counter was not accepted yet and is not too old; changes nothing. */
bool ovw_replay_fresh(const struct ovw_replay *r, uint64_t counter);

/* Records an authenticated counter. Returns false (and records nothing) if it is a replay
 * or too old. */
bool ovw_replay_accept(struct ovw_replay *r, uint64_t counter);

/* Checks an inner IPv6 packet: version 6, at least the fixed header, a payload length that
 * matches n exactly (RFC 8200 §3). Returns 0 or -EBADMSG. */
int ovw_inner_check(const uint8_t *p, size_t n);
