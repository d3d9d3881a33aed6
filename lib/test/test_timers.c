/*
 * Timers (evl_timer_*): firing time and order against a model, periodic
 * timers, stop/re-arm/free from any callback including their own, a timer
 * re-armed at 0 cannot hold the loop, errors, and evl_free taking the rest.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fired {
    int count;
    uint64_t at[64];       /* tu_now_ms() of each call */
    int order[256];        /* ids in firing order */
    int norder;
} fired;

static fired F;

static int ids[256]; /* ids[i] == i: what a timer's arg points to */

static void record(evl_timer *t, void *arg)
{
    (void)t;
    int id = arg ? *(const int *)arg : -1;
    if (F.count < 64)
        F.at[F.count] = tu_now_ms();
    F.count++;
    if (F.norder < 256)
        F.order[F.norder++] = id;
}

static void reset(void)
{
    memset(&F, 0, sizeof F);
    for (int i = 0; i < 256; i++)
        ids[i] = i;
}

static void test_timer_one_shot_fires_once_not_early(void **state)
{
    (void)state;
    reset();
    tu_state *s = tu_new(NULL, TU_HOLD);
    evl_timer *t = evl_timer_new(s->l, record, &ids[1]);
    assert_non_null(t);
    assert_false(evl_timer_pending(t));
    assert_ptr_equal(evl_timer_loop(t), s->l);
    uint64_t t0 = tu_now_ms();
    assert_int_equal(evl_timer_start(t, 100, 0), 0);
    assert_true(evl_timer_pending(t));
    TU_RUN_UNTIL(s, F.count == 1, 3000);
    assert_true(F.at[0] >= t0 + 100);
    assert_false(evl_timer_pending(t));
    tu_run_for(s, 200);
    assert_int_equal(F.count, 1);
    evl_timer_free(t);
    tu_finish(s);
}

/* Many timers with random deadlines, some stopped and some re-armed: they
 * fire in deadline order (ties in start order), stopped ones never. The
 * model is a plain array sorted at the end. */
static void test_timer_order_matches_a_model(void **state)
{
    (void)state;
    reset();
    enum { N = 200 };
    tu_state *s = tu_new(NULL, TU_HOLD);
    static evl_timer *t[N];
    static uint64_t due[N];
    static bool live[N];
    srand(7);
    for (int i = 0; i < N; i++) {
        t[i] = evl_timer_new(s->l, record, &ids[i]);
        assert_non_null(t[i]);
        due[i] = (uint64_t)(rand() % 40) * 5; /* 0..195 ms, many ties */
        assert_int_equal(evl_timer_start(t[i], due[i], 0), 0);
        live[i] = true;
    }
    for (int k = 0; k < N / 2; k++) { /* stop or re-arm some, at random */
        int i = rand() % N;
        if (rand() % 2) {
            evl_timer_stop(t[i]);
            live[i] = false;
        } else {
            due[i] = (uint64_t)(rand() % 40) * 5 + 200; /* later than all first starts */
            assert_int_equal(evl_timer_start(t[i], due[i], 0), 0);
            live[i] = true;
        }
    }
    int want = 0;
    for (int i = 0; i < N; i++)
        want += live[i];
    TU_RUN_UNTIL(s, F.norder == want, 5000);
    tu_run_for(s, 50);
    assert_int_equal(F.norder, want);
    for (int k = 0; k < F.norder; k++)
        assert_true(live[F.order[k]]);
    /* due times were relative to slightly different start instants (the
     * clock moves), so check order only between timers whose deadlines
     * differ by more than the test's own run time */
    for (int k = 1; k < F.norder; k++) {
        int a = F.order[k - 1], b = F.order[k];
        if (due[a] > due[b] + 20)
            TU_FAIL("timer %d (due %llu) fired before timer %d (due %llu)", a,
                    (unsigned long long)due[a], b, (unsigned long long)due[b]);
    }
    for (int i = 0; i < N; i++)
        evl_timer_free(t[i]);
    tu_finish(s);
}

/* The same, judged in one timer pass: armed, stopped and re-armed at random
 * (stops from the middle of the heap move its last element there), then
 * every deadline passes and a single evl_run_once fires them all: the heap
 * alone decides the order, which must be the deadlines' to within the time
 * the arming took. A heap left out of order by a stop shows at once. */
static void test_timer_one_pass_fires_in_deadline_order(void **state)
{
    (void)state;
    enum { N = 200 };
    tu_state *s = tu_new(NULL, TU_HOLD);
    static evl_timer *t[N];
    static uint64_t after[N];
    static bool live[N];
    for (int round = 0; round < 5; round++) {
        reset();
        srand(100 + (unsigned)round);
        uint64_t t0 = tu_now_ms();
        for (int i = 0; i < N; i++) {
            t[i] = evl_timer_new(s->l, record, &ids[i]);
            assert_non_null(t[i]);
            after[i] = (uint64_t)(rand() % 40) * 5;
            assert_int_equal(evl_timer_start(t[i], after[i], 0), 0);
            live[i] = true;
        }
        for (int k = 0; k < 3 * N; k++) {
            int i = rand() % N;
            if (rand() % 3 == 0) {
                evl_timer_stop(t[i]);
                live[i] = false;
            } else {
                after[i] = (uint64_t)(rand() % 40) * 5;
                assert_int_equal(evl_timer_start(t[i], after[i], 0), 0);
                live[i] = true;
            }
        }
        uint64_t arming = tu_now_ms() - t0 + 1; /* start instants differ by at most this */
        int want = 0;
        for (int i = 0; i < N; i++)
            want += live[i];
        usleep((useconds_t)(200 + arming) * 1000);
        assert_true(evl_run_once(s->l, 0) >= 0);
        assert_int_equal(F.norder, want);
        for (int k = 1; k < F.norder; k++) {
            int a = F.order[k - 1], b = F.order[k];
            assert_true(live[a] && live[b]);
            if (after[a] > after[b] + arming)
                TU_FAIL("round %d: timer %d (%llu ms) fired before timer %d (%llu ms) in one pass", round, a,
                        (unsigned long long)after[a], b, (unsigned long long)after[b]);
        }
        for (int i = 0; i < N; i++)
            evl_timer_free(t[i]);
    }
    tu_finish(s);
}

/* ---- callbacks that act on their own timer ------------------------------- */

static int periodic_calls;

static void stop_self_at_3(evl_timer *t, void *arg)
{
    (void)arg;
    if (++periodic_calls == 3)
        evl_timer_stop(t);
}

static void test_timer_periodic_and_stop_from_own_callback(void **state)
{
    (void)state;
    periodic_calls = 0;
    tu_state *s = tu_new(NULL, TU_HOLD);
    evl_timer *t = evl_timer_new(s->l, stop_self_at_3, NULL);
    assert_int_equal(evl_timer_start(t, 10, 20), 0);
    TU_RUN_UNTIL(s, periodic_calls == 3, 3000);
    tu_run_for(s, 150);
    assert_int_equal(periodic_calls, 3);
    assert_false(evl_timer_pending(t));
    evl_timer_free(t);
    tu_finish(s);
}

static void free_self(evl_timer *t, void *arg)
{
    (void)arg;
    periodic_calls++;
    evl_timer_free(t); /* ASan sees any later use */
}

static void test_timer_free_from_own_periodic_callback(void **state)
{
    (void)state;
    periodic_calls = 0;
    tu_state *s = tu_new(NULL, TU_HOLD);
    evl_timer *t = evl_timer_new(s->l, free_self, NULL);
    assert_int_equal(evl_timer_start(t, 5, 5), 0);
    TU_RUN_UNTIL(s, periodic_calls == 1, 3000);
    tu_run_for(s, 100);
    assert_int_equal(periodic_calls, 1);
    tu_finish(s);
}

/* A timer re-armed at 0 from its own callback fires once per iteration:
 * the loop still serves a connection meanwhile. */
static void rearm_zero(evl_timer *t, void *arg)
{
    (void)arg;
    periodic_calls++;
    (void)evl_timer_start(t, 0, 0);
}

static void test_timer_rearmed_at_zero_does_not_hold_the_loop(void **state)
{
    (void)state;
    periodic_calls = 0;
    tu_state *s = tu_new(NULL, TU_LINE_ECHO);
    tu_rec *r = tu_pair(s);
    evl_timer *t = evl_timer_new(s->l, rearm_zero, NULL);
    assert_int_equal(evl_timer_start(t, 0, 0), 0);
    tu_peer_sends(r->peer, "ping\n");
    int steps = 0;
    while (r->in.len < 5 && steps < 1000) {
        tu_step(s, 10);
        steps++;
        if (periodic_calls > steps)
            TU_FAIL("%d timer calls in %d iterations", periodic_calls, steps);
    }
    tu_peer_expect(s, r->peer, "ping\n", 2000);
    evl_timer_free(t);
    tu_finish(s);
}

/* Stopping another timer from a callback in the same pass: it does not fire. */
static evl_timer *victim;
static void stop_victim(evl_timer *t, void *arg)
{
    (void)t;
    (void)arg;
    periodic_calls++;
    evl_timer_free(victim);
    victim = NULL;
}

static void test_timer_stop_other_due_in_the_same_pass(void **state)
{
    (void)state;
    reset();
    periodic_calls = 0;
    tu_state *s = tu_new(NULL, TU_HOLD);
    evl_timer *a = evl_timer_new(s->l, stop_victim, NULL);
    victim = evl_timer_new(s->l, record, &ids[2]);
    assert_int_equal(evl_timer_start(a, 20, 0), 0);
    assert_int_equal(evl_timer_start(victim, 20, 0), 0); /* same due, started after a */
    tu_run_for(s, 200);
    assert_int_equal(periodic_calls, 1);
    assert_int_equal(F.count, 0);
    evl_timer_free(a);
    tu_finish(s);
}

static void test_timer_errors_and_free_by_loop(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    errno = 0;
    assert_null(evl_timer_new(s->l, NULL, NULL));
    assert_int_equal(errno, EINVAL);
    evl_timer *t = evl_timer_new(s->l, record, NULL);
    errno = 0;
    assert_int_equal(evl_timer_start(t, UINT64_MAX, 0), -1);
    assert_int_equal(errno, EINVAL);
    assert_false(evl_timer_pending(t));
    /* 2^63 - 1 ms is the largest time taken ("EINVAL: a time >= 2^63 ms") */
    assert_int_equal(evl_timer_start(t, UINT64_MAX / 2, UINT64_MAX / 2), 0);
    assert_true(evl_timer_pending(t));
    errno = 0;
    assert_int_equal(evl_timer_start(t, 0, UINT64_MAX / 2 + 1), -1);
    assert_int_equal(errno, EINVAL);
    evl_timer_stop(t);
    assert_int_equal(evl_timer_start(t, 1000, 1000), 0);
    evl_timer_free(NULL);
    /* t and a second, unstarted timer are left to evl_free: ASan's leak
     * check fails the test if it does not free them */
    assert_non_null(evl_timer_new(s->l, record, NULL));
    tu_finish(s);
}

/* The library's own deadlines share the heap with user timers: many user
 * timers do not delay an idle timeout or the tick. */
static void test_timer_many_user_timers_do_not_disturb_idle_and_tick(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.idle_timeout_ms = 150;
    o.tick_ms = 50;
    tu_state *s = tu_new(&o, TU_HOLD);
    for (int i = 0; i < 1000; i++) {
        evl_timer *t = evl_timer_new(s->l, record, NULL);
        assert_int_equal(evl_timer_start(t, 60000 + (uint64_t)i, 0), 0);
    }
    tu_rec *r = tu_pair(s);
    uint64_t t0 = tu_now_ms();
    TU_RUN_UNTIL(s, r->closes == 1, 3000);
    assert_true(tu_now_ms() - t0 >= 150);
    assert_int_equal(tu_stats(s).idle_closed, 1);
    TU_RUN_UNTIL(s, s->ticks >= 3, 3000);
    tu_finish(s); /* frees the 1000 timers */
}

int main(void)
{
    tu_init_process();
    const struct CMUnitTest tests[] = {
        TU_TEST(test_timer_one_shot_fires_once_not_early),
        TU_TEST(test_timer_order_matches_a_model),
        TU_TEST(test_timer_one_pass_fires_in_deadline_order),
        TU_TEST(test_timer_periodic_and_stop_from_own_callback),
        TU_TEST(test_timer_free_from_own_periodic_callback),
        TU_TEST(test_timer_rearmed_at_zero_does_not_hold_the_loop),
        TU_TEST(test_timer_stop_other_due_in_the_same_pass),
        TU_TEST(test_timer_errors_and_free_by_loop),
        TU_TEST(test_timer_many_user_timers_do_not_disturb_idle_and_tick),
    };
    return cmocka_run_group_tests_name("test_timers", tests, NULL, NULL);
}
