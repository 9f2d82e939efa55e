/* peak h3: HTTP/3 stream routing (issue 16): the checksum backend and the upload client. */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../h3/backend.h"
#include "../h3/ingress.h"
#include "../h3/upload.h"
#include "../sys/log.h"
#include "cli.h"
#include "peak/peak.h"
#include "peak/prefix.h"
#include "peak/typemap.h"

static const char h3_help[] =
    "usage: peak h3 COMMAND [ARGS]\n"
    "\n"
    "HTTP/3 (QUIC, ngtcp2 + nghttp3 + GnuTLS).\n"
    "\n"
    "Commands:\n"
    "  backend   an HTTP/3 server that answers each upload with its SHA-256\n"
    "  ingress   terminate HTTP/3 and route each request stream by content-type\n"
    "  upload    upload files on one connection, one request stream each; check checksums\n"
    "  get       GET one URL (e.g. a backend's /healthz) and print the status\n"
    "\n"
    "Run 'peak h3 COMMAND --help' for a command's options.\n";

static const char backend_help[] =
    "usage: peak h3 backend --listen ADDR:PORT --cert FILE --key FILE --type TYPES\n"
    "                       [--id ID] [--max-streams N] [--max-conns N] [--verbose]\n"
    "                       [--secret-file FILE] [--retry] [--metrics ADDR:PORT]\n"
    "                       [--qlog DIR] [--proto h3|h2] [--page FILE]\n"
    "\n"
    "An HTTP/3 server (UDP), or with --proto h2 an HTTP/2 server on TLS/TCP. POST with a body: the "
    "body is hashed with SHA-256 as it\n"
    "streams in and answered 201 with\n"
    "  {\"checksum\":\"<hex>\",\"bytes\":N,\"type\":\"<content-type>\",\"backend\":\"<id>\"}\n"
    "A content type not in TYPES gets 415, a POST without content-type 400 (the rest of its\n"
    "body is read and dropped). GET /healthz gets 200. SIGTERM or SIGINT: exit 0.\n"
    "\n"
    "  --listen ADDR:PORT  address to listen on: [IPv6]:PORT or IPv4:PORT; [::]:PORT answers\n"
    "                      each client from the address it used (AnyIP slice addresses too)\n"
    "  --cert FILE         PEM certificate chain\n"
    "  --key FILE          PEM private key\n"
    "  --type TYPES        content types served, comma-separated: type/subtype, type/*,\n"
    "                      */* (case-insensitive; parameters such as ;charset= ignored)\n"
    "  --id ID             backend id reported in answers (default: the host name)\n"
    "  --max-streams N     concurrent request streams per connection (default 100)\n"
    "  --max-conns N       concurrent connections (default 1024)\n"
    "  --verbose           log every request (debug level)\n"
    "  --secret-file FILE  16-byte secret (32 hex digits) keying stateless reset and Retry\n"
    "                      tokens and the TLS session tickets: a backend restarted with the\n"
    "                      same secret resets its old connections at once and resumes its\n"
    "                      clients' sessions (default: random per process)\n"
    "  --retry             make every new client prove its address with a Retry first\n"
    "                      (by default only once half of --max-conns are open)\n"
    "  --metrics ADDR:PORT serve Prometheus metrics at http://ADDR:PORT/metrics: streams by\n"
    "                      status, body bytes, connections, drops, retries, resets,\n"
    "                      resumed sessions, handshake time histogram\n"
    "  --qlog DIR          write a qlog file per connection into DIR (JSON-SEQ: ngtcp2's\n"
    "                      transport events, and the request heads and answers; over h2 the\n"
    "                      connection, TLS and HTTP/2 stream events)\n"
    "  --proto P           h3 (default): HTTP/3 over QUIC on UDP; h2: HTTP/2 over TLS 1.2/1.3\n"
    "                      on TCP (ALPN h2), the same answers; --max-streams is then\n"
    "                      SETTINGS_MAX_CONCURRENT_STREAMS; header sections over 16 KiB get\n"
    "                      431; --retry does not apply\n"
    "  --page FILE         GET / (no content-type, or one of TYPES: a GET an ingress\n"
    "                      routed) gets FILE as text/html, read once at start (a regular\n"
    "                      file of at most 1 MiB), so that a browser loads a page from the\n"
    "                      backend and its script uploads straight to it\n";

static const char upload_help[] =
    "usage: peak h3 upload URL --file FILE[:TYPE] [--file ...] [--ca FILE | --insecure]\n"
    "       peak h3 upload NAME --peak --file FILE:TYPE [--file ...] [--server ADDR[:PORT]]\n"
    "                      [--source ADDR] [--port P] [--secret-file FILE] [options]\n"
    "                      [--timeout MS] [--migrate-after BYTES] [--qlog DIR]\n"
    "                      [--session-file FILE [--early-data]] [--proto h3|h2]\n"
    "                      [--connections N] [--metrics FILE]\n"
    "\n"
    "Opens one HTTP/3 connection to URL (https://HOST[:PORT][/PATH]) and POSTs every file on\n"
    "its own request stream, concurrently, opening streams as the server's limit allows.\n"
    "Each answer's checksum and byte count are checked against the file's own SHA-256 and\n"
    "size. Prints one line per stream (stream, file, type, status, backend, checksum check,\n"
    "time) and a summary. Exit 0 if every stream got 201 with the right checksum, 1 if any\n"
    "did not or the connection failed, 2 for bad usage.\n"
    "\n"
    "  --file FILE[:TYPE]  a file to upload with content-type TYPE (none if omitted);\n"
    "                      up to 256\n"
    "  --ca FILE           trust this PEM CA (default: the system's trust store)\n"
    "  --insecure          do not check the server's certificate\n"
    "  --timeout MS        give up after MS milliseconds (default 30000)\n"
    "  --migrate-after BYTES  once BYTES of the bodies are sent, move the connection to a\n"
    "                      new local port (connection migration, RFC 9000 §9: the server\n"
    "                      follows by connection ID)\n"
    "  --qlog DIR          write the connection's qlog into DIR (JSON-SEQ)\n"
    "  --session-file FILE resume the TLS session stored in FILE, and store the server's\n"
    "                      latest session ticket there (the summary says 'resumed')\n"
    "  --early-data        with --session-file, send the requests as 0-RTT (the backend\n"
    "                      refuses replays; refused early data is sent again after the\n"
    "                      handshake; the summary says which)\n"
    "  --proto P           h3 (default), or h2: one HTTP/2 connection over TLS/TCP (ALPN h2)\n"
    "                      with every file a stream of it (streams past the server's\n"
    "                      SETTINGS_MAX_CONCURRENT_STREAMS wait); the same lines, summary\n"
    "                      and exit codes (--qlog, --session-file, --early-data too: the\n"
    "                      preface and the first 16 KiB of the requests as TLS 1.3 early\n"
    "                      data); no --peak, --migrate-after\n"
    "  --connections N     spread the files over up to N connections (1 to 16, default 1),\n"
    "                      each in a process of its own: the largest file first, each to\n"
    "                      the connection with the fewest bytes so far; with --peak, up to\n"
    "                      N per service and key, all to the address its rule gives. Each\n"
    "                      connection prints its streams and summary; no --session-file\n"
    "  --metrics FILE      at exit, write the client's Prometheus text to FILE (the node\n"
    "                      exporter's textfile format, written to FILE.tmp and renamed):\n"
    "                      streams by content type and status, body bytes, checksum\n"
    "                      mismatches, handshake time (resumed or not), 0-RTT, Retry,\n"
    "                      losses, UDP receive calls and datagrams; with --peak or\n"
    "                      --connections, every connection's samples labelled\n"
    "                      connection=\"K\" in the one file\n"
    "\n"
    "PEAK-direct (--peak): no ingress. Reads NAME's content-type map (TXT _types.NAME:\n"
    "'v=types1; audio/*=audio.svc.example.; video/*=@#video'), picks for each file the most\n"
    "specific entry for its type, resolves the entry's service ('@': NAME) through the SSA\n"
    "client library (APL + descriptor; the entry's #KEY is the object key of select=obj\n"
    "services) and opens one connection per service and key straight to the address the\n"
    "rule gives, from the source it was computed for, all at once. The certificate is\n"
    "checked against the service name. Prints per connection a 'peak:' line (types,\n"
    "service, address, source, rule), then its streams and summary as above.\n"
    "  --peak              NAME is a service name; see above\n"
    "  --server ADDR       name server (repeatable; default: /etc/resolv.conf)\n"
    "  --source ADDR       compute for and send from this source (one of this host's)\n"
    "  --port P            the services' UDP port (default 443)\n"
    "  --secret-file FILE  hop services' secret, 32 hex digits\n";

/* The options every peak h3 server takes (backend, ingress). */
struct srv_opts {
	struct h3_addr listen;
	bool have_listen;
	const char *cert, *key, *id, *metrics, *qlog_dir;
	uint64_t max_streams;
	size_t max_conns;
	const uint8_t *secret;
	bool retry;
};

#define SRV_LONG_OPTIONS                                                                           \
	{"listen", required_argument, 0, 'l'}, {"cert", required_argument, 0, 'c'},                \
	    {"key", required_argument, 0, 'k'}, {"id", required_argument, 0, 'i'},                 \
	    {"max-streams", required_argument, 0, 's'}, {"max-conns", required_argument, 0, 'm'},  \
	    {"verbose", no_argument, 0, 'v'}, {"secret-file", required_argument, 0, 'S'},          \
	    {"retry", no_argument, 0, 'r'}, {"metrics", required_argument, 0, 'M'},                \
	{                                                                                          \
		"qlog", required_argument, 0, 'Q'                                                  \
	}

static void srv_defaults(struct srv_opts *s)
{
	memset(s, 0, sizeof(*s));
	s->max_streams = 100;
	s->max_conns = 1024;
}

/* Takes option c (from SRV_LONG_OPTIONS) with its argument into s; false if c is not one of
 * them. Bad values exit through cli_usage_error. */
static bool srv_opt(const char *cmd, int c, const char *arg, struct srv_opts *s)
{
	static uint8_t secret[16];
	switch (c) {
	case 'l':
		if (h3_addr_parse(arg, &s->listen))
			cli_usage_error(cmd, "--listen: '%s' is not ADDR:PORT", arg);
		s->have_listen = true;
		return true;
	case 'c':
		s->cert = arg;
		return true;
	case 'k':
		s->key = arg;
		return true;
	case 'i':
		if (!*arg || strlen(arg) > 64 || strpbrk(arg, " \"\\\r\n\t"))
			cli_usage_error(cmd, "--id: 1 to 64 characters, no spaces or quotes");
		s->id = arg;
		return true;
	case 's':
		s->max_streams = cli_u64(cmd, "--max-streams", arg, 1, 10000);
		return true;
	case 'm':
		s->max_conns = (size_t)cli_u64(cmd, "--max-conns", arg, 1, 100000);
		return true;
	case 'v':
		log_set_level(LOG_DEBUG);
		return true;
	case 'S':
		cli_secret_file(cmd, arg, secret);
		s->secret = secret;
		return true;
	case 'r':
		s->retry = true;
		return true;
	case 'M':
		s->metrics = arg;
		return true;
	case 'Q':
		s->qlog_dir = arg;
		return true;
	default:
		return false;
	}
}

static int cmd_h3_backend(int argc, char **argv)
{
	static const struct option opts[] = {
	    SRV_LONG_OPTIONS,
	    {"type", required_argument, 0, 't'},
	    {"proto", required_argument, 0, 'p'},
	    {"page", required_argument, 0, 'G'},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	static char host[256];
	static struct h3_backend_opts o;
	static struct h3_page page;
	const char *page_file = NULL;
	char why[128];
	struct srv_opts so;
	bool have_types = false;
	int c;
	memset(&o, 0, sizeof(o));
	srv_defaults(&so);
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (h3_ctype_set_parse(&o.types, optarg))
				cli_usage_error(
				    "h3 backend",
				    "--type: '%s': want up to %d comma-separated type/subtype,"
				    " type/* or */*",
				    optarg, H3_CTYPE_MAX);
			have_types = true;
			break;
		case 'p':
			if (strcmp(optarg, "h3") && strcmp(optarg, "h2"))
				cli_usage_error("h3 backend", "--proto: '%s': want h3 or h2",
				                optarg);
			o.h2 = !strcmp(optarg, "h2");
			break;
		case 'G':
			page_file = optarg;
			break;
		case 'h':
			fputs(backend_help, stdout);
			return 0;
		default:
			if (!srv_opt("h3 backend", c, optarg, &so))
				cli_usage_error("h3 backend",
				                "unknown or incomplete option '%s' (see --help)",
				                argv[optind - 1]);
		}
	}
	if (optind < argc)
		cli_usage_error("h3 backend", "unexpected argument '%s'", argv[optind]);
	if (!so.have_listen || !so.cert || !so.key || !have_types)
		cli_usage_error("h3 backend", "--listen, --cert, --key and --type are required");
	if (o.h2 && so.retry)
		cli_usage_error("h3 backend", "--proto h2 takes no --retry");
	if (page_file) {
		if (h3_page_load(&page, page_file, why, sizeof(why)))
			cli_usage_error("h3 backend", "--page %s: %s", page_file, why);
		o.page = &page;
	}
	o.listen = so.listen;
	o.cert = so.cert;
	o.key = so.key;
	o.id = so.id;
	o.max_streams = so.max_streams;
	o.max_conns = so.max_conns;
	o.secret = so.secret;
	o.retry = so.retry;
	o.metrics = so.metrics;
	o.qlog_dir = so.qlog_dir;
	if (!o.id) {
		if (gethostname(host, sizeof(host) - 1))
			strcpy(host, "peak");
		o.id = host;
	}
	int ret = h3_backend_run(&o) ? EXIT_USAGE : 0;
	h3_page_free(&page);
	return ret;
}

static const char ingress_help[] =
    "usage: peak h3 ingress --listen ADDR:PORT --cert FILE --key FILE --route SPEC\n"
    "                       [--route SPEC ...] [--upstream-proto h3|h2]\n"
    "                       [--upstream-ca FILE | --upstream-insecure]\n"
    "                       [--health-interval MS] [--id ID] [--max-streams N]\n"
    "                       [--max-conns N] [--secret-file FILE] [--retry]\n"
    "                       [--metrics ADDR:PORT] [--qlog DIR] [--verbose] [--sniff]\n"
    "                       [--page]\n"
    "\n"
    "An HTTP/3 ingress: terminates QUIC+TLS and forwards each request stream, by its\n"
    "content-type, over one connection per upstream (HTTP/3, or HTTP/2 over TLS/TCP; the\n"
    "streams multiplexed on it), and streams the answer back. No content-type, or a type no rule "
    "matches: 400 (the rest of\n"
    "the body is read and dropped). No healthy upstream: 503. An upstream that fails\n"
    "mid-stream: 502 on that stream (or a reset once its answer began), others go on.\n"
    "Bodies are never held whole: the client's flow-control credit runs at most one\n"
    "window (256 KiB) ahead of what the upstream acknowledged. SIGTERM or SIGINT: exit 0.\n"
    "\n"
    "  --route SPEC        rules TYPE=UPSTREAM[|UPSTREAM...][,TYPE=...]; TYPE is\n"
    "                      type/subtype, type/* or */* (case-insensitive, parameters\n"
    "                      ignored; the most specific match wins); UPSTREAM is\n"
    "                      h3://[IPv6]:PORT or h3://IPv4:PORT (HTTP/3), h2://[IPv6]:PORT or\n"
    "                      h2://IPv4:PORT (HTTP/2 over TLS/TCP, ALPN h2), or [IPv6]:PORT\n"
    "                      with the --upstream-proto; '|' separates the upstreams of a rule\n"
    "                      (round robin among the healthy ones); h3 and h2 upstreams mix.\n"
    "                      Repeatable.\n"
    "  --upstream-proto P  h3 (default) or h2: the protocol of upstreams written without\n"
    "                      a scheme\n"
    "  --upstream-ca FILE  trust this PEM CA for upstreams (default: the system's)\n"
    "  --upstream-insecure do not check upstreams' certificates\n"
    "  --health-interval MS  GET /healthz on every upstream this often (default 1000); a\n"
    "                      check unanswered by the next one, a non-200 answer or a lost\n"
    "                      connection takes the upstream out; a 200 puts it back\n"
    "  --id ID             label of the metrics (default: ingress)\n"
    "  --max-streams N     concurrent request streams per client connection (default 100)\n"
    "  --max-conns N       concurrent client connections (default 1024)\n"
    "  --secret-file FILE  16-byte secret (32 hex digits) for stateless reset and Retry\n"
    "  --retry             make every new client prove its address with a Retry first\n"
    "  --metrics ADDR:PORT Prometheus metrics at http://ADDR:PORT/metrics: streams by route\n"
    "                      and status, bytes by route, upstreams up, requests and errors,\n"
    "                      HTTP/2 upstreams' TLS handshakes and resumed sessions, and the\n"
    "                      endpoint's counters and handshake histogram\n"
    "  --qlog DIR          a qlog file per connection (clients' and upstreams', HTTP/2 ones\n"
    "                      too), with the routing decision of each request\n"
    "  --verbose           log every routed request (debug level)\n"
    "  --sniff             a request with no content-type or application/octet-stream is\n"
    "                      routed by its body's first bytes (magic numbers of Ogg, FLAC,\n"
    "                      MP3, AAC, WAV, AIFF, MP4/M4A/QuickTime, WebM/Matroska, MPEG-PS/TS,\n"
    "                      AVI, FLV...) and forwarded with the type found; the qlog's\n"
    "                      routing event says what was sniffed and why, the metrics count\n"
    "                      sniffed streams by route\n"
    "  --page              GET / answers a test page whose script uploads three typed\n"
    "                      bodies with fetch() and shows each answer (browser interop)\n";

static int cmd_h3_ingress(int argc, char **argv)
{
	static const struct option opts[] = {
	    SRV_LONG_OPTIONS,
	    {"route", required_argument, 0, 'R'},
	    {"upstream-proto", required_argument, 0, 'P'},
	    {"upstream-ca", required_argument, 0, 'A'},
	    {"upstream-insecure", no_argument, 0, 'I'},
	    {"health-interval", required_argument, 0, 'H'},
	    {"sniff", no_argument, 0, 'F'},
	    {"page", no_argument, 0, 'G'},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	static struct h3_route_table routes;
	static struct h3_ingress_opts o;
	static struct h3_page page;
	static const char *specs[H3_ROUTE_MAX];
	size_t nspecs = 0;
	struct srv_opts so;
	char err[256];
	int c;
	memset(&o, 0, sizeof(o));
	memset(&routes, 0, sizeof(routes));
	srv_defaults(&so);
	o.health_interval_ms = 1000;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'R':
			/* parsed once --upstream-proto, wherever it is, is known */
			if (nspecs == H3_ROUTE_MAX)
				cli_usage_error("h3 ingress", "--route: more than %d",
				                H3_ROUTE_MAX);
			specs[nspecs++] = optarg;
			break;
		case 'P':
			if (strcmp(optarg, "h3") && strcmp(optarg, "h2"))
				cli_usage_error("h3 ingress",
				                "--upstream-proto: '%s': want h3 or h2", optarg);
			routes.default_h2 = !strcmp(optarg, "h2");
			break;
		case 'A':
			o.upstream_ca = optarg;
			break;
		case 'I':
			o.upstream_insecure = true;
			break;
		case 'F':
			o.sniff = true;
			break;
		case 'G':
			h3_page_builtin(&page);
			o.page = &page;
			break;
		case 'H':
			o.health_interval_ms = (unsigned)cli_u64("h3 ingress", "--health-interval",
			                                         optarg, 10, 3600000);
			break;
		case 'h':
			fputs(ingress_help, stdout);
			return 0;
		default:
			if (!srv_opt("h3 ingress", c, optarg, &so))
				cli_usage_error("h3 ingress",
				                "unknown or incomplete option '%s' (see --help)",
				                argv[optind - 1]);
		}
	}
	if (optind < argc)
		cli_usage_error("h3 ingress", "unexpected argument '%s'", argv[optind]);
	for (size_t i = 0; i < nspecs; i++)
		if (h3_route_parse(&routes, specs[i], err, sizeof(err)))
			cli_usage_error("h3 ingress", "--route: %s", err);
	if (!so.have_listen || !so.cert || !so.key || !routes.n)
		cli_usage_error("h3 ingress", "--listen, --cert, --key and --route are required");
	if (o.upstream_ca && o.upstream_insecure)
		cli_usage_error("h3 ingress",
		                "--upstream-ca and --upstream-insecure exclude each other");
	o.routes = &routes;
	o.listen = so.listen;
	o.cert = so.cert;
	o.key = so.key;
	o.id = so.id ? so.id : "ingress";
	o.max_streams = so.max_streams;
	o.max_conns = so.max_conns;
	o.secret = so.secret;
	o.retry = so.retry;
	o.metrics = so.metrics;
	o.qlog_dir = so.qlog_dir;
	return h3_ingress_run(&o) ? EXIT_USAGE : 0;
}

static const char get_help[] =
    "usage: peak h3 get URL [--ca FILE | --insecure] [--timeout MS] [--qlog DIR]\n"
    "                   [--proto h3|h2] [--metrics FILE] [--type TYPE]\n"
    "\n"
    "GETs URL (https://HOST[:PORT][/PATH]) over HTTP/3 (or HTTP/2 on TLS/TCP with --proto h2)\n"
    "and prints the status, the backend (x-peak-backend) and the first line of the body.\n"
    "Exit 0 for a 2xx answer, 1 otherwise,\n"
    "2 for bad usage.\n"
    "\n"
    "  --ca FILE           trust this PEM CA (default: the system's trust store)\n"
    "  --insecure          do not check the server's certificate\n"
    "  --timeout MS        give up after MS milliseconds (default 30000)\n"
    "  --qlog DIR          write the connection's qlog into DIR (JSON-SEQ)\n"
    "  --proto P           h3 (default) or h2\n"
    "  --metrics FILE      at exit, write the client's Prometheus text to FILE (see\n"
    "                      peak h3 upload --help)\n"
    "  --type TYPE         send content-type TYPE with the GET, so that an ingress routes\n"
    "                      it (a backend's --page through an ingress)\n";

static bool printable(const char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

/* ---- PEAK-direct: one connection per content-type target, no ingress ---- */

struct direct_opts {
	bool on;
	struct peak_resolver_opts ro;
	struct in6_addr source;
	uint16_t port;
	const char *secret_file;
	uint8_t secret[16];
	unsigned connections; /* per service and key (--connections) */
};

enum {
	UPLOAD_MAX_CONNS = 16,                              /* --connections */
	DIRECT_MAX_GROUPS = TYPEMAP_MAX * UPLOAD_MAX_CONNS, /* connections of one PEAK-direct run */
};

/* One connection: the files whose types map to the same service and object key (or a part of
 * them, --connections). */
struct direct_group {
	const struct typemap_entry *e;
	char service[TYPEMAP_NAME_LEN];
	char types[256];
	struct h3_upload_opts o;
	struct peak_candidate cand;
	bool resolved;
	pid_t pid;
	FILE *out; /* the child's stdout */
};

/* Spreads g[k]'s files over up to n connections (--connections): the largest file first, each
 * to the connection with the fewest bytes so far. g[k] keeps the first part; the others are
 * copies of it appended at g[*ng], up to max groups in all. */
static void group_spread(struct direct_group *g, unsigned k, unsigned *ng, unsigned max, unsigned n)
{
	static struct h3_upload_file files[H3_UPLOAD_MAX_FILES];
	static uint64_t size[H3_UPLOAD_MAX_FILES];
	uint64_t load[UPLOAD_MAX_CONNS] = {0};
	unsigned at[UPLOAD_MAX_CONNS], nf = (unsigned)g[k].o.nfiles;
	if (n > nf)
		n = nf;
	if (n > max - *ng + 1)
		n = max - *ng + 1;
	if (n < 2)
		return;
	for (unsigned i = 0; i < nf; i++) {
		struct stat st;
		files[i] = g[k].o.files[i];
		size[i] = stat(files[i].path, &st) == 0 ? (uint64_t)st.st_size : 0;
	}
	for (unsigned c = 0; c < n; c++) {
		at[c] = c ? *ng + c - 1 : k;
		if (c)
			g[at[c]] = g[k];
		g[at[c]].o.nfiles = 0;
	}
	for (unsigned done = 0; done < nf; done++) {
		unsigned big = 0, least = 0; /* at most 256 files: the quadratic pick is cheap */
		for (unsigned i = 1; i < nf; i++)
			if (size[i] != UINT64_MAX &&
			    (size[big] == UINT64_MAX || size[i] > size[big]))
				big = i;
		for (unsigned c = 1; c < n; c++)
			if (load[c] < load[least])
				least = c;
		struct h3_upload_opts *o = &g[at[least]].o;
		o->files[o->nfiles++] = files[big];
		load[least] += size[big];
		size[big] = UINT64_MAX;
	}
	*ng += n - 1;
}

/* Runs one 'peak h3 upload' per resolved group in a child process, all at once (each child
 * its own QUIC connection and event loop), then prints each group's output in order, after
 * its 'peak:' line when d is given (PEAK-direct). Returns how many groups failed. */
static unsigned groups_run(struct direct_group *g, unsigned ng, const struct direct_opts *d)
{
	unsigned bad = 0;
	const char *metrics = ng ? g[0].o.metrics_file : NULL; /* --metrics: one file for all */
	char **part = metrics ? calloc(ng, sizeof(*part)) : NULL;
	fflush(stdout);
	fflush(stderr);
	for (unsigned k = 0; k < ng; k++) {
		if (!g[k].resolved)
			continue;
		/* each connection writes FILE.K, merged into FILE once all have ended */
		if (part && (part[k] = malloc(strlen(metrics) + 12)))
			sprintf(part[k], "%s.%u", metrics, k);
		g[k].o.metrics_file = part ? part[k] : NULL;
		if (!(g[k].out = tmpfile())) {
			fprintf(stderr, "peak h3 upload: tmpfile: %s\n", strerror(errno));
			bad++;
			g[k].resolved = false;
			continue;
		}
		g[k].pid = fork();
		if (g[k].pid == 0) {
			if (dup2(fileno(g[k].out), STDOUT_FILENO) == -1)
				_exit(EXIT_NO);
			int rc = h3_upload_run(&g[k].o);
			fflush(stdout);
			_exit(rc < 0 ? EXIT_USAGE : rc ? EXIT_NO : 0);
		}
		if (g[k].pid == -1) {
			fprintf(stderr, "peak h3 upload: fork: %s\n", strerror(errno));
			bad++;
			g[k].resolved = false;
			fclose(g[k].out);
			g[k].out = NULL;
		}
	}
	for (unsigned k = 0; k < ng; k++) {
		char dst[ADDR_STRLEN], src[ADDR_STRLEN], line[512];
		int st = 0;
		if (!g[k].resolved)
			continue;
		while (waitpid(g[k].pid, &st, 0) == -1 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			bad++;
		if (d) {
			addr_print(PEAK_AFI_IP6, (const uint8_t *)&g[k].cand.dst.sin6_addr, dst);
			if (g[k].o.source)
				addr_print(PEAK_AFI_IP6, (const uint8_t *)g[k].o.source, src);
			else
				snprintf(src, sizeof(src), "any");
			printf("peak: types=%s service=%s%s%s address=[%s]:%u source=%s rule=%s\n",
			       g[k].types, g[k].service, g[k].e->key[0] ? " key=" : "", g[k].e->key,
			       dst, d->port, src, peak_origin_name(g[k].cand.origin));
		}
		rewind(g[k].out);
		while (fgets(line, sizeof(line), g[k].out))
			fputs(line, stdout);
		fclose(g[k].out);
		g[k].out = NULL;
	}
	if (part) {
		int r = h3_upload_metrics_merge(metrics, (const char *const *)part, ng);
		if (r)
			fprintf(stderr, "peak h3 upload: --metrics %s: %s\n", metrics,
			        strerror(-r));
		for (unsigned k = 0; k < ng; k++)
			if (part[k]) {
				unlink(part[k]);
				free(part[k]);
			}
		free(part);
	} else if (metrics) {
		fprintf(stderr, "peak h3 upload: --metrics %s: no memory\n", metrics);
	}
	return bad;
}

/* --connections N without --peak: o's files spread over up to n connections to its URL. Returns
 * 0 if every stream of every connection got 201 with the right checksum, EXIT_NO otherwise. */
static int split_run(const struct h3_upload_opts *o, unsigned n)
{
	static struct direct_group g[UPLOAD_MAX_CONNS];
	unsigned ng = 1;
	memset(&g[0], 0, sizeof(g[0]));
	g[0].o = *o;
	g[0].resolved = true;
	group_spread(g, 0, &ng, UPLOAD_MAX_CONNS, n);
	unsigned bad = groups_run(g, ng, NULL);
	printf("connections: %u, %s\n", ng, bad ? "some failed" : "all ok");
	return bad ? EXIT_NO : 0;
}

/* Resolves every group's service and runs one 'peak h3 upload' per group (up to
 * d->connections per group, group_spread) in a child process, all at once; prints each
 * connection's 'peak:' line and output in order. Returns 0 if every stream of every group got
 * 201 with the right checksum, EXIT_NO otherwise. */
static int direct_run(const struct h3_upload_opts *base, const struct direct_opts *d)
{
	static struct direct_group g[DIRECT_MAX_GROUPS];
	static struct typemap m;
	static char url[TYPEMAP_MAX][96], sni[TYPEMAP_MAX][TYPEMAP_NAME_LEN];
	const char *name = base->url;
	unsigned ng = 0, bad = 0;
	int err, ret = EXIT_NO;
	struct peak_resolver *r = peak_resolver_new(&d->ro, &err);
	if (!r) {
		fprintf(stderr, "peak h3 upload: %s\n",
		        err == PEAK_E_CONFIG ? "bad --server, or no name server in /etc/resolv.conf"
		                             : peak_strerror(err));
		return EXIT_NO;
	}
	if ((err = peak_resolve_types(r, name, &m))) {
		const char *dt = peak_last_detail(r);
		fprintf(stderr, "peak h3 upload: %s: content-type map: %s%s%s\n", name,
		        peak_strerror(err), *dt ? ": " : "", dt);
		goto out;
	}
	for (size_t i = 0; i < base->nfiles; i++) {
		const char *t = base->files[i].type;
		const struct typemap_entry *e = typemap_lookup(&m, t, strlen(t));
		unsigned k;
		if (!e) {
			fprintf(stderr, "peak h3 upload: %s: no entry of %s's map for type %s\n",
			        base->files[i].path, name, t);
			bad++;
			continue;
		}
		for (k = 0; k < ng && g[k].e != e; k++)
			;
		if (k == ng) {
			memset(&g[k], 0, sizeof(g[k]));
			g[k].e = e;
			snprintf(g[k].service, sizeof(g[k].service), "%s",
			         strcmp(e->name, "@") ? e->name : name);
			g[k].o = *base;
			g[k].o.nfiles = 0;
			ng++;
		}
		g[k].o.files[g[k].o.nfiles++] = base->files[i];
		/* the label: the types without parameters or white space, each once */
		char lab[64];
		size_t ll = 0, tl = strlen(g[k].types);
		for (const char *q = t; *q && *q != ';' && ll < sizeof(lab) - 1; q++)
			if (*q != ' ' && *q != '\t')
				lab[ll++] = *q;
		lab[ll] = 0;
		if (!strstr(g[k].types, lab) && tl + ll + 2 < sizeof(g[k].types))
			snprintf(g[k].types + tl, sizeof(g[k].types) - tl, "%s%s", tl ? "," : "",
			         lab);
	}
	for (unsigned k = 0; k < ng; k++) {
		struct peak_result res;
		char a[ADDR_STRLEN];
		err = peak_resolve(r, g[k].service, g[k].e->key[0] ? g[k].e->key : NULL, d->port,
		                   &res);
		if (err || !res.n) {
			const char *dt = peak_last_detail(r);
			fprintf(stderr, "peak h3 upload: %s (for %s): %s%s%s\n", g[k].service,
			        g[k].types, peak_strerror(err ? err : PEAK_E_NODATA),
			        *dt ? ": " : "", dt);
			bad += (unsigned)g[k].o.nfiles;
			continue;
		}
		g[k].cand = res.cand[0]; /* the rule's address (peak connect tries it first) */
		g[k].resolved = true;
		addr_print(PEAK_AFI_IP6, (const uint8_t *)&g[k].cand.dst.sin6_addr, a);
		snprintf(url[k], sizeof(url[k]), "https://[%s]:%u/", a, d->port);
		/* the certificate names the service (no trailing dot) */
		snprintf(sni[k], sizeof(sni[k]), "%s", g[k].service);
		size_t sl = strlen(sni[k]);
		if (sl > 1 && sni[k][sl - 1] == '.')
			sni[k][sl - 1] = 0;
		g[k].o.url = url[k];
		g[k].o.server_name = sni[k];
		static const struct in6_addr any = IN6ADDR_ANY_INIT;
		if (memcmp(&g[k].cand.src.sin6_addr, &any, sizeof(any)))
			g[k].o.source = &g[k].cand.src.sin6_addr;
	}
	for (unsigned k = 0, n = ng; k < n; k++)
		if (g[k].resolved)
			group_spread(g, k, &ng, DIRECT_MAX_GROUPS, d->connections);
	bad += groups_run(g, ng, d);
	printf("peak-direct: %u connections, %s\n", ng, bad ? "some failed" : "all ok");
	ret = bad ? EXIT_NO : 0;
out:
	peak_resolver_free(r);
	return ret;
}

static int cmd_h3_upload(int argc, char **argv, bool get)
{
	const char *cmd = get ? "h3 get" : "h3 upload";
	static const struct option opts[] = {
	    {"file", required_argument, 0, 'f'},
	    {"ca", required_argument, 0, 'c'},
	    {"insecure", no_argument, 0, 'k'},
	    {"timeout", required_argument, 0, 't'},
	    {"migrate-after", required_argument, 0, 'M'},
	    {"qlog", required_argument, 0, 'Q'},
	    {"session-file", required_argument, 0, 'T'},
	    {"early-data", no_argument, 0, 'E'},
	    {"peak", no_argument, 0, 'P'},
	    {"server", required_argument, 0, 's'},
	    {"source", required_argument, 0, 'S'},
	    {"port", required_argument, 0, 'p'},
	    {"secret-file", required_argument, 0, 'K'},
	    {"proto", required_argument, 0, 'o'},
	    {"connections", required_argument, 0, 'N'},
	    {"metrics", required_argument, 0, 'm'},
	    {"type", required_argument, 0, 'y'},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	static struct h3_upload_opts o;
	static struct direct_opts d;
	int c;
	memset(&d, 0, sizeof(d));
	d.port = 443;
	d.connections = 1;
	memset(&o, 0, sizeof(o));
	o.timeout_ms = 30000;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'f': {
			if (get)
				cli_usage_error(cmd, "takes no --file");
			if (o.nfiles == H3_UPLOAD_MAX_FILES)
				cli_usage_error(cmd, "at most %d files", H3_UPLOAD_MAX_FILES);
			/* FILE:TYPE splits at the last ':' followed by a type/subtype */
			char *colon = strrchr(optarg, ':');
			o.files[o.nfiles].path = optarg;
			if (colon && strchr(colon + 1, '/')) {
				struct h3_ctype_set one;
				*colon = 0;
				/* one concrete type; parameters are sent as given */
				if (!printable(colon + 1) ||
				            h3_ctype_set_parse(&one, colon + 1) == 0
				        ? strchr(colon + 1, '*') != NULL
				        : !h3_ctype_set_match(
				              &(struct h3_ctype_set){.pat = {"*/*"}, .n = 1},
				              colon + 1, strlen(colon + 1)))
					cli_usage_error(cmd, "--file: '%s' is not a media type",
					                colon + 1);
				o.files[o.nfiles].type = colon + 1;
			}
			if (!*o.files[o.nfiles].path)
				cli_usage_error(cmd, "--file: empty file name");
			o.nfiles++;
			break;
		}
		case 'y':
			if (!get)
				cli_usage_error(cmd, "takes no --type (see --file FILE:TYPE)");
			if (!printable(optarg) || !strchr(optarg, '/') || strchr(optarg, '*'))
				cli_usage_error(cmd, "--type: '%s' is not a media type", optarg);
			o.get_type = optarg;
			break;
		case 'c':
			o.ca = optarg;
			break;
		case 'k':
			o.insecure = true;
			break;
		case 't':
			o.timeout_ms = (unsigned)cli_u64(cmd, "--timeout", optarg, 1, 3600000);
			break;
		case 'M':
			if (get)
				cli_usage_error(cmd, "takes no --migrate-after");
			o.migrate_after =
			    (size_t)cli_u64(cmd, "--migrate-after", optarg, 1, SIZE_MAX);
			break;
		case 'Q':
			o.qlog_dir = optarg;
			break;
		case 'm':
			o.metrics_file = optarg;
			break;
		case 'T':
			o.session_file = optarg;
			break;
		case 'E':
			o.early_data = true;
			break;
		case 'P':
			if (get)
				cli_usage_error(cmd, "takes no --peak");
			d.on = true;
			break;
		case 's':
			if (d.ro.servers[PEAK_MAX_SERVERS - 1])
				cli_usage_error(cmd, "at most %d --server", PEAK_MAX_SERVERS);
			for (int i = 0; i < PEAK_MAX_SERVERS; i++)
				if (!d.ro.servers[i]) {
					d.ro.servers[i] = optarg;
					break;
				}
			break;
		case 'S':
			cli_addr6(cmd, "--source", optarg, d.source.s6_addr);
			d.ro.source = &d.source;
			break;
		case 'p':
			d.port = (uint16_t)cli_u64(cmd, "--port", optarg, 1, 65535);
			break;
		case 'K':
			d.secret_file = optarg;
			break;
		case 'o':
			if (strcmp(optarg, "h3") && strcmp(optarg, "h2"))
				cli_usage_error(cmd, "--proto: '%s': want h3 or h2", optarg);
			o.h2 = !strcmp(optarg, "h2");
			break;
		case 'N':
			if (get)
				cli_usage_error(cmd, "takes no --connections");
			d.connections =
			    (unsigned)cli_u64(cmd, "--connections", optarg, 1, UPLOAD_MAX_CONNS);
			break;
		case 'h':
			fputs(get ? get_help : upload_help, stdout);
			return 0;
		default:
			cli_usage_error(cmd, "unknown or incomplete option '%s' (see --help)",
			                argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		cli_usage_error(cmd, "want one URL (see --help)");
	if (!o.nfiles && !get)
		cli_usage_error(cmd, "at least one --file is required");
	o.get = get;
	if (o.early_data && !o.session_file)
		cli_usage_error(cmd, "--early-data needs --session-file");
	if (o.ca && o.insecure)
		cli_usage_error(cmd, "--ca and --insecure exclude each other");
	o.url = argv[optind];
	if (o.h2 && (d.on || o.migrate_after))
		cli_usage_error(cmd, "--proto h2 takes no --peak or --migrate-after");
	if (d.connections > 1 && o.session_file)
		cli_usage_error(cmd, "--connections takes no --session-file");
	if (!d.on && (d.ro.servers[0] || d.ro.source || d.secret_file || d.port != 443))
		cli_usage_error(cmd, "--server, --source, --port and --secret-file go with --peak");
	if (d.on) {
		for (size_t i = 0; i < o.nfiles; i++)
			if (!o.files[i].type)
				cli_usage_error(cmd, "--peak: every --file needs its :TYPE");
		if (o.migrate_after)
			cli_usage_error(cmd, "--peak takes no --migrate-after");
		d.ro.secret = cli_secret_option(cmd, d.secret_file, d.secret);
		return direct_run(&o, &d);
	}
	if (d.connections > 1)
		return split_run(&o, d.connections);
	int r = h3_upload_run(&o);
	return r < 0 ? EXIT_USAGE : r ? EXIT_NO : 0;
}

int cmd_h3(int argc, char **argv)
{
	if (argc < 2) {
		fputs(h3_help, stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(h3_help, stdout);
		return 0;
	}
	if (!strcmp(argv[1], "backend"))
		return cmd_h3_backend(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ingress"))
		return cmd_h3_ingress(argc - 1, argv + 1);
	if (!strcmp(argv[1], "upload"))
		return cmd_h3_upload(argc - 1, argv + 1, false);
	if (!strcmp(argv[1], "get"))
		return cmd_h3_upload(argc - 1, argv + 1, true);
	cli_usage_error("h3", "unknown command '%s' (see --help)", argv[1]);
}
