/* peak controller: the source of truth for slice assignments. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../controller/controller.h"
#include "../sys/log.h"
#include "../sys/net.h"
#include "cli.h"
#include "peak/ctlproto.h"
#include "peak/util.h"

static const char controller_help[] =
    "usage: peak controller --config FILE --listen ADDR:PORT [--dns-control PATH]\n"
    "                       [--metrics ADDR:PORT] [--key-file FILE] [--control PATH]\n"
    "                       [--state FILE|none] [--store file|etcd|kubernetes] [--etcd URL]\n"
    "                       [--etcd-prefix PREFIX] [--lease-ttl SECONDS]\n"
    "                       [--agent-ttl SECONDS] [--steer metrics|static]\n"
    "                       [--steer-interval MS] [--source file|kubernetes]\n"
    "                       [--kube-api URL] [--kube-token-file FILE] [--kube-ca FILE]\n"
    "                       [--kube-secret-dir DIR] [--kube-namespace NS]\n"
    "                       [--kube-lease NAME] [--handover-ms MS] [--no-handover]\n"
    "                       [--check] [--quiet]\n"
    "\n"
    "Holds each service's slice assignment (the one 'peak plan' shows, to begin with) and\n"
    "the endpoints' health as the agents report it. When an endpoint goes down its slices\n"
    "move to the others (only its slices); when it comes back it takes its share again.\n"
    "Every change goes to all agents (the new map) and, with --dns-control, to peak dns\n"
    "(through its control socket), so DNS stops steering to the endpoint at the same time.\n"
    "Agents keep their routes while the controller is away (fail static). The live\n"
    "assignment is saved on every change; a restarted controller adopts it, so nothing\n"
    "moves. SIGHUP reloads the configuration (a broken one is refused and logged).\n"
    "\n"
    "  --config FILE        the PEAK YAML configuration\n"
    "  --listen ADDR:PORT   where agents connect, e.g. [2001:db8::1]:4000\n"
    "  --dns-control PATH   peak dns's control socket (a path: it may be in another netns)\n"
    "  --metrics ADDR:PORT  Prometheus metrics: agents, and per endpoint its health,\n"
    "                       slices, and the connections and CPU time its agent reports\n"
    "  --key-file FILE      the agents' shared key (16 bytes or more; mode 0600): an agent\n"
    "                       must answer the challenge with its HMAC before anything else\n"
    "                       (without it any peer reaching --listen is trusted: a warning)\n"
    "  --control PATH       Unix socket (mode 0600) for 'peak controller-ctl': status,\n"
    "                       weight, health, reload, add, del, batch\n"
    "  --state FILE|none    where the live assignment is saved (default CONFIG.state)\n"
    "  --store file|etcd|kubernetes\n"
    "                       the datastore of the live state: the state file (default),\n"
    "                       etcd, or the Kubernetes API (a Lease elects the leader, a\n"
    "                       ConfigMap keeps the state; --kube-* options); with etcd or\n"
    "                       kubernetes several controllers elect one leader; the others\n"
    "                       are hot standbys that listen for agents only once they lead\n"
    "  --etcd URL           etcd's client URL (its v3 JSON gateway), http://127.0.0.1:2379\n"
    "  --etcd-prefix PREFIX the keys' prefix in etcd (default /peak/)\n"
    "  --lease-ttl SECONDS  the leader's lease (1..60; default 2 in etcd, 15 in\n"
    "                       Kubernetes): a leader that dies is replaced within it\n"
    "  --agent-ttl SECONDS  etcd: how long a node's registration (PREFIX nodes/NODE, under\n"
    "                       a lease the leader renews while the node's agent is connected)\n"
    "                       outlives the agent's link (1..60, default 2, at least half of\n"
    "                       --lease-ttl); then the node's endpoints go down and their\n"
    "                       slices move; kubernetes: the same with a Lease per node\n"
    "                       (NAME-node-NODE; default the --lease-ttl)\n"
    "  --steer metrics|static\n"
    "                       static (default): the configured or operator's weights alone;\n"
    "                       metrics: effective weights from the agents' load reports\n"
    "                       (connections, CPU, the pod's own figure): an overloaded\n"
    "                       endpoint sheds slices and AAAA share by bounded steps until\n"
    "                       the load evens out; the live weight is the ceiling\n"
    "  --steer-interval MS  a steering round's period (100..60000, default 1000)\n"
    "  --source file|kubernetes  where services and endpoints come from: the config\n"
    "                       (default), or the Kubernetes API: Services annotated\n"
    "                       peak.dev/prefixes and their EndpointSlices (README\n"
    "                       'Kubernetes'); the config then gives the zone and nodes\n"
    "  --kube-api URL       the API server (default: in-cluster, https://\n"
    "                       $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)\n"
    "  --kube-token-file FILE  the bearer token, re-read when it changes or on a 401\n"
    "                       (default the service account's)\n"
    "  --kube-ca FILE       the API's CA (default the service account's ca.crt)\n"
    "  --kube-secret-dir DIR  where hop secrets read from Secrets are written (mode\n"
    "                       0600; default /run/peak/kube)\n"
    "  --kube-namespace NS  --store kubernetes: the namespace of the Lease and the\n"
    "                       ConfigMap (default the service account's, else 'default')\n"
    "  --kube-lease NAME    --store kubernetes: the Lease's and the ConfigMap's name\n"
    "                       (default peak-controller)\n"
    "  --handover-ms MS     when slices move from a live endpoint (a pod added, a weight\n"
    "                       changed, a drain), its node and the new owner's forward to\n"
    "                       each other for at most this long (1..600000, default 5000)\n"
    "  --no-handover        move slices without handovers (open connections on them break)\n"
    "  --check              check the configuration (and key file, and store options),\n"
    "                       print 'ok', exit 0, or print FILE:LINE: reason and exit 2\n"
    "  --quiet              log only warnings and errors\n"
    "Exit status: 0 after SIGTERM or SIGINT, 1 a run-time failure, 2 bad usage or input.\n";

static const char ctl_help[] =
    "usage: peak controller-ctl --control PATH COMMAND\n"
    "\n"
    "Commands (each takes effect, on agents and peak dns too, before the reply):\n"
    "  status                          each endpoint: health, weight, slices held\n"
    "  weight SERVICE ENDPOINT N       set an endpoint's weight (0..1000000): the slices\n"
    "                                  rebalance, the agents get the maps, peak dns the weight\n"
    "  health SERVICE ENDPOINT up|down mark an endpoint (its slices move only if needed);\n"
    "                                  down here drains a live pod: its open connections\n"
    "                                  are handed over, not cut\n"
    "  reload                          reload the configuration file, as SIGHUP does\n"
    "  add SERVICE ENDPOINT ADDRESS WEIGHT [NODE]\n"
    "                                  add an endpoint (its pod's IPv6 address) at run\n"
    "                                  time: only the slices of its share move; kept in\n"
    "                                  the store across reloads and restarts until del\n"
    "  del SERVICE ENDPOINT            remove an endpoint added at run time\n"
    "  batch FILE|-                    add and del lines from FILE (- stdin), one a line,\n"
    "                                  applied all or nothing; a bad line is refused as\n"
    "                                  FILE:LINE: reason (checked here first, then by the\n"
    "                                  controller: 'line N' is the file's line N)\n"
    "Exit status: 0 ok, 1 the controller was not reached, 2 bad usage or a command it\n"
    "refused (the reason is printed).\n";

/* Reads a batch file (or stdin for "-") and checks every line here, so a typo is reported
 * as FILE:LINE: reason before anything is sent. Returns the text to send ("batch N" and the
 * lines), malloc'ed; exits 2 on a bad file. */
static char *batch_text(const char *path)
{
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;
	const char *shown = strcmp(path, "-") ? path : "stdin";
	if (strcmp(path, "-")) {
		int r = peak_read_file(path, 256u << 20, &buf, &len);
		if (r) {
			fprintf(stderr, "peak controller-ctl: %s: %s\n", path, strerror(-r));
			exit(2);
		}
	} else {
		for (size_t k; (buf = realloc(buf, cap = cap ? 2 * cap : 65536)) &&
		               (k = fread(buf + len, 1, cap - len, stdin)) > 0;)
			len += k;
		if (!buf) {
			fputs("peak controller-ctl: out of memory\n", stderr);
			exit(2);
		}
	}
	if (len && buf[len - 1] == '\n')
		len--; /* the last line's newline */
	unsigned n = 0;
	struct ctl_msg *m = malloc(sizeof(*m));
	for (size_t at = 0; m && (at < len || (!len && !n));) {
		const uint8_t *nl = memchr(buf + at, '\n', len - at);
		size_t ll = nl ? (size_t)(nl - (buf + at)) : len - at;
		n++;
		if (ctl_parse((const char *)buf + at, ll, m) ||
		    (m->kind != CTL_ADD && m->kind != CTL_DEL)) {
			fprintf(stderr, "peak controller-ctl: %s:%u: %s\n", shown, n,
			        m->kind == CTL_NONE ? (ll ? m->why : "an empty line")
			                            : "only add and del lines in a batch");
			exit(2);
		}
		at += ll + 1;
		if (at > len)
			break;
	}
	if (!m || n > CTL_BATCH_MAX) {
		fprintf(stderr, "peak controller-ctl: %s: %s\n", shown,
		        m ? "more lines than a batch holds (1000000)" : "out of memory");
		exit(2);
	}
	free(m);
	char head[32];
	int hl = snprintf(head, sizeof(head), "batch %u\n", n);
	char *t = malloc((size_t)hl + len + 1);
	if (!t) {
		fputs("peak controller-ctl: out of memory\n", stderr);
		exit(2);
	}
	memcpy(t, head, (size_t)hl);
	memcpy(t + hl, buf, len);
	t[(size_t)hl + len] = '\0';
	free(buf);
	return t;
}

int cmd_controller(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, 0, 'c'},
	    {"listen", required_argument, 0, 'l'},
	    {"dns-control", required_argument, 0, 'd'},
	    {"metrics", required_argument, 0, 'm'},
	    {"key-file", required_argument, 0, 'k'},
	    {"control", required_argument, 0, 'C'},
	    {"state", required_argument, 0, 's'},
	    {"store", required_argument, 0, 'S'},
	    {"etcd", required_argument, 0, 'e'},
	    {"etcd-prefix", required_argument, 0, 'p'},
	    {"lease-ttl", required_argument, 0, 't'},
	    {"agent-ttl", required_argument, 0, 'a'},
	    {"steer", required_argument, 0, 'w'},
	    {"steer-interval", required_argument, 0, 'W'},
	    {"source", required_argument, 0, 'o'},
	    CLI_KUBE_OPTIONS,
	    {"kube-namespace", required_argument, 0, 'P'},
	    {"kube-lease", required_argument, 0, 'L'},
	    {"handover-ms", required_argument, 0, 'H'},
	    {"no-handover", no_argument, 0, 'N'},
	    {"check", no_argument, 0, 'K'},
	    {"quiet", no_argument, 0, 'q'},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	struct controller_opts o = {0};
	bool check = false;
	int c;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.config = optarg;
			break;
		case 'l':
			o.listen = optarg;
			break;
		case 'd':
			o.dns_control = optarg;
			break;
		case 'm':
			o.metrics = optarg;
			break;
		case 'k':
			o.key_file = optarg;
			break;
		case 'C':
			o.control = optarg;
			break;
		case 's':
			o.state = optarg;
			break;
		case 'S':
			o.store = optarg;
			break;
		case 'e':
			o.etcd = optarg;
			break;
		case 'p':
			o.etcd_prefix = optarg;
			break;
		case 't':
			o.lease_ttl_s =
			    (unsigned)cli_u64("controller", "--lease-ttl", optarg, 1, 60);
			break;
		case 'a':
			o.agent_ttl_s =
			    (unsigned)cli_u64("controller", "--agent-ttl", optarg, 1, 60);
			break;
		case 'w':
			if (strcmp(optarg, "metrics") && strcmp(optarg, "static"))
				cli_usage_error("controller",
				                "--steer: 'metrics' or 'static', not '%s'", optarg);
			o.steer_metrics = !strcmp(optarg, "metrics");
			break;
		case 'W':
			o.steer_interval_ms =
			    (unsigned)cli_u64("controller", "--steer-interval", optarg, 100, 60000);
			break;
		case 'o':
			if (strcmp(optarg, "file") && strcmp(optarg, "kubernetes"))
				cli_usage_error("controller",
				                "--source: '%s' is not file or kubernetes", optarg);
			o.source = optarg;
			break;
		case 'P':
			o.kube_namespace = optarg;
			break;
		case 'L':
			o.kube_lease = optarg;
			break;
		case 'H':
			o.handover_ms = (unsigned)cli_u64("controller", "--handover-ms", optarg, 1,
			                                  CTL_HANDOVER_MS_MAX);
			break;
		case 'N':
			o.no_handover = true;
			break;
		case 'K':
			check = true;
			break;
		case 'q':
			log_set_level(LOG_WARNING);
			break;
		case 'h':
			fputs(controller_help, stdout);
			return 0;
		default:
			if (cli_kube_opt(c, optarg, &o.kube))
				break;
			cli_usage_error("controller",
			                "unknown or incomplete option '%s' (see --help)",
			                argv[optind - 1]);
		}
	}
	if (optind < argc)
		cli_usage_error("controller", "unexpected argument '%s'", argv[optind]);
	if (!o.config)
		cli_usage_error("controller", "--config is required");
	if (check) {
		if (controller_check(&o))
			return EXIT_USAGE;
		puts("ok");
		return 0;
	}
	if (!o.listen)
		cli_usage_error("controller", "--listen is required");
	return controller_run(&o);
}

/* The client of the controller's control socket: the same exchange as peak dns-ctl (one
 * command line, the reply ending in "ok" or "error: ..."), so it shares its code. */
int cmd_controller_ctl(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		fputs(ctl_help, stdout);
		return 0;
	}
	if (argc < 3 || strcmp(argv[1], "--control"))
		cli_usage_error("controller-ctl", "--control PATH is required (see --help)");
	if (argc < 4)
		cli_usage_error("controller-ctl",
		                "no command (status, weight, health, reload, add, del or batch)");
	if (!strcmp(argv[3], "batch")) {
		if (argc != 5)
			cli_usage_error("controller-ctl", "batch takes one FILE (or - for stdin)");
		char *t = batch_text(argv[4]);
		int r = ctl_request("peak controller-ctl", argv[2], t);
		free(t);
		return r;
	}
	char line[CTL_LINE_MAX];
	size_t n = 0;
	for (int i = 3; i < argc; i++) {
		int k = snprintf(line + n, sizeof(line) - n, "%s%s", n ? " " : "", argv[i]);
		if (k < 0 || (size_t)k >= sizeof(line) - n)
			cli_usage_error("controller-ctl", "command too long");
		n += (size_t)k;
	}
	return ctl_request("peak controller-ctl", argv[2], line);
}
