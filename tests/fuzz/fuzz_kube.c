/* Fuzzes what the controller reads from the Kubernetes API (untrusted: anyone who may
 * create a Service or an EndpointSlice): a watch stream, cut into chunks of sizes the
 * input chooses, split into lines (kube_lines_feed), each line applied as an event to the
 * copies of the Services (even lines) or the EndpointSlices (odd ones), then the copies
 * translated into services (kube_translate, through config_parse). Secrets are never
 * read here (the secret callback answers none). Invariants checked: a line handed over
 * holds no '\n' and is never longer than the bound. */
#include <stdlib.h>
#include <string.h>

#include "../../src/k8s/kube.h"
#include "../../src/sys/log.h"
#include "fuzz.h"

enum { MAX = 1024 };

struct st {
	json_t *svcs, *slices;
	char rv[KUBE_RV_MAX];
	unsigned n;
};

static int on_line(void *arg, const char *line, size_t len)
{
	struct st *s = arg;
	if (!line)
		return 0;
	if (len > MAX || memchr(line, '\n', len))
		__builtin_trap();
	json_t *ch[2] = {NULL, NULL};
	kube_event_apply(s->n++ % 2 ? s->slices : s->svcs, "fuzz", s->rv, line, len, ch);
	json_decref(ch[0]);
	json_decref(ch[1]);
	return 0;
}

static json_t *no_secret(void *arg, const char *ns, const char *name)
{
	(void)arg;
	(void)ns;
	(void)name;
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st s = {.svcs = json_object(), .slices = json_object()};
	struct kube_lines l = {0};
	struct kube_drain *drain = NULL;
	unsigned nd = 0;
	json_t *refused = json_object();
	struct peak_config *cfg = NULL;
	char err[CFG_ERRLEN];
	static const char base[] = "zone: {name: svc.example., ns: [{name: ns1.svc.example.}]}\n"
	                           "services: []\n";
	log_set_level(LOG_CRIT);
	if (!size || !s.svcs || !s.slices || !refused)
		goto out;
	size_t step = 1 + data[0] % 61;
	for (size_t at = 1; at < size; at += step)
		kube_lines_feed(&l, (const char *)data + at, size - at < step ? size - at : step,
		                MAX, on_line, &s);
	if (config_parse("base", (const uint8_t *)base, sizeof(base) - 1, &cfg, err, sizeof(err)))
		__builtin_trap();
	cfg->nsvc = 0;
	kube_translate(cfg, s.svcs, s.slices, no_secret, NULL, "/nonexistent", refused, &drain,
	               &nd);
out:
	config_free(cfg);
	free(drain);
	kube_lines_fini(&l);
	json_decref(s.svcs);
	json_decref(s.slices);
	json_decref(refused);
	return 0;
}
