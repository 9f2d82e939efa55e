/* qlog files. */
#include "qlog.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>

#include "../sys/log.h"
#include "conn.h"

enum { QLOG_BUF = 64 * 1024 };

static const char *qlog_dir;
static struct log_limit qlog_rl;

void h3_qlog_set_dir(const char *dir)
{
	qlog_dir = dir;
}

int h3_qlog_enabled(void)
{
	return qlog_dir != NULL;
}

FILE *h3_qlog_open(const ngtcp2_cid *odcid, const char *role)
{
	char path[4096], hex[2 * NGTCP2_MAX_CIDLEN + 1];
	for (size_t i = 0; i < odcid->datalen && i < NGTCP2_MAX_CIDLEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", odcid->data[i]);
	hex[2 * (odcid->datalen < NGTCP2_MAX_CIDLEN ? odcid->datalen : NGTCP2_MAX_CIDLEN)] = 0;
	if (snprintf(path, sizeof(path), "%s/%s-%s.sqlog", qlog_dir, hex, role) >=
	    (int)sizeof(path))
		return NULL;
	FILE *f = fopen(path, "we");
	if (!f) {
		log_rl(&qlog_rl, LOG_WARNING, "h3: qlog %s: %s", path, strerror(errno));
		return NULL;
	}
	setvbuf(f, NULL, _IOFBF, QLOG_BUF);
	return f;
}

void h3_qlog_write(void *user_data, uint32_t flags, const void *data, size_t n)
{
	struct h3_conn *c = user_data;
	if (c->qlog && n)
		fwrite(data, 1, n, c->qlog);
	if (c->qlog && (flags & NGTCP2_QLOG_WRITE_FLAG_FIN))
		fflush(c->qlog);
}

void h3_qlog_vevent(FILE *f, uint64_t t_start, const char *name, const char *fmt, va_list ap)
{
	if (!f)
		return;
	/* RS starts a JSON-SEQ record (RFC 7464) */
	fprintf(f, "\x1e{\"time\":%.6f,\"name\":\"%s\",\"data\":{",
	        (double)(h3_now() - t_start) / 1e6, name);
	vfprintf(f, fmt, ap);
	fputs("}}\n", f);
}

void h3_qlog_event(struct h3_conn *c, const char *name, const char *fmt, ...)
{
	va_list ap;
	if (!c->qlog)
		return;
	va_start(ap, fmt);
	h3_qlog_vevent(c->qlog, c->t_start, name, fmt, ap);
	va_end(ap);
}

FILE *h3_qlog_open_tcp(const char *role)
{
	char path[4096], hex[2 * 8 + 1];
	uint8_t id[8];
	if (gnutls_rnd(GNUTLS_RND_NONCE, id, sizeof(id)))
		return NULL;
	for (size_t i = 0; i < sizeof(id); i++)
		snprintf(hex + 2 * i, 3, "%02x", id[i]);
	if (snprintf(path, sizeof(path), "%s/%s-h2-%s.sqlog", qlog_dir, hex, role) >=
	    (int)sizeof(path))
		return NULL;
	FILE *f = fopen(path, "we");
	if (!f) {
		log_rl(&qlog_rl, LOG_WARNING, "h3: qlog %s: %s", path, strerror(errno));
		return NULL;
	}
	setvbuf(f, NULL, _IOFBF, QLOG_BUF);
	/* the header record ngtcp2 writes for QUIC, for this protocol stack */
	fprintf(f,
	        "\x1e{\"qlog_format\":\"JSON-SEQ\",\"qlog_version\":\"0.3\","
	        "\"trace\":{\"vantage_point\":{\"name\":\"peak\",\"type\":\"%s\"},"
	        "\"common_fields\":{\"protocol_type\":[\"TCP\",\"TLS\",\"HTTP2\"],"
	        "\"time_format\":\"relative\",\"reference_time\":0,\"group_id\":\"%s\"}}}\n",
	        role, hex);
	return f;
}

const char *h3_qlog_str(char *out, size_t cap, const char *v, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v[i];
		char esc[8];
		if (ch == '"' || ch == '\\')
			snprintf(esc, sizeof(esc), "\\%c", ch);
		else if (ch < 0x20 || ch > 0x7e)
			snprintf(esc, sizeof(esc), "\\u%04x", ch);
		else
			snprintf(esc, sizeof(esc), "%c", ch);
		size_t el = strlen(esc);
		if (k + el >= cap)
			break;
		memcpy(out + k, esc, el);
		k += el;
	}
	out[k] = 0;
	return out;
}
