/*
 * Shared helpers of the unit tests: a recording handler, socket pairs whose
 * far end the test plays by hand, and bounded ways to drive the loop.
 *
 * The tests are written against lib/evloop.h (and lib/buf.h), never against
 * the implementation: everything observed here goes through the public API,
 * real sockets, or the kernel.
 *
 * Rules every test follows:
 *  - Every wait is bounded (TU_RUN_UNTIL, tu_peer_collect...): a test that
 *    would hang fails with the condition it was waiting for instead.
 *  - Bounds are generous (seconds where milliseconds are expected), because
 *    the tests run under ASan, under valgrind, and on a shared 2-core machine.
 *  - Callbacks never assert (a longjmp out of the library would leave the
 *    loop half-updated); they record the first broken check in s->err, and
 *    tu_step fails the test with it right after the evl_run_once that saw it.
 */
#ifndef EVL_TESTUTIL_H
#define EVL_TESTUTIL_H

/* cmocka needs these before its header */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <sys/types.h>

#include "evloop.h"

#define TU_MAX_RECS 64

/* A growable byte string (what a connection or a peer received). Its memory
 * is also registered with the teardown, so a test that fails half-way does
 * not add a leak report to its failure. */
typedef struct tu_dbuf {
    char *p;
    size_t len, cap;
} tu_dbuf;

void tu_dbuf_add(tu_dbuf *d, const void *p, size_t n);
void tu_dbuf_free(tu_dbuf *d);

/* What happened to one connection; its udata points here. */
typedef struct tu_rec {
    evl_conn *c;                /* NULL once on_close ran */
    int fd;                     /* the connection's fd (owned by the loop) */
    int peer;                   /* the test's end of the socket, or -1 */
    int reads;                  /* on_read calls */
    int closes;                 /* on_close calls: must end at exactly 1 */
    int drains;                 /* on_drain calls */
    size_t max_view;            /* most input shown by one on_read */
    size_t max_drain_pending;   /* largest evl_pending seen inside on_drain */
    bool eof_at_close;          /* evl_peer_eof inside on_close */
    int close_write_ret;        /* evl_write inside on_close: return */
    int close_write_errno;      /*   and errno */
    uint64_t read_step;         /* s->steps at the last on_read */
    uint64_t close_step;        /* s->steps when on_close ran */
    tu_dbuf in;                 /* input the default handler consumed */
    long user;                  /* free for the test */
} tu_rec;

/* The default on_read behaviour. */
enum tu_mode {
    TU_HOLD,      /* consume nothing */
    TU_SINK,      /* consume everything, keep it in rec->in */
    TU_LINE,      /* consume one '\n'-terminated line per call (fairness) */
    TU_LINE_ECHO, /* TU_LINE, and write the line back */
    TU_ECHO       /* consume everything and write it back */
};

typedef struct tu_state tu_state;
struct tu_state {
    evl_loop *l;
    enum tu_mode mode;
    tu_rec recs[TU_MAX_RECS];
    int nrecs;
    int accepts;       /* on_accept calls */
    int reads;         /* on_read calls, all connections */
    int closes;        /* on_close calls, all connections */
    int drains;        /* on_drain calls, all connections */
    int ticks;         /* on_tick calls */
    int fd_events;     /* on_fd calls */
    int fd_eofs;       /* extra fds the default on_fd saw at EOF (and removed) */
    tu_dbuf fd_in;     /* what the default on_fd read */
    bool reject_all;   /* on_accept returns false */
    bool write_in_close; /* on_close tries evl_write (must fail with EPIPE) */
    uint64_t steps;    /* tu_step calls: the "iteration" callbacks ran in */
    /* Hooks: when set, called instead of the default behaviour. */
    void (*read_hook)(tu_state *s, tu_rec *r);
    void (*drain_hook)(tu_state *s, tu_rec *r);
    void (*close_hook)(tu_state *s, tu_rec *r);   /* before r->c is cleared */
    void (*accept_hook)(tu_state *s, tu_rec *r);
    void (*tick_hook)(tu_state *s);
    void (*fd_hook)(tu_state *s, int fd);
    void *user;        /* free for the test */
    size_t size;       /* free for the test (a size its hooks use) */
    char err[512];     /* first check that failed inside a callback */
};

/* Fails the test with a formatted message. Unlike cmocka's fail_msg, the
 * message lands in the JUnit XML (and so in the runner's summary). */
_Noreturn void tu_fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define TU_FAIL(...) tu_fail_at(__FILE__, __LINE__, __VA_ARGS__)

/* Record a broken expectation from inside a callback (see the rules above). */
void tu_cb_fail(tu_state *s, const char *file, int line, const char *what);
#define TU_CB_CHECK(s, cond)                                                   \
    do {                                                                       \
        if (!(cond))                                                           \
            tu_cb_fail((s), __FILE__, __LINE__, #cond);                        \
    } while (0)

/* Process set-up, first thing in main(): SIGPIPE back to its default action
 * and unblocked (the write tests prove that the library never raises it, so
 * the test process must be one that a SIGPIPE would kill), and TU_FILTER:
 * `TU_FILTER='*fault8*' build/asan/test/test_write` runs only those tests. */
void tu_init_process(void);

/* cmocka fixtures: a watchdog alarm, and cleanup of whatever a failed test
 * left behind (its loop and the peer fds), so one failure does not cascade
 * into the next test or into a leak report. */
int tu_setup(void **state);
int tu_teardown(void **state);
#define TU_TEST(f) cmocka_unit_test_setup_teardown(f, tu_setup, tu_teardown)

/* ---- the loop under test ---------------------------------------------- */

evl_options tu_opts(void); /* evl_options_default() */
tu_state *tu_new(const evl_options *o, enum tu_mode mode);
/* evl_free, then: every connection recorded got on_close exactly once, the
 * counters agree, no callback check failed. Frees the state, closes peers. */
void tu_finish(tu_state *s);

tu_rec *tu_rec_of(evl_conn *c);
/* Records c (its udata points to the record); NULL when full. Safe inside a
 * callback (no assert). */
tu_rec *tu_rec_new(tu_state *s, evl_conn *c, int peer);
/* fd becomes a connection of s->l; peer is the test's end (or -1). */
tu_rec *tu_adopt(tu_state *s, int fd, int peer);
/* A socketpair(AF_UNIX, SOCK_STREAM): one end adopted, the other the peer
 * (non-blocking, closed by tu_finish unless tu_close_fd'd first). */
tu_rec *tu_pair(tu_state *s);
/* One end of a new socketpair adopted into l with udata; the other end, the
 * test's peer (tracked: closed by the teardown), in *peer. For tests that
 * drive a loop of their own handler, without a tu_state. */
evl_conn *tu_adopt_socketpair(evl_loop *l, void *udata, int *peer);
/* The same over loopback TCP. */
tu_rec *tu_tcp(tu_state *s);
/* A connected loopback TCP pair, both blocking, neither tracked. */
void tu_tcp_pair(int *server, int *client);
/* A non-blocking, close-on-exec TCP socket connected to 127.0.0.1:port. */
int tu_tcp_connect(int port);

void tu_default_read(tu_state *s, tu_rec *r);
struct evl_stats tu_stats(const tu_state *s);
/* conns == accepted - closed, and rbuf/wbuf totals within what is held. */
void tu_check_stats(const tu_state *s);

/* One evl_run_once(s->l, ms); fails the test on -1 or on a callback check. */
int tu_step(tu_state *s, int ms);
/* Drive the loop for ms of wall time. */
void tu_run_for(tu_state *s, int ms);
/* Drive the loop until cond holds; fail after max_ms. */
#define TU_RUN_UNTIL(s, cond, max_ms)                                          \
    do {                                                                       \
        uint64_t tu_deadline_ = tu_now_ms() + (uint64_t)(max_ms);              \
        while (!(cond)) {                                                      \
            if (tu_now_ms() > tu_deadline_)                                    \
                TU_FAIL("not true after %d ms: %s", (int)(max_ms), #cond);    \
            tu_step((s), 10);                                                  \
        }                                                                      \
    } while (0)

/* Drives the loop for window_ms in evl_run_once(s->l, 10) calls and fails
 * the test ("what") if it spun, judged from outside the library: by how many
 * of those calls returned (each waits ~10 ms when there is nothing to do:
 * about window/10; a spin returns at once, thousands of times) and by this
 * process's CPU time (idle: a few ms; a spin: most of the window), never by
 * the library's own iteration counter. */
void tu_assert_no_spin(tu_state *s, int window_ms, const char *what);

/* ---- the peer ------------------------------------------------------------ */

void tu_track_fd(int fd);   /* closed by the teardown unless closed before */
void tu_close_fd(int fd);   /* close a tracked fd now */
void tu_set_nonblock(int fd);
void tu_set_sndbuf(int fd, int bytes);
void tu_set_rcvbuf(int fd, int bytes);
void tu_set_linger0(int fd); /* close() then sends RST */

/* Writes all of p at once (it must fit in the socket buffer). */
void tu_peer_send(int fd, const void *p, size_t n);
void tu_peer_sends(int fd, const char *str);
/* Writes pattern bytes (seed) until the socket is full; returns how many. */
size_t tu_peer_fill(int fd, uint32_t seed);
/* Non-blocking read: >0 bytes, 0 EOF, -1 with errno (EAGAIN: nothing now). */
ssize_t tu_peer_read(int fd, void *buf, size_t cap);
/* Reads everything there is now (no loop run) into out; true at EOF. */
bool tu_peer_drain(int fd, tu_dbuf *out);
/* Drives the loop and reads the peer until want bytes arrived in out (or EOF,
 * or an error such as ECONNRESET), failing after max_ms. Returns true at EOF
 * or error (*err gets the errno, 0 for a clean EOF, if err is not NULL). */
bool tu_peer_collect(tu_state *s, int fd, tu_dbuf *out, size_t want, int max_ms, int *err);
/* Drives the loop until exactly str arrived (more is a failure). */
void tu_peer_expect(tu_state *s, int fd, const char *str, int max_ms);
/* Drives the loop until the peer reads a clean EOF; any byte first fails. */
void tu_peer_expect_eof(tu_state *s, int fd, int max_ms);
/* Drives the loop until the peer's socket is closed by the other side: EOF or
 * a reset (an abort may reset), discarding bytes. Returns the errno (0: EOF). */
int tu_peer_expect_closed(tu_state *s, int fd, int max_ms);
/* Waits (without running any loop) until fd is readable; false on timeout. */
bool tu_wait_readable(int fd, int max_ms);

/* ---- data and time -------------------------------------------------------- */

/* The BLAST pattern of docs/PROTOCOL.md §4: byte i = ((i ^ i>>8 ^ i>>16) * 29 + seed). */
static inline unsigned char tu_pat(uint64_t i, uint32_t seed)
{
    return (unsigned char)(((i ^ (i >> 8) ^ (i >> 16)) * 29 + seed) & 0xff);
}
void tu_pattern(void *buf, size_t n, uint64_t offset, uint32_t seed);
/* Index of the first byte that differs from the pattern, or -1. */
long tu_pattern_mismatch(const void *buf, size_t n, uint64_t offset, uint32_t seed);

uint64_t tu_now_ms(void);     /* CLOCK_MONOTONIC */
double tu_cpu_ms(void);       /* this process's CPU time */

#endif /* EVL_TESTUTIL_H */
