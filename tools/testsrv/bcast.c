/*
 * bcast.c: BCAST (and FIFO lines) to every connection, sender included.
 *
 * Policy for receivers that do not read (BCAST never blocks and never holds
 * more than a bounded amount per receiver):
 *  - A receiver running a BLAST gets its MSG lines after the BLAST's last
 *    byte, never inside it: they wait in its own outbox. An outbox that would
 *    pass the cap (wbuf_max, or 64 MiB when --wbuf-max is 0) makes the server
 *    abort that receiver: counted in STATS "bcast_dropped".
 *  - Any other receiver gets the line through evl_write. When that would pass
 *    wbuf_max, the library closes the receiver (counted in the library's
 *    "overflow_closed", and here in "bcast_overflow"). With --wbuf-max 0 the
 *    server applies the 64 MiB cap itself ("bcast_dropped").
 * A stalled receiver thus costs at most about the cap, and the others are
 * not delayed by it.
 */
#include "testsrv.h"

#include <stdlib.h>
#include <string.h>

static size_t bcast_cap(const struct srv *s)
{
    size_t m = evl_get_options(s->loop)->wbuf_max;
    return m ? m : BCAST_CAP_DEFAULT;
}

static void drop(struct srv *s, struct sconn *sc)
{
    s->n.bcast_dropped++;
    sc->dead = true;
    outbox_free(s, sc);
    evl_abort(sc->c);
}

/* Appends to the outbox; false when the cap would be passed. */
static bool outbox_add(struct srv *s, struct sconn *sc, const struct iovec *iov, int iovcnt)
{
    struct outbox *ob = &sc->outbox;
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    if (ob->len + len > bcast_cap(s))
        return false;
    if (ob->len + len > ob->cap) {
        size_t cap = ob->cap ? ob->cap : 4096;
        while (cap < ob->len + len)
            cap *= 2;
        char *p = realloc(ob->data, cap);
        if (!p)
            return false;
        ob->data = p;
        ob->cap = cap;
    }
    for (int i = 0; i < iovcnt; i++) {
        memcpy(ob->data + ob->len, iov[i].iov_base, iov[i].iov_len);
        ob->len += iov[i].iov_len;
    }
    s->n.outbox_bytes += len;
    return true;
}

static void deliver(struct srv *s, struct sconn *sc, const struct iovec *iov, int iovcnt, size_t len)
{
    if (sc->blast_left > 0) {
        if (!outbox_add(s, sc, iov, iovcnt))
            drop(s, sc);
        return;
    }
    if (evl_get_options(s->loop)->wbuf_max == 0 && evl_pending(sc->c) + len > BCAST_CAP_DEFAULT) {
        drop(s, sc);
        return;
    }
    if (evl_writev(sc->c, iov, iovcnt) < 0 && errno == EVL_EOVERFLOW) {
        sc->dead = true;
        s->n.bcast_overflow++;
    }
}

void bcast_send(struct srv *s, const char *text, size_t len)
{
    struct iovec iov[3] = {
        {"MSG ", 4},
        {(void *)text, len},
        {"\n", 1},
    };
    s->n.bcast_msgs++;
    /* Safe to walk while writing: a connection closed by a failed write or
     * evl_abort leaves the list only in its on_close, after this callback. */
    for (struct sconn *sc = s->conns; sc; sc = sc->next)
        if (!sc->dead)
            deliver(s, sc, iov, 3, len + 5);
}

void outbox_flush(struct srv *s, struct sconn *sc)
{
    struct outbox *ob = &sc->outbox;
    if (ob->len > 0 && !sc->dead) {
        if (evl_write(sc->c, ob->data, ob->len) < 0 && errno == EVL_EOVERFLOW) {
            sc->dead = true;
            s->n.bcast_overflow++;
        }
    }
    outbox_free(s, sc);
}

void outbox_free(struct srv *s, struct sconn *sc)
{
    s->n.outbox_bytes -= sc->outbox.len;
    free(sc->outbox.data);
    sc->outbox = (struct outbox){0};
}
