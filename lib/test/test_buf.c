/*
 * The byte buffer (lib/buf.h) on its own, without sockets: every operation is
 * compared with a plain model, and evl__buf_check runs after every step
 * (libevent's validator, as STYLE.md asks).
 */
#include "testutil.h"

#include "buf.h"

#include <stdlib.h>
#include <string.h>

/* Fails the test with the validator's description if b is unsound. */
#define CHECK_BUF(b)                                                           \
    do {                                                                       \
        const char *why_ = evl__buf_check(b);                                  \
        if (why_)                                                              \
            TU_FAIL("evl__buf_check: %s (off %zu len %zu cap %zu)", why_,     \
                     (b)->m ? (b)->m->off : 0, evl__buf_len(b), evl__buf_cap(b));                          \
    } while (0)

/* The documented memory bound, checked here too (not only by the validator,
 * so a validator that forgot it cannot hide a buffer that keeps a burst). */
#define CHECK_CAP(b)                                                           \
    do {                                                                       \
        if (evl__buf_len(b) == 0)                                              \
            assert_null((b)->m);                                               \
        assert_true(evl__buf_cap(b) <= 4 * evl__buf_len(b) + EVL__BUF_SLACK);  \
    } while (0)

static void expect_content(const evl__buf *b, const void *p, size_t n)
{
    assert_int_equal(evl__buf_len(b), n);
    if (n == 0) {
        assert_null(evl__buf_data(b));
        return;
    }
    assert_non_null(evl__buf_data(b));
    assert_memory_equal(evl__buf_data(b), p, n);
}

/* ---- a scripted writer ------------------------------------------------------ */

enum wkind { W_ACCEPT, W_EAGAIN, W_EINTR, W_EPIPE };
struct wstep {
    enum wkind kind;
    size_t k; /* W_ACCEPT: bytes taken at most */
};

typedef struct writer {
    const struct wstep *steps;
    size_t nsteps, pos; /* past the script: accept everything */
    size_t max_n;       /* largest n offered (budget checks) */
    int calls;
    int zero_calls;     /* calls with n == 0: never useful */
    tu_dbuf out;
} writer;

static ssize_t scripted_write(void *ctx, const void *p, size_t n)
{
    writer *w = ctx;
    w->calls++;
    if (n == 0)
        w->zero_calls++;
    if (n > w->max_n)
        w->max_n = n;
    struct wstep st = {W_ACCEPT, (size_t)-1};
    if (w->pos < w->nsteps)
        st = w->steps[w->pos++];
    switch (st.kind) {
    case W_ACCEPT: {
        size_t k = st.k < n ? st.k : n;
        tu_dbuf_add(&w->out, p, k);
        return (ssize_t)k;
    }
    case W_EAGAIN:
        errno = EAGAIN;
        return -1;
    case W_EINTR:
        errno = EINTR;
        return -1;
    case W_EPIPE:
        errno = EPIPE;
        return -1;
    }
    return -1;
}

static void fill_seq(evl__buf *b, char *model, size_t n, uint32_t seed)
{
    tu_pattern(model, n, 0, seed);
    assert_int_equal(evl__buf_append(b, model, n), 0);
    CHECK_BUF(b);
}

/* ---- tests -------------------------------------------------------------------- */

static void test_buf_empty_holds_no_memory(void **state)
{
    (void)state;
    evl__buf b = {0};
    CHECK_BUF(&b);
    assert_null(evl__buf_data(&b));

    assert_int_equal(evl__buf_append(&b, "hello", 5), 0);
    CHECK_BUF(&b);
    assert_non_null(b.m);
    expect_content(&b, "hello", 5);

    evl__buf_consume(&b, 2);
    CHECK_BUF(&b);
    expect_content(&b, "llo", 3);

    /* consuming the last byte gives the memory back */
    evl__buf_consume(&b, 3);
    CHECK_BUF(&b);
    assert_null(b.m);
    assert_int_equal(evl__buf_cap(&b), 0);
    assert_int_equal(evl__buf_len(&b), 0);

    /* and the buffer is usable again after that */
    assert_int_equal(evl__buf_append(&b, "x", 1), 0);
    CHECK_BUF(&b);
    expect_content(&b, "x", 1);
    evl__buf_free(&b);
    assert_null(b.m);
    assert_int_equal(evl__buf_len(&b), 0);
    CHECK_BUF(&b);
}

static void test_buf_zero_length_ops_allocate_nothing(void **state)
{
    (void)state;
    evl__buf b = {0};
    assert_int_equal(evl__buf_append(&b, "", 0), 0);
    CHECK_BUF(&b);
    assert_null(b.m);
    evl__buf_consume(&b, 0);
    CHECK_BUF(&b);
    assert_null(b.m);

    /* a reserve for a read() that then found nothing (EAGAIN) must not leave
     * an idle connection holding memory */
    char *w = evl__buf_reserve(&b, 4096);
    assert_non_null(w);
    evl__buf_commit(&b, 0);
    CHECK_BUF(&b);
    assert_null(b.m);
    assert_int_equal(evl__buf_len(&b), 0);
    evl__buf_free(&b);
}

static void test_buf_append_consume_keeps_order(void **state)
{
    (void)state;
    evl__buf b = {0};
    enum { TOTAL = 300000 };
    char *src = malloc(TOTAL);
    assert_non_null(src);
    tu_pattern(src, TOTAL, 0, 7);
    size_t in = 0, out = 0;
    /* appends of growing size interleaved with smaller consumes: the live
     * region wanders through the allocation and has to be moved or grown */
    for (size_t step = 1; in < TOTAL; step++) {
        size_t n = (step * 977) % 20000 + 1;
        if (n > TOTAL - in)
            n = TOTAL - in;
        assert_int_equal(evl__buf_append(&b, src + in, n), 0);
        in += n;
        CHECK_BUF(&b);
        CHECK_CAP(&b);
        size_t c = (step * 613) % (evl__buf_len(&b) + 1);
        evl__buf_consume(&b, c);
        out += c;
        CHECK_BUF(&b);
        CHECK_CAP(&b);
        expect_content(&b, src + out, in - out);
    }
    evl__buf_consume(&b, evl__buf_len(&b));
    CHECK_BUF(&b);
    assert_null(b.m);
    free(src);
}

static void test_buf_reserve_commit(void **state)
{
    (void)state;
    evl__buf b = {0};
    assert_int_equal(evl__buf_append(&b, "abc", 3), 0);
    char *w = evl__buf_reserve(&b, 100);
    assert_non_null(w);
    static const char defghij[7] = "defghij"; /* 7 bytes, no NUL */
    memcpy(w, defghij, sizeof defghij);
    evl__buf_commit(&b, 7);
    CHECK_BUF(&b);
    expect_content(&b, "abcdefghij", 10);

    /* a large reserve after a consume keeps the live bytes */
    evl__buf_consume(&b, 4);
    enum { BIG = 200000 };
    w = evl__buf_reserve(&b, BIG);
    assert_non_null(w);
    tu_pattern(w, BIG, 0, 3); /* all of the reserved room is writable (ASan) */
    evl__buf_commit(&b, BIG);
    CHECK_BUF(&b);
    CHECK_CAP(&b);
    assert_int_equal(evl__buf_len(&b), 6 + BIG);
    assert_memory_equal(evl__buf_data(&b), "efghij", 6);
    assert_int_equal(tu_pattern_mismatch(evl__buf_data(&b) + 6, BIG, 0, 3), -1);

    /* commit less than reserved */
    w = evl__buf_reserve(&b, 50);
    assert_non_null(w);
    w[0] = 'X';
    w[1] = 'Y';
    evl__buf_commit(&b, 2);
    CHECK_BUF(&b);
    assert_int_equal(evl__buf_len(&b), 8 + BIG);
    assert_memory_equal(evl__buf_data(&b) + 6 + BIG, "XY", 2);
    evl__buf_free(&b);
    assert_null(b.m);

    /* a large reserve that receives one byte keeps the capacity bound
     * (found by fuzz_buf: buf-reserve-slack) */
    w = evl__buf_reserve(&b, 327680);
    assert_non_null(w);
    w[0] = 'Z';
    evl__buf_commit(&b, 1);
    CHECK_BUF(&b);
    CHECK_CAP(&b);
    assert_memory_equal(evl__buf_data(&b), "Z", 1);
    evl__buf_free(&b);
}

static void test_buf_drain_all(void **state)
{
    (void)state;
    evl__buf b = {0};
    char src[10000];
    fill_seq(&b, src, sizeof src, 1);
    writer w = {0};
    assert_int_equal(evl__buf_drain(&b, scripted_write, &w, (size_t)-1), (ssize_t)sizeof src);
    CHECK_BUF(&b);
    assert_int_equal(evl__buf_len(&b), 0);
    assert_null(b.m); /* drained empty: memory released */
    assert_int_equal(w.out.len, sizeof src);
    assert_memory_equal(w.out.p, src, sizeof src);
    assert_int_equal(w.zero_calls, 0);
    tu_dbuf_free(&w.out);
}

static void test_buf_drain_k_bytes_per_call(void **state)
{
    (void)state;
    evl__buf b = {0};
    char src[5000];
    fill_seq(&b, src, sizeof src, 2);
    /* a writer that takes 7 bytes a call, like a tiny socket buffer */
    struct wstep steps[800];
    for (size_t i = 0; i < 800; i++)
        steps[i] = (struct wstep){W_ACCEPT, 7};
    writer w = {.steps = steps, .nsteps = 800};
    ssize_t n = evl__buf_drain(&b, scripted_write, &w, (size_t)-1);
    assert_int_equal(n, (ssize_t)sizeof src);
    CHECK_BUF(&b);
    assert_int_equal(evl__buf_len(&b), 0);
    assert_memory_equal(w.out.p, src, sizeof src);
    assert_int_equal(w.calls, (sizeof src + 6) / 7);
    tu_dbuf_free(&w.out);
}

static void test_buf_drain_eagain_stops_and_resumes(void **state)
{
    (void)state;
    evl__buf b = {0};
    char src[3000];
    fill_seq(&b, src, sizeof src, 3);
    struct wstep steps[] = {{W_ACCEPT, 100}, {W_EAGAIN, 0}};
    writer w = {.steps = steps, .nsteps = 2};
    assert_int_equal(evl__buf_drain(&b, scripted_write, &w, (size_t)-1), 100);
    CHECK_BUF(&b);
    assert_int_equal(w.calls, 2); /* stops at EAGAIN, no retry */
    expect_content(&b, src + 100, sizeof src - 100);

    /* nothing written at all: 0, not an error */
    struct wstep again[] = {{W_EAGAIN, 0}};
    writer w2 = {.steps = again, .nsteps = 1};
    assert_int_equal(evl__buf_drain(&b, scripted_write, &w2, (size_t)-1), 0);
    CHECK_BUF(&b);
    expect_content(&b, src + 100, sizeof src - 100);

    /* the next drain continues where the first stopped */
    writer w3 = {0};
    assert_int_equal(evl__buf_drain(&b, scripted_write, &w3, (size_t)-1), (ssize_t)(sizeof src - 100));
    assert_memory_equal(w3.out.p, src + 100, sizeof src - 100);
    CHECK_BUF(&b);
    assert_null(b.m);
    tu_dbuf_free(&w.out);
    tu_dbuf_free(&w2.out);
    tu_dbuf_free(&w3.out);
}

static void test_buf_drain_eintr_is_retried(void **state)
{
    (void)state;
    evl__buf b = {0};
    char src[400];
    fill_seq(&b, src, sizeof src, 4);
    struct wstep steps[] = {{W_EINTR, 0}, {W_ACCEPT, 50}, {W_EINTR, 0}, {W_EINTR, 0}, {W_EAGAIN, 0}};
    writer w = {.steps = steps, .nsteps = 5};
    assert_int_equal(evl__buf_drain(&b, scripted_write, &w, (size_t)-1), 50);
    assert_int_equal(w.calls, 5);
    CHECK_BUF(&b);
    expect_content(&b, src + 50, sizeof src - 50);
    evl__buf_free(&b);
    tu_dbuf_free(&w.out);
}

static void test_buf_drain_error_keeps_what_was_written_consumed(void **state)
{
    (void)state;
    evl__buf b = {0};
    char src[400];
    fill_seq(&b, src, sizeof src, 5);
    struct wstep steps[] = {{W_ACCEPT, 30}, {W_EPIPE, 0}};
    writer w = {.steps = steps, .nsteps = 2};
    errno = 0;
    assert_int_equal(evl__buf_drain(&b, scripted_write, &w, (size_t)-1), -1);
    assert_int_equal(errno, EPIPE);
    CHECK_BUF(&b);
    expect_content(&b, src + 30, sizeof src - 30);
    assert_int_equal(w.out.len, 30);
    evl__buf_free(&b);
    tu_dbuf_free(&w.out);
}

static void test_buf_drain_respects_budget(void **state)
{
    (void)state;
    evl__buf b = {0};
    char src[10000];
    fill_seq(&b, src, sizeof src, 6);
    writer w = {0};
    assert_int_equal(evl__buf_drain(&b, scripted_write, &w, 1000), 1000);
    /* the budget is the write_quantum of fairness: the writer is never even
     * offered more than what is left of it */
    assert_true(w.max_n <= 1000);
    CHECK_BUF(&b);
    expect_content(&b, src + 1000, sizeof src - 1000);

    /* budget spread over short writes */
    struct wstep steps[] = {{W_ACCEPT, 300}, {W_ACCEPT, 300}, {W_ACCEPT, 300}, {W_ACCEPT, 300}};
    writer w2 = {.steps = steps, .nsteps = 4};
    assert_int_equal(evl__buf_drain(&b, scripted_write, &w2, 700), 700);
    assert_int_equal(w2.calls, 3); /* 300 + 300 + 100 */
    assert_true(w2.max_n <= 700);
    CHECK_BUF(&b);
    expect_content(&b, src + 1700, sizeof src - 1700);
    evl__buf_free(&b);
    tu_dbuf_free(&w.out);
    tu_dbuf_free(&w2.out);
}

static void test_buf_drain_empty_calls_no_writer(void **state)
{
    (void)state;
    evl__buf b = {0};
    writer w = {0};
    assert_int_equal(evl__buf_drain(&b, scripted_write, &w, (size_t)-1), 0);
    assert_int_equal(w.calls, 0);
    CHECK_BUF(&b);
    assert_null(b.m);
}

static void test_buf_capacity_bound_after_burst(void **state)
{
    (void)state;
    evl__buf b = {0};
    enum { CHUNK = 65536, CHUNKS = 128 }; /* an 8 MiB burst */
    static char chunk[CHUNK];
    tu_pattern(chunk, CHUNK, 0, 9);
    for (int i = 0; i < CHUNKS; i++) {
        assert_int_equal(evl__buf_append(&b, chunk, CHUNK), 0);
        CHECK_BUF(&b);
        CHECK_CAP(&b);
    }
    /* as it drains, the memory goes back: cap <= 4*len + SLACK all the way */
    size_t peak_cap = evl__buf_cap(&b);
    while (evl__buf_len(&b) > 0) {
        evl__buf_consume(&b, evl__buf_len(&b) < 40000 ? evl__buf_len(&b) : 40000);
        CHECK_BUF(&b);
        CHECK_CAP(&b);
        if (evl__buf_len(&b) > 0 && evl__buf_len(&b) < 100000)
            assert_true(evl__buf_cap(&b) < peak_cap / 4);
    }
    assert_null(b.m);
}

static void test_buf_check_detects_broken_buffers(void **state)
{
    (void)state;
    /* the validator has teeth: each of these breaks one documented invariant */
    /* headers only: evl__buf_check never reads the bytes */
    struct evl__bufmem *mem = malloc(sizeof *mem);
    assert_non_null(mem);
    evl__buf b = {.m = mem};

    *mem = (struct evl__bufmem){.off = 10, .len = 4090, .cap = 4096};
    assert_non_null(evl__buf_check(&b)); /* live bytes past the end */

    *mem = (struct evl__bufmem){.off = 0, .len = 0, .cap = 4096};
    assert_non_null(evl__buf_check(&b)); /* empty but holding memory */

    *mem = (struct evl__bufmem){.off = 0, .len = 1, .cap = 8 << 20};
    assert_non_null(evl__buf_check(&b)); /* capacity bound broken */

    *mem = (struct evl__bufmem){.off = 0, .len = 100, .cap = 4096};
    assert_null(evl__buf_check(&b)); /* and a sound one passes */
    free(mem);
}

static void test_buf_overflowing_sizes_fail_with_enomem(void **state)
{
    (void)state;
    evl__buf b = {0};
    assert_int_equal(evl__buf_append(&b, "0123456789", 10), 0);
    char dummy[16] = {0};
    /* len + n wraps around size_t: refused, never a tiny allocation and a
     * huge memcpy */
    errno = 0;
    assert_int_equal(evl__buf_append(&b, dummy, (size_t)-1 - 4), -1);
    assert_int_equal(errno, ENOMEM);
    CHECK_BUF(&b);
    expect_content(&b, "0123456789", 10);

    errno = 0;
    assert_null(evl__buf_reserve(&b, (size_t)-1 - 4));
    assert_int_equal(errno, ENOMEM);
    CHECK_BUF(&b);
    expect_content(&b, "0123456789", 10);
    evl__buf_free(&b);
}

/* A deterministic PRNG (xorshift64*): the same run every time. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(uint64_t n)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (rng_state * 0x2545f4914f6cdd1dull) % n;
}

/* The model's consume. */
static void model_drop(tu_dbuf *m, size_t n)
{
    if (n == 0 || !m->p)
        return;
    memmove(m->p, m->p + n, m->len - n);
    m->len -= n;
}

static void test_buf_random_ops_match_model(void **state)
{
    (void)state;
    evl__buf b = {0};
    tu_dbuf model = {0}; /* the expected live bytes */
    static char src[70000];
    uint64_t fed = 0;
    for (int op = 0; op < 20000; op++) {
        switch (rnd(5)) {
        case 0:
        case 1: { /* append */
            size_t n = (size_t)rnd(rnd(10) == 0 ? 65536 : 600);
            tu_pattern(src, n, fed, 11);
            fed += n;
            assert_int_equal(evl__buf_append(&b, src, n), 0);
            tu_dbuf_add(&model, src, n);
            break;
        }
        case 2: { /* reserve + partial commit, as a read() does */
            size_t n = (size_t)rnd(20000) + 1, k = (size_t)rnd(n + 1);
            char *w = evl__buf_reserve(&b, n);
            assert_non_null(w);
            tu_pattern(w, k, fed, 11);
            tu_dbuf_add(&model, w, k);
            fed += k;
            evl__buf_commit(&b, k);
            break;
        }
        case 3: { /* consume */
            size_t n = (size_t)rnd(model.len + 1);
            evl__buf_consume(&b, n);
            model_drop(&model, n);
            break;
        }
        case 4: { /* drain through a writer that takes k then says EAGAIN */
            struct wstep steps[] = {{W_ACCEPT, (size_t)rnd(3000) + 1}, {W_EINTR, 0}, {W_EAGAIN, 0}};
            writer w = {.steps = steps, .nsteps = 3};
            size_t budget = (size_t)rnd(4000) + 1;
            ssize_t n = evl__buf_drain(&b, scripted_write, &w, budget);
            assert_true(n >= 0 && (size_t)n <= budget);
            assert_int_equal(w.out.len, (size_t)n);
            assert_true((size_t)n <= model.len);
            if (n > 0)
                assert_memory_equal(w.out.p, model.p, (size_t)n);
            model_drop(&model, (size_t)n);
            tu_dbuf_free(&w.out);
            break;
        }
        }
        CHECK_BUF(&b);
        CHECK_CAP(&b);
        expect_content(&b, model.p, model.len);
    }
    evl__buf_free(&b);
    CHECK_BUF(&b);
    tu_dbuf_free(&model);
}

/* evl__buf_released counts what the buffers gave back (malloc_trim's
 * trigger, lib/loop.c): the old region at every growth, then the last one
 * when the buffer empties; never less, and never a wrapped total. */
static void test_buf_released_counts_growth_and_emptying(void **state)
{
    (void)state;
    evl__buf b = {0};
    static char chunk[4096];
    memset(chunk, 'r', sizeof chunk);
    (void)evl__buf_released(); /* count from here */
    size_t caps = 0;           /* the regions replaced, as seen from here */
    for (int i = 0; i < 16; i++) {
        size_t before = evl__buf_cap(&b);
        assert_int_equal(evl__buf_append(&b, chunk, sizeof chunk), 0);
        if (before && evl__buf_cap(&b) != before)
            caps += before;
    }
    assert_true(caps > 0); /* it grew at least once past its first region */
    assert_int_equal(evl__buf_released(), caps);
    size_t last = evl__buf_cap(&b);
    evl__buf_consume(&b, evl__buf_len(&b)); /* empty: the region goes back */
    assert_null(b.m);
    assert_int_equal(evl__buf_released(), last);
}

int main(void)
{
    tu_init_process();
    const struct CMUnitTest tests[] = {
        TU_TEST(test_buf_empty_holds_no_memory),
        TU_TEST(test_buf_zero_length_ops_allocate_nothing),
        TU_TEST(test_buf_append_consume_keeps_order),
        TU_TEST(test_buf_reserve_commit),
        TU_TEST(test_buf_drain_all),
        TU_TEST(test_buf_drain_k_bytes_per_call),
        TU_TEST(test_buf_drain_eagain_stops_and_resumes),
        TU_TEST(test_buf_drain_eintr_is_retried),
        TU_TEST(test_buf_drain_error_keeps_what_was_written_consumed),
        TU_TEST(test_buf_drain_respects_budget),
        TU_TEST(test_buf_drain_empty_calls_no_writer),
        TU_TEST(test_buf_capacity_bound_after_burst),
        TU_TEST(test_buf_check_detects_broken_buffers),
        TU_TEST(test_buf_overflowing_sizes_fail_with_enomem),
        TU_TEST(test_buf_random_ops_match_model),
        TU_TEST(test_buf_released_counts_growth_and_emptying),
    };
    return cmocka_run_group_tests_name("test_buf", tests, NULL, NULL);
}
