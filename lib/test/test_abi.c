/*
 * The growth policy of docs/ABI.md: evl_handler, evl_options and struct
 * evl_stats grow only at their end, and the functions taking them get the
 * caller's sizeof (the macros evl_new, evl_options_default, evl_stats). A
 * caller built against an older header passes a smaller size: what it cannot
 * see keeps its default, stays NULL, or is not written. A newer caller's
 * extra tail is ignored. Simulated here by passing sizes by hand.
 */
#include "testutil.h"

#include <string.h>

static void test_version_is_the_headers(void **state)
{
    (void)state;
    assert_int_equal(evl_version(), EVL_VERSION_NUMBER);
    assert_int_equal(EVL_VERSION_NUMBER / 10000, EVL_VERSION_MAJOR);
}

static void test_options_default_writes_only_what_the_caller_has(void **state)
{
    (void)state;
    struct {
        evl_options o;
        unsigned char tail[16];
    } big;
    memset(&big, 0x5a, sizeof big);
    /* an older caller: no write_quantum, no max_events */
    size_t old = offsetof(evl_options, write_quantum);
    evl_options_default_sized(&big.o, old);
    assert_int_equal(big.o.tick_ms, 5000);
    assert_int_equal(big.o.max_conns, 0);
    const unsigned char *b = (const unsigned char *)&big;
    for (size_t i = old; i < sizeof big; i++)
        assert_int_equal(b[i], 0x5a);
    /* a newer caller: its tail is not ours to write */
    evl_options_default_sized(&big.o, sizeof big);
    assert_int_equal(big.o.max_events, 256);
    for (size_t i = 0; i < sizeof big.tail; i++)
        assert_int_equal(big.tail[i], 0x5a);
}

static void test_new_defaults_the_options_an_older_caller_lacks(void **state)
{
    (void)state;
    evl_handler h = {0};
    evl_options o;
    evl_options_default(&o);
    o.tick_ms = 7;
    o.write_quantum = 1; /* beyond the old size: must not be seen */
    o.max_events = 1;
    evl_loop *l = evl_new_sized(&h, sizeof h, NULL, &o, offsetof(evl_options, write_quantum));
    assert_non_null(l);
    const evl_options *got = evl_get_options(l);
    assert_int_equal(got->tick_ms, 7);
    assert_int_equal(got->write_quantum, 256 << 10);
    assert_int_equal(got->max_events, 256);
    evl_free(l);
}

static void test_new_ignores_a_newer_callers_tail(void **state)
{
    (void)state;
    struct {
        evl_handler h;
        void (*future)(void);
    } hb;
    struct {
        evl_options o;
        long future;
    } ob;
    memset(&hb, 0, sizeof hb);
    memset(&ob, 0xff, sizeof ob); /* a tail nobody here can interpret */
    evl_options_default(&ob.o);
    ob.o.max_conns = 3;
    evl_loop *l = evl_new_sized(&hb.h, sizeof hb, NULL, &ob.o, sizeof ob);
    assert_non_null(l);
    assert_int_equal(evl_get_options(l)->max_conns, 3);
    assert_null(hb.future); /* read-only to the library */
    assert_int_equal(ob.future, -1);
    evl_free(l);
}

static int stops;
static void count_stop(evl_loop *l)
{
    (void)l;
    stops++;
}

static void test_new_leaves_callbacks_an_older_caller_lacks_null(void **state)
{
    (void)state;
    evl_handler h = {.on_stop = count_stop};
    /* an older caller's handler ends before on_stop: on_stop is garbage to
     * it and must be NULL to the loop */
    evl_loop *l = evl_new_sized(&h, offsetof(evl_handler, on_stop), NULL, NULL, 0);
    assert_non_null(l);
    stops = 0;
    evl_stop(l);
    assert_int_equal(evl_run(l, -1), 0);
    assert_int_equal(stops, 0);
    evl_free(l);
    /* the same handler at full size: called */
    l = evl_new(&h, NULL, NULL);
    assert_non_null(l);
    evl_stop(l);
    assert_int_equal(evl_run(l, -1), 0);
    assert_int_equal(stops, 1);
    evl_free(l);
}

static void test_stats_writes_only_the_counters_the_caller_sees(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_pair(s);
    tu_step(s, 0);
    struct {
        struct evl_stats st;
        uint64_t future;
    } big;
    memset(&big, 0x5a, sizeof big);
    size_t old = offsetof(struct evl_stats, ticks);
    evl_stats_sized(s->l, &big.st, old);
    assert_int_equal(big.st.conns, 1);
    assert_int_equal(big.st.accepted, 1);
    const unsigned char *b = (const unsigned char *)&big;
    for (size_t i = old; i < sizeof big; i++)
        assert_int_equal(b[i], 0x5a);
    evl_stats_sized(s->l, &big.st, sizeof big);
    assert_true(big.st.iterations >= 1);
    assert_int_equal(big.future, 0x5a5a5a5a5a5a5a5aULL);
    tu_finish(s);
}

int main(void)
{
    tu_init_process();
    const struct CMUnitTest tests[] = {
        TU_TEST(test_version_is_the_headers),
        TU_TEST(test_options_default_writes_only_what_the_caller_has),
        TU_TEST(test_new_defaults_the_options_an_older_caller_lacks),
        TU_TEST(test_new_ignores_a_newer_callers_tail),
        TU_TEST(test_new_leaves_callbacks_an_older_caller_lacks_null),
        TU_TEST(test_stats_writes_only_the_counters_the_caller_sees),
    };
    return cmocka_run_group_tests_name("test_abi", tests, NULL, NULL);
}
