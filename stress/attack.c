/* attack.c: the `attack` scenario: a real attacker (slowhttptest, started
 * here from the command after "--") against evl-testsrv --mode http, judged
 * from outside.
 *
 * A probe sends "GET /" every --probe-ms on one keep-alive connection before,
 * during and after the attack; /proc/PID (RSS, CPU), the server's kernel send
 * queues and the host's sockstat TCP memory are sampled over time (and
 * written to --samples-csv). The attacker exits 0 whatever happened, so its
 * own CSV (--attack-csv) says how many connections it really had. Then, once
 * the server holds no attacker connection any more, --after-ms later:
 *   - probe p99 <= --max-p99-ms and max <= --max-ms (the whole run);
 *   - RSS <= --rss-ratio x the RSS before the attack (memory given back);
 *   - peak RSS <= RSS before + peak connections x --rss-per-conn-kb (the
 *     bound the watermarks give; run.sh states how it computes it);
 *   - the server still answers (the probe) and is alive; run.sh then checks
 *     that it exits 0 on SIGTERM. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "observe.h"
#include "probe.h"
#include "stress.h"

extern char **environ;

#define SAMPLE_US 250000u

struct attack {
    const struct opts *o;
    struct row *row;
    struct driver drv;
    struct probe probe;
    struct procmon mon;
    struct kernmon km;
    FILE *samples;
    uint64_t t0, next_sample;
    bool drv_ok;
    pid_t pid; /* the attacker, 0 once reaped */
    int status;
    bool failed;
};

static void attack_fail(struct attack *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void attack_fail(struct attack *a, const char *fmt, ...)
{
    if (a->failed)
        return;
    a->failed = true;
    char why[sizeof a->row->result - sizeof a->row->name - 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap); /* NOLINT(clang-analyzer-valist.Uninitialized): va_start is two lines up; clang-14 false positive */
    va_end(ap);
    snprintf(a->row->result, sizeof a->row->result, "FAIL: %s: %s", a->row->name, why);
}

static void sample(struct attack *a, const char *phase, uint64_t now)
{
    if (!a->samples)
        return;
    fprintf(a->samples, "%s,%.2f,%s,%lld,%lld,%lld,%lld\n", a->row->name,
            (double)(now - a->t0) / 1e6, phase, a->mon.rss_kb, a->km.sndq, a->km.socks,
            a->km.tcp_pages);
}

/* One batch of events and the periodic work (the attacker reaped when it
 * exits). -1 once the run has failed: the server gone, the probe broken (the
 * server stopped answering), or deadline_us passed. */
static int step(struct attack *a, const char *phase, uint64_t deadline_us)
{
    if (drv_poll(&a->drv, 1) < 0) {
        attack_fail(a, "epoll_wait: %s", strerror(errno));
        return -1;
    }
    uint64_t now = a->drv.now;
    probe_tick(&a->probe, now);
    procmon_tick(&a->mon, now);
    kernmon_tick(&a->km, now);
    if (now >= a->next_sample) {
        a->next_sample = now + SAMPLE_US;
        sample(a, phase, now);
    }
    if (a->pid > 0 && waitpid(a->pid, &a->status, WNOHANG) == a->pid)
        a->pid = 0;
    if (a->mon.gone)
        attack_fail(a, "server pid %d has exited", a->o->server_pid);
    else if (a->probe.err[0])
        attack_fail(a, "%s", a->probe.err);
    else if (now > deadline_us)
        attack_fail(a, "hard deadline passed while %s", phase);
    return a->failed ? -1 : 0;
}

static pid_t spawn_attacker(struct attack *a, char **argv)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    const char *log = a->o->attack_log ? a->o->attack_log : "/dev/null";
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        attack_fail(a, "cannot start %s: %s", argv[0], strerror(rc));
        return 0;
    }
    return pid;
}

/* slowhttptest's CSV: "Seconds,Closed,Pending,Connected,Service Available".
 * Peak connected, and the last line's closed/pending/connected. -1 if it is
 * missing or holds no sample. */
struct attack_csv {
    long seconds, peak_connected, closed, pending, connected;
};

static int read_attack_csv(const char *path, struct attack_csv *c)
{
    memset(c, 0, sizeof *c);
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f)
        return -1;
    char line[256];
    int rows = 0;
    while (fgets(line, sizeof line, f)) {
        long s, cl, pe, co;
        if (sscanf(line, "%ld,%ld,%ld,%ld", &s, &cl, &pe, &co) != 4)
            continue;
        rows++;
        c->seconds = s;
        c->closed = cl;
        c->pending = pe;
        c->connected = co;
        if (co > c->peak_connected)
            c->peak_connected = co;
    }
    fclose(f);
    return rows > 0 ? 0 : -1;
}

/* Stops the attacker if it still runs (a deadline passed): by its PID. */
static void reap_attacker(struct attack *a)
{
    if (a->pid <= 0)
        return;
    kill(a->pid, SIGKILL);
    (void)waitpid(a->pid, &a->status, 0);
    a->pid = 0;
}

static void judge(struct attack *a, long long rss_before, long long rss_after,
                  const struct attack_csv *csv, int csv_ok)
{
    const struct opts *o = a->o;
    struct row *r = a->row;
    long long conns = a->km.socks_peak > 1 ? a->km.socks_peak - 1 : 0; /* less the probe */
    long long bound = rss_before + conns * (long long)o->rss_per_conn_kb;
    if (csv_ok < 0)
        attack_fail(a, "no samples in the attacker's CSV %s (did it run?)",
                    o->attack_csv ? o->attack_csv : "(none given)");
    else if (csv->peak_connected + csv->closed == 0)
        attack_fail(a, "the attacker never connected (its CSV: 0 connected, 0 closed)");
    if (r->probes == 0)
        attack_fail(a, "no probe round trip measured");
    if ((double)r->p99_us > o->max_p99_ms * 1000.0)
        attack_fail(a, "probe p99 %.1f ms > %.1f ms", (double)r->p99_us / 1000.0, o->max_p99_ms);
    if ((double)r->max_us > o->max_ms * 1000.0)
        attack_fail(a, "probe max %.1f ms > %.1f ms", (double)r->max_us / 1000.0, o->max_ms);
    if ((double)rss_after > o->rss_ratio * (double)rss_before)
        attack_fail(a, "RSS %.1f MiB %.1f s after the last attacker left > %.1fx %.1f MiB before",
                    (double)rss_after / 1024.0, o->after_ms / 1000.0, o->rss_ratio,
                    (double)rss_before / 1024.0);
    if (o->rss_per_conn_kb > 0 && (long long)r->rss_peak_kb > bound)
        attack_fail(a, "peak RSS %.1f MiB > bound %.1f MiB (%.1f before + %lld conns x %d KiB)",
                    (double)r->rss_peak_kb / 1024.0, (double)bound / 1024.0,
                    (double)rss_before / 1024.0, conns, o->rss_per_conn_kb);
    long long lim[3];
    tcp_mem_limits(lim);
    char peak[32];
    fmt_bytes(peak, sizeof peak, r->rss_peak_kb * 1024);
    snprintf(r->detail, sizeof r->detail,
             "attacker: %ld s, %ld connected at peak, %ld closed, %ld pending at the end; "
             "server: %lld conns at peak, RSS %.1f MiB before, %s peak (bound %.1f MiB), "
             "%.1f MiB %.1f s after; sockstat TCP mem peak %lld pages (tcp_mem %lld %lld %lld)",
             csv->seconds, csv->peak_connected, csv->closed, csv->pending, conns,
             (double)rss_before / 1024.0, peak, (double)bound / 1024.0,
             (double)rss_after / 1024.0, o->after_ms / 1000.0, a->km.tcp_pages_peak, lim[0],
             lim[1], lim[2]);
}

int run_attack(const struct opts *o, struct row *r)
{
    struct attack a = {.o = o, .row = r};
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", o->label ? o->label : "attack");
    snprintf(r->result, sizeof r->result, "PASS");
    if (o->guard_report)
        snprintf(r->guard_file, sizeof r->guard_file, "%s", o->guard_report);
    if (!o->attacker || !o->attacker[0]) {
        attack_fail(&a, "no attacker command (give it after --)");
        return 1;
    }
    if (o->samples_csv && (a.samples = fopen(o->samples_csv, "a")) && ftell(a.samples) == 0)
        fprintf(a.samples, "scenario,seconds,phase,rss_kb,sendq_bytes,server_conns,tcp_mem_pages\n");
    double seconds = o->seconds > 0 ? o->seconds : 15;
    a.t0 = now_us();
    uint64_t deadline = a.t0 + 10000000u;
    long long rss_before = 0, rss_after = 0;
    if (drv_init(&a.drv) < 0) {
        attack_fail(&a, "epoll_create1: %s", strerror(errno));
        goto out;
    }
    a.drv_ok = true;
    procmon_start(&a.mon, o->server_pid);
    kernmon_start(&a.km, target_port(&o->target));
    if (probe_start(&a.probe, &a.drv, &o->target, o->probe_ms, true, NULL, r->name) < 0) {
        attack_fail(&a, "connect %s: %s", o->target.text, strerror(errno));
        goto out;
    }
    /* before: the probe answered, and half a second of quiet for the RSS */
    while (a.probe.h.n == 0 && step(&a, "before", deadline) == 0) {
    }
    uint64_t quiet = a.drv.now + 500000u;
    while (!a.failed && a.drv.now < quiet && step(&a, "before", deadline) == 0) {
    }
    if (a.failed)
        goto out;
    procmon_tick(&a.mon, (uint64_t)-1);
    rss_before = a.mon.rss_kb;
    a.mon.rss_peak_kb = rss_before;
    a.mon.cpu0 = a.mon.cpu;
    kernmon_start(&a.km, a.km.port);

    a.pid = spawn_attacker(&a, o->attacker);
    deadline = a.drv.now + (uint64_t)((seconds + o->timeout_s) * 1e6);
    while (a.pid > 0 && step(&a, "attack", deadline) == 0) {
    }
    /* the attacker is gone: its connections must leave the server too */
    uint64_t left_by = a.drv.now + (uint64_t)o->settle_ms * 1000u;
    while (!a.failed && a.km.socks > 1) {
        if (a.drv.now > left_by) {
            attack_fail(&a, "the server still holds %lld connections %d ms after the attacker "
                            "exited", a.km.socks - 1, o->settle_ms);
            break;
        }
        (void)step(&a, "leaving", left_by + 1000000u);
    }
    uint64_t after = a.drv.now + (uint64_t)o->after_ms * 1000u;
    while (!a.failed && a.drv.now < after && step(&a, "after", after + 1000000u) == 0) {
    }
    procmon_tick(&a.mon, (uint64_t)-1);
    kernmon_tick(&a.km, (uint64_t)-1);
    rss_after = a.mon.rss_kb;
out:
    reap_attacker(&a);
    probe_stop(&a.probe, now_us());
    r->probes = a.probe.h.n;
    r->p50_us = hist_pct(&a.probe.hc, 50);
    r->p99_us = hist_pct(&a.probe.hc, 99);
    r->max_us = a.probe.h.max;
    r->rss_peak_kb = a.mon.rss_peak_kb > 0 ? (uint64_t)a.mon.rss_peak_kb : 0;
    if (a.mon.cpu > a.mon.cpu0)
        r->cpu_ms = (uint64_t)((a.mon.cpu - a.mon.cpu0) * 1000.0);
    r->sndq_peak = a.km.sndq_peak > 0 ? (uint64_t)a.km.sndq_peak : 0;
    r->tcp_mem_peak_kb = pages_kb(a.km.tcp_pages_peak);
    struct attack_csv csv;
    int csv_ok = read_attack_csv(o->attack_csv, &csv);
    r->conns = (int)csv.peak_connected;
    judge(&a, rss_before, rss_after, &csv, csv_ok); /* after a failure: the detail only */
    if (a.samples)
        fclose(a.samples);
    if (a.drv_ok)
        drv_free(&a.drv);
    return a.failed ? 1 : 0;
}
