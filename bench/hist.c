/* hist: log-linear latency histogram, see hist.h. */
#include "hist.h"

#include <string.h>

static unsigned ilog2_u64(uint64_t v)
{
    return 63u - (unsigned)__builtin_clzll(v);
}

static uint64_t clamp_us(uint64_t us)
{
    if (us < HIST_MIN_US)
        return HIST_MIN_US;
    if (us > HIST_MAX_US)
        return HIST_MAX_US;
    return us;
}

unsigned hist_bucket_of(uint64_t us)
{
    us = clamp_us(us);
    if (us < HIST_LINEAR)
        return (unsigned)us;
    unsigned e = ilog2_u64(us); /* >= 8 */
    unsigned shift = e - HIST_SUB_BITS;
    unsigned sub = (unsigned)(us >> shift) - (1u << HIST_SUB_BITS); /* 0..127 */
    unsigned idx = HIST_LINEAR + (e - 8) * (1u << HIST_SUB_BITS) + sub;
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

void hist_bucket_range(unsigned idx, uint64_t *lo, uint64_t *hi)
{
    if (idx < HIST_LINEAR) {
        *lo = *hi = idx;
        return;
    }
    unsigned rel = idx - HIST_LINEAR;
    unsigned e = 8 + rel / (1u << HIST_SUB_BITS);
    unsigned sub = rel % (1u << HIST_SUB_BITS) + (1u << HIST_SUB_BITS);
    unsigned shift = e - HIST_SUB_BITS;
    *lo = (uint64_t)sub << shift;
    *hi = *lo + ((uint64_t)1 << shift) - 1;
}

void hist_init(hist_t *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void hist_record(hist_t *h, uint64_t us)
{
    us = clamp_us(us);
    h->buckets[hist_bucket_of(us)]++;
    h->count++;
    h->sum += (double)us;
    if (us < h->min)
        h->min = us;
    if (us > h->max)
        h->max = us;
}

void hist_merge(hist_t *dst, const hist_t *src)
{
    if (src->count == 0)
        return;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_percentile(const hist_t *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p <= 0)
        return h->min;
    if (p >= 100)
        return h->max;
    /* rank of the wanted sample, 1-based: ceil(p/100 * count) */
    double r = p / 100.0 * (double)h->count;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r)
        rank++;
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t lo, hi;
            hist_bucket_range(i, &lo, &hi);
            uint64_t v = lo + (hi - lo) / 2;
            if (v < h->min)
                v = h->min;
            if (v > h->max)
                v = h->max;
            return v;
        }
    }
    return h->max;
}

double hist_mean(const hist_t *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}
