/*
 * The six library bugs an independent review reproduced against the header
 * (issue 11), one test group each, every test watched failing before its fix:
 *  1. a blocking listener blocked the loop in accept4;
 *  2. a half-closed peer lost a reply deferred to on_tick/on_fd/evl_wake;
 *  3. evl_writev with more than IOV_MAX buffers aborted the connection;
 *  4. an accept error outside the handled set (EINVAL after shutdown(),
 *     EPERM) spun the loop;
 *  5. children spawned from a callback inherited SIGTERM/SIGINT blocked;
 *  6. a failed evl_run left its listener registered (a retry got EEXIST).
 *
 * This program is linked with -Wl,--wrap=accept4,--wrap=signalfd
 * (lib/test/unit.mk): the library's calls land in the __wrap_ functions
 * below, which pass through unless a test armed a failure.
 */
#include "testutil.h"

#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- armable failures through --wrap --------------------------------------- */

static struct {
    int accept_errno;   /* accept4 fails with this (0: pass through) */
    int accept_calls;   /* accept4 calls made by the library */
    int signalfd_errno; /* signalfd fails with this once (0: pass through) */
} F;

int __real_accept4(int fd, struct sockaddr *a, socklen_t *al, int flags);
int __wrap_accept4(int fd, struct sockaddr *a, socklen_t *al, int flags);
int __real_signalfd(int fd, const sigset_t *mask, int flags);
int __wrap_signalfd(int fd, const sigset_t *mask, int flags);

int __wrap_accept4(int fd, struct sockaddr *a, socklen_t *al, int flags)
{
    F.accept_calls++;
    if (F.accept_errno) {
        errno = F.accept_errno;
        return -1;
    }
    return __real_accept4(fd, a, al, flags);
}

int __wrap_signalfd(int fd, const sigset_t *mask, int flags)
{
    if (F.signalfd_errno) {
        errno = F.signalfd_errno;
        F.signalfd_errno = 0;
        return -1;
    }
    return __real_signalfd(fd, mask, flags);
}

static void arm_reset(void) { memset(&F, 0, sizeof F); }

/* A TCP listening socket on 127.0.0.1, blocking unless nonblock. */
static int listener(bool nonblock, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 64), 0);
    *port = evl_local_port(fd);
    assert_true(*port > 0);
    tu_track_fd(fd);
    return fd;
}

/* Events reported by evl_run_once over ms of wall time, 20 ms waits: a loop
 * with nothing to do reports none; a level-triggered spin reports one per
 * call, thousands. Observed through the public return value, not counters. */
static long events_over(tu_state *s, int ms)
{
    long events = 0;
    uint64_t end = tu_now_ms() + (uint64_t)ms;
    while (tu_now_ms() < end)
        events += tu_step(s, 20);
    return events;
}

/* ---- 1. a blocking listener must not block the loop ------------------------ */

static void test_review1_blocking_listener_does_not_block(void **state)
{
    (void)state;
    int port;
    int lfd = listener(false, &port);
    int c1 = tu_tcp_connect(port);
    tu_track_fd(c1);
    /* The loop runs in a child: if accept4 blocks, only the child hangs,
     * and the parent sees it not return. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(0);
        tu_state *s = tu_new(NULL, TU_SINK);
        if (evl_add_listener(s->l, lfd) < 0)
            _exit(2);
        uint64_t end = tu_now_ms() + 2000;
        while (s->accepts < 1 && tu_now_ms() < end)
            (void)evl_run_once(s->l, 50);
        int rc = s->accepts == 1 ? 0 : 3;
        /* the second accept of the batch returned EAGAIN: run_once returns */
        (void)evl_run_once(s->l, 0);
        _exit(rc);
    }
    int status = -1;
    uint64_t end = tu_now_ms() + 5000;
    while (tu_now_ms() < end && waitpid(pid, &status, WNOHANG) == 0)
        usleep(10000);
    if (waitpid(pid, &status, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        (void)waitpid(pid, &status, 0);
        TU_FAIL("the loop blocked in accept on a blocking listener");
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* evl_add_listener makes the fd non-blocking, as the header says. */
static void test_review1_add_listener_sets_nonblock(void **state)
{
    (void)state;
    int port;
    int lfd = listener(false, &port);
    tu_state *s = tu_new(NULL, TU_SINK);
    assert_int_equal(evl_add_listener(s->l, lfd), 0);
    assert_true(fcntl(lfd, F_GETFL) & O_NONBLOCK);
    tu_finish(s);
}

/* ---- 2. deferred replies after the peer's EOF ------------------------------ */

/* on_read: consume one request line, hold the connection, remember it. */
static void hold_read(tu_state *s, tu_rec *r)
{
    size_t n;
    const char *p = evl_data(r->c, &n);
    const char *nl = p ? memchr(p, '\n', n) : NULL;
    if (!nl)
        return;
    evl_consume(r->c, (size_t)(nl - p) + 1);
    if (s->size) /* the hold pattern: the handler owes a reply */
        evl_hold(r->c);
    s->user = r;
}

/* on_tick: the deferred reply, then let the connection go. */
static void reply_on_tick(tu_state *s)
{
    tu_rec *r = s->user;
    if (!r || !r->c)
        return;
    TU_CB_CHECK(s, evl_peer_eof(r->c));
    TU_CB_CHECK(s, evl_write(r->c, "LATE\n", 5) == 0);
    if (s->size)
        evl_release(r->c);
    s->user = NULL;
}

static void deferred_reply_after_eof(bool hold)
{
    evl_options o = tu_opts();
    o.tick_ms = 300; /* the reply comes well after the EOF was seen */
    tu_state *s = tu_new(&o, TU_HOLD);
    s->size = hold;
    s->read_hook = hold_read;
    s->tick_hook = reply_on_tick;
    tu_rec *r = tu_pair(s);
    tu_peer_sends(r->peer, "REQ\n");
    shutdown(r->peer, SHUT_WR);
    TU_RUN_UNTIL(s, s->user != NULL, 2000);
    if (hold) {
        /* held: the reply arrives, then the connection closes by itself */
        tu_peer_expect(s, r->peer, "LATE\n", 3000);
        tu_peer_expect_eof(s, r->peer, 3000);
        assert_int_equal(r->closes, 1);
        assert_true(r->eof_at_close);
    } else {
        /* not held: closed once drained, as before; the late write finds
         * nothing to write to and the peer saw a clean EOF */
        tu_peer_expect_eof(s, r->peer, 3000);
        assert_int_equal(r->closes, 1);
    }
    tu_finish(s);
}

static void test_review2_held_conn_gets_reply_from_on_tick(void **state)
{
    (void)state;
    deferred_reply_after_eof(true);
}

static void test_review2_unheld_conn_closes_at_eof_as_documented(void **state)
{
    (void)state;
    deferred_reply_after_eof(false);
}

/* The reply comes from on_fd: a pipe the test writes to. */
static void reply_on_fd(tu_state *s, int fd)
{
    char b[64];
    ssize_t n = read(fd, b, sizeof b);
    tu_rec *r = s->user;
    if (n > 0 && r && r->c) {
        TU_CB_CHECK(s, evl_write(r->c, b, (size_t)n) == 0);
        evl_release(r->c);
        s->user = NULL;
    }
    if (n == 0)
        (void)evl_remove_fd(s->l, fd);
}

static void test_review2_held_conn_gets_reply_from_on_fd(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    s->size = 1;
    s->read_hook = hold_read;
    s->fd_hook = reply_on_fd;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    tu_track_fd(pfd[0]);
    tu_track_fd(pfd[1]);
    assert_int_equal(evl_add_fd(s->l, pfd[0]), 0);
    tu_rec *r = tu_pair(s);
    tu_peer_sends(r->peer, "REQ\n");
    shutdown(r->peer, SHUT_WR);
    TU_RUN_UNTIL(s, s->user != NULL, 2000);
    tu_run_for(s, 200); /* the EOF is seen; the held connection stays */
    assert_int_equal(r->closes, 0);
    assert_true(write(pfd[1], "FROM-FD\n", 8) == 8);
    tu_peer_expect(s, r->peer, "FROM-FD\n", 3000);
    tu_peer_expect_eof(s, r->peer, 3000);
    assert_int_equal(r->closes, 1);
    tu_finish(s);
}

/* A held connection whose peer has gone entirely (unix: EPOLLHUP, reported
 * whatever the interest) must not spin while it waits for its reply. */
static void test_review2_held_conn_after_peer_close_does_not_spin(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    s->size = 1;
    s->read_hook = hold_read;
    tu_rec *r = tu_pair(s);
    tu_peer_sends(r->peer, "REQ\n");
    tu_close_fd(r->peer);
    r->peer = -1;
    TU_RUN_UNTIL(s, s->user != NULL, 2000);
    tu_run_for(s, 100);
    long ev = events_over(s, 500);
    if (ev > 10)
        TU_FAIL("held half-closed connection reported %ld events in 500 ms: a spin", ev);
    assert_int_equal(r->closes, 0);
    /* the reply fails (the peer is gone) and the connection closes */
    (void)evl_write(r->c, "X\n", 2);
    evl_release(r->c);
    TU_RUN_UNTIL(s, r->closes == 1, 3000);
    tu_finish(s);
}

/* evl_wake after EOF: input left unconsumed while busy is still delivered
 * to a held connection, and the reply flushed. */
static void busy_read(tu_state *s, tu_rec *r)
{
    if (s->user == NULL) { /* busy: hold and leave the input */
        evl_hold(r->c);
        s->user = r;
        return;
    }
    size_t n;
    const char *p = evl_data(r->c, &n);
    TU_CB_CHECK(s, n == 4 && memcmp(p, "REQ\n", 4) == 0);
    evl_consume(r->c, n);
    TU_CB_CHECK(s, evl_write(r->c, "DONE\n", 5) == 0);
    evl_release(r->c);
}

static void wake_on_tick(tu_state *s)
{
    tu_rec *r = s->user;
    if (r && r->c && s->size == 0) {
        s->size = 1;
        evl_wake(r->c);
    }
}

static void test_review2_held_conn_wake_after_eof_delivers(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.tick_ms = 300;
    tu_state *s = tu_new(&o, TU_HOLD);
    s->read_hook = busy_read;
    s->tick_hook = wake_on_tick;
    tu_rec *r = tu_pair(s);
    tu_peer_sends(r->peer, "REQ\n");
    shutdown(r->peer, SHUT_WR);
    tu_peer_expect(s, r->peer, "DONE\n", 3000);
    tu_peer_expect_eof(s, r->peer, 3000);
    assert_int_equal(r->closes, 1);
    tu_finish(s);
}

/* A hold does not outlive the idle timeout: a handler that forgets to
 * release cannot leak the connection when idle_timeout_ms is set. */
static void test_review2_held_conn_still_idles_out(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.idle_timeout_ms = 200;
    tu_state *s = tu_new(&o, TU_HOLD);
    s->size = 1;
    s->read_hook = hold_read;
    tu_rec *r = tu_pair(s);
    tu_peer_sends(r->peer, "REQ\n");
    shutdown(r->peer, SHUT_WR);
    TU_RUN_UNTIL(s, r->closes == 1, 3000);
    assert_int_equal(tu_stats(s).idle_closed, 1);
    tu_finish(s);
}

/* A reset ends a held connection once its input is delivered: nothing can
 * be sent any more, so the hold has nothing left to wait for (found by
 * reading the header: "a hold does not stop ... errors"). */
static void test_review2_held_conn_closes_on_reset(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    s->size = 1;
    s->read_hook = hold_read;
    tu_rec *r = tu_tcp(s);
    tu_peer_sends(r->peer, "REQ\n");
    TU_RUN_UNTIL(s, s->user != NULL, 2000);
    tu_set_linger0(r->peer);
    tu_close_fd(r->peer); /* RST */
    r->peer = -1;
    TU_RUN_UNTIL(s, r->closes == 1, 3000);
    tu_finish(s);
}

/* ---- 3. writev beyond IOV_MAX ------------------------------------------------ */

static void writev_many(bool something_pending)
{
    enum { N = 3 * IOV_MAX + 7 };
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = tu_pair(s);
    static unsigned char bytes[N];
    static struct iovec iov[N];
    tu_pattern(bytes, N, 0, 7);
    for (int i = 0; i < N; i++)
        iov[i] = (struct iovec){.iov_base = &bytes[i], .iov_len = 1};
    size_t first = 0;
    if (something_pending) {
        /* fill the socket so the next write queues */
        tu_set_sndbuf(r->fd, 4096);
        static unsigned char fill[1 << 20];
        tu_pattern(fill, sizeof fill, 0, 9);
        assert_int_equal(evl_write(r->c, fill, sizeof fill), 0);
        assert_true(evl_pending(r->c) > 0);
        first = sizeof fill;
    }
    assert_int_equal(evl_pending(r->c) > 0, something_pending);
    if (evl_writev(r->c, iov, N) != 0)
        TU_FAIL("evl_writev of %d buffers failed: %s", N, strerror(errno));
    tu_dbuf got = {0};
    tu_peer_collect(s, r->peer, &got, first + N, 5000, NULL);
    assert_int_equal(got.len, first + N);
    assert_int_equal(tu_pattern_mismatch(got.p + first, N, 0, 7), -1);
    assert_int_equal(r->closes, 0);
    tu_dbuf_free(&got);
    tu_finish(s);
}

static void test_review3_writev_beyond_iov_max_idle(void **state)
{
    (void)state;
    writev_many(false);
}

static void test_review3_writev_beyond_iov_max_pending(void **state)
{
    (void)state;
    writev_many(true);
}

/* ---- 4. accept errors outside the handled set -------------------------------- */

static void test_review4_shutdown_listener_does_not_spin(void **state)
{
    (void)state;
    int port, port2;
    int lfd = listener(true, &port);
    int lfd2 = listener(true, &port2);
    tu_state *s = tu_new(NULL, TU_LINE_ECHO);
    assert_int_equal(evl_add_listener(s->l, lfd), 0);
    assert_int_equal(evl_add_listener(s->l, lfd2), 0);
    assert_int_equal(shutdown(lfd, SHUT_RDWR), 0); /* accept4: EINVAL, EPOLLHUP */
    long ev = events_over(s, 500);
    if (ev > 10)
        TU_FAIL("a shut-down listener reported %ld events in 500 ms: a spin", ev);
    assert_true(tu_stats(s).accept_errors >= 1);
    /* the other listener still serves */
    int c = tu_tcp_connect(port2);
    tu_track_fd(c);
    TU_RUN_UNTIL(s, s->accepts == 1, 3000);
    tu_peer_sends(c, "hi\n");
    tu_peer_expect(s, c, "hi\n", 3000);
    tu_finish(s);
}

static void test_review4_eperm_from_accept_does_not_spin(void **state)
{
    (void)state;
    int port;
    int lfd = listener(true, &port);
    tu_state *s = tu_new(NULL, TU_LINE_ECHO);
    assert_int_equal(evl_add_listener(s->l, lfd), 0);
    int c = tu_tcp_connect(port);
    tu_track_fd(c);
    arm_reset();
    F.accept_errno = EPERM; /* a security module says no, and keeps saying it */
    tu_run_for(s, 500);
    int calls = F.accept_calls;
    if (calls > 50)
        TU_FAIL("accept4 called %d times in 500 ms while it fails with EPERM: a spin", calls);
    assert_true(tu_stats(s).accept_errors >= 1);
    /* when accepting works again, the waiting client is served */
    arm_reset();
    TU_RUN_UNTIL(s, s->accepts == 1, 3000);
    tu_peer_sends(c, "ok\n");
    tu_peer_expect(s, c, "ok\n", 3000);
    tu_finish(s);
}

/* ---- 5. children and the blocked stop signals -------------------------------- */

/* In on_tick, inside evl_run: fork, optionally restore the mask the header
 * names, exec a shell that sends itself SIGTERM. */
static void spawn_on_tick(tu_state *s)
{
    if (s->user)
        return;
    s->user = s; /* once */
    pid_t pid = fork();
    if (pid == 0) {
        if (s->size) {
            sigset_t m;
            evl_child_sigmask(s->l, &m);
            sigprocmask(SIG_SETMASK, &m, NULL);
        }
        execl("/bin/sh", "sh", "-c", "kill -TERM $$; exit 7", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    TU_CB_CHECK(s, pid > 0 && waitpid(pid, &status, 0) == pid);
    s->accepts = status; /* free field here: the child's status */
    evl_stop(s->l);
}

static int child_status(bool restore)
{
    evl_options o = tu_opts();
    o.tick_ms = 20;
    tu_state *s = tu_new(&o, TU_HOLD);
    s->size = restore;
    s->tick_hook = spawn_on_tick;
    assert_int_equal(evl_run(s->l, -1), 0);
    int st = s->accepts;
    s->accepts = 0;
    tu_finish(s);
    return st;
}

static void test_review5_child_gets_the_mask_from_before_run(void **state)
{
    (void)state;
    int st = child_status(true);
    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM))
        TU_FAIL("child with evl_child_sigmask ignored SIGTERM (status 0x%x)", st);
}

/* What the header warns about: without it, the child inherits the block. */
static void test_review5_child_without_it_inherits_the_block(void **state)
{
    (void)state;
    int st = child_status(false);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 7);
}

static void test_review5_child_sigmask_outside_run_is_current(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    sigset_t cur, got;
    sigprocmask(SIG_SETMASK, NULL, &cur);
    evl_child_sigmask(s->l, &got);
    for (int sig = 1; sig < 32; sig++)
        assert_int_equal(sigismember(&cur, sig), sigismember(&got, sig));
    tu_finish(s);
}

/* ---- 6. a failed evl_run leaves nothing registered ---------------------------- */

static void stop_on_tick(tu_state *s) { evl_stop(s->l); }

static void test_review6_failed_run_can_be_retried(void **state)
{
    (void)state;
    int port;
    int lfd = listener(true, &port);
    evl_options o = tu_opts();
    o.tick_ms = 20;
    tu_state *s = tu_new(&o, TU_HOLD);
    s->tick_hook = stop_on_tick;
    sigset_t before, after;
    sigprocmask(SIG_SETMASK, NULL, &before);
    arm_reset();
    F.signalfd_errno = EMFILE;
    assert_int_equal(evl_run(s->l, lfd), -1);
    assert_int_equal(errno, EMFILE);
    sigprocmask(SIG_SETMASK, NULL, &after);
    assert_int_equal(sigismember(&before, SIGTERM), sigismember(&after, SIGTERM));
    /* the listener is not left behind: the retry adds it again and runs */
    if (evl_run(s->l, lfd) != 0)
        TU_FAIL("retry of evl_run failed: %s", strerror(errno));
    /* and after a normal return it is gone too: it can be added again */
    assert_int_equal(evl_add_listener(s->l, lfd), 0);
    tu_finish(s);
}

/* ---- found by reading: evl_listen_unix and a live socket --------------------- */

/* "A stale socket file at path is removed first": a socket some server is
 * still listening on is not stale. Removing it would silently steal the path
 * from the running server (its clients would reach the newcomer). */
static void test_listen_unix_never_steals_a_live_socket(void **state)
{
    (void)state;
    char dir[] = "/tmp/evl-unit-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[sizeof dir + 16];
    (void)snprintf(path, sizeof path, "%s/sock", dir);
    int live = evl_listen_unix(path);
    assert_true(live >= 0);
    errno = 0;
    int second = evl_listen_unix(path);
    if (second >= 0)
        close(second);
    assert_int_equal(second, -1);
    assert_int_equal(errno, EADDRINUSE);
    /* the first server still owns the path */
    int cl = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    (void)snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    assert_int_equal(connect(cl, (struct sockaddr *)&a, sizeof a), 0);
    int acc = accept4(live, NULL, NULL, SOCK_CLOEXEC);
    assert_true(acc >= 0);
    close(acc);
    close(cl);
    close(live);
    /* once its server is gone the file is stale, and replaced */
    int third = evl_listen_unix(path);
    assert_true(third >= 0);
    close(third);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    tu_init_process();
    const struct CMUnitTest tests[] = {
        TU_TEST(test_review1_blocking_listener_does_not_block),
        TU_TEST(test_review1_add_listener_sets_nonblock),
        TU_TEST(test_review2_held_conn_gets_reply_from_on_tick),
        TU_TEST(test_review2_unheld_conn_closes_at_eof_as_documented),
        TU_TEST(test_review2_held_conn_gets_reply_from_on_fd),
        TU_TEST(test_review2_held_conn_after_peer_close_does_not_spin),
        TU_TEST(test_review2_held_conn_wake_after_eof_delivers),
        TU_TEST(test_review2_held_conn_still_idles_out),
        TU_TEST(test_review2_held_conn_closes_on_reset),
        TU_TEST(test_listen_unix_never_steals_a_live_socket),
        TU_TEST(test_review3_writev_beyond_iov_max_idle),
        TU_TEST(test_review3_writev_beyond_iov_max_pending),
        TU_TEST(test_review4_shutdown_listener_does_not_spin),
        TU_TEST(test_review4_eperm_from_accept_does_not_spin),
        TU_TEST(test_review5_child_gets_the_mask_from_before_run),
        TU_TEST(test_review5_child_without_it_inherits_the_block),
        TU_TEST(test_review5_child_sigmask_outside_run_is_current),
        TU_TEST(test_review6_failed_run_can_be_retried),
    };
    return cmocka_run_group_tests_name("test_review", tests, NULL, NULL);
}
