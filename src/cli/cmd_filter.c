/* peak filter: the XDP filter's loader and controls. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../filter/loader.h"
#include "../filter/queue.h"
#include "cli.h"
#include "peak/prefix.h"

static const char filter_help[] =
    "usage: peak filter attach --dev IFACE --config FILE [--object PATH]\n"
    "                          [--mode auto|native|generic]\n"
    "       peak filter update --dev IFACE --config FILE\n"
    "       peak filter stats  --dev IFACE\n"
    "       peak filter detach --dev IFACE\n"
    "       peak filter signature add --dev IFACE [--src PREFIX] [--proto P] [--dport N]\n"
    "                                 [--hop-limit N] [--length MIN[-MAX]]\n"
    "                                 [--tcp-flags FLAGS[/MASK]] [--drop]\n"
    "       peak filter signature del --dev IFACE --slot N\n"
    "       peak filter signature list --dev IFACE\n"
    "       peak filter queue --dev POD_IFACE --rate RATE [--bad-limit N] | --remove\n"
    "\n"
    "attach loads the filter (SPEC.md 7) onto the node's uplink with the services of the\n"
    "configuration: XDP drops packets to a service prefix that do not follow its rule and\n"
    "classes the conforming ones: known good (a flow the pod has answered, seen by the TC\n"
    "egress program), possibly bad (over the service's 'rate' per source /64, or matching a\n"
    "signature), else assumed good. A TC ingress program turns the class into the skb\n"
    "priority (5045:1, :2, :3), which the queue toward the pods serves in that order. Packets\n"
    "outside every service prefix pass untouched. Hop secrets are read from the services'\n"
    "secret files, never from the command line. update replaces services, keys and rates\n"
    "in place (unchanged services see no gap); stats prints packets and bytes per class and\n"
    "reject reason; detach removes the programs.\n"
    "\n"
    "signature add installs an attack signature: conforming packets matching every given\n"
    "field are classed possibly bad, or dropped with --drop (counted as reject_signature);\n"
    "it prints the slot, which del takes; list shows them with the packets each matched.\n"
    "\n"
    "queue puts the class queue on an interface toward the pods: an HTB qdisc of --rate\n"
    "(tc syntax, e.g. 1gbit: the link's or the pods' capacity, so the queue is where a\n"
    "backlog forms) serving known good first, then assumed good, then possibly bad, whose\n"
    "queue is the shortest, so it drops first; --remove restores the default.\n"
    "\n"
    "Program and maps are pinned under /sys/fs/bpf/peak/ (the BPF filesystem is mounted\n"
    "there when missing); in another network namespace run it with\n"
    "nsenter --net=/run/netns/NAME ('ip netns exec' mounts a fresh /sys, which hides\n"
    "/sys/fs/bpf).\n"
    "\n"
    "  --dev IFACE        the interface (in this network namespace)\n"
    "  --config FILE      the PEAK YAML configuration\n"
    "  --object PATH      another build of the BPF object (default: the one built into\n"
    "                     peak from src/filter/filter.bpf.c)\n"
    "  --mode M           attach: the XDP hook: native (the driver's), generic (after the\n"
    "                     skb is built) or auto (default: native, but generic on veth,\n"
    "                     where native costs more, and where the driver has no hook);\n"
    "                     attach prints the hook it used\n"
    "  --src PREFIX       signature: source prefix (ADDR/LEN)\n"
    "  --proto P          signature: tcp, udp, icmpv6 or a next-header number\n"
    "  --dport N          signature: destination port\n"
    "  --hop-limit N      signature: exact hop limit\n"
    "  --length MIN[-MAX] signature: IPv6 payload length range\n"
    "  --tcp-flags F[/M]  signature: TCP flags F (comma list of fin,syn,rst,psh,ack,urg)\n"
    "                     set among M (default: M = F)\n"
    "  --drop             signature: drop matching packets instead of classing them\n"
    "  --slot N           signature del: the slot add printed\n"
    "  --rate RATE        queue: the rate the interface is shaped to (bit, kbit, mbit, gbit)\n"
    "  --bad-limit N      queue: packets the possibly-bad queue holds (default 100)\n"
    "  --remove           queue: delete the queue\n";

struct filter_opts {
	const char *dev, *config, *object, *mode, *src, *proto, *dport, *hop, *length, *flags,
	    *slot, *rate, *bad_limit;
	bool drop, remove;
};

static void parse_opts(int argc, char **argv, int first, struct filter_opts *o)
{
	static const struct {
		const char *name;
		size_t off;
	} opts[] = {
#define O(n, f) {n, offsetof(struct filter_opts, f)}
	    O("--dev", dev),
	    O("--config", config),
	    O("--object", object),
	    O("--mode", mode),
	    O("--src", src),
	    O("--proto", proto),
	    O("--dport", dport),
	    O("--hop-limit", hop),
	    O("--length", length),
	    O("--tcp-flags", flags),
	    O("--slot", slot),
	    O("--rate", rate),
	    O("--bad-limit", bad_limit),
#undef O
	};
	for (int i = first; i < argc; i++) {
		if (!strcmp(argv[i], "--drop")) {
			o->drop = true;
			continue;
		}
		if (!strcmp(argv[i], "--remove")) {
			o->remove = true;
			continue;
		}
		size_t k = 0;
		while (k < sizeof(opts) / sizeof(opts[0]) && strcmp(argv[i], opts[k].name))
			k++;
		if (k == sizeof(opts) / sizeof(opts[0]) || i + 1 >= argc)
			cli_usage_error("filter", "unknown or incomplete option '%s' (see --help)",
			                argv[i]);
		*(const char **)((char *)o + opts[k].off) = argv[++i];
	}
	if (!o->dev)
		cli_usage_error("filter", "--dev is required");
}

/* TCP flag names to bits; exits on an unknown name. */
static uint8_t tcp_flags(const char *s)
{
	static const char *const names[] = {"fin", "syn", "rst", "psh", "ack", "urg"};
	uint8_t v = 0;
	char buf[64];
	if (strlen(s) >= sizeof(buf))
		cli_usage_error("filter", "--tcp-flags: '%s' is too long", s);
	strcpy(buf, s);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		size_t k = 0;
		while (k < 6 && strcmp(t, names[k]))
			k++;
		if (k == 6)
			cli_usage_error("filter",
			                "--tcp-flags: unknown flag '%s' (fin, syn, rst, psh, "
			                "ack, urg)",
			                t);
		v |= (uint8_t)(1u << k);
	}
	return v;
}

/* The signature the options describe; exits on bad values or on none at all. */
static void sig_from_opts(const struct filter_opts *o, struct filter_sig *g)
{
	memset(g, 0, sizeof(*g));
	if (!o->src && !o->proto && !o->dport && !o->hop && !o->length && !o->flags)
		cli_usage_error("filter", "a signature needs at least one field (see --help)");
	if (o->src) {
		struct prefix p;
		if (prefix_parse(o->src, false, &p) || p.family != PEAK_AFI_IP6)
			cli_usage_error("filter", "--src: '%s' is not an IPv6 prefix ADDR/LEN",
			                o->src);
		memcpy(g->src, p.addr, 16);
		g->src_len = p.len;
	}
	if (o->proto)
		g->proto = !strcmp(o->proto, "tcp")   ? 6
		           : !strcmp(o->proto, "udp") ? 17
		           : !strcmp(o->proto, "icmpv6")
		               ? 58
		               : (uint8_t)cli_u64("filter", "--proto", o->proto, 1, 255);
	if (o->dport)
		g->dport = (uint16_t)cli_u64("filter", "--dport", o->dport, 1, 65535);
	if (o->hop)
		g->hop_limit = (uint8_t)cli_u64("filter", "--hop-limit", o->hop, 1, 255);
	if (o->length) {
		char lo[16];
		const char *dash = strchr(o->length, '-');
		size_t n = dash ? (size_t)(dash - o->length) : strlen(o->length);
		if (n >= sizeof(lo))
			cli_usage_error("filter", "--length: '%s' is not MIN or MIN-MAX",
			                o->length);
		memcpy(lo, o->length, n);
		lo[n] = '\0';
		g->min_len = (uint16_t)cli_u64("filter", "--length", lo, 0, 65535);
		g->max_len =
		    dash ? (uint16_t)cli_u64("filter", "--length", dash + 1, g->min_len, 65535)
		         : g->min_len;
		if (!g->max_len && g->min_len == 0)
			cli_usage_error("filter", "--length: 0 matches nothing a filter sees");
	}
	if (o->flags) {
		char f[64];
		const char *slash = strchr(o->flags, '/');
		size_t n = slash ? (size_t)(slash - o->flags) : strlen(o->flags);
		if (n >= sizeof(f))
			cli_usage_error("filter", "--tcp-flags: '%s' is too long", o->flags);
		memcpy(f, o->flags, n);
		f[n] = '\0';
		g->tcp_flags = n ? tcp_flags(f) : 0;
		g->tcp_mask = slash ? tcp_flags(slash + 1) : g->tcp_flags;
		if (!g->tcp_mask || (g->tcp_flags & ~g->tcp_mask))
			cli_usage_error("filter", "--tcp-flags: the flags must be within the mask");
		if (g->proto && g->proto != 6)
			cli_usage_error("filter", "--tcp-flags needs --proto tcp");
		g->proto = 6;
	}
	g->action = o->drop ? FSIG_DROP : FSIG_CLASS;
}

static void sig_print(unsigned slot, const struct filter_sig *g, uint64_t hits)
{
	char buf[PREFIX_STRLEN];
	printf("%u %s", slot, g->action == FSIG_DROP ? "drop" : "class");
	if (g->src_len) {
		struct prefix p = {.family = PEAK_AFI_IP6, .len = g->src_len};
		memcpy(p.addr, g->src, 16);
		printf(" src %s", prefix_print(&p, buf));
	}
	if (g->proto)
		printf(" proto %u", g->proto);
	if (g->dport)
		printf(" dport %u", g->dport);
	if (g->hop_limit)
		printf(" hop-limit %u", g->hop_limit);
	if (g->min_len || g->max_len)
		printf(" length %u-%u", g->min_len, g->max_len);
	if (g->tcp_mask)
		printf(" tcp-flags 0x%02x/0x%02x", g->tcp_flags, g->tcp_mask);
	printf(" hits %llu\n", (unsigned long long)hits);
}

static int signature(const char *verb, const struct filter_opts *o, char *err, size_t errlen)
{
	if (!strcmp(verb, "add")) {
		struct filter_sig g;
		sig_from_opts(o, &g);
		int slot = filter_sig_add(o->dev, &g, err, errlen);
		if (slot >= 0)
			printf("%d\n", slot);
		return slot < 0 ? slot : 0;
	}
	if (!strcmp(verb, "del")) {
		if (!o->slot)
			cli_usage_error("filter", "signature del needs --slot N");
		return filter_sig_del(
		    o->dev,
		    (unsigned)cli_u64("filter", "--slot", o->slot, 0, FILTER_MAX_SIGNATURES - 1),
		    err, errlen);
	}
	if (strcmp(verb, "list"))
		cli_usage_error("filter", "unknown signature verb '%s' (add, del, list)", verb);
	struct filter_sigtab tab;
	uint64_t hits[FILTER_MAX_SIGNATURES];
	int r = filter_sig_list(o->dev, &tab, hits, err, errlen);
	for (unsigned k = 0; !r && k < FILTER_MAX_SIGNATURES; k++)
		if (tab.used[k])
			sig_print(k, &tab.sig[k], hits[k]);
	return r;
}

int cmd_filter(int argc, char **argv)
{
	struct filter_opts o = {0};
	char err[512];
	if (argc < 2 || cli_wants_help(argc, argv)) {
		fputs(filter_help, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	const char *sub = argv[1];
	bool is_sig = !strcmp(sub, "signature");
	if (is_sig && (argc < 3 || argv[2][0] == '-'))
		cli_usage_error("filter", "signature needs a verb: add, del or list");
	parse_opts(argc, argv, is_sig ? 3 : 2, &o);
	bool needs_cfg = !strcmp(sub, "attach") || !strcmp(sub, "update");
	if (!needs_cfg && !is_sig && strcmp(sub, "stats") && strcmp(sub, "detach") &&
	    strcmp(sub, "queue"))
		cli_usage_error(
		    "filter",
		    "unknown subcommand '%s' (attach, update, stats, detach, signature, "
		    "queue)",
		    sub);
	struct peak_config *cfg = NULL;
	if (needs_cfg) {
		if (!o.config)
			cli_usage_error("filter", "--config is required");
		if (config_load(o.config, &cfg, err, sizeof(err))) {
			fprintf(stderr, "peak filter: %s\n", err);
			return EXIT_USAGE;
		}
	}
	int r = 0;
	if (!strcmp(sub, "attach")) {
		enum filter_mode mode = FILTER_MODE_AUTO, used;
		if (o.mode && filter_mode_parse(o.mode, &mode))
			cli_usage_error("filter", "--mode: '%s' is not auto, native or generic",
			                o.mode);
		r = filter_attach(o.dev, o.object, cfg, mode, &used, err, sizeof(err));
		if (!r)
			printf("attached to %s: XDP %s\n", o.dev, filter_mode_name(used));
	} else if (!strcmp(sub, "update")) {
		r = filter_update(o.dev, cfg, err, sizeof(err));
	} else if (!strcmp(sub, "detach")) {
		r = filter_detach(o.dev, err, sizeof(err));
	} else if (is_sig) {
		r = signature(argv[2], &o, err, sizeof(err));
	} else if (!strcmp(sub, "queue")) {
		unsigned bad =
		    o.bad_limit ? (unsigned)cli_u64("filter", "--bad-limit", o.bad_limit, 1, 100000)
		                : 0;
		if (o.remove && (o.rate || o.bad_limit))
			cli_usage_error("filter", "--remove takes no other queue option");
		if (!o.remove && !o.rate)
			cli_usage_error("filter", "queue needs --rate (the link's or the pods' "
			                          "capacity, e.g. 1gbit) or --remove");
		r = o.remove ? filter_queue_remove(o.dev, err, sizeof(err))
		             : filter_queue_install(o.dev, o.rate, bad, err, sizeof(err));
	} else {
		uint64_t pk[FC_N], by[FC_N];
		r = filter_stats(o.dev, pk, by, err, sizeof(err));
		for (unsigned c = 0; !r && c < FC_N; c++)
			printf("%-16s %12llu packets %14llu bytes\n", filter_counter_name(c),
			       (unsigned long long)pk[c], (unsigned long long)by[c]);
	}
	config_free(cfg);
	if (r) {
		fprintf(stderr, "peak filter %s: %s\n", sub, err);
		return EXIT_NO;
	}
	return 0;
}
