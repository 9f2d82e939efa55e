#pragma once
/* The request header fields the h3 servers act on (method, path, authority, content-type,
 * content-length), kept from untrusted header sections as they arrive, whatever the protocol
 * (HTTP/3 or HTTP/2). Pure code: no I/O. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { H3_HEAD_FIELD_LEN = 256 }; /* bytes kept of a field value, with its NUL */

struct h3_req_head {
	char method[16];
	char path[H3_HEAD_FIELD_LEN];
	char authority[H3_HEAD_FIELD_LEN];
	char ctype[H3_HEAD_FIELD_LEN];
	char clen[24];
	bool has_ctype;
	bool ctype_long; /* the content-type was cut: it matches no pattern */
};

/* Keeps the field name[nl] = value[vl] in h if it is one of the above (names arrive lower
 * case: RFC 9114 §4.2, RFC 9113 §8.2.1); values are cut to size and made printable
 * (h3_field_copy_raw). Other fields are ignored. */
void h3_req_head_field(struct h3_req_head *h, const uint8_t *name, size_t nl, const uint8_t *value,
                       size_t vl);
