#include "peak/util.h"

#include "peak/ssa.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

uint64_t peak_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t peak_mono_ms(void)
{
	return peak_mono_ns() / 1000000;
}

int peak_errf(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

int peak_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

long peak_hex_decode(const char *s, const char *skip, uint8_t *out, size_t cap, char *bad)
{
	size_t n = 0;
	int hi = -1;
	for (; *s; s++) {
		if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' ||
		    (skip && strchr(skip, *s)))
			continue;
		int v = peak_hexval(*s);
		if (v < 0) {
			*bad = *s;
			return -EINVAL;
		}
		if (hi < 0) {
			hi = v;
			continue;
		}
		if (n == cap)
			return -E2BIG;
		out[n++] = (uint8_t)(hi << 4 | v);
		hi = -1;
	}
	if (hi >= 0) {
		*bad = 0;
		return -EINVAL;
	}
	return (long)n;
}

int peak_secret_read(const char *path, uint8_t out[static 16])
{
	char buf[128];
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *b = buf, *e = buf + n;
	while (b < e && (*b == ' ' || *b == '\n' || *b == '\t' || *b == '\r'))
		b++;
	while (e > b && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\t' || e[-1] == '\r'))
		e--;
	int r = ssa_key_parse(b, (size_t)(e - b), out);
	memset(buf, 0, sizeof(buf));
	return r;
}

int peak_read_file(const char *path, size_t max, uint8_t **out, size_t *len)
{
	int ret = 0;
	size_t n = 0, cap = max < 4096 ? max : 4096;
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode)) {
		if ((uint64_t)st.st_size > max) {
			fclose(f);
			return -EFBIG;
		}
		cap = (size_t)st.st_size;
	}
	uint8_t *buf = malloc(cap + 1);
	while (buf) {
		n += fread(buf + n, 1, cap - n, f);
		if (n < cap)
			break; /* end of file or an error */
		int c = fgetc(f);
		if (c == EOF)
			break;
		if (n == max) {
			ret = -EFBIG;
			break;
		}
		/* The file is longer than it said (or not a regular file): grow up to max. */
		size_t want = cap < 4096 ? 4096 : cap * 2;
		if (want > max || want < cap)
			want = max;
		uint8_t *nb = realloc(buf, want + 1);
		if (!nb) {
			free(buf);
			buf = NULL;
			break;
		}
		buf = nb;
		cap = want;
		buf[n++] = (uint8_t)c;
	}
	if (!buf && !ret)
		ret = -ENOMEM;
	else if (!ret && ferror(f))
		ret = -EIO;
	fclose(f);
	if (ret) {
		free(buf);
		return ret;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

int peak_figure_parse(const uint8_t *p, size_t n, uint64_t *v)
{
	if (n && p[n - 1] == '\n')
		n--;
	if (!n || n > 19)
		return -EINVAL;
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -EINVAL;
		x = x * 10 + (uint64_t)(p[i] - '0'); /* (19 digits fit in 64 bits) */
	}
	if (x > INT64_MAX)
		return -EINVAL;
	*v = x;
	return 0;
}
