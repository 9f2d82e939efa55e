/* Fuzzes what etcd's watch stream hands the controller's standby and peak dns (untrusted:
 * anyone with write access to the prefix, or who answers in etcd's place): the gateway's
 * streamed JSON, cut into chunks of sizes the input chooses (its first byte) as the
 * transfer delivers them, split into lines and events (etcd_watch_split, as etcd_watch
 * calls it on what it buffered), each event's kv decoded and checked as a service record
 * (etcd_rec_decode). Invariants checked: only whole lines are consumed, nothing is passed
 * after a line that ends the watch, and a record's name lies inside its key. */
#include <stdlib.h>
#include <string.h>

#include "../../src/etcd/etcd.h"
#include "../../src/sys/log.h"
#include "fuzz.h"

static const char PRE[] = "/peak/svc/";

struct st {
	bool ended;
	unsigned events;
};

static void on_event(void *arg, json_t *kv, bool deleted)
{
	struct st *s = arg;
	struct etcd_rec r;
	if (s->ended || !json_is_object(kv))
		__builtin_trap();
	s->events++;
	int err = etcd_rec_decode("fuzz", kv, PRE, 1 << 16, deleted, &r);
	if (r.name && (r.name != r.key + strlen(PRE) || strncmp(r.key, PRE, strlen(PRE))))
		__builtin_trap();
	if (r.key && strlen(r.key) != r.klen)
		__builtin_trap();
	if (!err && !deleted && (!r.val || !r.name || strlen(r.val) > r.vlen))
		__builtin_trap();
	if (err && r.val)
		__builtin_trap();
	etcd_rec_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st s = {0};
	char *buf = malloc(size + 1);
	size_t len = 0;
	log_set_level(LOG_CRIT);
	if (!size || !buf) {
		free(buf);
		return 0;
	}
	size_t step = 1 + data[0] % 97;
	for (size_t at = 1; at < size && !s.ended; at += step) {
		size_t n = size - at < step ? size - at : step, used = 0;
		memcpy(buf + len, data + at, n);
		len += n;
		int k = etcd_watch_split("fuzz", buf, len, 7, on_event, &s, &used);
		if (used > len || (used && buf[used - 1] != '\n') ||
		    (k == ETCD_WATCH_EVENTS && !s.events))
			__builtin_trap();
		if (k != ETCD_WATCH_RESYNC && memchr(buf + used, '\n', len - used))
			__builtin_trap(); /* a whole line left unread */
		s.ended = k == ETCD_WATCH_RESYNC;
		memmove(buf, buf + used, len - used);
		len -= used;
	}
	free(buf);
	return 0;
}
