#pragma once
/* Daemon logging: one line per message on stderr, "TIME LEVEL source: text". Messages a
 * remote packet can cause go through a rate limiter. */
#include <stdint.h>
#include <syslog.h>

/* Minimum level printed (LOG_DEBUG shows all); default LOG_INFO. */
void log_set_level(int level);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* At most one message per second per limiter; the next one says how many were dropped. */
struct log_limit {
	uint64_t last_s;
	uint64_t suppressed;
};
void log_rl(struct log_limit *rl, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Blocks SIGINT and SIGTERM (and SIGHUP if hup) in the calling thread and the threads it
 * starts later, ignores SIGPIPE, and returns a signalfd that reads them, or -errno. */
int signals_fd(int hup);
