/* hist: a log-linear latency histogram (values in microseconds).
 *
 * Values from 1 us to 100 s are kept with a relative error below 0.4 %
 * (256 linear buckets below 256 us, then 128 sub-buckets per power of two).
 * Values outside the range are clamped to it. Histograms of the same layout
 * can be merged, so every thread records into its own and the report merges
 * them at the end. */
#ifndef PORTCULLIS_BENCH_HIST_H
#define PORTCULLIS_BENCH_HIST_H

#include <stdint.h>

#define HIST_MIN_US 1ULL
#define HIST_MAX_US 100000000ULL /* 100 s */
#define HIST_SUB_BITS 7          /* 128 sub-buckets per power of two */
#define HIST_LINEAR (2u << HIST_SUB_BITS) /* 256 */
#define HIST_BUCKETS (HIST_LINEAR + (27 - 8 + 1) * (1u << HIST_SUB_BITS))

typedef struct hist {
    uint64_t count;
    uint64_t min;   /* clamped value; UINT64_MAX when empty */
    uint64_t max;
    double sum;     /* for the mean */
    uint64_t buckets[HIST_BUCKETS];
} hist_t;

void hist_init(hist_t *h);
void hist_record(hist_t *h, uint64_t us);
void hist_merge(hist_t *dst, const hist_t *src);
/* The value at percentile p (0..100), 0 for an empty histogram. The answer
 * is the middle of the bucket, clamped to [min, max]. */
uint64_t hist_percentile(const hist_t *h, double p);
double hist_mean(const hist_t *h);

/* Exposed for tests: the bucket of a value and the bounds of a bucket. */
unsigned hist_bucket_of(uint64_t us);
void hist_bucket_range(unsigned idx, uint64_t *lo, uint64_t *hi);

#endif
