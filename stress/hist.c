/* hist.c: log-linear buckets: values below 32 exact, then 32 buckets per
 * power of two. */
#include "hist.h"

static unsigned bucket_of(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* >= 5 */
    if (msb > 44)
        return HIST_BUCKETS - 1;
    unsigned sub = (unsigned)(v >> (msb - 5)) & (HIST_SUB - 1);
    return HIST_SUB + (msb - 5) * HIST_SUB + sub;
}

static uint64_t bucket_top(unsigned b)
{
    if (b < HIST_SUB)
        return b;
    unsigned msb = (b - HIST_SUB) / HIST_SUB + 5;
    uint64_t sub = (b - HIST_SUB) % HIST_SUB;
    return ((HIST_SUB + sub + 1) << (msb - 5)) - 1;
}

void hist_add(struct hist *h, uint64_t us)
{
    h->b[bucket_of(us)]++;
    h->n++;
    if (us > h->max)
        h->max = us;
}

uint64_t hist_pct(const struct hist *h, double p)
{
    if (!h->n)
        return 0;
    uint64_t rank = (uint64_t)((double)h->n * p / 100.0 + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        seen += h->b[b];
        if (seen >= rank) {
            uint64_t top = bucket_top(b);
            return top < h->max ? top : h->max;
        }
    }
    return h->max;
}
