/* Fuzzes the DNS codec the way a server sees queries: the query parser, then every record
 * and its typed rdata through the reader, and re-encoding of what parsed. */
#include <string.h>

#include "fuzz.h"
#include "peak/apl.h"
#include "peak/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_query q;
	struct dns_reader r;
	struct dns_question qu;
	struct dns_rr rr;
	static struct apl_item items[256];
	char text[1024];

	if (dns_query_parse(data, size, &q) == 0) {
		/* what parsed must re-encode and parse again the same */
		uint8_t out[512];
		struct dns_writer w;
		dns_writer_init(&w, out, sizeof(out), q.hdr.id, q.hdr.flags);
		dns_writer_question(&w, &q.q.name, q.q.type, q.q.class);
		if (q.edns.present)
			dns_writer_opt(&w, q.edns.udp_size, q.edns.ext_rcode, q.edns.version,
			               q.edns.do_bit, q.edns.has_ecs ? &q.edns.ecs : NULL);
		int len = dns_writer_finish(&w);
		struct dns_query q2;
		if (len > 0 && (dns_query_parse(out, (size_t)len, &q2) != 0 ||
		                !dns_name_eq(&q.q.name, &q2.q.name)))
			__builtin_trap();
		dns_name_print(&q.q.name, text, sizeof(text));
	}
	if (dns_reader_init(&r, data, size))
		return 0;
	while (dns_reader_question(&r, &qu) == 0)
		dns_name_print(&qu.name, text, sizeof(text));
	for (int guard = 0; guard < 1000 && dns_reader_rr(&r, &rr) == 0; guard++) {
		struct dns_name n;
		struct dns_soa soa;
		struct dns_edns e;
		switch (rr.type) {
		case DNS_T_NS:
		case DNS_T_CNAME:
		case DNS_T_PTR:
			if (dns_rdata_name(data, size, &rr, &n) == 0)
				dns_name_print(&n, text, sizeof(text));
			break;
		case DNS_T_SOA:
			dns_rdata_soa(data, size, &rr, &soa);
			break;
		case DNS_T_TXT:
			dns_rdata_txt(&rr, text, sizeof(text), NULL);
			break;
		case DNS_T_OPT:
			dns_edns_parse(&rr, &e);
			break;
		case DNS_T_APL: {
			int k = apl_parse(rr.rdata, rr.rdlen, items, 256);
			if (k > 0)
				apl_print(items, (size_t)k, text, sizeof(text));
			break;
		}
		}
	}
	return 0;
}
