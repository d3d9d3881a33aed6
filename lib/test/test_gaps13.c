/*
 * The paths of the timers, outgoing connections, wakeup, half-close and
 * per-connection overrides that no other unit test reaches (found by `make
 * coverage`): allocation and system-call failures, invalid arguments and the
 * rarer branches. Like test_gaps.c, this program is linked with --wrap for
 * the calls below (the flags come from tools/coverage/unit-wraps.sh): a test
 * arms one failure right before the library call it is about, and checks
 * that it fired, so it cannot pass by missing its path.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum fn { F_MALLOC, F_CALLOC, F_REALLOC, F_SOCKET, F_CONNECT, F_GETSOCKOPT, F_EVENTFD,
          F_EPOLL_CTL, F_EPOLL_CREATE1, F_WRITE, F_N };

static struct fault {
    bool armed;
    int skip; /* matching calls to let through first */
    int err;
    int fired;
} F[F_N];

static void arm(enum fn f, int skip, int err) { F[f] = (struct fault){.armed = true, .skip = skip, .err = err}; }
static void disarm(void) { memset(F, 0, sizeof F); }

static bool should_fail(enum fn f)
{
    struct fault *x = &F[f];
    if (!x->armed)
        return false;
    if (x->skip > 0) {
        x->skip--;
        return false;
    }
    x->armed = false;
    x->fired++;
    errno = x->err;
    return true;
}

void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__wrap_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
int __real_socket(int d, int t, int p);
int __wrap_socket(int d, int t, int p);
int __real_connect(int fd, const struct sockaddr *a, socklen_t l);
int __wrap_connect(int fd, const struct sockaddr *a, socklen_t l);
int __real_getsockopt(int fd, int lvl, int name, void *v, socklen_t *l);
int __wrap_getsockopt(int fd, int lvl, int name, void *v, socklen_t *l);
int __real_eventfd(unsigned int v, int flags);
int __wrap_eventfd(unsigned int v, int flags);
int __real_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int __real_epoll_create1(int flags);
int __wrap_epoll_create1(int flags);
ssize_t __real_write(int fd, const void *p, size_t n);
ssize_t __wrap_write(int fd, const void *p, size_t n);

void *__wrap_malloc(size_t n) { return should_fail(F_MALLOC) ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { return should_fail(F_CALLOC) ? NULL : __real_calloc(n, m); }
void *__wrap_realloc(void *p, size_t n) { return should_fail(F_REALLOC) ? NULL : __real_realloc(p, n); }
int __wrap_socket(int d, int t, int p) { return should_fail(F_SOCKET) ? -1 : __real_socket(d, t, p); }
int __wrap_connect(int fd, const struct sockaddr *a, socklen_t l)
{
    return should_fail(F_CONNECT) ? -1 : __real_connect(fd, a, l);
}
int __wrap_getsockopt(int fd, int lvl, int name, void *v, socklen_t *l)
{
    return should_fail(F_GETSOCKOPT) ? -1 : __real_getsockopt(fd, lvl, name, v, l);
}
int __wrap_eventfd(unsigned int v, int flags) { return should_fail(F_EVENTFD) ? -1 : __real_eventfd(v, flags); }
int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    return should_fail(F_EPOLL_CTL) ? -1 : __real_epoll_ctl(epfd, op, fd, ev);
}
int __wrap_epoll_create1(int flags) { return should_fail(F_EPOLL_CREATE1) ? -1 : __real_epoll_create1(flags); }
ssize_t __wrap_write(int fd, const void *p, size_t n) { return should_fail(F_WRITE) ? -1 : __real_write(fd, p, n); }

static int connects, connect_err, closes, close_reason, close_err;

static void g_connect(evl_conn *c, int err)
{
    (void)c;
    connects++;
    connect_err = err;
}

static void g_close(evl_conn *c)
{
    closes++;
    close_reason = evl_close_reason(c);
    close_err = evl_close_errno(c);
}

static const evl_handler g_h = {.on_connect = g_connect, .on_close = g_close};
static const evl_handler g_quiet = {.on_close = g_close}; /* no on_connect, no on_wakeup */

static void reset(void)
{
    disarm();
    connects = closes = close_reason = close_err = 0;
    connect_err = -1;
}

static evl_loop *loop(const evl_handler *h, int idle_ms)
{
    evl_options o;
    evl_options_default(&o);
    o.tick_ms = 0;
    o.idle_timeout_ms = idle_ms;
    o.close_timeout_ms = 200;
    evl_loop *l = evl_new(h, NULL, &o);
    assert_non_null(l);
    return l;
}

static void run_until(evl_loop *l, const int *v, int want, int ms)
{
    uint64_t end = tu_now_ms() + (uint64_t)ms;
    while (*v < want && tu_now_ms() < end)
        assert_true(evl_run_once(l, 10) >= 0);
    assert_int_equal(*v, want);
}

static int tcp_listener(const char *host, int *port)
{
    int lfd = evl_listen_tcp(host, 0, 0);
    assert_true(lfd >= 0);
    tu_track_fd(lfd);
    *port = evl_local_port(lfd);
    return lfd;
}

/* ---- evl_new's new resources ------------------------------------------------ */

static void test_new_fails_cleanly_without_eventfd_poll_or_events(void **state)
{
    (void)state;
    evl_handler h = {0};
    const struct { enum fn f; int skip; int err; } cases[] = {
        {F_EVENTFD, 0, EMFILE},
        {F_EPOLL_CREATE1, 0, ENFILE},
        {F_EPOLL_CTL, 0, ENOMEM},   /* the eventfd's registration */
        {F_CALLOC, 2, ENOMEM},      /* the event batch (after the loop, the heap) */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reset();
        arm(cases[i].f, cases[i].skip, cases[i].err);
        errno = 0;
        evl_loop *l = evl_new(&h, NULL, NULL);
        disarm();
        if (l)
            evl_free(l);
        assert_null(l);
        assert_int_equal(errno, cases[i].err);
    }
}

/* ---- evl_connect's failures -------------------------------------------------------- */

/* Open fds of this process (the failures below must leave none behind). */
static int open_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 1024; fd++)
        n += fcntl(fd, F_GETFD) >= 0;
    return n;
}

static void test_connect_failures_report_and_leave_nothing(void **state)
{
    (void)state;
    reset();
    evl_loop *l = loop(&g_h, 0);
    int port;
    tcp_listener("127.0.0.1", &port);
    int fds = open_fds();
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    errno = 0;
    assert_null(evl_connect(l, longpath, 0, 0, NULL, NULL)); /* past sun_path */
    assert_int_equal(errno, EINVAL);
    assert_null(evl_connect(l, "127.0.0.1", port, -1, NULL, NULL));
    assert_int_equal(errno, EINVAL);

    arm(F_SOCKET, 0, EMFILE);
    assert_null(evl_connect(l, "127.0.0.1", port, 0, NULL, NULL));
    assert_int_equal(errno, EMFILE);
    assert_int_equal(F[F_SOCKET].fired, 1);

    arm(F_MALLOC, 0, ENOMEM); /* the timeout's timer */
    assert_null(evl_connect(l, "127.0.0.1", port, 1000, NULL, NULL));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(F[F_MALLOC].fired, 1);

    arm(F_REALLOC, 0, ENOMEM); /* the heap growing for the timeout */
    assert_null(evl_connect(l, "127.0.0.1", port, 1000, NULL, NULL));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(F[F_REALLOC].fired, 1);

    arm(F_EPOLL_CTL, 0, ENOSPC); /* its registration (for EPOLLOUT) */
    assert_null(evl_connect(l, "127.0.0.1", port, 0, NULL, NULL));
    assert_int_equal(errno, ENOSPC);
    assert_int_equal(F[F_EPOLL_CTL].fired, 1);

    arm(F_CALLOC, 0, ENOMEM); /* the extension, where the timeout's timer lives */
    assert_null(evl_connect(l, "127.0.0.1", port, 1000, NULL, NULL));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(F[F_CALLOC].fired, 1);

    arm(F_CALLOC, 1, ENOMEM); /* the extension made, then the connection fails: */
    assert_null(evl_connect(l, "127.0.0.1", port, 1000, NULL, NULL)); /* (LSan: */
    assert_int_equal(errno, ENOMEM);                                  /* no leak) */
    assert_int_equal(F[F_CALLOC].fired, 1);

    struct evl_stats st;
    evl_stats(l, &st);
    assert_int_equal(st.conns, 0);
    assert_int_equal(open_fds(), fds); /* each failure closed its socket */
    disarm();
    evl_free(l);
    assert_int_equal(closes, 0); /* none of them became a connection */
}

/* connect interrupted by a signal is tried again; a connection without an
 * on_connect handler is served all the same; getsockopt failing when the
 * connect finishes reports its errno. */
static void test_connect_eintr_no_handler_and_sockopt_failure(void **state)
{
    (void)state;
    reset();
    evl_loop *l = loop(&g_h, 0);
    int port;
    int lfd = tcp_listener("127.0.0.1", &port);
    (void)lfd;
    arm(F_CONNECT, 0, EINTR);
    evl_conn *c = evl_connect(l, "127.0.0.1", port, 0, &g_quiet, NULL);
    assert_non_null(c);
    assert_int_equal(F[F_CONNECT].fired, 1);
    for (int i = 0; i < 5; i++)
        assert_true(evl_run_once(l, 10) >= 0);
    assert_int_equal(connects, 0); /* g_quiet has no on_connect */
    assert_int_equal(closes, 0);

    arm(F_GETSOCKOPT, 0, ENOBUFS);
    c = evl_connect(l, "127.0.0.1", port, 0, NULL, NULL); /* the loop's handler: g_h */
    assert_non_null(c);
    run_until(l, &closes, 1, 2000);
    assert_int_equal(connect_err, ENOBUFS);
    assert_int_equal(close_reason, EVL_CLOSE_CONNECT);
    assert_int_equal(close_err, ENOBUFS);
    disarm();
    evl_free(l);
}

/* IPv6 loopback (every Debian host has ::1; docs/DESIGN.md §4). */
static void test_connect_ipv6(void **state)
{
    (void)state;
    reset();
    evl_loop *l = loop(&g_h, 0);
    int port;
    tcp_listener("::1", &port);
    evl_conn *c = evl_connect(l, "::1", port, 1000, NULL, NULL);
    assert_non_null(c);
    run_until(l, &connects, 1, 2000);
    assert_int_equal(connect_err, 0);
    evl_free(l);
}

/* evl_shutdown before the connect finished: the FIN goes out once it has;
 * on a closing connection it does nothing. */
static void test_shutdown_while_connecting_and_when_closing(void **state)
{
    (void)state;
    reset();
    evl_loop *l = loop(&g_h, 0);
    int port;
    int lfd = tcp_listener("127.0.0.1", &port);
    evl_conn *c = evl_connect(l, "127.0.0.1", port, 1000, NULL, NULL);
    assert_non_null(c);
    evl_shutdown(c);
    run_until(l, &connects, 1, 2000);
    int peer = -1;
    uint64_t end = tu_now_ms() + 2000;
    while (peer < 0 && tu_now_ms() < end)
        peer = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(peer >= 0);
    tu_track_fd(peer);
    char b;
    assert_true(tu_wait_readable(peer, 2000));
    assert_int_equal(recv(peer, &b, 1, 0), 0); /* our FIN */
    evl_close(c);
    evl_shutdown(c); /* closing: nothing */
    evl_free(l);
}

/* evl_shutdown with output pending: the FIN follows the last byte. */
static void test_shutdown_after_pending_output(void **state)
{
    (void)state;
    reset();
    evl_loop *l = loop(&g_quiet, 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tu_track_fd(sv[1]);
    tu_set_sndbuf(sv[0], 4096);
    evl_conn *c = evl_adopt(l, sv[0]);
    static char blob[256 << 10];
    tu_pattern(blob, sizeof blob, 0, 3);
    assert_int_equal(evl_write(c, blob, sizeof blob), 0);
    assert_true(evl_pending(c) > 0);
    evl_shutdown(c);
    tu_set_nonblock(sv[1]);
    static char got[sizeof blob + 1];
    size_t have = 0;
    uint64_t end = tu_now_ms() + 3000;
    ssize_t n = 1;
    while (n != 0 && tu_now_ms() < end) {
        assert_true(evl_run_once(l, 5) >= 0);
        n = read(sv[1], got + have, sizeof got - have);
        if (n > 0)
            have += (size_t)n;
    }
    assert_int_equal(n, 0); /* EOF after the data */
    assert_int_equal(have, sizeof blob);
    assert_int_equal(tu_pattern_mismatch(got, have, 0, 3), -1);
    evl_abort(c);
    evl_shutdown(c); /* on a dead connection: nothing */
    evl_free(l);
}

/* on_eof that closes its connection: the EOF check stops there. */
static void close_on_eof(evl_conn *c) { evl_close(c); }

static void test_on_eof_closing_its_connection(void **state)
{
    (void)state;
    reset();
    evl_handler h = {.on_close = g_close, .on_eof = close_on_eof};
    evl_loop *l = loop(&h, 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tu_track_fd(sv[1]);
    assert_non_null(evl_adopt(l, sv[0]));
    shutdown(sv[1], SHUT_WR);
    run_until(l, &closes, 1, 2000);
    assert_int_equal(close_reason, EVL_CLOSE_LOCAL);
    evl_free(l);
}

/* ---- per-connection idle timeout: the rarer branches ---------------------- */

static void test_idle_override_branches(void **state)
{
    (void)state;
    reset();
    evl_loop *l = loop(&g_quiet, 0); /* the loop's idle timeout off */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tu_track_fd(sv[1]);
    evl_conn *c = evl_adopt(l, sv[0]);
    assert_non_null(c);
    arm(F_MALLOC, 0, ENOMEM); /* its own timer */
    assert_int_equal(evl_set_idle_timeout(c, 100), -1);
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(evl_set_idle_timeout(c, 300), 0);
    assert_int_equal(evl_set_idle_timeout(c, 150), 0); /* has its timer already */
    /* progress keeps it open past its first deadline: the timer re-arms */
    uint64_t end = tu_now_ms() + 400;
    while (tu_now_ms() < end) {
        assert_true(write(sv[1], "x", 1) == 1);
        assert_true(evl_run_once(l, 20) >= 0);
    }
    assert_int_equal(closes, 0);
    assert_int_equal(evl_set_idle_timeout(c, -1), 0); /* back: the loop's is off */
    assert_int_equal(evl_set_wbuf_max(c, 0), 0);
    evl_close(c);
    errno = 0;
    assert_int_equal(evl_set_idle_timeout(c, 100), -1); /* closing */
    assert_int_equal(errno, EINVAL);
    evl_free(l);

    /* with the loop's idle timeout on, progress on a connection with its
     * own timeout leaves the loop's LRU alone */
    closes = 0;
    l = loop(&g_quiet, 5000);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tu_track_fd(sv[1]);
    c = evl_adopt(l, sv[0]);
    assert_int_equal(evl_set_idle_timeout(c, 1000), 0);
    assert_true(write(sv[1], "y", 1) == 1);
    for (int i = 0; i < 5; i++)
        assert_true(evl_run_once(l, 10) >= 0);
    assert_int_equal(closes, 0);
    evl_free(l);
}

/* ---- wakeup and the stop with custom connections ---------------------------- */

static void test_wakeup_without_handler_and_write_failure(void **state)
{
    (void)state;
    reset();
    evl_loop *l = loop(&g_quiet, 0);
    assert_int_equal(evl_wakeup(l), 0);
    assert_true(evl_run_once(l, 10) >= 0); /* no on_wakeup: nothing to call */
    arm(F_WRITE, 0, EAGAIN); /* a full counter: woken already */
    assert_int_equal(evl_wakeup(l), 0);
    arm(F_WRITE, 0, EBADF);
    assert_int_equal(evl_wakeup(l), -1);
    assert_int_equal(errno, EBADF);
    disarm();
    evl_free(l);
}

static void stop_on_tick(evl_loop *l) { evl_stop(l); }

static void test_stop_closes_custom_idle_connections(void **state)
{
    (void)state;
    reset();
    evl_handler h = {.on_close = g_close, .on_tick = stop_on_tick};
    evl_options o;
    evl_options_default(&o);
    o.tick_ms = 50;
    evl_loop *l = evl_new(&h, NULL, &o);
    assert_non_null(l);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tu_track_fd(sv[1]);
    evl_conn *c = evl_adopt(l, sv[0]);
    assert_int_equal(evl_set_idle_timeout(c, 60000), 0); /* on the custom list */
    assert_int_equal(evl_run(l, -1), 0);
    assert_int_equal(closes, 1);
    assert_int_equal(close_reason, EVL_CLOSE_STOP);
    evl_free(l);
}

/* Two graceful closes with different deadlines: the close sweep takes the
 * first, then re-arms itself for the second. */
static void test_close_sweep_rearms_for_the_next_deadline(void **state)
{
    (void)state;
    reset();
    evl_loop *l = loop(&g_quiet, 0);
    int a[2], b[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b), 0);
    tu_track_fd(a[1]);
    tu_track_fd(b[1]);
    evl_conn *ca = evl_adopt(l, a[0]);
    evl_conn *cb = evl_adopt(l, b[0]);
    evl_close(ca); /* lingers: the peer never closes */
    for (int i = 0; i < 10; i++)
        assert_true(evl_run_once(l, 10) >= 0);
    evl_close(cb);
    run_until(l, &closes, 2, 3000);
    evl_free(l);
}

/* ---- timers: the rarer branches ------------------------------------------------ */

static void nop(evl_timer *t, void *arg)
{
    (void)t;
    (void)arg;
}

static void test_timer_allocation_failures_and_limits(void **state)
{
    (void)state;
    reset();
    evl_loop *l = loop(&g_quiet, 0);
    arm(F_MALLOC, 0, ENOMEM);
    assert_null(evl_timer_new(l, nop, NULL));
    assert_int_equal(errno, ENOMEM);
    evl_timer *t = evl_timer_new(l, nop, NULL);
    assert_non_null(t);
    arm(F_REALLOC, 0, ENOMEM); /* the heap must grow for the first user timer */
    assert_int_equal(evl_timer_start(t, 10, 0), -1);
    assert_int_equal(errno, ENOMEM);
    assert_false(evl_timer_pending(t));
    errno = 0;
    assert_int_equal(evl_timer_start(t, 10, UINT64_MAX), -1); /* a period too long */
    assert_int_equal(errno, EINVAL);
    disarm();
    evl_free(l);
}

/* evl_read_resume on a connection that was never paused changes nothing
 * (the proxy calls it from on_drain whether or not the other side paused:
 * only timing decided whether a run covered it). */
static void test_read_resume_without_pause(void **state)
{
    (void)state;
    reset();
    evl_loop *l = loop(&g_quiet, 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tu_track_fd(sv[1]);
    evl_conn *c = evl_adopt(l, sv[0]);
    assert_non_null(c);
    evl_read_resume(c);
    assert_true(write(sv[1], "z", 1) == 1);
    size_t n = 0;
    for (int i = 0; i < 20 && n == 0; i++) {
        assert_true(evl_run_once(l, 10) >= 0);
        (void)evl_data(c, &n);
    }
    assert_int_equal(n, 1); /* still read: the resume did not pause it */
    evl_free(l);
}

static void test_close_reason_names_and_nomem_errno(void **state)
{
    (void)state;
    assert_string_equal(evl_close_reason_name(-1), "?");
    assert_string_equal(evl_close_reason_name(EVL_CLOSE_NOMEM), "nomem");
    assert_string_equal(evl_close_reason_name(EVL_CLOSE_CONNECT), "connect");
}

int main(void)
{
    tu_init_process();
    const struct CMUnitTest tests[] = {
        TU_TEST(test_new_fails_cleanly_without_eventfd_poll_or_events),
        TU_TEST(test_connect_failures_report_and_leave_nothing),
        TU_TEST(test_connect_eintr_no_handler_and_sockopt_failure),
        TU_TEST(test_connect_ipv6),
        TU_TEST(test_shutdown_while_connecting_and_when_closing),
        TU_TEST(test_shutdown_after_pending_output),
        TU_TEST(test_on_eof_closing_its_connection),
        TU_TEST(test_idle_override_branches),
        TU_TEST(test_wakeup_without_handler_and_write_failure),
        TU_TEST(test_stop_closes_custom_idle_connections),
        TU_TEST(test_close_sweep_rearms_for_the_next_deadline),
        TU_TEST(test_timer_allocation_failures_and_limits),
        TU_TEST(test_read_resume_without_pause),
        TU_TEST(test_close_reason_names_and_nomem_errno),
    };
    return cmocka_run_group_tests_name("test_gaps13", tests, NULL, NULL);
}
