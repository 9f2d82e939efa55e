/* peak serve: the test service of the testbed, the demo and the benchmarks. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../serve/serve.h"
#include "cli.h"

static const char serve_help[] =
    "usage: peak serve --port PORT [--id TEXT] [--max-conns N] [--work-us US]\n"
    "\n"
    "A tiny service that says who it is. It listens on [::]:PORT (IPv4 too), so with an\n"
    "AnyIP route (ip -6 route add local PREFIX dev lo) it accepts every address of PREFIX.\n"
    "HTTP/1.1 requests (keep-alive, HEAD too) get a 200 with the id as the body and the\n"
    "headers X-Peak-Endpoint, X-Peak-Destination and X-Peak-Source; any other line gets one\n"
    "line back: 'ID DESTINATION SOURCE'.\n"
    "\n"
    "  --port PORT      TCP port\n"
    "  --id TEXT        endpoint id to answer with (default: the host name)\n"
    "  --max-conns N    simultaneous connections (default 4096)\n"
    "  --work-us US     spend US microseconds of CPU time on each request before answering\n"
    "                   (an application's work; default 0, at most 1000000): a CPU quota\n"
    "                   then limits the requests per second it serves\n";

int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"port", required_argument, 0, 'p'},
	    {"id", required_argument, 0, 'i'},
	    {"max-conns", required_argument, 0, 'm'},
	    {"work-us", required_argument, 0, 'w'},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	static char host[256];
	struct serve_opts o = {.max_conns = 4096};
	int c;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			o.port = (uint16_t)cli_u64("serve", "--port", optarg, 1, 65535);
			break;
		case 'i':
			if (!*optarg || strlen(optarg) > 128 || strpbrk(optarg, " \r\n"))
				cli_usage_error("serve", "--id: 1 to 128 characters, no spaces");
			o.id = optarg;
			break;
		case 'm':
			o.max_conns = (unsigned)cli_u64("serve", "--max-conns", optarg, 1, 1000000);
			break;
		case 'w':
			o.work_us = (unsigned)cli_u64("serve", "--work-us", optarg, 0, 1000000);
			break;
		case 'h':
			fputs(serve_help, stdout);
			return 0;
		default:
			cli_usage_error("serve", "unknown or incomplete option '%s' (see --help)",
			                argv[optind - 1]);
		}
	}
	if (optind < argc)
		cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
	if (!o.port)
		cli_usage_error("serve", "--port is required");
	if (!o.id) {
		if (gethostname(host, sizeof(host) - 1))
			strcpy(host, "peak");
		o.id = host;
	}
	return serve_run(&o) ? EXIT_USAGE : 0;
}
