/* peak controller: the source of truth for slice assignments. */
#include <getopt.h>
#include <stdio.h>

#include "../controller/controller.h"
#include "../sys/log.h"
#include "cli.h"

static const char controller_help[] =
    "usage: peak controller --config FILE --listen ADDR:PORT [--dns-control PATH]\n"
    "                       [--metrics ADDR:PORT] [--quiet]\n"
    "\n"
    "Holds each service's slice assignment (the one 'peak plan' shows, to begin with) and\n"
    "the endpoints' health as the agents report it. When an endpoint goes down its slices\n"
    "move to the others (only its slices); when it comes back it takes its share again.\n"
    "Every change goes to all agents (the new map) and, with --dns-control, to peak dns\n"
    "(through its control socket), so DNS stops steering to the endpoint at the same time.\n"
    "Agents keep their routes while the controller is away (fail static).\n"
    "\n"
    "  --config FILE        the PEAK YAML configuration\n"
    "  --listen ADDR:PORT   where agents connect, e.g. [2001:db8::1]:4000\n"
    "  --dns-control PATH   peak dns's control socket (a path: it may be in another netns)\n"
    "  --metrics ADDR:PORT  Prometheus metrics: agents, and per endpoint its health,\n"
    "                       slices, and the connections and CPU time its agent reports\n"
    "  --quiet              log only warnings and errors\n";

int cmd_controller(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, 0, 'c'},
	    {"listen", required_argument, 0, 'l'},
	    {"dns-control", required_argument, 0, 'd'},
	    {"metrics", required_argument, 0, 'm'},
	    {"quiet", no_argument, 0, 'q'},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	struct controller_opts o = {0};
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
		case 'q':
			log_set_level(LOG_WARNING);
			break;
		case 'h':
			fputs(controller_help, stdout);
			return 0;
		default:
			cli_usage_error("controller",
			                "unknown or incomplete option '%s' (see --help)",
			                argv[optind - 1]);
		}
	}
	if (optind < argc)
		cli_usage_error("controller", "unexpected argument '%s'", argv[optind]);
	if (!o.config)
		cli_usage_error("controller", "--config is required");
	if (!o.listen)
		cli_usage_error("controller", "--listen is required");
	return controller_run(&o) ? EXIT_USAGE : 0;
}
