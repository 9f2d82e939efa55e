/* peak dns: the authoritative, steering DNS server; peak dns-ctl: its control client. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../dns/follow.h"
#include "../dns/server.h"
#include "../dns/state.h"
#include "../k8s/kube.h"
#include "../sys/log.h"
#include "../sys/net.h"
#include "cli.h"
#include "peak/config.h"

static const char dns_help[] =
    "usage: peak dns --config FILE [--listen ADDR:PORT ...] [--threads N] [--control PATH]\n"
    "                [--control-mode MODE] [--control-group G] [--metrics ADDR:PORT]\n"
    "                [--tcp-idle SECONDS] [--tcp-max N] [--store etcd --etcd URL\n"
    "                [--etcd-prefix PREFIX]] [--store kubernetes [--kube-api URL]\n"
    "                [--kube-token-file FILE] [--kube-ca FILE] [--kube-namespace NS]\n"
    "                [--kube-lease NAME]] [--source kubernetes [--kube-api URL]\n"
    "                [--kube-token-file FILE] [--kube-ca FILE] [--kube-secret-dir DIR]]\n"
    "                [--check] [--quiet]\n"
    "\n"
    "Serves the zone and services of the configuration as an authoritative server: SOA and\n"
    "NS at the apex, APL and steered AAAA at each service, the descriptor as TXT at\n"
    "_ssa.SERVICE. UDP and TCP on every --listen address.\n"
    "\n"
    "  --config FILE        the PEAK YAML configuration (reloaded on SIGHUP)\n"
    "  --listen ADDR:PORT   address to serve, repeatable (default [::]:53, IPv4 too);\n"
    "                       IPv6 in brackets: [::1]:5353\n"
    "  --threads N          UDP workers per address, one socket each (SO_REUSEPORT)\n"
    "                       (default: cores; threads x addresses at most 63)\n"
    "  --control PATH       Unix socket for peak dns-ctl (health, weights, reload); an\n"
    "                       existing file there is replaced only if it is a stale socket\n"
    "  --control-mode MODE  the socket's permissions, octal (default 0660)\n"
    "  --control-group G    the socket's group, a name or a number (default: ours)\n"
    "  --metrics ADDR:PORT  Prometheus metrics at http://ADDR:PORT/metrics\n"
    "  --tcp-idle SECONDS   close TCP connections idle this long, or whose query has not\n"
    "                       arrived whole this long after its first byte (default 10)\n"
    "  --tcp-max N          simultaneous TCP connections (default 256); at the limit a\n"
    "                       new client takes the place of the connection whose query\n"
    "                       (or idleness) began longest ago, if over --tcp-idle/8 ago\n"
    "  --store etcd         follow the live state (health, weights) the leading peak\n"
    "                       controller --store etcd writes, instead of being told by a\n"
    "                       controller's --dns-control: several replicas answer alike\n"
    "  --etcd URL           etcd's client URL(s), http://ADDR:PORT[,...]\n"
    "  --etcd-prefix PREFIX the controllers' --etcd-prefix (default /peak/)\n"
    "  --store kubernetes   the same from the ConfigMap the leading peak controller\n"
    "                       --store kubernetes writes (listed, then watched)\n"
    "  --source file|kubernetes  where services and endpoints come from: the config\n"
    "                       (default), or the Kubernetes API as for peak controller\n"
    "                       --source kubernetes: Services annotated peak.dev/prefixes\n"
    "                       and their EndpointSlices, listed then watched, each change\n"
    "                       applied as a reload (SIGHUP applies the file's zone again);\n"
    "                       the config then gives the zone (README 'Kubernetes')\n"
    "  --kube-api URL       the API server (default: in-cluster, https://\n"
    "                       $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)\n"
    "  --kube-token-file FILE  the bearer token (default the service account's)\n"
    "  --kube-ca FILE       the API's CA (default the service account's ca.crt)\n"
    "  --kube-secret-dir DIR  --source kubernetes: where hop secrets read from Secrets\n"
    "                       are written (mode 0600; default /run/peak/kube)\n"
    "  --kube-namespace NS  the ConfigMap's namespace (default the service account's)\n"
    "  --kube-lease NAME    the controllers' --kube-lease: the ConfigMap's name\n"
    "                       (default peak-controller)\n"
    "  --check              load and check the configuration, print 'ok', and exit\n"
    "  --quiet              log only warnings and errors\n"
    "\n"
    "Exit status: 0 stopped by SIGTERM/SIGINT, 1 a run-time failure (a socket, the control\n"
    "socket, a thread), 2 a usage error or an invalid configuration.\n";

static const char ctl_help[] =
    "usage: peak dns-ctl --control PATH COMMAND\n"
    "\n"
    "Commands (each takes effect before the reply comes back):\n"
    "  status                          each endpoint: health, weight, slices held\n"
    "  health SERVICE ENDPOINT up|down mark an endpoint (its slices move only if needed)\n"
    "  weight SERVICE ENDPOINT N       set an endpoint's weight (0..1000000)\n"
    "  reload                          reload the configuration file, as SIGHUP does\n"
    "  add SERVICE ENDPOINT ADDRESS WEIGHT [NODE]\n"
    "                                  add an endpoint at run time (kept across reloads)\n"
    "  del SERVICE ENDPOINT            remove an endpoint added at run time\n"
    "Exit status: 0 done, 1 the server was not reached (or its reply was cut short),\n"
    "2 a usage error or the server refused the command (the reason is printed).\n";

int cmd_dns(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, 0, 'c'},
	    {"listen", required_argument, 0, 'l'},
	    {"threads", required_argument, 0, 't'},
	    {"control", required_argument, 0, 'C'},
	    {"control-mode", required_argument, 0, 'O'},
	    {"control-group", required_argument, 0, 'G'},
	    {"metrics", required_argument, 0, 'm'},
	    {"tcp-idle", required_argument, 0, 'i'},
	    {"tcp-max", required_argument, 0, 'M'},
	    {"check", no_argument, 0, 'k'},
	    {"store", required_argument, 0, 'S'},
	    {"etcd", required_argument, 0, 'e'},
	    {"etcd-prefix", required_argument, 0, 'p'},
	    CLI_KUBE_OPTIONS,
	    {"kube-namespace", required_argument, 0, 'P'},
	    {"kube-lease", required_argument, 0, 'L'},
	    {"source", required_argument, 0, 'o'},
	    {"quiet", no_argument, 0, 'q'},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	struct dnsd_opts o = {
	    .tcp_idle_ms = 10000, .tcp_max = 256, .control_mode = 0660, .control_group = -1};
	bool check = false;
	const char *store = NULL;
	static struct kube_opts ko; /* (o.kube points at it) */
	bool kube_opt = false, source = false, cm_opt = false;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int c;

	o.threads = cores > 0 ? (unsigned)cores : 1;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.config = optarg;
			break;
		case 'l':
			if (o.nlisten == DNSD_MAX_LISTEN)
				cli_usage_error("dns", "at most %d --listen addresses",
				                DNSD_MAX_LISTEN);
			if (sockaddr_parse(optarg, &o.listen[o.nlisten], &o.listen_len[o.nlisten]))
				cli_usage_error("dns",
				                "--listen: '%s' is not ADDR:PORT or [IPV6]:PORT",
				                optarg);
			o.nlisten++;
			break;
		case 't':
			o.threads =
			    (unsigned)cli_u64("dns", "--threads", optarg, 1, DNSD_MAX_WORKERS);
			break;
		case 'C':
			o.control = optarg;
			break;
		case 'O': {
			char *end;
			errno = 0;
			unsigned long m = strtoul(optarg, &end, 8);
			if (!*optarg || *end || errno || m > 0777)
				cli_usage_error("dns",
				                "--control-mode: '%s' is not an octal mode 0..0777",
				                optarg);
			o.control_mode = (unsigned)m;
			break;
		}
		case 'G': {
			char *end;
			errno = 0;
			unsigned long g = strtoul(optarg, &end, 10);
			struct group *gr = NULL;
			if (!*optarg || *end || errno || g > 0x7fffffff) {
				if (!(gr = getgrnam(optarg)))
					cli_usage_error("dns", "--control-group: no group '%s'",
					                optarg);
				g = gr->gr_gid;
			}
			o.control_group = (long)g;
			break;
		}
		case 'm':
			o.metrics = optarg;
			break;
		case 'i':
			o.tcp_idle_ms =
			    (unsigned)cli_u64("dns", "--tcp-idle", optarg, 1, 3600) * 1000;
			break;
		case 'M':
			o.tcp_max = (unsigned)cli_u64("dns", "--tcp-max", optarg, 1, 1024);
			break;
		case 'k':
			check = true;
			break;
		case 'S':
			if (strcmp(optarg, "etcd") && strcmp(optarg, "kubernetes"))
				cli_usage_error("dns", "--store: '%s' is not etcd or kubernetes",
				                optarg);
			store = optarg;
			break;
		case 'P':
			o.kube_namespace = optarg;
			cm_opt = true;
			break;
		case 'L':
			o.kube_cm = optarg;
			cm_opt = true;
			break;
		case 'o':
			if (strcmp(optarg, "file") && strcmp(optarg, "kubernetes"))
				cli_usage_error("dns", "--source: '%s' is not file or kubernetes",
				                optarg);
			source = !strcmp(optarg, "kubernetes");
			break;
		case 'e':
			o.etcd = optarg;
			break;
		case 'p':
			o.etcd_prefix = optarg;
			break;
		case 'q':
			log_set_level(LOG_WARNING);
			break;
		case 'h':
			fputs(dns_help, stdout);
			return 0;
		default:
			if (cli_kube_opt(c, optarg, &ko)) {
				kube_opt |=
				    c != CLI_OPT_KUBE_SECRET; /* (checked on its own below) */
				break;
			}
			cli_usage_error("dns", "unknown or incomplete option '%s' (see --help)",
			                argv[optind - 1]);
		}
	}
	if (optind < argc)
		cli_usage_error("dns", "unexpected argument '%s'", argv[optind]);
	if (!o.config)
		cli_usage_error("dns", "--config is required");
	if (o.threads > DNSD_MAX_WORKERS - 1)
		o.threads = DNSD_MAX_WORKERS - 1;
	bool kube = store && !strcmp(store, "kubernetes");
	if ((store && !kube) != !!o.etcd || (o.etcd_prefix && !o.etcd))
		cli_usage_error("dns",
		                "--store etcd and --etcd URL go together (--etcd-prefix too)");
	if ((kube_opt && !kube && !source) || (cm_opt && !kube))
		cli_usage_error("dns", "the --kube-* options go with --store kubernetes or "
		                       "--source kubernetes (--kube-namespace and --kube-lease "
		                       "with --store kubernetes)");
	if (ko.secret_dir && !source)
		cli_usage_error("dns", "--kube-secret-dir goes with --source kubernetes");
	if (kube || source)
		kube_log_as("dns"); /* (its client's log lines say whose they are) */
	if (kube)
		o.kube = &ko;
	if (source) { /* the options and the environment, before anything starts */
		char err[512];
		struct kube *k = kube_open(&ko, err, sizeof(err));
		if (!k)
			cli_usage_error("dns", "%s", err);
		kube_free(k);
		o.source_kube = &ko;
	}
	if (store) { /* the URLs, the prefix, the names, before anything starts */
		char err[256];
		struct dns_follow *f =
		    kube ? dns_follow_kube_open(&ko, o.kube_namespace, o.kube_cm, err, sizeof(err))
		         : dns_follow_open(o.etcd, o.etcd_prefix, err, sizeof(err));
		if (!f)
			cli_usage_error("dns", "%s", err);
		dns_follow_free(f);
	}
	if (check) {
		struct peak_config *cfg;
		char err[CFG_ERRLEN];
		if (config_load(o.config, &cfg, err, sizeof(err))) {
			fprintf(stderr, "peak dns: %s\n", err);
			return EXIT_USAGE;
		}
		config_free(cfg);
		puts("ok");
		return 0;
	}
	if (!o.nlisten) {
		sockaddr_parse("[::]:53", &o.listen[0], &o.listen_len[0]);
		o.nlisten = 1;
	}
	return dnsd_run(&o); /* 0, 1 run-time failure, 2 invalid configuration */
}

int cmd_dns_ctl(int argc, char **argv)
{
	const char *path = NULL;
	int i = 1;
	if (cli_wants_help(argc, argv)) {
		fputs(ctl_help, stdout);
		return 0;
	}
	if (argc > 2 && !strcmp(argv[1], "--control")) {
		path = argv[2];
		i = 3;
	}
	if (!path)
		cli_usage_error("dns-ctl", "--control PATH is required (see --help)");
	if (i >= argc)
		cli_usage_error("dns-ctl",
		                "no command (status, health, weight, reload, add or del)");
	char line[512];
	size_t n = 0;
	for (; i < argc; i++) {
		int k = snprintf(line + n, sizeof(line) - n, "%s%s", n ? " " : "", argv[i]);
		if (k < 0 || (size_t)k >= sizeof(line) - n)
			cli_usage_error("dns-ctl", "command too long");
		n += (size_t)k;
	}
	return ctl_request("peak dns-ctl", path, line);
}
