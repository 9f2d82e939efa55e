/* What a slave says of itself (slave_probe.h): its stats and show output, searched. */
#include "slave_probe.h"

#include <stdlib.h>
#include <string.h>

#include "../../src/sys/metrics.h"

unsigned long long slave_metric(struct ov_slave *s, const char *name)
{
	struct mbuf b = {0};
	s->ops->stats(s, &b);
	const char *p = b.p ? strstr(b.p, name) : NULL;
	unsigned long long v = ~0ULL;
	size_t nl = strlen(name);
	while (p && (p[nl] != ' ' || (p != b.p && p[-1] != '\n')))
		p = strstr(p + 1, name);
	if (p)
		v = strtoull(p + nl + 1, NULL, 10);
	free(b.p);
	return v;
}

bool slave_show_has(struct ov_slave *s, const char *text)
{
	struct mbuf b = {0};
	s->ops->show(s, &b);
	bool r = b.p && strstr(b.p, text);
	free(b.p);
	return r;
}
