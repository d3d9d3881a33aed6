/* slowreaders.c: the `slowreaders` and `blast` scenarios.
 *
 * N connections each send "BLAST <bytes> <seed>\nPING\n". Stalled ones read
 * nothing for --stall-ms, paced ones read at --rate bytes/s until the load
 * phase ends, fast ones read at once; in the end every connection reads all
 * of it. Every byte is checked against the pattern, and the PONG must come
 * right after the last one (nothing lost, added or reordered). Meanwhile the
 * probe measures whether the server still answers an innocent client: a
 * blocking write, or a loop that spends itself on slow readers, shows there.
 *
 * `blast` is the same with only fast readers: the integrity check that the
 * fault-injected rounds run. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "pattern.h"
#include "session.h"

enum role { STALLED, PACED, FAST };

struct readers;

struct reader {
    struct sock s; /* first: the callback casts back */
    struct readers *all;
    int idx;
    enum role role;
    bool done;
    uint32_t seed;
    uint64_t got; /* pattern bytes received and verified */
    double budget; /* paced: bytes it may read now */
    struct linebuf lb;
};

struct readers {
    struct session ss;
    struct reader *r;
    int n, done;
    uint64_t bytes, verified;
    double rate;
    uint64_t stall_until, pace_until, last_tick;
};

/* One read per event, whatever is waiting: level triggering brings the
 * connection back, and no connection starves the others. */
static uint8_t scratch[1 << 17];

static void reader_fail(struct reader *rd, const char *why)
{
    session_fail(&rd->all->ss, "conn %d (seed %" PRIu32 "): %s after %" PRIu64 " of %" PRIu64 " bytes",
                 rd->idx, rd->seed, why, rd->got, rd->all->bytes);
    sock_close(&rd->s, true);
}

/* What follows the pattern: exactly "PONG". */
static void reader_lines(struct reader *rd)
{
    size_t pos = 0;
    char *line = line_next(&rd->lb, &pos);
    if (!line) {
        if (rd->lb.len > 16)
            reader_fail(rd, "no PONG right after the BLAST");
        return;
    }
    if (strcmp(line, "PONG") != 0) {
        char why[120];
        snprintf(why, sizeof why, "expected PONG after the BLAST, got '%.40s'", line);
        reader_fail(rd, why);
        return;
    }
    rd->done = true;
    rd->all->done++;
    sock_close(&rd->s, false);
}

static void reader_event(struct ep *e, uint32_t events)
{
    struct reader *rd = (struct reader *)e;
    struct readers *all = rd->all;
    if (sock_event(&rd->s, events) < 0) {
        reader_fail(rd, strerror(rd->s.err));
        return;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || !rd->s.want_in)
        return;
    size_t cap = sizeof scratch;
    if (rd->role == PACED && rd->budget < (double)cap)
        cap = (size_t)rd->budget;
    if (cap == 0) {
        sock_want_read(&rd->s, false);
        return;
    }
    ssize_t n = sock_read(&rd->s, scratch, cap);
    if (n == 0) {
        reader_fail(rd, "closed by the server");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN)
            reader_fail(rd, strerror(errno));
        return;
    }
    if (rd->role == PACED) {
        rd->budget -= (double)n;
        if (rd->budget < 1.0)
            sock_want_read(&rd->s, false);
    }
    uint64_t left = all->bytes - rd->got;
    size_t pat = (uint64_t)n < left ? (size_t)n : (size_t)left;
    size_t bad = pattern_check(rd->seed, rd->got, scratch, pat);
    if (bad < pat) {
        char why[120];
        snprintf(why, sizeof why, "byte %" PRIu64 " is 0x%02x, pattern says 0x%02x", rd->got + bad,
                 scratch[bad], pattern_byte(rd->seed, rd->got + bad));
        rd->got += bad;
        reader_fail(rd, why);
        return;
    }
    rd->got += pat;
    all->verified += pat;
    size_t rest = (size_t)n - pat;
    if (rest > LINE_CAP - rd->lb.len) {
        reader_fail(rd, "too much data after the BLAST");
        return;
    }
    memcpy(rd->lb.buf + rd->lb.len, scratch + pat, rest);
    rd->lb.len += rest;
    if (rd->got == all->bytes)
        reader_lines(rd);
}

/* Time moves the readers: stalls end, paced budgets refill, the load phase
 * ends and everyone drains at full speed. */
static void readers_tick(struct readers *all)
{
    uint64_t now = all->ss.drv.now;
    double dt = (double)(now - all->last_tick) / 1e6;
    all->last_tick = now;
    /* enough for 100 ms, so a paced reader does not make a syscall per byte;
     * it reads once it may take 16 KiB or the whole budget */
    double cap = all->rate * 0.1 > 1024.0 ? all->rate * 0.1 : 1024.0;
    double min_read = cap < 16384.0 ? cap : 16384.0;
    for (int i = 0; i < all->n; i++) {
        struct reader *rd = &all->r[i];
        if (rd->done || !sock_open(&rd->s))
            continue;
        if (rd->role == STALLED && now >= all->stall_until)
            rd->role = FAST;
        if (rd->role == PACED && now >= all->pace_until)
            rd->role = FAST;
        if (rd->role == PACED) {
            rd->budget += all->rate * dt;
            if (rd->budget > cap)
                rd->budget = cap;
            if (rd->budget >= min_read)
                sock_want_read(&rd->s, true);
        } else if (rd->role == FAST) {
            sock_want_read(&rd->s, true);
        }
    }
}

static enum role role_of(int i, int n, int stalled_pct, int paced_pct)
{
    /* spread the roles over the index range, so that they are interleaved
     * in accept order rather than in blocks */
    int slot = (int)(((int64_t)i * 100 + 50) / n); /* 0..99 */
    int k = (slot * 37) % 100;                     /* a fixed shuffle of 0..99 */
    if (k < stalled_pct)
        return STALLED;
    if (k < stalled_pct + paced_pct)
        return PACED;
    return FAST;
}

static int run_readers(const struct opts *o, struct row *row, const char *name, int conns,
                       uint64_t bytes, double seconds, int stall_ms, int stalled_pct,
                       int paced_pct, double rate)
{
    struct readers all = {.n = conns, .bytes = bytes, .rate = rate};
    struct session *ss = &all.ss;
    int counts[3] = {0, 0, 0};
    all.r = calloc((size_t)conns, sizeof *all.r);
    if (!all.r) {
        memset(row, 0, sizeof *row);
        snprintf(row->result, sizeof row->result, "FAIL: %s: out of memory", name);
        return 1;
    }
    for (int i = 0; i < conns; i++) {
        all.r[i].role = role_of(i, conns, stalled_pct, paced_pct);
        counts[all.r[i].role]++;
    }
    if (session_begin(ss, o, row, name, seconds) == 0) {
        all.stall_until = ss->t0 + (uint64_t)stall_ms * 1000u;
        all.pace_until = ss->t0 + (uint64_t)(seconds * 1e6);
        all.last_tick = ss->t0;
        for (int i = 0; i < conns && !ss->failed; i++) {
            struct reader *rd = &all.r[i];
            rd->all = &all;
            rd->idx = i;
            rd->seed = o->seed + (uint32_t)i * 2654435761u;
            char req[96];
            int len = snprintf(req, sizeof req, "BLAST %" PRIu64 " %" PRIu32 "\nPING\n", bytes,
                               rd->seed);
            if (sock_connect(&rd->s, &ss->drv, &o->target, o->rcvbuf, false, reader_event) < 0 ||
                sock_queue(&rd->s, req, (size_t)len) < 0)
                session_fail(ss, "conn %d: connect: %s", i, strerror(errno));
        }
        while (all.done < all.n && session_poll(ss) == 0)
            readers_tick(&all);
        if (ss->failed && all.done < all.n && !strstr(row->result, "conn "))
            snprintf(row->result + strlen(row->result), sizeof row->result - strlen(row->result),
                     " (%d of %d connections complete)", all.done, all.n);
    }
    for (int i = 0; i < conns; i++)
        if (all.r[i].s.drv)
            sock_close(&all.r[i].s, true);
    row->conns = conns;
    row->requested = (uint64_t)conns * bytes;
    row->verified = all.verified;
    int rc = session_end(ss);
    if (rc == 0 && all.verified != row->requested)
        session_fail(ss, "verified %" PRIu64 " of %" PRIu64 " bytes", all.verified, row->requested);
    char each[32], rb[32], buffered[32], one[32];
    fmt_bytes(each, sizeof each, bytes);
    fmt_bytes(rb, sizeof rb, (uint64_t)rate);
    fmt_bytes(buffered, sizeof buffered,
              ss->sc.peak_wbuf_bytes > 0 ? (uint64_t)ss->sc.peak_wbuf_bytes : 0);
    fmt_bytes(one, sizeof one, ss->sc.last.wbuf_peak > 0 ? (uint64_t)ss->sc.last.wbuf_peak : 0);
    char groups[160] = "";
    size_t gl = 0;
    if (counts[STALLED])
        gl += (size_t)snprintf(groups + gl, sizeof groups - gl, "%d stalled %d ms, ",
                               counts[STALLED], stall_ms);
    if (counts[PACED] && gl < sizeof groups)
        gl += (size_t)snprintf(groups + gl, sizeof groups - gl, "%d paced at %s/s for %.0f s, ",
                               counts[PACED], rb, seconds);
    if (gl < sizeof groups)
        snprintf(groups + gl, sizeof groups - gl, "%d fast", counts[FAST]);
    snprintf(row->detail, sizeof row->detail,
             "BLAST %s x %d: %s; server buffered at most %s in all (STATS wbuf_bytes), "
             "%s on one conn (wbuf_peak)",
             each, conns, groups, buffered, one);
    free(all.r);
    return ss->failed ? 1 : 0;
}

static int or_default(int v, int d)
{
    return v >= 0 ? v : d;
}

int run_slowreaders(const struct opts *o, struct row *r)
{
    double seconds = o->seconds > 0 ? o->seconds : 30;
    return run_readers(o, r, "slowreaders", or_default(o->conns, 300),
                       o->bytes > 0 ? (uint64_t)o->bytes : 24u << 20, seconds,
                       or_default(o->stall_ms, (int)(seconds * 400)), or_default(o->stalled_pct, 75),
                       or_default(o->paced_pct, 20), o->rate > 0 ? o->rate : 256 * 1024);
}

int run_blast(const struct opts *o, struct row *r)
{
    return run_readers(o, r, "blast", or_default(o->conns, 4),
                       o->bytes > 0 ? (uint64_t)o->bytes : 16u << 20,
                       o->seconds > 0 ? o->seconds : 5, 0, 0, 0, 1);
}
