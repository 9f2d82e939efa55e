#pragma once
/*
 * DNS message codec (RFC 1035, EDNS(0) RFC 6891, Client Subnet RFC 7871).
 * Reading is safe against hostile input: every access is bounds-checked, compression
 * pointers must point strictly backward, names and labels are length-limited. Writing goes
 * into a caller's buffer with name compression and needs no allocation, so both directions
 * can serve a server's hot path.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peak/cur.h"

enum {
	DNS_HDR_LEN = 12,
	DNS_NAME_MAX = 255,
	DNS_LABEL_MAX = 63,
	DNS_NAME_STRLEN = 4 * DNS_NAME_MAX + 2, /* every octet escaped as \DDD */
	DNS_COMP_MAX = 64,                      /* names remembered for compression */
	DNS_MAX_HOPS = 127,                     /* compression pointers followed per name */
	DNS_UDP_MIN = 512,
};

enum dns_type {
	DNS_T_A = 1,
	DNS_T_NS = 2,
	DNS_T_CNAME = 5,
	DNS_T_SOA = 6,
	DNS_T_PTR = 12,
	DNS_T_MX = 15,
	DNS_T_TXT = 16,
	DNS_T_AAAA = 28,
	DNS_T_OPT = 41,
	DNS_T_APL = 42,
	DNS_T_ANY = 255,
};

enum { DNS_C_IN = 1, DNS_C_ANY = 255 };

enum dns_rcode {
	DNS_R_NOERROR = 0,
	DNS_R_FORMERR = 1,
	DNS_R_SERVFAIL = 2,
	DNS_R_NXDOMAIN = 3,
	DNS_R_NOTIMP = 4,
	DNS_R_REFUSED = 5,
	DNS_R_BADVERS = 16, /* extended: needs EDNS */
};

enum dns_flag {
	DNS_F_QR = 0x8000,
	DNS_F_AA = 0x0400,
	DNS_F_TC = 0x0200,
	DNS_F_RD = 0x0100,
	DNS_F_RA = 0x0080,
	DNS_F_AD = 0x0020,
	DNS_F_CD = 0x0010,
};

/* Opcode field of the flags word. */
static inline unsigned dns_opcode(uint16_t flags)
{
	return (flags >> 11) & 0xf;
}

enum dns_section { DNS_S_QUESTION = 0, DNS_S_ANSWER, DNS_S_AUTHORITY, DNS_S_ADDITIONAL };

enum { EDNS_OPT_ECS = 8, EDNS_DO = 0x8000 };

struct dns_hdr {
	uint16_t id, flags, qdcount, ancount, nscount, arcount;
};

/* A domain name in uncompressed wire form, including the final root label. */
struct dns_name {
	uint8_t len; /* bytes in wire, 1..255 */
	uint8_t wire[DNS_NAME_MAX];
};

struct dns_question {
	struct dns_name name;
	uint16_t type, class;
};

struct dns_rr {
	struct dns_name name;
	uint16_t type, class;
	uint32_t ttl;
	uint16_t rdlen;
	const uint8_t *rdata; /* points into the message */
	size_t rdoff;         /* offset of rdata in the message (for names in rdata) */
	enum dns_section section;
};

/* Client Subnet option (RFC 7871 section 6). */
struct dns_ecs {
	uint16_t family; /* 1 IPv4, 2 IPv6 */
	uint8_t source;  /* SOURCE PREFIX-LENGTH */
	uint8_t scope;   /* SCOPE PREFIX-LENGTH */
	uint8_t addr[16];
};

struct dns_edns {
	bool present;
	uint16_t udp_size;
	uint8_t ext_rcode, version;
	bool do_bit;
	bool has_ecs;
	struct dns_ecs ecs;
};

struct dns_soa {
	struct dns_name mname, rname;
	uint32_t serial, refresh, retry, expire, minimum;
};

/* ---- names ---- */

/* Parses presentation text ("a.example." or "a.example"; "." is the root; \X and \DDD
 * escapes). Returns 0 or -EINVAL (empty label, label over 63, name over 255 octets). */
int dns_name_parse(const char *s, struct dns_name *n);

/* Writes presentation text, always absolute, escaping as RFC 4343 / zone files do. Returns
 * the length or -ENOSPC. */
int dns_name_print(const struct dns_name *n, char *out, size_t cap);

/* Lowers the name's ASCII letters in place: its canonical form for hashing and caching
 * (RFC 4343; length octets are at most 63, never a letter). */
void dns_name_lower(struct dns_name *n);

/* Case-insensitive equality (RFC 4343). */
bool dns_name_eq(const struct dns_name *a, const struct dns_name *b);

/* True if name equals zone or lies below it (label-wise, case-insensitive). */
bool dns_name_under(const struct dns_name *name, const struct dns_name *zone);

/* Number of labels, not counting the root. */
unsigned dns_name_labels(const struct dns_name *n);

/* Reads a possibly compressed name at the cursor, which must point into msg[0..len).
 * Pointers must point strictly before the labels that contain them, so no loop can form.
 * Advances the cursor past the name as stored. Returns 0 or -EBADMSG. */
int dns_name_read(const uint8_t *msg, size_t len, struct cur *c, struct dns_name *out);

/* ---- reading a message ---- */

struct dns_reader {
	const uint8_t *msg;
	size_t len;
	struct cur c;
	struct dns_hdr hdr;
	unsigned left[4]; /* records still to read per section */
};

/* Reads the header. Returns 0 or -EBADMSG (shorter than 12 bytes). */
int dns_reader_init(struct dns_reader *r, const uint8_t *msg, size_t len);

/* Reads the next question. Returns 0, -ENOENT when none is left, or -EBADMSG. */
int dns_reader_question(struct dns_reader *r, struct dns_question *q);

/* Reads the next resource record of the answer, authority or additional sections, skipping
 * any unread questions. Returns 0, -ENOENT when none is left, or -EBADMSG. */
int dns_reader_rr(struct dns_reader *r, struct dns_rr *rr);

/* Bytes after the last record the header announced (0 for a clean message). */
size_t dns_reader_trailing(const struct dns_reader *r);

/* Typed rdata of a record read from msg. Each returns 0 or -EBADMSG (wrong length, a name
 * that does not end exactly at the end of the rdata, malformed options). */
int dns_rdata_name(const uint8_t *msg, size_t len, const struct dns_rr *rr, struct dns_name *out);
int dns_rdata_soa(const uint8_t *msg, size_t len, const struct dns_rr *rr, struct dns_soa *soa);
/* Checks TXT rdata and concatenates its strings into out (NUL-terminated, truncated to
 * cap - 1). Returns the number of character-strings or -EBADMSG. */
int dns_rdata_txt(const struct dns_rr *rr, char *out, size_t cap, size_t *outlen);
/* OPT pseudo-record (RFC 6891 section 6): the owner must be the root. Client Subnet is
 * checked as RFC 7871 section 6 requires (family, lengths, no bits past SOURCE). */
int dns_edns_parse(const struct dns_rr *rr, struct dns_edns *e);

/* A query as an authoritative server needs it. */
struct dns_query {
	struct dns_hdr hdr;
	struct dns_question q;
	struct dns_edns edns;
};

/* Parses a query. Returns 0 for a well-formed query; -EBADMSG for what must get no answer at
 * all (shorter than a header, or QR set); DNS_R_FORMERR for a malformed query whose header
 * is readable (then hdr holds it; q.name.len is 0 if the question did not parse). Checks:
 * exactly one question, records well formed, at most one OPT and only in the additional
 * section, no bytes after the message. The opcode is not checked. */
int dns_query_parse(const uint8_t *msg, size_t len, struct dns_query *q);

/* ---- writing a message ---- */

struct dns_writer {
	struct wcur w;
	uint16_t counts[4];
	uint16_t comp[DNS_COMP_MAX]; /* offsets of names written, for compression */
	unsigned ncomp;
	size_t rr_len_off; /* offset of the open record's RDLENGTH, 0 if none */
	enum dns_section rr_section;
};

/* A point to roll back to (e.g. before a record that did not fit). */
struct dns_mark {
	size_t len;
	unsigned ncomp;
	uint16_t counts[4];
};

/* Starts a message in buf (cap bytes) with the header's id and flags; counts are kept by
 * the writer. */
void dns_writer_init(struct dns_writer *dw, uint8_t *buf, size_t cap, uint16_t id, uint16_t flags);
/* Continues a message of len bytes already in buf (e.g. assembled from pre-encoded parts):
 * counts are read from its header, and the first question's name (at offset 12) is
 * remembered for compression. */
void dns_writer_attach(struct dns_writer *dw, uint8_t *buf, size_t cap, size_t len);
/* Sets the flags word (e.g. to add TC or an rcode after writing). */
void dns_writer_set_flags(struct dns_writer *dw, uint16_t flags);
void dns_writer_question(struct dns_writer *dw, const struct dns_name *n, uint16_t type,
                         uint16_t class);
/* Writes a name, compressed against earlier names when compress is true (owner names, and
 * names inside NS/SOA/CNAME/PTR/MX rdata only: RFC 3597 section 4). */
void dns_writer_name(struct dns_writer *dw, const struct dns_name *n, bool compress);
/* Opens a record: owner, type, class, TTL and a placeholder RDLENGTH. Write the rdata with
 * the dns_writer_* byte functions, then close it with dns_writer_rr_end. */
void dns_writer_rr_begin(struct dns_writer *dw, enum dns_section s, const struct dns_name *n,
                         uint16_t type, uint16_t class, uint32_t ttl);
void dns_writer_rr_end(struct dns_writer *dw);
void dns_writer_bytes(struct dns_writer *dw, const void *p, size_t n);
void dns_writer_u8(struct dns_writer *dw, uint8_t v);
void dns_writer_u16(struct dns_writer *dw, uint16_t v);
void dns_writer_u32(struct dns_writer *dw, uint32_t v);
/* TXT rdata: text split into character-strings of at most 255 bytes. */
void dns_writer_txt_rdata(struct dns_writer *dw, const char *text, size_t len);
void dns_writer_soa_rdata(struct dns_writer *dw, const struct dns_soa *soa);
/* An OPT record in the additional section; ecs may be NULL. */
void dns_writer_opt(struct dns_writer *dw, uint16_t udp_size, uint8_t ext_rcode, uint8_t version,
                    bool do_bit, const struct dns_ecs *ecs);
struct dns_mark dns_writer_mark(const struct dns_writer *dw);
/* Returns to a mark and clears an out-of-room error. */
void dns_writer_rollback(struct dns_writer *dw, const struct dns_mark *m);
/* Writes the counts into the header. Returns the message length, or -EMSGSIZE if anything
 * did not fit. */
int dns_writer_finish(struct dns_writer *dw);
