/*
 * The issue-14 hot path's rare turns: allocation failures on the paths that
 * now allocate lazily (the extension struct, the interest queue, the tail of
 * input shown in place), on_eof deferred by evl_release and re-entered from
 * on_eof, the overrides on connections in every state, the trim timer when
 * little was released, and evl_free meeting a connection with its own idle
 * timer. Each test drives its own loop with its own handler (the shared
 * recording handler of testutil.c has no on_eof), over a
 * socketpair whose far end the test plays.
 *
 * Allocations fail through the linker's --wrap (tools/coverage/unit-wraps.sh
 * reads the __wrap_ definitions below): a counter armed right before the one
 * library call under test fails its next allocation, and nothing else.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"

/* ---- allocation failures, armed one at a time ---------------------------- */

static int fail_calloc, fail_realloc, fail_malloc; /* fail the next call when set */
static int trims;                                  /* malloc_trim calls */

void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size)
{
    if (fail_calloc) {
        fail_calloc = 0;
        errno = ENOMEM;
        return NULL;
    }
    return __real_calloc(n, size);
}

void *__real_realloc(void *p, size_t size);
void *__wrap_realloc(void *p, size_t size);
void *__wrap_realloc(void *p, size_t size)
{
    if (fail_realloc) {
        fail_realloc = 0;
        errno = ENOMEM;
        return NULL;
    }
    return __real_realloc(p, size);
}

void *__real_malloc(size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_malloc(size_t size)
{
    if (fail_malloc) {
        fail_malloc = 0;
        errno = ENOMEM;
        return NULL;
    }
    return __real_malloc(size);
}

/* The next send_errs sends fail with send_err (EINTR, EAGAIN). */
static int send_errs, send_err;
ssize_t __real_send(int fd, const void *p, size_t n, int flags);
ssize_t __wrap_send(int fd, const void *p, size_t n, int flags);
ssize_t __wrap_send(int fd, const void *p, size_t n, int flags)
{
    if (send_errs > 0) {
        send_errs--;
        errno = send_err;
        return -1;
    }
    return __real_send(fd, p, n, flags);
}

/* free() of this pointer seen (a connection's memory given back). */
static const void *watch_free;
static bool watched_freed;
void __real_free(void *p);
void __wrap_free(void *p);
void __wrap_free(void *p)
{
    if (p && p == watch_free)
        watched_freed = true;
    __real_free(p);
}

/* The next epoll_wait fails with EINTR when set; every wait's timeout is
 * recorded. */
static int wait_eintr, last_wait_timeout;
int __real_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout);
int __wrap_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout);
int __wrap_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
    last_wait_timeout = timeout;
    if (wait_eintr) {
        wait_eintr = 0;
        errno = EINTR;
        return -1;
    }
    return __real_epoll_wait(epfd, ev, max, timeout);
}

int __real_malloc_trim(size_t pad);
int __wrap_malloc_trim(size_t pad);
int __wrap_malloc_trim(size_t pad)
{
    trims++;
    return __real_malloc_trim(pad);
}

/* ---- a small handler of the tests' own ------------------------------------ */

struct hp {
    evl_loop *l;
    evl_conn *c;
    size_t consume;      /* bytes on_read consumes per call (0: none) */
    int peer;
    int reads, eofs, closes;
    int close_reason, close_errno;
    enum { EOF_NOTHING, EOF_CLOSE, EOF_WAKE } eof_does;
    bool in_release;     /* inside evl_release, called from on_read */
    bool eof_in_release; /* on_eof ran inside evl_release: it must not */
    bool release_in_read;    /* the second on_read: evl_release */
    bool decline_after_first; /* from the second on_read on, consume nothing */
};

static struct hp *hp_of(evl_conn *c) { return evl_udata(c); }

static void hp_read(evl_conn *c)
{
    struct hp *h = hp_of(c);
    size_t len;
    (void)evl_data(c, &len);
    h->reads++;
    if (!(h->decline_after_first && h->reads > 1))
        evl_consume(c, len < h->consume ? len : h->consume);
    if (h->release_in_read && h->reads == 2) {
        h->in_release = true;
        evl_release(c);
        h->in_release = false;
    }
}

static void hp_eof(evl_conn *c)
{
    struct hp *h = hp_of(c);
    h->eofs++;
    if (h->in_release)
        h->eof_in_release = true;
    if (h->eof_does == EOF_CLOSE) {
        evl_close(c);
    } else if (h->eof_does == EOF_WAKE) {
        h->consume = SIZE_MAX; /* the call evl_wake asks for takes the rest */
        evl_wake(c);
    }
}

static void hp_close(evl_conn *c)
{
    struct hp *h = hp_of(c);
    h->closes++;
    h->close_reason = evl_close_reason(c);
    h->close_errno = evl_close_errno(c);
    h->c = NULL;
}

static const evl_handler hp_handler = {
    .on_read = hp_read, .on_eof = hp_eof, .on_close = hp_close};
/* No on_read: input is never taken by the fast path, and all of it stays. */
static const evl_handler hp_noread = {.on_close = hp_close};

/* A loop (opts may be NULL) with one adopted connection of a socketpair. */
static void hp_open(struct hp *h, const evl_handler *hd, const evl_options *o)
{
    memset(h, 0, sizeof *h);
    h->l = evl_new(hd, h, o);
    assert_non_null(h->l);
    h->c = tu_adopt_socketpair(h->l, h, &h->peer);
}

/* Small socket buffers both ways, then a write of n bytes: most of it stays
 * queued in the loop (the peer does not read). */
static void hp_queue_output(struct hp *h, size_t n)
{
    static char big[256 * 1024];
    assert_true(n <= sizeof big);
    tu_set_sndbuf(evl_fd(h->c), 4096);
    tu_set_rcvbuf(h->peer, 4096);
    memset(big, 'q', n);
    assert_int_equal(evl_write(h->c, big, n), 0);
    assert_true(evl_pending(h->c) > 0);
}

/* Runs the loop until cond or max_ms (then fails). */
#define HP_RUN_UNTIL(h, cond, max_ms)                                          \
    do {                                                                       \
        uint64_t hp_deadline_ = tu_now_ms() + (uint64_t)(max_ms);              \
        while (!(cond)) {                                                      \
            if (tu_now_ms() > hp_deadline_)                                    \
                TU_FAIL("not true after %d ms: %s", (int)(max_ms), #cond);    \
            assert_true(evl_run_once((h)->l, 10) >= 0);                        \
        }                                                                      \
    } while (0)

static void hp_done(struct hp *h)
{
    evl_free(h->l);
    tu_close_fd(h->peer);
}

/* ---- allocation failures ------------------------------------------------- */

/* The extension struct is allocated on an override's first use: a failure
 * is reported (ENOMEM) and leaves the connection as it was; the next try
 * succeeds. */
static void test_override_without_memory_fails_cleanly(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_handler, NULL);
    fail_calloc = 1;
    errno = 0;
    assert_int_equal(evl_set_wbuf_max(h.c, 4u << 20), -1);
    assert_int_equal(errno, ENOMEM);
    fail_calloc = 1;
    errno = 0;
    assert_int_equal(evl_set_idle_timeout(h.c, 60000), -1);
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(evl_set_wbuf_max(h.c, 4u << 20), 0);
    assert_int_equal(evl_set_idle_timeout(h.c, 60000), 0);
    hp_done(&h);
    assert_int_equal(h.closes, 1);
}

/* evl_connect with a timeout allocates the extension before the
 * connection: its failure is ENOMEM, and nothing is left behind (ASan's
 * leak check, the fd count). */
static void test_connect_extension_without_memory(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_handler, NULL);
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(ls >= 0);
    tu_track_fd(ls);
    char path[64];
    (void)snprintf(path, sizeof path, "/tmp/evl-hotpath-%d.sock", (int)getpid());
    (void)unlink(path);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(ls, 8), 0);
    struct evl_stats before;
    evl_stats(h.l, &before);
    fail_calloc = 1;
    errno = 0;
    assert_null(evl_connect(h.l, path, 0, 1000, &hp_handler, &h));
    assert_int_equal(errno, ENOMEM);
    fail_calloc = 0;
    struct evl_stats after;
    evl_stats(h.l, &after);
    assert_int_equal(after.conns, before.conns);
    (void)unlink(path);
    tu_close_fd(ls);
    hp_done(&h);
}

/* The interest queue grows on first use: when it cannot, the change is
 * applied at once, so a paused connection is not reported readable. */
static void test_interest_queue_without_memory_applies_at_once(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_handler, NULL);
    h.consume = SIZE_MAX;
    tu_peer_sends(h.peer, "x");
    fail_realloc = 1; /* the queue's first realloc */
    evl_read_pause(h.c);
    assert_int_equal(fail_realloc, 0); /* it was the call that failed */
    /* Not watched for input any more: nothing to report. */
    assert_int_equal(evl_run_once(h.l, 0), 0);
    assert_int_equal(h.reads, 0);
    evl_read_resume(h.c);
    HP_RUN_UNTIL(&h, h.reads == 1, 2000);
    hp_done(&h);
}

/* Input shown in place and not consumed is copied to the connection's
 * buffer; when that fails the connection closes as NOMEM, with ENOMEM. */
static void test_unconsumed_input_without_memory_closes_nomem(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_noread, NULL);
    tu_peer_sends(h.peer, "hello");
    assert_true(tu_wait_readable(evl_fd(h.c), 2000));
    fail_malloc = 1; /* the buffer's region: the only allocation of the step */
    assert_true(evl_run_once(h.l, 1000) >= 0);
    fail_malloc = 0;
    assert_int_equal(h.closes, 1);
    assert_int_equal(h.close_reason, EVL_CLOSE_NOMEM);
    assert_int_equal(h.close_errno, ENOMEM);
    hp_done(&h);
}

/* A buffer cannot grow past what a size_t can count: ENOMEM, unchanged. */
static void test_buf_reserve_beyond_size_max(void **state)
{
    (void)state;
    evl__buf b = {0};
    assert_int_equal(evl__buf_append(&b, "ab", 2), 0);
    errno = 0;
    assert_null(evl__buf_reserve(&b, SIZE_MAX - 8));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(evl__buf_len(&b), 2);
    assert_null(evl__buf_check(&b));
    evl__buf_free(&b);
}

/* ---- on_eof ---------------------------------------------------------------- */

/* The peer's EOF arrives while input waits for re-dispatch; the on_read
 * that takes the rest releases the handler's hold: on_eof is not called
 * from inside evl_release but from the loop's next pass, once, and the
 * connection then closes as EOF. */
static void test_eof_after_release_is_reported_from_the_loop(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_handler, NULL);
    h.consume = 1;
    h.release_in_read = true;
    evl_hold(h.c);
    tu_peer_sends(h.peer, "ab");
    assert_int_equal(shutdown(h.peer, SHUT_WR), 0);
    assert_true(tu_wait_readable(evl_fd(h.c), 2000));
    /* 1: "ab" read, "a" consumed, "b" waits for the next iteration. */
    assert_int_equal(evl_run_once(h.l, 0), 1);
    assert_int_equal(h.reads, 1);
    assert_int_equal(h.eofs, 0);
    /* 2: the EOF is read (input still waits: no on_eof yet); the
     * re-dispatch's on_read takes "b" and releases. */
    assert_true(evl_run_once(h.l, 1000) >= 1);
    assert_int_equal(h.reads, 2);
    assert_int_equal(h.eofs, 0);
    HP_RUN_UNTIL(&h, h.closes == 1, 2000);
    assert_int_equal(h.eofs, 1);
    assert_false(h.eof_in_release);
    assert_int_equal(h.close_reason, EVL_CLOSE_EOF);
    hp_done(&h);
}

/* As above, but the on_read that releases consumes nothing: the EOF comes
 * from the loop's next pass without another on_read of the input it just
 * declined ("it waits for more data", and none will come). Found by
 * fuzz_loop: on_read again with the same bytes. */
static void test_eof_after_release_does_not_repeat_declined_input(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_handler, NULL);
    h.consume = 1;
    h.release_in_read = true;
    h.decline_after_first = true;
    evl_hold(h.c);
    tu_peer_sends(h.peer, "abc");
    assert_int_equal(shutdown(h.peer, SHUT_WR), 0);
    assert_true(tu_wait_readable(evl_fd(h.c), 2000));
    assert_int_equal(evl_run_once(h.l, 0), 1); /* "a" consumed, "bc" waits */
    assert_int_equal(h.reads, 1);
    assert_true(evl_run_once(h.l, 1000) >= 1); /* EOF read; "bc" declined; release */
    assert_int_equal(h.reads, 2);
    HP_RUN_UNTIL(&h, h.closes == 1, 2000);
    if (h.reads != 2)
        TU_FAIL("on_read called %d times: the declined input was shown again", h.reads);
    assert_int_equal(h.eofs, 1);
    assert_int_equal(h.close_reason, EVL_CLOSE_EOF);
    hp_done(&h);
}

/* on_eof may close the connection (a plain close, not an EOF close)... */
static void test_on_eof_may_close(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_handler, NULL);
    h.consume = SIZE_MAX;
    h.eof_does = EOF_CLOSE;
    assert_int_equal(shutdown(h.peer, SHUT_WR), 0);
    HP_RUN_UNTIL(&h, h.closes == 1, 2000);
    assert_int_equal(h.eofs, 1);
    assert_int_equal(h.close_reason, EVL_CLOSE_LOCAL);
    hp_done(&h);
}

/* ...or ask for another on_read for the input it left (evl_wake): that call
 * comes before the close, which then is the EOF's. */
static void test_on_eof_may_wake_for_the_input_left(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_handler, NULL);
    h.consume = 0; /* the first on_read leaves "xy" */
    h.eof_does = EOF_WAKE;
    tu_peer_sends(h.peer, "xy");
    assert_int_equal(shutdown(h.peer, SHUT_WR), 0);
    HP_RUN_UNTIL(&h, h.closes == 1, 2000);
    assert_int_equal(h.eofs, 1);
    assert_int_equal(h.reads, 2);
    assert_int_equal(h.close_reason, EVL_CLOSE_EOF);
    hp_done(&h);
}

/* ---- overrides and pauses in every state ----------------------------------- */

static void test_overrides_on_closing_and_killed_connections(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_handler, NULL);
    /* -1 with no override (no extension), and with an extension that has no
     * idle timer of its own: nothing to undo. */
    assert_int_equal(evl_set_idle_timeout(h.c, -1), 0);
    assert_int_equal(evl_set_wbuf_max(h.c, 8u << 20), 0);
    assert_int_equal(evl_set_idle_timeout(h.c, -1), 0);
    /* A resume on a killed connection (before its reap) changes nothing. */
    evl_read_pause(h.c);
    evl_abort(h.c);
    evl_read_resume(h.c);
    errno = 0;
    assert_int_equal(evl_set_idle_timeout(h.c, 1000), -1);
    assert_int_equal(errno, EINVAL);
    assert_true(evl_run_once(h.l, 0) >= 0);
    assert_int_equal(h.closes, 1);
    assert_int_equal(h.close_reason, EVL_CLOSE_ABORT);
    hp_done(&h);

    /* A resume on a closing connection: no on_read for its input. */
    hp_open(&h, &hp_handler, NULL);
    h.consume = 0;
    tu_peer_sends(h.peer, "zz");
    HP_RUN_UNTIL(&h, h.reads == 1, 2000); /* "zz" stays buffered */
    evl_read_pause(h.c);
    evl_close(h.c);
    evl_read_resume(h.c);
    int reads = h.reads;
    assert_int_equal(shutdown(h.peer, SHUT_WR), 0); /* the close ends at our FIN + its EOF */
    HP_RUN_UNTIL(&h, h.closes == 1, 2000);
    assert_int_equal(h.reads, reads);
    hp_done(&h);
}

/* An idle timeout shorter than the time already idle fires at once (not
 * after a wrapped-around delay). */
static void test_own_idle_timeout_already_past(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_handler, NULL);
    uint64_t t0 = tu_now_ms();
    while (tu_now_ms() < t0 + 30)
        assert_true(evl_run_once(h.l, 10) >= 0); /* the loop's clock moves on */
    assert_int_equal(evl_set_idle_timeout(h.c, 5), 0);
    HP_RUN_UNTIL(&h, h.closes == 1, 2000);
    assert_true(tu_now_ms() - t0 < 1500);
    assert_int_equal(h.close_reason, EVL_CLOSE_IDLE);
    hp_done(&h);
}

/* evl_free closes what an on_close adopted onto the custom list (its own
 * idle timer), too: every connection gets its on_close. */
static int free_adopted_closes;
static void adopt_close(evl_conn *c) { (void)c; free_adopted_closes++; }
static const evl_handler adopt_handler = {.on_close = adopt_close};
static int free_adopt_fd = -1;
static void close_then_adopt(evl_conn *c)
{
    evl_loop *l = evl_loop_of(c);
    hp_close(c);
    if (free_adopt_fd >= 0) {
        evl_conn *n = evl_adopt(l, free_adopt_fd);
        free_adopt_fd = -1;
        if (n) {
            evl_set_handler(n, &adopt_handler);
            (void)evl_set_idle_timeout(n, 60000);
        }
    }
}
static const evl_handler adopting_handler = {.on_close = close_then_adopt};

static void test_free_closes_custom_list_adopted_in_on_close(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &adopting_handler, NULL);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tu_track_fd(sv[1]);
    free_adopt_fd = sv[0];
    free_adopted_closes = 0;
    evl_free(h.l);
    assert_int_equal(h.closes, 1);
    assert_int_equal(free_adopted_closes, 1);
    assert_int_equal(free_adopt_fd, -1);
    tu_close_fd(h.peer);
    tu_close_fd(sv[1]);
}

/* ---- what only the conformance suite's timing reached ---------------------- */

/* A signal that interrupts evl_write's direct send (the conformance suite's
 * signal storm reached this only when a signal landed mid-send): the write
 * is retried, first by evl_write's slow path and then by send_now's own
 * EINTR loop, and the bytes arrive once, in order. */
static void test_write_interrupted_by_a_signal_is_retried(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_handler, NULL);
    h.consume = SIZE_MAX;
    send_err = EINTR;
    send_errs = 2; /* evl_write's send, then send_now's first try */
    assert_int_equal(evl_write(h.c, "hello", 5), 0);
    assert_int_equal(send_errs, 0);
    assert_int_equal(evl_pending(h.c), 0); /* sent by the third try */
    char buf[16];
    ssize_t n = tu_peer_read(h.peer, buf, sizeof buf);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "hello", 5);
    hp_done(&h);
}

/* Input waiting for re-dispatch that was consumed from outside on_read (a
 * timer, another connection's callback) is not shown again as an empty
 * on_read. Conformance reached this only when a STATS or timer command
 * happened to land between the two. */
static void test_redispatch_of_input_consumed_meanwhile(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_handler, NULL);
    h.consume = 1;
    tu_peer_sends(h.peer, "ab");
    assert_true(tu_wait_readable(evl_fd(h.c), 2000));
    assert_int_equal(evl_run_once(h.l, 0), 1); /* "a" consumed, "b" waits */
    assert_int_equal(h.reads, 1);
    evl_consume(h.c, 1); /* from outside: nothing left */
    size_t len = 1;
    (void)evl_data(h.c, &len);
    assert_int_equal(len, 0);
    for (int i = 0; i < 3; i++)
        assert_true(evl_run_once(h.l, 0) >= 0);
    assert_int_equal(h.reads, 1); /* no call for no input */
    hp_done(&h);
}

/* More connections change interest in one iteration than the queue's first
 * allocation holds (64): it grows, and every change is applied. */
static void test_interest_queue_grows_past_its_first_size(void **state)
{
    (void)state;
    enum { N = 80 };
    evl_loop *l = evl_new(&hp_handler, NULL, NULL);
    assert_non_null(l);
    struct hp hs[N];
    for (int i = 0; i < N; i++) {
        memset(&hs[i], 0, sizeof hs[i]);
        hs[i].l = l;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        hs[i].c = evl_adopt(l, sv[0]);
        assert_non_null(hs[i].c);
        evl_set_udata(hs[i].c, &hs[i]);
        hs[i].peer = sv[1];
        tu_track_fd(sv[1]);
        hs[i].consume = SIZE_MAX;
        tu_peer_sends(sv[1], "x");
    }
    for (int i = 0; i < N; i++)
        evl_read_pause(hs[i].c); /* N queued changes: no longer readable */
    assert_int_equal(evl_run_once(l, 0), 0);
    for (int i = 0; i < N; i++)
        evl_read_resume(hs[i].c);
    uint64_t t0 = tu_now_ms();
    int reads = 0;
    while (reads < N && tu_now_ms() < t0 + 2000) {
        assert_true(evl_run_once(l, 10) >= 0);
        reads = 0;
        for (int i = 0; i < N; i++)
            reads += hs[i].reads;
    }
    assert_int_equal(reads, N);
    evl_free(l);
    for (int i = 0; i < N; i++) {
        assert_int_equal(hs[i].closes, 1);
        tu_close_fd(hs[i].peer);
    }
}

/* EPOLLOUT came, yet the socket takes nothing (EAGAIN at once: the
 * conformance suite's many writers made this common, the unit tests never):
 * nothing is spent, the output stays queued and goes out later, intact. */
static void test_flush_that_sends_nothing_keeps_the_output(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_handler, NULL);
    tu_set_sndbuf(evl_fd(h.c), 4096);
    enum { SIZE = 256 * 1024 };
    static char big[SIZE];
    tu_pattern(big, SIZE, 0, 3);
    assert_int_equal(evl_write(h.c, big, SIZE), 0);
    assert_true(evl_pending(h.c) > 0);
    tu_dbuf got = {0};
    assert_false(tu_peer_drain(h.peer, &got)); /* room again: EPOLLOUT is due */
    send_err = EAGAIN;
    send_errs = 1;
    size_t before = evl_pending(h.c);
    assert_int_equal(evl_run_once(h.l, 1000), 1);
    assert_int_equal(send_errs, 0);             /* the flush tried... */
    assert_int_equal(evl_pending(h.c), before); /* ...and sent nothing */
    uint64_t t0 = tu_now_ms();
    while (got.len < SIZE && tu_now_ms() < t0 + 5000) {
        assert_true(evl_run_once(h.l, 5) >= 0);
        assert_false(tu_peer_drain(h.peer, &got));
    }
    assert_int_equal(got.len, SIZE);
    assert_int_equal(tu_pattern_mismatch(got.p, SIZE, 0, 3), -1);
    tu_dbuf_free(&got);
    hp_done(&h);
}

/* A write from on_connect larger than write_quantum: the direct send takes
 * a quantum, the rest waits, and the connect's own EPOLLOUT, which found
 * the quantum spent, leaves it for the next iteration instead of sending
 * more. Everything arrives, in order. (sndbuf 0: the kernel's default.) */
enum { CONNECT_WRITE = 3 * 4096 };
static char connect_data[CONNECT_WRITE];
static size_t connect_pending_after_write;
static void write_on_connect(evl_conn *c, int err)
{
    if (err == 0 && evl_write(c, connect_data, sizeof connect_data) == 0)
        connect_pending_after_write = evl_pending(c);
}
static const evl_handler connect_handler = {.on_connect = write_on_connect, .on_close = hp_close};

static void test_write_from_on_connect_beyond_the_quantum(void **state)
{
    (void)state;
    evl_options o;
    evl_options_default(&o);
    o.write_quantum = 4096;
    o.sndbuf = 0;
    struct hp h;
    memset(&h, 0, sizeof h);
    h.l = evl_new(&connect_handler, &h, &o);
    assert_non_null(h.l);
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(ls >= 0);
    tu_track_fd(ls);
    char path[64];
    (void)snprintf(path, sizeof path, "/tmp/evl-hotpath-q-%d.sock", (int)getpid());
    (void)unlink(path);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(ls, 8), 0);
    tu_pattern(connect_data, sizeof connect_data, 0, 5);
    connect_pending_after_write = 0;
    h.c = evl_connect(h.l, path, 0, 0, NULL, &h);
    assert_non_null(h.c);
    assert_true(tu_wait_readable(ls, 2000));
    int peer = accept4(ls, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    assert_true(peer >= 0);
    tu_track_fd(peer);
    /* The connect's EPOLLOUT: on_connect writes 12 KiB, 4 KiB go at once. */
    assert_int_equal(evl_run_once(h.l, 1000), 1);
    assert_int_equal(connect_pending_after_write, sizeof connect_data - 4096);
    assert_int_equal(evl_pending(h.c), sizeof connect_data - 4096); /* no more this time */
    tu_dbuf got = {0};
    uint64_t t0 = tu_now_ms();
    while (got.len < sizeof connect_data && tu_now_ms() < t0 + 5000) {
        assert_true(evl_run_once(h.l, 5) >= 0);
        assert_false(tu_peer_drain(peer, &got));
    }
    assert_int_equal(got.len, sizeof connect_data);
    assert_int_equal(tu_pattern_mismatch(got.p, got.len, 0, 5), -1);
    tu_dbuf_free(&got);
    evl_free(h.l);
    assert_int_equal(h.closes, 1);
    (void)unlink(path);
    tu_close_fd(peer);
    tu_close_fd(ls);
}

/* Progress on the fast path keeps each connection on its own clock: one
 * with an override but the loop's idle timeout (an extension, no timer of
 * its own) idles out with the loop's sweep; one with its own idle timeout
 * stays off the loop's list, so the sweep never closes it. */
static void test_fast_path_progress_keeps_each_idle_clock(void **state)
{
    (void)state;
    evl_options o;
    evl_options_default(&o);
    o.idle_timeout_ms = 100;
    struct hp a, b;
    hp_open(&a, &hp_handler, &o);
    a.consume = SIZE_MAX;
    assert_int_equal(evl_set_wbuf_max(a.c, 8u << 20), 0); /* an extension, no timer */
    memset(&b, 0, sizeof b);
    b.l = a.l;
    b.consume = SIZE_MAX;
    b.c = tu_adopt_socketpair(a.l, &b, &b.peer);
    assert_int_equal(evl_set_idle_timeout(b.c, 60000), 0);
    uint64_t t0 = tu_now_ms();
    while (tu_now_ms() < t0 + 20) /* the loop's clock moves past the stamps */
        assert_true(evl_run_once(a.l, 5) >= 0);
    tu_peer_sends(a.peer, "x");
    tu_peer_sends(b.peer, "y");
    HP_RUN_UNTIL(&a, a.reads == 1 && b.reads == 1, 2000);
    HP_RUN_UNTIL(&a, a.closes == 1, 2000); /* the loop's sweep */
    assert_int_equal(a.close_reason, EVL_CLOSE_IDLE);
    t0 = tu_now_ms();
    while (tu_now_ms() < t0 + 300)
        assert_true(evl_run_once(a.l, 10) >= 0);
    assert_int_equal(b.closes, 0); /* its own 60 s clock */
    hp_done(&a);
    assert_int_equal(b.closes, 1);
    tu_close_fd(b.peer);
}

/* SIGTERM during evl_run is read from the signalfd and stops the loop (the
 * conformance suite's server stops reached this only in a child process). */
static void raise_term(evl_timer *t, void *arg)
{
    (void)t;
    (void)arg;
    (void)raise(SIGTERM); /* blocked by evl_run: pending, seen by its signalfd */
}

static void stop_anyway(evl_timer *t, void *arg)
{
    (void)t;
    evl_stop(arg); /* the signal did not stop it: end the run, fail below */
}

static void test_sigterm_stops_evl_run(void **state)
{
    (void)state;
    evl_loop *l = evl_new(&hp_handler, NULL, NULL);
    assert_non_null(l);
    evl_timer *t = evl_timer_new(l, raise_term, NULL);
    evl_timer *fallback = evl_timer_new(l, stop_anyway, l);
    assert_non_null(t);
    assert_non_null(fallback);
    assert_int_equal(evl_timer_start(t, 10, 0), 0);
    assert_int_equal(evl_timer_start(fallback, 4000, 0), 0);
    uint64_t t0 = tu_now_ms();
    assert_int_equal(evl_run(l, -1), 0);
    uint64_t took = tu_now_ms() - t0;
    evl_timer_free(t);
    evl_timer_free(fallback);
    evl_free(l);
    assert_true(took < 3000); /* stopped by the signal, not by the fallback */
}

/* One on_read per connection per iteration (fairness), on the buffered
 * path too: new data for a connection whose input waits for re-dispatch is
 * delivered by its event, and the re-dispatch pass of the same iteration
 * leaves it for the next one. */
static void test_one_on_read_per_iteration_on_the_buffered_path(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_handler, NULL);
    h.consume = 1;
    tu_peer_sends(h.peer, "abc");
    assert_true(tu_wait_readable(evl_fd(h.c), 2000));
    assert_int_equal(evl_run_once(h.l, 0), 1); /* fast path: "a"; "bc" waits */
    assert_int_equal(h.reads, 1);
    tu_peer_sends(h.peer, "d");
    assert_true(tu_wait_readable(evl_fd(h.c), 2000));
    assert_int_equal(evl_run_once(h.l, 0), 1); /* read "d" into the buffer: "b" */
    assert_int_equal(h.reads, 2);              /* not again in this iteration */
    assert_true(evl_run_once(h.l, 0) >= 0);
    assert_int_equal(h.reads, 3);
    hp_done(&h);
}

/* With trim_ms at its smallest (1 ms), a close that released a large
 * buffer is followed by a malloc_trim. */
static void test_trim_after_a_large_release_at_one_ms(void **state)
{
    (void)state;
    evl_options o;
    evl_options_default(&o);
    o.trim_ms = 1;
    struct hp h;
    hp_open(&h, &hp_handler, &o);
    h.consume = 0;
    tu_set_rcvbuf(evl_fd(h.c), 1 << 20);
    enum { SIZE = 300 * 1024 };
    static char data[SIZE];
    memset(data, 'r', sizeof data);
    size_t off = 0;
    uint64_t t0 = tu_now_ms();
    struct evl_stats st;
    do { /* the peer sends 300 KiB, the handler keeps it all */
        ssize_t w = off < SIZE ? send(h.peer, data + off, SIZE - off, MSG_DONTWAIT) : 0;
        if (w > 0)
            off += (size_t)w;
        assert_true(evl_run_once(h.l, 5) >= 0);
        evl_stats(h.l, &st);
        assert_true(tu_now_ms() < t0 + 5000);
    } while (st.rbuf_bytes < SIZE);
    (void)evl__buf_released();
    trims = 0;
    evl_abort(h.c);
    HP_RUN_UNTIL(&h, h.closes == 1 && trims > 0, 2000);
    hp_done(&h);
}

/* A closed connection's memory goes back at the end of the iteration that
 * reaped it, not at evl_free: a server that runs for months closes
 * millions. */
static void test_closed_connection_freed_by_the_next_iteration(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_handler, NULL);
    watch_free = h.c;
    watched_freed = false;
    evl_abort(h.c);
    for (int i = 0; i < 3; i++)
        assert_true(evl_run_once(h.l, 0) >= 0);
    assert_int_equal(h.closes, 1);
    assert_true(watched_freed);
    watch_free = NULL;
    hp_done(&h);
}

/* An iteration whose wait a signal interrupted is an iteration all the
 * same: evl_run_once returns 0 and the counter moves by one. */
static void test_interrupted_wait_counts_one_iteration(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_handler, NULL);
    struct evl_stats a, b;
    evl_stats(h.l, &a);
    wait_eintr = 1;
    assert_int_equal(evl_run_once(h.l, 1000), 0);
    assert_int_equal(wait_eintr, 0);
    evl_stats(h.l, &b);
    assert_int_equal(b.iterations, a.iterations + 1);
    hp_done(&h);
}

/* ---- write budget and quantum at their edges ------------------------------- */

/* A loop with one connection whose peer's buffer takes everything sent. */
static void hp_open_budget(struct hp *h, size_t quantum, size_t budget)
{
    evl_options o;
    evl_options_default(&o);
    o.write_quantum = quantum;
    o.write_budget = budget;
    hp_open(h, &hp_handler, &o);
    tu_set_sndbuf(evl_fd(h->c), 1 << 20);
    tu_set_rcvbuf(h->peer, 1 << 20);
}

static int writev2(evl_conn *c, const char *p, size_t n)
{
    struct iovec v[2] = {{.iov_base = (void *)p, .iov_len = n / 2},
                         {.iov_base = (void *)(p + n / 2), .iov_len = n - n / 2}};
    return evl_writev(c, v, 2);
}

/* The iteration's write_budget is what is left of it, less what was sent
 * (and no less than the per-connection floor of 4 KiB): 1000 bytes, then
 * 8000 with 5000 of the 6000 left, of which 3000 wait. */
static void test_write_budget_left_after_a_first_write(void **state)
{
    (void)state;
    static char data[8000];
    memset(data, 'w', sizeof data);
    struct hp h;
    hp_open_budget(&h, 256u << 10, 6000);
    assert_int_equal(writev2(h.c, data, 1000), 0);
    assert_int_equal(evl_pending(h.c), 0);
    assert_int_equal(writev2(h.c, data, 8000), 0);
    assert_int_equal(evl_pending(h.c), 8000 - 5000);
    hp_done(&h);
}

/* write_quantum holds within an iteration whichever path the writes take:
 * one byte, then a quantum's worth (one byte more than is left of it). */
static void test_write_quantum_holds_on_the_fast_path(void **state)
{
    (void)state;
    static char data[4096];
    memset(data, 'q', sizeof data);
    struct hp h;
    hp_open_budget(&h, 4096, 1u << 20);
    assert_true(evl_run_once(h.l, 0) >= 0); /* an iteration this connection has not written in */
    assert_int_equal(evl_write(h.c, data, 1), 0);
    assert_int_equal(evl_write(h.c, data, 4096), 0);
    assert_int_equal(evl_pending(h.c), 1);
    hp_done(&h);

    /* And twice 3000 in one iteration: the second gets what is left. */
    hp_open_budget(&h, 4096, 1u << 20);
    assert_true(evl_run_once(h.l, 0) >= 0);
    assert_int_equal(evl_write(h.c, data, 3000), 0);
    assert_int_equal(evl_write(h.c, data, 3000), 0);
    assert_int_equal(evl_pending(h.c), 3000 - 1096);
    hp_done(&h);
}

/* A direct send the socket took only part of still spends the budget: the
 * next connection's write in the same iteration gets what is left. */
static void test_partial_direct_send_spends_the_budget(void **state)
{
    (void)state;
    enum { SIZE = 64 * 1024 };
    static char data[SIZE];
    memset(data, 'p', sizeof data);
    struct hp a, b;
    hp_open_budget(&a, 256u << 10, SIZE);
    tu_set_sndbuf(evl_fd(a.c), 4096); /* takes part of 64 KiB */
    memset(&b, 0, sizeof b);
    b.l = a.l;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    b.c = evl_adopt(a.l, sv[0]);
    assert_non_null(b.c);
    evl_set_udata(b.c, &b);
    b.peer = sv[1];
    tu_track_fd(b.peer);
    tu_set_sndbuf(evl_fd(b.c), 1 << 20);
    tu_set_rcvbuf(b.peer, 1 << 20);
    assert_int_equal(evl_write(a.c, data, SIZE), 0);
    size_t a_sent = SIZE - evl_pending(a.c);
    assert_true(a_sent > 0 && a_sent < SIZE);
    assert_int_equal(evl_write(b.c, data, SIZE), 0);
    assert_int_equal(evl_pending(b.c), a_sent < SIZE - 4096 ? a_sent : SIZE - 4096);
    hp_done(&a);
    assert_int_equal(b.closes, 1);
    tu_close_fd(b.peer);
}

/* ---- trim ---------------------------------------------------------------- */

/* The trim timer fires after a close that released a small buffer: too
 * little to be worth a malloc_trim. */
static void test_trim_skipped_when_little_was_released(void **state)
{
    (void)state;
    evl_options o;
    evl_options_default(&o);
    o.trim_ms = 1;
    struct hp h;
    hp_open(&h, &hp_handler, &o);
    h.consume = 0;
    tu_peer_sends(h.peer, "small");
    HP_RUN_UNTIL(&h, h.reads == 1, 2000); /* 5 bytes kept: a 4 KiB region */
    (void)evl__buf_released();            /* count from here */
    trims = 0;
    evl_abort(h.c);
    HP_RUN_UNTIL(&h, h.closes == 1, 2000);
    uint64_t t0 = tu_now_ms();
    while (tu_now_ms() < t0 + 50) /* the trim timer (1 ms) fires in here */
        assert_true(evl_run_once(h.l, 5) >= 0);
    assert_int_equal(trims, 0);
    hp_done(&h);
}

/* A killed connection keeps its buffers until the reap: evl_stats counts
 * them ("all connections, now") as evl_pending does. The kill queue reuses
 * the list link, so a walk of the open and closing lists alone missed them
 * (found by fuzz_loop_fi: an epoll_ctl failure aborted a connection between
 * iterations). */
static void test_stats_count_the_output_of_a_killed_connection(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_handler, NULL);
    hp_queue_output(&h, (size_t)128 * 1024);
    evl_abort(h.c); /* outside a callback: on_close at the next reap */
    assert_int_equal(h.closes, 0);
    struct evl_stats st;
    evl_stats(h.l, &st);
    assert_int_equal(st.wbuf_bytes, evl_pending(h.c));
    assert_true(evl_run_once(h.l, 0) >= 0);
    assert_int_equal(h.closes, 1);
    evl_stats(h.l, &st);
    assert_int_equal(st.wbuf_bytes, 0);
    hp_done(&h);
}

/* A graceful close whose peer sent its EOF (read and discarded while
 * flushing) and then went away: the hang-up is not read again as input,
 * the flush fails, and the connection ends once; its reason stays the
 * first cause, the local close. */
static void test_closing_connection_after_peer_eof_then_hangup(void **state)
{
    (void)state;
    struct hp h;
    hp_open(&h, &hp_handler, NULL);
    hp_queue_output(&h, (size_t)64 * 1024);
    evl_close(h.c); /* flushing: the peer does not read */
    assert_int_equal(shutdown(h.peer, SHUT_WR), 0);
    for (int i = 0; i < 3; i++) /* the EOF read and discarded */
        assert_true(evl_run_once(h.l, 10) >= 0);
    assert_int_equal(h.closes, 0);
    assert_true(evl_peer_eof(h.c));
    tu_close_fd(h.peer); /* hang-up, with output still pending */
    h.peer = -1;
    HP_RUN_UNTIL(&h, h.closes == 1, 2000);
    assert_int_equal(h.close_reason, EVL_CLOSE_LOCAL);
    evl_free(h.l);
}

/* Reads the general path makes (not the fast one) are progress too, so a
 * peer that keeps sending is never idle-closed: input that waits in the
 * connection's buffer for the rest of its message (consume 0), and input
 * taken whole by a connection the fast path leaves alone (a handler set
 * through the 1.1 entry: consume all). */
static void buffered_reads_keep_the_idle_clock(size_t consume, bool old_entry)
{
    evl_options o = tu_opts();
    o.idle_timeout_ms = 60;
    struct hp h;
    hp_open(&h, &hp_handler, &o);
    if (old_entry)
        (evl_set_handler)(h.c, &hp_handler);
    h.consume = consume;
    uint64_t t0 = tu_now_ms();
    while (tu_now_ms() < t0 + 300) { /* 5 idle timeouts, a byte every ~10 ms */
        tu_peer_sends(h.peer, "z");
        uint64_t t1 = tu_now_ms();
        while (tu_now_ms() < t1 + 10)
            assert_true(evl_run_once(h.l, 5) >= 0);
    }
    assert_int_equal(h.closes, 0);
    assert_true(h.reads >= 2);
    HP_RUN_UNTIL(&h, h.closes == 1, 2000); /* silence: now it idles out */
    assert_int_equal(h.close_reason, EVL_CLOSE_IDLE);
    evl_free(h.l);
    tu_close_fd(h.peer);
}

static void test_buffered_reads_keep_the_idle_clock(void **state)
{
    (void)state;
    buffered_reads_keep_the_idle_clock(0, false);
    buffered_reads_keep_the_idle_clock(SIZE_MAX, true);
}

/* A process whose stdin is closed: the loop's first fd (its epoll fd) is
 * then fd 0, which is a valid fd (a daemon that closed its stdio). */
static void test_loop_on_fd_0(void **state)
{
    (void)state;
    int saved = dup(0);
    assert_true(saved >= 0);
    assert_int_equal(close(0), 0);
    evl_loop *l = evl_new(&hp_handler, NULL, NULL);
    int err = errno;
    int fd0_taken = fcntl(0, F_GETFD) >= 0;
    if (l) {
        assert_int_equal(evl_wakeup(l), 0); /* the eventfd works */
        assert_true(evl_run_once(l, 0) >= 0);
        evl_free(l);
    }
    if (fcntl(0, F_GETFD) >= 0)
        close(0);
    assert_int_equal(dup2(saved, 0), 0);
    close(saved);
    if (!l)
        TU_FAIL("evl_new with fd 0 free: NULL, errno %d", err);
    assert_true(fd0_taken);
}

static void far_timer_fn(evl_timer *t, void *arg)
{
    (void)t;
    (void)arg;
}

/* A timer further away than an int's milliseconds (30 days): a wait with
 * no bound of its own (-1) waits INT_MAX ms and then looks again, never
 * forever (-1) and never a truncated time; a caller's bound still wins. */
static void test_wait_for_a_timer_beyond_int_max_ms(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.tick_ms = 0; /* no nearer deadline of the loop's own */
    o.idle_timeout_ms = 0;
    o.trim_ms = 0;
    struct hp h;
    hp_open(&h, &hp_handler, &o);
    evl_timer *t = evl_timer_new(h.l, far_timer_fn, NULL);
    assert_non_null(t);
    assert_int_equal(evl_timer_start(t, 30ull * 24 * 3600 * 1000, 0), 0);
    h.consume = SIZE_MAX;
    tu_peer_sends(h.peer, "x"); /* the wait returns at once for it */
    assert_true(evl_run_once(h.l, -1) >= 0);
    assert_int_equal(last_wait_timeout, INT_MAX);
    assert_int_equal(h.reads, 1);
    assert_true(evl_run_once(h.l, 5) >= 0);
    assert_int_equal(last_wait_timeout, 5);
    evl_timer_free(t);
    hp_done(&h);
}

int main(void)
{
    tu_init_process();
    const struct CMUnitTest tests[] = {
        TU_TEST(test_override_without_memory_fails_cleanly),
        TU_TEST(test_connect_extension_without_memory),
        TU_TEST(test_interest_queue_without_memory_applies_at_once),
        TU_TEST(test_unconsumed_input_without_memory_closes_nomem),
        TU_TEST(test_buf_reserve_beyond_size_max),
        TU_TEST(test_eof_after_release_is_reported_from_the_loop),
        TU_TEST(test_eof_after_release_does_not_repeat_declined_input),
        TU_TEST(test_on_eof_may_close),
        TU_TEST(test_on_eof_may_wake_for_the_input_left),
        TU_TEST(test_overrides_on_closing_and_killed_connections),
        TU_TEST(test_own_idle_timeout_already_past),
        TU_TEST(test_free_closes_custom_list_adopted_in_on_close),
        TU_TEST(test_trim_skipped_when_little_was_released),
        TU_TEST(test_write_interrupted_by_a_signal_is_retried),
        TU_TEST(test_redispatch_of_input_consumed_meanwhile),
        TU_TEST(test_interest_queue_grows_past_its_first_size),
        TU_TEST(test_flush_that_sends_nothing_keeps_the_output),
        TU_TEST(test_write_from_on_connect_beyond_the_quantum),
        TU_TEST(test_fast_path_progress_keeps_each_idle_clock),
        TU_TEST(test_sigterm_stops_evl_run),
        TU_TEST(test_one_on_read_per_iteration_on_the_buffered_path),
        TU_TEST(test_write_budget_left_after_a_first_write),
        TU_TEST(test_write_quantum_holds_on_the_fast_path),
        TU_TEST(test_partial_direct_send_spends_the_budget),
        TU_TEST(test_trim_after_a_large_release_at_one_ms),
        TU_TEST(test_closed_connection_freed_by_the_next_iteration),
        TU_TEST(test_interrupted_wait_counts_one_iteration),
        TU_TEST(test_stats_count_the_output_of_a_killed_connection),
        TU_TEST(test_wait_for_a_timer_beyond_int_max_ms),
        TU_TEST(test_closing_connection_after_peer_eof_then_hangup),
        TU_TEST(test_buffered_reads_keep_the_idle_clock),
        TU_TEST(test_loop_on_fd_0),
    };
    return cmocka_run_group_tests_name("test_hotpath", tests, NULL, NULL);
}
