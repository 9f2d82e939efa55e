/* Services and EndpointSlices into the controller's services (kube.h). Each Service is
 * written as the YAML of one service and read by config_parse, so it is checked by the
 * same schema and rules as the configuration file; values are first checked against a
 * narrow alphabet, so nothing from the cluster can change the YAML's structure. */
#define _GNU_SOURCE /* open_memstream */
#include "kube.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../controller/store.h" /* store_b64_dec */
#include "../sys/log.h"
#include "peak/util.h"

#define ANN "peak.dev/"

/* Whether s is 1..max bytes of letters, digits and ".:/_-" (no YAML or line syntax). */
static bool plain(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;
	if (!n || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || strchr(".:/_-", ch)))
			return false;
	}
	return true;
}

static const char *ann(json_t *svc, const char *k)
{
	json_t *a = json_object_get(json_object_get(svc, "metadata"), "annotations");
	return json_string_value(json_object_get(a, k));
}

/* Writes a Service's hop secret (data "hop-secret": 32 hex digits) to DIR/NS.NAME.hop with
 * mode 0600, replacing it atomically if it changed. Returns 0 or -errno, why set. */
static int hop_write(const char *dir, const char *ns, const char *name, const char *hex, char *path,
                     size_t cap, const char **why)
{
	char tmp[600];
	uint8_t sec[16];
	char bad;
	int fd = -1, ret;
	if (peak_hex_decode(hex, NULL, sec, sizeof(sec), &bad) != 16) {
		*why = "its hop-secret is not 32 hex digits";
		return -EINVAL;
	}
	explicit_bzero(sec, sizeof(sec));
	snprintf(path, cap, "%s/%s.%s.hop", dir, ns, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		*why = "the secret directory cannot be made";
		return -errno;
	}
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1) {
		*why = "the secret file cannot be written";
		return -errno;
	}
	size_t n = strlen(hex);
	ret = write(fd, hex, n) == (ssize_t)n && write(fd, "\n", 1) == 1 ? 0 : -EIO;
	if (close(fd) == -1 && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path) == -1)
		ret = -errno;
	if (ret) {
		unlink(tmp);
		*why = "the secret file cannot be written";
	}
	return ret;
}

/* One Service's keys from its Secret: the descriptor's key (hex) into key, the hop
 * secret's file path into hop (empty when none). Returns 0 or -EINVAL with why. */
static int keys_get(json_t *svc, const char *ns, kube_secret_fn secret, void *arg, const char *dir,
                    char *key, size_t kcap, char *hop, size_t hcap, const char **why)
{
	const char *ref = ann(svc, ANN "key-secret");
	json_t *data = NULL;
	char *k = NULL, *h = NULL;
	size_t n;
	int ret = -EINVAL;
	key[0] = hop[0] = 0;
	if (!ref)
		return 0;
	if (!plain(ref, 253) || strchr(ref, '/') || strchr(ref, ':')) {
		*why = "peak.dev/key-secret is not a Secret's name";
		return -EINVAL;
	}
	if (!secret || !(data = secret(arg, ns, ref))) {
		*why = "its Secret cannot be read";
		return -EINVAL;
	}
	const char *kb = json_string_value(json_object_get(data, "key"));
	const char *hb = json_string_value(json_object_get(data, "hop-secret"));
	if (kb &&
	    (!(k = store_b64_dec(kb, 256, &n)) || !n || strlen(k) != n || !plain(k, kcap - 1))) {
		*why = "its Secret's key is not hex digits";
		goto out;
	}
	if (hb && (!(h = store_b64_dec(hb, 256, &n)) || strlen(h) != n)) {
		*why = "its Secret's hop-secret is not base64";
		goto out;
	}
	if (h) { /* trailing white space is usual in a file turned into a Secret */
		while (n && (h[n - 1] == '\n' || h[n - 1] == ' ' || h[n - 1] == '\r'))
			h[--n] = 0;
		if (hop_write(dir, ns, ref, h, hop, hcap, why))
			goto out;
	}
	if (k)
		snprintf(key, kcap, "%s", k);
	ret = 0;
out:
	if (k) {
		explicit_bzero(k, strlen(k));
		free(k);
	}
	if (h) {
		explicit_bzero(h, strlen(h));
		free(h);
	}
	json_decref(data);
	return ret;
}

/* Writes the endpoints of Service ns/name from the slices as YAML lines to f, and the
 * draining ones to *drain. Returns 0 or -ENOMEM; an endpoint that does not fit is left
 * out with a log line. */
static int endpoints_write(FILE *f, json_t *slices, const char *ns, const char *name,
                           const char *svcname, struct kube_drain **drain, unsigned *ndrain,
                           unsigned *nep)
{
	const char *key;
	json_t *sl;
	json_object_foreach(slices, key, sl)
	{
		json_t *md = json_object_get(sl, "metadata");
		const char *sns = json_string_value(json_object_get(md, "namespace"));
		const char *owner = json_string_value(
		    json_object_get(json_object_get(md, "labels"), "kubernetes.io/service-name"));
		const char *type = json_string_value(json_object_get(sl, "addressType"));
		json_t *eps = json_object_get(sl, "endpoints"), *ep;
		size_t i;
		if (!sns || !owner || strcmp(sns, ns) || strcmp(owner, name))
			continue;
		if (!type || strcmp(type, "IPv6"))
			continue; /* IPv4 and FQDN slices are not PEAK's */
		json_array_foreach(eps, i, ep)
		{
			json_t *cond = json_object_get(ep, "conditions");
			json_t *ready = json_object_get(cond, "ready");
			json_t *serving = json_object_get(cond, "serving");
			bool term = json_is_true(json_object_get(cond, "terminating"));
			/* "ready" absent means ready (discovery.k8s.io/v1); "serving" says
			 * whether a terminating endpoint still serves */
			bool up = serving ? json_is_true(serving) : !json_is_false(ready);
			const char *addr =
			    json_string_value(json_array_get(json_object_get(ep, "addresses"), 0));
			const char *pod = json_string_value(
			    json_object_get(json_object_get(ep, "targetRef"), "name"));
			const char *node = json_string_value(json_object_get(ep, "nodeName"));
			uint8_t a[16];
			char id[CFG_ID_MAX];
			if (!up)
				continue;
			if (!addr || inet_pton(AF_INET6, addr, a) != 1 || !plain(addr, 45) ||
			    (pod && !plain(pod, CFG_ID_MAX - 1)) ||
			    (node && !plain(node, CFG_ID_MAX - 1))) {
				KLOG(LOG_WARNING,
				     "endpointslice %s: endpoint %zu "
				     "refused: its address, pod or node name is malformed",
				     key, i);
				continue;
			}
			snprintf(id, sizeof(id), "%s", pod ? pod : addr);
			fprintf(f, "      - {id: \"%s\", address: \"%s\"%s%s%s}\n", id, addr,
			        node ? ", node: \"" : "", node ? node : "", node ? "\"" : "");
			(*nep)++;
			if (term) {
				struct kube_drain *d = realloc(*drain, (*ndrain + 1) * sizeof(*d));
				if (!d)
					return -ENOMEM;
				*drain = d;
				snprintf(d[*ndrain].svc, sizeof(d->svc), "%.1000s", svcname);
				snprintf(d[*ndrain].ep, sizeof(d->ep), "%s", id);
				(*ndrain)++;
			}
		}
	}
	return 0;
}

/* The YAML of Service ns/name (svc), for config_parse, into *yaml (malloc'ed). Returns 0,
 * -ENOMEM, or -EINVAL with why (an annotation is invalid). */
static int service_yaml(json_t *svc, json_t *slices, const char *ns, const char *name,
                        const char *zone, kube_secret_fn secret, void *arg, const char *dir,
                        char **yaml, char *svcname, size_t ncap, struct kube_drain **drain,
                        unsigned *ndrain, const char **why)
{
	static const char *const rule_keys[] = {"select", "host",   "fanout", "pow",
	                                        "nonce",  "period", "skew"};
	const char *pfx = ann(svc, ANN "prefixes"), *slice = ann(svc, ANN "slice");
	const char *dname = ann(svc, ANN "name"), *rule = ann(svc, ANN "rule");
	const char *port = ann(svc, ANN "port"), *answers = ann(svc, ANN "answers");
	char key[256], hop[600], rbuf[256], pbuf[512];
	size_t sz = 0;
	FILE *f = NULL;
	int ret = -EINVAL;
	unsigned nep = 0;
	*yaml = NULL;
	if (!pfx || strlen(pfx) >= sizeof(pbuf))
		*why = "peak.dev/prefixes is not IPv6 prefixes separated by commas";
	else if (!plain(slice, 3))
		*why = "peak.dev/slice is missing or not a number";
	else if (dname && !plain(dname, 253))
		*why = "peak.dev/name is not a domain name";
	else if (rule && (strlen(rule) >= sizeof(rbuf) || strpbrk(rule, "\"\\\n")))
		*why = "peak.dev/rule is not KEY=VALUE,...";
	else if (port && !plain(port, 5))
		*why = "peak.dev/port is not a number";
	else if (answers && !plain(answers, 2))
		*why = "peak.dev/answers is not a number";
	else if (!plain(zone, 253))
		*why = "the zone's name has bytes a Service's cannot have";
	if (*why)
		return -EINVAL;
	/* prefixes: each one plain (commas separate them) */
	snprintf(pbuf, sizeof(pbuf), "%s", pfx);
	for (char *sv = NULL, *p = strtok_r(pbuf, ",", &sv); p; p = strtok_r(NULL, ",", &sv))
		if (!plain(p, 64)) {
			*why = "peak.dev/prefixes is not IPv6 prefixes separated by commas";
			return -EINVAL;
		}
	if (dname)
		snprintf(svcname, ncap, "%s%s", dname, dname[strlen(dname) - 1] == '.' ? "" : ".");
	else
		snprintf(svcname, ncap, "%s.%s.%s", name, ns, zone);
	if (!port) { /* the Service's first port */
		json_int_t p = json_integer_value(json_object_get(
		    json_array_get(json_object_get(json_object_get(svc, "spec"), "ports"), 0),
		    "port"));
		snprintf(hop, sizeof(hop), "%lld", (long long)(p > 0 && p < 65536 ? p : 80));
	}
	if (!(f = open_memstream(yaml, &sz)))
		return -ENOMEM;
	fprintf(f,
	        "zone: {name: \"%s\", ns: [{name: ns.k8s.invalid.}]}\n"
	        "services:\n  - name: \"%s\"\n    prefixes: [",
	        zone, svcname);
	snprintf(pbuf, sizeof(pbuf), "%s", pfx);
	int np = 0;
	for (char *sv = NULL, *p = strtok_r(pbuf, ",", &sv); p; p = strtok_r(NULL, ",", &sv))
		fprintf(f, "%s\"%s\"", np++ ? ", " : "", p);
	fprintf(f, "]\n    slice: \"%s\"\n    port: \"%s\"\n", slice, port ? port : hop);
	if (answers)
		fprintf(f, "    answers: \"%s\"\n", answers);
	if (rule) {
		snprintf(rbuf, sizeof(rbuf), "%s", rule);
		for (char *sv = NULL, *p = strtok_r(rbuf, ", ", &sv); p;
		     p = strtok_r(NULL, ", ", &sv)) {
			char *eq = strchr(p, '=');
			bool known = false;
			if (eq) {
				*eq = 0;
				for (size_t k = 0; k < sizeof(rule_keys) / sizeof(rule_keys[0]);
				     k++)
					known |= !strcmp(p, rule_keys[k]);
			}
			if (!known || !plain(eq + 1, 64)) {
				*why =
				    "peak.dev/rule is not KEY=VALUE,... of select, host, fanout, "
				    "pow, nonce, period, skew";
				goto out;
			}
			fprintf(f, "    %s: \"%s\"\n", p, eq + 1);
		}
	}
	if (keys_get(svc, ns, secret, arg, dir, key, sizeof(key), hop, sizeof(hop), why))
		goto out;
	if (key[0])
		fprintf(f, "    key: \"%s\"\n", key);
	explicit_bzero(key, sizeof(key));
	if (hop[0])
		fprintf(f, "    secret-file: \"%s\"\n", hop);
	fprintf(f, "    endpoints:\n");
	if ((ret = endpoints_write(f, slices, ns, name, svcname, drain, ndrain, &nep)))
		goto out;
	if (!nep) /* "endpoints: []": a service with none yet */
		fprintf(f, "      []\n");
	ret = 0;
out:
	if (fclose(f) && !ret)
		ret = -ENOMEM;
	if (ret) {
		free(*yaml);
		*yaml = NULL;
	}
	return ret;
}

int kube_translate(struct peak_config *cfg, json_t *services, json_t *slices, kube_secret_fn secret,
                   void *arg, const char *secret_dir, json_t *refused, struct kube_drain **drain,
                   unsigned *ndrain)
{
	json_t *was = json_deep_copy(refused);
	json_object_clear(refused);
	char zone[DNS_NAME_STRLEN], svcname[DNS_NAME_STRLEN + 300], err[CFG_ERRLEN];
	const char *key;
	json_t *svc;
	dns_name_print(&cfg->zone, zone, sizeof(zone));
	json_object_foreach(services, key, svc)
	{
		json_t *md = json_object_get(svc, "metadata");
		const char *ns = json_string_value(json_object_get(md, "namespace"));
		const char *name = json_string_value(json_object_get(md, "name"));
		const char *why = NULL;
		char *yaml = NULL;
		unsigned nd = *ndrain;
		struct peak_config *one = NULL;
		if (!ann(svc, ANN "prefixes") || !ns || !name)
			continue; /* not PEAK's */
		int r = service_yaml(svc, slices, ns, name, zone, secret, arg, secret_dir, &yaml,
		                     svcname, sizeof(svcname), drain, ndrain, &why);
		if (r == -ENOMEM) {
			json_decref(was);
			return r;
		}
		if (!r && config_parse(key, (const uint8_t *)yaml, strlen(yaml), &one, err,
		                       sizeof(err))) {
			why = err;
			r = -EINVAL;
		}
		free(yaml);
		for (unsigned i = 0; !r && i < cfg->nsvc; i++)
			if (dns_name_eq(&cfg->svc[i].name, &one->svc[0].name)) {
				why = "another Service has its name";
				r = -EINVAL;
			}
		if (r) {
			*ndrain = nd; /* its endpoints are not the controller's */
			const char *before = json_string_value(json_object_get(was, key));
			if (!before || strcmp(before, why))
				KLOG(LOG_WARNING, "service %s left out: %s", key, why);
			json_object_set_new(refused, key, json_string(why));
			config_free(one);
			continue;
		}
		struct cfg_service *s = realloc(cfg->svc, (cfg->nsvc + 1) * sizeof(*s));
		if (!s) {
			config_free(one);
			json_decref(was);
			return -ENOMEM;
		}
		cfg->svc = s;
		s[cfg->nsvc++] = one->svc[0];
		one->svc[0].ep = NULL; /* now cfg's */
		config_free(one);
	}
	json_decref(was);
	return 0;
}
