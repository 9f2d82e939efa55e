#pragma once
/* Small helpers shared by libpeak modules and the peak command. */
#include <stddef.h>
#include <stdint.h>

/* Formats a one-line reason into err (if err is not NULL and errlen > 0) and returns
 * -EINVAL, so parsers can write 'return peak_errf(err, errlen, "...", ...);'. */
int peak_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* CLOCK_MONOTONIC in milliseconds and in nanoseconds: every deadline and duration. */
uint64_t peak_mono_ms(void);
uint64_t peak_mono_ns(void);

/* Value of a hex digit (either case), or -1. */
int peak_hexval(char c);

/* Decodes hex digits into out, skipping white space and any character of skip (may be
 * NULL). Returns the byte count, or -EINVAL (a non-hex character: *bad set to it; or an
 * odd number of digits: *bad set to 0) or -E2BIG (more than cap bytes). */
long peak_hex_decode(const char *s, const char *skip, uint8_t *out, size_t cap, char *bad);

/* Reads a 16-byte secret written as 32 hex digits (white space around it ignored) from a
 * file. Returns 0, -errno if the file cannot be read, or -EINVAL. Never logs the secret. */
int peak_secret_read(const char *path, uint8_t out[static 16]);

/* Reads a whole file into a fresh buffer (NUL-terminated; *len excludes the NUL), sized from
 * the file rather than from max. Returns 0, -errno, or -EFBIG when it holds more than max
 * bytes. The caller frees *out. */
int peak_read_file(const char *path, size_t max, uint8_t **out, size_t *len);

/* Parses a figure written as 1 to 19 decimal digits (at most 2^63 - 1), optionally followed
 * by one newline, and nothing else, from n bytes. Returns 0 and *v, or -EINVAL. */
int peak_figure_parse(const uint8_t *p, size_t n, uint64_t *v);
