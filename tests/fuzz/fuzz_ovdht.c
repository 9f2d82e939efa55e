/* Fuzzes the DHT slave's record parser (src/overlay/dhtrec.h) as on_value in dht.c runs it
 * on any value a DHT node returns: parse and verify against a fixed authority at a fixed
 * time. A record that passes must hold its invariants, and must feed a lookup without
 * harm; one signed by the harness's site key (the seeds: dhr_rec_write with the keys below)
 * must survive a write and a second parse unchanged. */
#include <stdlib.h>
#include <string.h>

#include "dhtrec.h"
#include "fuzz.h"

enum { NOW_S = 1000000 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t auth_seed[32] = {1, 2, 3}, auth_pub[32], site_priv[32] = {4, 5, 6};
	static uint8_t site_seed[32], site_ed[32];
	static int ready;
	static uint8_t buf[DHR_REC_MAX];
	if (!ready) {
		dhr_ed_pub(auth_seed, auth_pub);
		dhr_sign_key(site_priv, site_seed, site_ed);
		ready = 1;
	}
	struct cur c = cur_make(data, size);
	struct dhr_rec r, back;
	if (dhr_rec_parse(&c, auth_pub, NOW_S, &r))
		return 0;
	if (!r.nloc || r.nloc > DHR_MAX_LOC || !r.cert.nprefixes ||
	    r.cert.nprefixes > DHR_MAX_PREFIXES || r.prefix.len > 128 || size > DHR_REC_MAX)
		__builtin_trap();
	struct dhr_search s;
	uint8_t key[DHR_KEY_LEN];
	dhr_search_init(&s, r.prefix.addr, DHR_BSEARCH);
	while (dhr_search_next(&s, key))
		dhr_search_feed(&s, &r, 1);
	if (!s.found || prefix_cmp(&s.best.prefix, &r.prefix))
		__builtin_trap(); /* a lookup of the record's own address finds it */
	if (memcmp(r.cert.ed_pub, site_ed, 32))
		return 0;
	long n = dhr_rec_write(&r, site_seed, buf, sizeof(buf));
	c = cur_make(buf, (size_t)n);
	if (n != (long)size || dhr_rec_parse(&c, auth_pub, NOW_S, &back) ||
	    prefix_cmp(&back.prefix, &r.prefix) || back.time_s != r.time_s)
		__builtin_trap();
	return 0;
}
