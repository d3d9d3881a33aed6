/* A connection: reading and delivering input, buffered never-blocking
 * writes, flow control at the watermarks, and the close state machine
 * (open -> closing: flush -> lingering: wait for peer EOF -> killed -> reaped). */
#include "evl_int.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* Progress on an open connection restarts its idle clock. A closing one is
 * left alone: its stamp is the close deadline, fixed at evl_close, so a peer
 * that reads a byte at a time cannot stretch a close without bound. */
static void touch(evl_conn *c)
{
    evl_loop *l = c->loop;
    if (evl__closing(c) || evl__dead(c))
        return;
    c->stamp = l->now;
    /* Keep the active list ordered by last progress, so the idle timer only
     * ever looks at its head. A connection with its own timeout is on the
     * custom list instead; its own timer reads the stamp when it fires. */
    if (l->o.idle_timeout_ms > 0 && !c->idle_timer) {
        evl__list_unlink(&c->link);
        evl__list_append(&l->active, &c->link);
    }
}

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
    if (!evl__linked(&c->ready))
        evl__list_append(&c->loop->ready, &c->ready);
}

size_t evl__conn_input_len(const evl_conn *c)
{
    return c->view ? c->view_len : c->rbuf.len;
}

/* The interest that the connection's state calls for; epoll_ctl only when
 * it changes. */
static void update_interest(evl_conn *c)
{
    if (evl__dead(c))
        return;
    uint32_t want = 0;
    if (c->state == EVL__CONNECTING) {
        want = EVL__OUT; /* writable = the connect finished, either way */
    } else if (evl__closing(c)) {
        /* Read and discard while closing: it is how the peer's EOF (or
         * reset) is seen, and what keeps close() from sending an RST. */
        if (!c->peer_eof)
            want |= EVL__IN;
    } else if (!c->peer_eof && !c->paused && !c->read_paused &&
               c->rbuf.len < c->loop->o.rbuf_max) {
        want |= EVL__IN;
    }
    if (c->wbuf.len > 0)
        want |= EVL__OUT;
    /* A connection epoll will not watch as it needs (EPOLLOUT for pending
     * output, EPOLLIN for input) would wait for an event that never comes,
     * or be reported without end: abort it. */
    if (evl__poll_set(c->loop, &c->io, want) < 0)
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
    c->wbuf_max = l->o.wbuf_max;
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
        c->err = err;
    }
    evl__list_unlink(&c->link);
    evl__list_unlink(&c->ready);
    c->next_kill = NULL;
    *l->kill_tail = c;
    l->kill_tail = &c->next_kill;
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
    return c->reason != EVL_CLOSE_RESET && c->wbuf.len > 0;
}

/* Runs on_close and closes the fd: called by the loop between callbacks,
 * never from inside the call that killed the connection. */
void evl__conn_reap(evl_conn *c)
{
    evl_loop *l = c->loop;
    evl__unregister(l, &c->io); /* freed after the batch: c stays valid here */
    evl_timer_free(c->connect_timer);
    c->connect_timer = NULL;
    evl_timer_free(c->idle_timer);
    c->idle_timer = NULL;
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
    evl__buf_free(&c->rbuf);
    evl__buf_free(&c->wbuf);
}

/* The write side is flushed: end the graceful close. */
static void finish_close(evl_conn *c)
{
    assert(evl__closing(c) && c->wbuf.len == 0);
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
    if (c->wbuf.len == 0 && c->state != EVL__CONNECTING)
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
    c->view = NULL;
    c->view_len = 0;
    evl__list_unlink(&c->ready);
    evl__list_unlink(&c->link);
    c->stamp = l->now + (uint64_t)l->o.close_timeout_ms;
    evl__list_append(&l->closing, &c->link);
    evl__timer_ensure(&l->close_timer, c->stamp);
    if (c->wbuf.len == 0)
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
        c->err = err;
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
            mark_ready(c); /* the loop reports it in its next pass */
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
    if (c->wbuf.len > 0 || (c->holds > 0 && !c->broken))
        return;
    if (c->broken)
        evl__conn_kill(c, EVL_CLOSE_RESET, c->err);
    else
        evl__conn_kill(c, EVL_CLOSE_EOF, 0);
}

/* ---- input -------------------------------------------------------------- */

void evl__conn_deliver(evl_conn *c)
{
    evl_loop *l = c->loop;
    size_t before = evl__conn_input_len(c);
    if (before > 0 && !evl__dead(c) && !evl__closing(c) && !c->paused && !c->read_paused) {
        c->dispatched = l->iter;
        /* This call serves any re-dispatch asked for before it: if it
         * consumes nothing, the loop waits for more data (an evl_wake from
         * inside on_read still asks again). */
        evl__list_unlink(&c->ready);
        if (c->h->on_read)
            c->h->on_read(c);
        size_t after = evl__conn_input_len(c);
        /* Keep only the unconsumed tail of input shown in place. */
        if (c->view) {
            if (after > 0 && !evl__dead(c) && evl__buf_append(&c->rbuf, c->view, after) < 0)
                evl__conn_kill(c, EVL_CLOSE_NOMEM, ENOMEM);
            c->view = NULL;
            c->view_len = 0;
        }
        if (evl__dead(c) || evl__closing(c))
            return;
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
        update_interest(c);
    }
    check_eof_done(c, true);
}

static void on_readable(evl_conn *c)
{
    evl_loop *l = c->loop;
    if (c->peer_eof)
        return;
    if (evl__closing(c)) {
        ssize_t n = read(c->io.fd, l->scratch, EVL__READ_MAX);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            c->peer_eof = 1;
            check_eof_done(c, true);
            update_interest(c);
        }
        return;
    }
    if (c->paused || c->read_paused || (c->state == EVL__CONNECTING) || c->rbuf.len >= l->o.rbuf_max)
        return; /* woken by HUP/ERR while not reading: the write side or
                   on_read must make progress first */
    size_t room = l->o.rbuf_max - c->rbuf.len;
    size_t want = room < EVL__READ_MAX ? room : EVL__READ_MAX;
    /* No buffered input: read into the loop's buffer and show it in place;
     * only what on_read leaves unconsumed is copied. */
    int in_place = c->rbuf.len == 0;
    char *dst = in_place ? l->scratch : evl__buf_reserve(&c->rbuf, want);
    if (!dst) {
        evl__conn_kill(c, EVL_CLOSE_NOMEM, ENOMEM);
        return;
    }
    ssize_t n = read(c->io.fd, dst, want);
    int err = errno;
    if (!in_place)
        evl__buf_commit(&c->rbuf, n > 0 ? (size_t)n : 0);
    if (n > 0) {
        touch(c);
        if (in_place) {
            c->view = dst;
            c->view_len = (size_t)n;
        }
        evl__conn_deliver(c);
        return;
    }
    if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR))
        return;
    /* EOF, or a reset: what was received is still delivered (faults 1, 5),
     * and reading stops, so level triggering cannot spin on it. */
    if (n < 0)
        set_broken(c, err);
    c->peer_eof = 1;
    update_interest(c);
    check_eof_done(c, true);
}

/* ---- output ------------------------------------------------------------- */

static ssize_t sock_send(void *ctx, const void *p, size_t n)
{
    return send(*(const int *)ctx, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* write_quantum is a per-iteration budget for each connection, shared by
 * EPOLLOUT flushes and evl_write's direct sends. Without the second part, a
 * producer writing from on_drain to a reader that keeps up would see every
 * write taken at once, never reach wbuf_low, and stream without end while
 * every other connection waits. */
static size_t budget_left(const evl_conn *c)
{
    const evl_loop *l = c->loop;
    if (c->sent_iter != l->iter)
        return l->o.write_quantum;
    return c->sent_now < l->o.write_quantum ? l->o.write_quantum - c->sent_now : 0;
}

static void spend(evl_conn *c, size_t n)
{
    const evl_loop *l = c->loop;
    if (c->sent_iter != l->iter) {
        c->sent_iter = l->iter;
        c->sent_now = 0;
    }
    c->sent_now += n;
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
        if (c->wbuf.len == 0 && c->state != EVL__LINGERING)
            finish_close(c);
        else
            update_interest(c);
        return;
    }
    if (c->shut_req && c->wbuf.len == 0)
        shut_write(c);
    if (c->paused && c->wbuf.len <= l->o.wbuf_low) {
        c->paused = 0;
        if (c->rbuf.len > 0)
            mark_ready(c);
    }
    update_interest(c);
    if (c->drain_armed && c->wbuf.len <= l->o.wbuf_low) {
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
        if (evl__dead(c) || c->wbuf.len == 0)
            return;
    }
    if (c->wbuf.len == 0) {
        update_interest(c);
        return;
    }
    size_t budget = budget_left(c);
    if (budget == 0)
        return; /* spent by direct writes this iteration: EPOLLOUT stays on */
    ssize_t r = evl__buf_drain(&c->wbuf, sock_send, &c->io.fd, budget);
    if (r < 0) {
        fail_write(c, errno);
        return;
    }
    if (r > 0) {
        spend(c, (size_t)r);
        touch(c);
    }
    after_drain(c);
}

void evl__conn_event(evl_conn *c, uint32_t events)
{
    /* Hang-up and error are read first, so data the peer sent before it
     * went away is delivered (fault 5); the write then finds the error. */
    if (evl__dead(c))
        return;
    if (events & (EVL__ERR | EVL__HUP))
        events |= EVL__IN | EVL__OUT;
    if (events & EVL__IN)
        on_readable(c);
    if (!evl__dead(c) && (events & EVL__OUT))
        on_writable(c);
}

int evl_writev(evl_conn *c, const struct iovec *iov, int iovcnt)
{
    evl_loop *l = c->loop;
    if (evl__dead(c) || evl__closing(c) || c->broken || c->shut_req || iovcnt < 0) {
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
    size_t budget = c->wbuf.len == 0 && c->state != EVL__CONNECTING ? budget_left(c) : 0;
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
        struct msghdr m = {.msg_iov = v, .msg_iovlen = nv};
        ssize_t r;
        do {
            r = nv == 1 ? send(c->io.fd, v[0].iov_base, v[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT)
                        : sendmsg(c->io.fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        } while (r < 0 && errno == EINTR);
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return fail_write(c, errno);
        if (r > 0) {
            sent = (size_t)r;
            spend(c, sent);
            touch(c);
        }
    }
    if (sent == total)
        return 0;

    size_t rest = total - sent;
    if (c->wbuf_max && rest > c->wbuf_max - c->wbuf.len) {
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
    if (c->wbuf.len > l->st.wbuf_peak)
        l->st.wbuf_peak = c->wbuf.len;
    if (c->wbuf.len > l->o.wbuf_low)
        c->drain_armed = 1;
    if (c->wbuf.len >= l->o.wbuf_high)
        c->paused = 1; /* a client that does not read gets no more served */
    update_interest(c);
    return 0;
}

int evl_write(evl_conn *c, const void *buf, size_t len)
{
    struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
    return evl_writev(c, &v, 1);
}

/* ---- accessors ---------------------------------------------------------- */

const char *evl_data(const evl_conn *c, size_t *len)
{
    if (c->view) {
        *len = c->view_len;
        return c->view_len ? c->view : NULL;
    }
    *len = c->rbuf.len;
    return evl__buf_data(&c->rbuf);
}

void evl_consume(evl_conn *c, size_t n)
{
    if (c->view) {
        if (n > c->view_len)
            n = c->view_len;
        c->view += n;
        c->view_len -= n;
        return;
    }
    evl__buf_consume(&c->rbuf, n < c->rbuf.len ? n : c->rbuf.len);
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
    if (!evl__dead(c) && !evl__closing(c) && (c->rbuf.len > 0 || c->peer_eof))
        mark_ready(c); /* input that waited is delivered without new data,
                          then the EOF that came meanwhile */
    update_interest(c);
}

/* After a connect: interest for an open connection, a flush of what was
 * written meanwhile happens on the EPOLLOUT that follows. */
void evl__conn_connected(evl_conn *c)
{
    enter(c, EVL__OPEN);
    if (c->shut_req && c->wbuf.len == 0)
        shut_write(c); /* evl_shutdown came before the connect finished */
    update_interest(c);
}

/* ---- per-connection overrides ---------------------------------------------- */

static void own_idle_fired(evl_timer *t, void *arg)
{
    evl_conn *c = arg;
    evl_loop *l = c->loop;
    uint64_t due = c->stamp + (uint64_t)c->idle_ms;
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
        if (c->idle_timer) {
            evl_timer_free(c->idle_timer);
            c->idle_timer = NULL;
            evl__list_unlink(&c->link);
            c->stamp = l->now;
            evl__list_append(&l->active, &c->link);
            if (l->o.idle_timeout_ms > 0)
                evl__timer_ensure(&l->idle_timer, c->stamp + (uint64_t)l->o.idle_timeout_ms);
        }
        return 0;
    }
    if (!c->idle_timer) {
        c->idle_timer = evl_timer_new(l, own_idle_fired, c);
        if (!c->idle_timer)
            return -1;
        evl__list_unlink(&c->link);
        evl__list_append(&l->custom, &c->link);
    }
    c->idle_ms = ms;
    if (ms == 0) {
        evl_timer_stop(c->idle_timer); /* never idle-closed */
        return 0;
    }
    uint64_t due = c->stamp + (uint64_t)ms;
    return evl_timer_start(c->idle_timer, due > l->now ? due - l->now : 0, 0);
}

int evl_set_wbuf_max(evl_conn *c, size_t bytes)
{
    if (bytes && bytes < c->wbuf.len) {
        errno = EINVAL; /* already past it: say so rather than abort it now */
        return -1;
    }
    c->wbuf_max = bytes;
    return 0;
}

void evl_set_handler(evl_conn *c, const evl_handler *h) { c->h = h ? h : &c->loop->h; }
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

size_t evl_pending(const evl_conn *c) { return c->wbuf.len; }
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
