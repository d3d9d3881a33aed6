/*
 * fuzz_loop: whole-loop scenarios on socketpairs adopted into a loop.
 *
 * The input is a script. Its first bytes choose the options (small buffers
 * and watermarks, so short writes, pauses and overflows happen; maybe a
 * listening unix socket with max_conns); then each step is a peer action
 * (send, read, shutdown SHUT_WR, close: a close with replies unread is a
 * reset on a unix socket, connect to the listener), a handler action taken
 * from outside any callback, a new socketpair, a pipe event, followed by
 * evl_run_once(l, 0). on_accept keeps or refuses from the input. Inside the loop the callbacks read their choices from
 * the same input: how much on_read consumes, and then write n bytes,
 * writev, evl_close, evl_abort (this or another connection), evl_wake,
 * add/remove/replace an extra fd (a pipe), adopt another pair. When the
 * script ends, the peers read everything, the handler consumes everything,
 * and the loop runs until it settles; then, with close_timeout_ms 0, maybe
 * evl_stop + evl_run (the graceful stop); then evl_free.
 *
 * Every byte in either direction is a position-dependent pattern
 * (fz_pat), so the checks need no copies. What is checked (see the
 * FZ_CHECK messages) is the library's contract in evloop.h: each stream
 * arrives intact and in order; bytes the peer reads are a prefix of what
 * evl_write accepted, and all of it while the peer keeps reading; on_close
 * exactly once, with a cause, and nothing after it; the counters; the
 * watermarks and caps; re-dispatch of pipelined input; EOF delivers input
 * and flushes replies; no stale event reaches an extra fd; no fd and no
 * byte of memory left behind (ASan's leak check).
 * SIGPIPE is left at its default: a send without MSG_NOSIGNAL kills us.
 */
#include "evloop.h"
#include "fuzz_common.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS  6
#define MAX_PIPES  2
#define MAX_STEPS  64
#define MAX_IO     ((size_t)16 << 10) /* bytes per send, write or read action */
#define MAX_OUT    ((uint64_t)64 << 10) /* bytes the handler writes per connection */
#define MAX_IN     ((uint64_t)64 << 10) /* bytes the peer sends per connection */
#define MAX_ROUNDS 2000 /* settle: >= 256 bytes a run each way (see peer_send, quantum) */
#define LONG_MS    60000              /* a timeout that never fires in one input */
#define MAX_IOV    (IOV_MAX + 128)    /* evl_writev may be given more than IOV_MAX */

typedef struct conn_st {
    int peer;                 /* our end; -1 once closed */
    int fd;                   /* the loop's end */
    evl_conn *c;              /* NULL once on_close ran */
    uint32_t in_stream, out_stream;
    uint64_t sent;            /* bytes the peer sent */
    uint64_t seen;            /* bytes the handler consumed */
    uint64_t shown;           /* end of the input shown by the last on_read */
    uint64_t accepted;        /* bytes evl_write accepted */
    uint64_t limit;           /* accepted + a failed write that may be half out */
    uint64_t got;             /* bytes the peer read */
    int closes;               /* on_close calls */
    bool queued;              /* connected to a listener, not yet accepted */
    int lst;                  /*   to this one */
    struct sockaddr_un name;  /*   from this (autobound) address, */
    socklen_t name_len;       /*   by which the accepted end is known */
    bool refused;             /* refused: by on_accept or by max_conns */
    bool peer_shut, peer_closed, peer_eof;
    bool eof_closes;          /* on_eof returned with nothing pending and no
                                 hold: the loop closes it (EOF) at once, and
                                 a write from a later callback of the same
                                 pass (another connection's on_close) fails
                                 with EPIPE before its own on_close runs */
    bool h_closed;            /* the handler called evl_close */
    bool write_failed;        /* a write failed: later ones fail with EPIPE */
    bool ended;               /* certainly aborted: on_close by the run's end */
    bool overflow_maybe;      /* overflow close possible, not certain (below) */
    bool drain_due;           /* pending went above wbuf_low: on_drain owed */
    bool paused;              /* the model's pause: pending reached wbuf_high */
    uint64_t taken_at_pause;  /*   bytes the loop had read from the kernel then */
    bool stop_closed;         /* open when a graceful stop began */
    unsigned holds;           /* evl_hold - evl_release: a deferred reply owed */
    bool doomed;              /* adopted during evl_free: closed at some point of it */
    bool out_marked;          /* out_mark is set: */
    uint64_t out_mark;        /*   bytes the kernel had taken at the last check */
    bool quiet;               /* on_read consumed nothing, and nothing new since */
    bool read_due;            /* input left after a consume, or evl_wake: */
    uint64_t read_due_by;     /*   on_read owed by the end of this run */
    uint64_t reads;
    /* the functions issue 13 added (ext mode; close reasons and on_eof always) */
    size_t wbuf_max;          /* this connection's (evl_set_wbuf_max), else the loop's */
    uint64_t taken_at_rpause; /* bytes the loop had read from the kernel at evl_read_pause */
    int eofs;                 /* on_eof calls */
    int connect_err;          /* what on_connect said */
    int idle_cur;             /* its own idle timeout now (-1: the loop's) */
    unsigned causes;          /* close reasons the script made possible (bits) */
    unsigned first;           /* the first cause's reasons, */
    bool first_sure;          /*   made while nothing else could close it */
    bool rpaused;             /* evl_read_pause: the loop reads nothing */
    bool shut;                /* evl_shutdown: later writes EPIPE, the peer gets EOF */
    bool connecting;          /* evl_connect: on_connect not yet called */
    bool tcp;                 /*   to a TCP port nobody listens on */
    bool tcp_timeout;         /*   with a timeout */
    bool h2;                  /* served by the second handler (evl_set_handler) */
    bool h2_old;              /*   set through the 1.0/1.1 entry: on_read, not on_data */
    bool idle_maybe;          /* an idle timeout of its own was set: IDLE possible */
    uint8_t visited;          /* seen by the evl_foreach_conn walk at depth d: bit d
                                 (a walk's callback may start another walk) */
} conn_st;

typedef struct timer_st {
    evl_timer *t;
    uint64_t start_ns;        /* our clock, just before evl_timer_start */
    uint64_t after, every;
    uint64_t fired;           /* calls since the start */
    uint64_t serial;          /* arming order */
    bool armed;               /* the model: started and not yet fired, stopped or freed */
} timer_st;
#define MAX_TIMERS 4

typedef struct pipe_st {
    int r, w;
    bool on;
    bool due;                 /* on_fd left bytes unread: reported again */
    uint64_t due_by;          /*   by the end of this run */
} pipe_st;

static struct fuzz_state {
    fz_in in;
    evl_loop *l;
    evl_options o;
    conn_st cs[MAX_CONNS];
    int nconns;
    pipe_st ps[MAX_PIPES];
    uint64_t runs;            /* evl_run_once calls completed */
    bool in_run, final, freeing;
    bool ext;                 /* the functions issue 13 added are in the script */
    bool wake_due;            /* on_wakeup is owed */
    bool via2;                /* the callback came through the second handler */
    int walks;                /* evl_foreach_conn walks in progress (nested) */
    bool data_mode;           /* inside on_data: part of the consume is the return */
    size_t data_ret;          /*   what it returns */
    uint64_t entered, closed, overflows, overflows_maybe, callbacks;
    int lfd[2];               /* listening sockets side by side, or -1 */
    bool no_accept;           /* on_accept is NULL: every connection kept */
    uint64_t refusals;        /* on_accept said no, or max_conns */
    bool stop_at_end;         /* evl_stop + evl_run after settling */
    bool stopping;            /*   ...and it is running */
    bool stop_req;            /* evl_stop called, evl_run not yet returned */
    bool listening[2];        /* the listener is registered with the loop */
    uint64_t unlisten_by[2];  /*   removed inside the run that ends as runs reaches this */
    int depth;                /* callbacks of ours on the stack */
    conn_st *reading;         /* the connection inside on_read, or NULL */
    uint64_t ticks;           /* on_tick calls */
    int stops;                /* on_stop calls in this evl_run */
    bool in_on_stop;          /*   inside it: connections still open */
    uint64_t ticks_at_run;    /*   ...when the current run began */
    sigset_t mask0;           /* the signal mask before anything ran */
    timer_st tm[MAX_TIMERS];
    uint64_t arm_serial;
    timer_st *firing;         /* the timer whose callback runs, or NULL */
    uint64_t wakeups;         /* evl_wakeup calls since on_wakeup ran, */
    uint64_t wake_by;         /*   on_wakeup owed by the end of this run */
    uint64_t wake_iter;       /* iteration of the last on_wakeup */
    uint64_t wakeup_iter;     /* iteration of the last evl_wakeup */
    uint64_t idle_closes;     /* on_close with EVL_CLOSE_IDLE */
    struct sockaddr_un laddr[2]; /* the listeners' (abstract) addresses */
    socklen_t laddr_len[2];
    uint8_t wbuf[MAX_IO], rbuf[MAX_IO];
    struct iovec iov[MAX_IOV];
} S;

static int idx(const conn_st *s) { return (int)(s - S.cs); }

/* Output may be lost only when the peer stopped reading or the handler or
 * the library ended the connection on purpose. */
static bool loss_allowed(const conn_st *s)
{
    return s->ended || s->write_failed || s->overflow_maybe || s->peer_closed || S.freeing ||
           s->refused || S.stopping || s->stop_closed ||
           (s->h_closed && S.o.close_timeout_ms == 0) || s->tcp || s->idle_maybe;
}

/* The handler's own choices: from the input while the script runs. */
static bool scripted(void) { return !S.final && S.in.n > 0; }

static conn_st *pick(uint8_t b) { return S.nconns ? &S.cs[b % S.nconns] : NULL; }

/* The waiting connection whose accepted end is fd: its peer's address. */
static conn_st *identify(int fd)
{
    struct sockaddr_un a;
    socklen_t n = sizeof a;
    FZ_CHECK(getpeername(fd, (struct sockaddr *)&a, &n) == 0, "getpeername failed: errno %d", errno);
    for (int i = 0; i < S.nconns; i++)
        if (S.cs[i].queued && S.cs[i].name_len == n && memcmp(&S.cs[i].name, &a, n) == 0)
            return &S.cs[i];
    return NULL;
}

/* With on_accept NULL: a connection the loop accepted and kept, seen for
 * the first time (in a callback, or by the scan after a run). */
static conn_st *attach(evl_conn *c)
{
    FZ_CHECK(S.no_accept, "a connection without udata, and on_accept is set");
    conn_st *s = identify(evl_fd(c));
    FZ_CHECK(s != NULL, "an accepted connection nobody made");
    /* seen only now: it may have been accepted earlier in a run that then
     * removed its listener (evl_remove_listener from a callback) */
    FZ_CHECK(S.listening[s->lst] || S.runs <= S.unlisten_by[s->lst],
             "conn %d accepted from a listener that is not registered", idx(s));
    s->queued = false;
    s->fd = evl_fd(c);
    s->c = c;
    evl_set_udata(c, s);
    S.entered++;
    fz_trace("  conn %d: accepted (no on_accept), fd %d", idx(s), s->fd);
    return s;
}

static conn_st *st_of(evl_conn *c, const char *who)
{
    conn_st *s = evl_udata(c) ? evl_udata(c) : attach(c);
    FZ_CHECK(s >= S.cs && s < S.cs + S.nconns, "%s: connection with unknown udata", who);
    FZ_CHECK(s->c == c && s->closes == 0, "%s: called for conn %d after its on_close", who, idx(s));
    S.callbacks++;
    return s;
}

/* on_read is owed by the end of the next full run: a run started after
 * now (a run in progress may already have served this connection); later
 * when others wait before it, since a run re-dispatches at most max_events
 * connections, first come first served (lib/evloop.h, on_read). */
static void owe_read(conn_st *s)
{
    int ahead = 0;
    for (int i = 0; i < S.nconns; i++)
        ahead += &S.cs[i] != s && S.cs[i].read_due;
    s->read_due = true;
    s->read_due_by = S.runs + (S.in_run ? 2 : 1) + ahead / S.o.max_events;
}

/* ---- close reasons: the first cause wins ---------------------------------- */

#define R(reason) (1u << (reason))

/* Something besides the script's next call may end it already: the peer,
 * an error, an overflow, an idle timeout, the stop, a failed connect. */
static bool maybe_dead(const conn_st *s)
{
    return s->closes || s->ended || s->write_failed || s->overflow_maybe || s->peer_shut || s->peer_closed ||
           s->idle_maybe || s->h_closed || s->tcp || s->doomed || s->stop_closed || S.freeing || S.stopping;
}

/* A reason the script made possible that closes later, if at all (the
 * peer's EOF waits for input to be delivered; an idle timer). */
static void latent(conn_st *s, unsigned reasons) { s->causes |= reasons; }

/* A call that ends the connection at once with one of these reasons
 * (before the flags that say so are set): made on a connection nothing
 * else threatens, it is the reason evl_close_reason must report. */
static void cause(conn_st *s, unsigned reasons)
{
    if (!s->first) {
        s->first = reasons;
        s->first_sure = !maybe_dead(s);
    }
    s->causes |= reasons;
}

/* evl_close's reasons: LOCAL, or TIMEOUT when a zero deadline drops bytes;
 * STOP when the loop is stopping. */
static unsigned close_reasons(void)
{
    unsigned r = R(EVL_CLOSE_LOCAL);
    if (S.o.close_timeout_ms == 0)
        r |= R(EVL_CLOSE_TIMEOUT);
    if (S.stopping)
        r |= R(EVL_CLOSE_STOP);
    return r;
}

/* ---- the model of pending output and of the pause ------------------------ */

/* Bytes waiting in fd's receive queue (a unix stream socket). */
static uint64_t queued_in(int fd)
{
    int n = 0;
    FZ_CHECK(ioctl(fd, FIONREAD, &n) == 0 && n >= 0, "FIONREAD failed: errno %d", errno);
    return (uint64_t)n;
}

/* Whether the model knows what is pending: every accepted byte is in the
 * loop, in the kernel (the peer's receive queue) or read by the peer, and
 * no failed write left a part of itself in one of them. */
static bool pending_known(const conn_st *s)
{
    return s->c && s->peer >= 0 && !s->write_failed && !s->ended && !s->peer_eof;
}

/* Pending output from the bytes exchanged alone, not from the library:
 * accepted by evl_write, minus what the kernel took (read by the peer, or
 * still in its receive queue). */
static uint64_t model_pending(const conn_st *s)
{
    uint64_t out = s->got + queued_in(s->peer);
    FZ_CHECK(out <= s->accepted, "conn %d: the kernel holds or the peer read %llu bytes, evl_write accepted %llu",
             idx(s), (unsigned long long)out, (unsigned long long)s->accepted);
    return s->accepted - out;
}

/* Bytes the loop took from the kernel on this connection. */
static uint64_t model_taken(const conn_st *s) { return s->sent - queued_in(s->fd); }

/* evloop.h: "Pending at or above wbuf_high pauses reading this connection";
 * wbuf_low: "resume reading ... at or below". Where the two marks meet
 * (low == high == pending) either reading is allowed: no claim then. */
static void note_pending(conn_st *s)
{
    if (!pending_known(s))
        return;
    uint64_t p = model_pending(s);
    if (!s->paused && p >= S.o.wbuf_high && p > S.o.wbuf_low) {
        s->paused = true;
        s->taken_at_pause = model_taken(s);
        fz_trace("  conn %d: paused at %llu pending (model)", idx(s), (unsigned long long)p);
    }
    if (p > S.o.wbuf_low)
        s->drain_due = true;
}

/* Drained to wbuf_low (seen anywhere: a check after a run, on_drain, before
 * a write): reading resumes, and input held back is owed an on_read. */
static void note_drained(conn_st *s)
{
    if (!s->paused || !pending_known(s))
        return;
    uint64_t p = model_pending(s);
    if (p > S.o.wbuf_low) /* at low == high, "at or below low" wins: resumed */
        return;
    s->paused = false;
    s->quiet = false;
    fz_trace("  conn %d: resumed at %llu pending (model)", idx(s), (unsigned long long)p);
    size_t len;
    (void)evl_data(s->c, &len);
    if (len > 0 && !s->h_closed) {
        /* The loop queues it for re-dispatch at the resume, behind the
         * connections already waiting: a read owed from before the pause
         * (an evl_wake while paused, say) is owed from now on. */
        uint64_t was = s->read_due ? s->read_due_by : 0;
        owe_read(s);
        if (was > s->read_due_by)
            s->read_due_by = was;
    }
}

/* ---- handler actions ---------------------------------------------------- */

static void act(conn_st *self, uint8_t b);
static void ext_act(conn_st *self, uint8_t b);


/* evl_write fails EPIPE: closing or closed (evl_close, evl_abort, the stop
 * or evl_free), or a previous error. */
static bool writes_fail(const conn_st *s)
{
    return s->h_closed || s->ended || s->write_failed || s->closes > 0 || s->shut ||
           (s->stop_closed && !S.in_on_stop);
}

static void do_write(conn_st *s, size_t n, bool vec, int iovcnt)
{
    if (!s || !s->c)
        return;
    if (n > MAX_OUT - s->accepted)
        n = (size_t)(MAX_OUT - s->accepted);
    fz_fill(S.wbuf, n, s->out_stream, s->accepted);
    note_drained(s);
    size_t before = evl_pending(s->c);
    fz_trace("  conn %d: %s %zu bytes (%d buffers, pending %zu)", idx(s), vec ? "writev" : "write", n,
             vec ? iovcnt : 1, before);
    bool dead = writes_fail(s);
    errno = 0;
    int r;
    if (vec) {
        /* cnt buffers (up to past IOV_MAX): equal parts, the rest in the last */
        int cnt = iovcnt < 1 ? 1 : iovcnt;
        size_t part = n / (size_t)cnt;
        for (int i = 0; i < cnt; i++)
            S.iov[i] = (struct iovec){S.wbuf + part * (size_t)i, i == cnt - 1 ? n - part * (size_t)(cnt - 1) : part};
        r = evl_writev(s->c, S.iov, cnt);
    } else {
        r = evl_write(s->c, S.wbuf, n);
    }
    int e = errno;
    fz_trace("    -> %d errno %d, pending %zu", r, r ? e : 0, r ? 0 : evl_pending(s->c));
    if (s->doomed && r == -1 && e == EPIPE) {
        s->write_failed = true;
        return;
    }
    if (dead) {
        FZ_CHECK(r == -1 && e == EPIPE, "conn %d: write after close/abort: %d errno %d", idx(s), r, e);
        return;
    }
    if (r == 0) {
        s->accepted += n;
        s->limit = s->accepted;
        size_t p = evl_pending(s->c);
        FZ_CHECK(p <= before + n, "conn %d: pending grew by more than the write", idx(s));
        FZ_CHECK(!s->wbuf_max || (p <= s->wbuf_max && (before == 0 || before + n <= s->wbuf_max)),
                 "conn %d: write accepted past wbuf_max %zu (pending %zu + %zu)", idx(s),
                 s->wbuf_max, before, n);
        if (pending_known(s))
            FZ_CHECK(p == model_pending(s), "conn %d: evl_pending %zu after a write, the bytes say %llu", idx(s),
                     p, (unsigned long long)model_pending(s));
        else if (p > S.o.wbuf_low)
            s->drain_due = true;
        note_pending(s);
        return;
    }
    FZ_CHECK(r == -1, "evl_write returned %d", r);
    if (e == EVL_EOVERFLOW) {
        FZ_CHECK(s->wbuf_max && before + n > s->wbuf_max,
                 "conn %d: EVL_EOVERFLOW with %zu pending + %zu <= wbuf_max %zu", idx(s), before, n,
                 s->wbuf_max);
        cause(s, R(EVL_CLOSE_OVERFLOW));
        S.overflows++;
        s->ended = true;
    } else {
        /* Either the send failed (the connection is aborted) or an earlier
         * error was seen (it lives on to deliver its input): not ended. */
        /* A unix socket refuses writes only when its peer is gone; the
         * loop refuses them (EPIPE) once it closed the connection, which an
         * idle timeout may have done earlier in this pass (the timer before
         * on_tick): the close reason says so, and only where idling was possible. */
        bool idled = e == EPIPE && evl_close_reason(s->c) == EVL_CLOSE_IDLE &&
                     (s->idle_maybe || S.o.idle_timeout_ms > 0);
        FZ_CHECK(((e == EPIPE || e == ECONNRESET) && s->peer_closed) || (e == EPIPE && s->eof_closes) || idled,
                 "conn %d: evl_write failed, errno %d, with the peer open", idx(s), e);
        cause(s, R(EVL_CLOSE_RESET));
    }
    s->write_failed = true;
    s->limit = s->accepted + n; /* a direct send may have taken a part of it */
}

static void do_close(conn_st *s)
{
    if (s && s->c) {
        fz_trace("  conn %d: evl_close", idx(s));
        if (!s->h_closed)
            cause(s, close_reasons());
        evl_close(s->c);
        s->h_closed = true;
    }
}

static void do_abort(conn_st *s)
{
    if (s && s->c) {
        fz_trace("  conn %d: evl_abort", idx(s));
        cause(s, R(EVL_CLOSE_ABORT));
        evl_abort(s->c);
        s->ended = true;
    }
}

static void do_wake(conn_st *s)
{
    if (!s || !s->c)
        return;
    evl_wake(s->c);
    s->quiet = false;
    size_t len;
    (void)evl_data(s->c, &len);
    fz_trace("  conn %d: evl_wake (%zu bytes of input)", idx(s), len);
    if (len > 0 && !s->h_closed && !s->ended)
        owe_read(s);
}

/* Socket buffers from 4 KiB up: small ones make the kernel refuse writes
 * early, so the buffered paths and EAGAIN are the common case. */
static void set_bufs(int fd, unsigned k)
{
    if (k == 0)
        return;
    int v = (int)(1024 * k * k);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
}

static void adopt_pair(void)
{
    if (S.nconns >= MAX_CONNS)
        return;
    int sv[2];
    FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0,
             "socketpair failed");
    uint8_t b = fz_u8(&S.in);
    set_bufs(sv[0], b & 15u);
    set_bufs(sv[1], b >> 4);
    conn_st *s = &S.cs[S.nconns++];
    *s = (conn_st){.peer = sv[0], .fd = sv[1], .wbuf_max = S.o.wbuf_max, .idle_cur = -1};
    s->in_stream = 2u * (uint32_t)idx(s) + 1;
    s->out_stream = 2u * (uint32_t)idx(s) + 2;
    evl_conn *c = evl_adopt(S.l, sv[1]);
    FZ_CHECK(c != NULL, "evl_adopt failed: errno %d", errno);
    evl_set_udata(c, s);
    s->c = c;
    s->doomed = S.freeing || S.stopping; /* evl_free or the stop closes it too, perhaps before our next call */
    if (s->doomed)
        cause(s, R(EVL_CLOSE_STOP) | (S.stopping ? close_reasons() : 0));
    S.entered++;
    fz_trace("  conn %d: adopted fd %d (peer fd %d, bufs %u %u)", idx(s), sv[1], sv[0], b & 15u, b >> 4);
    FZ_CHECK(evl_conn_of(S.l, sv[1]) == c && evl_fd(c) == sv[1] && evl_loop_of(c) == S.l &&
                 evl_udata(c) == s && evl_pending(c) == 0,
             "a new connection's accessors disagree");
    FZ_CHECK(evl_adopt(S.l, sv[1]) == NULL && errno == EEXIST, "adopting an fd twice did not fail EEXIST");
    FZ_CHECK(evl_remove_fd(S.l, sv[1]) == -1 && errno == ENOENT,
             "evl_remove_fd on a connection's fd did not fail ENOENT");
}

static void add_pipe(void)
{
    for (int i = 0; i < MAX_PIPES; i++) {
        pipe_st *p = &S.ps[i];
        if (p->on)
            continue;
        int fds[2];
        FZ_CHECK(pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2 failed");
        *p = (pipe_st){.r = fds[0], .w = fds[1], .on = true};
        FZ_CHECK(evl_add_fd(S.l, p->r) == 0, "evl_add_fd failed: errno %d", errno);
        fz_trace("  pipe %d: added, fds %d %d", i, p->r, p->w);
        FZ_CHECK(evl_add_fd(S.l, p->r) == -1 && errno == EEXIST, "evl_add_fd twice did not fail EEXIST");
        return;
    }
}

static void drop_pipe(pipe_st *p)
{
    if (!p->on)
        return;
    FZ_CHECK(evl_remove_fd(S.l, p->r) == 0, "evl_remove_fd failed: errno %d", errno);
    FZ_CHECK(evl_remove_fd(S.l, p->r) == -1 && errno == ENOENT, "evl_remove_fd twice did not fail ENOENT");
    fz_trace("  pipe %d: removed", (int)(p - S.ps));
    FZ_CHECK(fcntl(p->r, F_GETFD) >= 0, "evl_remove_fd closed the fd");
    (void)close(p->r);
    if (p->w >= 0)
        (void)close(p->w);
    p->on = false;
}

static int run(void);

/* evl_add_listener while running (and again after a stop removed it). */
static void add_listener(int k)
{
    if (S.lfd[k] < 0)
        return;
    errno = 0;
    int r = evl_add_listener(S.l, S.lfd[k]);
    fz_trace("  evl_add_listener(%d) -> %d errno %d", k, r, r ? errno : 0);
    if (S.listening[k]) {
        FZ_CHECK(r == -1 && errno == EEXIST, "evl_add_listener of a registered listener: %d errno %d", r, errno);
        return;
    }
    FZ_CHECK(r == 0, "evl_add_listener failed: errno %d", errno);
    S.listening[k] = true;
}

/* Calls evloop.h refuses or answers with a documented errno, whatever the
 * state: the loop must be unchanged by them. */
static void misuse(conn_st *t)
{
    for (int k = 0; k < 2; k++)
        if (S.lfd[k] >= 0 && S.listening[k])
            FZ_CHECK(evl_remove_fd(S.l, S.lfd[k]) == -1 && errno == ENOENT,
                     "evl_remove_fd(listener) did not fail ENOENT");
    if (t && t->c && t->closes == 0) {
        FZ_CHECK(evl_add_fd(S.l, t->fd) == -1 && errno == EEXIST, "evl_add_fd(connection fd) did not fail EEXIST");
        FZ_CHECK(evl_adopt(S.l, t->fd) == NULL && errno == EEXIST, "evl_adopt(connection fd) did not fail EEXIST");
        FZ_CHECK(evl_conn_of(S.l, t->fd) == t->c && evl_loop_of(t->c) == S.l && evl_fd(t->c) == t->fd &&
                     evl_udata(t->c) == t,
                 "conn %d: accessors disagree", idx(t));
        FZ_CHECK(!evl_peer_eof(t->c) || t->peer_shut || t->peer_closed,
                 "conn %d: evl_peer_eof with the peer's write side open", idx(t));
        struct iovec huge[2] = {{S.wbuf, SIZE_MAX}, {S.wbuf, 1}};
        bool gone = writes_fail(t) || t->peer_closed || t->doomed;
        FZ_CHECK(evl_writev(t->c, huge, -1) == -1 && (errno == EINVAL || (gone && errno == EPIPE)),
                 "conn %d: evl_writev with iovcnt -1: errno %d", idx(t), errno);
        if (!gone)
            FZ_CHECK(evl_writev(t->c, huge, 2) == -1 && errno == EINVAL,
                     "conn %d: evl_writev with a total past SIZE_MAX: errno %d", idx(t), errno);
        errno = 0;
        int r = evl_write(t->c, "", 0);
        FZ_CHECK(r == 0 || (r == -1 && errno == EPIPE && (writes_fail(t) || t->peer_closed || t->doomed)),
                 "conn %d: an empty write gave %d errno %d", idx(t), r, errno);
    }
    for (int i = 0; i < MAX_PIPES; i++)
        if (S.ps[i].on)
            FZ_CHECK(evl_adopt(S.l, S.ps[i].r) == NULL && errno == ENOTSOCK && evl_conn_of(S.l, S.ps[i].r) == NULL,
                     "evl_adopt(pipe) did not fail ENOTSOCK");
    FZ_CHECK(evl_loop_udata(S.l) == &S, "evl_loop_udata changed");
}

/* Inside a callback: running or freeing the loop is refused (EBUSY). */
static void reenter(uint8_t how)
{
    if (S.depth == 0)
        return; /* outside: the script runs and frees the loop itself */
    errno = 0;
    switch (how % 3) {
    case 0: {
        int r = evl_run_once(S.l, 0);
        FZ_CHECK(r == -1 && errno == EBUSY, "evl_run_once from a callback: %d errno %d", r, errno);
        break;
    }
    case 1: {
        int r = evl_run(S.l, -1);
        FZ_CHECK(r == -1 && errno == EBUSY, "evl_run from a callback: %d errno %d", r, errno);
        break;
    }
    default:
        evl_free(S.l); /* refused: ASan sees any use of a freed loop below */
        FZ_CHECK(errno == EBUSY, "evl_free from a callback: errno %d, not EBUSY", errno);
        break;
    }
    fz_trace("  re-entry %d refused", how % 3);
}

/* Deferred processing: input consumed outside on_read (from a timer, an
 * fd, another connection), as a handler that queued the work does. */
static void consume_elsewhere(conn_st *t, uint16_t k)
{
    if (!t || !t->c || t == S.reading)
        return;
    size_t len;
    const uint8_t *d = (const uint8_t *)evl_data(t->c, &len);
    if (len == 0) {
        FZ_CHECK(d == NULL, "conn %d: evl_data with no input is not NULL/0", idx(t));
        return;
    }
    FZ_CHECK(t->seen + len <= t->sent && fz_mismatch(d, len, t->in_stream, t->seen) == len,
             "conn %d: evl_data outside on_read is not the unconsumed input", idx(t));
    size_t n = k % (len + 1);
    evl_consume(t->c, n);
    t->shown = t->seen + len > t->shown ? t->seen + len : t->shown;
    t->seen += n;
    t->quiet = false;
    (void)evl_data(t->c, &len);
    fz_trace("  conn %d: consumed %zu outside on_read, %zu left", idx(t), n, len);
}

/* A write of a size next to the wbuf_max edge. */
static void write_at_edge(conn_st *t, uint8_t b)
{
    if (!t || !t->c || !t->wbuf_max)
        return;
    size_t p = evl_pending(t->c), room = t->wbuf_max - (p < t->wbuf_max ? p : t->wbuf_max);
    size_t n = room + (b % 5) - 2;
    if (n > MAX_IO || room + (b % 5) < 2)
        return;
    do_write(t, n, b & 0x80, 1 + (b >> 3 & 3));
}

static int iov_count(uint8_t b)
{
    if (b < 0xf0)
        return 1 + b % 8;
    if (fz_known("writev-iovmax"))
        return IOV_MAX;
    return IOV_MAX - 8 + (b & 15) * 8; /* IOV_MAX-8 .. IOV_MAX+112 */
}

/* One choice of the handler's, from inside a callback or (self == NULL)
 * from outside the loop or a callback without a connection of its own. */
static void act(conn_st *self, uint8_t b)
{
    conn_st *t = self ? self : pick(fz_u8(&S.in));
    switch (b % 32) {
    case 4: case 5: do_write(t, fz_size(&S.in, MAX_IO), false, 1); break;
    case 6: {
        uint8_t v = fz_u8(&S.in);
        do_write(t, fz_size(&S.in, MAX_IO), true, iov_count(v));
        break;
    }
    case 7: do_close(t); break;
    case 8: do_abort(t); break;
    case 9: do_wake(pick(fz_u8(&S.in))); break;
    case 10: do_abort(pick(fz_u8(&S.in))); break;
    case 11: add_pipe(); break;
    case 12: /* drop, and maybe at once make another: same fd numbers, and an
              * event of the old pipe may still be in this batch */
        drop_pipe(&S.ps[(b >> 5) % MAX_PIPES]);
        if (b & 0x40)
            add_pipe();
        break;
    case 13: adopt_pair(); break;
    case 14: /* the last reply, then a graceful close */
        do_write(t, fz_size(&S.in, MAX_IO), false, 1);
        do_close(t);
        break;
    case 15: do_close(pick(fz_u8(&S.in))); break;
    case 16: reenter(fz_u8(&S.in)); break;
    case 17:
        fz_trace("  evl_stop");
        evl_stop(S.l);
        S.stop_req = true;
        break;
    case 18: add_listener((b >> 5) & 1); break;
    case 19: misuse(t); break;
    case 20: consume_elsewhere(pick(fz_u8(&S.in)), fz_u16(&S.in)); break;
    case 21: write_at_edge(t, fz_u8(&S.in)); break;
    case 22: /* a reply to another connection (a broadcast, a proxy) */
        do_write(pick(fz_u8(&S.in)), fz_size(&S.in, MAX_IO), false, 1);
        break;
    case 23: do_abort(t); do_write(t, 1, false, 1); break; /* EPIPE at once */
    case 24: /* a deferred reply: hold now, answer and release later */
        if (t && t->c) {
            evl_hold(t->c);
            t->holds++;
            fz_trace("  conn %d: evl_hold (%u)", idx(t), t->holds);
        }
        break;
    case 25: case 26: /* the deferred reply, then the release */
        if (t && t->c) {
            if (b & 0x20)
                do_write(t, fz_size(&S.in, MAX_IO), false, 1);
            evl_release(t->c); /* without a hold: does nothing */
            t->holds -= t->holds > 0;
            fz_trace("  conn %d: evl_release (%u)", idx(t), t->holds);
        }
        break;
    case 27: { /* what a child spawned now would get: the mask from before evl_run */
        sigset_t set;
        evl_child_sigmask(S.l, &set);
        FZ_CHECK(sigismember(&set, SIGTERM) == sigismember(&S.mask0, SIGTERM) &&
                     sigismember(&set, SIGINT) == sigismember(&S.mask0, SIGINT),
                 "evl_child_sigmask: SIGTERM/SIGINT %d/%d, before evl_run %d/%d", sigismember(&set, SIGTERM),
                 sigismember(&set, SIGINT), sigismember(&S.mask0, SIGTERM), sigismember(&S.mask0, SIGINT));
        break;
    }
    case 28: case 29: case 30: case 31: /* the calls issue 13 added, in ext mode */
        if (S.ext)
            ext_act(self, fz_u8(&S.in));
        break;
    default: break; /* 0-3 (and 28-31 outside ext mode): nothing, the common case */
    }
}

/* ---- the functions issue 13 added (ext mode) --------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Runs a connection's callback came through: the second handler's
 * wrappers set via2 first. */
static void check_handler(const conn_st *s, const char *who)
{
    FZ_CHECK(S.via2 == s->h2, "conn %d: %s through the %s handler, evl_set_handler/evl_connect chose the %s", idx(s),
             who, S.via2 ? "second" : "loop's", s->h2 ? "second" : "loop's");
    S.via2 = false;
}

static void on_timer(evl_timer *t, void *arg);

/* The model's timers after a run: armed ones report pending, and none that
 * was due before the run began is still waiting. */
static void check_timers(uint64_t run_start_ns, uint64_t serial_at_start)
{
    for (int k = 0; k < MAX_TIMERS; k++) {
        timer_st *m = &S.tm[k];
        if (!m->t)
            continue;
        FZ_CHECK(evl_timer_pending(m->t) == m->armed && evl_timer_loop(m->t) == S.l,
                 "timer %d: evl_timer_pending %d, the model says %d", k, evl_timer_pending(m->t), m->armed);
        /* due at floor(start ms) + after <= our clock at the run's start
         * (whole ms): the run's timer pass saw it due */
        if (m->armed && m->fired == 0 && m->serial <= serial_at_start &&
            run_start_ns >= m->start_ns + (m->after + 1) * 1000000u)
            fz_fail("timer %d: due %llu ms after its start, %.1f ms had passed when a run began, and the run did "
                    "not fire it", k, (unsigned long long)m->after, (double)(run_start_ns - m->start_ns) / 1e6);
    }
}

static void timer_new(int k)
{
    timer_st *m = &S.tm[k];
    if (m->t)
        return;
    errno = 0;
    FZ_CHECK(evl_timer_new(S.l, NULL, m) == NULL && errno == EINVAL, "evl_timer_new(fn NULL) did not fail EINVAL");
    *m = (timer_st){.t = evl_timer_new(S.l, on_timer, m)};
    FZ_CHECK(m->t != NULL, "evl_timer_new failed: errno %d", errno);
    FZ_CHECK(!evl_timer_pending(m->t) && evl_timer_loop(m->t) == S.l, "a new timer is pending, or of another loop");
    fz_trace("  timer %d: new", k);
}

static void timer_start(int k, uint8_t b)
{
    timer_st *m = &S.tm[k];
    if (!m->t)
        return;
    if (b == 0xff) { /* a time past 2^63 ms is refused, the timer unchanged */
        errno = 0;
        FZ_CHECK(evl_timer_start(m->t, UINT64_MAX, 0) == -1 && errno == EINVAL,
                 "evl_timer_start(2^64-1 ms) did not fail EINVAL");
        FZ_CHECK(evl_timer_pending(m->t) == m->armed, "timer %d: a refused evl_timer_start changed it", k);
        return;
    }
    m->after = b & 3;
    m->every = b >> 2 & 3;
    m->fired = 0;
    m->start_ns = now_ns();
    m->serial = ++S.arm_serial;
    FZ_CHECK(evl_timer_start(m->t, m->after, m->every) == 0, "evl_timer_start failed: errno %d", errno);
    m->armed = true;
    fz_trace("  timer %d: start %llu every %llu", k, (unsigned long long)m->after, (unsigned long long)m->every);
}

static void timer_stop(int k)
{
    timer_st *m = &S.tm[k];
    if (!m->t)
        return;
    evl_timer_stop(m->t);
    m->armed = false;
    FZ_CHECK(!evl_timer_pending(m->t), "timer %d: pending after evl_timer_stop", k);
    fz_trace("  timer %d: stop", k);
}

static void timer_free(int k)
{
    timer_st *m = &S.tm[k];
    evl_timer_free(m->t); /* NULL: nothing */
    m->t = NULL;
    m->armed = false;
    fz_trace("  timer %d: free", k);
}

/* evloop.h: "after_ms from its start and then every every_ms ... in
 * deadline order". The library counts whole ms of CLOCK_MONOTONIC from the
 * start (floor), so the n-th call comes after more than after + (n-1) *
 * every - 1 ms of our clock, read before the start. */
/* cppcheck-suppress constParameter ; the evl_timer_fn type fixes it */
static void on_timer(evl_timer *t, void *arg)
{
    timer_st *m = arg;
    int k = (int)(m - S.tm);
    FZ_CHECK(k >= 0 && k < MAX_TIMERS && m->t == t, "a timer callback with a wrong timer or argument");
    FZ_CHECK(S.depth == 0 && S.in_run && !S.freeing, "timer %d fired inside a callback or outside a run", k);
    FZ_CHECK(m->armed, "timer %d fired while stopped (or after its one call)", k);
    uint64_t now = now_ns(), due = m->after + m->fired * m->every;
    FZ_CHECK(now - m->start_ns + 1000000u > due * 1000000u,
             "timer %d: call %llu after %.3f ms, due at %llu ms from its start: early", k,
             (unsigned long long)m->fired + 1, (double)(now - m->start_ns) / 1e6, (unsigned long long)due);
    if (m->fired == 0) /* its deadline is known: armed earlier for no later goes first */
        for (int j = 0; j < MAX_TIMERS; j++) {
            const timer_st *o = &S.tm[j];
            FZ_CHECK(!(o != m && o->armed && o->fired == 0 && o->serial < m->serial && o->after <= m->after),
                     "timer %d (%llu ms) fired before timer %d (%llu ms, armed earlier): not in deadline order", k,
                     (unsigned long long)m->after, j, (unsigned long long)o->after);
        }
    m->fired++;
    if (m->every == 0)
        m->armed = false;
    fz_trace(" timer %d fires (call %llu)", k, (unsigned long long)m->fired);
    S.depth++;
    S.firing = m;
    if (scripted()) {
        uint8_t b = fz_u8(&S.in);
        switch (b >> 6) { /* on itself: stop, re-arm, free, or anything */
        case 0: timer_stop(k); break;
        case 1: timer_start(k, fz_u8(&S.in)); break;
        case 2: timer_free(k); break; /* t is gone: not touched below */
        default: act(NULL, fz_u8(&S.in)); break;
        }
    }
    S.firing = NULL;
    S.depth--;
}

static void do_wakeup(void)
{
    errno = 0;
    FZ_CHECK(evl_wakeup(S.l) == 0, "evl_wakeup failed: errno %d", errno);
    struct evl_stats st;
    evl_stats(S.l, &st);
    S.wakeup_iter = st.iterations;
    S.wakeups++;
    if (!S.wake_due) {
        S.wake_due = true;
        /* the eventfd is one more ready fd: epoll hands out a small batch in turn */
        S.wake_by = S.runs + (S.in_run ? 2 : 1) + (MAX_CONNS + MAX_PIPES + 3) / (unsigned)S.o.max_events;
    }
    fz_trace("  evl_wakeup (%llu since on_wakeup)", (unsigned long long)S.wakeups);
}

/* cppcheck-suppress constParameter ; the evl_handler callback type fixes it */
static void on_wakeup(evl_loop *l)
{
    FZ_CHECK(l == S.l && S.in_run && !S.freeing, "on_wakeup: wrong loop, outside a run or after evl_free");
    FZ_CHECK(S.depth == 0, "on_wakeup inside another callback (re-entrant)");
    struct evl_stats st;
    evl_stats(l, &st);
    FZ_CHECK(S.wake_iter != st.iterations, "on_wakeup twice in iteration %llu", (unsigned long long)st.iterations);
    /* A wakeup made in the iteration of the last on_wakeup may be seen by
     * the next one too (the eventfd was read before that call). */
    FZ_CHECK(S.wakeups > 0 || S.wakeup_iter == S.wake_iter, "on_wakeup without an evl_wakeup since the last one");
    S.wake_iter = st.iterations;
    S.wakeups = 0;
    S.wake_due = false;
    S.callbacks++;
    fz_trace(" on_wakeup");
    S.depth++;
    if (scripted())
        act(NULL, fz_u8(&S.in));
    S.depth--;
}

static void do_read_pause(conn_st *t)
{
    if (!t || !t->c)
        return;
    evl_read_pause(t->c);
    if (!t->rpaused && !t->h_closed) {
        t->rpaused = true;
        t->taken_at_rpause = model_taken(t);
    }
    fz_trace("  conn %d: evl_read_pause", idx(t));
}

static void do_read_resume(conn_st *t)
{
    if (!t || !t->c)
        return;
    evl_read_resume(t->c);
    fz_trace("  conn %d: evl_read_resume", idx(t));
    if (!t->rpaused)
        return;
    t->rpaused = false;
    t->quiet = false;
    size_t len;
    (void)evl_data(t->c, &len);
    /* "buffered input delivered on resume without new data" */
    if (len > 0 && !t->h_closed && !t->ended && t != S.reading)
        owe_read(t);
}

static void do_shutdown(conn_st *t, bool then_write)
{
    if (!t || !t->c)
        return;
    evl_shutdown(t->c);
    t->shut = true;
    fz_trace("  conn %d: evl_shutdown", idx(t));
    if (then_write) { /* "later writes fail with EPIPE" */
        errno = 0;
        int r = evl_write(t->c, "x", 1);
        FZ_CHECK(r == -1 && errno == EPIPE, "conn %d: a write after evl_shutdown gave %d errno %d", idx(t), r, errno);
    }
}

/* evl_foreach_conn: every open connection once, none closing or closed;
 * the walk's callback acts on each (closes, aborts, writes: the walk goes on). */
/* cppcheck-suppress constParameter ; evl_foreach_conn's callback type fixes it */
static void visit(evl_conn *c, void *arg)
{
    FZ_CHECK(arg == &S, "evl_foreach_conn passed a wrong argument");
    conn_st *s = st_of(c, "evl_foreach_conn");
    uint8_t bit = (uint8_t)(1u << (S.walks - 1));
    FZ_CHECK(!(s->visited & bit), "evl_foreach_conn visited conn %d twice", idx(s));
    FZ_CHECK(!s->h_closed && !s->ended, "evl_foreach_conn visited conn %d, which is closing or aborted", idx(s));
    s->visited |= bit;
    fz_trace("  foreach: conn %d", idx(s));
    if (scripted()) {
        uint8_t b = fz_u8(&S.in);
        if (b & 1)
            act(s, b >> 1);
    }
}

static void do_foreach(void)
{
    if (S.walks == 8)
        return; /* nested that deep: one bit per walk is all there is */
    uint8_t bit = (uint8_t)(1u << S.walks);
    int n = S.nconns; /* connections adopted meanwhile may or may not be visited */
    bool open[MAX_CONNS];
    for (int i = 0; i < n; i++) {
        S.cs[i].visited &= (uint8_t)~bit;
        open[i] = S.cs[i].c && !maybe_dead(&S.cs[i]);
    }
    fz_trace("  evl_foreach_conn");
    S.walks++;
    evl_foreach_conn(S.l, visit, &S);
    S.walks--;
    for (int i = 0; i < n; i++)
        FZ_CHECK(!open[i] || (S.cs[i].visited & bit) || maybe_dead(&S.cs[i]), /* (the walk may close it first) */
                 "evl_foreach_conn skipped conn %d, which is open", i);
}

static void do_set_idle(conn_st *t, uint8_t b)
{
    if (!t || !t->c)
        return;
    static const int choice[8] = {-2, -1, 0, 1, 2, 3, -1, 0};
    int ms = choice[b & 7];
    if (ms > 0) /* before the call: its timer may fire at once */
        latent(t, R(EVL_CLOSE_IDLE));
    errno = 0;
    int r = evl_set_idle_timeout(t->c, ms);
    fz_trace("  conn %d: evl_set_idle_timeout(%d) -> %d errno %d", idx(t), ms, r, r ? errno : 0);
    if (ms < -1 || t->h_closed || (t->stop_closed && !S.in_on_stop)) {
        FZ_CHECK(r == -1 && errno == EINVAL, "conn %d: evl_set_idle_timeout(%d)%s gave %d errno %d", idx(t), ms,
                 ms < -1 ? "" : " on a closing connection", r, errno);
        return;
    }
    FZ_CHECK(r == 0 || (errno == EINVAL && maybe_dead(t)), "conn %d: evl_set_idle_timeout(%d) failed: errno %d",
             idx(t), ms, errno);
    if (r == 0) {
        t->idle_cur = ms;
        if (ms > 0)
            t->idle_maybe = true;
    }
}

static void do_set_wbuf_max(conn_st *t, uint8_t b, size_t n)
{
    if (!t || !t->c)
        return;
    size_t p = evl_pending(t->c), bytes;
    switch (b & 3) {
    case 0: bytes = 0; break;
    case 1: bytes = p + (b >> 2 & 3) - 1; break; /* p-1 (refused), p, p+1, p+2 */
    default: bytes = S.o.wbuf_high + n; break;
    }
    if (p == 0 && (b & 3) == 1 && bytes == SIZE_MAX)
        bytes = 1;
    errno = 0;
    int r = evl_set_wbuf_max(t->c, bytes);
    fz_trace("  conn %d: evl_set_wbuf_max(%zu) with %zu pending -> %d", idx(t), bytes, p, r);
    if (bytes && bytes < p) {
        FZ_CHECK(r == -1 && errno == EINVAL, "conn %d: evl_set_wbuf_max(%zu) with %zu pending gave %d errno %d", idx(t),
                 bytes, p, r, errno);
        return;
    }
    FZ_CHECK(r == 0, "conn %d: evl_set_wbuf_max(%zu) with %zu pending failed: errno %d", idx(t), bytes, p, errno);
    t->wbuf_max = bytes;
}

/* The fuzzer's own listeners for evl_connect, made once per process in a
 * private directory: a unix listener (the fuzzer accepts: it is the
 * peer), a bound socket that does not listen (refused), a TCP port bound
 * and not listening (refused asynchronously, or at once). */
static struct {
    char dir[64], path[96], dead[96], none[96];
    int lfd, deadfd, tcpfd, tcpport;
} X = {.lfd = -1};

static void remove_dir(void)
{
    (void)unlink(X.path);
    (void)unlink(X.dead);
    (void)rmdir(X.dir);
}

/* The directories of fuzz_loop processes that ended without their atexit
 * (a failed check aborts): /tmp/evl-fuzz-<pid> whose process is gone. */
static void remove_stale_dirs(void)
{
    DIR *d = opendir("/tmp");
    if (!d)
        return;
    for (const struct dirent *e; (e = readdir(d)) != NULL;) {
        int pid;
        char rest;
        if (sscanf(e->d_name, "evl-fuzz-%d%c", &pid, &rest) != 1 || pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        char p[sizeof "/tmp//dead" + sizeof e->d_name]; /* any d_name fits */
        static const char *const names[] = {"l", "dead", ""};
        for (int i = 0; i < 3; i++) {
            (void)snprintf(p, sizeof p, "/tmp/%s/%s", e->d_name, names[i]);
            (void)(i < 2 ? unlink(p) : rmdir(p));
        }
    }
    (void)closedir(d);
}

static void make_targets(void)
{
    if (X.lfd >= 0)
        return;
    remove_stale_dirs();
    (void)snprintf(X.dir, sizeof X.dir, "/tmp/evl-fuzz-%d", (int)getpid());
    FZ_CHECK(mkdir(X.dir, 0700) == 0, "mkdir %s failed: errno %d", X.dir, errno);
    (void)snprintf(X.path, sizeof X.path, "%s/l", X.dir);
    (void)snprintf(X.dead, sizeof X.dead, "%s/dead", X.dir);
    (void)snprintf(X.none, sizeof X.none, "%s/none", X.dir);
    (void)atexit(remove_dir);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    X.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    (void)snprintf(a.sun_path, sizeof a.sun_path, "%s", X.path);
    FZ_CHECK(X.lfd >= 0 && bind(X.lfd, (struct sockaddr *)&a, sizeof a) == 0 && listen(X.lfd, 64) == 0,
             "the connect target: errno %d", errno);
    X.deadfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    (void)snprintf(a.sun_path, sizeof a.sun_path, "%s", X.dead);
    FZ_CHECK(X.deadfd >= 0 && bind(X.deadfd, (struct sockaddr *)&a, sizeof a) == 0, "the dead target: errno %d",
             errno);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof in;
    X.tcpfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FZ_CHECK(X.tcpfd >= 0 && bind(X.tcpfd, (struct sockaddr *)&in, sizeof in) == 0 &&
                 getsockname(X.tcpfd, (struct sockaddr *)&in, &len) == 0,
             "the refused TCP port: errno %d", errno);
    X.tcpport = ntohs(in.sin_port);
}

static const evl_handler H2;

static void do_connect(uint8_t b)
{
    errno = 0;
    switch (b & 7) {
    case 0: /* refused at once: nothing made, nothing leaked */
        FZ_CHECK(evl_connect(S.l, X.dead, 0, 0, NULL, NULL) == NULL && errno == ECONNREFUSED,
                 "evl_connect to a socket nobody listens on: errno %d", errno);
        FZ_CHECK(evl_connect(S.l, X.none, 0, 0, NULL, NULL) == NULL && errno == ENOENT,
                 "evl_connect to a missing path: errno %d", errno);
        return;
    case 1: /* bad arguments: EINVAL */
        FZ_CHECK(evl_connect(S.l, "127.0.0.1", 65536, 0, NULL, NULL) == NULL && errno == EINVAL &&
                     evl_connect(S.l, "localhost", 80, 0, NULL, NULL) == NULL && errno == EINVAL &&
                     evl_connect(S.l, X.path, 0, -1, NULL, NULL) == NULL && errno == EINVAL &&
                     evl_connect(S.l, NULL, 0, 0, NULL, NULL) == NULL && errno == EINVAL,
                 "evl_connect with a bad address, port or timeout did not fail EINVAL");
        return;
    default: break;
    }
    if (S.nconns >= MAX_CONNS)
        return;
    conn_st *s = &S.cs[S.nconns];
    bool tcp = (b & 7) == 7;
    int timeout = (b & 0x10) ? (tcp ? 1 + (b >> 5 & 3) : LONG_MS) : 0;
    *s = (conn_st){.peer = -1, .wbuf_max = S.o.wbuf_max, .idle_cur = -1, .connecting = true, .h2 = (b & 8) != 0,
                   .h2_old = (b & 8) && (b & 0x80)};
    s->in_stream = 2u * (uint32_t)idx(s) + 1;
    s->out_stream = 2u * (uint32_t)idx(s) + 2;
    const char *addr = tcp ? "127.0.0.1" : X.path;
    evl_conn *c = s->h2_old ? (evl_connect)(S.l, addr, X.tcpport, timeout, &H2, s) /* the 1.1 entry */
                            : evl_connect(S.l, addr, X.tcpport, timeout, s->h2 ? &H2 : NULL, s);
    fz_trace("  conn %d: evl_connect %s timeout %d -> %p errno %d", idx(s), tcp ? "tcp (refused)" : "unix", timeout,
             (void *)c, c ? 0 : errno);
    if (tcp && !c) {
        FZ_CHECK(errno == ECONNREFUSED, "evl_connect to a closed TCP port: errno %d", errno);
        return;
    }
    FZ_CHECK(c != NULL, "evl_connect to the fuzzer's listener failed: errno %d", errno);
    S.nconns++;
    S.entered++;
    s->c = c;
    s->fd = evl_fd(c);
    s->doomed = S.freeing || S.stopping; /* as for evl_adopt: the stop or evl_free closes it too */
    if (s->doomed)
        cause(s, R(EVL_CLOSE_STOP) | (S.stopping ? close_reasons() : 0));
    FZ_CHECK(evl_udata(c) == s && evl_conn_of(S.l, s->fd) == c && evl_loop_of(c) == S.l && evl_pending(c) == 0 &&
                 evl_close_reason(c) == EVL_CLOSE_OPEN,
             "an evl_connect connection's accessors disagree");
    if (tcp) {
        s->tcp = true;
        s->tcp_timeout = timeout > 0;
        s->peer_closed = true; /* no peer: nothing to read, nothing to send */
        cause(s, R(EVL_CLOSE_CONNECT));
        return;
    }
    s->peer = accept4(X.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    FZ_CHECK(s->peer >= 0, "accept on the fuzzer's listener after evl_connect: errno %d", errno);
    set_bufs(s->peer, b >> 4 & 7);
    set_bufs(s->fd, b >> 4 & 7);
}

/* cppcheck-suppress constParameter ; the evl_handler callback type fixes it */
static void on_connect(evl_conn *c, int err)
{
    conn_st *s = st_of(c, "on_connect");
    check_handler(s, "on_connect");
    FZ_CHECK(S.depth == 0 && S.in_run, "on_connect for conn %d inside a callback or outside a run", idx(s));
    FZ_CHECK(s->connecting, "on_connect for conn %d, which is not connecting (or twice)", idx(s));
    FZ_CHECK(!s->h_closed && !s->ended, "on_connect for conn %d after evl_close/evl_abort", idx(s));
    if (s->tcp)
        FZ_CHECK(err == ECONNREFUSED || (err == ETIMEDOUT && s->tcp_timeout),
                 "conn %d: on_connect to a closed TCP port with errno %d", idx(s), err);
    else
        FZ_CHECK(err == 0, "conn %d: on_connect to a listening unix socket with errno %d", idx(s), err);
    fz_trace(" on_connect conn %d: %d", idx(s), err);
    s->connecting = false;
    s->connect_err = err;
    if (err) {
        s->ended = true; /* "on_close follows a failure" */
        return;
    }
    S.depth++;
    if (scripted())
        act(s, fz_u8(&S.in));
    S.depth--;
}

/* evloop.h: on_eof "once every byte before it was delivered to on_read.
 * Called once, from the loop"; never while reading is paused or closing. */
static void on_eof(evl_conn *c)
{
    conn_st *s = st_of(c, "on_eof");
    check_handler(s, "on_eof");
    FZ_CHECK(S.depth == 0 && S.in_run, "on_eof for conn %d inside a callback or outside a run", idx(s));
    FZ_CHECK(s->eofs++ == 0, "on_eof for conn %d twice", idx(s));
    FZ_CHECK(s->peer_shut || s->peer_closed, "on_eof for conn %d, whose peer sent no EOF", idx(s));
    FZ_CHECK(!s->h_closed && !s->ended, "on_eof for conn %d after evl_close/evl_abort", idx(s));
    FZ_CHECK(!s->rpaused, "on_eof for conn %d while its reading is paused", idx(s));
    FZ_CHECK(s->shown == s->sent || s->peer_closed,
             "on_eof for conn %d before all input was delivered: %llu of %llu bytes shown", idx(s),
             (unsigned long long)s->shown, (unsigned long long)s->sent);
    FZ_CHECK(evl_peer_eof(c), "on_eof for conn %d, yet evl_peer_eof is false", idx(s));
    fz_trace(" on_eof conn %d", idx(s));
    S.depth++;
    if (S.ext && scripted()) /* pass the half-close on, hold, reply, close... */
        act(s, fz_u8(&S.in));
    S.depth--;
    if (s->c == c && evl_pending(c) == 0 && s->holds == 0 && !s->rpaused)
        s->eof_closes = true; /* check_eof_done kills it right after this returns */
}

static void on_read(evl_conn *c);
static void on_drain(evl_conn *c);
static void on_close(evl_conn *c);
static size_t on_data(evl_conn *c, const char *data, size_t len);
/* H2 has on_data and on_read: on_read only when it was set through the old
 * entry, which must not see on_data (evloop.h, evl_set_handler). */
static void on_read2(evl_conn *c)
{
    S.via2 = true;
    conn_st *s = st_of(c, "on_read");
    FZ_CHECK(s->h2_old, "conn %d: on_read through a handler with on_data, set by the sized entry", idx(s));
    on_read(c);
}
static size_t on_data2(evl_conn *c, const char *data, size_t len)
{
    S.via2 = true;
    conn_st *s = st_of(c, "on_data");
    FZ_CHECK(!s->h2_old, "conn %d: on_data through a handler set by the old entry (read past its struct)", idx(s));
    return on_data(c, data, len);
}
static void on_drain2(evl_conn *c) { S.via2 = true; on_drain(c); }
static void on_close2(evl_conn *c) { S.via2 = true; on_close(c); }
static void on_eof2(evl_conn *c) { S.via2 = true; on_eof(c); }
static void on_connect2(evl_conn *c, int err) { S.via2 = true; on_connect(c, err); }

/* A per-connection handler: the same callbacks, known by the wrapper. */
static const evl_handler H2 = {.on_read = on_read2, .on_drain = on_drain2, .on_close = on_close2,
                               .on_eof = on_eof2, .on_connect = on_connect2, .on_data = on_data2};

static void do_remove_listener(int k)
{
    if (S.lfd[k] < 0)
        return;
    errno = 0;
    int r = evl_remove_listener(S.l, S.lfd[k]);
    fz_trace("  evl_remove_listener(%d) -> %d errno %d", k, r, r ? errno : 0);
    if (S.listening[k]) {
        FZ_CHECK(r == 0, "evl_remove_listener of a registered listener: errno %d", errno);
        S.listening[k] = false;
        S.unlisten_by[k] = S.in_run ? S.runs + 1 : 0;
    } else {
        FZ_CHECK(r == -1 && errno == ENOENT, "evl_remove_listener of a removed listener: %d errno %d", r, errno);
    }
}

/* The calls issue 13 added, chosen by b. */
static void ext_act(conn_st *self, uint8_t b)
{
    conn_st *t = self ? self : pick(fz_u8(&S.in));
    int k = b >> 4 & 3;
    switch (b & 15) {
    case 0: timer_new(k); break;
    case 1: timer_new(k); timer_start(k, fz_u8(&S.in)); break;
    case 2: timer_stop(k); break;
    case 3: timer_free(k); break;
    case 4: do_wakeup(); break;
    case 5: do_read_pause(t); break;
    case 6: do_read_resume(t); break;
    case 7: do_shutdown(t, b & 0x40); break;
    case 8: do_foreach(); break;
    case 9: do_set_idle(t, fz_u8(&S.in)); break;
    case 10: {
        uint8_t v = fz_u8(&S.in);
        do_set_wbuf_max(t, v, fz_size(&S.in, 65535));
        break;
    }
    case 11: do_connect(fz_u8(&S.in)); break;
    case 12:
        if (t && t->c) {
            t->h2 = (b & 0x40) != 0;
            t->h2_old = t->h2 && (b & 0x80); /* the 1.1 entry: H2 read without on_data */
            if (t->h2_old)
                (evl_set_handler)(t->c, &H2);
            else
                evl_set_handler(t->c, t->h2 ? &H2 : NULL);
            fz_trace("  conn %d: evl_set_handler(%s)", idx(t),
                     t->h2_old ? "second, old entry" : t->h2 ? "second" : "NULL: the loop's");
        }
        break;
    case 13: do_remove_listener(k & 1); break;
    case 14: /* pause, reply, then resume in the same callback */
        do_read_pause(t);
        do_write(t, fz_size(&S.in, MAX_IO), false, 1);
        if (b & 0x40)
            do_read_resume(t);
        break;
    default: /* close reasons: names, and OPEN while open */
        FZ_CHECK(strcmp(evl_close_reason_name(-1), "?") == 0 && strcmp(evl_close_reason_name(11), "?") == 0 &&
                     strcmp(evl_close_reason_name(EVL_CLOSE_CONNECT), "connect") == 0,
                 "evl_close_reason_name of unknown codes");
        if (t && t->c && !maybe_dead(t))
            FZ_CHECK(evl_close_reason(t->c) == EVL_CLOSE_OPEN && evl_close_errno(t->c) == 0,
                     "conn %d: open, yet evl_close_reason %d", idx(t), evl_close_reason(t->c));
        break;
    }
}

/* ---- callbacks ---------------------------------------------------------- */

static void read_body(conn_st *s, evl_conn *c);

static void on_read(evl_conn *c)
{
    conn_st *s = st_of(c, "on_read");
    FZ_CHECK(S.depth == 0, "on_read inside another callback (re-entrant)");
    conn_st *outer = S.reading;
    FZ_CHECK(outer == NULL, "on_read for conn %d inside on_read for conn %d", idx(s), outer ? idx(outer) : -1);
    S.depth++;
    S.reading = s;
    read_body(s, c);
    S.reading = NULL;
    S.depth--;
}

/* on_read's checks and choices, with what it consumes split between
 * evl_consume inside and the returned count, which the loop consumes after
 * it returns (evloop.h, on_data). */
static size_t on_data(evl_conn *c, const char *data, size_t len)
{
    conn_st *s = st_of(c, "on_data");
    size_t vlen;
    const char *v = evl_data(c, &vlen);
    FZ_CHECK(v == data && vlen == len, "conn %d: on_data's input (%zu bytes) is not evl_data's (%zu)", idx(s), len,
             vlen);
    FZ_CHECK(S.depth == 0, "on_data inside another callback (re-entrant)");
    FZ_CHECK(S.reading == NULL, "on_data for conn %d inside on_read for conn %d", idx(s),
             S.reading ? idx(S.reading) : -1);
    S.depth++;
    S.reading = s;
    S.data_mode = true;
    S.data_ret = 0;
    read_body(s, c);
    S.data_mode = false;
    S.reading = NULL;
    S.depth--;
    return S.data_ret;
}

static void read_body(conn_st *s, evl_conn *c)
{
    check_handler(s, "on_read");
    FZ_CHECK(!s->h_closed && !s->ended, "on_read for conn %d after evl_close/evl_abort", idx(s));
    FZ_CHECK(!s->rpaused, "on_read for conn %d while its reading is paused (evl_read_pause)", idx(s));
    /* Paused at wbuf_high, resumed at wbuf_low, by the bytes exchanged: the
     * kernel took enough that at most wbuf_low is left in the loop. */
    if (s->paused && pending_known(s)) {
        uint64_t p = model_pending(s);
        FZ_CHECK(p <= S.o.wbuf_low,
                 "on_read for conn %d, paused at wbuf_high %zu, with %llu pending > wbuf_low %zu", idx(s),
                 S.o.wbuf_high, (unsigned long long)p, S.o.wbuf_low);
        s->paused = false;
        s->quiet = false;
    }
    FZ_CHECK(evl_pending(c) < S.o.wbuf_high || evl_pending(c) <= S.o.wbuf_low,
             "on_read for conn %d with %zu pending >= wbuf_high %zu", idx(s), evl_pending(c), S.o.wbuf_high);
    size_t len;
    const uint8_t *d = (const uint8_t *)evl_data(c, &len);
    FZ_CHECK(d && len > 0, "on_read for conn %d with no input", idx(s));
    FZ_CHECK(len <= S.o.rbuf_max, "conn %d: %zu bytes of input > rbuf_max %zu", idx(s), len, S.o.rbuf_max);
    FZ_CHECK(s->seen + len <= s->sent, "conn %d: %zu bytes shown, the peer sent %llu of which %llu consumed",
             idx(s), len, (unsigned long long)s->sent, (unsigned long long)s->seen);
    size_t bad = fz_mismatch(d, len, s->in_stream, s->seen);
    FZ_CHECK(bad == len, "conn %d: input byte %llu is not what the peer sent", idx(s),
             (unsigned long long)(s->seen + bad));
    fz_trace(" on_read conn %d: %zu bytes at %llu", idx(s), len, (unsigned long long)s->seen);
    /* "If it consumed nothing, the loop waits for more data": not the same
     * input again (unless woken, or resumed from the wbuf_high pause) */
    FZ_CHECK(!s->quiet || s->seen + len > s->shown,
             "conn %d: on_read again with the same %zu bytes after consuming nothing, no new input", idx(s), len);
    s->shown = s->seen + len;
    s->reads++;
    s->read_due = false;

    uint8_t b = scripted() ? fz_u8(&S.in) : 1;
    size_t k;
    switch (b & 3) {
    case 0: k = 0; break;
    case 1: k = len; break;
    default: k = fz_u16(&S.in) % (len + 1); break;
    }
    /* "n larger than the input drops all": sometimes ask for more */
    size_t ask = k == len ? len + (b >> 4) : k;
    size_t gone = k; /* consumed before act() below */
    if (S.data_mode) { /* on_data: some inside, the rest by the return */
        gone = (b & 4) ? k / 2 : 0;
        evl_consume(c, gone);
        S.data_ret = ask - gone;
        fz_trace("  consume %zu, %zu of it by on_data's return", k, k - gone);
    } else {
        fz_trace("  consume %zu", k);
        evl_consume(c, ask);
    }
    size_t rest;
    d = (const uint8_t *)evl_data(c, &rest);
    FZ_CHECK(rest == len - gone, "conn %d: consume %zu of %zu left %zu", idx(s), gone, len, rest);
    FZ_CHECK(rest == 0 || fz_mismatch(d, rest, s->in_stream, s->seen + gone) == rest,
             "conn %d: input after consume is not the rest of the stream", idx(s));
    s->seen += k;
    s->quiet = k == 0;

    if (scripted())
        act(s, fz_u8(&S.in));
    if (s->h_closed || s->ended)
        return;
    if (k == 0 && len >= S.o.rbuf_max && !s->rpaused) { /* "never counts against rbuf_max while paused" */
        /* Nothing consumed from a full buffer: an overflow close, unless a
         * write failed in this call and the failing send aborted it. */
        fz_trace("  conn %d: full and nothing consumed: overflow due", idx(s));
        cause(s, R(EVL_CLOSE_OVERFLOW));
        s->overflow_maybe = true;
        if (s->write_failed) {
            S.overflows_maybe++;
        } else {
            s->ended = true;
            S.overflows++;
        }
    } else if (s->write_failed) {
        /* nothing owed: the connection may be gone */
    } else if (k > 0 && k < len && !s->paused) {
        owe_read(s); /* pipelined input is never stranded */
    }
}

static void on_drain(evl_conn *c)
{
    conn_st *s = st_of(c, "on_drain");
    check_handler(s, "on_drain");
    FZ_CHECK(S.depth == 0, "on_drain inside another callback (re-entrant)");
    FZ_CHECK(!s->h_closed && !s->ended, "on_drain for conn %d, which is closing", idx(s));
    uint64_t p = pending_known(s) ? model_pending(s) : evl_pending(c);
    FZ_CHECK(p <= S.o.wbuf_low, "on_drain for conn %d with %llu pending > wbuf_low %zu", idx(s),
             (unsigned long long)p, S.o.wbuf_low);
    FZ_CHECK(s->drain_due, "on_drain for conn %d, whose pending never went above wbuf_low", idx(s));
    s->drain_due = false;
    note_drained(s);
    fz_trace(" on_drain conn %d: pending %zu", idx(s), evl_pending(c));
    S.depth++;
    if (scripted())
        act(s, fz_u8(&S.in)); /* a streaming producer writes its next chunk here */
    S.depth--;
}

static void on_close(evl_conn *c)
{
    conn_st *s = evl_udata(c) ? evl_udata(c) : attach(c);
    FZ_CHECK(s >= S.cs && s < S.cs + S.nconns, "on_close: connection with unknown udata");
    FZ_CHECK(s->c == c && s->closes == 0, "on_close for conn %d called twice", idx(s));
    FZ_CHECK(S.depth == 0, "on_close for conn %d inside another callback (re-entrant)", idx(s));
    check_handler(s, "on_close");
    /* evloop.h: the first cause wins (a zero close deadline that drops
     * bytes: TIMEOUT); the errno behind RESET and CONNECT */
    int why = evl_close_reason(c), err = evl_close_errno(c);
    fz_trace(" on_close conn %d: %s (errno %d)", idx(s), evl_close_reason_name(why), err);
    FZ_CHECK(why > EVL_CLOSE_OPEN && why <= EVL_CLOSE_CONNECT && (s->causes & R(why)),
             "conn %d closed as '%s', which nothing in the script can cause (causes 0x%x)", idx(s),
             evl_close_reason_name(why), s->causes);
    FZ_CHECK(!s->first_sure || (s->first & R(why)),
             "conn %d closed as '%s', but the first cause was 0x%x (first cause wins)", idx(s),
             evl_close_reason_name(why), s->first);
    FZ_CHECK(why == EVL_CLOSE_RESET ? err != 0 : why == EVL_CLOSE_CONNECT ? err == s->connect_err && err : err == 0,
             "conn %d closed as '%s' with errno %d (on_connect said %d)", idx(s), evl_close_reason_name(why), err,
             s->connect_err);
    FZ_CHECK(why != EVL_CLOSE_EOF || !s->rpaused || s->eofs > 0, "conn %d closed at EOF while its reading is paused",
             idx(s));
    FZ_CHECK(why != EVL_CLOSE_CONNECT || !s->connecting, "conn %d closed as 'connect' before on_connect", idx(s));
    S.idle_closes += why == EVL_CLOSE_IDLE;
    if (S.stopping) { /* inside evl_run: SIGTERM/SIGINT blocked, read by a signalfd */
        sigset_t now;
        (void)sigprocmask(SIG_BLOCK, NULL, &now);
        FZ_CHECK(sigismember(&now, SIGTERM) && sigismember(&now, SIGINT), "SIGTERM/SIGINT not blocked in evl_run");
    }
    fz_trace(" on_close conn %d: pending %zu", idx(s), evl_pending(c));
    s->closes++;
    S.closed++;
    S.callbacks++;
    if (S.stopping)
        s->stop_closed = true; /* closed by the stop: a flush cut short by close_timeout_ms 0 */
    FZ_CHECK(evl_fd(c) == s->fd && fcntl(s->fd, F_GETFD) >= 0,
             "on_close for conn %d: its fd is already closed", idx(s));
    errno = 0;
    FZ_CHECK(evl_write(c, "x", 1) == -1 && errno == EPIPE, "conn %d: a write in on_close did not fail EPIPE",
             idx(s));
    bool handler = s->h_closed || s->ended || s->write_failed || s->overflow_maybe || s->idle_maybe;
    FZ_CHECK(handler || s->peer_shut || s->peer_closed || S.freeing || S.stopping,
             "conn %d closed without a cause: no close, abort, error or overflow; the peer is open", idx(s));
    if (s->h_closed && S.o.close_timeout_ms == LONG_MS && !s->ended && !s->write_failed &&
        (evl_pending(c) > 0 || !s->peer_shut) && !s->peer_closed && !S.freeing && !S.stopping) {
        /* A graceful close ends when all is flushed and the peer's EOF is
         * in, or at its deadline, which is a minute away (the bug this
         * caught: fuzz/corpus/fuzz_loop/regress-close-deadline). */
        fz_fail("conn %d: evl_close ended with %zu bytes pending, before its flush and the peer's EOF, long before "
                    "close_timeout_ms (%d ms)", idx(s), evl_pending(c), S.o.close_timeout_ms);
    }
    /* (eof_closes: closed as on_eof returned with no hold; a hold taken
     * after that, by a later callback, came too late: evloop.h, on_eof) */
    FZ_CHECK(handler || s->holds == 0 || s->eof_closes || s->peer_closed || S.freeing || S.stopping,
             "conn %d closed at the peer's EOF while the handler holds it (%u holds)", idx(s), s->holds);
    if (!handler && !S.freeing && !S.stopping && !s->peer_closed) {
        /* Closed after the peer's EOF: all input shown, all replies out. */
        FZ_CHECK(s->shown == s->sent, "conn %d closed at EOF with input never shown: %llu of %llu bytes",
                 idx(s), (unsigned long long)s->shown, (unsigned long long)s->sent);
        FZ_CHECK(evl_pending(c) == 0, "conn %d closed at EOF with %zu bytes unsent", idx(s), evl_pending(c));
    }
    S.depth++;
    if (scripted()) { /* on its own connection (writes fail EPIPE), or others */
        uint8_t b = fz_u8(&S.in);
        act(b & 0x80 ? s : NULL, fz_u8(&S.in));
        FZ_CHECK(s->c == c && evl_udata(c) == s, "conn %d: its udata changed inside on_close", idx(s));
    }
    S.depth--;
    s->c = NULL;
    s->read_due = false;
}

/* cppcheck-suppress constParameter ; the evl_handler callback type fixes it */
static void on_fd(evl_loop *l, int fd)
{
    FZ_CHECK(l == S.l && !S.freeing, "on_fd: wrong loop, or after evl_free");
    pipe_st *p = NULL;
    for (int i = 0; i < MAX_PIPES; i++)
        if (S.ps[i].on && S.ps[i].r == fd)
            p = &S.ps[i];
    FZ_CHECK(p != NULL, "on_fd for fd %d, which is not a registered extra fd", fd);
    S.callbacks++;
    fz_trace(" on_fd %d", fd);
    /* Level-triggered and only we read it: it must be readable now, or the
     * event was stale (for a pipe dropped earlier in this batch). */
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    FZ_CHECK(poll(&pf, 1, 0) == 1, "on_fd for fd %d, which is not readable: a stale event", fd);
    FZ_CHECK(S.depth == 0, "on_fd inside another callback");
    p->due = false;
    uint8_t tmp[512];
    ssize_t r;
    /* Sometimes read only a part: level-triggered, it is reported again. */
    size_t part = scripted() ? fz_u8(&S.in) % 4 : 0;
    if (part) {
        r = read(fd, tmp, part * 8);
        if (r > 0 && poll(&pf, 1, 0) == 1 && !(pf.revents & POLLHUP)) {
            p->due = true;
            /* next run; with a small max_events epoll hands out the ready
             * fds in turn: at most 9 of ours, max_events a run */
            p->due_by = S.runs + 2 + (MAX_CONNS + MAX_PIPES + 1 + S.o.max_events - 1) / S.o.max_events;
            fz_trace("  on_fd %d: read %zd, more left", fd, r);
        }
    } else {
        while ((r = read(fd, tmp, sizeof tmp)) > 0)
            ;
        if (r == 0) { /* the writer is gone: unregister, or level triggering spins */
            drop_pipe(p);
            return;
        }
    }
    S.depth++;
    if (scripted())
        act(NULL, fz_u8(&S.in)); /* e.g. a deferred reply to a connection */
    S.depth--;
}

/* cppcheck-suppress constParameter ; the evl_handler callback type fixes it */
static void on_tick(evl_loop *l)
{
    FZ_CHECK(l == S.l && !S.freeing && S.in_run, "on_tick: wrong loop, after evl_free or outside a run");
    FZ_CHECK(S.o.tick_ms > 0, "on_tick with tick_ms 0");
    FZ_CHECK(S.ticks_at_run == UINT64_MAX || S.ticks == S.ticks_at_run, "on_tick twice in one iteration");
    FZ_CHECK(S.depth == 0, "on_tick inside another callback (re-entrant)");
    S.ticks++;
    fz_trace(" on_tick");
    S.depth++;
    if (scripted())
        act(NULL, fz_u8(&S.in)); /* deferred replies, closes, adopts... */
    S.depth--;
}

/* cppcheck-suppress constParameter ; the evl_handler callback type fixes it */
static void on_stop(evl_loop *l)
{
    FZ_CHECK(l == S.l && S.stopping, "on_stop outside a stop");
    FZ_CHECK(S.depth == 0, "on_stop inside another callback (re-entrant)");
    FZ_CHECK(S.stops++ == 0, "on_stop twice in one evl_run");
    FZ_CHECK(evl_stopping(l), "on_stop while evl_stopping is false");
    fz_trace(" on_stop");
    S.in_on_stop = true;
    S.depth++;
    if (scripted()) /* last words to a connection, adopt, re-enter (EBUSY)... */
        act(NULL, fz_u8(&S.in));
    S.depth--;
    S.in_on_stop = false;
}

static bool on_accept(evl_conn *c)
{
    conn_st *s = identify(evl_fd(c));
    FZ_CHECK(s != NULL, "on_accept for a connection nobody made (or an adopted one)");
    FZ_CHECK(S.listening[s->lst], "conn %d accepted from a listener that is not registered", idx(s));
    s->queued = false;
    FZ_CHECK(S.depth == 0, "on_accept inside another callback (re-entrant)");
    S.callbacks++;
    struct evl_stats st;
    evl_stats(S.l, &st);
    FZ_CHECK(!S.o.max_conns || st.conns < S.o.max_conns, "on_accept with %llu connections, max_conns %u",
             (unsigned long long)st.conns, S.o.max_conns);
    FZ_CHECK(evl_udata(c) == NULL && evl_conn_of(S.l, evl_fd(c)) == c && evl_pending(c) == 0,
             "a new connection's accessors disagree");
    s->fd = evl_fd(c);
    uint8_t b = scripted() ? fz_u8(&S.in) : 0;
    if (b % 4 == 3) { /* refused: closed at once, and no on_close */
        fz_trace(" on_accept conn %d: refused", idx(s));
        s->refused = true;
        S.refusals++;
        return false;
    }
    fz_trace(" on_accept conn %d: fd %d", idx(s), s->fd);
    set_bufs(s->fd, b >> 4);
    evl_set_udata(c, s);
    s->c = c;
    S.entered++;
    S.depth++;
    if (b & 4) /* on the new connection (a greeting, a close) or others */
        act(b & 8 ? s : NULL, fz_u8(&S.in));
    S.depth--;
    return true;
}

/* After a run. A waiting connection whose peer sees the end of the
 * stream was accepted and closed at once: refused by max_conns (no
 * callback). With on_accept NULL, connections accepted and kept that no
 * callback showed yet are found by their fds. */
static void sync_refusals(void)
{
    if (S.no_accept)
        for (int fd = 0; fd < 256; fd++) {
            evl_conn *c = evl_conn_of(S.l, fd);
            if (c && !evl_udata(c))
                (void)attach(c);
        }
    for (int i = 0; i < S.nconns; i++) {
        conn_st *s = &S.cs[i];
        struct pollfd pf = {.fd = s->peer, .events = POLLRDHUP};
        if (s->queued && poll(&pf, 1, 0) == 1 && (pf.revents & (POLLRDHUP | POLLHUP))) {
            fz_trace("  conn %d: refused by max_conns", i);
            s->queued = false;
            s->refused = true;
            S.refusals++;
        }
    }
    /* a peer we closed cannot tell: any of those is as good as another */
    struct evl_stats st;
    evl_stats(S.l, &st);
    for (int i = 0; i < S.nconns && st.rejected > S.refusals; i++) {
        conn_st *s = &S.cs[i];
        if (s->queued && s->peer < 0) {
            s->queued = false;
            s->refused = true;
            S.refusals++;
        }
    }
}

static void listen_unix(int k)
{
    static unsigned serial;
    S.lfd[k] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    FZ_CHECK(S.lfd[k] >= 0, "socket failed");
    struct sockaddr_un *a = &S.laddr[k];
    a->sun_family = AF_UNIX;
    /* abstract: no file to clean up, and unique per process and input */
    int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "evl-fuzz-%d-%u", (int)getpid(), serial++);
    S.laddr_len[k] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    FZ_CHECK(bind(S.lfd[k], (struct sockaddr *)a, S.laddr_len[k]) == 0 && listen(S.lfd[k], 2 * MAX_CONNS) == 0,
             "bind/listen failed: errno %d", errno);
    FZ_CHECK(evl_add_listener(S.l, S.lfd[k]) == 0, "evl_add_listener failed: errno %d", errno);
    S.listening[k] = true;
}

static void peer_connect(void)
{
    uint8_t b = fz_u8(&S.in);
    int k = S.lfd[1] >= 0 && (b & 0x10) ? 1 : 0;
    if (S.lfd[k] < 0 || S.nconns >= MAX_CONNS)
        return;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    FZ_CHECK(fd >= 0, "socket failed");
    conn_st *s = &S.cs[S.nconns];
    *s = (conn_st){.peer = fd, .fd = -1, .queued = true, .lst = k, .wbuf_max = S.o.wbuf_max, .idle_cur = -1};
    /* autobind: a unique abstract address, the accepted end's peer name */
    struct sockaddr_un any = {.sun_family = AF_UNIX};
    s->name_len = sizeof s->name;
    FZ_CHECK(bind(fd, (struct sockaddr *)&any, sizeof(sa_family_t)) == 0 &&
                 getsockname(fd, (struct sockaddr *)&s->name, &s->name_len) == 0,
             "autobind failed: errno %d", errno);
    FZ_CHECK(connect(fd, (struct sockaddr *)&S.laddr[k], S.laddr_len[k]) == 0, "connect failed: errno %d", errno);
    set_bufs(fd, b & 15u);
    S.nconns++;
    s->in_stream = 2u * (uint32_t)idx(s) + 1;
    s->out_stream = 2u * (uint32_t)idx(s) + 2;
    fz_trace("  conn %d: peer fd %d connects to listener %d", idx(s), fd, k);
}

/* ---- the peer ----------------------------------------------------------- */

static void peer_send(conn_st *s, size_t n)
{
    if (!s || s->peer < 0 || s->peer_shut)
        return;
    /* on_read sees at most rbuf_max bytes a run: bound the runs settle needs */
    uint64_t cap = (uint64_t)S.o.rbuf_max * 256 < MAX_IN ? (uint64_t)S.o.rbuf_max * 256 : MAX_IN;
    /* cppcheck-suppress knownConditionTrueFalse ; S.o is set at run time, not 0 */
    if (s->sent >= cap)
        return;
    if (n > cap - s->sent)
        n = (size_t)(cap - s->sent);
    fz_fill(S.rbuf, n, s->in_stream, s->sent);
    ssize_t r = send(s->peer, S.rbuf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    fz_trace("  peer %d: send %zu -> %zd", idx(s), n, r);
    if (r > 0)
        s->sent += (uint64_t)r;
    else if (r < 0 && errno != EAGAIN)
        FZ_CHECK(s->closes == 1 || s->refused, "conn %d: the peer's send failed (errno %d), the loop's end is open",
                 idx(s), errno);
}

/* Reads up to n bytes; returns how many. */
static size_t peer_read(conn_st *s, size_t n)
{
    if (!s || s->peer < 0 || n == 0)
        return 0;
    if (n > MAX_IO)
        n = MAX_IO;
    ssize_t r = recv(s->peer, S.rbuf, n, MSG_DONTWAIT);
    if (r != -1 || errno != EAGAIN)
        fz_trace("  peer %d: read %zu -> %zd (got %llu)", idx(s), n, r, (unsigned long long)s->got);
    if (r > 0) {
        size_t bad = fz_mismatch(S.rbuf, (size_t)r, s->out_stream, s->got);
        FZ_CHECK(bad == (size_t)r, "conn %d: the peer read a wrong byte at %llu (lost or reordered output)",
                 idx(s), (unsigned long long)(s->got + bad));
        s->got += (uint64_t)r;
        FZ_CHECK(s->got <= s->limit, "conn %d: the peer read %llu bytes, evl_write accepted %llu", idx(s),
                 (unsigned long long)s->got, (unsigned long long)s->limit);
        return (size_t)r;
    }
    if (r < 0 && errno == EAGAIN)
        return 0;
    /* EOF or reset: the loop's end is closed, or shut down by evl_close. */
    FZ_CHECK(s->closes == 1 || s->refused || (r == 0 && (s->h_closed || s->shut)),
             "conn %d: the peer got %s while the loop holds the connection open", idx(s),
             r == 0 ? "EOF" : "an error");
    if (!loss_allowed(s))
        FZ_CHECK(r == 0 && s->got == s->accepted, "conn %d: the peer got %s after %llu of %llu accepted bytes",
                 idx(s), r == 0 ? "EOF" : "a reset", (unsigned long long)s->got,
                 (unsigned long long)s->accepted);
    s->peer_eof = true;
    return 0;
}

static size_t peer_read_all(conn_st *s)
{
    size_t total = 0, r;
    while (!s->peer_eof && (r = peer_read(s, MAX_IO)) > 0)
        total += r;
    return total;
}

/* ---- running and checking ----------------------------------------------- */

static void check_state(void)
{
    struct evl_stats st;
    evl_stats(S.l, &st);
    FZ_CHECK(st.accepted == S.entered && st.closed == S.closed && st.conns == st.accepted - st.closed,
             "stats: accepted %llu closed %llu conns %llu; entered %llu, on_close %llu",
             (unsigned long long)st.accepted, (unsigned long long)st.closed, (unsigned long long)st.conns,
             (unsigned long long)S.entered, (unsigned long long)S.closed);
    FZ_CHECK(st.rejected == S.refusals, "stats: rejected %llu, refused %llu", (unsigned long long)st.rejected,
             (unsigned long long)S.refusals);
    FZ_CHECK(st.iterations == S.runs, "stats: iterations %llu after %llu runs",
             (unsigned long long)st.iterations, (unsigned long long)S.runs);
    FZ_CHECK(st.overflow_closed >= S.overflows && st.overflow_closed <= S.overflows + S.overflows_maybe,
             "stats: overflow_closed %llu, expected %llu (+%llu maybe)", (unsigned long long)st.overflow_closed,
             (unsigned long long)S.overflows, (unsigned long long)S.overflows_maybe);
    FZ_CHECK(st.idle_closed == S.idle_closes, "stats: idle_closed %llu, on_close saw %llu idle closes",
             (unsigned long long)st.idle_closed, (unsigned long long)S.idle_closes);
    FZ_CHECK(st.emfile == 0 && (st.close_timeouts == 0 || S.o.close_timeout_ms == 0),
             "stats: a counter moved that nothing in this scenario can move");
    FZ_CHECK(st.ticks == S.ticks, "stats: ticks %llu, on_tick ran %llu times", (unsigned long long)st.ticks,
             (unsigned long long)S.ticks);
    FZ_CHECK(evl_stopping(S.l) == S.stop_req, "evl_stopping %d, yet evl_stop was%s called since evl_run returned",
             evl_stopping(S.l), S.stop_req ? "" : " not");
    uint64_t wsum = 0, rsum = 0;
    for (int i = 0; i < S.nconns; i++) {
        conn_st *s = &S.cs[i];
        if (!s->c)
            continue;
        FZ_CHECK(!s->ended, "conn %d was ended, yet after a run it is still open (no on_close)", i);
        FZ_CHECK(evl_conn_of(S.l, s->fd) == s->c, "evl_conn_of(fd of conn %d) is not conn %d", i, i);
        size_t p = evl_pending(s->c), len;
        (void)evl_data(s->c, &len);
        FZ_CHECK(!s->wbuf_max || p <= s->wbuf_max, "conn %d: %zu pending > wbuf_max", i, p);
        FZ_CHECK(len <= S.o.rbuf_max, "conn %d: %zu bytes of input > rbuf_max", i, len);
        FZ_CHECK(st.wbuf_peak >= p, "stats: wbuf_peak %llu < pending %zu", (unsigned long long)st.wbuf_peak, p);
        wsum += p;
        rsum += len;
        if (!pending_known(s))
            s->out_marked = false;
        if (pending_known(s)) {
            /* write_quantum: at most that many bytes a connection per
             * iteration. Between two checks lie the end of one iteration
             * (writes from outside spend its budget) and a whole one. */
            uint64_t out = s->got + queued_in(s->peer);
            if (s->out_marked)
                FZ_CHECK(out - s->out_mark <= 2 * (uint64_t)S.o.write_quantum,
                         "conn %d: %llu bytes sent in one run and the writes before it, write_quantum %zu", i,
                         (unsigned long long)(out - s->out_mark), S.o.write_quantum);
            s->out_mark = out;
            s->out_marked = true;
            uint64_t mp = model_pending(s);
            FZ_CHECK(p == mp, "conn %d: evl_pending %zu, the bytes exchanged say %llu", i, p,
                     (unsigned long long)mp);
            if (s->paused && mp <= S.o.wbuf_low) {
                /* drained to wbuf_low in this run: reading resumes, and
                 * input held back is served by the next run at the latest */
                s->paused = false;
                s->quiet = false;
                fz_trace("  conn %d: resumed at %llu pending (model)", i, (unsigned long long)mp);
                if (len > 0 && !s->h_closed && !s->read_due)
                    owe_read(s);
            } else if (s->paused && !s->h_closed) {
                uint64_t taken = model_taken(s);
                FZ_CHECK(taken == s->taken_at_pause,
                         "conn %d: paused at wbuf_high (%llu pending), yet the loop read %llu more bytes", i,
                         (unsigned long long)mp, (unsigned long long)(taken - s->taken_at_pause));
            }
        }
        if (s->rpaused && !s->h_closed && s->peer >= 0 && !s->stop_closed) {
            uint64_t taken = model_taken(s);
            FZ_CHECK(taken == s->taken_at_rpause, "conn %d: reading paused (evl_read_pause), yet the loop read %llu bytes",
                     i, (unsigned long long)(taken - s->taken_at_rpause));
        }
        if (s->read_due && !S.in_run && S.runs >= s->read_due_by) {
            /* Owed and not served: fine only while the model says paused
             * (pending reached wbuf_high and did not yet drain to wbuf_low),
             * or where the marks meet (low == high == pending: a write that
             * reached high paused reading, and no flush has drained it
             * since; note_pending makes no claim there either). */
            FZ_CHECK(s->h_closed || len == 0 || s->paused || s->rpaused || (!pending_known(s) && p > S.o.wbuf_low) ||
                         (p >= S.o.wbuf_high && p <= S.o.wbuf_low),
                     "conn %d: %zu bytes of input stranded: no on_read in the run after it was due", i, len);
            s->read_due = false;
        }
    }
    for (int i = 0; i < MAX_PIPES; i++) {
        pipe_st *pp = &S.ps[i];
        if (pp->on && pp->due && !S.in_run && S.runs >= pp->due_by)
            fz_fail("pipe %d: on_fd left bytes unread, and no on_fd in the next run (not level-triggered)", i);
    }
    FZ_CHECK(st.wbuf_bytes == wsum && st.rbuf_bytes == rsum,
             "stats: wbuf_bytes %llu rbuf_bytes %llu, connections hold %llu and %llu",
             (unsigned long long)st.wbuf_bytes, (unsigned long long)st.rbuf_bytes, (unsigned long long)wsum,
             (unsigned long long)rsum);
}

static int run(void)
{
    S.in_run = true;
    S.ticks_at_run = S.ticks;
    fz_trace("run %llu", (unsigned long long)S.runs + 1);
    uint64_t t0 = now_ns(), serial0 = S.arm_serial;
    int n = evl_run_once(S.l, 0);
    S.in_run = false;
    FZ_CHECK(n >= 0, "evl_run_once failed: errno %d", errno);
    FZ_CHECK(n <= S.o.max_events, "evl_run_once handled %d events, max_events %d", n, S.o.max_events);
    S.runs++;
    sync_refusals();
    check_state();
    check_timers(t0, serial0);
    FZ_CHECK(!S.wake_due || S.runs < S.wake_by, "evl_wakeup %llu runs ago, and no on_wakeup since: lost",
             (unsigned long long)(S.runs - S.wake_by + 1));
    return n;
}

static void stop_and_run(void);

/* Sleeps past the next tick, then runs: the run must tick ("every tick_ms,
 * measured by the clock"). */
static void tick_due(void)
{
    if (S.o.tick_ms <= 0)
        return;
    struct timespec ts = {0, (long)(S.o.tick_ms + 1) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
    uint64_t before = S.ticks;
    (void)run();
    FZ_CHECK(S.ticks == before + 1, "%d ms passed since the last run, tick_ms %d: the run did not tick",
             S.o.tick_ms + 1, S.o.tick_ms);
}

/* One step of the script; false: the script ends here with evl_free. */
static bool script_step(uint8_t op)
{
    switch (op % 14) {
    case 0: case 1: {
        conn_st *s = pick(fz_u8(&S.in));
        peer_send(s, fz_size(&S.in, MAX_IO));
        break;
    }
    case 2: {
        conn_st *s = pick(fz_u8(&S.in));
        peer_read(s, fz_size(&S.in, MAX_IO));
        break;
    }
    case 3: {
        conn_st *s = pick(fz_u8(&S.in));
        if (s && s->peer >= 0 && !s->peer_shut) {
            fz_trace("  peer %d: shutdown SHUT_WR", idx(s));
            latent(s, R(EVL_CLOSE_EOF));
            (void)shutdown(s->peer, SHUT_WR);
            s->peer_shut = true;
        }
        break;
    }
    case 4: {
        conn_st *s = pick(fz_u8(&S.in));
        if (s && s->peer >= 0) {
            fz_trace("  peer %d: close", idx(s));
            latent(s, R(EVL_CLOSE_EOF) | R(EVL_CLOSE_RESET));
            (void)close(s->peer);
            s->peer = -1;
            s->peer_closed = true;
        }
        break;
    }
    case 5: act(NULL, fz_u8(&S.in)); break;
    case 6: adopt_pair(); break;
    case 7: {
        uint8_t b = fz_u8(&S.in);
        pipe_st *p = &S.ps[b % MAX_PIPES];
        if (!p->on || p->w < 0)
            break;
        if (b & 0x80) { /* the writer goes away: EOF (HUP) for on_fd */
            (void)close(p->w);
            p->w = -1;
        } else {
            memset(S.rbuf, 'p', 64);
            ssize_t r = write(p->w, S.rbuf, 1 + (b >> 1 & 63));
            FZ_CHECK(r > 0 || errno == EAGAIN, "pipe write failed");
        }
        break;
    }
    case 8: {
        conn_st *s = pick(fz_u8(&S.in));
        if (s)
            (void)peer_read_all(s);
        break;
    }
    case 10: peer_connect(); break;
    case 11:
        if (S.o.close_timeout_ms == 0)
            stop_and_run();
        else
            act(NULL, 17); /* evl_stop: evl_run follows after settling */
        break;
    case 12: tick_due(); break;
    case 13: return false; /* evl_free now, whatever is open or pending */
    case 9: /* ext: time passes (timers, idle timeouts); else just one more run */
        if (S.ext)
            sleep_ms(fz_u8(&S.in) & 3);
        break;
    default: break;
    }
    return true;
}

/* The options, from the first bytes: small enough that the limits bite. */
static void read_options(void)
{
    evl_options *o = &S.o;
    evl_options_default(o);
    uint8_t b = fz_u8(&S.in);
    o->tick_ms = 0; /* time-driven: 1 ms below, with checks that hold at any timing */
    o->rbuf_max = 1 + fz_size(&S.in, 65535);
    o->wbuf_high = 1 + fz_size(&S.in, 65535);
    o->wbuf_low = fz_size(&S.in, o->wbuf_high);
    o->wbuf_max = (b & 1) ? o->wbuf_high + fz_size(&S.in, 65535) : 0;
    o->write_quantum = 256 + fz_size(&S.in, 65535);
    o->max_events = 1 + (b >> 1 & 7);
    /* Timers only as "now" or "never": anything between depends on timing. */
    o->close_timeout_ms = (b & 0x10) ? 0 : LONG_MS;
    o->idle_timeout_ms = (b & 0x20) ? LONG_MS : 0;
    uint8_t b2 = fz_u8(&S.in);
    S.lfd[0] = (b2 & 1) ? 0 : -1; /* 0: make one, once the loop exists */
    S.lfd[1] = (b2 & 0x80) && S.lfd[0] == 0 ? 0 : -1; /* a second one beside it */
    S.no_accept = (b2 & 0x20) != 0;
    o->max_conns = b2 >> 1 & 3u;
    S.stop_at_end = (b2 & 8) != 0; /* after settling: no flush waits for the peer */
    o->tick_ms = (b2 & 0x40) ? 1 : 0;
    /* The calls issue 13 added: bits no committed input before them had set
     * in this combination (fuzz/regressions/README.md) */
    S.ext = (b & 0xc0) == 0x80 && (b2 & 0x10);
    fz_trace("options: rbuf_max %zu wbuf_low %zu high %zu max %zu quantum %zu events %d close %d idle %d",
             o->rbuf_max, o->wbuf_low, o->wbuf_high, o->wbuf_max, o->write_quantum, o->max_events,
             o->close_timeout_ms, o->idle_timeout_ms);
}

/* The script is over: peers read everything, the handler consumes
 * everything and writes nothing, until nothing moves. */
static void settle(void)
{
    S.final = true;
    fz_trace("settle");
    for (int i = 0; i < S.nconns; i++) /* the deferred replies are done */
        for (; S.cs[i].c && S.cs[i].holds > 0; S.cs[i].holds--)
            evl_release(S.cs[i].c);
    for (int i = 0; i < S.nconns; i++) /* and every paused reader reads again */
        if (S.cs[i].c)
            do_read_resume(&S.cs[i]);
    /* Input left unconsumed waits for more data that will not come: the
     * handler asks for it again, as a real one does when it is ready. */
    for (int i = 0; i < S.nconns; i++)
        if (S.cs[i].c && !S.cs[i].h_closed)
            do_wake(&S.cs[i]);
    int idle = 0;
    for (int round = 0; round < MAX_ROUNDS && idle < 3; round++) {
        size_t moved = 0;
        uint64_t cb = S.callbacks;
        for (int i = 0; i < S.nconns; i++)
            moved += peer_read_all(&S.cs[i]);
        int n = run();
        idle = moved == 0 && cb == S.callbacks && n == 0 ? idle + 1 : 0;
    }
    FZ_CHECK(idle >= 3, "the loop did not settle in %d rounds: it spins, or a stream never ends", MAX_ROUNDS);
    for (int i = 0; i < S.nconns; i++)
        FZ_CHECK(!S.cs[i].queued || !S.listening[S.cs[i].lst], "conn %d: connected to a listener, never accepted", i);
    for (int i = 0; i < S.nconns; i++) {
        conn_st *s = &S.cs[i];
        if (s->refused) {
            FZ_CHECK(s->peer < 0 || s->peer_eof, "conn %d was refused, but its peer never got EOF", i);
            continue;
        }
        if (!loss_allowed(s) && s->peer >= 0)
            FZ_CHECK(s->got == s->accepted, "conn %d: the peer read %llu of %llu accepted bytes, and reads on",
                     i, (unsigned long long)s->got, (unsigned long long)s->accepted);
        if (!s->c)
            continue;
        FZ_CHECK(!s->peer_closed && !s->peer_shut, "conn %d: the peer %s, all input was consumed and nothing "
                 "is pending, yet the connection is open", i, s->peer_closed ? "closed" : "sent EOF");
        if (s->h_closed) {
            if (!loss_allowed(s))
                FZ_CHECK(s->peer_eof, "conn %d: evl_close flushed, but the peer never got EOF", i);
            continue;
        }
        if (s->shut && !loss_allowed(s))
            FZ_CHECK(s->peer_eof, "conn %d: evl_shutdown and all flushed, but the peer never got EOF", i);
        FZ_CHECK(s->seen == s->sent, "conn %d: %llu of %llu sent bytes delivered", i,
                 (unsigned long long)s->seen, (unsigned long long)s->sent);
        FZ_CHECK(evl_pending(s->c) == 0, "conn %d: %zu bytes pending though the peer reads", i,
                 evl_pending(s->c));
        FZ_CHECK(!s->drain_due, "conn %d: drained to 0, on_drain never called", i);
    }
    /* An idle timeout of its own (evl_set_idle_timeout) closes a
     * connection that settled: nothing moves any more. */
    int longest = 0;
    for (int i = 0; i < S.nconns; i++)
        if (S.cs[i].c && !S.cs[i].h_closed && S.cs[i].idle_cur > longest) /* (closing: its deadline rules) */
            longest = S.cs[i].idle_cur;
    if (longest > 0) {
        sleep_ms((unsigned)longest + 2);
        (void)run();
        (void)run();
        for (int i = 0; i < S.nconns; i++)
            FZ_CHECK(!S.cs[i].c || S.cs[i].idle_cur <= 0 || S.cs[i].h_closed,
                     "conn %d: idle timeout %d ms of its own, idle for %d ms and more, yet open", i, S.cs[i].idle_cur,
                     longest + 2);
    }
}

/* evl_run must return: a watchdog on its own real-time signal (libFuzzer
 * owns SIGALRM) names the hang instead of a bare timeout. */
static void watchdog_fired(int sig)
{
    (void)sig;
    static const char msg[] = "\nFUZZ CHECK FAILED: evl_run did not return within 2 s of evl_stop (a connection never closed?)\n";
    (void)!write(2, msg, sizeof msg - 1);
    abort();
}

static timer_t watchdog(bool arm)
{
    static timer_t t;
    static bool made;
    if (!made) {
        struct sigaction sa = {.sa_handler = watchdog_fired};
        (void)sigaction(SIGRTMIN + 3, &sa, NULL);
        struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN + 3};
        FZ_CHECK(timer_create(CLOCK_MONOTONIC, &ev, &t) == 0, "timer_create failed");
        made = true;
    }
    struct itimerspec its = {.it_value = {.tv_sec = arm ? 2 : 0}};
    (void)timer_settime(t, 0, &its, NULL);
    return t;
}

/* evl_stop, then evl_run: listeners are removed, every connection gets
 * evl_close, and it returns 0 once all are closed. Only where no flush can
 * wait for a peer that is not read: close_timeout_ms 0, or after settling.
 * Callbacks keep acting meanwhile (adopt, add a listener, close others). */
static void stop_and_run(void)
{
    S.stopping = true; /* before the causes: evl_close's reasons include STOP */
    for (int i = 0; i < S.nconns; i++)
        if (S.cs[i].c) {
            cause(&S.cs[i], close_reasons());
            S.cs[i].stop_closed = true;
        }
    fz_trace("evl_stop, evl_run");
    evl_stop(S.l);
    S.stop_req = true;
    FZ_CHECK(evl_stopping(S.l), "evl_stopping false after evl_stop");
    S.listening[0] = S.listening[1] = false; /* removed before any callback runs */
    S.in_run = true;
    S.ticks_at_run = UINT64_MAX; /* many iterations */
    S.stops = 0;
    (void)watchdog(true);
    int rc = evl_run(S.l, -1);
    (void)watchdog(false);
    S.in_run = false;
    S.stopping = false;
    S.stop_req = false;
    FZ_CHECK(rc == 0, "evl_run after evl_stop returned %d (errno %d)", rc, errno);
    FZ_CHECK(S.stops == 1, "on_stop ran %d times in one evl_run with a stop", S.stops);
    FZ_CHECK(!evl_stopping(S.l), "evl_stopping still true after evl_run returned");
    sigset_t now;
    (void)sigprocmask(SIG_BLOCK, NULL, &now);
    FZ_CHECK(sigismember(&now, SIGTERM) == sigismember(&S.mask0, SIGTERM) &&
                 sigismember(&now, SIGINT) == sigismember(&S.mask0, SIGINT),
             "evl_run returned without restoring the signal mask");
    struct evl_stats st;
    evl_stats(S.l, &st);
    FZ_CHECK(st.conns == 0 && S.closed == S.entered, "evl_run returned with %llu connections open",
             (unsigned long long)st.conns);
    S.runs = st.iterations;
    if (S.wake_due) /* made in the stop's last iteration: owed by the next runs */
        S.wake_by = S.runs + 1 + (MAX_CONNS + MAX_PIPES + 3) / (unsigned)S.o.max_events;
    sync_refusals();
    check_state();
}

/* evl_free, then every fd of ours closed: as many open as at the start. */
static void teardown(int fds_before)
{
    S.freeing = true;
    for (int i = 0; i < S.nconns; i++)
        if (S.cs[i].c) {
            cause(&S.cs[i], R(EVL_CLOSE_STOP));
            S.cs[i].ended = true; /* evl_free closes every connection now */
        }
    evl_free(S.l);
    S.l = NULL;
    for (int i = 0; i < S.nconns; i++) {
        conn_st *s = &S.cs[i];
        FZ_CHECK(s->closes == (s->refused || s->queued ? 0 : 1), "conn %d: on_close ran %d times%s", i, s->closes,
                 s->refused ? " (refused)" : "");
        if (s->peer >= 0)
            (void)close(s->peer);
    }
    for (int k = 0; k < 2; k++)
        FZ_CHECK(S.lfd[k] < 0 || fcntl(S.lfd[k], F_GETFD) >= 0, "evl_free closed a listener's fd");
    for (int i = 0; i < MAX_PIPES; i++) {
        if (S.ps[i].on) {
            FZ_CHECK(fcntl(S.ps[i].r, F_GETFD) >= 0, "evl_free closed an extra fd");
            (void)close(S.ps[i].r);
            if (S.ps[i].w >= 0)
                (void)close(S.ps[i].w);
        }
    }
    for (int k = 0; k < 2; k++)
        if (S.lfd[k] >= 0)
            (void)close(S.lfd[k]);
    int fds_after = fz_count_fds();
    FZ_CHECK(fds_after == fds_before, "fds: %d open before, %d after", fds_before, fds_after);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    memset(&S, 0, offsetof(struct fuzz_state, wbuf)); /* not the I/O buffers */
    S.in = (fz_in){data, size};
    for (int i = 0; i < MAX_PIPES; i++)
        S.ps[i].r = S.ps[i].w = -1;
    make_targets(); /* once: its fds stay open across inputs */
    int fds_before = fz_count_fds();
    (void)sigprocmask(SIG_BLOCK, NULL, &S.mask0);

    read_options();
    evl_handler h = {.on_accept = S.no_accept ? NULL : on_accept, .on_read = on_read, .on_drain = on_drain,
                     .on_close = on_close, .on_fd = on_fd, .on_tick = on_tick, .on_stop = on_stop,
                     .on_wakeup = on_wakeup, .on_connect = on_connect, .on_eof = on_eof};
    if (S.o.wbuf_low > 0) { /* inconsistent options are refused */
        evl_options bad = S.o;
        bad.wbuf_low = bad.wbuf_high + 1;
        FZ_CHECK(evl_new(&h, &S, &bad) == NULL && errno == EINVAL, "evl_new took wbuf_low > wbuf_high");
    }
    S.l = evl_new(&h, &S, &S.o);
    FZ_CHECK(S.l != NULL, "evl_new failed: errno %d", errno);
    memset(&h, 0, sizeof h); /* "the handler struct is copied" */
    FZ_CHECK(evl_loop_udata(S.l) == &S && evl_get_options(S.l)->rbuf_max == S.o.rbuf_max,
             "evl_loop_udata/evl_get_options disagree with evl_new's arguments");
    for (int k = 0; k < 2; k++)
        if (S.lfd[k] == 0)
            listen_unix(k);

    adopt_pair();
    bool whole = true;
    for (int step = 0; whole && step < MAX_STEPS && S.in.n > 0; step++) {
        uint8_t op = fz_u8(&S.in);
        fz_trace("step %d: op %d", step, op % 14);
        whole = script_step(op);
        (void)run();
    }
    if (whole) {
        settle();
        if (S.stop_at_end || S.stop_req)
            stop_and_run();
    }
    teardown(fds_before);
    return 0;
}
