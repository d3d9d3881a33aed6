/*
 * Output: one send per write on an idle connection, order under partial
 * writes, writev, the watermarks and on_drain, wbuf_max, write_quantum, and
 * writes to a peer that is gone (seed faults 6 and 8).
 *
 * This program is linked with -Wl,--wrap=send,... (lib/test/unit.mk): every
 * send-family call and epoll_ctl made by the library lands in the __wrap_
 * functions below first, which count them and then make the real call. That
 * is how "one send per write" and "no epoll_ctl unless interest changes" are
 * observed without reading the library's code. The test's own sends all use
 * MSG_NOSIGNAL, so any call without it is the library's.
 *
 * SIGPIPE keeps its default action here (tu_init_process): a write that
 * raised it would kill this program, and the runner would report that.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- syscall counting through --wrap ---------------------------------------- */

static struct {
    int fd;          /* the connection under watch, or -1 */
    int sends;       /* send-family calls on fd */
    int epoll_ctls;  /* epoll_ctl calls, any fd */
    int unsafe;      /* calls that could raise SIGPIPE: no MSG_NOSIGNAL, or
                        write()/writev() on a socket */
    int all_sends;   /* send-family calls on any socket */
} W = {.fd = -1};

static void watch(int fd)
{
    W.fd = fd;
    W.sends = W.epoll_ctls = 0;
}

static bool is_socket(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

static void note_send(int fd, int flags)
{
    W.all_sends++;
    if (fd == W.fd)
        W.sends++;
    if (!(flags & MSG_NOSIGNAL))
        W.unsafe++;
}

ssize_t __real_send(int fd, const void *p, size_t n, int flags);
ssize_t __wrap_send(int fd, const void *p, size_t n, int flags);
ssize_t __real_sendto(int fd, const void *p, size_t n, int flags, const struct sockaddr *a, socklen_t al);
ssize_t __wrap_sendto(int fd, const void *p, size_t n, int flags, const struct sockaddr *a, socklen_t al);
ssize_t __real_sendmsg(int fd, const struct msghdr *m, int flags);
ssize_t __wrap_sendmsg(int fd, const struct msghdr *m, int flags);
ssize_t __real_write(int fd, const void *p, size_t n);
ssize_t __wrap_write(int fd, const void *p, size_t n);
ssize_t __real_writev(int fd, const struct iovec *iov, int cnt);
ssize_t __wrap_writev(int fd, const struct iovec *iov, int cnt);
int __real_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);

ssize_t __wrap_send(int fd, const void *p, size_t n, int flags)
{
    note_send(fd, flags);
    return __real_send(fd, p, n, flags);
}

ssize_t __wrap_sendto(int fd, const void *p, size_t n, int flags, const struct sockaddr *a, socklen_t al)
{
    note_send(fd, flags);
    return __real_sendto(fd, p, n, flags, a, al);
}

ssize_t __wrap_sendmsg(int fd, const struct msghdr *m, int flags)
{
    note_send(fd, flags);
    return __real_sendmsg(fd, m, flags);
}

ssize_t __wrap_write(int fd, const void *p, size_t n)
{
    if (is_socket(fd)) {
        note_send(fd, 0); /* write() on a socket raises SIGPIPE */
    }
    return __real_write(fd, p, n);
}

ssize_t __wrap_writev(int fd, const struct iovec *iov, int cnt)
{
    if (is_socket(fd))
        note_send(fd, 0);
    return __real_writev(fd, iov, cnt);
}

int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    W.epoll_ctls++;
    return __real_epoll_ctl(epfd, op, fd, ev);
}

/* ---- helpers ----------------------------------------------------------------- */

static char *pattern_alloc(size_t n, uint64_t off, uint32_t seed)
{
    char *p = malloc(n);
    assert_non_null(p);
    tu_pattern(p, n, off, seed);
    return p;
}

/* Writes n pattern bytes through evl_write from outside any callback. */
static void write_pattern(evl_conn *c, size_t n, uint64_t off, uint32_t seed)
{
    char *p = pattern_alloc(n, off, seed);
    assert_int_equal(evl_write(c, p, n), 0);
    free(p);
}

/* Reads and checks n pattern bytes at the peer while driving the loop. */
static void expect_pattern(tu_state *s, int peer, size_t n, uint64_t off, uint32_t seed)
{
    tu_dbuf got = {0};
    tu_peer_collect(s, peer, &got, n, 10000, NULL);
    assert_int_equal(got.len, n);
    long bad = tu_pattern_mismatch(got.p, n, off, seed);
    if (bad >= 0)
        TU_FAIL("byte %ld of %zu differs: order or content lost", bad, n);
    tu_dbuf_free(&got);
}

/* ---- tests --------------------------------------------------------------------- */

static void test_write_idle_conn_one_send_no_epoll_ctl(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = tu_pair(s);
    tu_step(s, 0); /* let registration settle */
    watch(r->fd);
    assert_int_equal(evl_write(r->c, "hello", 5), 0);
    /* nothing pending: one send at once, no buffering, no interest change */
    assert_int_equal(W.sends, 1);
    assert_int_equal(W.epoll_ctls, 0);
    assert_int_equal(evl_pending(r->c), 0);
    /* already in the peer's socket, without running the loop */
    char buf[16];
    assert_int_equal(tu_peer_read(r->peer, buf, sizeof buf), 5);
    assert_memory_equal(buf, "hello", 5);
    tu_step(s, 0);
    assert_int_equal(W.sends, 1);
    assert_int_equal(W.epoll_ctls, 0);
    watch(-1);
    tu_finish(s);
}

static void test_writev_idle_conn_one_call_in_order(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = tu_pair(s);
    tu_step(s, 0);
    watch(r->fd);
    struct iovec iov[3] = {{"abc", 3}, {"", 0}, {"defgh", 5}};
    assert_int_equal(evl_writev(r->c, iov, 3), 0);
    assert_int_equal(W.sends, 1);
    assert_int_equal(W.epoll_ctls, 0);
    assert_int_equal(evl_pending(r->c), 0);
    char buf[16];
    assert_int_equal(tu_peer_read(r->peer, buf, sizeof buf), 8);
    assert_memory_equal(buf, "abcdefgh", 8);
    watch(-1);
    tu_finish(s);
}

static void test_write_zero_length_is_a_no_op(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = tu_pair(s);
    assert_int_equal(evl_write(r->c, "", 0), 0);
    assert_int_equal(evl_writev(r->c, NULL, 0), 0);
    assert_int_equal(evl_pending(r->c), 0);
    tu_run_for(s, 30);
    char buf[4];
    assert_int_equal(tu_peer_read(r->peer, buf, sizeof buf), -1); /* nothing came */
    assert_int_equal(r->closes, 0);
    tu_finish(s);
}

static void test_write_order_under_partial_writes(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.wbuf_high = 64u << 20; /* no pause here: only the order is under test */
    tu_state *s = tu_new(&o, TU_HOLD);
    int sv, cl;
    tu_tcp_pair(&sv, &cl);
    /* small kernel buffers on both sides: most writes are partial. (Not the
     * smallest possible: with a receive window of a few KiB, loopback TCP
     * crawls on zero-window probes, which would test the kernel's timers.) */
    tu_set_sndbuf(sv, 8192);
    tu_set_rcvbuf(cl, 65536);
    tu_set_nonblock(cl);
    tu_track_fd(cl);
    tu_rec *r = tu_adopt(s, sv, cl);
    tu_step(s, 0);

    enum { WRITES = 300 };
    tu_dbuf got = {0};
    uint64_t off = 0;
    size_t max_pending = 0;
    int sends_while_pending = 0, ctls_while_pending = 0, appended = 0;
    for (int i = 0; i < WRITES; i++) {
        size_t n = (size_t)(i * 7919) % 12000 + 1;
        size_t before = evl_pending(r->c);
        watch(r->fd);
        if (i % 3 == 0) {
            /* writev in two pieces */
            char *p = pattern_alloc(n, off, 13);
            struct iovec iov[2] = {{p, n / 2}, {p + n / 2, n - n / 2}};
            assert_int_equal(evl_writev(r->c, iov, 2), 0);
            free(p);
        } else {
            write_pattern(r->c, n, off, 13);
        }
        off += n;
        if (before > 0) {
            /* something pending: append only, never a send that could
             * overtake what is queued */
            appended++;
            sends_while_pending += W.sends;
            ctls_while_pending += W.epoll_ctls;
        }
        if (evl_pending(r->c) > max_pending)
            max_pending = evl_pending(r->c);
        /* the peer reads a little now and then, so the queue moves */
        if (i % 10 == 0) {
            tu_step(s, 0);
            tu_peer_drain(cl, &got);
        }
    }
    watch(-1);
    assert_true(max_pending > 0); /* the partial-write path really ran */
    assert_true(appended > 0);
    assert_int_equal(sends_while_pending, 0);
    assert_int_equal(ctls_while_pending, 0);

    uint64_t end = tu_now_ms() + 10000;
    while (got.len < off) {
        tu_peer_drain(cl, &got);
        if (tu_now_ms() > end)
            TU_FAIL("peer got %zu of %llu bytes", got.len, (unsigned long long)off);
        tu_step(s, 5);
    }
    assert_int_equal(got.len, off);
    long bad = tu_pattern_mismatch(got.p, got.len, 0, 13);
    if (bad >= 0)
        TU_FAIL("byte %ld of %zu out of order", bad, got.len);
    assert_int_equal(evl_pending(r->c), 0);
    tu_dbuf_free(&got);
    tu_finish(s);
}

static void test_fault8_library_sends_all_use_msg_nosignal(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_LINE_ECHO);
    tu_rec *r = tu_pair(s);
    W.unsafe = 0;
    W.all_sends = 0;
    /* every kind of send: direct, writev, buffered and drained on EPOLLOUT,
     * and a reply from inside on_read */
    assert_int_equal(evl_write(r->c, "x", 1), 0);
    struct iovec iov[2] = {{"y", 1}, {"z", 1}};
    assert_int_equal(evl_writev(r->c, iov, 2), 0);
    write_pattern(r->c, 1 << 20, 3, 21);
    tu_peer_sends(r->peer, "ping\n");
    tu_dbuf got = {0};
    tu_peer_collect(s, r->peer, &got, 3 + (1 << 20) + 5, 10000, NULL);
    assert_int_equal(got.len, 3 + (1 << 20) + 5);
    assert_memory_equal(got.p + 3 + (1 << 20), "ping\n", 5);
    tu_dbuf_free(&got);
    assert_true(W.all_sends >= 4);
    assert_int_equal(W.unsafe, 0);
    tu_finish(s);
}

/* on_read: "BIG" queues s->user bytes of pattern, "PING" answers "PONG" */
static void big_or_ping(tu_state *s, tu_rec *r)
{
    size_t len;
    const char *p = evl_data(r->c, &len);
    const char *nl = memchr(p, '\n', len);
    if (!nl)
        return;
    size_t n = (size_t)(nl - p) + 1;
    if (n == 4 && memcmp(p, "BIG", 3) == 0) {
        size_t big = s->size;
        char *q = malloc(big);
        TU_CB_CHECK(s, q != NULL);
        if (q) {
            tu_pattern(q, big, 0, 31);
            TU_CB_CHECK(s, evl_write(r->c, q, big) == 0);
            free(q);
        }
    } else {
        TU_CB_CHECK(s, evl_write(r->c, "PONG\n", 5) == 0);
    }
    evl_consume(r->c, n);
}

static void test_wbuf_high_pauses_reading_and_low_resumes_with_on_drain(void **state)
{
    (void)state;
    enum { BIG = 512 << 10 };
    evl_options o = tu_opts();
    o.wbuf_low = 16 << 10;
    o.wbuf_high = 64 << 10;
    tu_state *s = tu_new(&o, TU_LINE);
    s->read_hook = big_or_ping;
    s->size = BIG;
    tu_rec *r = tu_pair(s);
    tu_set_sndbuf(r->fd, 8192); /* so the kernel does not absorb BIG */
    /* BIG leaves far more than wbuf_high pending (the peer does not read),
     * and PING is already buffered behind it */
    tu_peer_sends(r->peer, "BIG\nPING\n");
    TU_RUN_UNTIL(s, r->reads == 1, 2000);
    tu_run_for(s, 200);
    assert_true(evl_pending(r->c) >= o.wbuf_high);
    /* a client that does not read its replies gets no more requests served,
     * neither the buffered one nor new ones */
    tu_peer_sends(r->peer, "PING\n");
    tu_run_for(s, 200);
    assert_int_equal(r->reads, 1);
    assert_int_equal(r->drains, 0);

    /* the peer reads: pending falls to wbuf_low, on_drain, reading resumes,
     * and the replies come after the big one, in order */
    tu_dbuf got = {0};
    tu_peer_collect(s, r->peer, &got, BIG + 10, 10000, NULL);
    assert_int_equal(got.len, BIG + 10);
    assert_int_equal(tu_pattern_mismatch(got.p, BIG, 0, 31), -1);
    assert_memory_equal(got.p + BIG, "PONG\nPONG\n", 10);
    tu_dbuf_free(&got);
    assert_true(r->drains >= 1);
    assert_true(r->max_drain_pending <= o.wbuf_low);
    assert_int_equal(r->reads, 3);
    tu_finish(s);
}

/* on_drain and on "STREAM": produce the next chunks, as the header advises */
static void produce(tu_state *s, tu_rec *r)
{
    enum { CHUNK = 8192 };
    size_t total = s->size;
    const evl_options *o = evl_get_options(s->l);
    char chunk[CHUNK];
    while ((size_t)r->user < total && evl_pending(r->c) <= o->wbuf_low) {
        size_t n = total - (size_t)r->user < CHUNK ? total - (size_t)r->user : CHUNK;
        tu_pattern(chunk, n, (uint64_t)r->user, 8);
        if (evl_write(r->c, chunk, n) != 0) {
            TU_CB_CHECK(s, !"evl_write failed while streaming");
            return;
        }
        r->user += (long)n;
    }
}

static void start_stream(tu_state *s, tu_rec *r)
{
    evl_consume(r->c, SIZE_MAX);
    produce(s, r);
}

static void test_on_drain_streams_with_bounded_buffer(void **state)
{
    (void)state;
    enum { TOTAL = 4 << 20 };
    evl_options o = tu_opts();
    o.wbuf_low = 16 << 10;
    o.wbuf_high = 64 << 10;
    tu_state *s = tu_new(&o, TU_HOLD);
    s->read_hook = start_stream;
    s->drain_hook = produce;
    s->size = TOTAL;
    tu_rec *r = tu_pair(s);
    tu_peer_sends(r->peer, "go");
    expect_pattern(s, r->peer, TOTAL, 0, 8);
    /* produced chunk by chunk from on_drain: never more than wbuf_low plus
     * one chunk pending, never the whole stream */
    assert_true(r->drains > 1);
    assert_true(tu_stats(s).wbuf_peak <= o.wbuf_low + 8192);
    assert_int_equal(r->user, TOTAL);
    tu_finish(s);
}

static void test_fault6_wbuf_max_write_fails_with_eoverflow_and_closes(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.wbuf_low = 4 << 10;
    o.wbuf_high = 16 << 10;
    o.wbuf_max = 32 << 10;
    tu_state *s = tu_new(&o, TU_HOLD);
    tu_rec *r = tu_pair(s);
    /* the peer never reads: write 4 KiB at a time until refused */
    char chunk[4096];
    memset(chunk, 'w', sizeof chunk);
    int rc = 0, i;
    for (i = 0; i < 10000; i++) {
        errno = 0;
        rc = evl_write(r->c, chunk, sizeof chunk);
        if (rc != 0)
            break;
        assert_true(evl_pending(r->c) <= o.wbuf_max);
    }
    assert_int_equal(rc, -1);
    assert_int_equal(errno, EVL_EOVERFLOW);
    assert_true(i > 0);
    /* aborted: later writes fail at once; on_close follows in the loop */
    errno = 0;
    assert_int_equal(evl_write(r->c, "x", 1), -1);
    assert_int_equal(errno, EPIPE);
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    struct evl_stats st = tu_stats(s);
    assert_int_equal(st.overflow_closed, 1);
    assert_true(st.wbuf_peak <= o.wbuf_max);
    assert_int_equal(st.wbuf_bytes, 0);
    tu_peer_expect_closed(s, r->peer, 2000);
    tu_finish(s);
}

static void test_fault8_write_to_closed_unix_peer_no_sigpipe(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *a = tu_pair(s);
    tu_rec *b = tu_pair(s);
    /* a send() to a unix socket whose peer is gone fails with EPIPE and,
     * without MSG_NOSIGNAL, raises SIGPIPE, which kills this program */
    tu_close_fd(a->peer);
    tu_close_fd(b->peer);
    errno = 0;
    assert_int_equal(evl_write(a->c, "x", 1), -1);
    assert_true(errno == EPIPE || errno == ECONNRESET);
    struct iovec iov[2] = {{"y", 1}, {"z", 1}};
    errno = 0;
    assert_int_equal(evl_writev(b->c, iov, 2), -1);
    assert_true(errno == EPIPE || errno == ECONNRESET);
    /* the connections are aborted: on_close, once each */
    TU_RUN_UNTIL(s, a->closes == 1 && b->closes == 1, 2000);
    tu_finish(s);
}

static void test_fault8_write_to_reset_tcp_peer_no_sigpipe(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = tu_tcp(s);
    tu_set_linger0(r->peer);
    tu_close_fd(r->peer); /* RST */
    assert_true(tu_wait_readable(r->fd, 2000)); /* the RST arrived */
    /* The first send after an RST reports ECONNRESET without a signal; the
     * ones after it fail with EPIPE and raise SIGPIPE. Take the pending
     * error off the socket, as a read() in the loop would, so the library's
     * send is the EPIPE kind. */
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    assert_int_equal(getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl), 0);
    errno = 0;
    assert_int_equal(evl_write(r->c, "after reset", 11), -1);
    assert_true(errno == EPIPE || errno == ECONNRESET);
    errno = 0;
    assert_int_equal(evl_write(r->c, "again", 5), -1);
    assert_int_equal(errno, EPIPE);
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    tu_finish(s);
}

static void test_fault8_drain_to_gone_peer_no_sigpipe(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *u = tu_pair(s);
    tu_rec *t = tu_tcp(s);
    tu_rec *h = tu_pair(s);
    /* output pending on all three, then the peers go: the queued bytes meet
     * the dead socket in the EPOLLOUT path, not in evl_write */
    write_pattern(u->c, 1 << 20, 0, 1);
    write_pattern(t->c, 8 << 20, 0, 1);
    write_pattern(h->c, 1 << 20, 0, 1);
    assert_true(evl_pending(u->c) > 0);
    assert_true(evl_pending(t->c) > 0);
    assert_true(evl_pending(h->c) > 0);
    /* gone entirely: the loop may learn it from a read (EOF, ECONNRESET)
     * before it tries to send */
    tu_close_fd(u->peer);
    tu_set_linger0(t->peer);
    tu_close_fd(t->peer);
    /* gone for reading only: no EOF and no error to read, so the only way to
     * learn it is the next send, which fails with EPIPE (and SIGPIPE unless
     * MSG_NOSIGNAL); the peer empties its queue so the socket turns writable */
    assert_int_equal(shutdown(h->peer, SHUT_RD), 0);
    tu_dbuf junk = {0};
    tu_peer_drain(h->peer, &junk);
    tu_dbuf_free(&junk);
    TU_RUN_UNTIL(s, u->closes == 1 && t->closes == 1 && h->closes == 1, 3000);
    assert_int_equal(tu_stats(s).wbuf_bytes, 0);
    tu_finish(s);
}

static void test_write_quantum_limits_drain_per_event(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.write_quantum = 16384;
    o.wbuf_high = 64u << 20;
    tu_state *s = tu_new(&o, TU_HOLD);
    tu_rec *r = tu_pair(s);
    write_pattern(r->c, 2 << 20, 0, 4);
    tu_dbuf sink = {0};
    for (int round = 0; round < 5; round++) {
        /* empty the peer's socket: plenty of room, EPOLLOUT is ready */
        tu_peer_drain(r->peer, &sink);
        size_t before = evl_pending(r->c);
        assert_true(before > 0);
        tu_step(s, 100);
        size_t after = evl_pending(r->c);
        /* one EPOLLOUT event sends at most write_quantum (fairness) */
        assert_true(after < before);
        assert_true(before - after <= o.write_quantum);
    }
    tu_dbuf_free(&sink);
    tu_finish(s);
}

/* write_quantum is a budget per connection per iteration that evl_write's
 * direct sends share: a producer that writes again and again (from on_drain,
 * say) to a reader that keeps up cannot hold the loop, because once the
 * budget is spent its writes queue for the next EPOLLOUT. */
static void test_write_quantum_bounds_direct_sends_per_iteration(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.write_quantum = 4096;
    tu_state *s = tu_new(&o, TU_HOLD);
    tu_rec *r = tu_pair(s);
    tu_set_sndbuf(r->fd, 1 << 20); /* room for all of it: only the budget stops a send */
    char chunk[4096];
    memset(chunk, 'q', sizeof chunk);
    watch(r->fd);
    assert_int_equal(evl_write(r->c, chunk, sizeof chunk), 0);
    assert_int_equal(evl_pending(r->c), 0); /* within the budget: sent at once */
    for (int i = 0; i < 3; i++)
        assert_int_equal(evl_write(r->c, chunk, sizeof chunk), 0);
    if (W.sends != 1)
        TU_FAIL("%d sends for four writes in one iteration with write_quantum spent by the first", W.sends);
    assert_int_equal(evl_pending(r->c), 3 * sizeof chunk);
    for (int round = 0; round < 3; round++) {
        size_t before = evl_pending(r->c);
        tu_step(s, 100);
        size_t after = evl_pending(r->c);
        assert_true(after < before);
        assert_true(before - after <= o.write_quantum);
    }
    tu_dbuf got = {0};
    int err = 0;
    assert_false(tu_peer_collect(s, r->peer, &got, 4 * sizeof chunk, 2000, &err)); /* all of it, no EOF */
    assert_int_equal(got.len, 4 * sizeof chunk);
    for (size_t i = 0; i < got.len; i++)
        if (got.p[i] != 'q')
            TU_FAIL("byte %zu is %d, not 'q'", i, got.p[i]);
    tu_dbuf_free(&got);
    tu_finish(s);
}

static void test_epollout_off_when_drained_no_spin(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = tu_pair(s);
    write_pattern(r->c, 1 << 20, 0, 6);
    assert_true(evl_pending(r->c) > 0);
    expect_pattern(s, r->peer, 1 << 20, 0, 6);
    TU_RUN_UNTIL(s, evl_pending(r->c) == 0, 2000);
    /* EPOLLOUT is level-triggered and always ready on an empty socket: left
     * on, every epoll_wait returns at once */
    tu_assert_no_spin(s, 200, "with everything drained (EPOLLOUT left on?)");
    tu_finish(s);
}

static void test_pending_and_write_stats(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *a = tu_pair(s);
    tu_rec *b = tu_pair(s);
    write_pattern(a->c, 1 << 20, 0, 2);
    write_pattern(b->c, 512 << 10, 0, 2);
    struct evl_stats st = tu_stats(s);
    size_t pa = evl_pending(a->c), pb = evl_pending(b->c);
    assert_true(pa > 0 && pb > 0);
    assert_int_equal(st.wbuf_bytes, pa + pb);
    assert_true(st.wbuf_peak >= pa && st.wbuf_peak >= pb);
    uint64_t peak = st.wbuf_peak;
    expect_pattern(s, a->peer, 1 << 20, 0, 2);
    expect_pattern(s, b->peer, 512 << 10, 0, 2);
    TU_RUN_UNTIL(s, evl_pending(a->c) == 0 && evl_pending(b->c) == 0, 2000);
    st = tu_stats(s);
    assert_int_equal(st.wbuf_bytes, 0);
    assert_int_equal(st.wbuf_peak, peak); /* the most ever, not now */
    tu_finish(s);
}

int main(void)
{
    tu_init_process();
    const struct CMUnitTest tests[] = {
        TU_TEST(test_write_idle_conn_one_send_no_epoll_ctl),
        TU_TEST(test_writev_idle_conn_one_call_in_order),
        TU_TEST(test_write_zero_length_is_a_no_op),
        TU_TEST(test_write_order_under_partial_writes),
        TU_TEST(test_fault8_library_sends_all_use_msg_nosignal),
        TU_TEST(test_wbuf_high_pauses_reading_and_low_resumes_with_on_drain),
        TU_TEST(test_on_drain_streams_with_bounded_buffer),
        TU_TEST(test_fault6_wbuf_max_write_fails_with_eoverflow_and_closes),
        TU_TEST(test_fault8_write_to_closed_unix_peer_no_sigpipe),
        TU_TEST(test_fault8_write_to_reset_tcp_peer_no_sigpipe),
        TU_TEST(test_fault8_drain_to_gone_peer_no_sigpipe),
        TU_TEST(test_write_quantum_limits_drain_per_event),
        TU_TEST(test_write_quantum_bounds_direct_sends_per_iteration),
        TU_TEST(test_epollout_off_when_drained_no_spin),
        TU_TEST(test_pending_and_write_stats),
    };
    return cmocka_run_group_tests_name("test_write", tests, NULL, NULL);
}
