/* Fuzzes the content-type map parser (TXT _types.NAME, from any DNS answer): a parsed map
 * must print and parse back equal, and lookups of the input itself must not misbehave. */
#include <string.h>

#include "fuzz.h"
#include "peak/typemap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct typemap m, m2;
	char err[TYPEMAP_ERRLEN], out[TYPEMAP_TEXT_MAX];

	(void)typemap_lookup(&(struct typemap){0}, (const char *)data, size);
	if (typemap_parse((const char *)data, size, &m, err, sizeof(err)))
		return 0;
	int n = typemap_print(&m, out, sizeof(out));
	if (n < 0 || typemap_parse(out, (size_t)n, &m2, err, sizeof(err)) ||
	    memcmp(&m, &m2, sizeof(m)))
		__builtin_trap();
	const struct typemap_entry *e = typemap_lookup(&m, (const char *)data, size);
	if (e && (e < m.e || e >= m.e + m.n))
		__builtin_trap();
	for (unsigned i = 0; i < m.n; i++)
		(void)typemap_lookup(&m, m.e[i].pat, strlen(m.e[i].pat));
	return 0;
}
