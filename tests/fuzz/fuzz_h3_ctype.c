/* Fuzzes the content-type patterns of peak h3: the bytes up to the first newline are a
 * --type list, the rest a content-type header value (untrusted, from any client). Whatever
 * the bytes: no overread, parsed patterns are lower case "type/subtype", and matching does
 * not depend on the value's case. */
#include <stdlib.h>
#include <string.h>

#include "../../src/h3/ctype.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char list[1024];
	struct h3_ctype_set set;
	const uint8_t *nl = memchr(data, '\n', size);
	size_t ll = nl ? (size_t)(nl - data) : size;
	if (ll >= sizeof(list))
		return 0;
	memcpy(list, data, ll);
	list[ll] = 0;
	if (h3_ctype_set_parse(&set, list) || strlen(list) != ll)
		return 0;
	for (size_t i = 0; i < set.n; i++) {
		const char *p = set.pat[i], *slash = strchr(p, '/');
		if (!slash || strchr(slash + 1, '/'))
			__builtin_trap();
		for (; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				__builtin_trap();
	}
	if (!nl)
		return 0;
	size_t vl = size - ll - 1;
	char *v = malloc(vl ? vl : 1), *u = malloc(vl ? vl : 1); /* exact sizes for ASan */
	if (!v || !u)
		goto out;
	memcpy(v, nl + 1, vl);
	for (size_t i = 0; i < vl; i++)
		u[i] = v[i] >= 'a' && v[i] <= 'z' ? (char)(v[i] - 'a' + 'A') : v[i];
	if (h3_ctype_set_match(&set, v, vl) != h3_ctype_set_match(&set, u, vl))
		__builtin_trap();
out:
	free(v);
	free(u);
	return 0;
}
