/*
 * Shared by the fuzz targets: reading the input as a script, failing loudly,
 * and the byte patterns that let a check tell every byte of a stream apart.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libFuzzer's entry point; declared so -Wmissing-prototypes stays quiet. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input, read front to back. Reads past the end yield zeros: every input
 * is a complete script, so no execution is wasted on "too short", and a
 * mutation that truncates an input still runs the same prefix. */
typedef struct fz_in {
    const uint8_t *p;
    size_t n;
} fz_in;

static inline uint8_t fz_u8(fz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint16_t fz_u16(fz_in *in)
{
    unsigned hi = fz_u8(in);
    return (uint16_t)(hi << 8 | fz_u8(in));
}

static inline uint32_t fz_u32(fz_in *in)
{
    uint32_t hi = fz_u16(in);
    return hi << 16 | fz_u16(in);
}

/* A size in [0, max], small sizes most likely: the first byte picks a scale
 * (tiny, byte, 12-bit, full range), so boundary values near 0, 255 and 4095
 * are one mutation away and large sizes still reachable. */
static inline size_t fz_size(fz_in *in, size_t max)
{
    uint8_t b = fz_u8(in);
    size_t v;
    switch (b >> 6) {
    case 0: v = b & 15u; break;
    case 1: v = fz_u8(in); break;
    case 2: v = fz_u16(in) & 0xfffu; break;
    default: v = fz_u32(in); break;
    }
    return max == SIZE_MAX ? v : v % (max + 1);
}

/* Byte j of stream s: a multiplicative hash of the position, so a lost,
 * duplicated or reordered run of any length shows up as a wrong byte (a
 * short repeating pattern would hide a loss of exactly one period). */
static inline uint8_t fz_pat(uint32_t s, uint64_t j)
{
    uint32_t x = (uint32_t)j * 2654435761u ^ (uint32_t)(j >> 32) ^ s * 0x9e3779b9u;
    return (uint8_t)((x ^ x >> 15) * 0x2c1b3c6du >> 24);
}

static inline void fz_fill(uint8_t *dst, size_t n, uint32_t s, uint64_t from)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = fz_pat(s, from + i);
}

/* Index of the first byte of p[0, n) that is not stream s from `from`, or n. */
static inline size_t fz_mismatch(const uint8_t *p, size_t n, uint32_t s, uint64_t from)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != fz_pat(s, from + i))
            return i;
    return n;
}

/* A broken invariant: say which, then abort so libFuzzer and AFL++ both
 * record the input as a crash (with the stack from the sanitizer runtime). */
__attribute__((format(printf, 1, 2), noreturn)) static inline void fz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)fputs("\nFUZZ CHECK FAILED: ", stderr);
    (void)vfprintf(stderr, fmt, ap);
    (void)fputs("\n", stderr);
    va_end(ap);
    abort();
}

#define FZ_CHECK(cond, ...)          \
    do {                             \
        if (!(cond))                 \
            fz_fail(__VA_ARGS__);    \
    } while (0)

/* One step of a server's read loop over pipelined input: parses the first
 * request of b[0, len); false to stop (incomplete, or an error that ends the
 * connection), else true with its size in *consumed. checked: also hold it
 * to the target's model or invariants (which costs a copy). */
typedef bool (*fz_parse_step)(const char *b, size_t len, bool checked, size_t *consumed);

/* The server's loop: parse, drop what was consumed, again. Every request
 * must move forward within the input, which also ends the loop. The first
 * `checked` steps are checked in full, the rest only for progress. */
static inline void fz_parse_loop(const char *b, size_t len, int checked, fz_parse_step step)
{
    size_t off = 0, n = 0;
    for (int i = 0; step(b + off, len - off, i < checked, &n); i++) {
        FZ_CHECK(n > 0 && n <= len - off, "no progress at offset %zu", off);
        off += n;
    }
}

/* FUZZ_TRACE=1 in the environment: the targets narrate what they do, to
 * read a crash's input as a story. Off, it costs one branch. */
static inline bool fz_tracing(void)
{
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("FUZZ_TRACE");
        on = e && *e && *e != '0';
    }
    return on;
}

__attribute__((format(printf, 1, 2))) static inline void fz_trace(const char *fmt, ...)
{
    if (!fz_tracing())
        return;
    va_list ap;
    va_start(ap, fmt);
    (void)vfprintf(stderr, fmt, ap);
    (void)fputc('\n', stderr);
    va_end(ap);
}

/* FUZZ_KNOWN=id[,id...]: tolerate these known, open library bugs (listed
 * in fuzz/regressions/README.md), so that fuzzing looks past them for new
 * ones. Without it every check is strict: that is how a regression input
 * reproduces, and how the fix is confirmed. */
static inline bool fz_known(const char *id)
{
    const char *e = getenv("FUZZ_KNOWN");
    size_t n = strlen(id);
    for (const char *p = e; p && *p; p += strcspn(p, ","), p += *p == ',') {
        if (strncmp(p, id, n) == 0 && (p[n] == ',' || p[n] == '\0'))
            return true;
    }
    return false;
}

/* Open fds of this process (the directory's own fd included, so two counts
 * compare equal when nothing leaked). -1 when /proc is not there. */
static inline int fz_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    for (const struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            n++;
    (void)closedir(d);
    return n;
}

#endif /* FUZZ_COMMON_H */
