/* Fuzzes the client library's reply check (answer_parse): whatever a server or a spoofer
 * sends, the client either refuses it with an error code or reads no more records than its
 * arrays hold, and the TXT text it keeps is a terminated string within its buffer. */
#include <string.h>

#include "client.h"
#include "fuzz.h"
#include "peak/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *names[] = {"api.svc.example.", "_ssa.api.svc.example.",
	                              "api.svc.example."};
	static const uint16_t types[] = {DNS_T_APL, DNS_T_TXT, DNS_T_AAAA};
	uint16_t id = size >= 2 ? (uint16_t)(data[0] << 8 | data[1]) : 0;

	for (int k = 0; k < 3; k++) {
		struct dns_name qname;
		struct answer a;
		struct apl_item apl[CLIENT_MAX_APL];
		int napl = -1;
		char txt[512];
		uint8_t aaaa[PEAK_MAX_CANDIDATES][16];
		unsigned naaaa = 0;
		if (dns_name_parse(names[k], &qname))
			__builtin_trap();
		memset(txt, 'x', sizeof(txt));
		int e = answer_parse(data, size, id, &qname, types[k], &a, apl, &napl, txt,
		                     sizeof(txt), aaaa, &naaaa);
		if (e)
			continue;
		if (types[k] == DNS_T_APL && (napl < 0 || napl > CLIENT_MAX_APL))
			__builtin_trap();
		if (naaaa > PEAK_MAX_CANDIDATES)
			__builtin_trap();
		if (!memchr(txt, '\0', sizeof(txt)))
			__builtin_trap();
	}
	return 0;
}
