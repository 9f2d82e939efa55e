#pragma once
/*
 * A log-bucketed latency histogram (the HdrHistogram idea, fixed size, no allocation):
 * values below 128 are exact, larger ones fall in buckets 1/64 of a power of two wide, so a
 * reported percentile is within 1/128 of the true value (it is the bucket's midpoint,
 * clamped to the observed min and max). Values are unsigned 64-bit (PEAK records ns).
 */
#include <stdint.h>

enum {
	HIST_SUB_BITS = 6,                         /* 64 sub-buckets per power of two */
	HIST_EXACT = 2 << HIST_SUB_BITS,           /* values below are their own bucket */
	HIST_BUCKETS = HIST_EXACT + (64 - 7) * 64, /* up to 2^64 - 1 */
};

struct hist {
	uint64_t count, min, max;
	double sum;
	uint64_t bucket[HIST_BUCKETS];
};

/* Empties a histogram. */
void hist_init(struct hist *h);

/* Records one value. */
void hist_add(struct hist *h, uint64_t v);

/* Adds every value of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);

/* The nearest-rank percentile p (0 < p <= 100): the value at rank ceil(p/100 * count)
 * (the maximum itself at the top rank, else its bucket's midpoint clamped to [min, max]).
 * 0 for an empty histogram. */
uint64_t hist_percentile(const struct hist *h, double p);

/* The mean of the recorded values (exact), 0 if empty. */
double hist_mean(const struct hist *h);

/* The bucket a value falls in, and the lowest value of a bucket (exposed for tests). */
unsigned hist_bucket(uint64_t v);
uint64_t hist_bucket_low(unsigned b);
