/* session.c: the frame around every scenario (see session.h). */
#include "session.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Last resort if evl-stress itself hangs (a bug here, not in the server):
 * the deadline checks in the loops should always come first. */
static void watchdog(int sig)
{
    (void)sig;
    static const char msg[] = "FAIL: watchdog: evl-stress did not finish in time\n";
    ssize_t r = write(1, msg, sizeof msg - 1);
    (void)r;
    _exit(1);
}

void session_fail(struct session *ss, const char *fmt, ...)
{
    if (ss->failed)
        return;
    ss->failed = true;
    char why[sizeof ss->row->result - sizeof ss->row->name - 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap); /* NOLINT(clang-analyzer-valist.Uninitialized): va_start is two lines up; clang-14 false positive */
    va_end(ap);
    snprintf(ss->row->result, sizeof ss->row->result, "FAIL: %s: %s", ss->row->name, why);
}

int session_poll(struct session *ss)
{
    if (ss->failed)
        return -1;
    if (drv_poll(&ss->drv, 1) < 0)
        session_fail(ss, "epoll_wait: %s", strerror(errno));
    uint64_t now = ss->drv.now;
    probe_tick(&ss->probe, now);
    statsconn_tick(&ss->sc, now);
    procmon_tick(&ss->mon, now);
    kernmon_tick(&ss->km, now);
    if (ss->mon.gone)
        session_fail(ss, "server pid %d has exited", ss->o->server_pid);
    else if (ss->probe.err[0])
        session_fail(ss, "%s", ss->probe.err);
    else if (ss->sc.err[0])
        session_fail(ss, "%s", ss->sc.err);
    else if (now > ss->deadline)
        session_fail(ss, "hard deadline passed (%.0f s)", (double)(ss->deadline - ss->t0) / 1e6);
    return ss->failed ? -1 : 0;
}

int session_stats_now(struct session *ss, struct srvstats *st)
{
    uint64_t want = ss->sc.replies + (ss->sc.waiting ? 2 : 1);
    uint64_t until = now_us() + 5000000u;
    ss->sc.force = true;
    while (ss->sc.replies < want) {
        if (session_poll(ss) < 0)
            return -1;
        if (ss->sc.waiting == false && ss->sc.replies < want)
            ss->sc.force = true;
        if (ss->drv.now > until) {
            session_fail(ss, "no STATS reply within 5 s (server hung?)");
            return -1;
        }
    }
    *st = ss->sc.last;
    return 0;
}

int session_begin(struct session *ss, const struct opts *o, struct row *row, const char *name,
                  double budget_s)
{
    memset(ss, 0, sizeof *ss);
    ss->o = o;
    ss->row = row;
    memset(row, 0, sizeof *row);
    snprintf(row->name, sizeof row->name, "%s", o->label ? o->label : name);
    snprintf(row->result, sizeof row->result, "PASS");
    if (o->guard_report)
        snprintf(row->guard_file, sizeof row->guard_file, "%s", o->guard_report);
    signal(SIGALRM, watchdog);
    alarm((unsigned)(budget_s + o->timeout_s + o->settle_ms / 1000.0 + 30.0));
    /* appended to, so that the scenarios of one run share one file */
    if (o->latency_csv && !(ss->csv = fopen(o->latency_csv, "a")))
        fprintf(stderr, "evl-stress: %s: %s (no latency CSV)\n", o->latency_csv, strerror(errno));
    if (ss->csv && ftell(ss->csv) == 0)
        fprintf(ss->csv, "scenario,seconds,rtt_ms\n");
    ss->t0 = now_us();
    ss->deadline = ss->t0 + 10000000u; /* for the greeting below */
    if (drv_init(&ss->drv) < 0) {
        session_fail(ss, "epoll_create1: %s", strerror(errno));
        return -1;
    }
    procmon_start(&ss->mon, o->server_pid);
    kernmon_start(&ss->km, target_port(&o->target));
    if (statsconn_open(&ss->sc, &ss->drv, &o->target) < 0 ||
        probe_start(&ss->probe, &ss->drv, &o->target, o->probe_ms, false, ss->csv,
                    row->name) < 0) {
        session_fail(ss, "connect %s: %s", o->target.text, strerror(errno));
        return -1;
    }
    /* the server answers both before the load starts: the baseline counters
     * include them, and a dead server fails here, not as a load error */
    while (ss->probe.h.n == 0)
        if (session_poll(ss) < 0)
            return -1;
    if (session_stats_now(ss, &ss->first) < 0)
        return -1;
    ss->t0 = now_us();
    ss->probe.t0 = ss->t0;
    ss->deadline = ss->t0 + (uint64_t)((budget_s + o->timeout_s) * 1e6);
    ss->mon.rss_peak_kb = 0;
    ss->mon.cpu0 = ss->mon.cpu;
    kernmon_start(&ss->km, ss->km.port); /* peaks from here */
    ss->sc.peak_wbuf_bytes = 0;
    ss->sc.peak_rss_kb = 0;
    return 0;
}

/* After the load: the server must drop every closed connection and every
 * buffered byte. Leftovers are leaks a short test would never see. */
static void settle(struct session *ss)
{
    uint64_t until = now_us() + (uint64_t)ss->o->settle_ms * 1000u;
    struct srvstats st;
    for (;;) {
        if (session_stats_now(ss, &st) < 0)
            return;
        if (st.conns == 1 && st.wbuf_bytes == 0)
            return;
        if (now_us() > until) {
            session_fail(ss, "server did not settle within %d ms: conns=%lld (want 1) wbuf_bytes=%lld",
                         ss->o->settle_ms, st.conns, st.wbuf_bytes);
            return;
        }
        uint64_t nap = now_us() + 50000u;
        while (ss->drv.now < nap)
            if (session_poll(ss) < 0)
                return;
    }
}

int session_end(struct session *ss)
{
    const struct opts *o = ss->o;
    struct row *r = ss->row;
    uint64_t now = now_us();
    probe_stop(&ss->probe, now);
    /* a failed session may have lost the server: settling is only asked of
     * a server that passed so far */
    ss->deadline = now + (uint64_t)o->settle_ms * 1000u + 10000000u;
    if (!ss->failed)
        settle(ss);
    procmon_tick(&ss->mon, (uint64_t)-1);
    r->sndq_peak = ss->km.sndq_peak > 0 ? (uint64_t)ss->km.sndq_peak : 0;
    r->tcp_mem_peak_kb = pages_kb(ss->km.tcp_pages_peak);
    r->probes = ss->probe.h.n;
    r->p50_us = hist_pct(&ss->probe.hc, 50);
    r->p99_us = hist_pct(&ss->probe.hc, 99);
    r->max_us = ss->probe.h.max;
    long long rss = ss->mon.rss_peak_kb > ss->sc.peak_rss_kb ? ss->mon.rss_peak_kb
                                                              : ss->sc.peak_rss_kb;
    r->rss_peak_kb = rss > 0 ? (uint64_t)rss : 0;
    if (o->server_pid > 0 && ss->mon.cpu > ss->mon.cpu0)
        r->cpu_ms = (uint64_t)((ss->mon.cpu - ss->mon.cpu0) * 1000.0);
    if (!ss->failed && r->probes == 0)
        session_fail(ss, "no probe round trip measured");
    if (!ss->failed && (double)r->p99_us > o->max_p99_ms * 1000.0)
        session_fail(ss, "probe p99 %.1f ms > --max-p99-ms %.1f", (double)r->p99_us / 1000.0,
                     o->max_p99_ms);
    if (!ss->failed && (double)r->max_us > o->max_ms * 1000.0)
        session_fail(ss, "probe max %.1f ms > --max-ms %.1f", (double)r->max_us / 1000.0,
                     o->max_ms);
    if (!ss->failed && (double)r->rss_peak_kb > o->max_rss_mb * 1024.0)
        session_fail(ss, "server peak RSS %.1f MiB > --max-rss-mb %.1f",
                     (double)r->rss_peak_kb / 1024.0, o->max_rss_mb);
    sock_close(&ss->sc.s, false);
    drv_free(&ss->drv);
    if (ss->csv)
        fclose(ss->csv);
    alarm(0);
    return ss->failed ? 1 : 0;
}
