/* peak load: the SSA-aware HTTP/1.1 load generator of the benchmarks. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../load/load.h"
#include "../sys/net.h"
#include "cli.h"
#include "peak/peak.h"
#include "peak/prefix.h"

static const char load_help[] =
    "usage: peak load TARGET [--port P] [--server ADDR ...] [--sources PREFIX] [--clients N]\n"
    "                 [--concurrency C | --rate R] [--duration S] [--threads T] [--new-conn]\n"
    "                 [--timeout MS] [--retries N] [--retry-delay MS] [--path PATH]\n"
    "                 [--host NAME] [--head] [--timeline MS] [--json] [--progress]\n"
    "                 [--secret-file FILE] [--aaaa] [--list]\n"
    "\n"
    "Sends HTTP/1.1 requests and measures them. TARGET is a service name, resolved through\n"
    "DNS and the service's SSA rule once for every emulated client (each computes its own\n"
    "destination for its own source address), or a plain address [IPV6]:PORT or IPV4:PORT\n"
    "(a proxy, or a pod directly): then every client sends there; or a comma-separated\n"
    "list of such addresses, dealt out to the clients in turn (client k: item k mod n).\n"
    "\n"
    "Closed loop (default): C connections, each sending its next request when the last is\n"
    "answered. Open loop (--rate): R requests per second dealt round robin over the clients,\n"
    "one connection each; latency counts from when a request was due, so a stalled server\n"
    "shows. Latency goes into a log-bucketed histogram (within 1/128 of the exact value).\n"
    "\n"
    "  --port P           service port for a name TARGET (default 80)\n"
    "  --server ADDR      name server for a name TARGET (repeatable; default resolv.conf)\n"
    "  --sources PREFIX   emulated clients' source addresses: with a prefix of /64 or shorter\n"
    "                     client k sends from ::1 of the k-th /64 in it (SSA rules hash the\n"
    "                     source /64); longer: from the k-th address. The host must accept\n"
    "                     them (ip -6 route add local PREFIX dev lo). Default: the kernel's\n"
    "  --clients N        emulated clients (default: C, or 64 with --rate; 1 w/o --sources)\n"
    "  --concurrency C    closed loop with C connections (default 16); a connection uses\n"
    "                     clients C apart in turn when --clients exceeds C\n"
    "  --rate R           open loop at R requests/s\n"
    "  --duration S       seconds of load (default 10; fractions allowed)\n"
    "  --threads T        event loops (default 1)\n"
    "  --new-conn         a new TCP connection per request (default keep-alive)\n"
    "  --timeout MS       per attempt: connect and response (default 2000)\n"
    "  --retries N        after a connection failure (refused, reset, closed, timeout), try\n"
    "                     again on a new connection up to N times (default 0), to the\n"
    "                     client's next candidate address (a service's fanout addresses);\n"
    "                     a connection to such a fallback serves that one request\n"
    "  --retry-delay MS   wait MS before each retry (default 0: at once)\n"
    "  --path PATH        request path (default /)\n"
    "  --host NAME        Host header (default: TARGET)\n"
    "  --head             HEAD instead of GET\n"
    "  --timeline MS      width of the timeline intervals in --json (default 100)\n"
    "  --json             the result as one JSON object on stdout (with latency CDF and\n"
    "                     timeline) instead of text\n"
    "  --progress         a progress line on stderr every second\n"
    "  --secret-file F    hop services' secret, 32 hex digits (or $PEAK_SECRET_FILE)\n"
    "  --aaaa             a legacy client: resolve a name TARGET by its AAAA records alone\n"
    "                     (no SSA computation), asked of the first --server from each\n"
    "                     client's own source as a stub resolver on its host would; the\n"
    "                     answer's addresses are the client's candidates, in order (a\n"
    "                     retry goes to the next). Each client resolves once, at the start:\n"
    "                     the least TTL seen is in --json (aaaa_ttl_s)\n"
    "  --list             print each client's source and destinations, and exit: no load\n"
    "Exit status: 0 the run completed (failed requests are counted, not fatal), 1 the\n"
    "target could not be resolved or the run could not start, 2 usage or bad input (a\n"
    "malformed address list, a bad --server).\n";

struct load_args {
	struct load_opts o;
	struct peak_resolver_opts ro;
	const char *target, *path, *host, *secret_file;
	struct prefix sources;
	bool have_sources, json, have_conc, have_clients, list, aaaa;
	uint32_t aaaa_ttl; /* --aaaa: the least TTL of the answers */
	unsigned nserver, port;
	uint8_t secret[16];
};

static void parse(int argc, char **argv, struct load_args *a)
{
	static const struct option opts[] = {
	    {"port", required_argument, 0, 'p'},
	    {"server", required_argument, 0, 's'},
	    {"sources", required_argument, 0, 'S'},
	    {"clients", required_argument, 0, 'n'},
	    {"concurrency", required_argument, 0, 'c'},
	    {"rate", required_argument, 0, 'r'},
	    {"duration", required_argument, 0, 'd'},
	    {"threads", required_argument, 0, 't'},
	    {"new-conn", no_argument, 0, 'N'},
	    {"timeout", required_argument, 0, 'T'},
	    {"retries", required_argument, 0, 'R'},
	    {"retry-delay", required_argument, 0, 'Y'},
	    {"path", required_argument, 0, 'P'},
	    {"host", required_argument, 0, 'H'},
	    {"head", no_argument, 0, 'E'},
	    {"timeline", required_argument, 0, 'L'},
	    {"json", no_argument, 0, 'j'},
	    {"progress", no_argument, 0, 'g'},
	    {"secret-file", required_argument, 0, 'K'},
	    {"list", no_argument, 0, 'l'},
	    {"aaaa", no_argument, 0, 'A'},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	int c;
	char *end;
	memset(a, 0, sizeof(*a));
	a->port = 80;
	a->path = "/";
	a->o.concurrency = 16;
	a->o.duration_s = 10;
	a->o.threads = 1;
	a->o.timeout_ms = 2000;
	a->o.timeline_ms = 100;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			a->port = (unsigned)cli_u64("load", "--port", optarg, 1, 65535);
			break;
		case 's':
			if (a->nserver == PEAK_MAX_SERVERS)
				cli_usage_error("load", "at most %d --server", PEAK_MAX_SERVERS);
			a->ro.servers[a->nserver++] = optarg;
			break;
		case 'S':
			if (prefix_parse(optarg, true, &a->sources) ||
			    a->sources.family != PEAK_AFI_IP6)
				cli_usage_error("load", "--sources: '%s' is not an IPv6 prefix",
				                optarg);
			a->have_sources = true;
			break;
		case 'n':
			a->o.nclients = (unsigned)cli_u64("load", "--clients", optarg, 1, 1000000);
			a->have_clients = true;
			break;
		case 'c':
			a->o.concurrency =
			    (unsigned)cli_u64("load", "--concurrency", optarg, 1, 100000);
			a->have_conc = true;
			break;
		case 'r':
			a->o.rate = strtod(optarg, &end);
			if (*end || !(a->o.rate > 0 && a->o.rate <= 10e6))
				cli_usage_error("load", "--rate: '%s' is not in (0, 10000000]",
				                optarg);
			break;
		case 'd':
			a->o.duration_s = strtod(optarg, &end);
			if (*end || !(a->o.duration_s > 0 && a->o.duration_s <= 86400))
				cli_usage_error("load", "--duration: '%s' is not in (0, 86400] s",
				                optarg);
			break;
		case 't':
			a->o.threads = (unsigned)cli_u64("load", "--threads", optarg, 1, 256);
			break;
		case 'N':
			a->o.new_conn = true;
			break;
		case 'T':
			a->o.timeout_ms =
			    (unsigned)cli_u64("load", "--timeout", optarg, 1, 3600000);
			break;
		case 'R':
			a->o.retries = (unsigned)cli_u64("load", "--retries", optarg, 0, 100);
			break;
		case 'Y':
			a->o.retry_delay_ms =
			    (unsigned)cli_u64("load", "--retry-delay", optarg, 0, 60000);
			break;
		case 'P':
			if (optarg[0] != '/' || strpbrk(optarg, " \r\n"))
				cli_usage_error("load",
				                "--path: must start with / and hold no space");
			a->path = optarg;
			break;
		case 'H':
			if (!*optarg || strpbrk(optarg, " \r\n"))
				cli_usage_error("load", "--host: empty or holds white space");
			a->host = optarg;
			break;
		case 'E':
			a->o.head = true;
			break;
		case 'L':
			a->o.timeline_ms =
			    (unsigned)cli_u64("load", "--timeline", optarg, 1, 60000);
			break;
		case 'j':
			a->json = true;
			break;
		case 'g':
			a->o.progress = true;
			break;
		case 'K':
			a->secret_file = optarg;
			break;
		case 'l':
			a->list = true;
			break;
		case 'A':
			a->aaaa = true;
			break;
		case 'h':
			fputs(load_help, stdout);
			exit(0);
		default:
			cli_usage_error("load", "unknown or incomplete option '%s' (see --help)",
			                argv[optind - 1]);
		}
	}
	if (optind >= argc)
		cli_usage_error("load", "a TARGET is required: a service name or [ADDR]:PORT");
	a->target = argv[optind++];
	if (optind < argc)
		cli_usage_error("load", "unexpected argument '%s'", argv[optind]);
	if (a->o.rate > 0 && a->have_conc)
		cli_usage_error("load",
		                "--rate (open loop) and --concurrency (closed) exclude each "
		                "other");
	if (a->o.rate > 0)
		a->o.concurrency = 0;
	if (!a->have_clients)
		a->o.nclients = !a->have_sources ? 1 : a->o.concurrency ? a->o.concurrency : 64;
	if (a->have_sources) {
		unsigned width = a->sources.len <= 64 ? 64 - a->sources.len : 128 - a->sources.len;
		if (width < 32 && a->o.nclients >= (1ull << width))
			cli_usage_error("load", "--sources: %u clients do not fit in the prefix",
			                a->o.nclients);
	}
	a->ro.secret = cli_secret_option("load", a->secret_file, a->secret);
	if (a->aaaa && !a->nserver)
		cli_usage_error("load", "--aaaa needs --server (the name server to ask)");
}

/* Client k's source address (--sources), see the help. */
static void client_source(const struct load_args *a, unsigned k, struct in6_addr *out)
{
	uint8_t addr[16];
	memcpy(addr, a->sources.addr, 16);
	if (a->sources.len <= 64) {
		unsigned w = 64 - a->sources.len;
		addr_set_bits(addr, a->sources.len, w, addr_get_bits(addr, a->sources.len, w) + k);
		addr_set_bits(addr, 64, 64, 1);
	} else {
		unsigned w = 128 - a->sources.len;
		addr_set_bits(addr, a->sources.len, w,
		              addr_get_bits(addr, a->sources.len, w) + k + 1);
	}
	memcpy(out, addr, 16);
}

enum { MAX_ADDR_TARGETS = 256 };

/* Parses one address target into its IPv6 form (IPv4 as ::ffff:a.b.c.d); false if it is
 * not an address. */
static bool target_addr(const char *s, struct sockaddr_in6 *dst)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (sockaddr_parse(s, &ss, &sl))
		return false;
	memset(dst, 0, sizeof(*dst));
	if (ss.ss_family == AF_INET6) {
		memcpy(dst, &ss, sizeof(*dst));
	} else { /* one socket family for everything */
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
		dst->sin6_family = AF_INET6;
		dst->sin6_port = s4->sin_port;
		dst->sin6_addr.s6_addr[10] = dst->sin6_addr.s6_addr[11] = 0xff;
		memcpy(&dst->sin6_addr.s6_addr[12], &s4->sin_addr, 4);
	}
	return true;
}

/* Splits a comma-separated list of address targets; returns how many, or 0 if TARGET is
 * not such a list (a name). A malformed list is a usage error (exits 2). */
static int targets_parse(const char *target, struct sockaddr_in6 *dst)
{
	char item[128];
	int n = 0;
	for (const char *p = target;; n++) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len >= sizeof(item) || n == MAX_ADDR_TARGETS)
			cli_usage_error("load", "%s: too long a list or item", target);
		memcpy(item, p, len);
		item[len] = '\0';
		if (!target_addr(item, &dst[n])) {
			if (!n && !comma)
				return 0; /* a name */
			cli_usage_error("load", "'%s' is not [IPV6]:PORT or IPV4:PORT", item);
		}
		if (!dst[n].sin6_port)
			cli_usage_error("load", "%s: the port is 0", item);
		if (!comma)
			return n + 1;
		p = comma + 1;
	}
}

/* --aaaa: every client asks the first --server for TARGET's AAAA records from its own
 * source; the answer is its candidate list. 0, or 1 after telling why on stderr (a bad
 * --server exits 2, as usage). */
static int clients_aaaa(struct load_args *a, struct load_client *cl)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char buf[128];
	const char *srv = a->ro.servers[0];
	if (sockaddr_parse(srv, &ss, &sl)) { /* a bare address: port 53 */
		snprintf(buf, sizeof(buf), strchr(srv, ':') ? "[%s]:53" : "%s:53", srv);
		if (sockaddr_parse(buf, &ss, &sl) || ss.ss_family != AF_INET6)
			cli_usage_error("load", "--server: '%s' is not an IPv6 ADDR or [IPV6]:PORT",
			                srv);
	}
	if (ss.ss_family != AF_INET6)
		cli_usage_error("load", "--server: '%s' is not an IPv6 ADDR or [IPV6]:PORT", srv);
	a->aaaa_ttl = UINT32_MAX;
	for (unsigned k = 0; k < a->o.nclients; k++) {
		struct in6_addr src = IN6ADDR_ANY_INIT, got[LOAD_MAX_DST];
		uint32_t ttl;
		if (a->have_sources)
			client_source(a, k, &src);
		int n = load_aaaa_lookup((const struct sockaddr_in6 *)&ss, &src, a->target, 1000,
		                         got, LOAD_MAX_DST, &ttl);
		if (n < 0) {
			fprintf(stderr, "peak load: %s: AAAA from %s: %s\n", a->target, srv,
			        n == -ENOENT ? "no AAAA records" : strerror(-n));
			return 1;
		}
		cl[k].src.sin6_family = AF_INET6;
		cl[k].src.sin6_addr = src;
		for (int i = 0; i < n; i++) {
			struct sockaddr_in6 *d = &cl[k].dst[cl[k].ndst++];
			*d = (struct sockaddr_in6){.sin6_family = AF_INET6,
			                           .sin6_port = htons((uint16_t)a->port),
			                           .sin6_addr = got[i]};
		}
		if (ttl < a->aaaa_ttl)
			a->aaaa_ttl = ttl;
	}
	return 0;
}

/* Fills one load_client per emulated client; 0, or 1 after telling why on stderr (a bad
 * --server exits 2, as usage). */
static int clients_make(struct load_args *a, struct load_client *cl)
{
	static struct sockaddr_in6 dst[MAX_ADDR_TARGETS];
	int ndst = targets_parse(a->target, dst);
	bool literal = ndst > 0;
	int err = 0;
	struct peak_resolver *r = NULL;
	if (!literal && a->aaaa)
		return clients_aaaa(a, cl);
	if (!literal && !(r = peak_resolver_new(&a->ro, &err))) {
		if (err == PEAK_E_CONFIG && a->nserver)
			cli_usage_error("load", "--server: not ADDR, IPV4:PORT or [IPV6]:PORT");
		fprintf(stderr, "peak load: %s\n",
		        err == PEAK_E_CONFIG ? "no name server in /etc/resolv.conf: use --server"
		                             : peak_strerror(err));
		return 1;
	}
	for (unsigned k = 0; k < a->o.nclients; k++) {
		struct in6_addr src = IN6ADDR_ANY_INIT;
		if (a->have_sources)
			client_source(a, k, &src);
		cl[k].src.sin6_family = AF_INET6;
		cl[k].src.sin6_addr = src;
		if (literal) {
			cl[k].dst[0] = dst[k % (unsigned)ndst];
			cl[k].ndst = 1;
			continue;
		}
		struct peak_result res;
		peak_resolver_set_source(r, a->have_sources ? &src : NULL);
		int e = peak_resolve(r, a->target, NULL, (uint16_t)a->port, &res);
		if (e) {
			const char *d = peak_last_detail(r);
			fprintf(stderr, "peak load: %s: %s%s%s\n", a->target, peak_strerror(e),
			        *d ? ": " : "", d);
			peak_resolver_free(r);
			return 1;
		}
		for (unsigned i = 0; i < res.n && i < LOAD_MAX_DST; i++)
			cl[k].dst[cl[k].ndst++] = res.cand[i].dst;
		if (!a->have_sources)
			cl[k].src = res.cand[0].src;
	}
	peak_resolver_free(r);
	return 0;
}

static double us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

static const double cdf_points[] = {1,  5,    10, 20,   30,    40,   50,    60,    70,     80, 90,
                                    95, 97.5, 99, 99.5, 99.75, 99.9, 99.95, 99.99, 99.999, 100};

/* Prints s as a JSON string. */
static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void print_json(const struct load_args *a, const struct load_result *r)
{
	const struct hist *h = &r->latency;
	printf("{\"target\": ");
	json_string(a->target);
	printf(", \"mode\": \"%s\", \"concurrency\": %u, \"rate\": %.3f, "
	       "\"clients\": %u, \"threads\": %u, \"new_conn\": %s, \"duration_s\": %.3f, "
	       "\"elapsed_s\": %.3f,\n",
	       a->o.concurrency ? "closed" : "open", a->o.concurrency, a->o.rate, a->o.nclients,
	       a->o.threads, a->o.new_conn ? "true" : "false", a->o.duration_s, r->elapsed_s);
	printf(" \"sent\": %llu, \"ok\": %llu, \"failed\": %llu, \"unfinished\": %llu, "
	       "\"retried\": %llu, \"connections\": %llu, \"rps\": %.1f, \"cpu_s\": %.4f,\n",
	       (unsigned long long)r->sent, (unsigned long long)r->ok,
	       (unsigned long long)r->failed, (unsigned long long)r->unfinished,
	       (unsigned long long)r->retried, (unsigned long long)r->connections,
	       (double)r->ok / a->o.duration_s, r->cpu_s);
	printf(" \"latency_us\": {\"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"p99.9\": %.1f, "
	       "\"max\": %.1f, \"mean\": %.1f, \"min\": %.1f},\n",
	       us(hist_percentile(h, 50)), us(hist_percentile(h, 90)), us(hist_percentile(h, 99)),
	       us(hist_percentile(h, 99.9)), us(h->count ? h->max : 0), hist_mean(h) / 1000,
	       us(h->count ? h->min : 0));
	printf(" \"cdf\": [");
	for (size_t i = 0; i < sizeof(cdf_points) / sizeof(cdf_points[0]); i++)
		printf("%s[%.3f, %.1f]", i ? ", " : "", cdf_points[i] / 100,
		       us(hist_percentile(h, cdf_points[i])));
	printf("],\n \"errors\": {");
	for (unsigned e = 0; e < LOAD_E_COUNT; e++)
		printf("%s\"%s\": %llu", e ? ", " : "", load_err_name(e),
		       (unsigned long long)r->err[e]);
	const struct hist *g = &r->outage.gap;
	printf("},\n \"outage\": {\"gaps\": %llu, \"still_down\": %u, \"gap_p50_ms\": %.1f, "
	       "\"gap_max_ms\": %.1f, \"first_fail_s\": %.3f, \"last_fail_s\": %.3f},\n",
	       (unsigned long long)g->count, r->outage.still_down,
	       (double)hist_percentile(g, 50) / 1e6, (double)(g->count ? g->max : 0) / 1e6,
	       r->outage.first_fail_s, r->outage.last_fail_s);
	if (a->aaaa)
		printf(" \"aaaa_ttl_s\": %u,\n", a->aaaa_ttl);
	printf(" \"start_unix\": %.6f, \"attempt_failures_dropped\": %llu,\n"
	       " \"attempt_failures\": [",
	       r->start_unix, (unsigned long long)r->fails_dropped);
	for (unsigned i = 0; i < r->nfails; i++) {
		const struct load_fail *f = &r->fails[i];
		const struct sockaddr_in6 *d = &a->o.clients[f->client].dst[f->dst_index];
		char t[ADDR_STRLEN];
		printf("%s\n  {\"start_s\": %.4f, \"end_s\": %.4f, \"conn\": %u, \"client\": %u, "
		       "\"try\": %u, \"dst_index\": %u, \"dst\": \"[%s]:%u\", \"error\": \"%s\"}",
		       i ? "," : "", (double)f->start_ns / 1e9, (double)f->end_ns / 1e9, f->slot,
		       f->client, f->try_no, f->dst_index,
		       addr_print(PEAK_AFI_IP6, d->sin6_addr.s6_addr, t), ntohs(d->sin6_port),
		       load_err_name((enum load_err)f->err));
	}
	printf("],\n");
	printf(" \"timeline_ms\": %u, \"timeline\": [", a->o.timeline_ms);
	for (unsigned i = 0; i < r->timeline_n; i++)
		printf("%s[%llu, %llu]", i ? ", " : "", (unsigned long long)r->timeline_ok[i],
		       (unsigned long long)r->timeline_failed[i]);
	printf("]}\n");
}

static void print_text(const struct load_args *a, const struct load_result *r)
{
	const struct hist *h = &r->latency;
	if (a->o.concurrency)
		printf("load       %s: %u connections (closed loop), %s, %u clients, %.1f s\n",
		       a->target, a->o.concurrency,
		       a->o.new_conn ? "new connection per request" : "keep-alive", a->o.nclients,
		       a->o.duration_s);
	else
		printf("load       %s: %.0f requests/s (open loop), %s, %u clients, %.1f s\n",
		       a->target, a->o.rate,
		       a->o.new_conn ? "new connection per request" : "keep-alive", a->o.nclients,
		       a->o.duration_s);
	printf("requests   %llu sent, %llu ok, %llu failed, %llu unfinished, %llu retries, "
	       "%llu connections\n",
	       (unsigned long long)r->sent, (unsigned long long)r->ok,
	       (unsigned long long)r->failed, (unsigned long long)r->unfinished,
	       (unsigned long long)r->retried, (unsigned long long)r->connections);
	printf("throughput %.1f requests/s\n", (double)r->ok / a->o.duration_s);
	printf("latency    p50 %.1f us, p90 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us, "
	       "mean %.1f us\n",
	       us(hist_percentile(h, 50)), us(hist_percentile(h, 90)), us(hist_percentile(h, 99)),
	       us(hist_percentile(h, 99.9)), us(h->count ? h->max : 0), hist_mean(h) / 1000);
	printf("errors    ");
	bool any = false;
	for (unsigned e = 0; e < LOAD_E_COUNT; e++)
		if (r->err[e]) {
			printf("%s %s %llu", any ? "," : "", load_err_name(e),
			       (unsigned long long)r->err[e]);
			any = true;
		}
	printf("%s\n", any ? "" : " none");
	const struct hist *g = &r->outage.gap;
	if (r->failed)
		printf(
		    "outage     failures between %.2f s and %.2f s; %llu service gaps closed (p50 "
		    "%.1f ms, max %.1f ms), %u still open at the end\n",
		    r->outage.first_fail_s, r->outage.last_fail_s, (unsigned long long)g->count,
		    (double)hist_percentile(g, 50) / 1e6, (double)(g->count ? g->max : 0) / 1e6,
		    r->outage.still_down);
	printf("cpu        %.2f s in peak load, %.1f us per request\n", r->cpu_s,
	       r->ok ? r->cpu_s * 1e6 / (double)r->ok : 0);
}

int cmd_load(int argc, char **argv)
{
	struct load_args a;
	parse(argc, argv, &a);
	char req[1024];
	int n = snprintf(req, sizeof(req),
	                 "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: peak-load\r\n%s\r\n",
	                 a.o.head ? "HEAD" : "GET", a.path, a.host ? a.host : a.target,
	                 a.o.new_conn ? "Connection: close\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(req))
		cli_usage_error("load", "--path or --host too long");
	a.o.request = req;
	struct load_client *cl = calloc(a.o.nclients, sizeof(*cl));
	if (!cl) {
		fprintf(stderr, "peak load: out of memory for %u clients\n", a.o.nclients);
		return EXIT_NO;
	}
	if (clients_make(&a, cl)) {
		free(cl);
		return EXIT_NO;
	}
	a.o.clients = cl;
	if (a.list) {
		for (unsigned k = 0; k < a.o.nclients; k++) {
			char s[ADDR_STRLEN], d[ADDR_STRLEN];
			printf("%s", addr_print(PEAK_AFI_IP6, cl[k].src.sin6_addr.s6_addr, s));
			for (unsigned i = 0; i < cl[k].ndst; i++)
				printf(" [%s]:%u",
				       addr_print(PEAK_AFI_IP6, cl[k].dst[i].sin6_addr.s6_addr, d),
				       ntohs(cl[k].dst[i].sin6_port));
			putchar('\n');
		}
		free(cl);
		return 0;
	}
	struct load_result r;
	int e = load_run(&a.o, &r);
	if (e) {
		fprintf(stderr, "peak load: cannot run: %s\n", strerror(-e));
		free(cl);
		return EXIT_NO;
	}
	if (a.json)
		print_json(&a, &r);
	else
		print_text(&a, &r);
	load_result_fini(&r);
	free(cl);
	return 0;
}
