#pragma once
/*
 * The DHT slave's pure parts (dht.c runs them on OpenDHT): the signed mapping record a site
 * publishes for each of its prefixes, the DHT keys it is published under, and the two
 * lookups over those keys. No I/O: fuzzed (the record parser) and unit-tested against an
 * oracle (the lookups).
 *
 * Trust. An overlay has one authority key (Ed25519, kept offline). It certifies a site:
 * a signature over the site's X25519 public key (the gateway's), the site's Ed25519
 * signing key (derived from the same private key file, see dhr_sign_key) and the prefixes
 * the site may announce. A record carries that certificate and is signed by the site, so
 * nobody but the site can publish a mapping for its prefixes (a copied record keeps its
 * locators; an old one is refused past DHR_MAX_AGE_S).
 *
 * A record (every multi-byte field big-endian; at most DHR_REC_MAX bytes):
 *	0   4   magic "PKO1"
 *	4   1   prefix length, 0..128 (0 is refused by the daemon: it would replace its
 *	        default route)
 *	5   16  prefix address, bits past the length zero
 *	21  8   time of signing, Unix seconds
 *	29  32  the site's X25519 public key (its gateway's)
 *	61  32  the site's Ed25519 public key
 *	93  1   flags (high 4 bits: DHR_F_EDM, DHR_F_GROUP, DHR_F_LEFT, DHR_F_ANYCAST) |
 *	        number of locators (low 4 bits, 1..DHR_MAX_LOC)
 *	94  6n  locators: IPv4 address (4), UDP port (2, not 0)
 *	..  16  with DHR_F_GROUP only: a multicast group (ff00::/8) the site has listeners of,
 *	        or, with DHR_F_LEFT too, no longer has (a group record, slave_mcast.c)
 *	..  1   number of certified prefixes, 1..DHR_MAX_PREFIXES
 *	..  17n certified prefixes: length (1), address (16; bits past the length zero)
 *	..  64  certificate: the authority's Ed25519 signature over
 *	        "peak-ov-cert-v1" | X25519 key | Ed25519 key | n | the certified prefixes
 *	..  64  the site's Ed25519 signature over every byte before it
 * The record's prefix must lie inside one of the certified prefixes. With DHR_F_ANYCAST
 * (never with DHR_F_GROUP or DHR_F_LEFT) the record says that the site serves its prefix as
 * one member of an anycast prefix (slave_anycast.c); it is put under the anycast key only.
 *
 * Keys (OpenDHT hashes these bytes with SHA-1 into an InfoHash):
 *	"peak-ov1" | 'p' | length | address masked to length    (26 bytes)
 *	"peak-ov1" | 'i' | 0 | the site's X25519 key's first 8 bytes, zero padded
 *	"peak-ov1" | 'g' | 0 | a multicast group: the group records of its member sites
 *	"peak-ov1" | 'a' | length | address masked to length: the anycast records of the sites
 *	        serving that prefix
 * A site puts each prefix's record under: its own key (P, len); the walk key
 * (P, the length up to P's last set bit); the binary-search markers (P masked to L, L) for
 * each length L < len the search passes on its way to len; and its id key (so a gateway
 * receiving from an unknown site can find it). Records are self-describing, so one value
 * serves every key, and a /48 and a /64 at the same address have different keys.
 *
 * Lookups (dhr_search): the binary search over prefix lengths (Waldvogel et al., markers;
 * at most 8 gets when no marker misleads it, then backtracking) or the published walk:
 * the destination, then with its last set bit zeroed, and so on, until a record matches; or,
 * where the overlay's operator lists the prefix lengths its sites publish (the same list on
 * every site), only those lengths, longest first, until a record holds the destination: one
 * get when all sites use one length.
 */
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peak/cur.h"
#include "peak/prefix.h"

enum {
	DHR_MAX_LOC = 4,
	DHR_MAX_PREFIXES = 16,
	DHR_SIG_LEN = 64,
	DHR_FIXED_LEN = 94,
	DHR_REC_MAX =
	    DHR_FIXED_LEN + 6 * DHR_MAX_LOC + 16 + 1 + 17 * DHR_MAX_PREFIXES + 2 * DHR_SIG_LEN,
	DHR_KEY_LEN = 26,
	DHR_MAX_AGE_S = 1200, /* records older than this are refused (republished every 300) */
	DHR_MAX_SKEW_S = 300, /* nor are records signed this far in the future */
	DHR_MAX_GETS = 64,    /* a lookup gives up after this many gets */
	DHR_MAX_KEYS = 11,    /* keys one prefix is published under, id key included */
	/* the site's NAT maps ports per destination (endpoint-dependent, "symmetric"): its
	 * locators only show its address, their ports are good only to the peer that saw them.
	 * Two such sites cannot punch to each other (without a relay). */
	DHR_F_EDM = 0x80,
	DHR_F_GROUP = 0x40,   /* a group record: the group follows the locators */
	DHR_F_LEFT = 0x20,    /* with DHR_F_GROUP: the site has no listener of it any more */
	DHR_F_ANYCAST = 0x10, /* the site is one member of an anycast prefix (the record's) */
	DHR_F_KNOWN = DHR_F_EDM | DHR_F_GROUP | DHR_F_LEFT | DHR_F_ANYCAST,
};

enum dhr_mode { DHR_BSEARCH = 0, DHR_WALK = 1, DHR_LENGTHS = 2 };

/* A set of prefix lengths 0..128: length L is bit L % 64 of word L / 64. */
struct dhr_lens {
	uint64_t m[3];
};

/* Adds length len (0..128) to l. */
static inline void dhr_lens_add(struct dhr_lens *l, unsigned len)
{
	l->m[len / 64] |= 1ULL << (len % 64);
}

/* True if l holds length len (0..128). */
static inline bool dhr_lens_has(const struct dhr_lens *l, unsigned len)
{
	return l->m[len / 64] >> (len % 64) & 1;
}

struct dhr_cert {
	uint8_t x_pub[32];
	uint8_t ed_pub[32];
	struct prefix prefixes[DHR_MAX_PREFIXES];
	uint8_t nprefixes;
	uint8_t sig[DHR_SIG_LEN];
};

struct dhr_rec {
	struct prefix prefix;
	uint64_t time_s;
	struct sockaddr_in loc[DHR_MAX_LOC];
	uint8_t nloc;
	uint8_t flags;     /* DHR_F_* */
	uint8_t group[16]; /* with DHR_F_GROUP */
	struct dhr_cert cert;
};

/* The Ed25519 key pair a site signs its records with, from its private key file's 32
 * bytes: seed = HMAC-SHA256(key, "peak-overlay-sign-v1"). */
void dhr_sign_key(const uint8_t priv[static 32], uint8_t seed[static 32], uint8_t pub[static 32]);

/* The public key of an Ed25519 seed (an authority key file's 32 bytes). */
void dhr_ed_pub(const uint8_t seed[static 32], uint8_t pub[static 32]);

/* Signs c (its keys and prefixes filled) with the authority's seed: fills c->sig. */
void dhr_cert_sign(struct dhr_cert *c, const uint8_t auth_seed[static 32]);

/* True if c->sig is the authority's signature over c. */
bool dhr_cert_verify(const struct dhr_cert *c, const uint8_t auth_pub[static 32]);

/* Writes r, signed with the site's seed (r->cert.ed_pub must be its public key), into out.
 * Returns the length or -EMSGSIZE / -EINVAL (counts out of range). */
long dhr_rec_write(const struct dhr_rec *r, const uint8_t seed[static 32], uint8_t *out,
                   size_t cap);

/* Parses a record through the cursor (it must hold exactly one) and checks it: its shape,
 * then the certificate against auth_pub, the site's signature, the prefix inside the
 * certificate, the time against now_s. Returns 0, -EBADMSG (malformed), -EPERM (the
 * certificate does not verify), -EACCES (the signature does not), -ERANGE (prefix not
 * certified) or -ESTALE (too old or too far ahead). *r is only meaningful on 0. */
int dhr_rec_parse(struct cur *c, const uint8_t auth_pub[static 32], uint64_t now_s,
                  struct dhr_rec *r);

/* The key of prefix addr/len (addr is masked here). */
void dhr_key_prefix(const uint8_t addr[static 16], unsigned len, uint8_t key[static DHR_KEY_LEN]);

/* The key a multicast group's member sites put their group records under. */
void dhr_key_group(const uint8_t group[static 16], uint8_t key[static DHR_KEY_LEN]);

/* The key the member sites of anycast prefix p put their anycast records under. */
void dhr_key_anycast(const struct prefix *p, uint8_t key[static DHR_KEY_LEN]);

/* The id key of a site with X25519 public key id (only its first 8 bytes are used). */
void dhr_key_id(const uint8_t id[static 8], uint8_t key[static DHR_KEY_LEN]);

/* The keys p's record is published under, distinct, id key last; returns their number. */
size_t dhr_pub_keys(const struct prefix *p, const uint8_t x_pub[static 32],
                    uint8_t keys[static DHR_MAX_KEYS][DHR_KEY_LEN]);

/* One lookup of the longest registered prefix holding dst. */
struct dhr_search {
	uint8_t dst[16];
	enum dhr_mode mode;
	int lo, hi, probe;     /* bsearch: lengths left [lo, hi]; the length probed */
	uint8_t stack[130][2]; /* bsearch: ranges left behind by markers, for backtracking */
	int nstack;
	uint8_t cur[16];      /* walk: the address probed */
	struct dhr_lens lens; /* lengths: the lengths published (hi: the longest left) */
	unsigned gets;
	bool done, found;
	struct dhr_rec best;
};

void dhr_search_init(struct dhr_search *s, const uint8_t dst[static 16], enum dhr_mode mode);

/* Starts a DHR_LENGTHS lookup of dst over the lengths in lens. */
void dhr_search_init_lengths(struct dhr_search *s, const uint8_t dst[static 16],
                             const struct dhr_lens *lens);

/* The next key to get; false once the lookup is over (then s->found says if s->best is
 * the answer). */
bool dhr_search_next(struct dhr_search *s, uint8_t key[static DHR_KEY_LEN]);

/* The verified records the last get returned (any number, any order). */
void dhr_search_feed(struct dhr_search *s, const struct dhr_rec *recs, size_t n);

/* The binary search (or walk) with several gets in flight: the same answer as one
 * dhr_search fed get after get, in about the time of its slowest get instead of their sum.
 * Its steps form a chain, each the search as it probes one key; a step's successor is the
 * search after that key's answer. A get's first value that is a hit answers its step at
 * once (records are signed: present is present); absent needs the get's end, so
 * dhr_par_speculate may start the successors that assume "absent" before it. A step that
 * turns out present (or whose values change the best match's length) drops the steps after
 * it, whose gets are then superseded, and the branch starts again from it. The lookup ends
 * when the first step is the search's end and every get before it has ended (their late
 * values count: the best match is over all records seen). Pure code: the caller runs the
 * gets, tells values and ends by the id dhr_par_want gave, in any order. */
enum {
	DHR_PAR_MAX = 10, /* steps held at once: a search's gets in flight, at most */
};

enum dhr_step_state {
	DHR_ST_WANT = 1, /* its get is to start (dhr_par_want) */
	DHR_ST_WAIT,     /* its get runs, no hit yet */
	DHR_ST_ABSENT,   /* its get ended without a hit */
	DHR_ST_HIT,      /* a hit (the get may still run: open) */
	DHR_ST_END,      /* the search is over here (no get) */
};

struct dhr_step {
	struct dhr_search s; /* probing key (after dhr_search_next), values considered */
	uint8_t key[DHR_KEY_LEN];
	uint8_t st;   /* enum dhr_step_state */
	bool open;    /* its get runs */
	bool assumed; /* DHR_ST_WAIT long enough: dhr_par_answer takes it as absent */
	uint32_t id;  /* its get's */
};

struct dhr_par {
	struct dhr_step step[DHR_PAR_MAX];
	unsigned n;
	uint32_t next_id;
	unsigned issued;     /* gets started */
	unsigned spec;       /* of them, started while an earlier step was unanswered */
	unsigned superseded; /* of them, dropped while running (their answers unused) */
};

/* Starts a lookup of dst: its first step wants its get. */
void dhr_par_init(struct dhr_par *p, const uint8_t dst[static 16], enum dhr_mode mode);

/* Starts a DHR_LENGTHS lookup of dst over the lengths in lens: its first step wants its get. */
void dhr_par_init_lengths(struct dhr_par *p, const uint8_t dst[static 16],
                          const struct dhr_lens *lens);

/* The first step whose get is to start: its key and id (the get is then running); false if
 * none, or if it is speculative and !spec_ok. */
bool dhr_par_want(struct dhr_par *p, bool spec_ok, uint8_t key[static DHR_KEY_LEN], uint32_t *id);

/* Adds steps that assume the last unanswered ones absent, up to DHR_PAR_MAX steps and
 * DHR_MAX_GETS gets started in all; returns how many were added (their gets are wanted). */
unsigned dhr_par_speculate(struct dhr_par *p);

/* Verified values of get id (each once, any number at a time). False if id is no step's
 * (superseded, or unknown): ignore them. */
bool dhr_par_value(struct dhr_par *p, uint32_t id, const struct dhr_rec *recs, size_t n);

/* Get id ended. False if it is no step's. */
bool dhr_par_done(struct dhr_par *p, uint32_t id);

/* The answer once the lookup is over (found, best, gets as dhr_search has them), else NULL. */
const struct dhr_search *dhr_par_result(const struct dhr_par *p);

/* Get id has gone too long without a hit: dhr_par_answer may take its step as absent. False
 * if it is no waiting step's get. */
bool dhr_par_assume(struct dhr_par *p, uint32_t id);

/* An answer before the end (NULL if none yet): once the chain reaches the search's end
 * through steps each answered (a hit's get may still run) or, still waiting, assumed absent
 * (dhr_par_assume), and that end found a record. Values still to come or a step assumed
 * absent wrongly may change it: dhr_par_result gives the final answer. */
const struct dhr_search *dhr_par_answer(const struct dhr_par *p);
