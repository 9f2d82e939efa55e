#pragma once
/*
 * Structured Service Addressing, version ssa1 (SPEC.md): the descriptor, the address
 * computation for every select/host rule with fanout and proof of work, and the stateless
 * check a filter runs on a (source, destination) pair. Pure code; randomness comes from the
 * caller.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peak/prefix.h"

enum ssa_rule { SSA_RAND = 0, SSA_SRC = 1, SSA_OBJ = 2, SSA_HOP = 3 };

enum {
	SSA_MAX_PREFIXES = 64,
	SSA_DESC_STRLEN = 256, /* enough for every field at its longest */
	SSA_ERRLEN = 160,
	SSA_DEF_PERIOD_S = 30,
	SSA_DEF_NONCE_BITS = 32,
	SSA_DEF_SKEW_EPOCHS = 1,
	SSA_MAX_REPLICAS = 8,
	/* The largest proof of work a descriptor may ask: about 2^28 hashes per address, about
	 * a minute of one core here (bench_resolve pow 20: 0.16 s median). A larger one
	 * (SPEC.md allows up to 64) would let one spoofed TXT record make every client search
	 * for days, so the parser refuses it; clients bound the search by their timeout too. */
	SSA_MAX_POW_BITS = 28,
	/* The proof-of-work search asks ssa_req.pow_stop after every this many nonces. */
	SSA_POW_CHECK_NONCES = 1 << 14,
};

/* A parsed descriptor (SPEC.md section 3). */
struct ssa_desc {
	uint8_t slice;  /* slice length L */
	uint8_t select; /* enum ssa_rule */
	uint8_t host;   /* SSA_RAND, SSA_SRC or SSA_HOP */
	uint8_t fanout; /* 1..255 */
	uint8_t pow;    /* difficulty in bits, 0..SSA_MAX_POW_BITS */
	uint8_t nonce;  /* nonce width in bits when pow > 0, 1..64 */
	uint8_t skew;   /* epochs, 0..4 */
	/* select=obj: copies of each object, 1..SSA_MAX_REPLICAS (default 1). Not in SPEC.md's
	 * ssa1 table yet: clients that do not know it ignore it (forward compatibility) and
	 * reach replica 0; the object store (src/store/) writes and reads the copies. */
	uint8_t replicas;
	bool has_key;
	uint32_t period; /* seconds, 1..86400 */
	uint8_t key[16];
};

/* A service's address space under a descriptor: derived widths (SPEC.md section 5). */
struct ssa_space {
	struct prefix pfx[SSA_MAX_PREFIXES];
	unsigned n;        /* number of prefixes */
	unsigned p;        /* prefix length */
	unsigned s;        /* slice bits per prefix */
	unsigned hb;       /* host value bits */
	unsigned fanbits;  /* 8 if fanout > 1, else 0 */
	unsigned w;        /* nonce bits if pow > 0, else 0 */
	uint64_t nslices;  /* T = n * 2^s */
	struct ssa_desc d; /* the descriptor this space was built for */
};

/* What a client knows when it computes an address. */
struct ssa_req {
	const uint8_t *src;    /* 16 bytes: the source address the service will see */
	uint8_t index;         /* fanout index i, < fanout */
	const uint8_t *object; /* object key bytes for select=obj */
	size_t object_len;
	uint8_t replica;       /* replica r for select=obj */
	uint64_t time;         /* unix seconds, for hop rules */
	const uint8_t *secret; /* 16 bytes, for hop rules; never published */
	uint64_t rand[3];      /* caller's random words, used by rand rules */
	/* Bounds the proof-of-work search: called with pow_arg after every
	 * SSA_POW_CHECK_NONCES nonces tried; when it returns true the search gives up with
	 * -ETIMEDOUT. NULL: search the whole nonce field. */
	bool (*pow_stop)(void *pow_arg);
	void *pow_arg;
};

enum ssa_verdict {
	SSA_PASS = 0,
	SSA_OUTSIDE,       /* destination in no service prefix: not the filter's business */
	SSA_REJECT_FANOUT, /* fanout index field >= fanout */
	SSA_REJECT_SLICE,  /* slice differs from the select rule's */
	SSA_REJECT_HOST,   /* host value differs from the host rule's */
	SSA_REJECT_POW,    /* too few leading zero bits in the proof of work */
};

/* Sets d to the defaults of every optional field (no slice, no key). */
void ssa_desc_init(struct ssa_desc *d);

/* Sets one field ("slice", "select", ...) from its text value, with the same checks as
 * ssa_desc_parse. Returns 0 or -EINVAL with a reason in err. */
int ssa_desc_set(struct ssa_desc *d, const char *name, const char *value, char *err, size_t errlen);

/* Checks what only the whole descriptor shows (the key requirement). 0 or -EINVAL. */
int ssa_desc_validate(const struct ssa_desc *d, char *err, size_t errlen);

/* Parses a descriptor string of length len. Returns 0, or -EINVAL with a one-line reason
 * in err (if err is not NULL). Validates each field's syntax and range (pow at most
 * SSA_MAX_POW_BITS), repeats and the key requirement; checks against prefixes are
 * ssa_space_init's. */
int ssa_desc_parse(const char *s, size_t len, struct ssa_desc *d, char *err, size_t errlen);

/* Writes the canonical descriptor text (required fields and those not at their default).
 * Returns the length, or -ENOSPC if cap is too small. */
int ssa_desc_print(const struct ssa_desc *d, char *out, size_t cap);

/* Name of a rule ("rand", "src", "obj", "hop"). */
const char *ssa_rule_name(unsigned rule);

/* Builds the address space of n IPv6 prefixes of equal length under d. Returns 0, or
 * -EINVAL with a reason in err: unequal lengths, overlaps, slice shorter than the prefixes,
 * more than 2^32 slices, or no room for the host, fanout and nonce fields. */
int ssa_space_init(struct ssa_space *sp, const struct ssa_desc *d, const struct prefix *pfx,
                   unsigned n, char *err, size_t errlen);

/* Computes the destination address for a request (SPEC.md section 6). Returns 0, -EINVAL
 * (index >= fanout, missing object or secret), -EAGAIN when no nonce of the field's width
 * satisfies the proof of work, or -ETIMEDOUT when r->pow_stop ended the search. */
int ssa_compute(const struct ssa_space *sp, const struct ssa_req *r, uint8_t out[static 16]);

/* As ssa_compute, but in the given slice g (< nslices) whatever the select rule says: the
 * host, fanout and nonce fields follow the rules. For select=rand/obj the result passes
 * the filter; a server uses it to steer a client into a slice of its choice. */
int ssa_compute_slice(const struct ssa_space *sp, const struct ssa_req *r, uint64_t g,
                      uint8_t out[static 16]);

/* Global slice number of an address inside the space, or -1 if outside every prefix. */
int64_t ssa_slice_of(const struct ssa_space *sp, const uint8_t addr[static 16]);

/* The filter check of SPEC.md section 7 for a packet src -> dst at unix time t. secret is
 * required for hop rules (returns -EINVAL without it). Returns an enum ssa_verdict. */
int ssa_check(const struct ssa_space *sp, const uint8_t src[static 16],
              const uint8_t dst[static 16], uint64_t t, const uint8_t *secret);

/* Name of a verdict ("pass", "outside", "fanout", "slice", "host", "pow"). */
const char *ssa_verdict_name(int v);

/* Parses 32 hex digits (either case) into a 16-byte key. Returns 0 or -EINVAL. */
int ssa_key_parse(const char *hex, size_t len, uint8_t key[static 16]);
