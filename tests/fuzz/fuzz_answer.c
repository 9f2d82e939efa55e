/* Fuzzes the DNS server's whole query-to-answer path against a fixed zone: whatever comes
 * in, the server either stays silent or sends a response that parses, carries the query's
 * id, and fits the size the query allowed. */
#include <stdlib.h>
#include <string.h>

#include "answer.h"
#include "fuzz.h"
#include "peak/config.h"

static const char zone[] =
    "zone: {name: svc.example., ns: [{name: ns1.svc.example., address: '2001:db8:53::1'}]}\n"
    "services:\n"
    "  - {name: api.svc.example., prefixes: ['2001:db8:5::/64'], slice: 78, select: src,\n"
    "     host: src, fanout: 3, answers: 4, key: 000102030405060708090a0b0c0d0e0f,\n"
    "     endpoints: [{id: a, address: '2001:db8:1::a'}, {id: b, address: '2001:db8:1::b'}]}\n"
    "  - {name: web.svc.example., prefixes: ['2001:db8:6::/64', '2001:db8:7::/64'], slice: 70,\n"
    "     host: src, key: 000102030405060708090a0b0c0d0e0f,\n"
    "     endpoints: [{id: w, address: '2001:db8:1::c', weight: 3}, {id: v, address: "
    "'2001:db8:1::d'}]}\n";

static struct dns_state *state(void)
{
	static struct dns_state *st;
	static struct dnsd_dyn dyn;
	if (st)
		return st;
	struct peak_config *cfg;
	char err[512];
	if (config_parse("fuzz", (const uint8_t *)zone, sizeof(zone) - 1, &cfg, err, sizeof(err)))
		abort();
	if (!(st = dns_state_build(cfg, &dyn, err, sizeof(err))))
		abort();
	return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dnsd_stats stats;
	static uint8_t out[DNSD_TCP_MAX];
	struct dnsd_ctx cx = {.rng = size, .now = 1767225600, .stats = &stats};
	struct dnsd_client cl = {.addr = {0x20, 0x01, 0x0d, 0xb8, 0, 1}, .v6 = true};
	const struct dns_state *st = state();

	for (int tcp = 0; tcp < 2; tcp++) {
		size_t len = dnsd_answer(st, &cx, data, size, &cl, tcp, out,
		                         tcp ? DNSD_TCP_MAX : DNSD_UDP_MAX);
		if (!len)
			continue;
		struct dns_reader r;
		struct dns_rr rr;
		if (dns_reader_init(&r, out, len) || size < 2 ||
		    r.hdr.id != (data[0] << 8 | data[1]) || !(r.hdr.flags & DNS_F_QR))
			__builtin_trap();
		if (!tcp && len > DNSD_UDP_MAX)
			__builtin_trap();
		int e;
		while ((e = dns_reader_rr(&r, &rr)) == 0)
			;
		if (e != -ENOENT || dns_reader_trailing(&r))
			__builtin_trap(); /* every response we write must parse */
	}
	return 0;
}
