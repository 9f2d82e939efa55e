/* peak resolve and peak connect: the client library from the command line. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "peak/peak.h"
#include "peak/prefix.h"

static const char resolve_help[] =
    "usage: peak resolve NAME [--object KEY] [--server ADDR[:PORT] ...] [--all] [--port P]\n"
    "                    [--secret-file FILE] [--timeout MS] [--attempts N] [--udp-size N]\n"
    "                    [--replicas N] [--no-tcp]\n"
    "\n"
    "Prints the destination address the service's SSA rule gives this machine, and the\n"
    "source address to send from: 'DESTINATION from SOURCE'. With --all, every candidate in\n"
    "order with the rule that produced it (rule, fanout, replica, random, aaaa). A name with\n"
    "no APL record or no descriptor resolves through its AAAA records ('from any').\n"
    "\n"
    "  --object KEY       object key for select=obj services\n"
    "  --server ADDR      name server (repeatable; default: those of /etc/resolv.conf);\n"
    "                     IPv6 with a port in brackets: [::1]:5353\n"
    "  --port P           the service port, printed with --all (default 0)\n"
    "  --secret-file F    hop services' secret, 32 hex digits (or $PEAK_SECRET_FILE)\n"
    "  --timeout MS       per DNS attempt, and for the proof of work in all (default\n"
    "                     1000)\n"
    "  --attempts N       UDP attempts per server (default 2)\n"
    "  --udp-size N       EDNS buffer size; below 512: no EDNS (default 1232)\n"
    "  --replicas N       select=obj: further replicas offered (default 2)\n"
    "  --no-tcp           do not retry truncated answers over TCP\n"
    "  --source ADDR      compute for this source and send from it (one of this host's)\n"
    "Exit status: 0 resolved, 1 resolution failed (the step and reason on stderr; also no\n"
    "name server configured), 2 usage or bad input.\n";

static const char connect_help[] =
    "usage: peak connect NAME PORT [--object KEY] [--server ADDR[:PORT] ...] [--timeout MS]\n"
    "                    [--attempt-delay MS] [--verbose] [resolve options]\n"
    "\n"
    "Resolves NAME as 'peak resolve' does, connects over TCP with Happy Eyeballs timing\n"
    "(RFC 8305: the next candidate after 250 ms, or at once when one fails), each attempt\n"
    "from its candidate's source address, then relays standard input to the connection and\n"
    "the connection to standard output, like netcat. --verbose tells on stderr where it\n"
    "connected. --timeout bounds the connect (default 5000 ms). --attempt-delay MS sets the\n"
    "wait before the next candidate (100 to 2000, RFC 8305's bounds; default 250).\n"
    "Exit status: 0 the connection ended, 1 resolution or connection failed, 2 usage or\n"
    "bad input.\n";

struct client_args {
	struct peak_resolver_opts ro;
	struct in6_addr source;
	const char *name, *object, *secret_file;
	uint8_t secret[16];
	unsigned nserver, timeout_ms;
	long port;
	bool all, verbose;
};

static void parse(const char *cmd, int argc, char **argv, struct client_args *a, bool conn)
{
	static const struct option opts[] = {
	    {"object", required_argument, 0, 'o'},
	    {"server", required_argument, 0, 's'},
	    {"all", no_argument, 0, 'a'},
	    {"port", required_argument, 0, 'p'},
	    {"secret-file", required_argument, 0, 'K'},
	    {"timeout", required_argument, 0, 't'},
	    {"attempts", required_argument, 0, 'A'},
	    {"udp-size", required_argument, 0, 'u'},
	    {"replicas", required_argument, 0, 'r'},
	    {"no-tcp", no_argument, 0, 'n'},
	    {"verbose", no_argument, 0, 'v'},
	    {"source", required_argument, 0, 'S'},
	    {"attempt-delay", required_argument, 0, 'D'},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	int c;
	memset(a, 0, sizeof(*a));
	a->port = -1;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "hv", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			a->object = optarg;
			break;
		case 's':
			if (a->nserver == PEAK_MAX_SERVERS)
				cli_usage_error(cmd, "at most %d --server", PEAK_MAX_SERVERS);
			a->ro.servers[a->nserver++] = optarg;
			break;
		case 'a':
			a->all = true;
			break;
		case 'p':
			a->port = (long)cli_u64(cmd, "--port", optarg, 0, 65535);
			break;
		case 'K':
			a->secret_file = optarg;
			break;
		case 't':
			a->timeout_ms = (unsigned)cli_u64(cmd, "--timeout", optarg, 1, 600000);
			a->ro.timeout_ms = a->timeout_ms;
			break;
		case 'A':
			a->ro.attempts = (unsigned)cli_u64(cmd, "--attempts", optarg, 1, 10);
			break;
		case 'u':
			a->ro.udp_size = (uint16_t)cli_u64(cmd, "--udp-size", optarg, 1, 65535);
			break;
		case 'r':
			a->ro.replicas = (unsigned)cli_u64(cmd, "--replicas", optarg, 1, 255);
			break;
		case 'n':
			a->ro.no_tcp = true;
			break;
		case 'v':
			a->verbose = true;
			break;
		case 'S':
			cli_addr6(cmd, "--source", optarg, a->source.s6_addr);
			a->ro.source = &a->source;
			break;
		case 'D':
			if (!conn)
				cli_usage_error(cmd,
				                "--attempt-delay is an option of 'peak connect'");
			a->ro.attempt_delay_ms =
			    (unsigned)cli_u64(cmd, "--attempt-delay", optarg, 100, 2000);
			break;
		case 'h':
			fputs(conn ? connect_help : resolve_help, stdout);
			exit(0);
		default:
			cli_usage_error(cmd, "unknown or incomplete option '%s' (see --help)",
			                argv[optind - 1]);
		}
	}
	if (optind >= argc)
		cli_usage_error(cmd, "a service name is required (see --help)");
	a->name = argv[optind++];
	if (conn) {
		if (optind >= argc)
			cli_usage_error(cmd, "a port is required: peak connect NAME PORT");
		a->port = (long)cli_u64(cmd, "PORT", argv[optind++], 1, 65535);
	}
	if (optind < argc)
		cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
	a->ro.secret = cli_secret_option(cmd, a->secret_file, a->secret);
}

/* The resolver, or NULL after telling why: a bad --server is a usage error (exit 2); no
 * name server in /etc/resolv.conf, or no memory, a run-time failure (exit 1). */
static struct peak_resolver *resolver(const char *cmd, struct client_args *a)
{
	int err;
	struct peak_resolver *r = peak_resolver_new(&a->ro, &err);
	if (!r && err == PEAK_E_CONFIG && a->nserver)
		cli_usage_error(cmd, "--server: not ADDR, IPV4:PORT or [IPV6]:PORT");
	if (!r)
		fprintf(stderr, "peak %s: %s\n", cmd,
		        err == PEAK_E_CONFIG ? "no name server in /etc/resolv.conf: use --server"
		                             : peak_strerror(err));
	return r;
}

static int fail(const char *cmd, struct peak_resolver *r, int e)
{
	const char *d = peak_last_detail(r);
	int se = peak_last_errno(r);
	fprintf(stderr, "peak %s: %s%s%s%s%s\n", cmd, peak_strerror(e), *d ? ": " : "", d,
	        se ? ": " : "", se ? strerror(se) : "");
	peak_resolver_free(r);
	return EXIT_NO;
}

static void print_cand(const struct peak_candidate *c, bool all, long port)
{
	char d[ADDR_STRLEN], s[ADDR_STRLEN];
	static const uint8_t any[16];
	addr_print(PEAK_AFI_IP6, (const uint8_t *)&c->dst.sin6_addr, d);
	if (memcmp(&c->src.sin6_addr, any, 16))
		addr_print(PEAK_AFI_IP6, (const uint8_t *)&c->src.sin6_addr, s);
	else
		snprintf(s, sizeof(s), "any");
	if (!all) {
		printf("%s from %s\n", d, s);
		return;
	}
	char dp[ADDR_STRLEN + 24];
	if (port > 0)
		snprintf(dp, sizeof(dp), "[%s]:%ld", d, port);
	else
		snprintf(dp, sizeof(dp), "%s", d);
	printf("%s from %s  %s", dp, s, peak_origin_name(c->origin));
	if (c->origin == PEAK_ORIGIN_FANOUT || c->origin == PEAK_ORIGIN_RULE)
		printf(" index %u", c->index);
	if (c->origin == PEAK_ORIGIN_REPLICA)
		printf(" replica %u index %u", c->replica, c->index);
	putchar('\n');
}

int cmd_resolve(int argc, char **argv)
{
	struct client_args a;
	struct peak_result res;
	parse("resolve", argc, argv, &a, false);
	struct peak_resolver *r = resolver("resolve", &a);
	if (!r)
		return EXIT_NO;
	int e = peak_resolve(r, a.name, a.object, (uint16_t)(a.port > 0 ? a.port : 0), &res);
	if (e)
		return fail("resolve", r, e);
	for (unsigned i = 0; i < (a.all ? res.n : 1); i++)
		print_cand(&res.cand[i], a.all, a.port);
	peak_resolver_free(r);
	return 0;
}

/* Copies stdin to the socket and the socket to stdout until the peer closes. */
static int relay(int fd)
{
	struct pollfd pf[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
	                       {.fd = fd, .events = POLLIN}};
	char buf[65536];
	bool in_open = true;
	for (;;) {
		if (poll(pf, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		if (in_open && pf[0].revents) {
			ssize_t k = read(STDIN_FILENO, buf, sizeof(buf));
			if (k <= 0) {
				in_open = false;
				pf[0].fd = -1;
				shutdown(fd, SHUT_WR); /* the peer sees our end of input */
			} else {
				for (ssize_t off = 0; off < k;) {
					ssize_t w =
					    send(fd, buf + off, (size_t)(k - off), MSG_NOSIGNAL);
					if (w <= 0)
						return 1;
					off += w;
				}
			}
		}
		if (pf[1].revents) {
			ssize_t k = recv(fd, buf, sizeof(buf), 0);
			if (k <= 0)
				return k < 0;
			if (fwrite(buf, 1, (size_t)k, stdout) != (size_t)k)
				return 1;
			fflush(stdout);
		}
	}
}

int cmd_connect(int argc, char **argv)
{
	struct client_args a;
	struct peak_candidate used;
	parse("connect", argc, argv, &a, true);
	struct peak_resolver *r = resolver("connect", &a);
	if (!r)
		return EXIT_NO;
	int fd = peak_connect(r, a.name, a.object, (uint16_t)a.port, a.timeout_ms, &used);
	if (fd < 0)
		return fail("connect", r, fd);
	if (a.verbose) {
		char d[ADDR_STRLEN], s[ADDR_STRLEN];
		struct sockaddr_in6 me;
		socklen_t ml = sizeof(me);
		getsockname(fd, (struct sockaddr *)&me, &ml);
		fprintf(stderr, "peak connect: connected to [%s]:%ld from %s (%s)\n",
		        addr_print(PEAK_AFI_IP6, (const uint8_t *)&used.dst.sin6_addr, d), a.port,
		        addr_print(PEAK_AFI_IP6, (const uint8_t *)&me.sin6_addr, s),
		        peak_origin_name(used.origin));
	}
	int ret = relay(fd);
	close(fd);
	peak_resolver_free(r);
	return ret ? EXIT_NO : 0;
}
