#pragma once
/* A byte queue between two streams of the ingress: bytes written by one side are handed
 * out as vectors to nghttp3 on the other, which keeps pointing into them until the peer
 * acknowledges them, so they are dropped only when acknowledged. Held in fixed-size chunks
 * allocated as bytes arrive and freed as they are acknowledged: memory follows what is in
 * flight (bounded by the flow-control window the writer's peer is granted), never the
 * body's size. */
#include <stddef.h>
#include <stdint.h>

#include <nghttp3/nghttp3.h>

enum { H3_PIPE_CHUNK = 16 * 1024 };

struct h3_pipe_chunk {
	struct h3_pipe_chunk *next;
	size_t len;
	uint8_t d[H3_PIPE_CHUNK];
};

struct h3_pipe {
	struct h3_pipe_chunk *head, *tail;
	uint64_t base;    /* absolute offset of head->d[0] */
	uint64_t acked;   /* bytes acknowledged (and dropped) */
	uint64_t sent;    /* bytes handed out */
	uint64_t written; /* bytes written */
};

/* Appends data[n]. Returns 0 or -ENOMEM (nothing appended). */
int h3_pipe_write(struct h3_pipe *p, const uint8_t *data, size_t n);

/* Hands out up to max unsent bytes as at most nv vectors (pointing into the pipe until
 * h3_pipe_ack drops them) and counts them as sent. Returns the number of vectors. */
size_t h3_pipe_peek(struct h3_pipe *p, nghttp3_vec *v, size_t nv, size_t max);

/* Drops the n oldest sent bytes (n <= sent - acked), freeing emptied chunks. */
void h3_pipe_ack(struct h3_pipe *p, uint64_t n);

/* Bytes written and not yet handed out / not yet acknowledged. */
static inline uint64_t h3_pipe_unsent(const struct h3_pipe *p)
{
	return p->written - p->sent;
}

static inline uint64_t h3_pipe_held(const struct h3_pipe *p)
{
	return p->written - p->acked;
}

/* Frees every chunk; the pipe is empty (all counters equal) afterwards. */
void h3_pipe_free(struct h3_pipe *p);
