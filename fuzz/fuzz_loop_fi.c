/*
 * fuzz_loop_fi: the loop under failures the input chooses.
 *
 * Linked against a copy of the library whose calls to malloc, epoll_ctl,
 * send, accept4, read, close... land in tools/faultinj (objcopy
 * --redefine-syms, as the torture run does; fuzz/fuzz.mk). The input's
 * first bytes are a fault plan: up to four (kind, nth call, errno, times)
 * entries, the errno taken from the man page's list (fi_errnos); the hook
 * (fi_set_hook) fails exactly those calls. The rest of the input is a
 * script in the manner of fuzz_loop (socketpairs adopted, evl_connect to
 * the fuzzer's own unix listener, peer sends, reads and closes, and the
 * handler's writes, closes, aborts, shutdowns, read pauses, timers and
 * wakeups from every callback), but no byte model: under failures the
 * bytes may be cut anywhere. What must hold under any failure is checked:
 *  - no crash, no use after free, no leak (ASan; the leak check runs per
 *    input) and no fd left open after evl_free;
 *  - every connection the loop took (adopted or connected) gets on_close
 *    exactly once, nothing after it, and writes in it fail EPIPE;
 *  - a failed call says so: NULL/-1 with errno set, and a failed evl_adopt
 *    leaves the fd open and ours;
 *  - the counters: conns == accepted - closed == our own counts, wbuf_bytes
 *    is the sum of evl_pending, after every run;
 *  - no connection is stranded by a failure: once the faults stop and the
 *    peers close, every connection closes within a bounded number of runs.
 */
#include "evloop.h"
#include "../tools/faultinj/faultinj.h"
#include "fuzz_common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define NCONNS  6
#define NTIMERS 3
#define NFAULTS 4
#define STEPS   48
#define SETTLE  2000

typedef struct slot {
    evl_conn *c;       /* NULL once on_close ran */
    int peer;          /* our end, -1 once closed */
    int closes;
    bool taken;        /* the loop took it (adopt or connect succeeded) */
} slot;

static struct {
    fz_in in;
    evl_loop *l;
    struct { int kind; unsigned long nth, times; int err; } plan[NFAULTS];
    int nplan;
    bool faults_on;
    slot s[NCONNS];
    int n;
    evl_timer *tm[NTIMERS];
    uint64_t entered, closed;
    int depth;
    bool freeing, final;
    char path[80];
    int lfd;                  /* the fuzzer's listener for evl_connect (kept across inputs) */
    int llfd;                 /* the loop's listener (abstract address) */
    struct sockaddr_un laddr;
    socklen_t laddr_len;
    int clients[4];           /* clients of the loop's listener */
    int nclients;
} F;

static int decide(void *ctx, enum fi_kind kind, unsigned long nth)
{
    (void)ctx;
    if (!F.faults_on)
        return 0;
    for (int i = 0; i < F.nplan; i++)
        if (F.plan[i].kind == (int)kind && nth >= F.plan[i].nth && nth < F.plan[i].nth + F.plan[i].times)
            return F.plan[i].err;
    return 0;
}

static void read_plan(void)
{
    F.nplan = fz_u8(&F.in) % (NFAULTS + 1);
    for (int i = 0; i < F.nplan; i++) {
        uint8_t k = fz_u8(&F.in), e = fz_u8(&F.in);
        size_t ne;
        F.plan[i].kind = k % FI_NKINDS;
        const int *errs = fi_errnos((enum fi_kind)F.plan[i].kind, &ne);
        F.plan[i].err = errs[e % ne];
        F.plan[i].nth = 1 + fz_u8(&F.in) % 64;
        F.plan[i].times = 1 + (e >> 5) % 4;
        fz_trace("fault %d: %s #%lu (x%lu) -> errno %d", i, fi_kind_name((enum fi_kind)F.plan[i].kind),
                 F.plan[i].nth, F.plan[i].times, F.plan[i].err);
    }
}

static slot *slot_of(evl_conn *c, const char *who)
{
    slot *s = evl_udata(c);
    FZ_CHECK(s >= F.s && s < F.s + F.n && s->c == c && s->closes == 0, "%s for a connection after its on_close, or "
             "unknown", who);
    FZ_CHECK(F.depth == 0, "%s inside another callback", who);
    return s;
}

static slot *pick(void)
{
    if (F.n == 0)
        return NULL;
    slot *s = &F.s[fz_u8(&F.in) % F.n];
    return s->c ? s : NULL;
}

static void check_stats(void)
{
    struct evl_stats st;
    evl_stats(F.l, &st);
    FZ_CHECK(st.accepted == F.entered && st.closed == F.closed && st.conns == st.accepted - st.closed,
             "stats: accepted %llu closed %llu conns %llu; taken %llu, on_close %llu", (unsigned long long)st.accepted,
             (unsigned long long)st.closed, (unsigned long long)st.conns, (unsigned long long)F.entered,
             (unsigned long long)F.closed);
    uint64_t w = 0;
    for (int i = 0; i < F.n; i++)
        if (F.s[i].c)
            w += evl_pending(F.s[i].c);
    FZ_CHECK(st.wbuf_bytes == w, "stats: wbuf_bytes %llu, the connections hold %llu", (unsigned long long)st.wbuf_bytes,
             (unsigned long long)w);
}

static void adopt(void)
{
    if (F.n >= NCONNS)
        return;
    int sv[2];
    FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0, "socketpair failed");
    int v = 4096;
    (void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    slot *s = &F.s[F.n];
    *s = (slot){.peer = sv[0]};
    errno = 0;
    evl_conn *c = evl_adopt(F.l, sv[1]);
    if (!c) {
        FZ_CHECK(errno != 0, "evl_adopt failed without errno");
        FZ_CHECK(fcntl(sv[1], F_GETFD) >= 0, "a failed evl_adopt closed the fd");
        (void)close(sv[0]);
        (void)close(sv[1]);
        return;
    }
    evl_set_udata(c, s);
    s->c = c;
    s->taken = true;
    F.n++;
    F.entered++;
}

static void connect_own(uint8_t b)
{
    if (F.n >= NCONNS)
        return;
    slot *s = &F.s[F.n];
    *s = (slot){.peer = -1};
    errno = 0;
    evl_conn *c = evl_connect(F.l, F.path, 0, (b & 1) ? 60000 : 0, NULL, s);
    int e = errno;
    /* the listener's backlog: accept whatever arrived, connected or not */
    int fd = accept4(F.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (!c) {
        FZ_CHECK(e != 0, "evl_connect failed without errno");
        if (fd >= 0)
            (void)close(fd);
        return;
    }
    /* (a connect failed on purpose with EINPROGRESS connected nothing) */
    FZ_CHECK(fd >= 0 || fi_fired() > 0, "evl_connect succeeded, yet nothing reached the listener: errno %d", errno);
    s->c = c;
    s->peer = fd;
    s->taken = true;
    F.n++;
    F.entered++;
}

static void on_timer(evl_timer *t, void *arg);

static void client_connect(void)
{
    if (F.nclients >= 4)
        return;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    FZ_CHECK(fd >= 0, "socket failed");
    F.clients[F.nclients++] = fd;
    (void)connect(fd, (struct sockaddr *)&F.laddr, F.laddr_len); /* may be refused: the backlog */
}

/* The handler's choices, from any callback or from outside. */
static void act(slot *self, uint8_t b)
{
    if (F.final)
        return;
    slot *t = self && (b & 0x80) ? self : pick();
    fz_trace("  act %d on conn %d", b % 16, t ? (int)(t - F.s) : -1);
    switch (b % 16) {
    case 0: case 1: {
        char buf[4096];
        size_t n = (size_t)fz_u8(&F.in) * 16;
        memset(buf, 'w', sizeof buf);
        if (t) {
            errno = 0;
            int r = evl_write(t->c, buf, n);
            FZ_CHECK(r == 0 || (r == -1 && errno != 0), "evl_write: %d errno %d", r, errno);
        }
        break;
    }
    case 2: if (t) evl_close(t->c); break;
    case 3: if (t) evl_abort(t->c); break;
    case 4: if (t) evl_shutdown(t->c); break;
    case 5: if (t) evl_read_pause(t->c); break;
    case 6: if (t) evl_read_resume(t->c); break;
    case 7: if (t) evl_hold(t->c); break;
    case 8: if (t) evl_release(t->c); break;
    case 9: if (t) (void)evl_set_idle_timeout(t->c, (b >> 4) & 3); break;
    case 10: if (t) (void)evl_set_wbuf_max(t->c, (size_t)fz_u8(&F.in) * 64u); break;
    case 11: {
        int k = (b >> 4) % NTIMERS;
        if (!F.tm[k]) {
            errno = 0;
            F.tm[k] = evl_timer_new(F.l, on_timer, &F.tm[k]);
            FZ_CHECK(F.tm[k] || errno != 0, "evl_timer_new failed without errno");
        }
        if (F.tm[k]) {
            errno = 0;
            int r = evl_timer_start(F.tm[k], b >> 6, (b >> 6) & 1);
            FZ_CHECK(r == 0 || errno != 0, "evl_timer_start failed without errno");
        }
        break;
    }
    case 12: {
        int k = (b >> 4) % NTIMERS;
        evl_timer_free(F.tm[k]); /* from its own callback too */
        F.tm[k] = NULL;
        break;
    }
    case 13: (void)evl_wakeup(F.l); break;
    case 14:
        if (b & 0x20)
            client_connect();
        else if (F.depth > 0 || !(b & 0x40))
            adopt();
        else
            connect_own(b);
        break;
    default: if (t) evl_wake(t->c); break;
    }
}

static void on_read(evl_conn *c)
{
    slot *s = slot_of(c, "on_read");
    size_t len;
    FZ_CHECK(evl_data(c, &len) != NULL && len > 0, "on_read with no input");
    size_t k = F.final || (fz_u8(&F.in) & 1) ? len : len / 2; /* at the end: everything */
    evl_consume(c, k);
    fz_trace(" on_read conn %d: %zu bytes, consumed %zu", (int)(s - F.s), len, k);
    F.depth++;
    act(s, fz_u8(&F.in));
    F.depth--;
}

static void on_other(evl_conn *c, const char *who)
{
    slot *s = slot_of(c, who);
    F.depth++;
    act(s, fz_u8(&F.in));
    F.depth--;
}

static bool on_accept(evl_conn *c)
{
    FZ_CHECK(F.depth == 0 && evl_udata(c) == NULL, "on_accept inside another callback, or with udata");
    if (F.final || F.n >= NCONNS || (fz_u8(&F.in) & 3) == 3)
        return false; /* refused: no on_close */
    slot *s = &F.s[F.n++];
    *s = (slot){.c = c, .peer = -1, .taken = true};
    evl_set_udata(c, s);
    F.entered++;
    return true;
}

static void on_drain(evl_conn *c) { on_other(c, "on_drain"); }
static void on_eof(evl_conn *c) { on_other(c, "on_eof"); }
static void on_connect(evl_conn *c, int err)
{
    (void)err;
    on_other(c, "on_connect");
}

static void on_close(evl_conn *c)
{
    slot *s = evl_udata(c);
    FZ_CHECK(s >= F.s && s < F.s + F.n && s->c == c, "on_close for an unknown connection");
    FZ_CHECK(s->closes++ == 0, "on_close twice for conn %d", (int)(s - F.s));
    FZ_CHECK(F.depth == 0, "on_close inside another callback");
    F.closed++;
    errno = 0;
    FZ_CHECK(evl_write(c, "x", 1) == -1 && errno == EPIPE, "a write in on_close did not fail EPIPE");
    int why = evl_close_reason(c);
    FZ_CHECK(why > EVL_CLOSE_OPEN && strcmp(evl_close_reason_name(why), "?") != 0, "on_close with reason %d", why);
    F.depth++;
    act(NULL, fz_u8(&F.in)); /* others: a reconnect, an abort... */
    F.depth--;
    s->c = NULL;
}

/* cppcheck-suppress constParameter ; the evl_handler callback type fixes it */
static void on_wakeup(evl_loop *l)
{
    FZ_CHECK(l == F.l && F.depth == 0, "on_wakeup: wrong loop or inside another callback");
    F.depth++;
    act(NULL, fz_u8(&F.in));
    F.depth--;
}

/* cppcheck-suppress constParameter ; the evl_timer_fn type fixes it */
static void on_timer(evl_timer *t, void *arg)
{
    evl_timer **p = arg;
    FZ_CHECK(*p == t && F.depth == 0, "a timer callback with a wrong timer, or inside another callback");
    F.depth++;
    act(NULL, fz_u8(&F.in));
    F.depth--;
}

static void run(void)
{
    errno = 0;
    int r = evl_run_once(F.l, 0);
    FZ_CHECK(r >= 0 || errno != 0, "evl_run_once failed without errno");
    check_stats();
}

static void peer_step(uint8_t op)
{
    slot *s = F.n ? &F.s[fz_u8(&F.in) % F.n] : NULL;
    if (!s || s->peer < 0)
        return;
    char buf[2048];
    fz_trace("  peer %d: op %d", (int)(s - F.s), op % 4);
    switch (op % 4) {
    case 0:
        memset(buf, 'p', sizeof buf);
        (void)send(s->peer, buf, 1 + fz_u8(&F.in) * 8u, MSG_NOSIGNAL | MSG_DONTWAIT);
        break;
    case 1:
        while (recv(s->peer, buf, sizeof buf, MSG_DONTWAIT) > 0)
            ;
        break;
    case 2: (void)shutdown(s->peer, SHUT_WR); break;
    default:
        (void)close(s->peer);
        s->peer = -1;
        break;
    }
}

static void make_listener(void)
{
    static char dir[64];
    if (F.lfd > 0)
        return;
    (void)snprintf(dir, sizeof dir, "/tmp/evl-fuzzfi-XXXXXX");
    FZ_CHECK(mkdtemp(dir) != NULL, "mkdtemp failed");
    (void)snprintf(F.path, sizeof F.path, "%s/l", dir);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    (void)snprintf(a.sun_path, sizeof a.sun_path, "%s", F.path);
    F.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    FZ_CHECK(F.lfd >= 0 && bind(F.lfd, (struct sockaddr *)&a, sizeof a) == 0 && listen(F.lfd, 64) == 0,
             "the connect target: errno %d", errno);
    (void)unlink(F.path); /* the bound socket lives on; nothing to clean up */
    (void)rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int lfd = F.lfd;
    char path[sizeof F.path];
    memcpy(path, F.path, sizeof path);
    memset(&F, 0, sizeof F);
    F.lfd = lfd;
    memcpy(F.path, path, sizeof path);
    make_listener();
    F.in = (fz_in){data, size};
    int fds_before = fz_count_fds();
    fi_reset();
    fi_set_hook(decide, NULL);
    read_plan();
    uint8_t o = fz_u8(&F.in);
    evl_options opts;
    evl_options_default(&opts);
    opts.rbuf_max = 1024u << (o & 3); /* settling reads the queues in rbuf_max steps */
    opts.wbuf_high = 512;
    opts.wbuf_low = 128;
    opts.wbuf_max = (o & 8) ? 8192 : 0;
    opts.write_quantum = 1024;
    opts.max_events = 1 + (o >> 4 & 3);
    opts.close_timeout_ms = (o & 0x40) ? 0 : 60000;
    opts.tick_ms = 0;
    evl_handler h = {.on_accept = on_accept, .on_read = on_read, .on_drain = on_drain, .on_close = on_close, .on_eof = on_eof,
                     .on_connect = on_connect, .on_wakeup = on_wakeup};
    F.faults_on = true;
    errno = 0;
    F.l = evl_new(&h, NULL, &opts);
    if (!F.l) {
        FZ_CHECK(errno != 0, "evl_new failed without errno");
        FZ_CHECK(fz_count_fds() == fds_before, "a failed evl_new left %d fds open", fz_count_fds() - fds_before);
        fi_set_hook(NULL, NULL);
        return 0;
    }
    FZ_CHECK(evl_loop_udata(F.l) == NULL, "evl_loop_udata");
    static unsigned serial;
    F.llfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    F.laddr.sun_family = AF_UNIX;
    int an = snprintf(F.laddr.sun_path + 1, sizeof F.laddr.sun_path - 1, "evl-fuzzfi-%d-%u", (int)getpid(), serial++);
    F.laddr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)an);
    FZ_CHECK(F.llfd >= 0 && bind(F.llfd, (struct sockaddr *)&F.laddr, F.laddr_len) == 0 && listen(F.llfd, 8) == 0,
             "the loop's listener: errno %d", errno);
    errno = 0;
    int ar = evl_add_listener(F.l, F.llfd);
    FZ_CHECK(ar == 0 || errno != 0, "evl_add_listener failed without errno");
    adopt();
    for (int step = 0; step < STEPS && F.in.n > 0; step++) {
        uint8_t op = fz_u8(&F.in);
        if (op & 0x80)
            act(NULL, op);
        else
            peer_step(op);
        run();
    }
    /* The faults stop (or go on into evl_free); the peers close: every
     * connection must close by itself. */
    bool free_faulty = fz_u8(&F.in) & 1;
    F.faults_on = false;
    F.final = true;
    (void)evl_remove_listener(F.l, F.llfd); /* clients that come now are not accepted */
    for (int i = 0; i < F.nclients; i++)
        (void)close(F.clients[i]);
    for (int i = 0; i < F.n; i++) {
        if (!F.s[i].c)
            continue;
        evl_read_resume(F.s[i].c);
        for (int k = 0; k < 64; k++)
            evl_release(F.s[i].c);
        (void)evl_set_idle_timeout(F.s[i].c, 0);
    }
    for (int i = 0; i < F.n; i++)
        if (F.s[i].peer >= 0) {
            (void)close(F.s[i].peer);
            F.s[i].peer = -1;
        }
    for (int round = 0; round < SETTLE && F.closed < F.entered; round++)
        run();
    for (int i = 0; i < F.n; i++)
        if (F.s[i].c) {
            size_t len;
            (void)evl_data(F.s[i].c, &len);
            fz_trace("conn %d open: peer_eof %d pending %zu input %zu", i, evl_peer_eof(F.s[i].c),
                     evl_pending(F.s[i].c), len);
        }
    FZ_CHECK(F.closed == F.entered, "%llu of %llu connections still open %d runs after the faults stopped and "
             "every peer closed: stranded", (unsigned long long)(F.entered - F.closed), (unsigned long long)F.entered,
             SETTLE);
    F.faults_on = free_faulty;
    F.freeing = true;
    evl_free(F.l);
    F.faults_on = false;
    for (int i = 0; i < F.n; i++)
        FZ_CHECK(F.s[i].closes == 1, "conn %d: on_close ran %d times", i, F.s[i].closes);
    fi_set_hook(NULL, NULL);
    FZ_CHECK(fcntl(F.llfd, F_GETFD) >= 0, "evl_free closed the listener's fd");
    (void)close(F.llfd);
    FZ_CHECK(fz_count_fds() == fds_before, "fds: %d open before, %d after evl_free", fds_before, fz_count_fds());
    return 0;
}
