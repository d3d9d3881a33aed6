/*
 * Promises of lib/evloop.h that no other test checked: each test quotes the
 * sentence it holds the library to. Everything is observed from outside
 * (the peer's socket, fcntl on fds, the clock, signals), not from the
 * library's own counters, except where the counter is the promise.
 */
#include "testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* "a failing evl_write() inside a callback only mark[s] the connection; its
 * on_close runs after the current callback returns", and "EPIPE: the
 * connection is closing or closed ...; nothing was queued". */
static void write_into_dead_peer(tu_state *s, tu_rec *r)
{
    size_t len;
    (void)evl_data(r->c, &len);
    evl_consume(r->c, len);
    /* The peer is gone: the first send fails (EPIPE on a socketpair). */
    errno = 0;
    int first = evl_write(r->c, "reply\n", 6);
    int first_errno = errno;
    TU_CB_CHECK(s, first == -1);
    TU_CB_CHECK(s, first_errno == EPIPE || first_errno == ECONNRESET);
    /* still inside the callback: no on_close yet, c still usable */
    TU_CB_CHECK(s, r->closes == 0);
    TU_CB_CHECK(s, evl_fd(r->c) == r->fd);
    errno = 0;
    TU_CB_CHECK(s, evl_write(r->c, "again\n", 6) == -1);
    TU_CB_CHECK(s, errno == EPIPE);
    TU_CB_CHECK(s, evl_pending(r->c) == 0);
    r->user = 1; /* the hook ran to its end */
}

static void test_failing_write_in_callback_defers_on_close(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    s->read_hook = write_into_dead_peer;
    tu_rec *r = tu_pair(s);
    tu_peer_sends(r->peer, "request\n");
    tu_close_fd(r->peer);
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    assert_int_equal(r->user, 1);
    assert_int_equal(r->reads, 1);
    tu_finish(s);
}

/* ---- NULL callbacks ---------------------------------------------------- */

struct null_cb {
    int closes;
};

static void null_cb_close(evl_conn *c)
{
    struct null_cb *n = evl_loop_udata(evl_loop_of(c));
    n->closes++;
}

/* "on_accept NULL accepts everything". */
static void test_null_on_accept_accepts_everything(void **state)
{
    (void)state;
    struct null_cb n = {0};
    const evl_handler h = {.on_close = null_cb_close};
    evl_loop *l = evl_new(&h, &n, NULL);
    assert_non_null(l);
    int lfd = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(lfd >= 0);
    tu_track_fd(lfd);
    assert_int_equal(evl_add_listener(l, lfd), 0);
    int cl[3];
    for (int i = 0; i < 3; i++) {
        cl[i] = tu_tcp_connect(evl_local_port(lfd));
        tu_track_fd(cl[i]);
    }
    struct evl_stats st;
    uint64_t end = tu_now_ms() + 3000;
    do {
        assert_true(evl_run_once(l, 10) >= 0);
        evl_stats(l, &st);
    } while (st.accepted < 3 && tu_now_ms() < end);
    assert_int_equal(st.accepted, 3);
    assert_int_equal(st.rejected, 0);
    assert_int_equal(st.conns, 3);
    /* accepted for real: the loop closes them at evl_free, the peers see EOF */
    evl_free(l);
    assert_int_equal(n.closes, 3);
    char b;
    for (int i = 0; i < 3; i++) {
        assert_true(tu_wait_readable(cl[i], 2000));
        assert_int_equal(recv(cl[i], &b, 1, MSG_DONTWAIT), 0);
    }
}

/* "on_read NULL means input is never consumed, so it ends in an rbuf_max
 * close". */
static void test_null_on_read_ends_in_rbuf_max_close(void **state)
{
    (void)state;
    struct null_cb n = {0};
    const evl_handler h = {.on_close = null_cb_close};
    evl_options o = tu_opts();
    o.rbuf_max = 4096;
    evl_loop *l = evl_new(&h, &n, &o);
    assert_non_null(l);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tu_track_fd(sv[1]);
    assert_non_null(evl_adopt(l, sv[0]));
    char big[8192];
    memset(big, 'x', sizeof big);
    tu_peer_send(sv[1], big, sizeof big);
    uint64_t end = tu_now_ms() + 3000;
    while (n.closes == 0 && tu_now_ms() < end)
        assert_true(evl_run_once(l, 10) >= 0);
    assert_int_equal(n.closes, 1);
    struct evl_stats st;
    evl_stats(l, &st);
    assert_int_equal(st.overflow_closed, 1);
    evl_free(l);
}

/* ---- on_fd ----------------------------------------------------------------- */

/* "An fd registered with evl_add_fd is readable, hung up or in error": a
 * socket whose connect was refused has only an error (EPOLLERR|EPOLLHUP, no
 * data): on_fd must still be called, and the fd must still be open after. */
static void fd_sees_error(tu_state *s, int fd)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    TU_CB_CHECK(s, getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0);
    if (soerr)
        s->size = (size_t)soerr;
    TU_CB_CHECK(s, evl_remove_fd(s->l, fd) == 0);
}

static void test_on_fd_called_on_error(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    /* a port with nobody listening: bind one, take its number, close it */
    int probe = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(probe >= 0);
    int port = evl_local_port(probe);
    close(probe);
    int fd = tu_tcp_connect(port); /* non-blocking: EINPROGRESS or refused */
    tu_track_fd(fd);
    s->fd_hook = fd_sees_error;
    assert_int_equal(evl_add_fd(s->l, fd), 0);
    TU_RUN_UNTIL(s, s->fd_events >= 1, 2000);
    assert_int_equal(s->size, ECONNREFUSED);
    assert_int_equal(s->fd_events, 1);
    assert_true(fcntl(fd, F_GETFD) >= 0); /* the loop did not close it */
    tu_finish(s);
}

/* "Any may be NULL": with no on_fd, nobody reads an extra fd, and a
 * level-triggered readable pipe would be reported at every epoll_wait. The
 * loop must not spin on it (judged from outside: evl_run_once calls that
 * return at once, and CPU time), and must not close the fd it does not own. */
static void test_null_on_fd_does_not_spin_or_close(void **state)
{
    (void)state;
    struct null_cb n = {0};
    const evl_handler h = {.on_close = null_cb_close};
    evl_loop *l = evl_new(&h, &n, NULL);
    assert_non_null(l);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    tu_track_fd(p[0]);
    assert_int_equal(write(p[1], "unread", 6), 6);
    close(p[1]); /* readable and hung up: reported forever if watched */
    assert_int_equal(evl_add_fd(l, p[0]), 0);
    (void)evl_run_once(l, 0);
    uint64_t calls = 0;
    double cpu0 = tu_cpu_ms();
    uint64_t end = tu_now_ms() + 200;
    while (tu_now_ms() < end) {
        assert_true(evl_run_once(l, 10) >= 0);
        calls++;
    }
    double cpu = tu_cpu_ms() - cpu0;
    evl_free(l);
    /* idle: ~20 returns, a few ms of CPU; a spin: thousands, > 100 ms */
    if (calls > 100 || cpu > 50.0)
        TU_FAIL("spin on an extra fd with no on_fd: %llu returns, %.0f ms of CPU in 200 ms",
                (unsigned long long)calls, cpu);
    assert_true(fcntl(p[0], F_GETFD) >= 0);
    char b[8];
    assert_int_equal(read(p[0], b, sizeof b), 6); /* the data is still there, unread */
}

/* ---- evl_free ---------------------------------------------------------------- */

/* "forgets extra fds and listeners without closing them". */
static void test_free_does_not_close_extra_fds_or_listeners(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    int lfd = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(lfd >= 0);
    tu_track_fd(lfd);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    tu_track_fd(p[0]);
    tu_track_fd(p[1]);
    assert_int_equal(evl_add_listener(s->l, lfd), 0);
    assert_int_equal(evl_add_fd(s->l, p[0]), 0);
    tu_step(s, 0);
    evl_free(s->l);
    s->l = NULL;
    assert_true(fcntl(lfd, F_GETFD) >= 0);
    assert_true(fcntl(p[0], F_GETFD) >= 0);
    /* and they still work: the pipe carries bytes, the listener accepts */
    assert_int_equal(write(p[1], "z", 1), 1);
    char b = 0;
    assert_int_equal(read(p[0], &b, 1), 1);
    assert_int_equal(b, 'z');
    int cl = tu_tcp_connect(evl_local_port(lfd));
    tu_track_fd(cl);
    assert_true(tu_wait_readable(lfd, 2000));
    int a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(a >= 0);
    close(a);
    tu_finish(s);
}

/* ---- evl_run_once and signals --------------------------------------------------- */

static volatile sig_atomic_t usr1_seen;
static void on_usr1(int sig)
{
    (void)sig;
    usr1_seen = 1;
}

/* "Returns the number of epoll events handled (0 on timeout or EINTR)": a
 * signal with a handler (no SA_RESTART) interrupts a 3 s wait; the call
 * returns 0 at once, not -1 and not after the timeout. */
static void test_run_once_returns_0_on_eintr(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.tick_ms = 0; /* nothing may end the wait early but the signal */
    tu_state *s = tu_new(&o, TU_HOLD);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART */
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    timer_t t;
    struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};
    assert_int_equal(timer_create(CLOCK_MONOTONIC, &ev, &t), 0);
    struct itimerspec its = {.it_value = {.tv_nsec = 100000000L}};
    usr1_seen = 0;
    assert_int_equal(timer_settime(t, 0, &its, NULL), 0);
    uint64_t t0 = tu_now_ms();
    errno = 0;
    int n = evl_run_once(s->l, 3000);
    uint64_t dt = tu_now_ms() - t0;
    timer_delete(t);
    sigaction(SIGUSR1, &old, NULL);
    assert_int_equal(usr1_seen, 1);
    assert_int_equal(n, 0);
    if (dt >= 2000)
        TU_FAIL("evl_run_once waited %llu ms: the signal did not end the wait",
                (unsigned long long)dt);
    tu_finish(s);
}

/* ---- running again after a stop ------------------------------------------------ */

static void stop_on_second_tick(tu_state *s)
{
    if (s->ticks % 2 == 0)
        evl_stop(s->l);
}

/* "evl_run clears it, so the same loop can be run again": two evl_run calls
 * on one loop, each stopped by evl_stop from on_tick; a connection adopted
 * between them is served by the second run. */
static void test_run_again_after_stop(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.tick_ms = 20;
    tu_state *s = tu_new(&o, TU_ECHO);
    s->tick_hook = stop_on_second_tick;
    assert_int_equal(evl_run(s->l, -1), 0);
    assert_false(evl_stopping(s->l));
    assert_int_equal(s->ticks, 2);

    tu_rec *r = tu_pair(s);
    tu_peer_sends(r->peer, "second run\n");
    assert_int_equal(evl_run(s->l, -1), 0); /* its stop closes r gracefully */
    assert_false(evl_stopping(s->l));
    assert_int_equal(s->ticks, 4);
    tu_dbuf got = {0};
    bool end = tu_peer_drain(r->peer, &got);
    assert_int_equal(got.len, 11);
    assert_memory_equal(got.p, "second run\n", 11);
    assert_true(end); /* the stop closed it: EOF after the echo */
    tu_dbuf_free(&got);
    assert_int_equal(r->closes, 1);
    tu_finish(s);
}

/* ---- several listeners ----------------------------------------------------------- */

/* "several may be added: TCP and unix side by side". */
static void test_tcp_and_unix_listeners_side_by_side(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_LINE_ECHO);
    char path[108];
    (void)snprintf(path, sizeof path, "/tmp/evl-promises-%d.sock", (int)getpid());
    int ufd = evl_listen_unix(path);
    assert_true(ufd >= 0);
    tu_track_fd(ufd);
    int tfd = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(tfd >= 0);
    tu_track_fd(tfd);
    int t6 = evl_listen_tcp("::1", 0, 0); /* IPv6 loopback may be absent */
    if (t6 >= 0)
        tu_track_fd(t6);
    assert_int_equal(evl_add_listener(s->l, ufd), 0);
    assert_int_equal(evl_add_listener(s->l, tfd), 0);
    if (t6 >= 0)
        assert_int_equal(evl_add_listener(s->l, t6), 0);

    int uc = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(uc >= 0);
    tu_track_fd(uc);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    (void)snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    assert_int_equal(connect(uc, (struct sockaddr *)&sun, sizeof sun), 0);
    tu_set_nonblock(uc);
    int tc = tu_tcp_connect(evl_local_port(tfd));
    tu_track_fd(tc);
    tu_peer_sends(uc, "via unix\n");
    TU_RUN_UNTIL(s, s->accepts >= 1, 2000);
    tu_peer_sends(tc, "via tcp\n");
    /* interleaved: both served by the same loop, each its own reply */
    tu_peer_expect(s, uc, "via unix\n", 2000);
    tu_peer_expect(s, tc, "via tcp\n", 2000);
    TU_RUN_UNTIL(s, s->accepts == 2, 2000);
    unlink(path);
    tu_finish(s);
}

/* ---- close deadline ---------------------------------------------------------------- */

/* "flush ... then close once the peer closes too ... or close_timeout_ms after
 * this call, whichever comes first": a peer that keeps reading a few bytes
 * at a time (progress, but never the end) must not stretch the deadline. */
static void test_slow_reader_does_not_stretch_close_deadline(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.close_timeout_ms = 300;
    o.wbuf_max = 0;
    tu_state *s = tu_new(&o, TU_HOLD);
    /* TCP, the loop's send buffer small: each read by the peer opens the
     * window and the flush moves on (progress) every few tens of ms. A peer
     * receive buffer below the loopback MSS (64 KiB) would stall TCP itself
     * (no window update until a whole MSS is free). */
    tu_rec *r = tu_tcp(s);
    tu_set_sndbuf(r->fd, 4096);
    tu_set_rcvbuf(r->peer, 65536);
    static char chunk[4 << 20];
    memset(chunk, 'q', sizeof chunk);
    assert_int_equal(evl_write(r->c, chunk, sizeof chunk), 0);
    assert_true(evl_pending(r->c) > 0);
    evl_close(r->c);
    uint64_t t0 = tu_now_ms();
    char buf[16384];
    size_t got = 0;
    size_t pending0 = evl_pending(r->c), pending_before_deadline = pending0;
    /* read 16 KiB every 20 ms: ~800 KiB/s, so 4 MiB would take ~5 s */
    while (r->closes == 0 && tu_now_ms() - t0 < 3000) {
        ssize_t n = tu_peer_read(r->peer, buf, sizeof buf);
        if (n > 0)
            got += (size_t)n;
        if (r->closes == 0 && tu_now_ms() - t0 < 250)
            pending_before_deadline = evl_pending(r->c);
        tu_step(s, 20);
    }
    uint64_t dt = tu_now_ms() - t0;
    assert_int_equal(r->closes, 1);
    /* the flush did move on before the deadline (else nothing could stretch it) */
    if (pending_before_deadline >= pending0 || got == 0)
        TU_FAIL("no flush progress before the deadline: pending %zu -> %zu, peer read %zu",
                pending0, pending_before_deadline, got);
    if (dt > 300 + 700)
        TU_FAIL("closed %llu ms after evl_close with close_timeout_ms 300", (unsigned long long)dt);
    struct evl_stats st = tu_stats(s);
    assert_int_equal(st.close_timeouts, 1);
    tu_finish(s);
}

int main(void)
{
    tu_init_process();
    const struct CMUnitTest tests[] = {
        TU_TEST(test_failing_write_in_callback_defers_on_close),
        TU_TEST(test_null_on_accept_accepts_everything),
        TU_TEST(test_null_on_read_ends_in_rbuf_max_close),
        TU_TEST(test_on_fd_called_on_error),
        TU_TEST(test_null_on_fd_does_not_spin_or_close),
        TU_TEST(test_free_does_not_close_extra_fds_or_listeners),
        TU_TEST(test_run_once_returns_0_on_eintr),
        TU_TEST(test_run_again_after_stop),
        TU_TEST(test_tcp_and_unix_listeners_side_by_side),
        TU_TEST(test_slow_reader_does_not_stretch_close_deadline),
    };
    return cmocka_run_group_tests_name("test_promises", tests, NULL, NULL);
}
