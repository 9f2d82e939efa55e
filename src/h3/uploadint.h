#pragma once
/* What the HTTP/3 and HTTP/2 upload clients share (upload.c, h2upload.c): the files, their
 * answers, and the report printed from them. Internal to src/h3. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>
#include <nettle/sha2.h>
#include <pthread.h>

#include "udp.h"
#include "upload.h"

enum {
	UP_RESP_MAX = 2048,
	UP_HOST_MAX = 256,
	UP_PATH_MAX = 1024,
	UP_TURN_BYTES = 32 * 1024, /* body bytes a stream sends per turn of the round robin */
	UP_EARLY_BYTES = 8 * 1024, /* body bytes sent as 0-RTT, all streams together */
	UP_RECV_BATCH = 64,        /* datagrams read per wake-up before the timers and a write */
	UP_RECV_MMSG = 8,          /* messages per receive call (recvmmsg) */
};

struct ufile {
	const char *path, *type;
	int fd;
	uint8_t *map;
	size_t size;
	char hex[2 * SHA256_DIGEST_SIZE + 1];
	int64_t sid;
	int status;
	size_t sent;    /* body bytes handed to nghttp3 or nghttp2 */
	bool turn_used; /* this round's bytes are handed over */
	bool paused;    /* read_data said WOULDBLOCK: resume at the next round */
	bool started, ended, closed;
	bool refused;     /* HTTP/2: REFUSED_STREAM, never processed: to be sent again */
	unsigned retries; /* times sent again */
	uint64_t close_code;
	char backend[80]; /* x-peak-backend, when the answer is not our JSON */
	char resp[UP_RESP_MAX + 1];
	size_t resp_len;
	uint64_t down; /* answer body bytes received (resp keeps the first UP_RESP_MAX) */
	uint64_t lost; /* HTTP/3: packets with this stream's STREAM frames declared lost */
	bool mismatch; /* h3_upload_report: a 201 whose checksum or size was wrong */
	uint64_t t0, t1;
};

struct upload {
	struct ufile f[H3_UPLOAD_MAX_FILES];
	size_t n, next, nclosed;
	bool get;
	bool resubmit;     /* 0-RTT refused: submit again once the handshake is done */
	size_t early_sent; /* body bytes handed over in 0-RTT */
	char authority[UP_HOST_MAX + 8];
	char path[UP_PATH_MAX];
	pthread_t hasher; /* hashing the bodies (f->hex) beside the connection */
	bool hashing;     /* hasher runs or is not joined yet */
};

/* What one connection of the client did, beside its streams (for --metrics). */
struct up_conninfo {
	const char *proto; /* "h3" or "h2" */
	bool handshaked, resumed;
	uint64_t hs_ns;     /* handshake time when handshaked */
	int early;          /* H3_EARLY_* of conn.h (HTTP/3) */
	uint64_t retries;   /* Retry packets received */
	uint64_t token;     /* 1: the Initial carried a stored NEW_TOKEN token */
	uint64_t pto;       /* probe timeouts (ngtcp2's pto_count, at the end) */
	uint64_t rx_calls;  /* receive system calls that returned data */
	uint64_t rx_msgs;   /* messages they returned (recvmmsg: several per call) */
	uint64_t rx_dgrams; /* datagrams they returned (UDP GRO: several per call) */
	uint64_t rx_bytes;  /* UDP payload bytes received */
};

/* Writes the client's Prometheus text (node-exporter textfile collector format) to path
 * atomically (path.tmp, then renamed over path). Returns 0 or -errno. */
int h3_upload_metrics_write(const char *path, const struct upload *u, const struct up_conninfo *ci);

/* Starts hashing every body (f->hex) on a thread of its own, so the hashing of a large upload
 * (8 ms per 16 MiB with SHA-NI) runs beside the connection instead of delaying its first
 * bodies; hashes inline if no thread can be started. The files must stay mapped until
 * h3_upload_hash_wait. */
void h3_upload_hash_start(struct upload *u);

/* Waits for h3_upload_hash_start's thread (no-op if none runs): f->hex is then set. */
void h3_upload_hash_wait(struct upload *u);

/* Takes an answer header field (untrusted): the final :status, x-peak-backend. */
void h3_upload_field(struct ufile *f, const uint8_t *n, size_t nl, const uint8_t *v, size_t vl);

/* Keeps the first UP_RESP_MAX bytes of the answer body (the JSON). */
void h3_upload_body(struct ufile *f, const uint8_t *d, size_t n);

/* Prints one line per file (stream, file, type, status, backend, checksum check, bytes,
 * sha256, time; a GET: status, backend, body) on stdout, once the hashing is over; returns
 * how many failed. */
size_t h3_upload_report(struct upload *u);

/* Runs u's requests (files open, authority and path set) over one HTTP/2 connection on TLS/TCP
 * to remote, the certificate checked against host unless o->insecure, prints the report and
 * the summary. Returns 0 if every stream succeeded, 1 otherwise. */
int h2_upload_run(const struct h3_upload_opts *o, struct upload *u, const struct h3_addr *remote,
                  gnutls_certificate_credentials_t cred, const char *host);
