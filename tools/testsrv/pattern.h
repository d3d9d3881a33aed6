/*
 * pattern.h: the BLAST byte pattern (docs/PROTOCOL.md §4).
 *   byte i = ((i ^ (i >> 8) ^ (i >> 16)) * 29 + seed) & 0xff, i from 0
 * Clients verify every byte against it, so it depends on the position in the
 * stream and never repeats with a short period.
 */
#ifndef TESTSRV_PATTERN_H
#define TESTSRV_PATTERN_H

#include <stddef.h>
#include <stdint.h>

/* Byte i of the stream for seed. */
uint8_t pattern_byte(uint64_t i, uint32_t seed);

/* Fills buf with bytes [offset, offset + len) of the stream for seed. */
void pattern_fill(uint8_t *buf, size_t len, uint64_t offset, uint32_t seed);

#endif
