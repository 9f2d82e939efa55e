/* The ingress's byte queues. */
#include "pipe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int h3_pipe_write(struct h3_pipe *p, const uint8_t *data, size_t n)
{
	/* allocate first, so that a failure appends nothing */
	size_t room = p->tail ? H3_PIPE_CHUNK - p->tail->len : 0;
	size_t need = n > room ? (n - room + H3_PIPE_CHUNK - 1) / H3_PIPE_CHUNK : 0;
	struct h3_pipe_chunk *fresh = NULL, **end = &fresh;
	for (size_t i = 0; i < need; i++) {
		struct h3_pipe_chunk *ch = malloc(sizeof(*ch));
		if (!ch) {
			while (fresh) {
				struct h3_pipe_chunk *nx = fresh->next;
				free(fresh);
				fresh = nx;
			}
			return -ENOMEM;
		}
		ch->next = NULL;
		ch->len = 0;
		*end = ch;
		end = &ch->next;
	}
	if (fresh) {
		if (p->tail)
			p->tail->next = fresh;
		else
			p->head = fresh;
	}
	struct h3_pipe_chunk *ch = p->tail ? p->tail : fresh;
	size_t off = 0;
	while (off < n) {
		if (ch->len == H3_PIPE_CHUNK)
			ch = ch->next;
		size_t k = H3_PIPE_CHUNK - ch->len < n - off ? H3_PIPE_CHUNK - ch->len : n - off;
		memcpy(ch->d + ch->len, data + off, k);
		ch->len += k;
		off += k;
	}
	if (ch)
		p->tail = ch;
	p->written += n;
	return 0;
}

size_t h3_pipe_peek(struct h3_pipe *p, nghttp3_vec *v, size_t nv, size_t max)
{
	size_t k = 0;
	uint64_t at = p->base;
	for (struct h3_pipe_chunk *ch = p->head; ch && k < nv && max; ch = ch->next) {
		uint64_t end = at + ch->len;
		if (p->sent < end) {
			size_t off = (size_t)(p->sent - at), len = (size_t)(end - p->sent);
			if (len > max)
				len = max;
			v[k].base = ch->d + off;
			v[k].len = len;
			k++;
			p->sent += len;
			max -= len;
		}
		at = end;
	}
	return k;
}

void h3_pipe_ack(struct h3_pipe *p, uint64_t n)
{
	if (n > p->sent - p->acked)
		n = p->sent - p->acked;
	p->acked += n;
	/* a chunk goes once every byte it can hold is acknowledged */
	while (p->head && p->head->len == H3_PIPE_CHUNK && p->acked >= p->base + H3_PIPE_CHUNK) {
		struct h3_pipe_chunk *ch = p->head;
		p->head = ch->next;
		p->base += H3_PIPE_CHUNK;
		if (p->tail == ch)
			p->tail = NULL;
		free(ch);
	}
}

void h3_pipe_free(struct h3_pipe *p)
{
	while (p->head) {
		struct h3_pipe_chunk *ch = p->head;
		p->head = ch->next;
		free(ch);
	}
	p->tail = NULL;
	p->base = p->acked = p->sent = p->written;
}
