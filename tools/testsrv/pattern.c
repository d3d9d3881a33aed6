/* pattern.c: the BLAST byte pattern (see pattern.h). */
#include "pattern.h"

uint8_t pattern_byte(uint64_t i, uint32_t seed)
{
    return (uint8_t)(((i ^ (i >> 8) ^ (i >> 16)) * 29 + seed) & 0xff);
}

void pattern_fill(uint8_t *buf, size_t len, uint64_t offset, uint32_t seed)
{
    /* Only the low byte of the product matters, and within one 256-byte
     * block the high part (i >> 8) ^ (i >> 16) is constant: hoist it. */
    while (len > 0) {
        uint64_t hi = ((offset >> 8) ^ (offset >> 16)) & 0xff;
        unsigned lo = (unsigned)(offset & 0xff);
        size_t run = 256 - lo;
        if (run > len)
            run = len;
        for (size_t k = 0; k < run; k++)
            buf[k] = (uint8_t)((((lo + k) ^ hi) * 29 + seed) & 0xff);
        buf += run;
        len -= run;
        offset += run;
    }
}
