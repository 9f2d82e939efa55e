/* The peak command: one binary, subcommands. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../k8s/kube.h"
#include "cli.h"
#include "peak/prefix.h"
#include "peak/ssa.h"
#include "peak/util.h"

_Noreturn void cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "peak %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_USAGE);
}

uint64_t cli_u64(const char *cmd, const char *opt, const char *s, uint64_t min, uint64_t max)
{
	uint64_t v = 0;
	if (!*s || strlen(s) > 20)
		cli_usage_error(cmd, "%s: '%s' is not a number", opt, s);
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
			cli_usage_error(cmd, "%s: '%s' is not a number in %llu..%llu", opt, s,
			                (unsigned long long)min, (unsigned long long)max);
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v < min || v > max)
		cli_usage_error(cmd, "%s: %s is outside %llu..%llu", opt, s,
		                (unsigned long long)min, (unsigned long long)max);
	return v;
}

bool cli_kube_opt(int c, const char *arg, struct kube_opts *ko)
{
	switch (c) {
	case CLI_OPT_KUBE_API:
		ko->api = arg;
		return true;
	case CLI_OPT_KUBE_TOKEN:
		ko->token_file = arg;
		return true;
	case CLI_OPT_KUBE_CA:
		ko->ca_file = arg;
		return true;
	case CLI_OPT_KUBE_SECRET:
		ko->secret_dir = arg;
		return true;
	}
	return false;
}

void cli_addr6(const char *cmd, const char *opt, const char *s, uint8_t out[static 16])
{
	uint8_t fam;
	if (addr_parse(s, &fam, out) || fam != PEAK_AFI_IP6)
		cli_usage_error(cmd, "%s: '%s' is not an IPv6 address", opt, s);
}

void cli_secret_file(const char *cmd, const char *path, uint8_t out[static 16])
{
	int r = peak_secret_read(path, out);
	if (r == -EINVAL)
		cli_usage_error(cmd, "secret file %s: want 32 hex digits", path);
	if (r)
		cli_usage_error(cmd, "secret file %s: cannot read: %s", path, strerror(-r));
}

const uint8_t *cli_secret_option(const char *cmd, const char *path, uint8_t out[static 16])
{
	if (!path)
		path = getenv("PEAK_SECRET_FILE");
	if (!path || !*path)
		return NULL;
	cli_secret_file(cmd, path, out);
	return out;
}

bool cli_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return true;
	}
	return false;
}

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *what;
} commands[] = {
    {"ssa", cmd_ssa, "compute and check SSA addresses (SPEC.md)"},
    {"apl", cmd_apl, "encode and decode APL records (RFC 3123)"},
    {"plan", cmd_plan, "show a configuration's slice assignment and what a change moves"},
    {"dns", cmd_dns, "serve the zone: APL, descriptors and steered AAAA (authoritative)"},
    {"dns-ctl", cmd_dns_ctl, "change a running peak dns: health, weights, reload"},
    {"resolve", cmd_resolve, "compute a service's destination address for this machine"},
    {"connect", cmd_connect, "connect to a service through its SSA rule, relay stdin/stdout"},
    {"load", cmd_load, "an SSA-aware HTTP/1.1 load generator (closed or open loop)"},
    {"serve", cmd_serve, "a tiny test service answering with its endpoint id (TCP, HTTP)"},
    {"store", cmd_store, "a content-addressed object store: pods (serve) and client (put, get)"},
    {"agent", cmd_agent, "program a node's slice routes and its pods' AnyIP routes"},
    {"controller", cmd_controller, "hold the slice assignments; move slices when health changes"},
    {"controller-ctl", cmd_controller_ctl, "change a running controller: weights, health, reload"},
    {"filter", cmd_filter, "attach, update, inspect and detach the XDP filter"},
    {"overlay", cmd_overlay, "one site's IPv6 overlay router: IPv6 over UDP/IPv4 between sites"},
    {"overlay-ctl", cmd_overlay_ctl, "ask a running peak overlay: routes, peers, counters"},
    {"h3", cmd_h3, "HTTP/3: a checksum backend and a multiplexing upload client"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: peak COMMAND [ARGS]\n\n"
	           "PEAK: reach IPv6 services with no ingress proxy on the path.\n\n"
	           "Commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].what);
	fprintf(f, "\nRun 'peak COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("peak %s\n", PEAK_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "peak: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
