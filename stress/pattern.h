/* pattern.h: the BLAST byte pattern (docs/PROTOCOL.md §4), checked at memory speed.
 * byte i = ((i ^ (i >> 8) ^ (i >> 16)) * 29 + seed) & 0xff, i from 0. */
#ifndef STRESS_PATTERN_H
#define STRESS_PATTERN_H

#include <stddef.h>
#include <stdint.h>

uint8_t pattern_byte(uint32_t seed, uint64_t i);
/* Compares n received bytes that sit at offset off of the stream; returns
 * the index of the first wrong byte, or n if all are right. */
size_t pattern_check(uint32_t seed, uint64_t off, const uint8_t *p, size_t n);

#endif
