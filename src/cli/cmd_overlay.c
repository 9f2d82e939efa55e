/* peak overlay: one site's IPv6 overlay router (src/overlay/). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../overlay/dht.h"
#include "../overlay/dhtrec.h"
#include "../overlay/gateway.h"
#include "../overlay/master.h"
#include "../overlay/mgmt.h"
#include "../overlay/mgmtproto.h"
#include "../overlay/ovconf.h"
#include "../overlay/slave_anycast.h"
#include "../overlay/slave_bridge.h"
#include "../overlay/slave_mcast.h"
#include "../overlay/slave_resil.h"
#include "../overlay/wire.h"
#include "cli.h"
#include "peak/util.h"
#include "../sys/log.h"
#include "../sys/metrics.h"

static const char overlay_help[] =
    "usage: peak overlay --config FILE [--check] [--metrics ADDR:PORT] [--control PATH]\n"
    "                    [--verbose]\n"
    "       peak overlay --genkey FILE\n"
    "       peak overlay --pubkey FILE\n"
    "       peak overlay --site-id FILE | --authority-pub FILE\n"
    "       peak overlay --certify AUTHORITY_KEY_FILE --site SITE_ID --prefix P [--prefix P]...\n"
    "\n"
    "Runs one site's IPv6 overlay router: a TUN device for the site, the ON-master routing\n"
    "each IPv6 packet by longest prefix match to the slave owning the route, and the gateway\n"
    "slave carrying IPv6 in authenticated, encrypted UDP/IPv4 (AES-256-GCM, keys per\n"
    "pair of sites from X25519) to the peers the configuration names. Packets to no route get\n"
    "ICMPv6 destination unreachable (rate-limited). With a 'dht:' section, the DHT slave\n"
    "publishes the site's prefixes (signed) on OpenDHT and finds other sites' gateways there\n"
    "for destinations no route covers. A 'multicast:' section makes the gateway its LAN's\n"
    "MLD querier and carries IPv6 multicast of groups beyond site scope to the member\n"
    "sites. A 'bridge:' section joins a native IPv6 network on an interface of this host\n"
    "to the overlay (kernel routes both ways; the native prefixes announced as the site's).\n"
    "Data to and from a peer both sides mark 'trusted: true' goes unencrypted\n"
    "(OVW_DATA_PLAIN), carried by BPF in the kernel with 'fast-path: auto' (the default).\n"
    "SIGTERM or SIGINT: exit 0.\n"
    "\n"
    "  --config FILE        the YAML configuration (see README, 'IPv6 overlay')\n"
    "  --check              parse the configuration and the key, print 'ok', exit\n"
    "  --metrics ADDR:PORT  serve Prometheus metrics at http://ADDR:PORT/metrics\n"
    "  --control PATH       the management socket for peak overlay-ctl (mode 0600; an\n"
    "                       existing path is replaced only if it is a stale socket)\n"
    "  --verbose            log dropped packets (rate-limited) and other details\n"
    "  --genkey FILE        write a new private key (64 hex digits, mode 0600) to FILE\n"
    "  --pubkey FILE        print the public key of the private key in FILE\n"
    "  --site-id FILE       print the site's id for --certify (its X25519 and Ed25519\n"
    "                       public keys, 128 hex digits) from its private key in FILE\n"
    "  --authority-pub FILE print the public key (dht.authority) of an authority key\n"
    "                       (made with --genkey)\n"
    "  --certify FILE       print the certificate (dht.certificate) the authority key in\n"
    "                       FILE gives the site --site ID for the prefixes --prefix (in the\n"
    "                       order of its dht.prefixes, 1..16)\n";

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

static int read_key_or_usage(const char *path, uint8_t k[32])
{
	int r = ov_key_read(path, k);
	if (r)
		cli_usage_error("overlay", "%s: %s", path,
		                r == -EINVAL ? "want 64 hex digits" : strerror(-r));
	return 0;
}

/* --certify: the authority's signature over the site's keys and prefixes (dhtrec.h). */
static int certify(const char *auth_file, const char *site, char **prefixes, size_t n)
{
	struct dhr_cert c;
	uint8_t seed[32], ids[64];
	char bad;
	memset(&c, 0, sizeof(c));
	if (!site || strlen(site) != 128 || peak_hex_decode(site, NULL, ids, 64, &bad) != 64)
		cli_usage_error("overlay", "--site: want the 128 hex digits of --site-id");
	if (!n || n > DHR_MAX_PREFIXES)
		cli_usage_error("overlay", "--certify: want 1..%d --prefix", DHR_MAX_PREFIXES);
	for (size_t i = 0; i < n; i++) {
		struct prefix *p = &c.prefixes[i];
		if (prefix_parse(prefixes[i], false, p) || p->family != PEAK_AFI_IP6 || !p->len)
			cli_usage_error("overlay",
			                "--prefix %s: want an IPv6 prefix of length 1..128",
			                prefixes[i]);
	}
	c.nprefixes = (uint8_t)n;
	memcpy(c.x_pub, ids, 32);
	memcpy(c.ed_pub, ids + 32, 32);
	read_key_or_usage(auth_file, seed);
	dhr_cert_sign(&c, seed);
	memset(seed, 0, sizeof(seed));
	hex_print(c.sig, sizeof(c.sig));
	return 0;
}

static void render(struct mbuf *b, void *arg)
{
	ov_master_stats(arg, b);
}

int cmd_overlay(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, 0, 'c'},
	    {"check", no_argument, 0, 'k'},
	    {"metrics", required_argument, 0, 'm'},
	    {"verbose", no_argument, 0, 'v'},
	    {"genkey", required_argument, 0, 'g'},
	    {"pubkey", required_argument, 0, 'p'},
	    {"control", required_argument, 0, 'C'},
	    {"site-id", required_argument, 0, 'I'},
	    {"authority-pub", required_argument, 0, 'A'},
	    {"certify", required_argument, 0, 'Y'},
	    {"site", required_argument, 0, 'S'},
	    {"prefix", required_argument, 0, 'P'},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	const char *config = NULL, *metrics = NULL, *control = NULL, *certify_key = NULL,
	           *site = NULL;
	char *prefixes[DHR_MAX_PREFIXES + 1];
	size_t nprefixes = 0;
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
		case 'C':
			control = optarg;
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
		case 'I':
		case 'A': {
			uint8_t k[32], seed[32], x[32], ed[32];
			read_key_or_usage(optarg, k);
			if (c == 'A') {
				dhr_ed_pub(k, ed);
				hex_print(ed, 32);
			} else {
				ovw_pubkey(k, x);
				dhr_sign_key(k, seed, ed);
				for (size_t i = 0; i < 32; i++)
					printf("%02x", x[i]);
				hex_print(ed, 32);
			}
			memset(k, 0, sizeof(k));
			memset(seed, 0, sizeof(seed));
			return 0;
		}
		case 'Y':
			certify_key = optarg;
			break;
		case 'S':
			site = optarg;
			break;
		case 'P':
			if (nprefixes > DHR_MAX_PREFIXES)
				cli_usage_error("overlay", "--prefix: more than %d",
				                DHR_MAX_PREFIXES);
			prefixes[nprefixes++] = optarg;
			break;
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
	if (certify_key)
		return certify(certify_key, site, prefixes, nprefixes);
	if (site || nprefixes)
		cli_usage_error("overlay", "--site and --prefix go with --certify");
	if (!config)
		cli_usage_error("overlay", "--config FILE is required (see --help)");

	struct ov_conf conf;
	char err[OVC_ERRLEN];
	int ret = 1, sigfd = -1;
	struct ov_master *m = NULL;
	struct ov_slave *gw = NULL, *mg = NULL, *dht = NULL, *rs = NULL, *ac = NULL, *mcs = NULL,
	                *br = NULL;
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
	if (conf.dht.enabled && !(dht = dht_new(&conf, gw, err, sizeof(err)))) {
		fprintf(stderr, "peak overlay: %s: %s\n", config, err);
		ret = EXIT_USAGE;
		goto out;
	}
	if (conf.resil.enabled && !(rs = resil_new(&conf, gw, err, sizeof(err)))) {
		fprintf(stderr, "peak overlay: %s: %s\n", config, err);
		goto out;
	}
	if (conf.nanycast && !(ac = anycast_new(&conf, gw, rs, dht, err, sizeof(err)))) {
		fprintf(stderr, "peak overlay: %s: %s\n", config, err);
		ret = EXIT_USAGE;
		goto out;
	}
	if (conf.mcast.enabled && !(mcs = mcast_new(&conf, gw, dht, err, sizeof(err)))) {
		fprintf(stderr, "peak overlay: %s: %s\n", config, err);
		goto out;
	}
	if (conf.bridge.enabled && !(br = bridge_new(&conf, err, sizeof(err)))) {
		fprintf(stderr, "peak overlay: %s: %s\n", config, err);
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
	struct ov_master_conf mc = {.tun = conf.tun,
	                            .mtu = conf.mtu,
	                            .icmp_rate = conf.icmp_rate,
	                            .busy_poll_us = conf.busy_poll_us};
	memcpy(mc.address, conf.address, 16);
	if (!(m = ov_master_new(&mc)) || ov_master_add_slave(m, gw) ||
	    (dht && ov_master_add_slave(m, dht)) || (rs && ov_master_add_slave(m, rs)) ||
	    (ac && ov_master_add_slave(m, ac)) || (mcs && ov_master_add_slave(m, mcs)) ||
	    (br && ov_master_add_slave(m, br))) {
		fprintf(stderr, "peak overlay: out of memory\n");
		goto out;
	}
	if (control && (!(mg = mg_new(control)) || ov_master_add_slave(m, mg))) {
		fprintf(stderr, "peak overlay: --control %s: %s\n", control, strerror(errno));
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
	anycast_free(ac);
	mcast_free(mcs);
	bridge_free(br);
	resil_free(rs);
	dht_free(dht);
	gw_free(gw);
	mg_free(mg);
	ov_conf_fini(&conf);
	if (sigfd >= 0)
		close(sigfd);
	return ret;
}

static const char ctl_help[] =
    "usage: peak overlay-ctl --control PATH COMMAND\n"
    "\n"
    "Sends one request to a running peak overlay's management socket and prints the answer.\n"
    "Commands: show routes | show peers | show counters | route add PREFIX PEER |\n"
    "route del PREFIX. Exit status: 0 ok, 1 refused (the reason printed), 2 usage or no\n"
    "daemon.\n";

int cmd_overlay_ctl(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"control", required_argument, 0, 'C'},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	const char *path = NULL;
	char line[MG_LINE_MAX + 2], buf[4096];
	size_t n = 0;
	int c, ret = EXIT_USAGE, fd = -1;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'C':
			path = optarg;
			break;
		case 'h':
			fputs(ctl_help, stdout);
			return 0;
		default:
			cli_usage_error("overlay-ctl",
			                "unknown or incomplete option '%s' (see --help)",
			                argv[optind - 1]);
		}
	}
	if (!path || optind == argc)
		cli_usage_error("overlay-ctl", "--control PATH and a command are required");
	for (int i = optind; i < argc; i++) {
		size_t k = strlen(argv[i]);
		if (n + k + 2 > sizeof(line))
			cli_usage_error("overlay-ctl", "the command is too long");
		memcpy(line + n, argv[i], k);
		n += k;
		line[n++] = i + 1 < argc ? ' ' : '\n';
	}
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		cli_usage_error("overlay-ctl", "--control: path too long");
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		fprintf(stderr, "peak overlay-ctl: %s: %s\n", path, strerror(errno));
		goto out;
	}
	if (write(fd, line, n) != (ssize_t)n) {
		fprintf(stderr, "peak overlay-ctl: %s: write failed\n", path);
		goto out;
	}
	/* the answer's last line decides the exit status; keep the tail of what was read */
	char last[256] = "", cur[256];
	size_t cl = 0;
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r <= 0)
			break;
		fwrite(buf, 1, (size_t)r, stdout);
		for (ssize_t i = 0; i < r; i++) {
			if (buf[i] == '\n') {
				cur[cl] = '\0';
				memcpy(last, cur, cl + 1);
				cl = 0;
			} else if (cl + 1 < sizeof(cur)) {
				cur[cl++] = buf[i];
			}
		}
	}
	ret = !strcmp(last, "ok") ? 0 : !strncmp(last, "error:", 6) ? EXIT_NO : EXIT_USAGE;
out:
	if (fd != -1)
		close(fd);
	return ret;
}
