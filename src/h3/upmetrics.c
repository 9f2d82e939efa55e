/* peak h3 upload --metrics FILE: the client's Prometheus text, written once at exit for the
 * node exporter's textfile collector (which reads *.prom files whole: hence the rename). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../sys/metrics.h"
#include "endpoint.h"
#include "uploadint.h"

/* The status label of f: the final status, else what became of the stream. */
static void status_label(const struct ufile *f, char *out, size_t cap)
{
	if (f->ended && f->status)
		snprintf(out, cap, "%d", f->status);
	else
		snprintf(out, cap, "%s",
		         f->closed    ? "reset"
		         : f->started ? "unfinished"
		                      : "unsent");
}

static void counter(struct mbuf *b, const char *name, const char *help, uint64_t v)
{
	mbuf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
	            (unsigned long long)v);
}

/* streams by content type and status: one series per distinct pair, in first-seen order */
static void render_streams(struct mbuf *b, const struct upload *u)
{
	mbuf_printf(b, "# HELP peak_h3_client_streams_total Request streams by content type "
	               "and answer status (reset, unfinished, unsent: no answer).\n"
	               "# TYPE peak_h3_client_streams_total counter\n");
	for (size_t i = 0; i < u->n; i++) {
		char st[16], sj[16];
		const char *t = u->f[i].type ? u->f[i].type : "";
		status_label(&u->f[i], st, sizeof(st));
		size_t j = 0, n = 0;
		for (; j < i; j++) {
			const char *tj = u->f[j].type ? u->f[j].type : "";
			status_label(&u->f[j], sj, sizeof(sj));
			if (!strcmp(t, tj) && !strcmp(st, sj))
				break;
		}
		if (j < i)
			continue; /* counted with its first */
		for (j = i; j < u->n; j++) {
			const char *tj = u->f[j].type ? u->f[j].type : "";
			status_label(&u->f[j], sj, sizeof(sj));
			n += !strcmp(t, tj) && !strcmp(st, sj);
		}
		mbuf_printf(b, "peak_h3_client_streams_total{type=");
		mbuf_label(b, t);
		mbuf_printf(b, ",status=\"%s\"} %zu\n", st, n);
	}
}

/* Writes b to path through path.tmp and a rename: a reader never sees half of it. */
static int write_atomic(const char *path, const struct mbuf *b)
{
	char tmp[4200];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		return -ENAMETOOLONG;
	}
	int ret = 0, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1) {
		ret = -errno;
	} else {
		size_t off = 0;
		while (off < b->len) {
			ssize_t w = write(fd, b->p + off, b->len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				ret = w < 0 ? -errno : -EIO;
				break;
			}
			off += (size_t)w;
		}
		if (close(fd) == -1 && !ret)
			ret = -errno;
		if (!ret && rename(tmp, path) == -1)
			ret = -errno;
		if (ret)
			unlink(tmp);
	}
	return ret;
}

int h3_upload_metrics_write(const char *path, const struct upload *u, const struct up_conninfo *ci)
{
	struct mbuf b = {0};
	uint64_t up = 0, down = 0, bad = 0, lost = 0;
	for (size_t i = 0; i < u->n; i++) {
		up += u->f[i].sent;
		down += u->f[i].down;
		bad += u->f[i].mismatch;
		lost += u->f[i].lost;
	}
	mbuf_printf(&b,
	            "# HELP peak_h3_client_connections_total Connections opened, by protocol.\n"
	            "# TYPE peak_h3_client_connections_total counter\n"
	            "peak_h3_client_connections_total{proto=\"%s\"} 1\n",
	            ci->proto);
	render_streams(&b, u);
	counter(&b, "peak_h3_client_body_bytes_sent_total", "Request body bytes sent.", up);
	counter(&b, "peak_h3_client_body_bytes_received_total", "Answer body bytes received.",
	        down);
	counter(&b, "peak_h3_client_checksum_mismatches_total",
	        "Answers 201 whose checksum or byte count differed from the file's.", bad);
	counter(&b, "peak_h3_client_handshake_failures_total",
	        "Connections whose handshake did not complete.", !ci->handshaked);
	/* the handshake histogram, resumed (a session ticket) or not */
	struct h3_endpoint_stats hs[2];
	memset(hs, 0, sizeof(hs));
	if (ci->handshaked)
		h3_stats_handshake(&hs[ci->resumed], ci->hs_ns);
	mbuf_printf(&b, "# HELP peak_h3_client_handshake_seconds Handshake time, first "
	                "packet to handshake completion.\n"
	                "# TYPE peak_h3_client_handshake_seconds histogram\n");
	h3_hs_render(&b, "peak_h3_client_handshake_seconds", &hs[0], "resumed=\"false\"");
	h3_hs_render(&b, "peak_h3_client_handshake_seconds", &hs[1], "resumed=\"true\"");
	mbuf_printf(&b,
	            "# HELP peak_h3_client_early_data_total 0-RTT attempts by outcome.\n"
	            "# TYPE peak_h3_client_early_data_total counter\n"
	            "peak_h3_client_early_data_total{result=\"accepted\"} %d\n"
	            "peak_h3_client_early_data_total{result=\"rejected\"} %d\n",
	            ci->early == H3_EARLY_ACCEPTED, ci->early == H3_EARLY_REJECTED);
	counter(&b, "peak_h3_client_retries_total",
	        "Retry packets received (the server asked for address validation).", ci->retries);
	counter(&b, "peak_h3_client_new_tokens_used_total",
	        "Connections whose Initial carried a stored NEW_TOKEN token.", ci->token);
	counter(&b, "peak_h3_client_stream_packets_lost_total",
	        "Packets carrying request stream data declared lost (ngtcp2 0.12 counts no "
	        "other losses).",
	        lost);
	counter(&b, "peak_h3_client_pto_total", "Probe timeouts (RFC 9002 §6.2).", ci->pto);
	counter(&b, "peak_h3_client_udp_receive_calls_total",
	        "Receive system calls that returned datagrams.", ci->rx_calls);
	counter(&b, "peak_h3_client_udp_messages_received_total",
	        "Messages those calls returned (recvmmsg: several per call).", ci->rx_msgs);
	counter(&b, "peak_h3_client_udp_datagrams_received_total",
	        "Datagrams received (with UDP GRO, several per message).", ci->rx_dgrams);
	counter(&b, "peak_h3_client_udp_bytes_received_total", "UDP payload bytes received.",
	        ci->rx_bytes);
	if (!b.p) {
		free(b.p);
		return -ENOMEM;
	}
	int ret = write_atomic(path, &b);
	free(b.p);
	return ret;
}

/* One family of a part's text: its header lines and its samples (pointers into the part). */
struct fam {
	const char *name; /* after "# HELP " */
	size_t namelen;
	const char *head, *samples, *end; /* head..samples: HELP, TYPE; samples..end: lines */
};

/* Splits text into its families (each begins at a "# HELP" line); returns how many, at
 * most cap. */
static size_t families(const char *text, size_t len, struct fam *f, size_t cap)
{
	size_t n = 0;
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *next = nl ? nl + 1 : end;
		if (!strncmp(p, "# HELP ", 7) && n < cap) {
			if (n)
				f[n - 1].end = p;
			f[n].name = p + 7;
			f[n].namelen = strcspn(p + 7, " \n");
			f[n].head = p;
			f[n].samples = NULL;
			f[n].end = end;
			n++;
		} else if (n && !f[n - 1].samples && p[0] != '#') {
			f[n - 1].samples = p;
		}
		p = next;
	}
	for (size_t i = 0; i < n; i++)
		if (!f[i].samples)
			f[i].samples = f[i].end;
	return n;
}

/* Appends the sample lines from..to with the label connection="k" added to each. */
static void relabel(struct mbuf *b, const char *from, const char *to, size_t k)
{
	while (from < to) {
		const char *nl = memchr(from, '\n', (size_t)(to - from));
		const char *eol = nl ? nl : to;
		size_t name = strcspn(from, "{ \n");
		if (from + name < eol && from[name] == '{')
			mbuf_printf(b, "%.*s{connection=\"%zu\",%.*s\n", (int)name, from, k,
			            (int)(eol - from - name - 1), from + name + 1);
		else if (name)
			mbuf_printf(b, "%.*s{connection=\"%zu\"}%.*s\n", (int)name, from, k,
			            (int)(eol - from - name), from + name);
		from = nl ? nl + 1 : to;
	}
}

/* Reads the whole file at path into a malloc'd, NUL-terminated buffer; NULL if it cannot. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "re");
	struct mbuf b = {0};
	char chunk[4096];
	size_t n;
	if (!f)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		mbuf_printf(&b, "%.*s", (int)n, chunk);
	fclose(f);
	*len = b.len;
	return b.p;
}

int h3_upload_metrics_merge(const char *path, const char *const *parts, size_t nparts)
{
	enum { MAX_FAM = 64 };
	struct mbuf b = {0};
	char **text = calloc(nparts ? nparts : 1, sizeof(*text));
	size_t *len = calloc(nparts ? nparts : 1, sizeof(*len));
	size_t *nf = calloc(nparts ? nparts : 1, sizeof(*nf));
	struct fam(*f)[MAX_FAM] = calloc(nparts ? nparts : 1, sizeof(*f));
	int ret = -ENOMEM;
	if (!text || !len || !nf || !f)
		goto out;
	for (size_t k = 0; k < nparts; k++)
		if (parts[k] && (text[k] = slurp(parts[k], &len[k])))
			nf[k] = families(text[k], len[k], f[k], MAX_FAM);
	/* every part writes the same families: each family's header once, then its samples
	 * from every part, labelled with the part's index */
	for (size_t k = 0; k < nparts; k++)
		for (size_t i = 0; i < nf[k]; i++) {
			struct fam *x = &f[k][i];
			if (!x->name)
				continue; /* taken with an earlier part's */
			mbuf_printf(&b, "%.*s", (int)(x->samples - x->head), x->head);
			for (size_t j = k; j < nparts; j++)
				for (size_t m = 0; m < nf[j]; m++) {
					struct fam *y = &f[j][m];
					if (y->name && y->namelen == x->namelen &&
					    !memcmp(y->name, x->name, x->namelen)) {
						relabel(&b, y->samples, y->end, j);
						if (y != x)
							y->name = NULL;
						break;
					}
				}
			x->name = NULL;
		}
	ret = b.p ? write_atomic(path, &b) : -ENOENT; /* no part was written */
out:
	for (size_t k = 0; text && k < nparts; k++)
		free(text[k]);
	free(text);
	free(len);
	free(nf);
	free(f);
	free(b.p);
	return ret;
}
