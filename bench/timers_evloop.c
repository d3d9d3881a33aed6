/* bench/timers_evloop.c: a million timers armed and fired on evloop's heap,
 * the shape of libuv's million_timers benchmark (timer i due at i/1000 + 1
 * ms, so a thousand share each millisecond). Prints one line:
 *   timers N arm_ms A fire_ms F total_ms T cpu_ms C
 * bench/timers_libuv.c is the same program on libuv. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "evloop.h"

#define N 1000000

static int fired;

static void on_timer(evl_timer *t, void *arg)
{
    (void)t;
    (void)arg;
    fired++;
}

/* CPU time of the process, user + system: the work, not the waiting (the
 * last timer is due a second after the first, whoever runs them). */
static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(void)
{
    evl_handler h = {0};
    evl_options o;
    evl_options_default(&o);
    o.tick_ms = 0;
    evl_loop *l = evl_new(&h, NULL, &o);
    if (!l)
        return 1;
    double c0 = cpu_ms();
    double t0 = now_ms();
    for (int i = 0; i < N; i++) {
        /* the loop owns its timers: evl_free frees them */
        evl_timer *t = evl_timer_new(l, on_timer, NULL);
        if (!t || evl_timer_start(t, (uint64_t)i / 1000 + 1, 0) < 0)
            return 1;
    }
    double t1 = now_ms();
    while (fired < N)
        if (evl_run_once(l, -1) < 0)
            return 1;
    double t2 = now_ms();
    printf("timers %d arm_ms %.1f fire_ms %.1f total_ms %.1f cpu_ms %.1f\n", N, t1 - t0, t2 - t1, t2 - t0,
           cpu_ms() - c0);
    evl_free(l); /* frees the timers */
    return 0;
}
