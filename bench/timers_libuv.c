/* bench/timers_libuv.c: bench/timers_evloop.c on libuv (uv_timer_t, caller-
 * allocated): the same million timers, the same output line. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <uv.h>

#define N 1000000

static int fired;

static void on_timer(uv_timer_t *t)
{
    (void)t;
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
    uv_loop_t *loop = uv_default_loop();
    uv_timer_t *t = malloc(N * sizeof *t);
    if (!t)
        return 1;
    double c0 = cpu_ms();
    double t0 = now_ms();
    for (int i = 0; i < N; i++) {
        if (uv_timer_init(loop, &t[i]) != 0 || uv_timer_start(&t[i], on_timer, (uint64_t)i / 1000 + 1, 0) != 0) {
            free(t);
            return 1;
        }
    }
    double t1 = now_ms();
    while (fired < N)
        (void)uv_run(loop, UV_RUN_ONCE);
    double t2 = now_ms();
    printf("timers %d arm_ms %.1f fire_ms %.1f total_ms %.1f cpu_ms %.1f\n", N, t1 - t0, t2 - t1, t2 - t0,
           cpu_ms() - c0);
    for (int i = 0; i < N; i++)
        uv_close((uv_handle_t *)&t[i], NULL);
    (void)uv_run(loop, UV_RUN_DEFAULT);
    free(t);
    return 0;
}
