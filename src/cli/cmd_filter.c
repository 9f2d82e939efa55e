/* peak filter: the XDP filter's loader and controls. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../filter/loader.h"
#include "cli.h"

static const char filter_help[] =
    "usage: peak filter attach --dev IFACE --config FILE [--object PATH]\n"
    "       peak filter update --dev IFACE --config FILE\n"
    "       peak filter stats  --dev IFACE\n"
    "       peak filter detach --dev IFACE\n"
    "\n"
    "attach loads the XDP filter (SPEC.md 7) onto the interface with the services of the\n"
    "configuration: packets to a service prefix that do not follow its rule are dropped,\n"
    "conforming ones and everything else pass. Hop secrets are read from the services'\n"
    "secret files, never from the command line. update replaces the services in place\n"
    "(unchanged services see no gap); stats prints packets and bytes per verdict and\n"
    "reject reason; detach removes it. Program and maps are pinned under /sys/fs/bpf/peak/;\n"
    "in another network namespace run it with nsenter --net=/run/netns/NAME ('ip netns exec'\n"
    "mounts a fresh /sys, which hides /sys/fs/bpf).\n"
    "\n"
    "  --dev IFACE     the interface (in this network namespace)\n"
    "  --config FILE   the PEAK YAML configuration\n"
    "  --object PATH   the BPF object (default: filter.bpf.o beside the peak binary)\n";

int cmd_filter(int argc, char **argv)
{
	const char *dev = NULL, *config = NULL, *object = NULL;
	char err[512], objbuf[PATH_MAX];
	if (argc < 2 || cli_wants_help(argc, argv)) {
		fputs(filter_help, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	const char *sub = argv[1];
	for (int i = 2; i < argc; i++) {
		const char **dst = !strcmp(argv[i], "--dev")      ? &dev
		                   : !strcmp(argv[i], "--config") ? &config
		                   : !strcmp(argv[i], "--object") ? &object
		                                                  : NULL;
		if (!dst || i + 1 >= argc)
			cli_usage_error("filter", "unknown or incomplete option '%s' (see --help)",
			                argv[i]);
		*dst = argv[++i];
	}
	if (!dev)
		cli_usage_error("filter", "--dev is required");
	bool needs_cfg = !strcmp(sub, "attach") || !strcmp(sub, "update");
	if (!needs_cfg && strcmp(sub, "stats") && strcmp(sub, "detach"))
		cli_usage_error("filter", "unknown subcommand '%s' (attach, update, stats, detach)",
		                sub);
	struct peak_config *cfg = NULL;
	if (needs_cfg) {
		if (!config)
			cli_usage_error("filter", "--config is required");
		if (config_load(config, &cfg, err, sizeof(err))) {
			fprintf(stderr, "peak filter: %s\n", err);
			return EXIT_USAGE;
		}
	}
	int r = 0;
	if (!strcmp(sub, "attach")) {
		if (!object) {
			filter_default_object(objbuf, sizeof(objbuf));
			object = objbuf;
		}
		r = filter_attach(dev, object, cfg, err, sizeof(err));
	} else if (!strcmp(sub, "update")) {
		r = filter_update(dev, cfg, err, sizeof(err));
	} else if (!strcmp(sub, "detach")) {
		r = filter_detach(dev, err, sizeof(err));
	} else {
		uint64_t pk[FC_N], by[FC_N];
		r = filter_stats(dev, pk, by, err, sizeof(err));
		for (unsigned c = 0; !r && c < FC_N; c++)
			printf("%-14s %12llu packets %14llu bytes\n", filter_counter_name(c),
			       (unsigned long long)pk[c], (unsigned long long)by[c]);
	}
	config_free(cfg);
	if (r) {
		fprintf(stderr, "peak filter %s: %s\n", sub, err);
		return EXIT_NO;
	}
	return 0;
}
