/* scale.c: the `scale` scenario (make stress-scale, not in make check).
 *
 * As many concurrent connections as asked (--conns N) or as the fd limits
 * allow, whichever is lower: this process's own limit and the server's
 * (/proc/PID/limits less the descriptors it already has open). Opened as fast
 * as the server accepts them, with at most CONNECTING_MAX connects in flight,
 * from --sources 127.0.0.x addresses in turn (each has its own ephemeral
 * ports). Then held for --seconds: --active PCT of them ping-pong (PING, and
 * the next PING as soon as its PONG arrives), --stalled PCT asked for a BLAST
 * they never read (slow readers with a full server buffer), the rest idle.
 * The probe measures meanwhile.
 *
 * Reported: the connections the server really held (its STATS conns at the
 * peak, never the number asked for), the accept rate (connections accepted
 * per second of the ramp), server RSS per connection (RSS with every
 * connection up and quiet, before the hold, less RSS before, over the
 * connections), server CPU per active message during the
 * hold, and the probe's percentiles; PASS/FAIL on the probe p99
 * (--max-p99-ms) and on every connection opened being accepted. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include "session.h"

#define CONNECTING_MAX 512 /* connects in flight during the ramp */
#define FD_RESERVE 16      /* descriptors kept for the probe, STATS, epoll, stdio, files */

enum skind { IDLE, ACTIVE, SLOW };

struct scale;

struct sconn {
    struct sock s; /* first: the callback casts back */
    struct scale *sc;
    enum skind kind;
    bool up; /* connected */
    struct linebuf *lb; /* active ones only: 8 KiB x 100 000 idle would be 800 MB */
};

struct scale {
    struct session ss;
    struct sconn *c;
    int opened, up, connecting;
    bool hold; /* active connections ping-pong only in the hold phase */
    uint64_t msgs; /* PONGs received by active connections during the hold */
};

static void sc_fail(struct sconn *c, const char *why)
{
    session_fail(&c->sc->ss, "connection %d: %s", (int)(c - c->sc->c), why);
    sock_close(&c->s, true);
}

static void sc_ping(struct sconn *c)
{
    if (sock_queue(&c->s, "PING\n", 5) < 0)
        sc_fail(c, strerror(errno));
}

static void sc_event(struct ep *e, uint32_t events)
{
    struct sconn *c = (struct sconn *)e;
    struct scale *sc = c->sc;
    bool was_connecting = c->s.connecting;
    if (sock_event(&c->s, events) < 0) {
        sc_fail(c, strerror(c->s.err));
        return;
    }
    if (was_connecting && !c->s.connecting) {
        c->up = true;
        sc->up++;
        sc->connecting--;
        /* idle ones read too: a byte from the server would be a bug */
        sock_want_read(&c->s, c->kind != SLOW);
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || !c->s.want_in)
        return;
    if (!c->lb) { /* idle: the server has nothing to say to it */
        char b[64];
        ssize_t r = sock_read(&c->s, b, sizeof b);
        if (r >= 0 || errno != EAGAIN)
            sc_fail(c, r > 0 ? "an idle connection received bytes"
                             : r == 0 ? "closed by the server" : strerror(errno));
        return;
    }
    struct linebuf *lb = c->lb;
    ssize_t r = sock_read(&c->s, lb->buf + lb->len, LINE_CAP - lb->len);
    if (r == 0 || (r < 0 && errno != EAGAIN)) {
        sc_fail(c, r == 0 ? "closed by the server" : strerror(errno));
        return;
    }
    if (r < 0)
        return;
    lb->len += (size_t)r;
    size_t pos = 0;
    char *line;
    while ((line = line_next(lb, &pos))) {
        if (strcmp(line, "PONG") != 0) {
            char why[100];
            snprintf(why, sizeof why, "unexpected '%.40s'", line);
            sc_fail(c, why);
            return;
        }
        if (sc->hold) {
            sc->msgs++;
            sc_ping(c);
        }
    }
    line_compact(lb, pos);
}

/* Entries of a /proc/PID/fd directory: the descriptors open; -1 if unreadable. */
static int count_fds(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    const struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* What this process may open (main() raised the soft limit to the hard
 * one), less what it has open and its own needs. */
static int client_fd_room(void)
{
    struct rlimit rl;
    int open_now = count_fds("/proc/self/fd");
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || open_now < 0)
        return 0;
    return (int)rl.rlim_cur - open_now - FD_RESERVE;
}

/* The server's soft "Max open files" less the descriptors it has open. */
static int server_fd_room(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/limits", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long soft = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Max open files %ld", &soft) == 1)
            break;
    fclose(f);
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    int open_now = count_fds(path);
    if (soft < 0 || open_now < 0)
        return -1;
    return (int)soft - open_now - FD_RESERVE;
}

static enum skind kind_of(int i, int active_pct, int slow_pct)
{
    int k = (int)(((int64_t)i * 37) % 100); /* spread over the accept order */
    if (k < active_pct)
        return ACTIVE;
    if (k < active_pct + slow_pct)
        return SLOW;
    return IDLE;
}

int run_scale(const struct opts *o, struct row *row)
{
    int want = o->conns > 0 ? o->conns : 100000;
    int active_pct = o->active_pct >= 0 ? o->active_pct : 1;
    int slow_pct = o->stalled_pct >= 0 ? o->stalled_pct : 1;
    double hold_s = o->seconds > 0 ? o->seconds : 10;
    int sources = o->sources > 0 ? o->sources : 1 + want / 25000;
    int mine = client_fd_room();
    int theirs = o->server_pid > 0 ? server_fd_room(o->server_pid) : -1;
    int n = want;
    if (n > mine)
        n = mine;
    if (theirs >= 0 && n > theirs)
        n = theirs;
    struct scale sc = {0};
    struct session *ss = &sc.ss;
    sc.c = calloc((size_t)(n > 0 ? n : 1), sizeof *sc.c);
    if (!sc.c || n <= 0) {
        memset(row, 0, sizeof *row);
        snprintf(row->result, sizeof row->result, "FAIL: scale: %s",
                 n <= 0 ? "no descriptor to spare" : "out of memory");
        free(sc.c);
        return 1;
    }
    double ramp_s = 0, accept_rate = 0, cpu_per_msg_us = 0, rss_per_conn = 0;
    long long held = 0, rss_before = 0, rss_full = 0;
    /* the ramp's length is unknown: budget it at 1000 connections/s */
    if (session_begin(ss, o, row, "scale", (double)n / 1000.0 + hold_s + 10) == 0) {
        procmon_tick(&ss->mon, (uint64_t)-1);
        rss_before = ss->mon.rss_kb;
        uint64_t ramp0 = now_us();
        while (!ss->failed && (sc.opened < n || sc.connecting > 0)) {
            while (sc.opened < n && sc.connecting < CONNECTING_MAX && !ss->failed) {
                struct sconn *c = &sc.c[sc.opened];
                c->sc = &sc;
                c->kind = kind_of(sc.opened, active_pct, slow_pct);
                if (c->kind == ACTIVE && !(c->lb = calloc(1, sizeof *c->lb))) {
                    session_fail(ss, "out of memory");
                    break;
                }
                struct sockaddr_in src = {.sin_family = AF_INET};
                src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + (uint32_t)(sc.opened % sources));
                if (sock_connect_from(&c->s, &ss->drv, &o->target, &src,
                                      c->kind == SLOW ? 4096 : 0, false, sc_event) < 0) {
                    session_fail(ss, "connection %d of %d: connect: %s", sc.opened, n,
                                 strerror(errno));
                    free(c->lb);
                    c->lb = NULL;
                    break;
                }
                sc.opened++;
                sc.connecting++;
            }
            (void)session_poll(ss);
        }
        /* every connection the kernel completed must also be accepted */
        struct srvstats st = {0};
        while (!ss->failed && session_stats_now(ss, &st) == 0 && st.conns < (long long)sc.up + 2) {
            if (now_us() - ramp0 > (uint64_t)(n / 100 + 30) * 1000000u) {
                session_fail(ss, "the server accepted %lld of %d connections", st.conns - 2, sc.up);
                break;
            }
        }
        ramp_s = (double)(now_us() - ramp0) / 1e6;
        held = st.conns - 2; /* less the probe and the STATS connection */
        accept_rate = ramp_s > 0 ? (double)held / ramp_s : 0;
        /* every connection is up and quiet: what each costs the server */
        uint64_t calm = now_us() + 1000000u;
        while (!ss->failed && now_us() < calm)
            (void)session_poll(ss);
        procmon_tick(&ss->mon, (uint64_t)-1);
        rss_full = ss->mon.rss_kb;
        if (held > 0)
            rss_per_conn = (double)(rss_full - rss_before) * 1024.0 / (double)held;
        /* the hold: active connections ping-pong, slow ones ask for a reply
         * far larger than any buffer and never read it */
        double cpu0 = ss->mon.cpu;
        sc.hold = true;
        for (int i = 0; i < sc.opened && !ss->failed; i++) {
            struct sconn *c = &sc.c[i];
            if (c->kind == ACTIVE && c->up)
                sc_ping(c);
            else if (c->kind == SLOW && c->up && sock_queue(&c->s, "BLAST 1073741824 7\n", 19) < 0)
                sc_fail(c, strerror(errno));
        }
        uint64_t until = now_us() + (uint64_t)(hold_s * 1e6);
        while (!ss->failed && now_us() < until)
            (void)session_poll(ss);
        procmon_tick(&ss->mon, (uint64_t)-1);
        if (sc.msgs > 0)
            cpu_per_msg_us = (ss->mon.cpu - cpu0) * 1e6 / (double)sc.msgs;
    }
    for (int i = 0; i < sc.opened; i++)
        sock_close(&sc.c[i].s, true);
    row->conns = (int)held;
    int rc = session_end(ss);
    int counts[3] = {0, 0, 0};
    for (int i = 0; i < sc.opened; i++)
        counts[sc.c[i].kind]++;
    char limit[200] = "";
    struct rlimit rl = {0};
    (void)getrlimit(RLIMIT_NOFILE, &rl);
    if (n < want)
        snprintf(limit, sizeof limit,
                 "; asked %d, the fd limits allow %d (client %d, server %d; hard limit %llu)",
                 want, n, mine, theirs, (unsigned long long)rl.rlim_max);
    snprintf(row->detail, sizeof row->detail,
             "%lld conns held (%d active, %d slow, %d idle, from %d source addresses)%s; "
             "accept rate %.0f/s (%.1f s ramp); server RSS %.1f MiB before, %.1f MiB at full, "
             "%.0f B/conn; %" PRIu64 " active msgs in %.0f s, %.2f us server CPU per msg",
             held, counts[ACTIVE], counts[SLOW], counts[IDLE], sources, limit, accept_rate, ramp_s,
             (double)rss_before / 1024.0, (double)rss_full / 1024.0, rss_per_conn, sc.msgs, hold_s,
             cpu_per_msg_us);
    for (int i = 0; i < sc.opened; i++)
        free(sc.c[i].lb);
    free(sc.c);
    return rc;
}
