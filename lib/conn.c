/* A connection: reading and delivering input, buffered never-blocking
 * writes, flow control at the watermarks, and the close state machine
 * (open -> closing: flush -> lingering: wait for peer EOF -> killed -> reaped).
 *
 * The hot path (issue 14) is one read into the loop's buffer, on_read with
 * the input shown in place, one send from evl_write, and no epoll_ctl: the
 * checks that guard it are ordered so the common case passes each with one
 * test, and everything rare (closing, pauses, EOF, overrides) sits behind
 * those tests. */
#include "conn_fast.h"
#include "evl_int.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define WLEN(c) evl__buf_len(&(c)->wbuf)
#define RLEN(c) evl__buf_len(&(c)->rbuf)


/* The one place a connection's state changes (the states and their order
 * are in evl_int.h). */
static void enter(evl_conn *c, enum evl__state to)
{
    static const uint8_t allowed[] = {
        [EVL__CONNECTING] = 1u << EVL__OPEN | 1u << EVL__FLUSHING | 1u << EVL__DEAD,
        [EVL__OPEN] = 1u << EVL__FLUSHING | 1u << EVL__DEAD,
        [EVL__FLUSHING] = 1u << EVL__LINGERING | 1u << EVL__DEAD,
        [EVL__LINGERING] = 1u << EVL__DEAD,
        [EVL__DEAD] = 0,
    };
    assert(allowed[c->state] & (1u << to));
    c->state = (uint8_t)to;
}

static void mark_ready(evl_conn *c)
{
    c->eof_only = 0;
    if (!evl__linked(&c->ready))
        evl__list_append(&c->loop->ready, &c->ready);
    c->loop->attention = 1;
}

/* The EOF is to be reported from the loop's next pass; any input left is
 * what on_read already saw and did not consume, so the pass reports the
 * EOF without calling on_read again ("it waits for more data", and none
 * will come). */
static void mark_eof_report(evl_conn *c)
{
    /* not linked: check_eof_done returns before this while it is */
    c->eof_only = 1;
    evl__list_append(&c->loop->ready, &c->ready);
    c->loop->attention = 1;
}


static bool shown_in_place(const evl_conn *c) { return c->loop->view_conn == c; }

size_t evl__conn_input_len(const evl_conn *c)
{
    return shown_in_place(c) ? c->loop->view_len : RLEN(c);
}

struct evl__conn_ext *evl__conn_ext(evl_conn *c)
{
    if (!c->x) {
        c->x = calloc(1, sizeof *c->x);
        if (!c->x)
            return NULL;
        c->x->wbuf_max = c->loop->o.wbuf_max;
    }
    return c->x;
}

static size_t wbuf_max(const evl_conn *c) { return c->x ? c->x->wbuf_max : c->loop->o.wbuf_max; }

/* The interest that the connection's state calls for. */
static uint8_t wanted(const evl_conn *c)
{
    uint8_t want = 0;
    if (c->state == EVL__CONNECTING) {
        want = EVL__OUT; /* writable = the connect finished, either way */
    } else if (evl__closing(c)) {
        /* Read and discard while closing: it is how the peer's EOF (or
         * reset) is seen, and what keeps close() from sending an RST. */
        if (!c->peer_eof)
            want |= EVL__IN;
    } else if (!c->peer_eof && !c->paused && !c->read_paused &&
               RLEN(c) < c->loop->o.rbuf_max) {
        want |= EVL__IN;
    }
    if (c->wbuf.m)
        want |= EVL__OUT;
    return want;
}

/* Interest changes are queued and applied once, before the next epoll_wait
 * (evl__conn_apply_interest): a write that queues and a flush that empties
 * in the same iteration cost no epoll_ctl at all. */
static void update_interest(evl_conn *c)
{
    if (evl__dead(c) || c->interest_queued || wanted(c) == c->io.events)
        return;
    evl_loop *l = c->loop;
    if (l->ndirty == l->dirtycap) {
        size_t cap = l->dirtycap ? 2 * l->dirtycap : 64;
        /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
        evl_conn **d = realloc(l->dirty, cap * sizeof *d);
        if (!d) { /* no room to queue it: apply it now */
            evl__conn_apply_interest(c);
            return;
        }
        l->dirty = d;
        l->dirtycap = cap;
    }
    c->interest_queued = 1;
    l->dirty[l->ndirty++] = c;
    l->attention = 1;
}

/* A connection epoll will not watch as it needs (EPOLLOUT for pending
 * output, EPOLLIN for input) would wait for an event that never comes, or
 * be reported without end: it is aborted. */
void evl__conn_apply_interest(evl_conn *c)
{
    c->interest_queued = 0;
    if (evl__dead(c))
        return;
    if (evl__poll_set(c->loop, &c->io, wanted(c)) < 0)
        evl__conn_kill(c, EVL_CLOSE_NOMEM, errno);
}

evl_conn *evl__conn_new(evl_loop *l, int fd, bool connecting)
{
    evl_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->io.fd = fd;
    c->io.kind = EVL__CONN;
    c->loop = l;
    c->h = &l->h;
    c->state = connecting ? EVL__CONNECTING : EVL__OPEN;
    if (evl__poll_set(l, &c->io, connecting ? EVL__OUT : EVL__IN) < 0) {
        free(c);
        return NULL;
    }
    if (evl__fdtab_put(l, &c->io) < 0) {
        (void)evl__poll_del(l, &c->io);
        free(c);
        return NULL;
    }
    c->stamp = l->now;
    evl__list_append(&l->active, &c->link);
    if (l->o.idle_timeout_ms > 0)
        evl__timer_ensure(&l->idle_timer, c->stamp + (uint64_t)l->o.idle_timeout_ms);
    return c;
}

/* ---- closing ------------------------------------------------------------ */

void evl__conn_kill(evl_conn *c, int reason, int err)
{
    if (evl__dead(c))
        return;
    evl_loop *l = c->loop;
    enter(c, EVL__DEAD);
    if (c->reason == EVL_CLOSE_OPEN) {
        c->reason = (uint8_t)reason;
        c->err = (int16_t)err;
    }
    evl__list_unlink(&c->link);
    evl__list_unlink(&c->ready);
    evl__list_append(&l->killed, &c->link);
    l->attention = 1;
}

/* Whether the connection ends by abort: evl_abort, or output cut off
 * (pending bytes dropped by an overflow, an idle timeout, a close deadline,
 * evl_free). A socket that failed already needs nothing; any other close
 * with nothing pending is a plain FIN: a reset would also destroy what the
 * peer has received and not read yet. */
static bool abortive(const evl_conn *c)
{
    if (c->reason == EVL_CLOSE_ABORT)
        return true;
    return c->reason != EVL_CLOSE_RESET && c->wbuf.m;
}

/* Runs on_close and closes the fd: called by the loop between callbacks,
 * never from inside the call that killed the connection. */
void evl__conn_reap(evl_conn *c)
{
    evl_loop *l = c->loop;
    evl__list_unlink(&c->link); /* off the killed list */
    evl__unregister(l, &c->io); /* freed after the batch: c stays valid here */
    if (c->x) {
        evl_timer_free(c->x->connect_timer);
        c->x->connect_timer = NULL;
        evl_timer_free(c->x->idle_timer);
        c->x->idle_timer = NULL;
    }
    if (c->refused) {
        l->st.rejected++;
    } else {
        if (c->h->on_close)
            c->h->on_close(c);
        l->st.closed++;
        l->st.conns--;
    }
    if (abortive(c)) {
        /* RST, not FIN: the peer must be able to tell a cut-off stream from
         * a complete one, and the kernel frees the send queue at once
         * instead of holding it for a peer that does not read. */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    (void)close(c->io.fd);
    /* Every close: its buffers may have gone back earlier (a reset frees
     * the output at once), and the timer trims only when enough did. */
    evl__trim_soon(l);
    evl__buf_free(&c->rbuf);
    evl__buf_free(&c->wbuf);
    free(c->x);
    c->x = NULL;
}

/* The write side is flushed: end the graceful close. */
static void finish_close(evl_conn *c)
{
    assert(evl__closing(c) && !c->wbuf.m);
    if (c->peer_eof || c->broken || c->loop->stopping) {
        evl__conn_kill(c, EVL_CLOSE_LOCAL, 0);
        return;
    }
    /* Send our FIN, then wait for the peer's: closing with input unread
     * would make the kernel send an RST that can destroy the last reply. */
    (void)shutdown(c->io.fd, SHUT_WR);
    enter(c, EVL__LINGERING);
    update_interest(c);
}

/* evl_shutdown's FIN, once everything before it is sent. Called once: by
 * evl_shutdown itself (nothing pending), or by the drain or the connect
 * that empties the output (no write is taken after evl_shutdown). */
static void shut_write(evl_conn *c)
{
    c->wr_shut = 1;
    (void)shutdown(c->io.fd, SHUT_WR);
}

void evl_shutdown(evl_conn *c)
{
    if (evl__dead(c) || evl__closing(c) || c->shut_req)
        return;
    c->shut_req = 1;
    if (!c->wbuf.m && c->state != EVL__CONNECTING)
        shut_write(c);
}

void evl_close(evl_conn *c)
{
    if (evl__dead(c) || evl__closing(c))
        return;
    evl_loop *l = c->loop;
    enter(c, EVL__FLUSHING);
    c->reason = l->stopping ? EVL_CLOSE_STOP : EVL_CLOSE_LOCAL;
    evl__buf_free(&c->rbuf);
    if (shown_in_place(c))
        l->view_len = 0; /* the rest of the input shown is dropped */
    evl__list_unlink(&c->ready);
    evl__list_unlink(&c->link);
    c->stamp = l->now + (uint64_t)l->o.close_timeout_ms;
    evl__list_append(&l->closing, &c->link);
    evl__timer_ensure(&l->close_timer, c->stamp);
    if (!c->wbuf.m)
        finish_close(c);
    else
        update_interest(c);
}

void evl_abort(evl_conn *c) { evl__conn_kill(c, EVL_CLOSE_ABORT, 0); }

/* The socket failed: nothing more can be sent, so pending output is dropped;
 * input already received is still delivered (see peer_eof handling). */
static void set_broken(evl_conn *c, int err)
{
    c->broken = 1;
    if (!c->err)
        c->err = (int16_t)err;
    c->peer_eof = 1;
    evl__buf_free(&c->wbuf);
}

/* After EOF, the connection closes itself once nothing is left to deliver,
 * nothing is pending and the handler holds no reply for it (evl_hold): the
 * half-close of fault 1. on_eof is reported once, when every byte before
 * the EOF has been delivered; only from the loop (notify), never from
 * inside a call of the handler's such as evl_release. */
static void check_eof_done(evl_conn *c, bool notify)
{
    if (!c->peer_eof || evl__dead(c))
        return;
    if (evl__closing(c)) {
        if (c->state == EVL__LINGERING || c->broken)
            evl__conn_kill(c, EVL_CLOSE_LOCAL, 0);
        return;
    }
    if (evl__linked(&c->ready) || c->read_paused)
        return; /* input still to deliver first; paused: the EOF is not seen yet */
    if (!c->eof_reported && !c->broken) {
        if (!notify) {
            mark_eof_report(c); /* the loop reports it in its next pass */
            return;
        }
        c->eof_reported = 1;
        if (c->h->on_eof) {
            c->h->on_eof(c);
            if (evl__dead(c) || evl__closing(c) || evl__linked(&c->ready))
                return;
        }
    }
    /* A hold waits for a reply that can still be sent: not after a reset. */
    if (c->wbuf.m || (c->holds > 0 && !c->broken))
        return;
    if (c->broken)
        evl__conn_kill(c, EVL_CLOSE_RESET, c->err);
    else
        evl__conn_kill(c, EVL_CLOSE_EOF, 0);
}

/* ---- input -------------------------------------------------------------- */

/* What follows an on_read call: keep the unconsumed tail of input shown in
 * place (the view is closed already: l->view_len and l->view are what is
 * left of it), re-dispatch pipelined input, close on overflow, interest,
 * EOF. Shared by deliver and the inlined fast path (conn_fast.h). */
static void after_on_read(evl_conn *c, size_t before, bool in_place)
{
    evl_loop *l = c->loop;
    size_t after = in_place ? l->view_len : RLEN(c);
    if (in_place && after > 0 && !evl__dead(c) && evl__buf_append(&c->rbuf, l->view, after) < 0)
        evl__conn_kill(c, EVL_CLOSE_NOMEM, ENOMEM);
    if (c->state != EVL__OPEN)
        return; /* closed or killed by on_read */
    if (after > 0) {
        if (after < before)
            mark_ready(c); /* pipelined input: never stranded (fault 4) */
        else if (after >= l->o.rbuf_max && !c->read_paused) {
            /* (paused: input never counts against rbuf_max; on_read
             * sees it again at evl_read_resume) */
            l->st.overflow_closed++;
            evl__conn_kill(c, EVL_CLOSE_OVERFLOW, 0);
            return;
        }
    }
    /* Input shown in place and all consumed leaves the interest as it
     * was; calls that change it (a queued write, a pause) queue the
     * change themselves. Buffered input may have crossed rbuf_max. */
    if (c->rbuf.m || !in_place)
        update_interest(c);
    if (c->peer_eof)
        check_eof_done(c, true);
}

/* on_read with the input the connection has: its buffer, or (view) the
 * bytes just read into the loop's buffer, shown in place; only what on_read
 * leaves unconsumed of those is copied. */
/* Inlined in both callers: with the view (the hot path) and without. */
static inline __attribute__((always_inline)) void deliver(evl_conn *c, const char *view,
                                                         size_t view_len)
{
    evl_loop *l = c->loop;
    size_t before = view ? view_len : RLEN(c);
    if (before > 0 && c->state == EVL__OPEN && !c->paused && !c->read_paused) {
        evl__mark_now(c);
        c->dispatched = 1;
        /* This call serves any re-dispatch asked for before it: if it
         * consumes nothing, the loop waits for more data (an evl_wake from
         * inside on_read still asks again). */
        evl__list_unlink(&c->ready);
        if (view) {
            l->view_conn = c;
            l->view = view;
            l->view_len = view_len;
        }
        const evl_handler *h = c->h;
        if (!c->h_short && h->on_data) {
            size_t len;
            const char *data = evl_data(c, &len);
            evl_consume(c, h->on_data(c, data, len));
        } else if (h->on_read) {
            h->on_read(c);
        }
        if (view)
            l->view_conn = NULL;
        after_on_read(c, before, view != NULL);
        return;
    }
    if (c->peer_eof)
        check_eof_done(c, true);
}

void evl__conn_deliver(evl_conn *c)
{
    if (c->eof_only) { /* only the EOF to report (mark_eof_report) */
        c->eof_only = 0;
        evl__list_unlink(&c->ready);
        check_eof_done(c, true);
        return;
    }
    deliver(c, NULL, 0);
}

/* fast_read's tail when on_read left something (deliver's tail). */
void evl__conn_after_read(evl_conn *c, size_t before) { after_on_read(c, before, true); }

/* Reading while closing: discard, until the peer's EOF or reset. */
static void read_discard(evl_conn *c)
{
    ssize_t n = read(c->io.fd, c->loop->scratch, EVL__READ_MAX);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        c->peer_eof = 1;
        check_eof_done(c, true);
        update_interest(c);
    }
}

/* EOF (n == 0) or a failed read: what was received is still delivered
 * (faults 1, 5), and reading stops, so level triggering cannot spin on it. */
void evl__conn_read_ended(evl_conn *c, ssize_t n, int err)
{
    if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR))
        return;
    if (n < 0)
        set_broken(c, err);
    c->peer_eof = 1;
    update_interest(c);
    check_eof_done(c, true);
}

static void on_readable(evl_conn *c)
{
    evl_loop *l = c->loop;
    if (c->state != EVL__OPEN || c->peer_eof || c->paused || c->read_paused) {
        if (evl__closing(c) && !c->peer_eof)
            read_discard(c);
        return; /* woken by HUP/ERR while not reading: the write side or
                   on_read must make progress first */
    }
    ssize_t n;
    if (!c->rbuf.m) {
        /* No buffered input: read into the loop's buffer, shown in place. */
        n = read(c->io.fd, l->scratch, l->read_max);
        if (n > 0) {
            evl__touch(c);
            deliver(c, l->scratch, (size_t)n);
            return;
        }
    } else {
        size_t have = RLEN(c);
        if (have >= l->o.rbuf_max)
            return;
        size_t room = l->o.rbuf_max - have;
        size_t want = room < EVL__READ_MAX ? room : EVL__READ_MAX;
        char *dst = evl__buf_reserve(&c->rbuf, want);
        if (!dst) {
            evl__conn_kill(c, EVL_CLOSE_NOMEM, ENOMEM);
            return;
        }
        n = read(c->io.fd, dst, want);
        int err = errno;
        evl__buf_commit(&c->rbuf, n > 0 ? (size_t)n : 0);
        errno = err;
        if (n > 0) {
            evl__touch(c);
            deliver(c, NULL, 0);
            return;
        }
    }
    evl__conn_read_ended(c, n, errno);
}

/* ---- output ------------------------------------------------------------- */

static ssize_t sock_send(void *ctx, const void *p, size_t n)
{
    return send(*(const int *)ctx, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* What this connection may still send in this iteration: what is left of
 * its write_quantum and of the loop's write_budget. The quantum is shared
 * by EPOLLOUT flushes and evl_write's direct sends: without the second
 * part, a producer writing from on_drain to a reader that keeps up would
 * see every write taken at once, never reach wbuf_low, and stream without
 * end while every other connection waits. The budget bounds the whole
 * iteration, so a thousand writers cannot make one iteration long. */
static size_t budget_left(const evl_conn *c)
{
    const evl_loop *l = c->loop;
    size_t spent = c->mark == (uint16_t)l->iter ? c->sent_now : 0;
    size_t mine = l->quantum - spent; /* sent_now <= quantum, always */
    size_t loop_left = l->budget_left;
    /* The budget bounds bulk: every connection may still send its first
     * EVL__WRITE_FLOOR bytes of the iteration (a reply, a PONG), or the ones
     * epoll happens to list after the bulk writers would wait for as long as
     * the bulk lasts. Bounded all the same: a connection is served a few
     * times per iteration at most (its events, a re-dispatch). */
    if (spent < EVL__WRITE_FLOOR && loop_left < EVL__WRITE_FLOOR - spent)
        loop_left = EVL__WRITE_FLOOR - spent;
    return mine < loop_left ? mine : loop_left;
}

static void spend(evl_conn *c, size_t n)
{
    evl_loop *l = c->loop;
    evl__mark_now(c);
    c->sent_now += (uint32_t)n; /* n <= quantum - sent_now <= UINT32_MAX */
    l->budget_left -= n < l->budget_left ? n : l->budget_left; /* the floor may pass it */
}

/* A send failed for good: the connection is aborted. */
static int fail_write(evl_conn *c, int err)
{
    set_broken(c, err);
    evl__conn_kill(c, err == EVL_EOVERFLOW ? EVL_CLOSE_OVERFLOW
                      : err == ENOMEM      ? EVL_CLOSE_NOMEM
                                           : EVL_CLOSE_RESET,
                   err);
    errno = err;
    return -1;
}

static void after_drain(evl_conn *c)
{
    evl_loop *l = c->loop;
    if (evl__closing(c)) {
        if (!c->wbuf.m && c->state != EVL__LINGERING)
            finish_close(c);
        else
            update_interest(c);
        return;
    }
    size_t pending = WLEN(c);
    if (c->shut_req && pending == 0)
        shut_write(c);
    if (c->paused && pending <= l->o.wbuf_low) {
        c->paused = 0;
        if (c->rbuf.m)
            mark_ready(c);
    }
    update_interest(c);
    if (c->drain_armed && pending <= l->o.wbuf_low) {
        c->drain_armed = 0;
        if (c->h->on_drain)
            c->h->on_drain(c);
    }
    check_eof_done(c, true);
}

/* The connect finished: SO_ERROR says how. On success the connection is
 * like an accepted one; writes queued meanwhile go out now. */
static void connect_done(evl_conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    evl__connect_finish(c, err);
}

static void on_writable(evl_conn *c)
{
    if (c->state == EVL__CONNECTING) {
        connect_done(c);
        if (evl__dead(c) || !c->wbuf.m)
            return;
    }
    if (!c->wbuf.m) {
        update_interest(c);
        return;
    }
    size_t budget = budget_left(c);
    if (budget == 0)
        return; /* spent this iteration: EPOLLOUT stays on, served next time */
    ssize_t r = evl__buf_drain(&c->wbuf, sock_send, &c->io.fd, budget);
    if (r < 0) {
        fail_write(c, errno);
        return;
    }
    if (r > 0) {
        spend(c, (size_t)r);
        evl__touch(c);
        if (!c->wbuf.m)
            evl__trim_soon(c->loop); /* the region went back to malloc */
    }
    after_drain(c);
}


void evl__conn_event(evl_conn *c, uint32_t events)
{
    if (evl__dead(c)) /* killed earlier in this batch, not reaped yet */
        return;
    /* Hang-up and error are read first, so data the peer sent before it
     * went away is delivered (fault 5); the write then finds the error. */
    if (events & (EVL__ERR | EVL__HUP))
        events |= EVL__IN | EVL__OUT;
    if (events & EVL__IN)
        on_readable(c);
    if ((events & EVL__OUT) && !evl__dead(c))
        on_writable(c);
}

static int write_refused(const evl_conn *c)
{
    return evl__dead(c) || evl__closing(c) || c->broken || c->shut_req;
}

/* What evl_writev could not send at once goes to the connection's buffer. */
static int queue_rest(evl_conn *c, const struct iovec *iov, int iovcnt, size_t total, size_t sent)
{
    evl_loop *l = c->loop;
    size_t rest = total - sent, max = wbuf_max(c);
    if (max && rest > max - WLEN(c)) {
        l->st.overflow_closed++;
        return fail_write(c, EVL_EOVERFLOW);
    }
    size_t skip = sent;
    for (int i = 0; i < iovcnt; i++) {
        size_t n = iov[i].iov_len;
        if (skip >= n) {
            skip -= n;
            continue;
        }
        if (evl__buf_append(&c->wbuf, (const char *)iov[i].iov_base + skip, n - skip) < 0)
            return fail_write(c, ENOMEM);
        skip = 0;
    }
    size_t pending = WLEN(c);
    if (pending > l->st.wbuf_peak)
        l->st.wbuf_peak = pending;
    if (pending > l->o.wbuf_low)
        c->drain_armed = 1;
    if (pending >= l->o.wbuf_high)
        c->paused = 1; /* a client that does not read gets no more served */
    update_interest(c);
    return 0;
}

/* One send, EINTR retried: the bytes taken, or -1 with errno (EAGAIN: none). */
static ssize_t send_now(const evl_conn *c, struct iovec *v, size_t nv)
{
    struct msghdr m = {.msg_iov = v, .msg_iovlen = nv};
    ssize_t r;
    do {
        r = nv == 1 ? send(c->io.fd, v[0].iov_base, v[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT)
                    : sendmsg(c->io.fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
    return r;
}

int evl_writev(evl_conn *c, const struct iovec *iov, int iovcnt)
{
    if (write_refused(c) || iovcnt < 0) {
        errno = iovcnt < 0 ? EINVAL : EPIPE;
        return -1;
    }
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > SIZE_MAX - total) {
            errno = EINVAL;
            return -1;
        }
        total += iov[i].iov_len;
    }
    if (total == 0)
        return 0;

    size_t sent = 0;
    /* Nothing queued and budget left: the socket may take it now, in one
     * send of at most what is left of the budget (so a write larger than
     * write_quantum does not hold the loop any more than a flush would) and
     * of at most EVL__DIRECT_IOV buffers; the rest is queued below. */
    size_t budget = !c->wbuf.m && c->state != EVL__CONNECTING ? budget_left(c) : 0;
    if (budget > 0) {
        struct iovec v[EVL__DIRECT_IOV];
        size_t nv = 0;
        for (int i = 0; i < iovcnt && nv < EVL__DIRECT_IOV && budget > 0; i++) {
            if (iov[i].iov_len == 0)
                continue;
            v[nv] = iov[i];
            if (v[nv].iov_len > budget)
                v[nv].iov_len = budget;
            budget -= v[nv].iov_len;
            nv++;
        }
        ssize_t r = send_now(c, v, nv);
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return fail_write(c, errno);
        if (r > 0) {
            sent = (size_t)r;
            spend(c, sent);
            evl__touch(c);
        }
    }
    if (sent == total)
        return 0;
    return queue_rest(c, iov, iovcnt, total, sent);
}

/* evl_write's rare cases: whatever is not an open connection with nothing
 * queued and budget for all of it. */
static int write_slow(evl_conn *c, const void *buf, size_t len)
{
    struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
    return evl_writev(c, &v, 1);
}

/* evl_writev of one buffer, with the common case first: nothing queued, an
 * open connection, budget for all of it (on_read marked the iteration),
 * and the socket takes it all. */
int evl_write(evl_conn *c, const void *buf, size_t len)
{
    evl_loop *l = c->loop;
    if (c->state != EVL__OPEN || c->wbuf.m || c->broken || c->shut_req ||
        c->mark != (uint16_t)l->iter || len - 1 >= l->quantum - c->sent_now ||
        len > l->budget_left)
        return write_slow(c, buf, len); /* len - 1: len 0 goes there too */
    ssize_t r = send(c->io.fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if ((size_t)r == len) {
        c->sent_now += (uint32_t)len;
        l->budget_left -= len;
        if (c->stamp != l->now) /* evl__touch's first test, without reloading l */
            evl__touch(c);
        return 0;
    }
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return fail_write(c, errno);
    size_t sent = r > 0 ? (size_t)r : 0;
    if (sent > 0) {
        spend(c, sent);
        evl__touch(c);
    }
    if (r < 0 && errno == EINTR)
        return write_slow(c, buf, len); /* retried there */
    struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
    return queue_rest(c, &v, 1, len, sent);
}

/* ---- accessors ---------------------------------------------------------- */

const char *evl_data(const evl_conn *c, size_t *len)
{
    const evl_loop *l = c->loop;
    if (l->view_conn == c) {
        *len = l->view_len;
        return l->view_len ? l->view : NULL;
    }
    *len = RLEN(c);
    return evl__buf_data(&c->rbuf);
}

void evl_consume(evl_conn *c, size_t n)
{
    evl_loop *l = c->loop;
    if (l->view_conn == c) {
        evl__view_consume(l, n);
        return;
    }
    size_t have = RLEN(c);
    evl__buf_consume(&c->rbuf, n < have ? n : have);
}

void evl_wake(evl_conn *c)
{
    if (!evl__dead(c) && !evl__closing(c) && evl__conn_input_len(c) > 0)
        mark_ready(c);
}

void evl_read_pause(evl_conn *c)
{
    c->read_paused = 1;
    evl__list_unlink(&c->ready);
    update_interest(c);
}

void evl_read_resume(evl_conn *c)
{
    if (!c->read_paused)
        return;
    c->read_paused = 0;
    if (!evl__dead(c) && !evl__closing(c) && (c->rbuf.m || c->peer_eof))
        mark_ready(c); /* input that waited is delivered without new data,
                          then the EOF that came meanwhile */
    update_interest(c);
}

/* After a connect: interest for an open connection, a flush of what was
 * written meanwhile happens on the EPOLLOUT that follows. */
void evl__conn_connected(evl_conn *c)
{
    enter(c, EVL__OPEN);
    if (c->shut_req && !c->wbuf.m)
        shut_write(c); /* evl_shutdown came before the connect finished */
    update_interest(c);
}

/* ---- per-connection overrides ---------------------------------------------- */

static void own_idle_fired(evl_timer *t, void *arg)
{
    evl_conn *c = arg;
    evl_loop *l = c->loop;
    uint64_t due = c->stamp + (uint64_t)c->x->idle_ms;
    if (due > l->now) {
        (void)evl_timer_start(t, due - l->now, 0); /* progress since: later */
        return;
    }
    l->st.idle_closed++;
    evl__conn_kill(c, EVL_CLOSE_IDLE, 0);
}

int evl_set_idle_timeout(evl_conn *c, int ms)
{
    evl_loop *l = c->loop;
    if (ms < -1 || evl__dead(c) || evl__closing(c)) {
        errno = EINVAL;
        return -1;
    }
    if (ms == -1) { /* back to the loop's: the LRU, as most recently active */
        if (c->x && c->x->idle_timer) {
            evl_timer_free(c->x->idle_timer);
            c->x->idle_timer = NULL;
            evl__list_unlink(&c->link);
            c->stamp = l->now;
            evl__list_append(&l->active, &c->link);
            if (l->o.idle_timeout_ms > 0)
                evl__timer_ensure(&l->idle_timer, c->stamp + (uint64_t)l->o.idle_timeout_ms);
        }
        return 0;
    }
    struct evl__conn_ext *x = evl__conn_ext(c);
    if (!x)
        return -1;
    if (!x->idle_timer) {
        x->idle_timer = evl_timer_new(l, own_idle_fired, c);
        if (!x->idle_timer)
            return -1;
        evl__list_unlink(&c->link);
        evl__list_append(&l->custom, &c->link);
    }
    x->idle_ms = ms;
    if (ms == 0) {
        evl_timer_stop(x->idle_timer); /* never idle-closed */
        return 0;
    }
    uint64_t due = c->stamp + (uint64_t)ms;
    return evl_timer_start(x->idle_timer, due > l->now ? due - l->now : 0, 0);
}

int evl_set_wbuf_max(evl_conn *c, size_t bytes)
{
    if (bytes && bytes < WLEN(c)) {
        errno = EINVAL; /* already past it: say so rather than abort it now */
        return -1;
    }
    if (bytes == wbuf_max(c))
        return 0;
    struct evl__conn_ext *x = evl__conn_ext(c);
    if (!x)
        return -1;
    x->wbuf_max = bytes;
    return 0;
}

/* Connections that share a handler (a proxy's upstreams) point at it: the
 * pointer is the caller's, kept as long as the connection lives. */
void evl_set_handler_sized(evl_conn *c, const evl_handler *h, size_t hsize)
{
    c->h = h ? h : &c->loop->h;
    /* on_data is the last member: a caller's struct without it ends before */
    c->h_short = h && hsize < offsetof(evl_handler, on_data) + sizeof h->on_data;
}

/* The 1.0/1.1 entry (the header's macro hides this name from new programs). */
void (evl_set_handler)(evl_conn *c, const evl_handler *h)
{
    evl_set_handler_sized(c, h, offsetof(evl_handler, on_data));
}
int evl_close_reason(const evl_conn *c) { return c->reason; }
int evl_close_errno(const evl_conn *c)
{
    return c->reason == EVL_CLOSE_RESET || c->reason == EVL_CLOSE_CONNECT ||
                   c->reason == EVL_CLOSE_NOMEM
               ? c->err
               : 0;
}

const char *evl_close_reason_name(int reason)
{
    static const char *const names[] = {"open",     "eof",     "reset", "idle",
                                        "overflow", "timeout", "local", "abort",
                                        "stop",     "nomem",   "connect"};
    if (reason < 0 || (size_t)reason >= sizeof names / sizeof names[0])
        return "?";
    return names[reason];
}

size_t evl_pending(const evl_conn *c) { return WLEN(c); }
bool evl_peer_eof(const evl_conn *c) { return c->peer_eof; }
int evl_fd(const evl_conn *c) { return c->io.fd; }
evl_loop *evl_loop_of(const evl_conn *c) { return c->loop; }
void evl_set_udata(evl_conn *c, void *udata) { c->udata = udata; }
void *evl_udata(const evl_conn *c) { return c->udata; }
void evl_hold(evl_conn *c) { c->holds++; }

void evl_release(evl_conn *c)
{
    if (c->holds == 0)
        return;
    c->holds--;
    check_eof_done(c, false); /* the hold may have been all that kept it */
}
