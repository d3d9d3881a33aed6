/*
 * evloop — a single-threaded, level-triggered epoll event loop whose one
 * promise is that no write ever blocks.
 *
 * Every write is: try the socket once (only when nothing is queued, so order
 * is kept), buffer the rest, drain on EPOLLOUT. A blocking write in a
 * single-threaded loop is a deadlock; this library never makes one, and never
 * raises SIGPIPE (all sends use MSG_NOSIGNAL).
 *
 * Linux only. Not thread-safe: one loop belongs to one thread, and every
 * evl_ function on a loop or its connections must be called from that thread.
 *
 * Ownership and lifetime, in one place:
 *  - A connection (evl_conn) is created by the loop (accept or evl_adopt) and
 *    owned by it. It stays valid until its on_close callback returns; after
 *    that the pointer must not be used.
 *  - Callbacks never run re-entrantly from inside the call that caused them:
 *    evl_abort()/evl_close()/a failing evl_write() inside a callback only mark
 *    the connection; its on_close runs after the current callback returns.
 *  - The loop owns the fds of its connections and closes them. It does not own
 *    listen fds (evl_run / evl_add_listener) or extra fds (evl_add_fd): the
 *    caller closes those.
 *
 * Errors: functions that can fail return -1 (or NULL) and set errno.
 */
#ifndef EVLOOP_H
#define EVLOOP_H

/* The version, defined here only (the Makefile derives the soname
 * libevloop.so.MAJOR from it). MAJOR changes when the ABI breaks; MINOR when
 * something is added (structs grow only at their end: docs/ABI.md); PATCH
 * for fixes. MINOR and PATCH stay below 100. */
#define EVL_VERSION_MAJOR 1
#define EVL_VERSION_MINOR 2
#define EVL_VERSION_PATCH 0
#define EVL_VERSION_NUMBER \
    (EVL_VERSION_MAJOR * 10000 + EVL_VERSION_MINOR * 100 + EVL_VERSION_PATCH)

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evl_loop evl_loop;
typedef struct evl_conn evl_conn;
typedef struct evl_timer evl_timer;

/* errno of a write refused because it would pass wbuf_max; the connection is
 * then closed and counted in overflow_closed. */
#define EVL_EOVERFLOW ENOBUFS

/* Callbacks. Any may be NULL (on_accept NULL accepts everything; with
 * neither on_read nor on_data, input is never consumed, so it ends in an
 * rbuf_max close). */
typedef struct evl_handler {
    /* A connection was accepted. Return false to reject it: the loop closes
     * the fd at once and on_close is NOT called. Not called for evl_adopt. */
    bool (*on_accept)(evl_conn *c);

    /* Input is available: evl_data(c, &len) shows all unconsumed input;
     * evl_consume(c, n) drops what the handler used. Handle at most one logical
     * message per call (fairness): if input remains and this call consumed
     * something, the loop calls on_read again in its next iteration without
     * waiting for new socket data (an iteration makes at most max_events such
     * calls, first come first served: with more connections waiting, the
     * rest are served in the iterations after). If it consumed nothing, the loop waits for
     * more data (a partial message); if the input is already at rbuf_max, the
     * connection is closed as overflowed. The data pointer is valid only until
     * on_read returns. */
    void (*on_read)(evl_conn *c);

    /* The write buffer drained to wbuf_low or below (having been above it).
     * Streaming producers write their next chunks here: keep writing until
     * evl_pending(c) > wbuf_low (or the stream ends), and the loop calls
     * on_drain again when the peer has read enough. Never called on a
     * connection that is closing. */
    void (*on_drain)(evl_conn *c);

    /* Exactly once per accepted or adopted connection, whatever the cause
     * (peer EOF, error, timeout, overflow, evl_close, evl_abort, evl_free),
     * just before its fd is closed. c and its udata are still valid here;
     * writes fail with EPIPE. Free the caller's per-connection state here. */
    void (*on_close)(evl_conn *c);

    /* An fd registered with evl_add_fd is readable, hung up or in error. It
     * is level-triggered: read until EAGAIN (or remove the fd), or it is
     * reported again in the next iteration. */
    void (*on_fd)(evl_loop *l, int fd);

    /* Every tick_ms, measured by the clock and not by idle time, so it runs
     * under full load too (a loop that is never idle still ticks). */
    void (*on_tick)(evl_loop *l);

    /* A stop began (evl_stop, SIGTERM, SIGINT), once per evl_run. The
     * listeners are already removed from the loop: close the listen fds
     * here, so a client that comes now is refused at once instead of waiting
     * in the backlog until the process exits. The connections are still
     * open: what is written here is flushed before they are closed. */
    void (*on_stop)(evl_loop *l);

    /* evl_wakeup was called (from any thread) since the last call: runs on
     * the loop's thread, once per iteration however many wakeups came. */
    void (*on_wakeup)(evl_loop *l);

    /* The connect of an evl_connect connection finished: err is 0 (the
     * connection is now like an accepted one), or the errno of the failure
     * (ETIMEDOUT after timeout_ms); on_close follows a failure. */
    void (*on_connect)(evl_conn *c, int err);

    /* The peer's EOF (a clean one: a reset goes straight to on_close), once
     * every byte before it was delivered to on_read. Called once, from the
     * loop. When it returns, the connection closes as evl_peer_eof says,
     * unless the handler holds it (evl_hold), closes it, or still has
     * output pending: a proxy holds both sides and passes the half-close on
     * with evl_shutdown. */
    void (*on_eof)(evl_conn *c);

    /* on_read with the input passed in (since 1.2): when set, it is called
     * instead of on_read, with all unconsumed input (data, len > 0), and
     * returns how many of those bytes it used; the loop then consumes them
     * as evl_consume(c, n) would (more than len counts as len). Everything
     * on_read says holds: one logical message per call, the re-dispatch and
     * overflow rules, data valid only until it returns, evl_data and
     * evl_consume usable inside (the returned n is consumed after them). It
     * saves a handler the evl_data and evl_consume calls on every read. */
    size_t (*on_data)(evl_conn *c, const char *data, size_t len);
} evl_handler;

/* evl_handler, evl_options and struct evl_stats grow only at their end, and
 * the functions that take them are macros passing the caller's sizeof: a
 * program built against an older header keeps working (docs/ABI.md). */

/* Why a connection closed: evl_close_reason() in on_close. The first cause
 * wins, except that a graceful close whose deadline drops pending bytes
 * becomes EVL_CLOSE_TIMEOUT. */
enum evl_close_reason {
    EVL_CLOSE_OPEN = 0,   /* not closed (yet) */
    EVL_CLOSE_EOF,        /* the peer's EOF, once everything was delivered */
    EVL_CLOSE_RESET,      /* the socket failed (ECONNRESET, EPIPE...) */
    EVL_CLOSE_IDLE,       /* idle_timeout_ms */
    EVL_CLOSE_OVERFLOW,   /* rbuf_max or wbuf_max */
    EVL_CLOSE_TIMEOUT,    /* close_timeout_ms passed with bytes pending */
    EVL_CLOSE_LOCAL,      /* evl_close, completed */
    EVL_CLOSE_ABORT,      /* evl_abort */
    EVL_CLOSE_STOP,       /* the loop stopped or was freed */
    EVL_CLOSE_NOMEM,      /* a buffer could not grow */
    EVL_CLOSE_CONNECT     /* evl_connect failed or timed out */
};

/* Limits and timers. Start from evl_options_default() and change fields; a
 * zeroed struct is NOT the defaults (0 means "off" for several fields).
 * Passing NULL to evl_new uses the defaults. */
typedef struct evl_options {
    int tick_ms;            /* on_tick period; 0 = no tick. Default 5000. */
    size_t rbuf_max;        /* cap on one connection's unconsumed input: reading
                               stops there, and if on_read then consumes
                               nothing (a message larger than the cap) the
                               connection is closed as overflowed. Default
                               1 MiB. */
    size_t wbuf_low;        /* resume reading and call on_drain at or below
                               this many pending bytes. Default 64 KiB. */
    size_t wbuf_high;       /* stop reading (and serving buffered input) at or
                               above this many pending bytes. Default 1 MiB. */
    size_t wbuf_max;        /* hard cap on pending bytes: a write past it fails
                               with EVL_EOVERFLOW and closes the connection.
                               0 = no cap (default). */
    int idle_timeout_ms;    /* no byte read or written for this long: closed
                               (idle_closed). 0 = off (default). Written
                               means taken by the kernel: output queued for
                               a peer that does not read is no progress, so
                               a stalled reader idles out. An idle close
                               drops pending output, and then resets the
                               peer (see evl_abort). */
    int close_timeout_ms;   /* evl_close / shutdown: flush for at most this
                               long, then abort. Default 5000. */
    unsigned max_conns;     /* accept and close at once beyond this many
                               connections (rejected). 0 = no cap (default). */
    size_t write_quantum;   /* max bytes sent to one connection per loop
                               iteration, by EPOLLOUT flushes and evl_write's
                               direct sends together (fairness: a fast reader
                               cannot hold the loop). Once spent, evl_write
                               queues. Default 256 KiB. */
    int max_events;         /* epoll_wait batch size. Default 256. */
    /* Added in 1.1 (docs/ABI.md: the struct grows only here). */
    size_t write_budget;    /* max bytes sent per loop iteration, all
                               connections together (EPOLLOUT flushes and
                               direct sends). Once spent, writes queue and
                               flushes wait for the next iteration, so no
                               iteration holds the loop for long and a probe
                               beside a thousand writers is answered within
                               milliseconds (docs/DESIGN.md §7). Every
                               connection may still send its first 4 KiB
                               of an iteration (a reply), so the ones epoll
                               lists after the bulk writers are not starved.
                               Default 1 MiB; must be > 0. */
    int sndbuf;             /* SO_SNDBUF of accepted and connected sockets, in
                               bytes (Linux doubles it): bounds the kernel
                               memory a peer that does not read can pin.
                               0 = the kernel's (autotuned up to tcp_wmem's
                               max, 4 MiB: 2000 slow readers then pinned
                               0.9 GB and pushed the host past tcp_mem).
                               Default 64 KiB, from measurement
                               (docs/DESIGN.md §7); a server streaming bulk
                               data over long round trips wants more, or 0. */
    int trim_ms;            /* give memory back: this long after buffers
                               released at least 256 KiB, ask malloc to
                               return its free pages to the system
                               (malloc_trim, glibc; elsewhere nothing).
                               Without it a burst of slow readers leaves
                               the server's RSS at its peak. 0 = never.
                               Default 1000. */
} evl_options;

/* Counters, all since evl_new. conns == accepted - closed at every moment.
 * A struct tag only: evl_stats is the function that fills it. */
struct evl_stats {
    uint64_t conns;           /* open connections now */
    uint64_t accepted;        /* entered the loop: accepted (and kept by
                                 on_accept) or adopted */
    uint64_t closed;          /* left the loop (on_close was called) */
    uint64_t rejected;        /* refused at accept: max_conns or on_accept */
    uint64_t emfile;          /* accept failures for lack of fds/memory
                                 (EMFILE, ENFILE, ENOBUFS, ENOMEM) */
    uint64_t overflow_closed; /* closed for rbuf_max or wbuf_max */
    uint64_t idle_closed;     /* closed by idle_timeout_ms */
    uint64_t close_timeouts;  /* graceful closes aborted by close_timeout_ms
                                 with bytes still pending */
    uint64_t wbuf_bytes;      /* bytes pending, all connections, now */
    uint64_t wbuf_peak;       /* most bytes ever pending on one connection */
    uint64_t rbuf_bytes;      /* unconsumed input held, all connections, now */
    uint64_t ticks;           /* on_tick calls */
    uint64_t iterations;      /* epoll_wait calls */
    uint64_t accept_errors;   /* accept failures other than a lack of fds
                                 or memory (see evl_add_listener) */
};

/* ---- loop ------------------------------------------------------------- */

/* Fills *o with the defaults. */
#define evl_options_default(o) evl_options_default_sized((o), sizeof(evl_options))
void evl_options_default_sized(evl_options *o, size_t osize);

/* A new loop. The handler struct is copied; udata is returned by
 * evl_loop_udata. NULL with errno EINVAL for inconsistent options
 * (wbuf_low > wbuf_high, a zero rbuf_max/write_quantum/max_events, a
 * wbuf_max below wbuf_high, negative times), or ENOMEM/EMFILE. */
#define evl_new(h, udata, o) \
    evl_new_sized((h), sizeof(evl_handler), (udata), (o), sizeof(evl_options))
evl_loop *evl_new_sized(const evl_handler *h, size_t hsize, void *udata,
                        const evl_options *o, size_t osize);

/* Closes every connection now (on_close for each, also for one that an
 * on_close adopts meanwhile), forgets extra fds and listeners without
 * closing them, frees the loop. Not from a callback of l (nor from an
 * on_close during evl_free): there it frees nothing and sets errno EBUSY. */
void evl_free(evl_loop *l);

/* Runs until SIGTERM, SIGINT or evl_stop, then stops gracefully: listeners are
 * removed, on_stop runs, every connection (also one adopted during the stop)
 * gets evl_close (flush, then close, aborted after close_timeout_ms), and it
 * returns 0 once all are closed. listen_fd (a listening socket, or -1 for
 * none) is added as by evl_add_listener. SIGTERM/SIGINT are blocked in the
 * calling thread while it runs and read through a signalfd; the mask is
 * restored on return. Children forked from a callback inherit that block
 * across exec (and would ignore SIGTERM): give them evl_child_sigmask().
 * Other signals that interrupt epoll_wait are ignored. Returns -1 with errno
 * on a fatal error (signalfd or epoll failing); the listener it added is
 * removed again and the mask restored, so a retry starts from the same
 * state. Returns -1 with EBUSY, doing nothing, when called from a callback
 * of l (it is running already). */
int evl_run(evl_loop *l, int listen_fd);

/* The signal mask a child spawned from a callback should run with: the
 * calling thread's mask from before evl_run blocked SIGTERM/SIGINT (outside
 * evl_run, the current mask). After fork(), in the child:
 * sigprocmask(SIG_SETMASK, &set, NULL); with posix_spawn:
 * posix_spawnattr_setsigmask() and POSIX_SPAWN_SETSIGMASK. Async-signal-safe
 * (it copies a saved set), so it may be called between fork and exec. */
void evl_child_sigmask(const evl_loop *l, sigset_t *set);

/* One iteration: waits up to timeout_ms (-1: until an event; timers and
 * pending re-dispatch shorten the wait), handles the batch, runs due timers,
 * and re-dispatches buffered input. Returns the number of epoll events
 * handled (0 on timeout or EINTR), or -1 with errno on a fatal error, or
 * with EBUSY, doing nothing, when called from a callback of l. */
int evl_run_once(evl_loop *l, int timeout_ms);

/* Asks evl_run to stop gracefully (as for SIGTERM) after this iteration. */
void evl_stop(evl_loop *l);

/* True from a stop request (evl_stop, SIGTERM, SIGINT) until evl_run
 * returns; evl_run clears it, so the same loop can be run again. */
bool evl_stopping(const evl_loop *l);

/* Accept connections from a listening socket (several may be added: TCP and
 * unix side by side). The fd is set O_NONBLOCK (the loop never blocks, and a
 * socket handed over by systemd is blocking unless NonBlocking=yes); the
 * caller keeps ownership of it. Accept failures never spin the loop:
 * EMFILE/ENFILE/ENOBUFS/ENOMEM pause accepting for 100 ms (counted in
 * emfile); EINVAL, EBADF, ENOTSOCK or EOPNOTSUPP (the socket was shut down or
 * is not listening) remove this listener from the loop, without closing it;
 * any other error (EPERM from a security module, say) pauses accepting for
 * 100 ms. The last two are counted in accept_errors. */
int evl_add_listener(evl_loop *l, int listen_fd);
/* Stops accepting from listen_fd (ENOENT if it is not a listener of this
 * loop). Does not close it: close it at once if no one else accepts from it,
 * or clients keep completing handshakes into its backlog. An accept event
 * already fetched for it in the current batch is dropped. */
int evl_remove_listener(evl_loop *l, int listen_fd);

/* Registers fd for EPOLLIN (on_fd). The fd is set O_NONBLOCK. EEXIST if the
 * fd is already known to the loop. The caller keeps ownership of the fd. */
int evl_add_fd(evl_loop *l, int fd);
/* Unregisters fd (ENOENT if it is not an extra fd). Does not close it. An
 * event already fetched for it in the current batch is dropped. */
int evl_remove_fd(evl_loop *l, int fd);

/* The connection on fd, or NULL. O(1). */
evl_conn *evl_conn_of(const evl_loop *l, int fd);

/* An already-connected socket becomes a connection (tests, socketpairs,
 * inherited sockets). It is set O_NONBLOCK; on_accept is not called, on_close
 * will be. NULL with errno: ENOTSOCK (only sockets: sends use MSG_NOSIGNAL),
 * EEXIST (fd already in the loop), ENOMEM. On failure the fd is not closed. */
evl_conn *evl_adopt(evl_loop *l, int fd);

/* Calls fn for every open connection (not closing, not closed), in no
 * particular order. fn may write to, close or abort any connection;
 * connections it adds (evl_adopt) may or may not be visited. */
void evl_foreach_conn(evl_loop *l, void (*fn)(evl_conn *c, void *arg), void *arg);

/* The one thread-safe entry point (and async-signal-safe): makes the loop's
 * thread run on_wakeup in its next iteration. Wakeups coalesce. 0, or -1
 * with errno from write(2) on the loop's eventfd (EAGAIN never: a full
 * counter already means "woken"). */
int evl_wakeup(evl_loop *l);

/* Fills *st with the loop's counters. */
#define evl_stats(l, st) evl_stats_sized((l), (st), sizeof(struct evl_stats))
void evl_stats_sized(const evl_loop *l, struct evl_stats *st, size_t stsize);

void *evl_loop_udata(const evl_loop *l);
/* The loop's options: the library's struct, at least as large as the
 * caller's (a program must not run on a library older than its header:
 * compare evl_version() with EVL_VERSION_NUMBER). */
const evl_options *evl_get_options(const evl_loop *l);

/* EVL_VERSION_NUMBER of the library running, not of the header compiled. */
int evl_version(void);

/* ---- listen helpers ----------------------------------------------------- */

#define EVL_LISTEN_REUSEPORT 0x1 /* SO_REUSEPORT: processes share the port */

/* A non-blocking, close-on-exec TCP listening socket (SO_REUSEADDR, backlog
 * SOMAXCONN). host is a numeric address or a name ("127.0.0.1", "::1",
 * "localhost"); NULL means every IPv4 address. port 0 takes a free port:
 * read it with evl_local_port. Returns the fd or -1 with errno. */
int evl_listen_tcp(const char *host, int port, int flags);

/* A non-blocking unix stream listening socket at path. A stale socket file
 * at path is removed first (only a socket, never another kind of file); a
 * socket some server still listens on is not stale: EADDRINUSE. */
int evl_listen_unix(const char *path);

/* The local port of a TCP socket, or -1 with errno. */
int evl_local_port(int fd);

/* ---- timers ------------------------------------------------------------- */

/* A timer calls fn(t, arg) on the loop's thread, after_ms from its start
 * and then every every_ms (0: once). Timers may be started, re-started,
 * stopped and freed from any callback, their own included; one started
 * during a timer pass (even with after_ms 0) fires in the next iteration.
 * A periodic timer that falls behind skips the missed calls. The loop owns
 * every timer: evl_free frees those left. O(log n) start and stop. */
typedef void (*evl_timer_fn)(evl_timer *t, void *arg);
/* NULL with errno: EINVAL (fn NULL), ENOMEM. */
evl_timer *evl_timer_new(evl_loop *l, evl_timer_fn fn, void *arg);
/* (Re-)arms t. 0, or -1 with errno: ENOMEM, EINVAL (a time >= 2^63 ms). */
int evl_timer_start(evl_timer *t, uint64_t after_ms, uint64_t every_ms);
void evl_timer_stop(evl_timer *t);
bool evl_timer_pending(const evl_timer *t);
evl_loop *evl_timer_loop(const evl_timer *t);
/* Stops and frees t (NULL: nothing). */
void evl_timer_free(evl_timer *t);

/* ---- outgoing connections -------------------------------------------- */

/* A non-blocking connect to addr: a numeric IPv4/IPv6 address with port,
 * or a unix socket path (starting with '/'; port ignored). The connection
 * exists at once: writes are buffered until the connect completes, then
 * flushed in order. on_connect(c, 0) reports success, on_connect(c, err)
 * failure or timeout_ms passing (ETIMEDOUT; 0 = no timeout), followed by
 * on_close with EVL_CLOSE_CONNECT. h (NULL: the loop's handler) serves this
 * connection and must stay valid while it is open; udata as evl_set_udata.
 * NULL with errno: EINVAL (a bad address), ENOMEM, EMFILE, ... (the
 * socket or connect failing at once). */
#define evl_connect(l, addr, port, timeout_ms, h, udata) \
    evl_connect_sized((l), (addr), (port), (timeout_ms), (h), sizeof(evl_handler), (udata))
evl_conn *evl_connect_sized(evl_loop *l, const char *addr, int port, int timeout_ms,
                            const evl_handler *h, size_t hsize, void *udata);
/* The entry programs built against 1.0 and 1.1 call: h without on_data. */
evl_conn *(evl_connect)(evl_loop *l, const char *addr, int port, int timeout_ms,
                        const evl_handler *h, void *udata);

/* ---- connection ------------------------------------------------------- */

int evl_fd(const evl_conn *c);
evl_loop *evl_loop_of(const evl_conn *c);
void evl_set_udata(evl_conn *c, void *udata);
/* Per-connection overrides of two options. evl_set_idle_timeout: ms > 0 is
 * this connection's own idle timeout (measured, like the loop's, from its
 * last read or write progress), 0 never idle-closes it, -1 returns it to the
 * loop's idle_timeout_ms. -1 with errno: EINVAL (ms < -1, or the connection
 * is closing), ENOMEM. evl_set_wbuf_max: this connection's wbuf_max (0 = no
 * cap); EINVAL if more than that is pending already. */
int evl_set_idle_timeout(evl_conn *c, int ms);
int evl_set_wbuf_max(evl_conn *c, size_t bytes);

/* The handler for this connection's callbacks from now on (NULL: the
 * loop's); it must stay valid while the connection is open. A proxy gives
 * its two sides different handlers. A macro passing the caller's sizeof, as
 * evl_new does: the library never reads past the struct the caller has. */
#define evl_set_handler(c, h) evl_set_handler_sized((c), (h), sizeof(evl_handler))
void evl_set_handler_sized(evl_conn *c, const evl_handler *h, size_t hsize);
/* The entry programs built against 1.0 and 1.1 call: a handler without
 * on_data. */
void (evl_set_handler)(evl_conn *c, const evl_handler *h);
void *evl_udata(const evl_conn *c);

/* Unconsumed input: pointer and length (NULL/0 when none). */
const char *evl_data(const evl_conn *c, size_t *len);
/* Drops the first n bytes of input (n larger than the input drops all). */
void evl_consume(evl_conn *c, size_t n);

/* Queues len bytes for sending, in order after everything queued before.
 * With nothing pending, one send() of at most what is left of this
 * connection's write_quantum in this iteration is tried at once (none when it
 * is spent); the rest is buffered and drained on EPOLLOUT. Never blocks.
 * Returns 0 when all bytes are accepted (sent or buffered), or -1 with errno:
 *   EPIPE         the connection is closing or closed (evl_close/evl_abort,
 *                 an idle timeout, or a previous error); nothing was queued
 *   EVL_EOVERFLOW pending would pass wbuf_max; the connection is aborted
 *   ECONNRESET, EPIPE, ... the socket failed; the connection is aborted
 *   ENOMEM        the buffer could not grow; the connection is aborted
 * Pending at or above wbuf_high pauses reading this connection. */
int evl_write(evl_conn *c, const void *buf, size_t len);
/* Like evl_write for several buffers (one sendmsg when nothing is pending).
 * Any iovcnt >= 0 is accepted (also beyond IOV_MAX): the direct send takes at
 * most the first 64 buffers, and the rest is queued. EINVAL for iovcnt < 0 or
 * a total that overflows size_t (nothing queued, the connection stays). */
int evl_writev(evl_conn *c, const struct iovec *iov, int iovcnt);

/* Bytes accepted by evl_write and not yet handed to the kernel. */
size_t evl_pending(const evl_conn *c);

/* Graceful close: stop reading (unread input is discarded), flush what is
 * pending, shut down the write side, then close once the peer closes too
 * (so no RST destroys the last reply) or close_timeout_ms after this call,
 * whichever comes first. Idempotent. */
void evl_close(evl_conn *c);
/* Half-close: once everything written so far is sent, shut down the write
 * side (the peer reads EOF); reading goes on. Later writes fail with EPIPE.
 * The connection closes when the peer's EOF comes too (and no hold is on
 * it). Idempotent; nothing on a closing or closed connection. */
void evl_shutdown(evl_conn *c);

/* Close now: pending output is dropped, and over TCP the peer gets a reset
 * (RST), not a clean EOF, so it can tell a cut-off stream from a complete
 * one; so does every close that drops pending output (overflow, idle
 * timeout, a close deadline, evl_free). Other closes end with FIN. on_close runs after the current
 * callback (or in the next evl_run_once when called from outside one). */
void evl_abort(evl_conn *c);

/* Schedules on_read for c in the next iteration if it holds unconsumed
 * input, without waiting for new socket data: for a handler that left input
 * unconsumed while busy (say, streaming a reply) and is now ready for it. */
void evl_wake(evl_conn *c);

/* True once the peer sent EOF (its write side is shut). After EOF the loop
 * still delivers the buffered input and flushes replies; the connection is
 * closed when nothing is left to deliver (input left unconsumed is a partial
 * message and is dropped), nothing is pending, and no hold is on it. Reading
 * stops at EOF, so a half-closed connection never spins. */
bool evl_peer_eof(const evl_conn *c);

/* Why c closed (in on_close; EVL_CLOSE_OPEN before), and the errno behind
 * EVL_CLOSE_RESET, EVL_CLOSE_CONNECT and EVL_CLOSE_NOMEM (0 otherwise). */
int evl_close_reason(const evl_conn *c);
int evl_close_errno(const evl_conn *c);
/* "eof", "reset", ... for logs; "?" for an unknown code. */
const char *evl_close_reason_name(int reason);

/* Reading c stops until evl_read_resume: no read, no on_read (buffered
 * input waits), the peer's EOF is not seen yet, and input never counts
 * against rbuf_max while paused. For a handler that wants backpressure
 * from something other than this connection's output (a slow subscriber, a
 * proxy's other side). Writes and the idle timeout are unaffected.
 * Idempotent. */
void evl_read_pause(evl_conn *c);
void evl_read_resume(evl_conn *c);

/* Deferred replies. A handler that consumed a request and answers later
 * (from on_tick, on_fd, a timer, after evl_wake) takes a hold: while a
 * connection has holds, the peer's EOF does not close it; the handler writes
 * its reply, then evl_release()s, and the connection closes as above once
 * its output is flushed. Holds nest (a count); evl_release without a hold
 * does nothing. A hold does not stop evl_close, evl_abort, errors, the idle
 * timeout (so a forgotten hold cannot leak a connection where
 * idle_timeout_ms is set) or a stop. */
void evl_hold(evl_conn *c);
void evl_release(evl_conn *c);

#ifdef __cplusplus
}
#endif
#endif /* EVLOOP_H */
