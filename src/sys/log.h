#pragma once
/* Daemon logging: one line per message on stderr, "TIME LEVEL source: text". Nothing a
 * remote packet can cause is logged per packet: such events are counted in metrics. */
#include <stdint.h>
#include <syslog.h>

/* Minimum level printed (LOG_DEBUG shows all); default LOG_INFO. */
void log_set_level(int level);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Rate-limited logging for what a peer can cause (a refused line, a dropped packet): at most
 * one message per second per limiter (zeroed to start), thread-safe; the next message that
 * goes out says how many were suppressed. */
struct log_limit {
	uint64_t last_s;
	uint64_t suppressed;
};
void log_rl(struct log_limit *rl, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Blocks SIGINT and SIGTERM (and SIGHUP if hup) in the calling thread and the threads it
 * starts later, ignores SIGPIPE, and returns a signalfd that reads them, or -errno. */
int signals_fd(int hup);
