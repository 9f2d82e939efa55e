/* Endpoints added at run time as a controller tells a node agent (include/peak/ctlrt.h). */
#include "peak/ctlrt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "peak/dns.h"

/* Whether a is an address no pod of a service can have (RFC 4291 §2.4-2.5): unspecified,
 * loopback, multicast, link-local (it names no node outside one link) or IPv4-mapped. */
static bool addr_bad(const uint8_t a[static 16])
{
	static const uint8_t zero[16], mapped[12] = {[10] = 0xff, [11] = 0xff};
	if (!memcmp(a, zero, 15) && (a[15] == 0 || a[15] == 1))
		return true;
	if (a[0] == 0xff || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80))
		return true;
	return !memcmp(a, mapped, 12);
}

bool ctlrt_for(const struct ctlrt *r, const char *svc)
{
	struct dns_name a, b;
	if (!r->n)
		return true;
	return !dns_name_parse(r->svc, &a) && !dns_name_parse(svc, &b) && dns_name_eq(&a, &b);
}

int ctlrt_take(struct ctlrt *r, const struct ctl_msg *m, uint32_t *dropped, const char **why)
{
	*dropped = 0;
	if (m->kind != CTL_ADD && m->kind != CTL_DEL) {
		*why = "not an add or del line";
		return -EINVAL;
	}
	if (m->kind == CTL_ADD && addr_bad(m->addr)) {
		*why = "bad address (unspecified, loopback, multicast, link-local or mapped IPv4)";
		return -EINVAL;
	}
	if (!ctlrt_for(r, m->svc)) {
		*dropped = r->n;
		r->n = 0;
	}
	if (r->n == CTLRT_MAX) {
		*why = "too many endpoints added at run time for one map";
		return -E2BIG;
	}
	if (r->n == r->cap) {
		uint32_t nc = r->cap ? 2 * r->cap : 16;
		struct ctlrt_line *g = realloc(r->l, nc * sizeof(*g));
		if (!g) {
			*why = "no memory";
			return -ENOMEM;
		}
		r->l = g;
		r->cap = nc;
	}
	struct ctlrt_line *l = &r->l[r->n];
	*l = (struct ctlrt_line){.del = m->kind == CTL_DEL, .weight = m->weight, .seq = r->n};
	memcpy(l->id, m->id, sizeof(l->id));
	l->id[sizeof(l->id) - 1] = '\0';
	memcpy(l->node, m->node, sizeof(l->node));
	l->node[sizeof(l->node) - 1] = '\0';
	memcpy(l->addr, m->addr, 16);
	memcpy(r->svc, m->svc, sizeof(r->svc));
	r->svc[sizeof(r->svc) - 1] = '\0';
	r->n++;
	return 0;
}

/* By id, then by arrival. */
static int line_cmp(const void *pa, const void *pb)
{
	const struct ctlrt_line *a = pa, *b = pb;
	int c = strcmp(a->id, b->id);
	return c ? c : a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int id_cmp(const void *pa, const void *pb)
{
	return strcmp(*(const char *const *)pa, *(const char *const *)pb);
}

int ctlrt_compose(struct ctlrt *r, const struct cfg_endpoint *ep, unsigned nep,
                  struct cfg_endpoint **out, unsigned *nout, unsigned *shadowed)
{
	unsigned nfile = 0, k = 0;
	const char **ids = NULL;
	struct cfg_endpoint *v = NULL;
	int ret = -ENOMEM;
	*out = NULL;
	*nout = 0;
	*shadowed = 0;
	for (unsigned e = 0; e < nep; e++)
		nfile += ep[e].line > 0;
	if (!(ids = malloc((nfile ? nfile : 1) * sizeof(*ids))) ||
	    !(v = malloc(((size_t)nfile + r->n ? (size_t)nfile + r->n : 1) * sizeof(*v))))
		goto out;
	for (unsigned e = 0; e < nep; e++)
		if (ep[e].line > 0) {
			ids[k] = ep[e].id;
			v[k++] = ep[e];
		}
	qsort(ids, nfile, sizeof(*ids), id_cmp);
	if (r->n)
		qsort(r->l, r->n, sizeof(*r->l), line_cmp);
	for (uint32_t j = 0; j < r->n; j++) {
		const struct ctlrt_line *l = &r->l[j];
		const char *key = l->id;
		if (j + 1 < r->n && !strcmp(r->l[j + 1].id, l->id))
			continue; /* a later line names it */
		if (l->del)
			continue;
		if (nfile && bsearch(&key, ids, nfile, sizeof(*ids), id_cmp)) {
			(*shadowed)++;
			continue;
		}
		if (k == CTLRT_MAX) {
			ret = -E2BIG;
			goto out;
		}
		struct cfg_endpoint *e = &v[k++];
		*e = (struct cfg_endpoint){.weight = l->weight, .line = 0};
		memcpy(e->id, l->id, sizeof(e->id));
		memcpy(e->node, l->node, sizeof(e->node));
		memcpy(e->addr, l->addr, 16);
	}
	*out = v;
	*nout = k;
	v = NULL;
	ret = 0;
out:
	free(ids);
	free(v);
	ctlrt_reset(r);
	return ret;
}

void ctlrt_reset(struct ctlrt *r)
{
	r->n = 0;
	r->svc[0] = '\0';
}

void ctlrt_free(struct ctlrt *r)
{
	free(r->l);
	*r = (struct ctlrt){0};
}

int ctlrt_scan(const char *text, size_t len, int (*svc_of)(const struct dns_name *n, void *arg),
               void *arg, struct cfg_endpoint **adds, unsigned *nadd)
{
	struct ctl_msg *m = malloc(sizeof(*m));
	if (!m)
		return -ENOMEM;
	for (size_t at = 0; text && at < len;) {
		const char *nl = memchr(text + at, '\n', len - at);
		size_t ll = nl ? (size_t)(nl - (text + at)) : len - at;
		struct dns_name nm;
		int i;
		if (ll > 4 && !memcmp(text + at, "add ", 4) && !ctl_parse(text + at, ll, m) &&
		    m->kind == CTL_ADD && !dns_name_parse(m->svc, &nm) &&
		    (i = svc_of(&nm, arg)) >= 0) {
			unsigned n = nadd[i];
			if (!n || !(n & (n - 1))) { /* full at 0, 1, 2, 4, ...: double */
				struct cfg_endpoint *g =
				    realloc(adds[i], (n ? 2 * (size_t)n : 1) * sizeof(*g));
				if (!g) {
					free(m);
					return -ENOMEM;
				}
				adds[i] = g;
			}
			struct cfg_endpoint *e = &adds[i][nadd[i]++];
			*e = (struct cfg_endpoint){.weight = m->weight, .line = 0};
			memcpy(e->id, m->id, sizeof(e->id));
			memcpy(e->node, m->node, sizeof(e->node));
			memcpy(e->addr, m->addr, 16);
		}
		at += ll + 1;
	}
	free(m);
	return 0;
}
