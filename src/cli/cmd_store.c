/* peak store: the object store's pod (serve) and client (put, get, delete). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "../store/client.h"
#include "../store/ctlsub.h"
#include "../store/store.h"
#include "../sys/net.h"
#include "cli.h"
#include "peak/peak.h"
#include "peak/ssa.h"

static const char store_help[] =
    "usage: peak store serve --config FILE --id ID [--data DIR] [--listen ADDR:PORT]\n"
    "                        [--max-body BYTES] [--max-conns N] [--timeout MS]\n"
    "                        [--metrics ADDR:PORT] [--joined ID]... [--pull-rate N]\n"
    "                        [--tombstone-ttl S] [--drop-delay S|never]\n"
    "                        [--log-max BYTES] [--log-segment BYTES]\n"
    "                        [--controller ADDR:PORT[,ADDR:PORT]... [--key-file FILE]\n"
    "                        [--node NAME]]\n"
    "       peak store put NAME KEY [FILE] [client options]\n"
    "       peak store get NAME KEY [FILE] [client options]\n"
    "       peak store delete NAME KEY [client options]\n"
    "\n"
    "A content-addressed object store on SSA. The service NAME has select=obj: the key's\n"
    "object hash (SPEC.md) picks the slice, so the client computes the pod's address from the\n"
    "key and connects straight to it; no proxy, no directory.\n"
    "\n"
    "serve: one pod of the store, HTTP/1.1 on [::] with the service's port (AnyIP: every\n"
    "address of its slices), PUT/GET/HEAD/DELETE /o/KEY (KEY percent-encoded, 1 to 255\n"
    "bytes, no '/' or NUL, not '.' or '..'). It keeps the keys whose slice the\n"
    "configuration's initial assignment gives endpoint ID; others get 421 with headers\n"
    "X-Peak-Owner and X-Peak-Address. A small object is appended to a log in DIR/log\n"
    "with the others of its group, one flush for them all; a large one is a file in DIR,\n"
    "written to a temp file, fsynced and renamed: whole or absent after a crash.\n"
    "SIGTERM/SIGINT stop it (exit 0).\n"
    "  --config FILE      the PEAK configuration (the service holding endpoint ID)\n"
    "  --id ID            this pod's endpoint id\n"
    "  --data DIR         data directory, created if missing (default ./store-ID)\n"
    "  --listen ADDR:PORT listen here instead ([IPV6]:PORT)\n"
    "  --max-body BYTES   largest object (default 1073741824); larger PUTs get 413\n"
    "  --max-conns N      simultaneous connections (default 1024; more get 503)\n"
    "  --timeout MS       a request's head must arrive within MS, a body or reply within\n"
    "                     MS plus its size at 64 KB/s (default 10000): else 408, closed\n"
    "  --metrics ADDR:PORT  Prometheus text at http://ADDR:PORT/metrics: requests by method\n"
    "                     and status, body bytes in and out, objects, repair progress\n"
    "  --joined ID        endpoint ID of the configuration joined after the initial\n"
    "                     assignment (repeatable, in the order they joined): the slices\n"
    "                     are those of the others, then each joined one added with minimal\n"
    "                     movement. The last join is a migration: a pod that gained slices\n"
    "                     by it pulls their objects from the old owners in the background\n"
    "                     and, until done, fetches a key it misses from its old owner\n"
    "  --pull-rate N      pull at most N objects a second in the background (default 0:\n"
    "                     no limit), to spare the old owners; reads still go through\n"
    "  --log-max BYTES    bodies up to BYTES (default 65536) go to the small-object log;\n"
    "                     0: every object is a file\n"
    "  --log-segment BYTES  a log segment rolls over at BYTES (default 67108864)\n"
    "  --tombstone-ttl S  keep a delete's tombstone S seconds (default 604800, a week):\n"
    "                     longer than a replica may stay down, or it may bring back what\n"
    "                     was deleted while it was away\n"
    "  --controller ADDR:PORT  learn the slices from the controller, as an agent does:\n"
    "                     each map it sends moves the pod to it, and the slices the pod\n"
    "                     gained are migrated from their old owners as after --joined (no\n"
    "                     operator step); until the first map, the initial assignment.\n"
    "                     Several (commas, or the option repeated; up to 8): the\n"
    "                     controllers of one cluster, only the leader listening; the pod\n"
    "                     keeps to the one that answers and tries the next when it goes.\n"
    "                     Not with --joined\n"
    "  --drop-delay S     under --controller, S seconds (default 30) after a new map's walk,\n"
    "                     delete the objects the map took away from this pod once every\n"
    "                     pod now holding them confirms a copy as new (HEAD); a map change\n"
    "                     before then drops nothing. 'never' keeps them\n"
    "  --key-file FILE    the key the controller checks hellos with (peak agent's)\n"
    "  --node NAME        the node name of the hello (default store-ID)\n"
    "\n"
    "With replicas=R in the rule, a key lives on the first R distinct pods owning its\n"
    "replica slices 0, 1, ...; other pods answer 421. GET /s/?after=NAME&limit=N lists a\n"
    "pod's objects and tombstones (NAME KEY VERSION lines, NAME KEY TIME D for a delete;\n"
    "X-Peak-More: 1 while more remain); with R > 1 a pod starting pulls the objects of its\n"
    "replica sets it lacks from the other endpoints (at their configured address), in the\n"
    "background, logging each page. A DELETE leaves a tombstone in DIR/tomb: a copy older\n"
    "than a peer's tombstone is removed by this walk, and neither the walk nor a read\n"
    "during a migration brings back an object deleted since.\n"
    "\n"
    "put/get/delete: resolve NAME for the key (APL and _ssa TXT) and walk the key's replica\n"
    "addresses: PUT FILE (default stdin) until R pods stored it (done at a majority),\n"
    "GET into FILE (default stdout) from the first that has it, DELETE from all R (done at\n"
    "a majority: the tombstones reach the rest by their repair). Bodies\n"
    "stream, of any size. Exit 0 done, 1 not found, misdirected or failed, 2 usage.\n"
    "  --server ADDR[:PORT] name server (repeatable; default /etc/resolv.conf)\n"
    "  --port P           the service port (default 80)\n"
    "  --timeout MS       DNS per attempt, connect and each transfer step (default 5000)\n"
    "  --verbose          say which addresses were tried and what each answered\n";

static int store_serve_cmd(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, 0, 'c'},
	    {"id", required_argument, 0, 'i'},
	    {"data", required_argument, 0, 'd'},
	    {"listen", required_argument, 0, 'l'},
	    {"max-body", required_argument, 0, 'b'},
	    {"max-conns", required_argument, 0, 'm'},
	    {"timeout", required_argument, 0, 't'},
	    {"metrics", required_argument, 0, 'M'},
	    {"joined", required_argument, 0, 'J'},
	    {"pull-rate", required_argument, 0, 'R'},
	    {"tombstone-ttl", required_argument, 0, 'T'},
	    {"controller", required_argument, 0, 'C'},
	    {"key-file", required_argument, 0, 'K'},
	    {"node", required_argument, 0, 'N'},
	    {"drop-delay", required_argument, 0, 'D'},
	    {"log-max", required_argument, 0, 'L'},
	    {"log-segment", required_argument, 0, 'S'},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	static char data[256];
	static char ctls[STORE_CTLS_MAX * STORE_CTL_ADDR_MAX];
	struct store_opts o = {.max_body = STORE_DEF_MAX_BODY,
	                       .max_conns = STORE_DEF_MAX_CONNS,
	                       .timeout_ms = STORE_DEF_TIMEOUT_MS,
	                       .drop_delay_s = STORE_DEF_DROP_DELAY_S,
	                       .log_max = STORE_DEF_LOG_MAX};
	int c;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.config = optarg;
			break;
		case 'i':
			if (!*optarg || strlen(optarg) >= 64)
				cli_usage_error("store", "--id: 1 to 63 characters");
			o.id = optarg;
			break;
		case 'd':
			o.data = optarg;
			break;
		case 'l':
			o.listen_len = sizeof(o.listen);
			if (sockaddr_parse(optarg, &o.listen, &o.listen_len))
				cli_usage_error("store", "--listen: '%s' is not ADDR:PORT", optarg);
			break;
		case 'b':
			o.max_body = cli_u64("store", "--max-body", optarg, 0, UINT64_C(1) << 40);
			break;
		case 'm':
			o.max_conns = (unsigned)cli_u64("store", "--max-conns", optarg, 1, 1000000);
			break;
		case 't':
			o.timeout_ms = (unsigned)cli_u64("store", "--timeout", optarg, 1, 3600000);
			break;
		case 'M':
			o.metrics = optarg;
			break;
		case 'J':
			if (o.njoined == STORE_JOINED_MAX)
				cli_usage_error("store", "at most %d --joined", STORE_JOINED_MAX);
			o.joined[o.njoined++] = optarg;
			break;
		case 'R':
			o.pull_rate = (unsigned)cli_u64("store", "--pull-rate", optarg, 0, 1000000);
			break;
		case 'T':
			o.tomb_ttl_s = (unsigned)cli_u64("store", "--tombstone-ttl", optarg, 1,
			                                 10 * 365 * 86400);
			break;
		case 'C': /* repeated: one list */
			if (strlen(ctls) + strlen(optarg) + 2 > sizeof(ctls))
				cli_usage_error("store", "--controller: more than %d addresses",
				                STORE_CTLS_MAX);
			if (ctls[0])
				strcat(ctls, ",");
			strcat(ctls, optarg);
			if (addr_list_check(ctls, STORE_CTLS_MAX, STORE_CTL_ADDR_MAX) < 0)
				cli_usage_error("store",
				                "--controller: '%s' is not up to %d ADDR:PORT "
				                "separated by commas",
				                optarg, STORE_CTLS_MAX);
			o.controller = ctls;
			break;
		case 'L':
			o.log_max = cli_u64("store", "--log-max", optarg, 0, 16 << 20);
			break;
		case 'S':
			o.log_segment =
			    cli_u64("store", "--log-segment", optarg, 4096, UINT64_C(1) << 40);
			break;
		case 'D':
			o.drop_delay_s =
			    !strcmp(optarg, "never")
			        ? -1
			        : (int)cli_u64("store", "--drop-delay", optarg, 0, 86400);
			break;
		case 'K':
			o.key_file = optarg;
			break;
		case 'N':
			if (!*optarg || strlen(optarg) >= 64 || strpbrk(optarg, " \"\\"))
				cli_usage_error("store", "--node: 1 to 63 characters, no space, "
				                         "'\"' or '\\'");
			o.node = optarg;
			break;
		case 'h':
			fputs(store_help, stdout);
			return 0;
		default:
			cli_usage_error("store", "unknown or incomplete option '%s' (see --help)",
			                argv[optind - 1]);
		}
	}
	if (optind < argc)
		cli_usage_error("store", "unexpected argument '%s'", argv[optind]);
	if (!o.config || !o.id)
		cli_usage_error("store", "serve needs --config and --id");
	if (o.controller && o.njoined)
		cli_usage_error("store",
		                "--joined and --controller: the controller says who joined");
	if ((o.key_file || o.node) && !o.controller)
		cli_usage_error("store", "--key-file and --node go with --controller");
	if (!o.data) {
		snprintf(data, sizeof(data), "store-%s", o.id);
		o.data = data;
	}
	return store_serve(&o);
}

static void trace_line(void *arg, const char *line)
{
	fprintf(stderr, "peak store %s: %s\n", (const char *)arg, line);
}

/* put/get/delete NAME KEY [FILE]. */
static int store_client_cmd(enum store_method m, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"server", required_argument, 0, 's'},  {"port", required_argument, 0, 'p'},
	    {"timeout", required_argument, 0, 't'}, {"verbose", no_argument, 0, 'v'},
	    {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
	};
	const char *cmd = argv[0];
	struct peak_resolver_opts ro = {0};
	unsigned nserver = 0, timeout_ms = 5000, port = 80;
	bool verbose = false;
	int c, ret = 1, filefd = -1, err = 0;
	struct peak_resolver *r = NULL;
	char *tmpname = NULL;
	signal(SIGPIPE, SIG_IGN); /* a refused PUT closes while we send: an error, not death */
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "hv", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (nserver == PEAK_MAX_SERVERS)
				cli_usage_error("store", "at most %d --server", PEAK_MAX_SERVERS);
			ro.servers[nserver++] = optarg;
			break;
		case 'p':
			port = (unsigned)cli_u64("store", "--port", optarg, 1, 65535);
			break;
		case 't':
			timeout_ms = (unsigned)cli_u64("store", "--timeout", optarg, 1, 600000);
			break;
		case 'v':
			verbose = true;
			break;
		case 'h':
			fputs(store_help, stdout);
			return 0;
		default:
			cli_usage_error("store", "unknown or incomplete option '%s' (see --help)",
			                argv[optind - 1]);
		}
	}
	int want = m == STORE_DELETE ? 2 : 3;
	if (argc - optind < 2 || argc - optind > want)
		cli_usage_error("store", "usage: peak store %s NAME KEY%s", cmd,
		                m == STORE_DELETE ? "" : " [FILE]");
	const char *name = argv[optind], *key = argv[optind + 1];
	const char *file = argc - optind == 3 ? argv[optind + 2] : NULL;
	if (store_key_check((const uint8_t *)key, strlen(key)))
		cli_usage_error("store", "bad key: 1 to 255 bytes, no '/', not '.' or '..'");
	struct peak_store_opts so = {.port = (uint16_t)port,
	                             .timeout_ms = timeout_ms,
	                             .trace = verbose ? trace_line : NULL,
	                             .trace_arg = (void *)cmd};
	if (m == STORE_PUT) {
		filefd = file ? open(file, O_RDONLY | O_CLOEXEC) : dup(0);
		if (filefd == -1) {
			fprintf(stderr, "peak store put: %s: %s\n", file ? file : "stdin",
			        strerror(errno));
			goto out;
		}
	} else if (m == STORE_GET && file) {
		size_t fl = strlen(file);
		tmpname = malloc(fl + 16);
		if (!tmpname)
			goto out;
		snprintf(tmpname, fl + 16, "%s.part", file);
		filefd = open(tmpname, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (filefd == -1) {
			fprintf(stderr, "peak store get: %s: %s\n", tmpname, strerror(errno));
			goto out;
		}
	}
	ro.timeout_ms = timeout_ms;
	r = peak_resolver_new(&ro, &err);
	if (!r) {
		fprintf(stderr, "peak store %s: %s\n", cmd, peak_strerror(err));
		goto out;
	}
	if (m == STORE_PUT)
		err = peak_store_put(r, name, key, filefd, &so);
	else if (m == STORE_GET)
		err = peak_store_get(r, name, key, file ? filefd : 1, &so);
	else
		err = peak_store_delete(r, name, key, &so);
	if (err) {
		const char *d = peak_last_detail(r);
		fprintf(stderr, "peak store %s: %s: %s%s%s\n", cmd, key,
		        err == PEAK_E_NOTFOUND ? "404 Not Found: no replica has the object"
		                               : peak_strerror(err),
		        *d && err != PEAK_E_NOTFOUND ? ": " : "", err == PEAK_E_NOTFOUND ? "" : d);
		goto out;
	}
	if (tmpname && rename(tmpname, file) == -1) {
		fprintf(stderr, "peak store get: %s: %s\n", file, strerror(errno));
		goto out;
	}
	ret = 0;
out:
	if (tmpname && ret)
		unlink(tmpname);
	free(tmpname);
	if (filefd != -1)
		close(filefd);
	peak_resolver_free(r);
	return ret;
}

int cmd_store(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(store_help, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	if (!strcmp(argv[1], "serve"))
		return store_serve_cmd(argc - 1, argv + 1);
	if (!strcmp(argv[1], "put"))
		return store_client_cmd(STORE_PUT, argc - 1, argv + 1);
	if (!strcmp(argv[1], "get"))
		return store_client_cmd(STORE_GET, argc - 1, argv + 1);
	if (!strcmp(argv[1], "delete"))
		return store_client_cmd(STORE_DELETE, argc - 1, argv + 1);
	cli_usage_error("store", "unknown subcommand '%s' (serve, put, get, delete)", argv[1]);
}
