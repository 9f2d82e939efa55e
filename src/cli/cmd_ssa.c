/* peak ssa compute|check: the SSA rules of SPEC.md from the command line. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cli.h"
#include "peak/ssa.h"

static const char ssa_help[] =
    "usage: peak ssa compute --prefix P [--prefix P2 ...] --descriptor 'v=ssa1; ...'\n"
    "                        --source ADDR [--object KEY] [--replica R] [--index I]\n"
    "                        [--time UNIX] [--secret HEX | --secret-file FILE]\n"
    "       peak ssa check   --prefix P [...] --descriptor '...' --source ADDR\n"
    "                        --destination ADDR [--time UNIX] [--secret HEX | --secret-file FILE]\n"
    "\n"
    "compute prints the destination address a client with source ADDR uses (SPEC.md 6).\n"
    "check prints 'pass' (exit 0), 'reject: REASON' (exit 1; REASON is fanout, slice, host\n"
    "or pow, SPEC.md 7) or 'outside' (exit 1: the destination is in no prefix).\n"
    "Bad arguments exit 2 with a one-line error.\n"
    "\n"
    "  --prefix P        a service prefix (IPv6, all of equal length, in APL order)\n"
    "  --descriptor D    the descriptor, as published in TXT _ssa.NAME\n"
    "  --source ADDR     the client's source address as the service sees it\n"
    "  --destination A   (check) the packet's destination address\n"
    "  --object KEY      (select=obj) the object's key, as UTF-8 bytes\n"
    "  --replica R       (select=obj) replica number, 0..255 (default 0)\n"
    "  --index I         fanout index, 0..fanout-1 (default 0)\n"
    "  --time UNIX       unix time in seconds for hop rules (default: now)\n"
    "  --secret HEX      hop secret, 32 hex digits (visible to other users: prefer --secret-file)\n"
    "  --secret-file F   read the hop secret from a file\n";

struct ssa_args {
	struct prefix pfx[SSA_MAX_PREFIXES];
	unsigned npfx;
	const char *desc;
	uint8_t src[16], dst[16], secret[16];
	bool have_src, have_dst, have_secret, have_time;
	const char *object;
	uint8_t replica, index;
	uint64_t time;
};

static void parse_args(const char *cmd, int argc, char **argv, struct ssa_args *a)
{
	static const struct option opts[] = {
	    {"prefix", required_argument, 0, 'p'}, {"descriptor", required_argument, 0, 'd'},
	    {"source", required_argument, 0, 's'}, {"destination", required_argument, 0, 'D'},
	    {"object", required_argument, 0, 'o'}, {"replica", required_argument, 0, 'r'},
	    {"index", required_argument, 0, 'i'},  {"time", required_argument, 0, 't'},
	    {"secret", required_argument, 0, 'k'}, {"secret-file", required_argument, 0, 'K'},
	    {"help", no_argument, 0, 'h'},         {0, 0, 0, 0},
	};
	int c;
	memset(a, 0, sizeof(*a));
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (a->npfx == SSA_MAX_PREFIXES)
				cli_usage_error(cmd, "more than %d prefixes", SSA_MAX_PREFIXES);
			if (prefix_parse(optarg, false, &a->pfx[a->npfx]))
				cli_usage_error(cmd,
				                "--prefix: '%s' is not ADDRESS/LENGTH with no "
				                "bits set past LENGTH",
				                optarg);
			a->npfx++;
			break;
		case 'd':
			a->desc = optarg;
			break;
		case 's':
			cli_addr6(cmd, "--source", optarg, a->src);
			a->have_src = true;
			break;
		case 'D':
			cli_addr6(cmd, "--destination", optarg, a->dst);
			a->have_dst = true;
			break;
		case 'o':
			a->object = optarg;
			break;
		case 'r':
			a->replica = (uint8_t)cli_u64(cmd, "--replica", optarg, 0, 255);
			break;
		case 'i':
			a->index = (uint8_t)cli_u64(cmd, "--index", optarg, 0, 254);
			break;
		case 't':
			a->time = cli_u64(cmd, "--time", optarg, 0, UINT64_MAX / 2);
			a->have_time = true;
			break;
		case 'k':
			if (ssa_key_parse(optarg, strlen(optarg), a->secret))
				cli_usage_error(cmd, "--secret: want 32 hex digits");
			a->have_secret = true;
			break;
		case 'K':
			cli_secret_file(cmd, optarg, a->secret);
			a->have_secret = true;
			break;
		case 'h':
			fputs(ssa_help, stdout);
			exit(0);
		default:
			cli_usage_error(cmd, "unknown or incomplete option '%s' (see --help)",
			                argv[optind - 1]);
		}
	}
	if (optind < argc)
		cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
	if (!a->npfx)
		cli_usage_error(cmd, "--prefix is required");
	if (!a->desc)
		cli_usage_error(cmd, "--descriptor is required");
	if (!a->have_src)
		cli_usage_error(cmd, "--source is required");
	if (!a->have_time)
		a->time = (uint64_t)time(NULL);
}

static void build_space(const char *cmd, const struct ssa_args *a, struct ssa_space *sp)
{
	struct ssa_desc d;
	char err[SSA_ERRLEN];
	if (ssa_desc_parse(a->desc, strlen(a->desc), &d, err, sizeof(err)))
		cli_usage_error(cmd, "--descriptor: %s", err);
	if (ssa_space_init(sp, &d, a->pfx, a->npfx, err, sizeof(err)))
		cli_usage_error(cmd, "%s", err);
	if ((d.select == SSA_HOP || d.host == SSA_HOP) && !a->have_secret)
		cli_usage_error(cmd, "hop rules need --secret or --secret-file");
}

static int ssa_compute_cmd(int argc, char **argv)
{
	const char *cmd = "ssa compute";
	struct ssa_args a;
	struct ssa_space sp;
	uint8_t out[16];
	char s[ADDR_STRLEN];

	parse_args(cmd, argc, argv, &a);
	if (a.have_dst)
		cli_usage_error(cmd, "--destination belongs to 'peak ssa check'");
	build_space(cmd, &a, &sp);
	if (sp.d.select == SSA_OBJ && !a.object)
		cli_usage_error(cmd, "select=obj needs --object");
	if (a.index >= sp.d.fanout)
		cli_usage_error(cmd, "--index %u is not below fanout=%u", a.index, sp.d.fanout);
	struct ssa_req r = {
	    .src = a.src,
	    .index = a.index,
	    .object = (const uint8_t *)a.object,
	    .object_len = a.object ? strlen(a.object) : 0,
	    .replica = a.replica,
	    .time = a.time,
	    .secret = a.have_secret ? a.secret : NULL,
	};
	if (getrandom(r.rand, sizeof(r.rand), 0) != (ssize_t)sizeof(r.rand))
		cli_usage_error(cmd, "no randomness available");
	int ret = ssa_compute(&sp, &r, out);
	if (ret == -EAGAIN) {
		fprintf(stderr, "peak %s: no nonce of %u bits meets pow=%u\n", cmd, sp.w, sp.d.pow);
		return EXIT_NO;
	}
	if (ret)
		cli_usage_error(cmd, "cannot compute: %s", strerror(-ret));
	puts(addr_print(PEAK_AFI_IP6, out, s));
	return 0;
}

static int ssa_check_cmd(int argc, char **argv)
{
	const char *cmd = "ssa check";
	struct ssa_args a;
	struct ssa_space sp;

	parse_args(cmd, argc, argv, &a);
	if (!a.have_dst)
		cli_usage_error(cmd, "--destination is required");
	if (a.object)
		cli_usage_error(cmd, "--object belongs to 'peak ssa compute'");
	build_space(cmd, &a, &sp);
	int v = ssa_check(&sp, a.src, a.dst, a.time, a.have_secret ? a.secret : NULL);
	if (v < 0)
		cli_usage_error(cmd, "cannot check: %s", strerror(-v));
	if (v == SSA_PASS) {
		puts("pass");
		return 0;
	}
	if (v == SSA_OUTSIDE)
		puts("outside");
	else
		printf("reject: %s\n", ssa_verdict_name(v));
	return EXIT_NO;
}

int cmd_ssa(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(ssa_help, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	if (!strcmp(argv[1], "compute"))
		return ssa_compute_cmd(argc - 1, argv + 1);
	if (!strcmp(argv[1], "check"))
		return ssa_check_cmd(argc - 1, argv + 1);
	cli_usage_error("ssa", "unknown subcommand '%s' (compute or check)", argv[1]);
}
