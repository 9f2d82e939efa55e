/* Request heads: the fields kept from a header section. */
#include "head.h"

#include "conn.h"

void h3_req_head_field(struct h3_req_head *h, const uint8_t *name, size_t nl, const uint8_t *value,
                       size_t vl)
{
	if (h3_field_is_raw(name, nl, ":method")) {
		h3_field_copy_raw(h->method, sizeof(h->method), value, vl, NULL);
	} else if (h3_field_is_raw(name, nl, ":path")) {
		h3_field_copy_raw(h->path, sizeof(h->path), value, vl, NULL);
	} else if (h3_field_is_raw(name, nl, ":authority")) {
		h3_field_copy_raw(h->authority, sizeof(h->authority), value, vl, NULL);
	} else if (h3_field_is_raw(name, nl, "content-type")) {
		h->has_ctype = true;
		h3_field_copy_raw(h->ctype, sizeof(h->ctype), value, vl, &h->ctype_long);
	} else if (h3_field_is_raw(name, nl, "content-length")) {
		h3_field_copy_raw(h->clen, sizeof(h->clen), value, vl, NULL);
	}
}
