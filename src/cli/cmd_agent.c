/* peak agent: the node agent. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "../agent/agent.h"
#include "../sys/log.h"
#include "cli.h"

static const char agent_help[] =
    "usage: peak agent --config FILE --node NAME [--table N] [--once] [--interval MS]\n"
    "                  [--quiet]\n"
    "\n"
    "Programs this node (run it in the node's network namespace). For each endpoint whose\n"
    "'node' is NAME: routes for the slices it owns (the assignment 'peak plan' shows),\n"
    "aggregated into the fewest prefixes, via the endpoint's address; and, when the endpoint\n"
    "names its pod's 'netns', a local route per service prefix inside that namespace (AnyIP),\n"
    "so the pod's sockets on :: accept every address of the service. Only the difference to\n"
    "what is installed is applied, in batched netlink messages; routes that stay are never\n"
    "touched, and routes of others are never seen (PEAK's carry protocol 0xa5).\n"
    "Without --once it resyncs every --interval (default 1000 ms; this also repairs routes\n"
    "changed behind its back) and reloads the file on SIGHUP. Routes stay when it stops.\n"
    "\n"
    "  --config FILE   the PEAK YAML configuration\n"
    "  --node NAME     this node's name, as the endpoints' 'node' fields give it\n"
    "  --table N       routing table for slice routes (default 254, main)\n"
    "  --once          sync once, print what changed, and exit\n"
    "  --interval MS   resync period (default 1000)\n"
    "  --quiet         log only warnings and errors\n";

int cmd_agent(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, 0, 'c'},   {"node", required_argument, 0, 'n'},
	    {"table", required_argument, 0, 't'},    {"once", no_argument, 0, 'o'},
	    {"interval", required_argument, 0, 'i'}, {"quiet", no_argument, 0, 'q'},
	    {"help", no_argument, 0, 'h'},           {0, 0, 0, 0},
	};
	struct agent_opts o = {.table = RT_TABLE_PEAK_MAIN, .interval_ms = 1000};
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
		case 'h':
			fputs(agent_help, stdout);
			return 0;
		default:
			cli_usage_error("agent", "unknown or incomplete option '%s' (see --help)",
			                argv[optind - 1]);
		}
	}
	if (optind < argc)
		cli_usage_error("agent", "unexpected argument '%s'", argv[optind]);
	if (!o.config)
		cli_usage_error("agent", "--config is required");
	if (!o.node)
		cli_usage_error("agent", "--node is required");
	if (o.table == 255)
		cli_usage_error("agent", "--table 255 is the local table, for AnyIP routes only");
	return agent_run(&o) ? EXIT_USAGE : 0;
}
