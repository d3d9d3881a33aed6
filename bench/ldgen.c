/* ldgen: the bench's load generator; the command line and the result line.
 *
 *   ldgen pingpong --port P [--conns 1] [--size 64] [--depth 1]
 *                  [--duration 3 | --msgs M] [--warmup 0.5] [--timeout 60] [--json]
 *   ldgen pump     --port P [--conns 1] [--size 65536] [--window 4194304]
 *                  [--duration 3] [--warmup 0.5] [--timeout 60] [--json]
 *   ldgen idle     --port P --pid PID [--conns 5000] [--settle 0.5] [--hold 0]
 *                  [--timeout 60] [--json]
 *
 * The server is always on 127.0.0.1. One result line on stdout (a JSON
 * object with --json); on failure "ldgen: FAIL: why" on stderr and exit 1;
 * bad arguments exit 2. */
#include "ldgen.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
    (void)fputs("usage: ldgen pingpong|pump|idle --port P [--conns N] [--size B] [--depth D]\n"
          "             [--msgs M | --duration S] [--warmup S] [--timeout S] [--window B]\n"
          "             [--pid PID] [--settle S] [--hold S] [--json]\n",
          stderr);
    exit(2);
}

static double num(const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        (void)fprintf(stderr, "ldgen: '%s' is not a number in [%g, %g]\n", s, lo, hi);
        usage();
    }
    return v;
}

static void parse(int argc, char **argv, ldgen_opts *o)
{
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "--port") == 0)
            o->port = (int)num(v, 1, 65535);
        else if (strcmp(a, "--conns") == 0)
            o->conns = (int)num(v, 1, LDGEN_MAX_CONNS);
        else if (strcmp(a, "--size") == 0)
            o->size = (size_t)num(v, 1, (double)LDGEN_MAX_SIZE);
        else if (strcmp(a, "--depth") == 0)
            o->depth = (int)num(v, 1, LDGEN_MAX_DEPTH);
        else if (strcmp(a, "--msgs") == 0) {
            o->msgs = (uint64_t)num(v, 0, 1e12);
            o->msgs_set = true;
        } else if (strcmp(a, "--duration") == 0)
            o->duration = num(v, 0.05, 600);
        else if (strcmp(a, "--warmup") == 0)
            o->warmup = num(v, 0, 60);
        else if (strcmp(a, "--timeout") == 0)
            o->timeout = num(v, 1, 3600);
        else if (strcmp(a, "--window") == 0)
            o->window = (size_t)num(v, 1, (double)(256u << 20));
        else if (strcmp(a, "--pid") == 0)
            o->pid = (int)num(v, 1, 4194304);
        else if (strcmp(a, "--settle") == 0)
            o->settle = num(v, 0, 60);
        else if (strcmp(a, "--hold") == 0)
            o->hold = num(v, 0, 3600);
        else
            usage();
    }
    if (!o->port)
        usage();
}

static void print_result(const char *mode, const ldgen_opts *o, const ldgen_result *r)
{
    if (strcmp(mode, "pingpong") == 0) {
        if (o->json)
            printf("{\"mode\":\"pingpong\",\"conns\":%d,\"size\":%zu,\"depth\":%d,\"msgs\":%llu,"
                   "\"secs\":%.3f,\"rate\":%.1f,\"unit\":\"msg/s\",\"p50_us\":%.1f,"
                   "\"p99_us\":%.1f,\"max_us\":%.1f}\n",
                   o->conns, o->size, o->depth, (unsigned long long)r->msgs, r->secs, r->rate,
                   r->p50_us, r->p99_us, r->max_us);
        else
            printf("pingpong conns=%d size=%zu depth=%d msgs=%llu secs=%.3f rate=%.1f msg/s "
                   "p50=%.1fus p99=%.1fus max=%.1fus\n",
                   o->conns, o->size, o->depth, (unsigned long long)r->msgs, r->secs, r->rate,
                   r->p50_us, r->p99_us, r->max_us);
    } else if (strcmp(mode, "pump") == 0) {
        if (o->json)
            printf("{\"mode\":\"pump\",\"conns\":%d,\"size\":%zu,\"window\":%zu,\"bytes\":%llu,"
                   "\"secs\":%.3f,\"rate\":%.1f,\"unit\":\"MB/s\"}\n",
                   o->conns, o->size, o->window, (unsigned long long)r->bytes, r->secs, r->rate);
        else
            printf("pump conns=%d size=%zu window=%zu bytes=%llu secs=%.3f rate=%.1f MB/s\n",
                   o->conns, o->size, o->window, (unsigned long long)r->bytes, r->secs, r->rate);
    } else {
        if (o->json)
            printf("{\"mode\":\"idle\",\"conns\":%d,\"rss_before_kb\":%ld,\"rss_after_kb\":%ld,"
                   "\"rate\":%.1f,\"unit\":\"B/conn\"}\n",
                   o->conns, r->rss_before_kb, r->rss_after_kb, r->rate);
        else
            printf("idle conns=%d rss_before=%ldkB rss_after=%ldkB rate=%.1f B/conn\n", o->conns,
                   r->rss_before_kb, r->rss_after_kb, r->rate);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *mode = argv[1];
    bool pp = strcmp(mode, "pingpong") == 0, pump = strcmp(mode, "pump") == 0,
         idle = strcmp(mode, "idle") == 0;
    if (!pp && !pump && !idle)
        usage();
    ldgen_opts o = {
        .conns = idle ? 5000 : 1,
        .size = pump ? (size_t)64 << 10 : 64,
        .depth = 1,
        .duration = 3,
        .warmup = 0.5,
        .timeout = 60,
        .window = (size_t)4 << 20,
        .settle = 0.5,
    };
    parse(argc, argv, &o);
    if (idle && !o.pid) {
        (void)fputs("ldgen: idle needs --pid of the server\n", stderr);
        usage();
    }
    if (o.msgs_set && !pp) {
        (void)fputs("ldgen: --msgs is for pingpong\n", stderr);
        usage();
    }
    /* The duration must fit inside the hard bound. */
    if (!o.msgs_set && o.warmup + o.duration + 5 > o.timeout)
        o.timeout = o.warmup + o.duration + 5;
    if (ldgen_fd_room(o.conns + (idle ? 64 : 16)) < 0) {
        ldgen_fail("the fd limit is below %d connections (ulimit -n)", o.conns);
        return 1;
    }
    (void)signal(SIGPIPE, SIG_IGN); /* sends use MSG_NOSIGNAL; this is for safety */

    ldgen_result r = {0};
    int rc = pp ? ldgen_pingpong(&o, &r) : pump ? ldgen_pump(&o, &r) : ldgen_idle(&o, &r);
    if (rc < 0)
        return 1;
    print_result(mode, &o, &r);
    return 0;
}
