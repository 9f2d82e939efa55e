/* peak agent: the node agent. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../agent/agent.h"
#include "../k8s/kube.h"
#include "../sys/log.h"
#include "../sys/net.h"
#include "cli.h"
#include "peak/ctlauth.h"
#include "peak/ctlproto.h"

static const char agent_help[] =
    "usage: peak agent --config FILE --node NAME [--controller ADDR:PORT[,...] [--key-file FILE]]\n"
    "                  [--table N] [--once] [--interval MS] [--hc-interval MS]\n"
    "                  [--hc-fast-interval MS] [--hc-timeout MS] [--hc-connect-timeout MS]\n"
    "                  [--hc-check http|connect] [--hc-down N] [--hc-up N]\n"
    "                  [--metrics ADDR:PORT] [--filter-object PATH] [--quiet]\n"
    "                  [--handover-dev DEV] [--no-handover] [--app-load-dir DIR]\n"
    "                  [--store etcd --etcd URL [--etcd-prefix PREFIX]]\n"
    "                  [--source kubernetes [--kube-api URL] [--kube-token-file FILE]\n"
    "                  [--kube-ca FILE] [--kube-secret-dir DIR]]\n"
    "       peak agent --check --config FILE --node NAME [--key-file FILE]\n"
    "\n"
    "Programs this node (run it in the node's network namespace). For each endpoint whose\n"
    "'node' is NAME: routes for the slices it owns, aggregated into the fewest prefixes, via\n"
    "the endpoint's address; and, when the endpoint names its pod's 'netns', a local route\n"
    "per service prefix inside that namespace (AnyIP), so the pod's sockets on :: accept\n"
    "every address of the service. Only the difference to what is installed is applied, in\n"
    "batched netlink messages; routes that stay are never touched, and routes of others are\n"
    "never seen (PEAK's carry protocol 0xa5).\n"
    "The slices are the assignment 'peak plan' shows until the controller sends its maps.\n"
    "Without --once it health-checks its endpoints (an HTTP request to the service port),\n"
    "reports changes to the controller, routes the maps it sends, resyncs every --interval\n"
    "(which also repairs routes changed behind its back) and reloads the file on SIGHUP.\n"
    "While the controller is unreachable it keeps its routes and retries (backoff up to\n"
    "5 s). Routes stay when it stops.\n"
    "Several controllers (the controllers of one --store etcd cluster: only the leader\n"
    "listens) are tried in turn: the agent keeps to the one that takes its hello and, when\n"
    "that link is lost or refused, tries the next at once; after every one failed in a row\n"
    "it waits the backoff (up to 0.5 s with several: a takeover is expected).\n"
    "\n"
    "  --config FILE      the PEAK YAML configuration\n"
    "  --node NAME        this node's name, as the endpoints' 'node' fields give it\n"
    "  --controller A     peak controller, ADDR:PORT; several as A,B or the option\n"
    "                     repeated (up to 8), tried in that order\n"
    "  --key-file FILE    the key the controller's --key-file holds (16 bytes or more; a\n"
    "                     file group or others may write or others may read is refused):\n"
    "                     the hello answers the controller's challenge with its HMAC.\n"
    "                     Without it the hello is plain (a warning), and only a controller\n"
    "                     without --key-file takes it\n"
    "  --table N          routing table for slice routes (default 254, main)\n"
    "  --once             sync once (from the file), print what changed, and exit\n"
    "  --interval MS      resync period (default 1000)\n"
    "  --hc-interval MS   health checks: mean period, each jittered +-25% (default 30)\n"
    "  --hc-fast-interval MS\n"
    "                     the period while an endpoint's health is changing: after a missed\n"
    "                     check of a healthy one, an answered one of a down one (default 30)\n"
    "  --hc-timeout MS    a check not answered within MS is missed (default 100); checks\n"
    "                     overlap when it exceeds the period (up to 8 in flight)\n"
    "  --hc-connect-timeout MS\n"
    "                     a check whose connection is not even set up within MS is missed\n"
    "                     then (default 40; 0: off): a pod's kernel completes a handshake\n"
    "                     at once, so a pod cut off (its packets dropped) is found sooner\n"
    "  --hc-check KIND    http (default): connect, send 'HEAD / HTTP/1.1' and take the first\n"
    "                     byte back (or a close) as the answer, so a pod whose process stops\n"
    "                     (SIGSTOP, a deadlock) while the kernel still completes handshakes\n"
    "                     is found; connect: the TCP connect alone (for non-HTTP services)\n"
    "  --hc-down N        missed checks in a row that mark an endpoint down (default 3): a\n"
    "                     silent pod is down after the timeout plus N-1 periods\n"
    "  --hc-up N          answered checks in a row that mark it up again (default 2)\n"
    "  --metrics A:P      Prometheus metrics at http://A:P/metrics (routes, syncs, health)\n"
    "  --filter-object P  the XDP filter object, when the node's 'filter-dev' asks for the\n"
    "                     filter (default: the one built into peak)\n"
    "  --handover-dev DEV the uplink where slice handovers are forwarded (tc ingress;\n"
    "                     default: the device of the controller link's local address)\n"
    "  --no-handover      ignore the controller's handovers: no forwarding between the\n"
    "                     old and new owners of moved slices\n"
    "  --app-load-dir DIR each pod's own load figure, for the controller's --steer\n"
    "                     metrics: the file DIR/ENDPOINT-ID, which the pod rewrites at\n"
    "                     least every 10 s with a decimal figure (any unit, the same for\n"
    "                     every pod of a service; at most 2^63-1); sent with its load\n"
    "                     reports, and when every pod of a service sends one it alone\n"
    "                     steers (README 'Steering by load')\n"
    "  --store etcd       also follow the service records the leading peak controller\n"
    "                     --store etcd stores (maps, endpoints added at run time): a\n"
    "                     change stored while the link is down is routed from etcd, and\n"
    "                     at start the stored maps are routed at once. While the link is\n"
    "                     up its maps win; what etcd brings then waits until it is down\n"
    "  --etcd URL         etcd's client URL(s), http://ADDR:PORT[,...]\n"
    "  --etcd-prefix P    the controllers' --etcd-prefix (default /peak/)\n"
    "  --source file|kubernetes\n"
    "                     where services and endpoints come from: the config (default),\n"
    "                     or the Kubernetes API as for peak controller --source\n"
    "                     kubernetes: Services annotated peak.dev/prefixes and their\n"
    "                     EndpointSlices (this node's: nodeName NAME), listed then\n"
    "                     watched, each change applied as a reload; the config then\n"
    "                     gives the zone and nodes (README 'Kubernetes')\n"
    "  --kube-api URL     the API server (default: in-cluster, https://\n"
    "                     $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)\n"
    "  --kube-token-file FILE  the bearer token, re-read when it changes or on a 401\n"
    "                     (default the service account's)\n"
    "  --kube-ca FILE     the API's CA (default the service account's ca.crt)\n"
    "  --kube-secret-dir DIR  where hop secrets read from Secrets are written (mode\n"
    "                     0600; default /run/peak/kube)\n"
    "  --quiet            log only warnings and errors\n"
    "  --check            load and check the configuration for this node (and the key\n"
    "                     file), print 'ok' and exit 0, or print FILE:LINE: what is wrong\n"
    "                     and exit 2\n"
    "\n"
    "Exit status: 0; 1 for a failure at run time (a --once sync, the metrics endpoint,\n"
    "the filter); 2 for a usage error, a configuration that does not load or check, or a\n"
    "key file that is refused.\n"
    "\n"
    "  --bird-config FILE --bgp-neighbor ADDR --local-as N --peer-as N --router-id A.B.C.D\n"
    "                     write the BIRD 2 configuration that announces this node's\n"
    "                     slices to the router by BGP (learned from --table), then exit\n";

/* The http check's request: the first byte of any reply answers it. */
#define HC_HTTP_REQUEST "HEAD / HTTP/1.1\r\nHost: peak-agent\r\nUser-Agent: peak-agent\r\n\r\n"

/* Long-only options, past every letter. */
enum { OPT_HC_CONNECT = 0x100, OPT_APP_LOAD };

int cmd_agent(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, 0, 'c'},
	    {"node", required_argument, 0, 'n'},
	    {"table", required_argument, 0, 't'},
	    {"once", no_argument, 0, 'o'},
	    {"interval", required_argument, 0, 'i'},
	    {"quiet", no_argument, 0, 'q'},
	    {"controller", required_argument, 0, 'C'},
	    {"hc-interval", required_argument, 0, 'H'},
	    {"hc-fast-interval", required_argument, 0, 'f'},
	    {"hc-down", required_argument, 0, 'D'},
	    {"hc-up", required_argument, 0, 'U'},
	    {"hc-timeout", required_argument, 0, 'T'},
	    {"hc-connect-timeout", required_argument, 0, OPT_HC_CONNECT},
	    {"app-load-dir", required_argument, 0, OPT_APP_LOAD},
	    {"hc-check", required_argument, 0, 'X'},
	    {"help", no_argument, 0, 'h'},
	    {"bird-config", required_argument, 0, 'B'},
	    {"bgp-neighbor", required_argument, 0, 'N'},
	    {"local-as", required_argument, 0, 'L'},
	    {"peer-as", required_argument, 0, 'P'},
	    {"router-id", required_argument, 0, 'R'},
	    {"metrics", required_argument, 0, 'M'},
	    {"filter-object", required_argument, 0, 'F'},
	    {"handover-dev", required_argument, 0, 'V'},
	    {"no-handover", no_argument, 0, 'W'},
	    {"check", no_argument, 0, 'k'},
	    {"key-file", required_argument, 0, 'K'},
	    {"store", required_argument, 0, 'S'},
	    {"etcd", required_argument, 0, 'E'},
	    {"etcd-prefix", required_argument, 0, 'G'},
	    {"source", required_argument, 0, 'O'},
	    CLI_KUBE_OPTIONS,
	    {0, 0, 0, 0},
	};
	struct agent_opts o = {.table = RT_TABLE_PEAK_MAIN,
	                       .interval_ms = 1000,
	                       .hc_interval_ms = 30,
	                       .hc_fast_ms = 30,
	                       .hc_timeout_ms = 100,
	                       .hc_connect_ms = 40,
	                       .hc_down = 3,
	                       .hc_up = 2,
	                       .hc_request = HC_HTTP_REQUEST};
	struct bird_opts bird = {0};
	const char *bird_path = NULL;
	bool check = false, store = false, kube = false, kube_opt = false;
	static struct kube_opts ko; /* (o.kube points at it) */
	char ctls[AGENT_CTLS_MAX * AGENT_CTL_ADDR_MAX] = "";
	int c;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.config = optarg;
			break;
		case 'n':
			o.node = optarg;
			break;
		case 't':
			o.table = (unsigned)cli_u64("agent", "--table", optarg, 1, 0xfffffffe);
			break;
		case 'o':
			o.once = true;
			break;
		case 'i':
			o.interval_ms =
			    (unsigned)cli_u64("agent", "--interval", optarg, 10, 3600000);
			break;
		case 'q':
			log_set_level(LOG_WARNING);
			break;
		case 'C': /* repeated: one list, checked below */
			if (strlen(ctls) + strlen(optarg) + 2 > sizeof(ctls))
				cli_usage_error("agent", "--controller: more than %d addresses",
				                AGENT_CTLS_MAX);
			if (ctls[0])
				strcat(ctls, ",");
			strcat(ctls, optarg);
			o.controller = ctls;
			break;
		case 'H':
			o.hc_interval_ms =
			    (unsigned)cli_u64("agent", "--hc-interval", optarg, 10, 60000);
			break;
		case 'f':
			o.hc_fast_ms =
			    (unsigned)cli_u64("agent", "--hc-fast-interval", optarg, 10, 60000);
			break;
		case 'D':
			o.hc_down = (unsigned)cli_u64("agent", "--hc-down", optarg, 1, 100);
			break;
		case 'U':
			o.hc_up = (unsigned)cli_u64("agent", "--hc-up", optarg, 1, 100);
			break;
		case 'T':
			o.hc_timeout_ms =
			    (unsigned)cli_u64("agent", "--hc-timeout", optarg, 10, 60000);
			break;
		case OPT_HC_CONNECT:
			o.hc_connect_ms =
			    (unsigned)cli_u64("agent", "--hc-connect-timeout", optarg, 0, 60000);
			break;
		case 'X':
			if (!strcmp(optarg, "http"))
				o.hc_request = HC_HTTP_REQUEST;
			else if (!strcmp(optarg, "connect"))
				o.hc_request = NULL;
			else
				cli_usage_error("agent", "--hc-check: '%s' is not http or connect",
				                optarg);
			break;
		case 'B':
			bird_path = optarg;
			break;
		case 'N':
			bird.neighbor = optarg;
			break;
		case 'L':
			bird.local_as =
			    (unsigned)cli_u64("agent", "--local-as", optarg, 1, 4294967294);
			break;
		case 'P':
			bird.peer_as =
			    (unsigned)cli_u64("agent", "--peer-as", optarg, 1, 4294967294);
			break;
		case 'R':
			bird.router_id = optarg;
			break;
		case 'M':
			o.metrics = optarg;
			break;
		case 'F':
			o.filter_object = optarg;
			break;
		case 'V':
			o.handover_dev = optarg;
			break;
		case 'W':
			o.no_handover = true;
			break;
		case OPT_APP_LOAD: {
			struct stat sb;
			if (stat(optarg, &sb) || !S_ISDIR(sb.st_mode))
				cli_usage_error("agent", "--app-load-dir: '%s' is not a directory",
				                optarg);
			o.app_load_dir = optarg;
			break;
		}
		case 'k':
			check = true;
			break;
		case 'K':
			o.key_file = optarg;
			break;
		case 'S':
			if (strcmp(optarg, "etcd"))
				cli_usage_error("agent", "--store: '%s' is not etcd", optarg);
			store = true;
			break;
		case 'E':
			o.etcd = optarg;
			break;
		case 'G':
			o.etcd_prefix = optarg;
			break;
		case 'O':
			if (strcmp(optarg, "file") && strcmp(optarg, "kubernetes"))
				cli_usage_error("agent", "--source: '%s' is not file or kubernetes",
				                optarg);
			kube = !strcmp(optarg, "kubernetes");
			break;
		case 'h':
			fputs(agent_help, stdout);
			return 0;
		default:
			if (cli_kube_opt(c, optarg, &ko)) {
				kube_opt = true;
				break;
			}
			cli_usage_error("agent", "unknown or incomplete option '%s' (see --help)",
			                argv[optind - 1]);
		}
	}
	if (optind < argc)
		cli_usage_error("agent", "unexpected argument '%s'", argv[optind]);
	if (bird_path) {
		uint8_t a[16], fam;
		if (!bird.neighbor || addr_parse(bird.neighbor, &fam, a) || fam != PEAK_AFI_IP6)
			cli_usage_error("agent", "--bgp-neighbor: the router's IPv6 address");
		if (!bird.router_id || addr_parse(bird.router_id, &fam, a) || fam != PEAK_AFI_IP4)
			cli_usage_error("agent", "--router-id: a dotted quad, unique per BIRD");
		if (!bird.local_as || !bird.peer_as)
			cli_usage_error("agent", "--local-as and --peer-as are required");
		bird.node = o.node ? o.node : "?";
		bird.table = o.table;
		int r = agent_bird_config(bird_path, &bird);
		if (r) { /* the options were right: a failure of the moment, not of usage */
			fprintf(stderr, "peak agent: --bird-config %s: %s\n", bird_path,
			        strerror(-r));
			return AGENT_EXIT_FAIL;
		}
		return 0;
	}
	if (!o.config)
		cli_usage_error("agent", "--config is required");
	if (!o.node)
		cli_usage_error("agent", "--node is required");
	if (o.controller) {
		struct ctl_msg m = {.kind = CTL_HELLO};
		char line[CTL_LINE_MAX + 1];
		if (addr_list_check(o.controller, AGENT_CTLS_MAX, AGENT_CTL_ADDR_MAX) < 0)
			cli_usage_error("agent",
			                "--controller: '%s' is not up to %d ADDR:PORT "
			                "separated by commas",
			                o.controller, AGENT_CTLS_MAX);
		bool fits = strlen(o.node) < sizeof(m.id);
		if (fits)
			memcpy(m.id, o.node, strlen(o.node) + 1);
		if (!fits || ctl_write(&m, line, sizeof(line)) < 0) /* the hello's own check */
			cli_usage_error("agent",
			                "--node: '%s' cannot be said in a hello (1 to %d printable "
			                "characters, no space, '\"' or '\\')",
			                o.node, CTL_ID_MAX - 1);
	}
	if (store != !!o.etcd || (o.etcd_prefix && !o.etcd))
		cli_usage_error("agent",
		                "--store etcd and --etcd URL go together (--etcd-prefix too)");
	if (o.etcd_prefix &&
	    (o.etcd_prefix[0] != '/' || o.etcd_prefix[strlen(o.etcd_prefix) - 1] != '/'))
		cli_usage_error("agent", "--etcd-prefix: '%s' must begin and end with '/'",
		                o.etcd_prefix);
	if (o.etcd && o.once)
		cli_usage_error("agent", "--store etcd follows the store: not with --once");
	if (kube_opt && !kube)
		cli_usage_error("agent", "the --kube-* options go with --source kubernetes");
	if (kube) { /* the options and the environment, before anything starts */
		char err[512];
		struct kube *k = kube_open(&ko, err, sizeof(err));
		if (!k)
			cli_usage_error("agent", "%s", err);
		kube_free(k);
		o.kube = &ko;
	}
	if (o.key_file && !o.controller && !check)
		cli_usage_error("agent", "--key-file is the key of the link to --controller");
	if (check) {
		struct peak_config *cfg;
		char err[CFG_ERRLEN + 256];
		int r = config_load(o.config, &cfg, err, sizeof(err));
		if (!r) {
			r = agent_config_check(cfg, o.config, o.node, err, sizeof(err));
			config_free(cfg);
		}
		if (!r && o.key_file) {
			struct ctlauth_key *key = malloc(sizeof(*key));
			r = key ? ctlauth_key_load(o.key_file, key, err, sizeof(err)) : -ENOMEM;
			if (!key)
				snprintf(err, sizeof(err), "%s", strerror(ENOMEM));
			if (key)
				ctlauth_key_wipe(key);
			free(key);
		}
		if (r) {
			fprintf(stderr, "peak agent: %s\n", err);
			return EXIT_USAGE;
		}
		puts("ok");
		return 0;
	}
	if (o.table == 255)
		cli_usage_error("agent", "--table 255 is the local table, for AnyIP routes only");
	return agent_run(&o);
}
