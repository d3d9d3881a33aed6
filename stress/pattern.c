/* pattern.c: BLAST pattern verification.
 *
 * Only the low 8 bits of (i ^ i>>8 ^ i>>16) reach the byte, and within a
 * 256-byte aligned block i>>8 and i>>16 are constant, so a block is row
 * k = (i>>8 ^ i>>16) & 0xff of a 256x256 table, plus the seed. Checking is
 * then a branch-free loop the compiler vectorises: gigabytes per second, so
 * the client is not what limits the stress. */
#include "pattern.h"

static uint8_t rows[256][256]; /* rows[k][j] = ((j ^ k) * 29) & 0xff */
static int rows_ready;

static void rows_init(void)
{
    for (unsigned k = 0; k < 256; k++)
        for (unsigned j = 0; j < 256; j++)
            rows[k][j] = (uint8_t)(((j ^ k) * 29u) & 0xffu);
    rows_ready = 1;
}

uint8_t pattern_byte(uint32_t seed, uint64_t i)
{
    return (uint8_t)(((i ^ (i >> 8) ^ (i >> 16)) * 29u + seed) & 0xffu);
}

size_t pattern_check(uint32_t seed, uint64_t off, const uint8_t *p, size_t n)
{
    if (!rows_ready)
        rows_init();
    const uint8_t s = (uint8_t)seed;
    size_t done = 0;
    while (done < n) {
        uint64_t i = off + done;
        unsigned j = (unsigned)(i & 0xffu);
        const uint8_t *row = rows[((i >> 8) ^ (i >> 16)) & 0xffu];
        size_t take = 256u - j;
        if (take > n - done)
            take = n - done;
        uint8_t acc = 0;
        for (size_t x = 0; x < take; x++)
            acc |= (uint8_t)(p[done + x] ^ (uint8_t)(row[j + x] + s));
        if (acc) {
            for (size_t x = 0; x < take; x++)
                if (p[done + x] != (uint8_t)(row[j + x] + s))
                    return done + x;
        }
        done += take;
    }
    return n;
}
