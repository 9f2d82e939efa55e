/* Fuzzes what the controller reads from a datastore (untrusted: anyone with write access
 * to the etcd prefix): the check of one stored service record, and the base64 of the
 * gateway's bytes fields, whose decoding must invert encoding. Compiled in from
 * src/controller/store_rec.c (it is not in a library). */
#include <stdlib.h>
#include <string.h>

#include "../../src/controller/store_rec.c"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[128];
	char *s = malloc(size + 1), *d = NULL, *e = NULL;
	size_t n = 0, m = 0;
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	store_rec_check("api.svc.example.", (const char *)data, size, why, sizeof(why));
	if ((d = store_b64_dec(s, size, &n))) {
		store_rec_check("api.svc.example.", d, n, why, sizeof(why));
		char *back = NULL;
		e = store_b64_enc(d, n);
		if (!e || !(back = store_b64_dec(e, n, &m)) || m != n || memcmp(back, d, n))
			__builtin_trap();
		free(back);
	}
	free(e);
	free(d);
	free(s);
	return 0;
}
