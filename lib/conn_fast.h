/* conn_fast.h: the connection's hot path, inlined into the loop's event
 * dispatch (issue 14: the call and its register saves were a tenth of an
 * echo's instructions). Internal; included by loop.c and conn.c only. */
#ifndef EVL_CONN_FAST_H
#define EVL_CONN_FAST_H

#include "evl_int.h"

#include <errno.h>
#include <unistd.h>

/* Progress on an open connection restarts its idle clock. A closing one is
 * left alone: its stamp is the close deadline, fixed at evl_close, so a peer
 * that reads a byte at a time cannot stretch a close without bound. */
static inline void evl__touch(evl_conn *c)
{
    evl_loop *l = c->loop;
    /* Same millisecond: the LRU order holds already (everything after c was
     * touched at this millisecond too). */
    if (c->stamp == l->now || c->state > EVL__OPEN)
        return;
    c->stamp = l->now;
    /* Keep the active list ordered by last progress, so the idle timer only
     * ever looks at its head. A connection with its own timeout is on the
     * custom list instead; its own timer reads the stamp when it fires.
     * With idle timeouts off the order does not matter: no list work. */
    if (l->o.idle_timeout_ms > 0 && !(c->x && c->x->idle_timer)) {
        evl__list_unlink(&c->link);
        evl__list_append(&l->active, &c->link);
    }
}

/* evl_consume of input shown in place (l->view_conn is the connection). */
static inline void evl__view_consume(evl_loop *l, size_t n)
{
    if (n > l->view_len)
        n = l->view_len;
    l->view += n;
    l->view_len -= n;
}

/* sent_now and dispatched count for one iteration: a new one resets them. */
static inline void evl__mark_now(evl_conn *c)
{
    uint16_t it = (uint16_t)c->loop->iter;
    if (c->mark != it) {
        c->mark = it;
        c->sent_now = 0;
        c->dispatched = 0;
    }
}

/* The hot path: readable only, an open connection reading with nothing
 * buffered, input read into the loop's buffer and shown in place, all of
 * it consumed, nothing queued. Returns false, having done nothing, when
 * any of that does not hold at the start; anything that turns out
 * differently afterwards is finished by the general code. */
static inline __attribute__((always_inline)) bool evl__conn_fast_read(evl_loop *l, evl_conn *c,
                                                                       uint32_t events)
{
    /* l is c->loop, passed in: the compiler cannot know it and would load
     * it again after every call. */
    if (events != EVL__IN || c->state != EVL__OPEN || c->peer_eof || c->paused ||
        c->read_paused || c->h_short || c->rbuf.m)
        return false;
    ssize_t n = read(c->io.fd, l->scratch, l->read_max);
    if (n <= 0) {
        evl__conn_read_ended(c, n, errno);
        return true;
    }
    if (c->stamp != l->now) /* evl__touch, for a connection known to be open */
        evl__touch(c);
    uint16_t it = (uint16_t)l->iter; /* evl__mark_now */
    if (c->mark != it) {
        c->mark = it;
        c->sent_now = 0;
    }
    c->dispatched = 1;
    evl__list_unlink(&c->ready); /* served by this call (see deliver) */
    l->view_conn = c;
    l->view = l->scratch;
    l->view_len = (size_t)n;
    /* The handler is read now, not before the read: nothing to keep across
     * the call. Neither callback: the input stays unconsumed (deliver). */
    const evl_handler *h = c->h; /* a full struct: h_short is clear */
    if (h->on_data) {
        size_t used = h->on_data(c, l->scratch, (size_t)n);
        size_t left = l->view_len; /* less if it called evl_consume */
        if (__builtin_expect(used >= left, 1))
            l->view_len = 0;
        else
            evl__view_consume(l, used);
    } else if (h->on_read) {
        h->on_read(c);
    }
    l->view_conn = NULL;
    /* All consumed and still open: done. Anything else is deliver's tail.
     * (on_read cannot buffer input or see EOF; a failed write, which sets
     * peer_eof, also kills: the state says it.) */
    if (__builtin_expect(l->view_len || c->state != EVL__OPEN, 0))
        evl__conn_after_read(c, (size_t)n);
    return true;
}

#endif /* EVL_CONN_FAST_H */
