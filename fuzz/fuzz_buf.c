/*
 * fuzz_buf: the byte buffer (lib/buf.h) against a reference model.
 *
 * The input is a script of operations: append bytes taken from the input,
 * append a long run (to reach the sizes where the buffer gives memory back),
 * consume k, reserve n + commit m, drain through a scripted writer, free.
 * After every step: evl__buf_check() finds nothing, and the buffer holds the
 * same bytes as the model. The model is a plain array that only ever grows
 * plus a start index: too simple to be wrong, too wasteful to ship.
 * The scripted writer checks the drain contract call by call (what it is
 * handed, EINTR retried, stops only for a reason).
 */
#include "evl_int.h" /* buf.h, and EVL__READ_MAX: the loop's largest reserve */
#include "fuzz_common.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define MAX_STEPS   256
#define MAX_CONTENT ((size_t)320 << 10) /* enough for a 512 KiB region (see case 1) */
#define MAX_TOTAL   ((size_t)2 << 20)   /* bytes the model may ever hold */
#define MAX_SCRIPT  16                  /* writer replies per drain */
#define BIG_STREAM  7u                  /* fz_pat stream of the long appends */
#define BIG_PERIOD  ((size_t)65521)     /* they start at a prime offset into it */

typedef struct model {
    uint8_t *p;
    size_t start, len; /* live bytes are p[start, start+len) */
    size_t cap;
} model;

static void model_append(model *m, const void *src, size_t n)
{
    if (n == 0)
        return;
    if (m->start + m->len + n > m->cap) { /* doubling: realloc copies under ASan */
        size_t c = m->cap ? m->cap : 4096;
        while (c < m->start + m->len + n)
            c *= 2;
        uint8_t *q = realloc(m->p, c);
        if (!q)
            fz_fail("model: out of memory");
        m->p = q;
        m->cap = c;
    }
    memcpy(m->p + m->start + m->len, src, n);
    m->len += n;
}

static void model_consume(model *m, size_t n)
{
    m->start += n;
    m->len -= n;
}

/* ---- the scripted writer ---------------------------------------------- */

enum reply { R_TAKE, R_ZERO, R_EAGAIN, R_EINTR, R_EPIPE };

typedef struct writer {
    enum reply kind[MAX_SCRIPT];
    size_t take[MAX_SCRIPT]; /* R_TAKE: at most this many bytes */
    size_t nscript, calls;
    const model *m;          /* what the front of the buffer must be */
    size_t budget, taken;
} writer;

static ssize_t scripted_write(void *ctx, const void *p, size_t n)
{
    writer *w = ctx;
    FZ_CHECK(n > 0, "drain called the writer with 0 bytes");
    FZ_CHECK(n <= w->budget - w->taken, "drain passed %zu bytes with %zu of budget left", n,
             w->budget - w->taken);
    FZ_CHECK(n <= w->m->len - w->taken, "drain passed %zu bytes, only %zu are buffered", n,
             w->m->len - w->taken);
    FZ_CHECK(memcmp(p, w->m->p + w->m->start + w->taken, n) == 0,
             "drain handed the writer bytes that are not the buffer's front (offset %zu)",
             w->taken);
    /* Past the script the writer says "no room", so every drain ends. */
    enum reply r = w->calls < w->nscript ? w->kind[w->calls] : R_EAGAIN;
    size_t k = w->calls < w->nscript ? w->take[w->calls] : 0;
    w->calls++;
    switch (r) {
    case R_TAKE:
        if (k > n)
            k = n;
        w->taken += k;
        return (ssize_t)k;
    case R_ZERO: return 0;
    case R_EAGAIN: errno = EAGAIN; return -1;
    case R_EINTR: errno = EINTR; return -1;
    case R_EPIPE: errno = EPIPE; return -1;
    }
    return 0;
}

static void step_drain(fz_in *in, evl__buf *b, model *m)
{
    writer w = {.m = m};
    w.budget = fz_u8(in) == 0 ? SIZE_MAX : fz_size(in, MAX_CONTENT) + 1;
    w.nscript = fz_u8(in) % (MAX_SCRIPT + 1);
    for (size_t i = 0; i < w.nscript; i++) {
        uint8_t r = fz_u8(in);
        w.kind[i] = (enum reply)(r % 8 < 4 ? R_TAKE : r % 8 - 3);
        if (w.kind[i] == R_TAKE)
            w.take[i] = fz_size(in, MAX_CONTENT) + 1;
    }
    errno = 0;
    ssize_t got = evl__buf_drain(b, scripted_write, &w, w.budget);
    int err = errno;

    size_t last = w.calls ? w.calls - 1 : 0;
    enum reply why = w.calls == 0 ? R_TAKE : last < w.nscript ? w.kind[last] : R_EAGAIN;
    if (w.calls > 0 && why == R_EPIPE) {
        FZ_CHECK(got == -1 && err == EPIPE, "drain after EPIPE returned %zd errno %d", got, err);
    } else {
        FZ_CHECK(got >= 0 && (size_t)got == w.taken, "drain returned %zd, writer took %zu", got,
                 w.taken);
        /* It may stop only when the buffer is empty, the budget spent, or
         * the writer said EAGAIN or took nothing; never after EINTR or
         * after a write that took bytes with more to go. */
        bool done = w.taken == m->len || w.taken == w.budget;
        bool refused = w.calls > 0 && (why == R_EAGAIN || why == R_ZERO ||
                                       (why == R_TAKE && w.take[last] == 0));
        FZ_CHECK(done || refused, "drain stopped early: %zu of %zu bytes, budget %zu, last reply %d",
                 w.taken, m->len, w.budget, (int)why);
        FZ_CHECK(w.calls > 0 || m->len == 0, "drain wrote nothing and never asked the writer");
    }
    model_consume(m, w.taken); /* written bytes are consumed, even before an error */
}

/* ---- checks ----------------------------------------------------------- */

/* Same bytes as the model in [at, at+n) (clipped to the content). */
static bool same(const evl__buf *b, const model *m, size_t at, size_t n)
{
    if (at >= evl__buf_len(b))
        return true;
    if (n > evl__buf_len(b) - at)
        n = evl__buf_len(b) - at;
    return memcmp(evl__buf_data(b) + at, m->p + m->start + at, n) == 0;
}

/* Comparing all of a large buffer after each of 256 steps would make an
 * execution cost ~100 ms; a large one is compared at its ends and at a
 * window that moves with the step (a misplaced memmove or relocate shows at
 * an end), and in full once at the end of the input. */
#define WINDOW ((size_t)16 << 10)

static void check(const evl__buf *b, const model *m, int step, bool full)
{
    const char *why = evl__buf_check(b);
    FZ_CHECK(why == NULL, "step %d: evl__buf_check: %s", step, why);
    /* The validator's own promises, checked again here: a buggy validator
     * must not hide a buggy buffer. */
    FZ_CHECK(evl__buf_len(b) == m->len, "step %d: buffer holds %zu bytes, model %zu", step, evl__buf_len(b), m->len);
    FZ_CHECK(evl__buf_len(b) > 0 || (b->m == NULL && evl__buf_data(b) == NULL),
             "step %d: empty buffer holds memory", step);
    FZ_CHECK(evl__buf_cap(b) <= 4 * evl__buf_len(b) + EVL__BUF_SLACK, "step %d: cap %zu for %zu bytes", step, evl__buf_cap(b),
             evl__buf_len(b));
    bool ok;
    if (full || evl__buf_len(b) <= 4 * WINDOW)
        ok = same(b, m, 0, evl__buf_len(b));
    else
        ok = same(b, m, 0, WINDOW) && same(b, m, evl__buf_len(b) - WINDOW, WINDOW) &&
             same(b, m, (size_t)step * 40503u % (evl__buf_len(b) - WINDOW), WINDOW);
    FZ_CHECK(ok, "step %d: buffer bytes differ from the model", step);
}

/* Room left under both caps. */
static size_t room(const model *m)
{
    size_t a = MAX_CONTENT - m->len, t = MAX_TOTAL - (m->start + m->len);
    return a < t ? a : t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    evl__buf b = {0};
    model m = {0};
    static uint8_t big[MAX_CONTENT + BIG_PERIOD];
    static bool big_ready;
    if (!big_ready) { /* once: the long runs are slices of it */
        fz_fill(big, sizeof big, BIG_STREAM, 0);
        big_ready = true;
    }
    for (int step = 0; step < MAX_STEPS && in.n > 0; step++) {
        switch (fz_u8(&in) % 6) {
        case 0: { /* append bytes from the input */
            size_t n = fz_size(&in, room(&m));
            if (n > in.n)
                n = in.n;
            FZ_CHECK(evl__buf_append(&b, in.p, n) == 0, "append %zu failed", n);
            model_append(&m, in.p, n);
            in.p += n;
            in.n -= n;
            break;
        }
        case 1: { /* a long run: growth, and the give-back once a region of
                   * 512 KiB (len > 256 KiB, or doubling when a front gap
                   * cannot be compacted) holds under 64 KiB */
            size_t n = (size_t)fz_u16(&in) * 8 % (room(&m) + 1);
            const uint8_t *src = big + (m.start + m.len) % BIG_PERIOD;
            FZ_CHECK(evl__buf_append(&b, src, n) == 0, "append %zu failed", n);
            model_append(&m, src, n);
            break;
        }
        case 2: { /* consume k; 0xff..: all of it */
            size_t k = fz_u8(&in) == 0xff ? m.len : fz_u32(&in) % (m.len + 1);
            evl__buf_consume(&b, k);
            model_consume(&m, k);
            break;
        }
        case 3: { /* reserve n, write n, commit m <= n: the uncommitted rest must vanish */
            /* Any size within room is legal: a reserve far above the slack
             * followed by a small commit must still keep cap <= 4*len + SLACK
             * (the bug this caught: fuzz/corpus/fuzz_buf/regress-buf-reserve-slack). */
            size_t n = fz_size(&in, room(&m));
            size_t k = n ? fz_size(&in, n) : 0;
            char *p = evl__buf_reserve(&b, n);
            FZ_CHECK(p != NULL, "reserve %zu failed", n);
            FZ_CHECK(evl__buf_len(&b) == m.len && p == b.m->data + b.m->off + b.m->len, "reserve: not at the tail");
            fz_fill((uint8_t *)p, k, BIG_STREAM, m.start + m.len);
            memset(p + k, 0xee, n - k); /* the whole reservation is writable */
            model_append(&m, p, k);
            evl__buf_commit(&b, k);
            break;
        }
        case 4:
            step_drain(&in, &b, &m);
            break;
        case 5:
            evl__buf_free(&b);
            model_consume(&m, m.len);
            break;
        }
        check(&b, &m, step, false);
    }
    check(&b, &m, MAX_STEPS, true);
    evl__buf_free(&b);
    free(m.p);
    return 0;
}
