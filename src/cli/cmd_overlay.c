/* peak overlay: one site's IPv6 overlay router (src/overlay/). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../overlay/gateway.h"
#include "../overlay/master.h"
#include "../overlay/ovconf.h"
#include "../overlay/wire.h"
#include "cli.h"
#include "../sys/log.h"
#include "../sys/metrics.h"

static const char overlay_help[] =
    "usage: peak overlay --config FILE [--check] [--metrics ADDR:PORT] [--verbose]\n"
    "       peak overlay --genkey FILE\n"
    "       peak overlay --pubkey FILE\n"
    "\n"
    "Runs one site's IPv6 overlay router: a TUN device for the site, the ON-master routing\n"
    "each IPv6 packet by longest prefix match to the slave owning the route, and the gateway\n"
    "slave carrying IPv6 in authenticated, encrypted UDP/IPv4 (AES-256-GCM, keys per\n"
    "pair of sites from X25519) to the peers the configuration names. Packets to no route get\n"
    "ICMPv6 destination unreachable (rate-limited). SIGTERM or SIGINT: exit 0.\n"
    "\n"
    "  --config FILE        the YAML configuration (see README, 'IPv6 overlay')\n"
    "  --check              parse the configuration and the key, print 'ok', exit\n"
    "  --metrics ADDR:PORT  serve Prometheus metrics at http://ADDR:PORT/metrics\n"
    "  --verbose            log dropped packets (rate-limited) and other details\n"
    "  --genkey FILE        write a new private key (64 hex digits, mode 0600) to FILE\n"
    "  --pubkey FILE        print the public key of the private key in FILE\n";

static void hex_print(const uint8_t *k, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", k[i]);
	printf("\n");
}

static int genkey(const char *path)
{
	uint8_t k[32];
	char hex[66];
	if (getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k)) {
		fprintf(stderr, "peak overlay: getrandom: %s\n", strerror(errno));
		return 1;
	}
	for (size_t i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", k[i]);
	hex[64] = '\n';
	hex[65] = '\0';
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1) {
		fprintf(stderr, "peak overlay: %s: %s\n", path, strerror(errno));
		return 1;
	}
	int ok = write(fd, hex, 65) == 65;
	ok &= close(fd) == 0;
	memset(k, 0, sizeof(k));
	memset(hex, 0, sizeof(hex));
	if (!ok) {
		fprintf(stderr, "peak overlay: %s: write failed\n", path);
		return 1;
	}
	return 0;
}

static void render(struct mbuf *b, void *arg)
{
	ov_master_stats(arg, b);
}

int cmd_overlay(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, 0, 'c'}, {"check", no_argument, 0, 'k'},
	    {"metrics", required_argument, 0, 'm'}, {"verbose", no_argument, 0, 'v'},
	    {"genkey", required_argument, 0, 'g'},  {"pubkey", required_argument, 0, 'p'},
	    {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
	};
	const char *config = NULL, *metrics = NULL;
	bool check = false;
	int c;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 'm':
			metrics = optarg;
			break;
		case 'v':
			log_set_level(LOG_DEBUG);
			break;
		case 'g':
			return genkey(optarg);
		case 'p': {
			uint8_t k[32], pub[32];
			int r = ov_key_read(optarg, k);
			if (r)
				cli_usage_error("overlay", "%s: %s", optarg,
				                r == -EINVAL ? "want 64 hex digits" : strerror(-r));
			ovw_pubkey(k, pub);
			memset(k, 0, sizeof(k));
			hex_print(pub, 32);
			return 0;
		}
		case 'h':
			fputs(overlay_help, stdout);
			return 0;
		default:
			cli_usage_error("overlay", "unknown or incomplete option '%s' (see --help)",
			                argv[optind - 1]);
		}
	}
	if (optind < argc)
		cli_usage_error("overlay", "unexpected argument '%s'", argv[optind]);
	if (!config)
		cli_usage_error("overlay", "--config FILE is required (see --help)");

	struct ov_conf conf;
	char err[OVC_ERRLEN];
	int ret = 1, sigfd = -1;
	struct ov_master *m = NULL;
	struct ov_slave *gw = NULL;
	struct metrics_srv *ms = NULL;
	if (ov_conf_load(config, &conf, err, sizeof(err))) {
		fprintf(stderr, "peak overlay: %s\n", err);
		ret = EXIT_USAGE;
		goto out;
	}
	if (!(gw = gw_new(&conf, err, sizeof(err)))) {
		fprintf(stderr, "peak overlay: %s: %s\n", config, err);
		ret = EXIT_USAGE;
		goto out;
	}
	if (check) {
		printf("ok\n");
		ret = 0;
		goto out;
	}
	/* signals blocked before the metrics thread starts, so it never takes them */
	if ((sigfd = signals_fd(1)) < 0) {
		fprintf(stderr, "peak overlay: signals: %s\n", strerror(-sigfd));
		goto out;
	}
	struct ov_master_conf mc = {.tun = conf.tun, .mtu = conf.mtu,
	                            .icmp_rate = conf.icmp_rate};
	memcpy(mc.address, conf.address, 16);
	if (!(m = ov_master_new(&mc)) || ov_master_add_slave(m, gw)) {
		fprintf(stderr, "peak overlay: out of memory\n");
		goto out;
	}
	if (metrics && !(ms = metrics_start(metrics, render, m)))
		goto out;
	int r = ov_master_run(m, sigfd);
	if (r)
		log_msg(LOG_ERR, "overlay: stopped: %s", strerror(-r));
	ret = r ? 1 : 0;
out:
	metrics_stop(ms);
	ov_master_free(m);
	gw_free(gw);
	ov_conf_fini(&conf);
	if (sigfd >= 0)
		close(sigfd);
	return ret;
}
