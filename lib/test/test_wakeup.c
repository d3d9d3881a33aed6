/*
 * evl_wakeup, the one thread-safe entry point: threads hammer it while the
 * loop runs, a signal handler calls it, and no wakeup is lost (one made
 * after the last on_wakeup always leads to another). Built twice: with
 * ASan+UBSan like every unit test, and with ThreadSanitizer
 * (build/tsan/test/test_wakeup), which sees any data race the wakeup path
 * has with the loop's thread.
 */
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static atomic_int wakeups;       /* on_wakeup calls */
static atomic_int sent;          /* evl_wakeup calls that returned 0 */
static evl_loop *the_loop;

static void on_wakeup(evl_loop *l)
{
    (void)l;
    atomic_fetch_add(&wakeups, 1);
}

static const evl_handler h = {.on_wakeup = on_wakeup};

static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2000; i++)
        if (evl_wakeup(the_loop) == 0)
            atomic_fetch_add(&sent, 1);
    return NULL;
}

/* Runs the loop until on_wakeup has been called more than `after` times. */
static bool run_until_woken(evl_loop *l, int after, int max_ms)
{
    uint64_t end = tu_now_ms() + (uint64_t)max_ms;
    while (atomic_load(&wakeups) <= after && tu_now_ms() < end)
        if (evl_run_once(l, 50) < 0)
            return false;
    return atomic_load(&wakeups) > after;
}

static void test_wakeup_from_threads_is_not_lost(void **state)
{
    (void)state;
    atomic_store(&wakeups, 0);
    atomic_store(&sent, 0);
    the_loop = evl_new(&h, NULL, NULL);
    assert_non_null(the_loop);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, NULL), 0);
    /* the loop runs while they call */
    uint64_t end = tu_now_ms() + 200;
    while (tu_now_ms() < end)
        assert_true(evl_run_once(the_loop, 10) >= 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(atomic_load(&sent), 4 * 2000);
    assert_true(run_until_woken(the_loop, 0, 2000));
    /* drained: nothing more without a new wakeup... */
    tu_now_ms();
    (void)evl_run_once(the_loop, 0);
    int seen = atomic_load(&wakeups);
    for (int i = 0; i < 5; i++)
        (void)evl_run_once(the_loop, 10);
    assert_int_equal(atomic_load(&wakeups), seen);
    /* ...and one more wakeup after the last call is not lost */
    assert_int_equal(evl_wakeup(the_loop), 0);
    assert_true(run_until_woken(the_loop, seen, 2000));
    evl_free(the_loop);
}

static void on_usr1(int sig)
{
    (void)sig;
    (void)evl_wakeup(the_loop); /* async-signal-safe: one write(2) */
}

static void test_wakeup_from_a_signal_handler(void **state)
{
    (void)state;
    atomic_store(&wakeups, 0);
    the_loop = evl_new(&h, NULL, NULL);
    assert_non_null(the_loop);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    assert_int_equal(raise(SIGUSR1), 0);
    assert_true(run_until_woken(the_loop, 0, 2000));
    assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
    evl_free(the_loop);
}

int main(void)
{
    tu_init_process();
    const struct CMUnitTest tests[] = {
        TU_TEST(test_wakeup_from_threads_is_not_lost),
        TU_TEST(test_wakeup_from_a_signal_handler),
    };
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TU_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) || defined(TU_TSAN)
    const char *group = "test_wakeup_tsan"; /* its own JUnit file beside the ASan run's */
#else
    const char *group = "test_wakeup";
#endif
    return cmocka_run_group_tests_name(group, tests, NULL, NULL);
}
