/*
 * A connection's life beyond accept: outgoing connections (evl_connect,
 * on_connect, writes before the connect completes, refusal, timeout), why a
 * connection closed (evl_close_reason for every cause), per-connection
 * handlers, read pause, the stop hook and walking the open connections.
 */
#include "testutil.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- a handler of the test's own, for connections it makes ----------------- */

static int reasons[TU_MAX_RECS], errnos[TU_MAX_RECS];
static int connects, connect_err;

static void record_close(tu_state *s, tu_rec *r)
{
    int i = (int)(r - s->recs);
    reasons[i] = evl_close_reason(r->c);
    errnos[i] = evl_close_errno(r->c);
}

static void own_read(evl_conn *c)
{
    tu_state *s = evl_loop_udata(evl_loop_of(c));
    tu_rec *r = evl_udata(c);
    r->reads++;
    size_t n;
    const char *p = evl_data(c, &n);
    tu_dbuf_add(&r->in, p, n);
    evl_consume(c, n);
    (void)s;
}

static void own_close(evl_conn *c)
{
    tu_state *s = evl_loop_udata(evl_loop_of(c));
    tu_rec *r = evl_udata(c);
    TU_CB_CHECK(s, r != NULL && r->closes == 0);
    if (!r)
        return;
    r->closes++;
    s->closes++;
    record_close(s, r);
    r->c = NULL;
}

static size_t pending_at_connect; /* evl_pending in on_connect */
static int reason_of(const tu_state *s, const tu_rec *r) { return reasons[r - s->recs]; }

static void own_connect(evl_conn *c, int err)
{
    tu_state *s = evl_loop_udata(evl_loop_of(c));
    TU_CB_CHECK(s, evl_udata(c) != NULL);
    connects++;
    connect_err = err;
    pending_at_connect = evl_pending(c);
}

static const evl_handler own = {.on_read = own_read, .on_close = own_close, .on_connect = own_connect};

static void reset(void)
{
    memset(reasons, 0, sizeof reasons);
    memset(errnos, 0, sizeof errnos);
    connects = 0;
    connect_err = -1;
}

static int tcp_listener(tu_state *s)
{
    int lfd = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(lfd >= 0);
    tu_track_fd(lfd);
    if (s)
        assert_int_equal(evl_add_listener(s->l, lfd), 0);
    return evl_local_port(lfd);
}

/* evl_connect, then a record for the connection (its udata). */
static tu_rec *connect_rec(tu_state *s, const char *addr, int port, int timeout_ms)
{
    evl_conn *c = evl_connect(s->l, addr, port, timeout_ms, &own, NULL);
    if (!c)
        TU_FAIL("evl_connect(%s, %d) failed: %s", addr, port, strerror(errno));
    tu_rec *r = tu_rec_new(s, c, -1);
    assert_non_null(r);
    return r;
}

/* ---- evl_connect --------------------------------------------------------------- */

static void test_connect_tcp_writes_before_connect_are_kept(void **state)
{
    (void)state;
    reset();
    tu_state *s = tu_new(NULL, TU_LINE_ECHO); /* accepted side echoes lines */
    int port = tcp_listener(s);
    tu_rec *r = connect_rec(s, "127.0.0.1", port, 2000);
    /* written before the connect can have completed */
    assert_int_equal(evl_write(r->c, "one\n", 4), 0);
    assert_int_equal(evl_write(r->c, "two\n", 4), 0);
    TU_RUN_UNTIL(s, connects == 1, 3000);
    assert_int_equal(connect_err, 0);
    int nodelay = 0; /* as for accepted connections: replies go out at once */
    socklen_t nl = sizeof nodelay;
    assert_int_equal(getsockopt(evl_fd(r->c), IPPROTO_TCP, TCP_NODELAY, &nodelay, &nl), 0);
    assert_int_equal(nodelay, 1);
    TU_RUN_UNTIL(s, r->in.len == 8, 3000);
    assert_memory_equal(r->in.p, "one\ntwo\n", 8);
    tu_finish(s);
}

/* evl_shutdown before the connect completed, with output queued: the
 * output goes first, then the FIN (the connect's finish must not send the
 * FIN ahead of what is queued). */
static void test_shutdown_before_connect_flushes_then_fins(void **state)
{
    (void)state;
    reset();
    tu_state *s = tu_new(NULL, TU_SINK);
    int lfd = evl_listen_tcp("127.0.0.1", 0, 0); /* not the loop's: the test accepts */
    assert_true(lfd >= 0);
    tu_track_fd(lfd);
    tu_rec *r = connect_rec(s, "127.0.0.1", evl_local_port(lfd), 2000);
    assert_int_equal(evl_write(r->c, "early\n", 6), 0);
    evl_shutdown(r->c);
    int peer = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(peer >= 0);
    tu_track_fd(peer);
    TU_RUN_UNTIL(s, connects == 1, 3000);
    assert_int_equal(connect_err, 0);
    tu_peer_expect(s, peer, "early\n", 3000);
    tu_peer_expect_eof(s, peer, 3000);
    tu_finish(s);
}

/* Port 0 is a number the kernel refuses to connect to, not a malformed
 * address: the refusal is reported (at once or through on_connect), never
 * EINVAL. */
static void test_connect_to_port_0_is_refused_not_invalid(void **state)
{
    (void)state;
    reset();
    tu_state *s = tu_new(NULL, TU_SINK);
    errno = 0;
    evl_conn *c = evl_connect(s->l, "127.0.0.1", 0, 0, &own, NULL);
    if (!c) {
        assert_int_not_equal(errno, EINVAL);
    } else {
        tu_rec *r = tu_rec_new(s, c, -1);
        assert_non_null(r);
        TU_RUN_UNTIL(s, connects == 1, 3000);
        assert_true(connect_err != 0 && connect_err != EINVAL);
        TU_RUN_UNTIL(s, r->closes == 1, 3000);
    }
    tu_finish(s);
}

static void test_connect_refused_reports_and_closes(void **state)
{
    (void)state;
    reset();
    tu_state *s = tu_new(NULL, TU_HOLD);
    int lfd = evl_listen_tcp("127.0.0.1", 0, 0);
    int port = evl_local_port(lfd);
    close(lfd); /* nobody listens there now */
    evl_conn *c = evl_connect(s->l, "127.0.0.1", port, 2000, &own, NULL);
    if (!c) { /* refused at once: said so, nothing to close */
        assert_int_equal(errno, ECONNREFUSED);
    } else {
        tu_rec *r = tu_rec_new(s, c, -1);
        /* a write before the result is queued, not sent into the failure */
        usleep(20000);
        assert_int_equal(evl_write(c, "lost\n", 5), 0);
        TU_RUN_UNTIL(s, r->closes == 1, 3000);
        assert_int_equal(connects, 1);
        assert_int_equal(connect_err, ECONNREFUSED);
        assert_int_equal(pending_at_connect, 0); /* the queued write went with the failure */
        assert_int_equal(reasons[0], EVL_CLOSE_CONNECT);
        assert_int_equal(errnos[0], ECONNREFUSED);
    }
    tu_finish(s);
}

/* A listener whose accept queue is full drops new SYNs: the connect stays
 * pending, and timeout_ms ends it. */
static void test_connect_timeout(void **state)
{
    (void)state;
    reset();
    tu_state *s = tu_new(NULL, TU_HOLD);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 0), 0);
    tu_track_fd(lfd);
    int port = evl_local_port(lfd);
    for (int i = 0; i < 4; i++) /* fill the queue; later ones stay half-open */
        tu_track_fd(tu_tcp_connect(port));
    usleep(100000);
    uint64_t t0 = tu_now_ms();
    tu_rec *r = connect_rec(s, "127.0.0.1", port, 200);
    TU_RUN_UNTIL(s, r->closes == 1, 5000);
    uint64_t took = tu_now_ms() - t0;
    assert_int_equal(connects, 1);
    assert_int_equal(connect_err, ETIMEDOUT);
    assert_int_equal(reasons[0], EVL_CLOSE_CONNECT);
    assert_int_equal(errnos[0], ETIMEDOUT);
    if (took < 200)
        TU_FAIL("timed out after %llu ms, before its 200 ms", (unsigned long long)took);
    tu_finish(s);
}

/* timeout_ms 0 is no timeout: a connect to a full accept queue stays
 * pending; 1 ms is a timeout like any other. Port 65535 is a port. */
static void test_connect_timeout_zero_is_none_and_one_is_one(void **state)
{
    (void)state;
    reset();
    tu_state *s = tu_new(NULL, TU_HOLD);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 0), 0);
    tu_track_fd(lfd);
    int port = evl_local_port(lfd);
    for (int i = 0; i < 4; i++) /* fill the queue; later SYNs are dropped */
        tu_track_fd(tu_tcp_connect(port));
    usleep(100000);
    tu_rec *never = connect_rec(s, "127.0.0.1", port, 0);
    tu_rec *one = connect_rec(s, "127.0.0.1", port, 1);
    TU_RUN_UNTIL(s, one->closes == 1, 3000);
    assert_int_equal(reason_of(s, one), EVL_CLOSE_CONNECT);
    assert_int_equal(connect_err, ETIMEDOUT);
    tu_run_for(s, 150);
    assert_int_equal(never->closes, 0); /* still connecting: SYN retried after 1 s */
    assert_int_equal(connects, 1);
    errno = 0;
    evl_conn *c = evl_connect(s->l, "127.0.0.1", 65535, 0, &own, NULL);
    assert_true(c != NULL || errno != EINVAL);
    if (c) {
        assert_non_null(tu_rec_new(s, c, -1));
        evl_abort(c);
    }
    tu_finish(s);
}

static void test_connect_unix_and_bad_addresses(void **state)
{
    (void)state;
    reset();
    char dir[] = "/tmp/evl-unit-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[sizeof dir + 16];
    (void)snprintf(path, sizeof path, "%s/sock", dir);
    tu_state *s = tu_new(NULL, TU_LINE_ECHO);
    int lfd = evl_listen_unix(path);
    assert_true(lfd >= 0);
    tu_track_fd(lfd);
    assert_int_equal(evl_add_listener(s->l, lfd), 0);
    tu_rec *r = connect_rec(s, path, 0, 0);
    assert_int_equal(evl_write(r->c, "unix\n", 5), 0);
    TU_RUN_UNTIL(s, r->in.len == 5, 3000);
    assert_int_equal(connects, 1);
    assert_int_equal(connect_err, 0);

    const struct { const char *addr; int port; int err; } bad[] = {
        {"localhost", 80, EINVAL},      /* numeric only: no resolver in the loop */
        {"127.0.0.1", 70000, EINVAL},
        {"127.0.0.1", -1, EINVAL},
        {"/nonexistent-dir/sock", 0, ENOENT},
        {NULL, 80, EINVAL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        assert_null(evl_connect(s->l, bad[i].addr, bad[i].port, 0, &own, NULL));
        assert_int_equal(errno, bad[i].err);
    }
    assert_int_equal(tu_stats(s).conns, 2); /* the connected pair only */
    tu_finish(s);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* ---- why a connection closed ------------------------------------------------------ */


static void test_close_reason_eof_reset_abort_local(void **state)
{
    (void)state;
    reset();
    tu_state *s = tu_new(NULL, TU_SINK);
    s->close_hook = record_close;
    tu_rec *eof = tu_pair(s);
    tu_rec *rst = tu_tcp(s);
    tu_rec *abrt = tu_pair(s);
    tu_rec *local = tu_pair(s);
    assert_int_equal(evl_close_reason(eof->c), EVL_CLOSE_OPEN);
    shutdown(eof->peer, SHUT_WR);
    tu_peer_sends(rst->peer, "x");
    tu_run_for(s, 50);
    tu_set_linger0(rst->peer);
    tu_close_fd(rst->peer);
    rst->peer = -1;
    evl_abort(abrt->c);
    evl_close(local->c);
    shutdown(local->peer, SHUT_WR); /* the peer answers the FIN */
    TU_RUN_UNTIL(s, s->closes == 4, 3000);
    assert_int_equal(reason_of(s, eof), EVL_CLOSE_EOF);
    assert_int_equal(reason_of(s, rst), EVL_CLOSE_RESET);
    assert_int_equal(errnos[rst - s->recs], ECONNRESET);
    assert_int_equal(reason_of(s, abrt), EVL_CLOSE_ABORT);
    assert_int_equal(reason_of(s, local), EVL_CLOSE_LOCAL);
    assert_string_equal(evl_close_reason_name(EVL_CLOSE_RESET), "reset");
    assert_string_equal(evl_close_reason_name(99), "?");
    tu_finish(s);
}

static void test_close_reason_idle_overflow_timeout_stop(void **state)
{
    (void)state;
    reset();
    evl_options o = tu_opts();
    o.idle_timeout_ms = 300;
    o.rbuf_max = 1024;
    o.close_timeout_ms = 200;
    tu_state *s = tu_new(&o, TU_HOLD);
    s->close_hook = record_close;
    tu_rec *idle = tu_pair(s);
    tu_rec *over = tu_pair(s);
    tu_rec *slow = tu_pair(s);
    char big[2048];
    memset(big, 'a', sizeof big);
    tu_peer_send(over->peer, big, sizeof big); /* past rbuf_max, never consumed */
    /* slow: pending bytes the peer never reads, then a graceful close */
    tu_set_sndbuf(slow->fd, 4096);
    static char blob[1 << 20];
    assert_int_equal(evl_write(slow->c, blob, sizeof blob), 0);
    evl_close(slow->c);
    TU_RUN_UNTIL(s, idle->closes && over->closes && slow->closes, 3000);
    assert_int_equal(reason_of(s, idle), EVL_CLOSE_IDLE);
    assert_int_equal(reason_of(s, over), EVL_CLOSE_OVERFLOW);
    assert_int_equal(reason_of(s, slow), EVL_CLOSE_TIMEOUT);
    tu_rec *last = tu_pair(s); /* open until evl_free */
    evl_free(s->l);
    s->l = NULL;
    assert_int_equal(reason_of(s, last), EVL_CLOSE_STOP);
    tu_finish(s);
}

/* The peer can tell an abort from a clean close: RST for evl_abort and
 * every close that cuts output off (here: an idle timeout with bytes
 * pending), FIN for a completed evl_close and a clean EOF. */
static void test_abort_resets_clean_close_fins(void **state)
{
    (void)state;
    reset();
    evl_options o = tu_opts();
    o.idle_timeout_ms = 300;
    tu_state *s = tu_new(&o, TU_SINK);
    tu_rec *ab = tu_tcp(s);
    tu_rec *cl = tu_tcp(s);
    tu_rec *idle = tu_tcp(s);
    tu_set_rcvbuf(idle->peer, 4096);
    tu_set_sndbuf(idle->fd, 4096);
    static char blob[4 << 20];
    assert_int_equal(evl_write(idle->c, blob, sizeof blob), 0); /* the peer never reads */
    assert_true(evl_pending(idle->c) > 0);
    assert_int_equal(evl_write(ab->c, "partial", 7), 0);
    evl_abort(ab->c);
    evl_close(cl->c);
    shutdown(cl->peer, SHUT_WR);
    assert_int_equal(tu_peer_expect_closed(s, ab->peer, 3000), ECONNRESET);
    tu_dbuf got = {0};
    assert_true(tu_peer_collect(s, cl->peer, &got, 1, 3000, NULL));
    assert_int_equal(got.len, 0); /* a clean EOF */
    TU_RUN_UNTIL(s, idle->closes == 1, 3000);
    assert_int_equal(tu_peer_expect_closed(s, idle->peer, 3000), ECONNRESET);
    tu_dbuf_free(&got);
    tu_finish(s);
}

/* ---- per-connection overrides, and what counts as idle -------------------------- */

static void test_idle_timeout_per_connection(void **state)
{
    (void)state;
    reset();
    evl_options o = tu_opts();
    o.idle_timeout_ms = 300;
    tu_state *s = tu_new(&o, TU_SINK);
    s->close_hook = record_close;
    tu_rec *dflt = tu_pair(s);  /* the loop's 300 ms */
    tu_rec *fast = tu_pair(s);  /* its own 100 ms */
    tu_rec *never = tu_pair(s); /* 0: never */
    tu_rec *back = tu_pair(s);  /* own, then back to the loop's */
    uint64_t t0 = tu_now_ms();
    assert_int_equal(evl_set_idle_timeout(fast->c, 100), 0);
    assert_int_equal(evl_set_idle_timeout(never->c, 0), 0);
    assert_int_equal(evl_set_idle_timeout(back->c, 5000), 0);
    assert_int_equal(evl_set_idle_timeout(back->c, -1), 0);
    errno = 0;
    assert_int_equal(evl_set_idle_timeout(dflt->c, -2), -1);
    assert_int_equal(errno, EINVAL);
    TU_RUN_UNTIL(s, fast->closes == 1, 3000);
    assert_true(tu_now_ms() - t0 < 290); /* before the loop's timeout */
    assert_int_equal(dflt->closes + back->closes, 0);
    TU_RUN_UNTIL(s, dflt->closes == 1 && back->closes == 1, 3000);
    tu_run_for(s, 400);
    assert_int_equal(never->closes, 0);
    assert_int_equal(reason_of(s, fast), EVL_CLOSE_IDLE);
    assert_int_equal(reason_of(s, dflt), EVL_CLOSE_IDLE);
    /* "evl_close_errno: 0 otherwise": no errno behind either idle close */
    assert_int_equal(errnos[fast - s->recs], 0);
    assert_int_equal(errnos[dflt - s->recs], 0);
    tu_finish(s);
}

/* Every reason has its name ("open" too), unknown codes "?"; and
 * evl_foreach_conn visits a connection on fd 0 (a daemon that closed its
 * stdin gets one there). */
static void visit_count(evl_conn *c, void *arg)
{
    (void)c;
    ++*(int *)arg;
}

static void test_close_reason_names_and_foreach_on_fd_0(void **state)
{
    (void)state;
    static const char *const names[] = {"open", "eof",  "reset", "idle",  "overflow", "timeout",
                                        "local", "abort", "stop",  "nomem", "connect"};
    for (int i = 0; i <= EVL_CLOSE_CONNECT; i++)
        assert_string_equal(evl_close_reason_name(i), names[i]);
    assert_string_equal(evl_close_reason_name(-1), "?");
    assert_string_equal(evl_close_reason_name(EVL_CLOSE_CONNECT + 1), "?");
    reset();
    tu_state *s = tu_new(NULL, TU_HOLD);
    int saved = dup(0);
    assert_true(saved >= 0);
    close(0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(sv[0], 0);
    tu_track_fd(sv[1]);
    tu_rec *r = tu_adopt(s, sv[0], sv[1]);
    int seen = 0;
    evl_foreach_conn(s->l, visit_count, &seen);
    assert_int_equal(seen, 1);
    evl_abort(r->c);
    tu_step(s, 0);
    assert_int_equal(dup2(saved, 0), 0);
    close(saved);
    tu_finish(s);
}

/* The loop's idle timeout closes at its deadline: the sweep that the
 * idle timer wakes for finds the connection due (stamp + idle <= now) and
 * closes it in that iteration. A sweep that judged it not yet due at
 * exactly the deadline would re-arm the timer for "now" and spin through
 * epoll_wait(0) until the clock's next millisecond: hundreds of
 * iterations for one idle close. Five rounds, each one connection. */
static void test_idle_close_at_its_deadline_in_one_iteration(void **state)
{
    (void)state;
    reset();
    evl_options o = tu_opts();
    o.idle_timeout_ms = 20;
    o.tick_ms = 0;
    tu_state *s = tu_new(&o, TU_SINK);
    s->close_hook = record_close;
    for (int round = 0; round < 5; round++) {
        tu_rec *r = tu_pair(s);
        uint64_t before = tu_stats(s).iterations;
        TU_RUN_UNTIL(s, r->closes == 1, 3000); /* evl_run_once(10): two waits, then the deadline */
        uint64_t used = tu_stats(s).iterations - before;
        if (used > 6)
            TU_FAIL("round %d: %llu iterations for one idle close of 20 ms (waits of 10 ms)", round,
                    (unsigned long long)used);
        assert_int_equal(reason_of(s, r), EVL_CLOSE_IDLE);
    }
    tu_finish(s);
}

/* Output queued for a peer that does not read is not progress: the
 * connection idles out, its pending output is dropped, the peer gets a
 * reset (the header's answers to "does queueing count" and "is pending
 * output dropped silently"). */
static void test_idle_stalled_reader_is_idle_and_reset(void **state)
{
    (void)state;
    reset();
    evl_options o = tu_opts();
    o.idle_timeout_ms = 300;
    o.tick_ms = 50;
    tu_state *s = tu_new(&o, TU_SINK);
    s->close_hook = record_close;
    tu_rec *r = tu_tcp(s);
    tu_set_rcvbuf(r->peer, 4096);
    tu_set_sndbuf(r->fd, 4096);
    static char blob[1 << 20];
    uint64_t t0 = tu_now_ms();
    while (r->closes == 0 && tu_now_ms() - t0 < 3000) {
        if (r->c && evl_pending(r->c) < (4u << 20))
            (void)evl_write(r->c, blob, sizeof blob); /* keeps queueing */
        tu_step(s, 20);
    }
    assert_int_equal(r->closes, 1);
    assert_int_equal(reason_of(s, r), EVL_CLOSE_IDLE);
    assert_int_equal(tu_stats(s).wbuf_bytes, 0);
    assert_int_equal(tu_peer_expect_closed(s, r->peer, 3000), ECONNRESET);
    tu_finish(s);
}

static void test_wbuf_max_per_connection(void **state)
{
    (void)state;
    reset();
    tu_state *s = tu_new(NULL, TU_SINK); /* the loop's wbuf_max: 0, no cap */
    s->close_hook = record_close;
    tu_rec *capped = tu_pair(s);
    tu_rec *free_ = tu_pair(s);
    tu_set_sndbuf(capped->fd, 4096);
    tu_set_sndbuf(free_->fd, 4096);
    assert_int_equal(evl_set_wbuf_max(capped->c, 64 << 10), 0);
    static char blob[1 << 20];
    errno = 0;
    assert_int_equal(evl_write(capped->c, blob, sizeof blob), -1);
    assert_int_equal(errno, EVL_EOVERFLOW);
    assert_int_equal(evl_write(free_->c, blob, sizeof blob), 0);
    errno = 0;
    assert_int_equal(evl_set_wbuf_max(free_->c, 1024), -1); /* more is pending */
    assert_int_equal(errno, EINVAL);
    TU_RUN_UNTIL(s, capped->closes == 1, 3000);
    assert_int_equal(reason_of(s, capped), EVL_CLOSE_OVERFLOW);
    assert_int_equal(free_->closes, 0);
    tu_finish(s);
}

/* ---- per-connection handler ----------------------------------------------------- */

static void test_set_handler_routes_callbacks(void **state)
{
    (void)state;
    reset();
    tu_state *s = tu_new(NULL, TU_SINK);
    tu_rec *r = tu_pair(s);
    evl_set_handler(r->c, &own);
    tu_peer_sends(r->peer, "to own\n");
    TU_RUN_UNTIL(s, r->in.len == 7, 3000);
    assert_int_equal(s->reads, 0); /* the loop's on_read never ran */
    evl_set_handler(r->c, NULL);   /* back to the loop's */
    tu_peer_sends(r->peer, "loop\n");
    TU_RUN_UNTIL(s, s->reads == 1, 3000);
    tu_finish(s);
}

/* ---- on_eof and evl_shutdown ------------------------------------------------------ */

static int eofs;
static size_t in_at_eof;

static void own_eof(evl_conn *c)
{
    tu_rec *r = evl_udata(c);
    eofs++;
    in_at_eof = r->in.len;
}

static const evl_handler own_eofh = {.on_read = own_read, .on_close = own_close, .on_eof = own_eof};

/* on_eof comes once, after every byte before the EOF was delivered; the
 * connection then closes as before (no hold). */
static void test_on_eof_once_after_all_input(void **state)
{
    (void)state;
    reset();
    eofs = 0;
    tu_state *s = tu_new(NULL, TU_SINK);
    tu_rec *r = tu_pair(s);
    evl_set_handler(r->c, &own_eofh);
    tu_peer_sends(r->peer, "abc");
    shutdown(r->peer, SHUT_WR);
    TU_RUN_UNTIL(s, r->closes == 1, 3000);
    assert_int_equal(eofs, 1);
    assert_int_equal(in_at_eof, 3);
    assert_int_equal(reasons[0], EVL_CLOSE_EOF);
    tu_finish(s);
}

/* evl_shutdown: our FIN after what was written; reading goes on; writes
 * after it fail; the peer's EOF then closes the connection. */
static void test_shutdown_is_a_half_close(void **state)
{
    (void)state;
    reset();
    eofs = 0;
    tu_state *s = tu_new(NULL, TU_SINK);
    tu_rec *r = tu_pair(s);
    evl_set_handler(r->c, &own_eofh);
    assert_int_equal(evl_write(r->c, "last\n", 5), 0);
    evl_shutdown(r->c);
    evl_shutdown(r->c); /* idempotent */
    errno = 0;
    assert_int_equal(evl_write(r->c, "more", 4), -1);
    assert_int_equal(errno, EPIPE);
    tu_peer_expect(s, r->peer, "last\n", 3000);
    tu_peer_expect_eof(s, r->peer, 3000);
    tu_peer_sends(r->peer, "still reading\n");
    TU_RUN_UNTIL(s, r->in.len == 14, 3000);
    assert_int_equal(r->closes, 0);
    shutdown(r->peer, SHUT_WR);
    TU_RUN_UNTIL(s, r->closes == 1, 3000);
    assert_int_equal(eofs, 1);
    assert_int_equal(reasons[0], EVL_CLOSE_EOF);
    tu_finish(s);
}

/* evl_release after EOF: on_eof is not run inside evl_release (callbacks
 * never run inside the call that caused them) but from the loop. */
static int in_release;
static void eof_checks_reentry(evl_conn *c)
{
    tu_state *s = evl_loop_udata(evl_loop_of(c));
    TU_CB_CHECK(s, !in_release);
    own_eof(c);
}
static const evl_handler own_eof2 = {.on_read = own_read, .on_close = own_close, .on_eof = eof_checks_reentry};

static void test_on_eof_never_inside_evl_release(void **state)
{
    (void)state;
    reset();
    eofs = 0;
    tu_state *s = tu_new(NULL, TU_SINK);
    tu_rec *r = tu_pair(s);
    evl_set_handler(r->c, &own_eof2);
    evl_hold(r->c);
    evl_read_pause(r->c);
    shutdown(r->peer, SHUT_WR);
    tu_run_for(s, 100);
    evl_read_resume(r->c);
    TU_RUN_UNTIL(s, eofs == 1, 3000);
    assert_int_equal(r->closes, 0); /* held */
    in_release = 1;
    evl_release(r->c);
    in_release = 0;
    TU_RUN_UNTIL(s, r->closes == 1, 3000);
    assert_int_equal(eofs, 1);
    tu_finish(s);
}

/* ---- read pause ------------------------------------------------------------------ */

static void test_read_pause_holds_input_and_eof(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_SINK);
    tu_rec *r = tu_pair(s);
    evl_read_pause(r->c);
    evl_read_pause(r->c); /* idempotent */
    tu_peer_sends(r->peer, "abc");
    shutdown(r->peer, SHUT_WR);
    tu_run_for(s, 200);
    assert_int_equal(r->reads, 0);
    assert_int_equal(r->closes, 0);
    assert_false(evl_peer_eof(r->c));
    evl_read_resume(r->c);
    TU_RUN_UNTIL(s, r->closes == 1, 3000);
    assert_int_equal(r->in.len, 3);
    assert_memory_equal(r->in.p, "abc", 3);
    tu_finish(s);
}

/* Input already buffered when the pause came is delivered on resume without
 * new data from the peer. */
static void consume_one_then_pause(tu_state *s, tu_rec *r)
{
    (void)s;
    size_t n;
    const char *p = evl_data(r->c, &n);
    tu_dbuf_add(&r->in, p, 1);
    evl_consume(r->c, 1);
    evl_read_pause(r->c);
}

static void test_read_resume_delivers_buffered_input(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    s->read_hook = consume_one_then_pause;
    tu_rec *r = tu_pair(s);
    tu_peer_sends(r->peer, "xyz");
    TU_RUN_UNTIL(s, r->reads == 1, 3000);
    tu_run_for(s, 100);
    assert_int_equal(r->reads, 1);
    evl_read_resume(r->c);
    TU_RUN_UNTIL(s, r->reads == 2, 3000);
    evl_read_resume(r->c);
    TU_RUN_UNTIL(s, r->reads == 3, 3000);
    assert_memory_equal(r->in.p, "xyz", 3);
    tu_finish(s);
}

/* ---- the stop hook and walking connections ---------------------------------------- */

typedef struct stopctx {
    int stops, visits, bad, closes;
} stopctx;

static void say_bye(evl_conn *c, void *arg)
{
    stopctx *x = arg;
    x->visits++;
    if (evl_write(c, "BYE\n", 4) != 0)
        x->bad++;
}

static void sh_stop(evl_loop *l)
{
    stopctx *x = evl_loop_udata(l);
    x->stops++;
    evl_foreach_conn(l, say_bye, x);
}

static void sh_tick(evl_loop *l) { evl_stop(l); }

static void sh_close(evl_conn *c)
{
    stopctx *x = evl_loop_udata(evl_loop_of(c));
    x->closes++;
}

/* on_stop runs once, while connections are open: what it writes reaches
 * the peers before their EOF. A closing connection is not walked. */
static void test_stop_hook_says_goodbye(void **state)
{
    (void)state;
    stopctx x = {0};
    evl_handler h = {.on_stop = sh_stop, .on_tick = sh_tick, .on_close = sh_close};
    evl_options o = tu_opts();
    o.tick_ms = 50;
    evl_loop *l = evl_new(&h, &x, &o);
    assert_non_null(l);
    int open_pair[2], closing_pair[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, open_pair), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, closing_pair), 0);
    tu_track_fd(open_pair[1]);
    tu_track_fd(closing_pair[1]);
    assert_non_null(evl_adopt(l, open_pair[0]));
    evl_conn *cl = evl_adopt(l, closing_pair[0]);
    assert_non_null(cl);
    evl_close(cl);
    shutdown(closing_pair[1], SHUT_WR);
    assert_int_equal(evl_run(l, -1), 0);
    assert_int_equal(x.stops, 1);
    assert_int_equal(x.visits, 1);
    assert_int_equal(x.bad, 0);
    assert_int_equal(x.closes, 2);
    tu_set_nonblock(open_pair[1]);
    char buf[16];
    assert_int_equal(tu_peer_read(open_pair[1], buf, sizeof buf), 4);
    assert_memory_equal(buf, "BYE\n", 4);
    assert_int_equal(tu_peer_read(open_pair[1], buf, sizeof buf), 0); /* then EOF */
    evl_free(l);
}

static int visits;
static void close_next(evl_conn *c, void *arg)
{
    tu_state *s = arg;
    visits++;
    /* close this one, abort the next one in fd order if it is ours */
    evl_close(c);
    evl_conn *next = evl_conn_of(s->l, evl_fd(c) + 1);
    if (next)
        evl_abort(next);
}

static void test_foreach_tolerates_closing_during_the_walk(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_SINK);
    for (int i = 0; i < 10; i++)
        tu_pair(s);
    visits = 0;
    evl_foreach_conn(s->l, close_next, s);
    assert_true(visits >= 5 && visits <= 10);
    visits = 0;
    evl_foreach_conn(s->l, close_next, s); /* none open any more */
    assert_int_equal(visits, 0);
    tu_finish(s);
}

int main(void)
{
    tu_init_process();
    const struct CMUnitTest tests[] = {
        TU_TEST(test_connect_tcp_writes_before_connect_are_kept),
        TU_TEST(test_shutdown_before_connect_flushes_then_fins),
        TU_TEST(test_connect_to_port_0_is_refused_not_invalid),
        TU_TEST(test_connect_refused_reports_and_closes),
        TU_TEST(test_connect_timeout),
        TU_TEST(test_connect_unix_and_bad_addresses),
        TU_TEST(test_close_reason_eof_reset_abort_local),
        TU_TEST(test_close_reason_idle_overflow_timeout_stop),
        TU_TEST(test_abort_resets_clean_close_fins),
        TU_TEST(test_idle_timeout_per_connection),
        TU_TEST(test_idle_stalled_reader_is_idle_and_reset),
        TU_TEST(test_wbuf_max_per_connection),
        TU_TEST(test_set_handler_routes_callbacks),
        TU_TEST(test_on_eof_once_after_all_input),
        TU_TEST(test_shutdown_is_a_half_close),
        TU_TEST(test_on_eof_never_inside_evl_release),
        TU_TEST(test_read_pause_holds_input_and_eof),
        TU_TEST(test_read_resume_delivers_buffered_input),
        TU_TEST(test_stop_hook_says_goodbye),
        TU_TEST(test_foreach_tolerates_closing_during_the_walk),
        TU_TEST(test_idle_close_at_its_deadline_in_one_iteration),
        TU_TEST(test_connect_timeout_zero_is_none_and_one_is_one),
        TU_TEST(test_close_reason_names_and_foreach_on_fd_0),
    };
    return cmocka_run_group_tests_name("test_conns", tests, NULL, NULL);
}
