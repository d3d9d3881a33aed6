/*
 * The invariants every torture scenario checks, the handler they share, and
 * the driver's side of the sockets. Everything here runs in the forked child
 * of one run. The driver's own system calls are not caught by faultinj (only
 * the library's objects are redirected), so a peer never fails by injection.
 */
#include "torture.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Present in ASan builds (the torture binary); absent elsewhere. */
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

#define TT_MAX_PEERS 32
#define IDLE_MS 10
#define IDLE_MAX_WAITS 10 /* epoll_wait calls in IDLE_MS: more is a spin */
#define BIG_CHUNK ((size_t)16 << 10)

tt_ctx *tt_current;
static int peers[TT_MAX_PEERS];
static int npeers;

uint64_t tt_now_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

char tt_pattern(size_t i) { return (char)('a' + (i * 7 + i / 251) % 26); }

/* What cannot be asked of a library whose every call of a kind fails. */
static bool needs_progress(const char *class)
{
    static const char *const classes[] = {"retry fails", "loop stops serving",
                                          "stalled connection", "stalled fd",
                                          "evl_run does not stop", "spin"};
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if (strcmp(class, classes[i]) == 0)
            return true;
    return false;
}

void tt_violation(const tt_ctx *x, const char *class, const char *fmt, ...)
{
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    /* ap is started just above; the analyzer loses it on the recursive path
     * tt_violation -> tt_finish -> tt_violation. */
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized) */
    (void)vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (x->persist && needs_progress(class)) {
        tt_current->gave_up = true;
        if (x->in_loop)
            _exit(TT_EXIT_GAVE_UP); /* evl_free cannot run from a callback */
        tt_finish(tt_current);
    }
    (void)dprintf(2, "VIOLATION %s: %s (fault: %s)\n", class, detail,
            x->armed ? (fi_fired() ? "fired" : "armed, not reached") : "none");
    _exit(TT_EXIT_VIOLATION);
}

void tt_check_failure(const tt_ctx *x, const char *call, int err)
{
    if (fi_fired() == 0)
        tt_violation(x, "failure without a fault", "%s failed with %s", call, strerrorname_np(err));
    bool alloc = x->kind == FI_MALLOC || x->kind == FI_CALLOC || x->kind == FI_REALLOC;
    if (err == x->err || (alloc && err == ENOMEM))
        return;
    /* A connection broken by the fault answers later writes with EPIPE. */
    if (strcmp(call, "evl_write") == 0 && err == EPIPE)
        return;
    tt_violation(x, "wrong errno", "%s failed with %s after %s was injected into %s", call,
                 strerrorname_np(err), strerrorname_np(x->err), fi_kind_name(x->kind));
}

/* ---- the handler ------------------------------------------------------------
 * One request line per on_read (the header's fairness rule):
 *   "BIG <n>"  n bytes of tt_pattern, streamed from on_drain
 *   "BYE"      "bye\n", then evl_close
 *   "STOP"     "stop\n", then SIGTERM to ourselves (evl_run's signalfd)
 *   "v..."     the line echoed with evl_writev, in three pieces
 *   anything   the line echoed with evl_write
 */

static tt_ctx *ctx_of(const evl_conn *c) { return evl_loop_udata(evl_loop_of(c)); }

tt_conn *tt_track(tt_ctx *x, evl_conn *c)
{
    if (x->nconns == TT_MAX_CONNS)
        tt_violation(x, "driver", "more than %d connections", TT_MAX_CONNS);
    tt_conn *t = &x->conns[x->nconns++];
    t->c = c;
    evl_set_udata(c, t);
    return t;
}

/* After evl_write/evl_writev returned rc: a failure must be the fault's, and
 * leave the connection refusing further writes with EPIPE. */
static void after_write(tt_ctx *x, tt_conn *t, int rc, int err)
{
    if (rc == 0)
        return;
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)
        tt_violation(x, "transient errno from evl_write", "evl_write failed with %s: a write "
                     "that cannot go now must be queued", strerrorname_np(err));
    if (!t->write_failed)
        tt_check_failure(x, "evl_write", err);
    else if (err != EPIPE)
        tt_violation(x, "write after a failed write", "evl_write failed with %s, not EPIPE",
                     strerrorname_np(err));
    t->write_failed = true;
    t->big_left = 0;
    if (evl_write(t->c, "x", 1) != -1 || errno != EPIPE)
        tt_violation(x, "write after a failed write", "accepted or not EPIPE");
}

static void fill_pattern(char *dst, size_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = tt_pattern(off + i);
}

static void big_more(tt_ctx *x, tt_conn *t)
{
    char chunk[BIG_CHUNK];
    const evl_options *o = evl_get_options(x->l);
    while (t->big_left > 0 && evl_pending(t->c) <= o->wbuf_low) {
        size_t n = t->big_left < BIG_CHUNK ? t->big_left : BIG_CHUNK;
        fill_pattern(chunk, t->big_off, n);
        int rc = evl_write(t->c, chunk, n);
        after_write(x, t, rc, errno);
        if (rc < 0)
            return;
        t->big_off += n;
        t->big_left -= n;
        if (t->big_left == 0)
            evl_wake(t->c); /* input held back while streaming is due now */
    }
}

static void on_read(evl_conn *c)
{
    tt_ctx *x = ctx_of(c);
    tt_conn *t = evl_udata(c);
    size_t len;
    const char *p = evl_data(c, &len);
    const char *nl = p ? memchr(p, '\n', len) : NULL;
    if (!nl || t->big_left > 0)
        return; /* a partial line, or still streaming: wait */
    size_t n = (size_t)(nl - p) + 1;
    char line[256];
    if (n >= sizeof line) {
        tt_violation(x, "driver", "request line of %zu bytes", n);
        return;
    }
    memcpy(line, p, n);
    line[n] = '\0';
    evl_consume(c, n);
    x->lines++;
    if (t->write_failed)
        return;
    if (strncmp(line, "BIG ", 4) == 0) {
        t->big_left = strtoul(line + 4, NULL, 10);
        t->big_off = 0;
        big_more(x, t);
    } else if (strcmp(line, "BYE\n") == 0) {
        after_write(x, t, evl_write(c, "bye\n", 4), errno);
        evl_close(c);
    } else if (line[0] == 'v' && n >= 3) {
        struct iovec iov[3] = {{line, 1}, {line + 1, 1}, {line + 2, n - 2}};
        after_write(x, t, evl_writev(c, iov, 3), errno);
    } else {
        after_write(x, t, evl_write(c, line, n), errno);
    }
    if (x->stop_after_lines && x->lines == x->stop_after_lines)
        (void)kill(getpid(), SIGTERM);
}

static bool on_accept(evl_conn *c)
{
    (void)tt_track(ctx_of(c), c);
    return true;
}

static void on_drain(evl_conn *c) { big_more(ctx_of(c), evl_udata(c)); }

static void on_close(evl_conn *c)
{
    tt_ctx *x = ctx_of(c);
    tt_conn *t = evl_udata(c);
    if (!t || t->c != c) {
        tt_violation(x, "on_close twice", "on_close for a connection already closed");
        return;
    }
    t->closes++;
    t->c = NULL;
}

/* Extra fds are pipes: read what is there, unregister at EOF. */
static void on_fd(evl_loop *l, int fd)
{
    tt_ctx *x = evl_loop_udata(l);
    char buf[512];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        x->fd_bytes += (size_t)n;
    if (n == 0) {
        x->fd_eof = true;
        if (evl_remove_fd(l, fd) < 0)
            tt_violation(x, "evl_remove_fd", "fails on a registered fd: %s",
                         strerrorname_np(errno));
    }
}

/* evl_run scenarios: the stop comes from on_read's STOP line; this is the
 * fallback when the fault closed a connection that carried a request, and
 * the bound on a run that never ends. */
static void on_tick(evl_loop *l)
{
    tt_ctx *x = evl_loop_udata(l);
    if (!x->stop_after_lines)
        return;
    bool open = false;
    for (int i = 0; i < x->nconns; i++)
        open |= x->conns[i].c != NULL;
    /* After a fault, a request may never come (its connection was closed):
     * stop anyway, the graceful stop has its own invariants. */
    if (!open || x->lines >= x->stop_after_lines || fi_fired())
        (void)kill(getpid(), SIGTERM);
    if (++x->ticks > 2 * x->stall_ms / 20)
        tt_violation(x, "evl_run does not stop", "%d ticks after the start", x->ticks);
}

static const evl_handler handler = {
    .on_accept = on_accept,
    .on_read = on_read,
    .on_drain = on_drain,
    .on_close = on_close,
    .on_fd = on_fd,
    .on_tick = on_tick,
};

const evl_handler *tt_handler(void) { return &handler; }

/* ---- driving -------------------------------------------------------------- */

void tt_step(tt_ctx *x, int timeout_ms)
{
    x->in_loop++;
    int rc = evl_run_once(x->l, timeout_ms);
    int err = errno;
    x->in_loop--;
    if (rc >= 0)
        return;
    if (err == EINTR)
        tt_violation(x, "evl_run_once -1 on EINTR", "the header promises 0");
    tt_check_failure(x, "evl_run_once", err);
}

void tt_own(tt_ctx *x, int fd)
{
    if (fd < 0 || npeers == TT_MAX_PEERS)
        tt_violation(x, "driver", "fd %d: %s", fd, strerror(errno));
    peers[npeers++] = fd;
}

void tt_close_own(int fd)
{
    for (int i = 0; i < npeers; i++)
        if (peers[i] == fd) {
            peers[i] = peers[--npeers];
            (void)close(fd);
            return;
        }
}

void tt_pair(tt_ctx *x, int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        tt_violation(x, "driver", "socketpair: %s", strerror(errno));
    int fl = fcntl(sv[1], F_GETFL);
    (void)fcntl(sv[1], F_SETFL, fl | O_NONBLOCK);
    tt_own(x, sv[1]);
}

enum tt_outcome tt_exchange(tt_ctx *x, int peer, const char *req, size_t req_len,
                            const char *expect, size_t expect_len)
{
    if (req_len && send(peer, req, req_len, MSG_NOSIGNAL) != (ssize_t)req_len)
        return TT_CLOSED; /* the loop's end is gone already */
    size_t got = 0;
    uint64_t last = tt_now_ms();
    char buf[64 << 10];
    while (got < expect_len) {
        tt_step(x, 5);
        ssize_t n;
        while ((n = recv(peer, buf, sizeof buf, 0)) > 0) {
            if ((size_t)n > expect_len - got || memcmp(buf, expect + got, (size_t)n) != 0)
                tt_violation(x, "corrupt stream", "bytes %zu..%zu are not what was written",
                             got, got + (size_t)n);
            got += (size_t)n;
            last = tt_now_ms();
        }
        if (got == expect_len)
            break;
        if (n == 0 || errno != EAGAIN) /* EOF, or a reset */
            return TT_CLOSED;
        if (tt_now_ms() - last > (uint64_t)x->stall_ms)
            return TT_STALLED;
    }
    return TT_SERVED;
}

bool tt_wait_eof(tt_ctx *x, int peer)
{
    uint64_t end = tt_now_ms() + x->stall_ms;
    char buf[4096];
    while (tt_now_ms() < end) {
        tt_step(x, 5);
        ssize_t n = recv(peer, buf, sizeof buf, 0);
        if (n > 0)
            tt_violation(x, "corrupt stream", "%zd bytes after the reply", n);
        if (n == 0 || errno != EAGAIN)
            return true;
    }
    return false;
}

bool tt_wait_all_closed(tt_ctx *x)
{
    uint64_t end = tt_now_ms() + x->stall_ms;
    for (;;) {
        bool open = false;
        for (int i = 0; i < x->nconns; i++)
            open |= x->conns[i].c != NULL;
        if (!open)
            return true;
        if (tt_now_ms() > end)
            return false;
        tt_step(x, 5);
    }
}

void tt_expect_served_or_closed(const tt_ctx *x, enum tt_outcome o, const char *what)
{
    if (o == TT_STALLED)
        tt_violation(x, "stalled connection", "%s: neither served nor closed in %d ms", what,
                     x->stall_ms);
    if (o == TT_CLOSED && fi_fired() == 0)
        tt_violation(x, "closed without a fault", "%s", what);
}

void tt_check_serves(tt_ctx *x)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        unsigned long fired = fi_fired();
        int sv[2];
        tt_pair(x, sv);
        evl_conn *c = evl_adopt(x->l, sv[0]);
        if (!c) {
            tt_check_failure(x, "evl_adopt", errno);
            if (fcntl(sv[0], F_GETFD) < 0)
                tt_violation(x, "fd closed on failure", "evl_adopt closed the fd it refused");
            (void)close(sv[0]);
        } else {
            (void)tt_track(x, c);
            enum tt_outcome o = tt_exchange(x, sv[1], "fresh\n", 6, "fresh\n", 6);
            if (o == TT_SERVED)
                return;
            tt_expect_served_or_closed(x, o, "fresh connection");
        }
        if (fi_fired() == fired)
            break; /* failed with no new fault: the loop stopped serving */
    }
    tt_violation(x, "loop stops serving", "a fresh connection is not served after the fault");
}

void tt_check_idle(tt_ctx *x)
{
    unsigned long before = fi_count(FI_EPOLL_WAIT);
    uint64_t end = tt_now_ms() + IDLE_MS;
    while (tt_now_ms() < end)
        tt_step(x, IDLE_MS);
    unsigned long waits = fi_count(FI_EPOLL_WAIT) - before;
    if (waits > IDLE_MAX_WAITS)
        tt_violation(x, "spin", "%lu epoll_wait calls in %d ms with nothing to do", waits,
                     IDLE_MS);
}

int tt_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    (void)closedir(d);
    return n;
}

void tt_finish(tt_ctx *x)
{
    evl_free(x->l);
    x->l = NULL;
    for (int i = 0; i < x->nconns; i++)
        if (x->conns[i].closes != 1)
            tt_violation(x, "on_close not exactly once", "connection %d: %d calls", i,
                         x->conns[i].closes);
    for (int i = 0; i < npeers; i++)
        (void)close(peers[i]);
    npeers = 0;
    int fds = tt_count_fds();
    if (fds != x->fds_before)
        tt_violation(x, "fd leak", "%d fds open before, %d after", x->fds_before, fds);
    if (__lsan_do_recoverable_leak_check && __lsan_do_recoverable_leak_check())
        tt_violation(x, "memory leak", "see LeakSanitizer's report above");
    if (!x->armed) { /* the counting run: how many calls of each kind */
        (void)dprintf(1, "FI-COUNTS");
        for (int k = 0; k < FI_NKINDS; k++)
            (void)dprintf(1, " %lu", fi_count((enum fi_kind)k));
        (void)dprintf(1, "\n");
    }
    _exit(x->gave_up ? TT_EXIT_GAVE_UP : x->armed && fi_fired() == 0 ? TT_EXIT_NOT_REACHED : 0);
}
