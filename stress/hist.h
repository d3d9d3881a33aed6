/* hist.h: latency histogram in microseconds: fixed memory whatever the
 * sample count, percentiles within 1/32 (3 %), max exact. */
#ifndef STRESS_HIST_H
#define STRESS_HIST_H

#include <stdint.h>

#define HIST_SUB 32
#define HIST_BUCKETS (HIST_SUB + 40 * HIST_SUB)

struct hist {
    uint64_t n, max;
    uint32_t b[HIST_BUCKETS];
};

void hist_add(struct hist *h, uint64_t us);
/* Upper bound of the bucket holding the p-th percentile (0 < p <= 100),
 * never above the max; 0 when empty. */
uint64_t hist_pct(const struct hist *h, double p);

#endif
