#pragma once
/*
 * IPv4/IPv6 addresses and prefixes: parsing, RFC 5952 printing, containment, ordering,
 * splitting into slices and aggregation of any set of prefixes into the minimal cover.
 * Pure code: no I/O, no allocation except in prefix_aggregate's caller-provided array.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Address families by their IANA numbers, as APL (RFC 3123) uses them. */
enum { PEAK_AFI_IP4 = 1, PEAK_AFI_IP6 = 2 };

/* "ffff:ffff:...:255.255.255.255/128" plus NUL, rounded up. */
enum { PREFIX_STRLEN = 56, ADDR_STRLEN = 48 };

struct prefix {
	uint8_t family; /* PEAK_AFI_IP4 or PEAK_AFI_IP6 */
	uint8_t len;    /* prefix length in bits */
	uint8_t addr[16];
};

/* Address width in bits for a family (32 or 128), 0 if unknown. */
unsigned prefix_family_bits(uint8_t family);

/* Parses an IPv4 or IPv6 address (no length) into out[16]; sets *family. 0 or -EINVAL. */
int addr_parse(const char *s, uint8_t *family, uint8_t out[static 16]);

/* Parses "ADDR/LEN". Bits set beyond LEN are an error (-EINVAL) unless mask is true,
 * in which case they are cleared. A bare address is an error. Returns 0 or -EINVAL. */
int prefix_parse(const char *s, bool mask, struct prefix *out);

/* Prints an address in canonical form (RFC 5952 for IPv6). Returns out. */
char *addr_print(uint8_t family, const uint8_t addr[static 16], char out[static ADDR_STRLEN]);

/* Prints "ADDR/LEN" in canonical form. Returns out. */
char *prefix_print(const struct prefix *p, char out[static PREFIX_STRLEN]);

/* Clears the bits of addr beyond len. */
void prefix_mask_bits(uint8_t addr[static 16], unsigned len);

/* True if the address (of p's family) lies inside p. */
bool prefix_contains_addr(const struct prefix *p, const uint8_t addr[static 16]);

/* True if prefix inner lies inside prefix outer (same family, outer no longer). */
bool prefix_contains(const struct prefix *outer, const struct prefix *inner);

/* Total order: family, then address bits, then length (shorter first). */
int prefix_cmp(const struct prefix *a, const struct prefix *b);

/* Reads / writes the bit field [off, off+nbits) of a 128-bit big-endian address;
 * nbits <= 64 and off + nbits <= 128. */
uint64_t addr_get_bits(const uint8_t addr[static 16], unsigned off, unsigned nbits);
void addr_set_bits(uint8_t addr[static 16], unsigned off, unsigned nbits, uint64_t v);

/* Writes the index-th sub-prefix of length sublen of p into out (index < 2^(sublen-p->len),
 * sublen - p->len <= 63). Returns 0, or -EINVAL if out of range. */
int prefix_slice(const struct prefix *p, unsigned sublen, uint64_t index, struct prefix *out);

/* Replaces the n prefixes of v (any order, overlaps allowed) by the minimal list of prefixes
 * covering exactly their union, sorted by prefix_cmp. Returns the new count. */
size_t prefix_aggregate(struct prefix *v, size_t n);
