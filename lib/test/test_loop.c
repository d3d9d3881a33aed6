/*
 * The loop: options, timers (tick under load: seed fault 7; idle timeout),
 * listeners and max_conns over real loopback sockets, extra fds, adopt,
 * lookups, counters, evl_run/evl_stop.
 */
#include "testutil.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static void test_options_defaults(void **state)
{
    (void)state;
    evl_options o;
    memset(&o, 0x5a, sizeof o);
    evl_options_default(&o);
    assert_int_equal(o.tick_ms, 5000);
    assert_int_equal(o.rbuf_max, 1 << 20);
    assert_int_equal(o.wbuf_low, 64 << 10);
    assert_int_equal(o.wbuf_high, 1 << 20);
    assert_int_equal(o.wbuf_max, 0);
    assert_int_equal(o.idle_timeout_ms, 0);
    assert_int_equal(o.close_timeout_ms, 5000);
    assert_int_equal(o.max_conns, 0);
    assert_int_equal(o.write_quantum, 256 << 10);
    assert_int_equal(o.max_events, 256);
}

static void test_new_null_options_means_defaults(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    evl_options d = tu_opts();
    const evl_options *o = evl_get_options(s->l);
    assert_non_null(o);
    assert_int_equal(o->tick_ms, d.tick_ms);
    assert_int_equal(o->rbuf_max, d.rbuf_max);
    assert_int_equal(o->wbuf_low, d.wbuf_low);
    assert_int_equal(o->wbuf_high, d.wbuf_high);
    assert_int_equal(o->wbuf_max, d.wbuf_max);
    assert_int_equal(o->idle_timeout_ms, d.idle_timeout_ms);
    assert_int_equal(o->close_timeout_ms, d.close_timeout_ms);
    assert_int_equal(o->max_conns, d.max_conns);
    assert_int_equal(o->write_quantum, d.write_quantum);
    assert_int_equal(o->max_events, d.max_events);
    assert_ptr_equal(evl_loop_udata(s->l), s);
    tu_finish(s);
}

static void test_new_rejects_inconsistent_options(void **state)
{
    (void)state;
    static const evl_handler h = {0};
    struct {
        const char *what;
        evl_options o;
    } bad[12];
    int n = 0;
#define BAD(desc, field, value)                                                \
    do {                                                                       \
        bad[n].what = desc;                                                    \
        evl_options_default(&bad[n].o);                                        \
        bad[n].o.field = value;                                                \
        n++;                                                                   \
    } while (0)
    BAD("wbuf_low > wbuf_high", wbuf_low, (2u << 20));
    BAD("rbuf_max 0", rbuf_max, 0);
    BAD("write_quantum 0", write_quantum, 0);
    BAD("max_events 0", max_events, 0);
    BAD("max_events < 0", max_events, -1);
    BAD("wbuf_max below wbuf_high", wbuf_max, (512u << 10));
    BAD("tick_ms < 0", tick_ms, -1);
    BAD("idle_timeout_ms < 0", idle_timeout_ms, -5);
    BAD("close_timeout_ms < 0", close_timeout_ms, -1);
#undef BAD
    for (int i = 0; i < n; i++) {
        errno = 0;
        evl_loop *l = evl_new(&h, NULL, &bad[i].o);
        if (l) {
            evl_free(l);
            TU_FAIL("evl_new accepted %s", bad[i].what);
        }
        if (errno != EINVAL)
            TU_FAIL("evl_new with %s: errno %d (%s), not EINVAL", bad[i].what, errno, strerror(errno));
    }
    /* and the boundaries are fine: low == high, wbuf_max == wbuf_high, all
     * timers off */
    evl_options ok = tu_opts();
    ok.wbuf_low = ok.wbuf_high;
    ok.wbuf_max = ok.wbuf_high;
    ok.tick_ms = 0;
    ok.close_timeout_ms = 0;
    evl_loop *l = evl_new(&h, NULL, &ok);
    assert_non_null(l);
    /* a loop with no callbacks at all still runs */
    assert_int_equal(evl_run_once(l, 0), 0);
    evl_free(l);
}

static void test_conn_accessors_and_lookup(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = tu_pair(s);
    assert_int_equal(evl_fd(r->c), r->fd);
    assert_ptr_equal(evl_loop_of(r->c), s->l);
    assert_ptr_equal(evl_udata(r->c), r);
    int x;
    evl_set_udata(r->c, &x);
    assert_ptr_equal(evl_udata(r->c), &x);
    evl_set_udata(r->c, r);
    assert_ptr_equal(evl_conn_of(s->l, r->fd), r->c);
    /* unknown, negative, far beyond any table, and a non-connection fd */
    assert_null(evl_conn_of(s->l, r->peer));
    assert_null(evl_conn_of(s->l, -1));
    assert_null(evl_conn_of(s->l, 1 << 24));
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    tu_track_fd(p[0]);
    tu_track_fd(p[1]);
    assert_int_equal(evl_add_fd(s->l, p[0]), 0);
    assert_null(evl_conn_of(s->l, p[0]));
    assert_int_equal(evl_remove_fd(s->l, p[0]), 0);
    /* the adopted socket was made non-blocking */
    assert_true(fcntl(r->fd, F_GETFL) & O_NONBLOCK);
    int fd = r->fd;
    evl_abort(r->c);
    tu_step(s, 0);
    assert_int_equal(r->closes, 1);
    assert_null(evl_conn_of(s->l, fd));
    tu_finish(s);
}

static void test_adopt_rejects_pipe_and_duplicates(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    tu_track_fd(p[0]);
    tu_track_fd(p[1]);
    errno = 0;
    assert_null(evl_adopt(s->l, p[0]));
    assert_int_equal(errno, ENOTSOCK);
    assert_true(fcntl(p[0], F_GETFD) != -1); /* not closed on failure */
    assert_int_equal(write(p[1], "x", 1), 1);
    char c;
    assert_int_equal(read(p[0], &c, 1), 1); /* and still usable */

    tu_rec *r = tu_pair(s);
    errno = 0;
    assert_null(evl_adopt(s->l, r->fd));
    assert_int_equal(errno, EEXIST);
    /* the failed adopt did not disturb the first */
    assert_ptr_equal(evl_conn_of(s->l, r->fd), r->c);
    tu_peer_sends(r->peer, "hi");
    TU_RUN_UNTIL(s, r->reads >= 1, 2000);
    tu_finish(s);
}

static void test_fd_table_grows_for_high_fds(void **state)
{
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    int high = rl.rlim_cur > 4000 ? 4000 : (int)rl.rlim_cur - 10;
    assert_true(high > 100);
    tu_state *s = tu_new(NULL, TU_LINE_ECHO);
    tu_rec *low = tu_pair(s);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(dup3(sv[0], high, O_CLOEXEC), high);
    close(sv[0]);
    tu_set_nonblock(sv[1]);
    tu_track_fd(sv[1]);
    tu_rec *r = tu_adopt(s, high, sv[1]);
    assert_ptr_equal(evl_conn_of(s->l, high), r->c);
    assert_ptr_equal(evl_conn_of(s->l, low->fd), low->c); /* kept across growth */
    tu_peer_sends(r->peer, "far\n");
    tu_peer_sends(low->peer, "near\n");
    tu_peer_expect(s, r->peer, "far\n", 2000);
    tu_peer_expect(s, low->peer, "near\n", 2000);
    tu_finish(s);
}

/* ---- timers ------------------------------------------------------------------ */

static void test_fault7_tick_under_constant_load(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.tick_ms = 50;
    tu_state *s = tu_new(&o, TU_SINK);
    tu_rec *r = tu_pair(s);
    /* input before every iteration: epoll_wait never times out, and each
     * evl_run_once is given 1 s, so a tick driven by timeouts never comes */
    uint64_t t0 = tu_now_ms(), busy_steps = 0;
    while (tu_now_ms() - t0 < 600) {
        tu_peer_sends(r->peer, "load");
        if (tu_step(s, 1000) > 0)
            busy_steps++;
    }
    uint64_t elapsed = tu_now_ms() - t0;
    assert_true(busy_steps > 10);
    /* ~12 ticks are due in 600 ms; 3 leaves a wide margin for a slow box */
    if (s->ticks < 3)
        TU_FAIL("%d ticks in %llu ms of constant load with tick_ms 50", s->ticks,
                (unsigned long long)elapsed);
    assert_int_equal(tu_stats(s).ticks, (uint64_t)s->ticks);
    tu_finish(s);
}

static void test_tick_shortens_wait_when_idle(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.tick_ms = 30;
    tu_state *s = tu_new(&o, TU_HOLD);
    /* an infinite wait still wakes up for the tick */
    uint64_t t0 = tu_now_ms();
    while (s->ticks < 3) {
        if (tu_now_ms() - t0 > 3000)
            TU_FAIL("only %d ticks in 3 s with tick_ms 30 and timeout -1", s->ticks);
        tu_step(s, -1);
    }
    tu_finish(s);

    o.tick_ms = 0; /* off */
    s = tu_new(&o, TU_HOLD);
    tu_run_for(s, 150);
    assert_int_equal(s->ticks, 0);
    tu_finish(s);
}

static void test_idle_timeout_closes_without_waiting_for_tick(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.idle_timeout_ms = 100;
    o.tick_ms = 0; /* timeouts must not depend on the tick */
    tu_state *s = tu_new(&o, TU_SINK);
    tu_rec *r = tu_pair(s);
    uint64_t t0 = tu_now_ms();
    /* twice the timeout is the promise; 2 s only absorbs a slow machine */
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    uint64_t took = tu_now_ms() - t0;
    assert_true(took >= 90); /* never early */
    assert_int_equal(tu_stats(s).idle_closed, 1);
    tu_peer_expect_closed(s, r->peer, 2000);
    tu_finish(s);
}

static void test_idle_timeout_counts_from_adopt(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.idle_timeout_ms = 1000;
    tu_state *s = tu_new(&o, TU_SINK);
    tu_run_for(s, 50);
    /* the loop sat unattended for a while (the program did other work):
     * a connection adopted now has had no idle time yet */
    usleep(1500 * 1000);
    tu_rec *r = tu_pair(s);
    uint64_t t0 = tu_now_ms();
    /* 300 ms, 700 ms short of the timeout: margin for a slow box */
    while (tu_now_ms() - t0 < 300) {
        tu_step(s, 5);
        if (r->closes != 0)
            TU_FAIL("closed as idle %llu ms after evl_adopt, idle_timeout_ms %d",
                    (unsigned long long)(tu_now_ms() - t0), o.idle_timeout_ms);
    }
    TU_RUN_UNTIL(s, r->closes == 1, 3000);
    assert_int_equal(tu_stats(s).idle_closed, 1);
    tu_finish(s);
}

static void send_tick(tu_state *s)
{
    tu_rec *writer = s->user;
    if (writer->c)
        TU_CB_CHECK(s, evl_write(writer->c, "t", 1) == 0);
}

static void test_idle_timeout_reset_by_progress_both_ways(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.idle_timeout_ms = 400;
    o.tick_ms = 50;
    tu_state *s = tu_new(&o, TU_SINK);
    tu_rec *in = tu_pair(s);  /* the peer sends */
    tu_rec *out = tu_pair(s); /* the loop sends (from on_tick), the peer reads */
    s->user = out;
    s->tick_hook = send_tick;
    /* 1.2 s, three timeouts long, with a byte every 50 ms each way: both
     * stay open (a 400 ms stall of this thread would be needed to fail) */
    uint64_t t0 = tu_now_ms(), last = 0;
    tu_dbuf junk = {0};
    while (tu_now_ms() - t0 < 1200) {
        if (tu_now_ms() - last >= 50) {
            tu_peer_sends(in->peer, "i");
            last = tu_now_ms();
        }
        tu_peer_drain(out->peer, &junk);
        tu_step(s, 10);
    }
    assert_int_equal(in->closes, 0);
    assert_int_equal(out->closes, 0);
    assert_true(junk.len > 5);
    tu_dbuf_free(&junk);
    /* then silence both ways: both go */
    s->tick_hook = NULL;
    TU_RUN_UNTIL(s, in->closes == 1 && out->closes == 1, 3000);
    assert_int_equal(tu_stats(s).idle_closed, 2);
    tu_finish(s);
}

/* ---- listeners ------------------------------------------------------------------ */

static bool wait_connected(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    return poll(&p, 1, ms) == 1 && (p.revents & POLLOUT);
}

static void test_max_conns_over_loopback_listener(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.max_conns = 2;
    tu_state *s = tu_new(&o, TU_LINE_ECHO);
    int lfd = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(lfd >= 0);
    tu_track_fd(lfd);
    assert_true(fcntl(lfd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(lfd, F_GETFD) & FD_CLOEXEC);
    int port = evl_local_port(lfd);
    assert_true(port > 0 && port < 65536);
    assert_int_equal(evl_add_listener(s->l, lfd), 0);

    int cl[5];
    for (int i = 0; i < 4; i++) {
        cl[i] = tu_tcp_connect(port);
        tu_track_fd(cl[i]);
        assert_true(wait_connected(cl[i], 2000));
    }
    TU_RUN_UNTIL(s, tu_stats(s).accepted + tu_stats(s).rejected >= 4, 3000);
    struct evl_stats st = tu_stats(s);
    assert_int_equal(st.accepted, 2);
    assert_int_equal(st.rejected, 2);
    assert_int_equal(st.conns, 2);
    /* refused by max_conns: never accepted, no on_accept, no on_close */
    assert_int_equal(s->accepts, 2);
    /* the two accepted are served; the two refused were closed */
    int served = 0, refused = 0;
    for (int i = 0; i < 4; i++)
        tu_peer_sends(cl[i], "hi\n");
    for (int i = 0; i < 4; i++) {
        tu_dbuf got = {0};
        int err;
        bool end = tu_peer_collect(s, cl[i], &got, 3, 2000, &err);
        if (!end && got.len == 3 && memcmp(got.p, "hi\n", 3) == 0)
            served++;
        else if (end && got.len == 0)
            refused++;
        tu_dbuf_free(&got);
    }
    assert_int_equal(served, 2);
    assert_int_equal(refused, 2);
    assert_int_equal(s->closes, 0);

    /* one leaves: room for a new one */
    int leaving = -1;
    for (int i = 0; i < 4 && leaving < 0; i++) {
        char b;
        if (tu_peer_read(cl[i], &b, 1) == -1 && errno == EAGAIN)
            leaving = i; /* still open: one of the served */
    }
    assert_true(leaving >= 0);
    tu_close_fd(cl[leaving]);
    TU_RUN_UNTIL(s, s->closes == 1, 2000);
    cl[4] = tu_tcp_connect(port);
    tu_track_fd(cl[4]);
    assert_true(wait_connected(cl[4], 2000));
    tu_peer_sends(cl[4], "new\n");
    tu_peer_expect(s, cl[4], "new\n", 2000);
    st = tu_stats(s);
    assert_int_equal(st.accepted, 3);
    assert_int_equal(st.conns, 2);
    tu_finish(s); /* the loop does not own lfd: closed as a tracked fd */
}

static void test_on_accept_false_rejects(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_LINE_ECHO);
    s->reject_all = true;
    int lfd = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(lfd >= 0);
    tu_track_fd(lfd);
    assert_int_equal(evl_add_listener(s->l, lfd), 0);
    int port = evl_local_port(lfd);
    int a = tu_tcp_connect(port), b = tu_tcp_connect(port);
    tu_track_fd(a);
    tu_track_fd(b);
    TU_RUN_UNTIL(s, s->accepts == 2, 3000);
    tu_peer_expect_closed(s, a, 2000);
    tu_peer_expect_closed(s, b, 2000);
    struct evl_stats st = tu_stats(s);
    assert_int_equal(st.rejected, 2);
    assert_int_equal(st.accepted, 0);
    assert_int_equal(st.conns, 0);
    assert_int_equal(s->closes, 0); /* no on_close for a rejected one */
    tu_finish(s);
}

static void test_listen_unix(void **state)
{
    (void)state;
    char dir[] = "/tmp/evl-unit-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[sizeof dir + 16], file[sizeof dir + 16];
    (void)snprintf(path, sizeof path, "%s/sock", dir);
    (void)snprintf(file, sizeof file, "%s/file", dir);

    tu_state *s = tu_new(NULL, TU_LINE_ECHO);
    int lfd = evl_listen_unix(path);
    assert_true(lfd >= 0);
    assert_true(fcntl(lfd, F_GETFL) & O_NONBLOCK);
    assert_int_equal(evl_add_listener(s->l, lfd), 0);
    int cl = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(cl >= 0);
    tu_track_fd(cl);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    (void)snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    assert_int_equal(connect(cl, (struct sockaddr *)&a, sizeof a), 0);
    tu_set_nonblock(cl);
    tu_peer_sends(cl, "over unix\n");
    tu_peer_expect(s, cl, "over unix\n", 2000);
    assert_int_equal(tu_stats(s).accepted, 1);
    tu_finish(s);
    close(lfd);

    /* the socket file outlives its listener: a new listen replaces it */
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true(S_ISSOCK(sb.st_mode));
    lfd = evl_listen_unix(path);
    assert_true(lfd >= 0);
    close(lfd);

    /* but never another kind of file */
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    assert_true(fputs("precious", f) >= 0);
    assert_int_equal(fclose(f), 0);
    errno = 0;
    lfd = evl_listen_unix(file);
    if (lfd >= 0)
        close(lfd);
    assert_int_equal(lfd, -1);
    assert_int_equal(stat(file, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(sb.st_size, 8);

    assert_int_equal(unlink(path), 0);
    assert_int_equal(unlink(file), 0);
    assert_int_equal(rmdir(dir), 0);
}

static void test_listen_tcp_port0_and_reuseport(void **state)
{
    (void)state;
    int a = evl_listen_tcp("127.0.0.1", 0, EVL_LISTEN_REUSEPORT);
    assert_true(a >= 0);
    tu_track_fd(a);
    int port = evl_local_port(a);
    assert_true(port > 0);
    /* SO_REUSEPORT: a second process (here: socket) shares the port */
    int b = evl_listen_tcp("127.0.0.1", port, EVL_LISTEN_REUSEPORT);
    assert_true(b >= 0);
    tu_track_fd(b);
    assert_int_equal(evl_local_port(b), port);
    /* without it, the port is taken */
    int c = evl_listen_tcp("127.0.0.1", port, 0);
    if (c >= 0)
        close(c);
    assert_int_equal(c, -1);
    /* a name works too */
    int d = evl_listen_tcp("localhost", 0, 0);
    assert_true(d >= 0);
    assert_true(evl_local_port(d) > 0);
    close(d);
    /* evl_local_port of something that is not a TCP socket */
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(evl_local_port(p[0]), -1);
    close(p[0]);
    close(p[1]);
}

/* ---- extra fds ----------------------------------------------------------------- */

static void read_one_byte(tu_state *s, int fd)
{
    char c;
    ssize_t n = read(fd, &c, 1);
    if (n == 1)
        tu_dbuf_add(&s->fd_in, &c, 1);
}

static void test_add_fd_and_remove_fd_on_a_pipe(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = tu_pair(s);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    tu_track_fd(p[0]);
    tu_track_fd(p[1]);
    assert_int_equal(evl_add_fd(s->l, p[0]), 0);
    assert_true(fcntl(p[0], F_GETFL) & O_NONBLOCK);
    errno = 0;
    assert_int_equal(evl_add_fd(s->l, p[0]), -1);
    assert_int_equal(errno, EEXIST);
    errno = 0;
    assert_int_equal(evl_add_fd(s->l, r->fd), -1); /* a connection's fd */
    assert_int_equal(errno, EEXIST);

    /* level-triggered: a handler that reads one byte per call is called
     * again for the rest, without new writes */
    s->fd_hook = read_one_byte;
    assert_int_equal(write(p[1], "abc", 3), 3);
    TU_RUN_UNTIL(s, s->fd_in.len == 3, 2000);
    assert_memory_equal(s->fd_in.p, "abc", 3);
    assert_true(s->fd_events >= 3);

    assert_int_equal(evl_remove_fd(s->l, p[0]), 0);
    int events = s->fd_events;
    assert_int_equal(write(p[1], "x", 1), 1);
    tu_run_for(s, 100);
    assert_int_equal(s->fd_events, events); /* unregistered */
    errno = 0;
    assert_int_equal(evl_remove_fd(s->l, p[0]), -1);
    assert_int_equal(errno, ENOENT);
    errno = 0;
    assert_int_equal(evl_remove_fd(s->l, r->fd), -1); /* not an extra fd */
    assert_int_equal(errno, ENOENT);
    assert_ptr_equal(evl_conn_of(s->l, r->fd), r->c);  /* and untouched */
    assert_true(fcntl(p[0], F_GETFD) != -1);            /* not closed */
    tu_finish(s);
}

static void test_add_fd_writer_gone_no_spin(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    tu_track_fd(p[0]);
    assert_int_equal(evl_add_fd(s->l, p[0]), 0);
    assert_int_equal(write(p[1], "last", 4), 4);
    close(p[1]);
    /* the default on_fd reads to EOF and removes the fd */
    TU_RUN_UNTIL(s, s->fd_eofs == 1, 2000);
    assert_int_equal(s->fd_in.len, 4);
    int events = s->fd_events;
    tu_assert_no_spin(s, 200, "after the extra fd's writer left");
    assert_int_equal(s->fd_events, events);
    tu_finish(s);
}

/* ---- counters and run ----------------------------------------------------------- */

static void test_stats_counters_consistent(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.rbuf_max = 4096;
    tu_state *s = tu_new(&o, TU_HOLD);
    tu_check_stats(s);
    struct evl_stats st = tu_stats(s);
    assert_int_equal(st.conns, 0);
    assert_int_equal(st.accepted, 0);

    tu_rec *r[4];
    for (int i = 0; i < 4; i++)
        r[i] = tu_pair(s);
    st = tu_stats(s);
    assert_int_equal(st.accepted, 4); /* adopted counts as accepted */
    assert_int_equal(st.conns, 4);

    tu_peer_sends(r[0]->peer, "held input"); /* TU_HOLD keeps it */
    TU_RUN_UNTIL(s, r[0]->reads == 1, 2000);
    tu_check_stats(s); /* rbuf_bytes == what evl_data shows */
    assert_int_equal(tu_stats(s).rbuf_bytes, 10);

    tu_close_fd(r[1]->peer);
    TU_RUN_UNTIL(s, r[1]->closes == 1, 2000);
    evl_abort(r[2]->c);
    tu_step(s, 0);
    tu_check_stats(s);
    st = tu_stats(s);
    assert_int_equal(st.closed, 2);
    assert_int_equal(st.conns, 2);

    /* one more, then an overflow close */
    tu_rec *e = tu_pair(s);
    tu_peer_fill(e->peer, 0);
    TU_RUN_UNTIL(s, e->closes == 1, 2000);
    tu_check_stats(s);
    st = tu_stats(s);
    assert_int_equal(st.accepted, 5);
    assert_int_equal(st.closed, 3);
    assert_int_equal(st.conns, 2);
    assert_int_equal(st.overflow_closed, 1);
    assert_int_equal(st.idle_closed, 0);
    assert_int_equal(st.emfile, 0);

    /* one epoll_wait per evl_run_once */
    uint64_t it = tu_stats(s).iterations;
    for (int i = 0; i < 7; i++)
        tu_step(s, 0);
    assert_int_equal(tu_stats(s).iterations - it, 7);
    tu_finish(s);
}

static void test_run_once_returns_event_count_and_honours_timeout(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_SINK);
    tu_rec *a = tu_pair(s);
    tu_rec *b = tu_pair(s);
    tu_step(s, 0);
    uint64_t t0 = tu_now_ms();
    assert_int_equal(tu_step(s, 50), 0); /* nothing: a timeout */
    assert_true(tu_now_ms() - t0 >= 40);
    tu_peer_sends(a->peer, "1");
    tu_peer_sends(b->peer, "2");
    int n = tu_step(s, 1000);
    assert_int_equal(n, 2);
    assert_int_equal(a->reads + b->reads, 2);
    tu_finish(s);
}

static void test_max_events_one_serves_everyone(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.max_events = 1;
    tu_state *s = tu_new(&o, TU_LINE_ECHO);
    tu_rec *r[5];
    for (int i = 0; i < 5; i++)
        r[i] = tu_pair(s);
    for (int i = 0; i < 5; i++)
        tu_peer_sends(r[i]->peer, "x\ny\n");
    uint64_t end = tu_now_ms() + 3000;
    int done = 0;
    while (done < 5) {
        int n = tu_step(s, 10);
        assert_true(n <= 1);
        done = 0;
        for (int i = 0; i < 5; i++)
            done += r[i]->in.len == 4;
        if (tu_now_ms() > end)
            TU_FAIL("%d of 5 connections served in 3 s with max_events 1", done);
    }
    for (int i = 0; i < 5; i++)
        tu_peer_expect(s, r[i]->peer, "x\ny\n", 2000);
    tu_finish(s);
}

static void stop_after_three_ticks(tu_state *s)
{
    if (s->ticks == 3) {
        TU_CB_CHECK(s, !evl_stopping(s->l));
        evl_stop(s->l);
        TU_CB_CHECK(s, evl_stopping(s->l));
    }
}

static bool stopping_at_close;

static void note_stopping(tu_state *s, tu_rec *r)
{
    (void)r;
    stopping_at_close = evl_stopping(s->l);
}

static void test_stop_makes_run_return_0_after_graceful_close(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.tick_ms = 20;
    o.close_timeout_ms = 300;
    tu_state *s = tu_new(&o, TU_HOLD);
    s->tick_hook = stop_after_three_ticks;
    s->close_hook = note_stopping;
    stopping_at_close = false;
    tu_rec *r = tu_pair(s);
    int lfd = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(lfd >= 0);
    tu_track_fd(lfd);
    assert_int_equal(evl_write(r->c, "bye", 3), 0);
    sigset_t before, after;
    assert_int_equal(sigprocmask(SIG_SETMASK, NULL, &before), 0);
    uint64_t t0 = tu_now_ms();
    /* returns once the connection is closed: the peer does not close its
     * end, so that is close_timeout_ms (300 ms) after the stop */
    assert_int_equal(evl_run(s->l, lfd), 0);
    assert_true(tu_now_ms() - t0 < 5000);
    assert_true(s->ticks >= 3);
    assert_int_equal(r->closes, 1);
    assert_true(stopping_at_close); /* closed by the stop */
    assert_int_equal(sigprocmask(SIG_SETMASK, NULL, &after), 0);
    assert_int_equal(sigismember(&after, SIGTERM), sigismember(&before, SIGTERM));
    assert_int_equal(sigismember(&after, SIGINT), sigismember(&before, SIGINT));
    /* the listener is the caller's: still open */
    assert_true(fcntl(lfd, F_GETFD) != -1);
    /* the reply was flushed before the close */
    char buf[8];
    assert_int_equal(tu_peer_read(r->peer, buf, sizeof buf), 3);
    assert_memory_equal(buf, "bye", 3);
    assert_int_equal(tu_peer_read(r->peer, buf, sizeof buf), 0);
    if (s->err[0])
        TU_FAIL("%s", s->err);
    tu_finish(s);
}

int main(void)
{
    tu_init_process();
    const struct CMUnitTest tests[] = {
        TU_TEST(test_options_defaults),
        TU_TEST(test_new_null_options_means_defaults),
        TU_TEST(test_new_rejects_inconsistent_options),
        TU_TEST(test_conn_accessors_and_lookup),
        TU_TEST(test_adopt_rejects_pipe_and_duplicates),
        TU_TEST(test_fd_table_grows_for_high_fds),
        TU_TEST(test_fault7_tick_under_constant_load),
        TU_TEST(test_tick_shortens_wait_when_idle),
        TU_TEST(test_idle_timeout_closes_without_waiting_for_tick),
        TU_TEST(test_idle_timeout_reset_by_progress_both_ways),
        TU_TEST(test_idle_timeout_counts_from_adopt),
        TU_TEST(test_max_conns_over_loopback_listener),
        TU_TEST(test_on_accept_false_rejects),
        TU_TEST(test_listen_unix),
        TU_TEST(test_listen_tcp_port0_and_reuseport),
        TU_TEST(test_add_fd_and_remove_fd_on_a_pipe),
        TU_TEST(test_add_fd_writer_gone_no_spin),
        TU_TEST(test_stats_counters_consistent),
        TU_TEST(test_run_once_returns_event_count_and_honours_timeout),
        TU_TEST(test_max_events_one_serves_everyone),
        TU_TEST(test_stop_makes_run_return_0_after_graceful_close),
    };
    return cmocka_run_group_tests_name("test_loop", tests, NULL, NULL);
}
