/* Shared helpers of the unit tests; see testutil.h for the rules. */
#include "testutil.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <poll.h>
#include <unistd.h>

/* A test's watchdog: far above any test's normal run time (a few seconds),
 * so it only fires on a hang; the default SIGALRM action kills the program,
 * which the runner reports as a failure. */
#define TU_WATCHDOG_S 60

static tu_state *tu_current; /* the running test's loop, for the teardown */
static int tu_fds[256];      /* peer fds the teardown closes */
static int tu_nfds;

/* Live tu_dbuf allocations, freed by the teardown if a test failed first. */
static void *tu_blocks[256];
static int tu_nblocks;

static void tu_block_forget(const void *p)
{
    for (int i = 0; i < tu_nblocks; i++) {
        if (tu_blocks[i] == p) {
            tu_blocks[i] = tu_blocks[--tu_nblocks];
            return;
        }
    }
}

void tu_dbuf_add(tu_dbuf *d, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (d->len + n > d->cap) {
        size_t cap = d->cap ? d->cap : 256;
        while (cap < d->len + n)
            cap *= 2;
        char *q = malloc(cap);
        assert_non_null(q);
        assert_true(tu_nblocks < (int)(sizeof tu_blocks / sizeof tu_blocks[0]));
        if (d->p) {
            memcpy(q, d->p, d->len);
            tu_block_forget(d->p);
            free(d->p);
        }
        tu_blocks[tu_nblocks++] = q;
        d->p = q;
        d->cap = cap;
    }
    memcpy(d->p + d->len, p, n);
    d->len += n;
}

void tu_dbuf_free(tu_dbuf *d)
{
    if (d->p)
        tu_block_forget(d->p);
    free(d->p);
    d->p = NULL;
    d->len = d->cap = 0;
}

_Noreturn void tu_fail_at(const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    /* ap is started just above: the analyzer loses track of va_start when
     * it has already analysed other files in the same run (a false positive
     * seen only with several files on one clang-tidy command line). */
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
    (void)vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* cmocka's own failure path: the message goes into the XML report */
    _assert_true(0, msg, file, line);
    abort(); /* not reached: _assert_true longjmps out of the test */
}

void tu_cb_fail(tu_state *s, const char *file, int line, const char *what)
{
    if (s->err[0] == '\0')
        (void)snprintf(s->err, sizeof s->err, "%s:%d: check failed in a callback: %s", file, line, what);
}

void tu_init_process(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &sa, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    /* TU_FILTER=pattern (cmocka's * and ?) runs only the tests it names */
    const char *filter = getenv("TU_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    /* Unbuffered, so the order of our notes and cmocka's is kept. */
    (void)setvbuf(stdout, NULL, _IONBF, 0);
}

int tu_setup(void **state)
{
    (void)state;
    tu_current = NULL;
    tu_nfds = 0;
    alarm(TU_WATCHDOG_S);
    return 0;
}

static void tu_release(tu_state *s)
{
    for (int i = 0; i < s->nrecs; i++)
        tu_dbuf_free(&s->recs[i].in);
    tu_dbuf_free(&s->fd_in);
    free(s);
}

static void tu_close_tracked(void)
{
    for (int i = 0; i < tu_nfds; i++)
        close(tu_fds[i]);
    tu_nfds = 0;
}

int tu_teardown(void **state)
{
    (void)state;
    /* Only a failed test gets here with a live loop. */
    if (tu_current) {
        tu_state *s = tu_current;
        tu_current = NULL;
        if (s->l)
            evl_free(s->l);
        tu_release(s);
    }
    tu_close_tracked();
    while (tu_nblocks > 0)
        free(tu_blocks[--tu_nblocks]);
    alarm(0);
    return 0;
}

/* ---- callbacks ------------------------------------------------------------ */

tu_rec *tu_rec_of(evl_conn *c)
{
    return evl_udata(c);
}

static tu_state *state_of(evl_conn *c)
{
    return evl_loop_udata(evl_loop_of(c));
}

tu_rec *tu_rec_new(tu_state *s, evl_conn *c, int peer)
{
    if (s->nrecs == TU_MAX_RECS)
        return NULL;
    tu_rec *r = &s->recs[s->nrecs++];
    memset(r, 0, sizeof *r);
    r->c = c;
    r->fd = evl_fd(c);
    r->peer = peer;
    evl_set_udata(c, r);
    return r;
}

static bool cb_accept(evl_conn *c)
{
    tu_state *s = state_of(c);
    s->accepts++;
    if (s->reject_all)
        return false;
    tu_rec *r = tu_rec_new(s, c, -1);
    TU_CB_CHECK(s, r != NULL); /* a test accepted more than TU_MAX_RECS */
    if (!r)
        return false;
    if (s->accept_hook)
        s->accept_hook(s, r);
    return true;
}

void tu_default_read(tu_state *s, tu_rec *r)
{
    size_t len;
    const char *p = evl_data(r->c, &len);
    switch (s->mode) {
    case TU_HOLD:
        break;
    case TU_SINK:
        tu_dbuf_add(&r->in, p, len);
        evl_consume(r->c, len);
        break;
    case TU_LINE:
    case TU_LINE_ECHO: {
        const char *nl = memchr(p, '\n', len);
        if (!nl)
            break;
        size_t n = (size_t)(nl - p) + 1;
        tu_dbuf_add(&r->in, p, n);
        if (s->mode == TU_LINE_ECHO)
            TU_CB_CHECK(s, evl_write(r->c, p, n) == 0);
        evl_consume(r->c, n);
        break;
    }
    case TU_ECHO:
        tu_dbuf_add(&r->in, p, len);
        TU_CB_CHECK(s, evl_write(r->c, p, len) == 0);
        evl_consume(r->c, len);
        break;
    }
}

static void cb_read(evl_conn *c)
{
    tu_state *s = state_of(c);
    tu_rec *r = tu_rec_of(c);
    size_t len;
    const char *p = evl_data(c, &len);
    /* on_read means "input is available" */
    TU_CB_CHECK(s, p != NULL && len > 0);
    TU_CB_CHECK(s, r->closes == 0);
    r->reads++;
    s->reads++;
    r->read_step = s->steps;
    if (len > r->max_view)
        r->max_view = len;
    if (s->read_hook)
        s->read_hook(s, r);
    else
        tu_default_read(s, r);
}

static void cb_drain(evl_conn *c)
{
    tu_state *s = state_of(c);
    tu_rec *r = tu_rec_of(c);
    size_t pending = evl_pending(c);
    TU_CB_CHECK(s, r->closes == 0);
    /* on_drain: the write buffer fell to wbuf_low or below */
    TU_CB_CHECK(s, pending <= evl_get_options(evl_loop_of(c))->wbuf_low);
    r->drains++;
    s->drains++;
    if (pending > r->max_drain_pending)
        r->max_drain_pending = pending;
    if (s->drain_hook)
        s->drain_hook(s, r);
}

static void cb_close(evl_conn *c)
{
    tu_state *s = state_of(c);
    tu_rec *r = tu_rec_of(c);
    TU_CB_CHECK(s, r != NULL);
    if (!r)
        return;
    TU_CB_CHECK(s, r->closes == 0); /* exactly once */
    TU_CB_CHECK(s, r->c == c);
    TU_CB_CHECK(s, evl_fd(c) == r->fd);
    r->closes++;
    s->closes++;
    r->close_step = s->steps;
    r->eof_at_close = evl_peer_eof(c);
    if (s->write_in_close) {
        errno = 0;
        r->close_write_ret = evl_write(c, "x", 1);
        r->close_write_errno = errno;
    }
    if (s->close_hook)
        s->close_hook(s, r);
    r->c = NULL;
}

static void cb_fd(evl_loop *l, int fd)
{
    tu_state *s = evl_loop_udata(l);
    s->fd_events++;
    if (s->fd_hook) {
        s->fd_hook(s, fd);
        return;
    }
    /* level-triggered: read until EAGAIN; at EOF unregister, or it spins */
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            tu_dbuf_add(&s->fd_in, buf, (size_t)n);
            continue;
        }
        if (n == 0) {
            s->fd_eofs++;
            TU_CB_CHECK(s, evl_remove_fd(l, fd) == 0);
        }
        break;
    }
}

static void cb_tick(evl_loop *l)
{
    tu_state *s = evl_loop_udata(l);
    s->ticks++;
    if (s->tick_hook)
        s->tick_hook(s);
}

static const evl_handler tu_handler = {
    .on_accept = cb_accept,
    .on_read = cb_read,
    .on_drain = cb_drain,
    .on_close = cb_close,
    .on_fd = cb_fd,
    .on_tick = cb_tick,
};

/* ---- the loop ------------------------------------------------------------ */

evl_options tu_opts(void)
{
    evl_options o;
    evl_options_default(&o);
    return o;
}

tu_state *tu_new(const evl_options *o, enum tu_mode mode)
{
    tu_state *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->mode = mode;
    s->l = evl_new(&tu_handler, s, o);
    if (!s->l) {
        free(s);
        TU_FAIL("evl_new failed: %s", strerror(errno));
    }
    tu_current = s;
    return s;
}

void tu_finish(tu_state *s)
{
    if (s->err[0])
        TU_FAIL("%s", s->err);
    if (s->l) { /* NULL: the test freed the loop itself */
        tu_check_stats(s);
        evl_free(s->l);
        s->l = NULL;
    }
    tu_current = NULL;
    char err[sizeof s->err];
    memcpy(err, s->err, sizeof err);
    int bad = -1;
    for (int i = 0; i < s->nrecs; i++)
        if (s->recs[i].closes != 1 && bad < 0)
            bad = i;
    int closes = bad >= 0 ? s->recs[bad].closes : 0;
    tu_release(s);
    tu_close_tracked();
    if (err[0])
        TU_FAIL("%s", err);
    if (bad >= 0)
        TU_FAIL("connection #%d got on_close %d times (after evl_free), not once", bad, closes);
}

tu_rec *tu_adopt(tu_state *s, int fd, int peer)
{
    evl_conn *c = evl_adopt(s->l, fd);
    if (!c)
        TU_FAIL("evl_adopt(%d) failed: %s", fd, strerror(errno));
    tu_rec *r = tu_rec_new(s, c, peer);
    assert_non_null(r);
    return r;
}

tu_rec *tu_pair(tu_state *s)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tu_set_nonblock(sv[1]);
    tu_track_fd(sv[1]);
    return tu_adopt(s, sv[0], sv[1]);
}

evl_conn *tu_adopt_socketpair(evl_loop *l, void *udata, int *peer)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    evl_conn *c = evl_adopt(l, sv[0]);
    if (!c)
        TU_FAIL("evl_adopt(%d) failed: %s", sv[0], strerror(errno));
    evl_set_udata(c, udata);
    *peer = sv[1];
    tu_track_fd(sv[1]);
    return c;
}

void tu_tcp_pair(int *server, int *client)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(ls >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(ls, 1), 0);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &alen), 0);
    int cl = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(cl >= 0);
    /* loopback with a free backlog slot: connect completes at once */
    assert_int_equal(connect(cl, (struct sockaddr *)&a, sizeof a), 0);
    int sv = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    assert_true(sv >= 0);
    close(ls);
    *server = sv;
    *client = cl;
}

int tu_tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    assert_true(rc == 0 || errno == EINPROGRESS);
    return fd;
}

tu_rec *tu_tcp(tu_state *s)
{
    int sv, cl;
    tu_tcp_pair(&sv, &cl);
    tu_set_nonblock(cl);
    tu_track_fd(cl);
    return tu_adopt(s, sv, cl);
}

struct evl_stats tu_stats(const tu_state *s)
{
    struct evl_stats st;
    memset(&st, 0xa5, sizeof st); /* a field left unset shows as garbage */
    evl_stats(s->l, &st);
    return st;
}

void tu_check_stats(const tu_state *s)
{
    struct evl_stats st = tu_stats(s);
    if (st.conns != st.accepted - st.closed)
        TU_FAIL("stats: conns %llu != accepted %llu - closed %llu", (unsigned long long)st.conns,
                 (unsigned long long)st.accepted, (unsigned long long)st.closed);
    /* closed counts on_close calls; the test counts them too */
    assert_int_equal(st.closed, (uint64_t)s->closes);
    assert_int_equal(st.ticks, (uint64_t)s->ticks);
    uint64_t pending = 0, held = 0;
    for (int i = 0; i < s->nrecs; i++) {
        if (!s->recs[i].c)
            continue;
        pending += evl_pending(s->recs[i].c);
        size_t len;
        (void)evl_data(s->recs[i].c, &len);
        held += len;
    }
    assert_int_equal(st.wbuf_bytes, pending);
    assert_int_equal(st.rbuf_bytes, held);
}

int tu_step(tu_state *s, int ms)
{
    s->steps++;
    int n = evl_run_once(s->l, ms);
    if (n < 0)
        TU_FAIL("evl_run_once: %s", strerror(errno));
    if (s->err[0])
        TU_FAIL("%s", s->err);
    return n;
}

void tu_run_for(tu_state *s, int ms)
{
    uint64_t end = tu_now_ms() + (uint64_t)ms;
    while (tu_now_ms() < end)
        tu_step(s, 5);
}

/* ---- the peer -------------------------------------------------------------- */

void tu_track_fd(int fd)
{
    assert_true(tu_nfds < (int)(sizeof tu_fds / sizeof tu_fds[0]));
    tu_fds[tu_nfds++] = fd;
}

void tu_close_fd(int fd)
{
    for (int i = 0; i < tu_nfds; i++) {
        if (tu_fds[i] == fd) {
            tu_fds[i] = tu_fds[--tu_nfds];
            break;
        }
    }
    assert_int_equal(close(fd), 0);
}

void tu_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

void tu_set_sndbuf(int fd, int bytes)
{
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes), 0);
}

void tu_set_rcvbuf(int fd, int bytes)
{
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes), 0);
}

void tu_set_linger0(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
}

void tu_peer_send(int fd, const void *p, size_t n)
{
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w != (ssize_t)n)
        TU_FAIL("peer send of %zu bytes: %zd (%s)", n, w, w < 0 ? strerror(errno) : "short");
}

void tu_peer_sends(int fd, const char *str)
{
    tu_peer_send(fd, str, strlen(str));
}

size_t tu_peer_fill(int fd, uint32_t seed)
{
    static char chunk[16384];
    size_t total = 0;
    for (;;) {
        tu_pattern(chunk, sizeof chunk, total, seed);
        ssize_t w = send(fd, chunk, sizeof chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            total += (size_t)w;
            continue;
        }
        assert_true(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        return total;
    }
}

ssize_t tu_peer_read(int fd, void *buf, size_t cap)
{
    return recv(fd, buf, cap, MSG_DONTWAIT);
}

bool tu_peer_drain(int fd, tu_dbuf *out)
{
    char buf[65536];
    for (;;) {
        ssize_t n = tu_peer_read(fd, buf, sizeof buf);
        if (n > 0) {
            tu_dbuf_add(out, buf, (size_t)n);
            continue;
        }
        return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    }
}

bool tu_peer_collect(tu_state *s, int fd, tu_dbuf *out, size_t want, int max_ms, int *err)
{
    char buf[65536];
    uint64_t end = tu_now_ms() + (uint64_t)max_ms;
    if (err)
        *err = 0;
    while (out->len < want) {
        size_t room = want - out->len;
        ssize_t n = tu_peer_read(fd, buf, room < sizeof buf ? room : sizeof buf);
        if (n > 0) {
            tu_dbuf_add(out, buf, (size_t)n);
            continue;
        }
        if (n == 0)
            return true;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            if (err)
                *err = errno;
            return true;
        }
        if (tu_now_ms() > end)
            TU_FAIL("peer got %zu of %zu bytes in %d ms", out->len, want, max_ms);
        tu_step(s, 5);
    }
    return false;
}

void tu_peer_expect(tu_state *s, int fd, const char *str, int max_ms)
{
    tu_dbuf got = {0};
    size_t n = strlen(str);
    int err;
    bool end = tu_peer_collect(s, fd, &got, n, max_ms, &err);
    if (got.len != n || (n > 0 && memcmp(got.p, str, n) != 0)) {
        TU_FAIL("peer expected \"%s\", got %zu bytes \"%.*s\"%s%s", str, got.len, (int)got.len,
                 got.p ? got.p : "", end ? " then the end: " : "", end ? strerror(err) : "");
    }
    tu_dbuf_free(&got);
    /* "Exactly": tu_peer_collect stops at n bytes, so a duplicated or extra
     * reply would go unseen. Let the loop run a few more rounds (whatever it
     * had queued goes out) and look for one more byte; EOF is fine here. */
    for (int i = 0; i < 3; i++)
        tu_step(s, 0);
    char extra[64];
    ssize_t x = tu_peer_read(fd, extra, sizeof extra);
    if (x > 0)
        TU_FAIL("peer expected exactly \"%s\", then got %zd more bytes: \"%.*s\"", str, x, (int)x,
                extra);
}

void tu_peer_expect_eof(tu_state *s, int fd, int max_ms)
{
    char buf[256];
    uint64_t end = tu_now_ms() + (uint64_t)max_ms;
    for (;;) {
        ssize_t n = tu_peer_read(fd, buf, sizeof buf);
        if (n == 0)
            return;
        if (n > 0)
            TU_FAIL("peer expected EOF, got %zd more bytes: \"%.*s\"", n, (int)n, buf);
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            TU_FAIL("peer expected a clean EOF, got %s", strerror(errno));
        if (tu_now_ms() > end)
            TU_FAIL("peer saw no EOF in %d ms", max_ms);
        tu_step(s, 5);
    }
}

int tu_peer_expect_closed(tu_state *s, int fd, int max_ms)
{
    char buf[65536];
    uint64_t end = tu_now_ms() + (uint64_t)max_ms;
    for (;;) {
        ssize_t n = tu_peer_read(fd, buf, sizeof buf);
        if (n == 0)
            return 0;
        if (n > 0)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return errno;
        if (tu_now_ms() > end)
            TU_FAIL("peer's socket not closed by the loop in %d ms", max_ms);
        tu_step(s, 5);
    }
}

bool tu_wait_readable(int fd, int max_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, max_ms) == 1;
}

void tu_assert_no_spin(tu_state *s, int window_ms, const char *what)
{
    /* Measured, ASan and valgrind builds, 200-300 ms windows: 20-30
     * returns (window/10) and 0.4-1.5 ms of CPU. Bounds: window/2 returns
     * (5x) and window/20 of CPU (10-15 ms, ~7x). A spin measured 95 000 and
     * 150 000 returns in 200 ms, but only 31-47 ms of CPU on this loaded
     * machine: the count of returns is what reliably sees it. */
    uint64_t calls = 0;
    double cpu0 = tu_cpu_ms();
    uint64_t end = tu_now_ms() + (uint64_t)window_ms;
    while (tu_now_ms() < end) {
        tu_step(s, 10);
        calls++;
    }
    double cpu = tu_cpu_ms() - cpu0;
    if (calls > (uint64_t)window_ms / 2 || cpu > window_ms / 20.0)
        TU_FAIL("spin %s: %llu evl_run_once(10 ms) returns and %.0f ms of CPU in %d ms", what,
                (unsigned long long)calls, cpu, window_ms);
}

/* ---- data and time ---------------------------------------------------------- */

void tu_pattern(void *buf, size_t n, uint64_t offset, uint32_t seed)
{
    unsigned char *p = buf;
    for (size_t i = 0; i < n; i++)
        p[i] = tu_pat(offset + i, seed);
}

long tu_pattern_mismatch(const void *buf, size_t n, uint64_t offset, uint32_t seed)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < n; i++)
        if (p[i] != tu_pat(offset + i, seed))
            return (long)i;
    return -1;
}

uint64_t tu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

double tu_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
