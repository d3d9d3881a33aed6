/*
 * proxy.c: --mode proxy --upstream ADDR:PORT|/path. Every accepted client
 * gets its own upstream connection (evl_connect); bytes flow both ways.
 *
 * Backpressure across two sockets: a side stops reading while the other
 * side's pending output is at wbuf_high, and resumes when that output
 * drains to wbuf_low (the other side's on_drain). So the proxy holds at most
 * about wbuf_high + one read per direction, however fast one end writes and
 * however slowly the other reads.
 *
 * Close: a clean EOF passes through as a half-close (on_eof -> evl_shutdown
 * of the other side); each side is held while the other may still send to
 * it. A reset, a failed connect or any other abnormal close of one side
 * aborts (reset) or closes the other, so nothing is left behind.
 */
#include "testsrv.h"

#include <stdio.h>
#include <stdlib.h>

struct pside {
    evl_conn *c;            /* NULL once closed */
    struct pside *other;
    struct ppair *pair;
};

struct ppair {
    struct pside client, up;
};

static struct srv *srv_of_conn(evl_conn *c) { return evl_loop_udata(evl_loop_of(c)); }

static void proxy_read(evl_conn *c)
{
    struct pside *me = evl_udata(c);
    size_t n;
    const char *p = evl_data(c, &n);
    evl_conn *to = me->other->c;
    if (!to) { /* the other side is gone: nothing to forward to */
        evl_consume(c, n);
        return;
    }
    if (evl_write(to, p, n) < 0) {
        evl_consume(c, n); /* the library aborted the other side */
        return;
    }
    evl_consume(c, n);
    if (evl_pending(to) >= evl_get_options(evl_loop_of(c))->wbuf_high) {
        srv_of_conn(c)->n.proxy_pauses++;
        evl_read_pause(c);
    }
}

/* The other side's output drained to wbuf_low: read this side again. */
static void proxy_drain(evl_conn *c)
{
    struct pside *me = evl_udata(c);
    if (me->other->c)
        evl_read_resume(me->other->c);
}

/* This side's peer finished sending: pass the half-close on. The other
 * side's hold ends here, since nothing more will come for it. */
static void proxy_eof(evl_conn *c)
{
    struct pside *me = evl_udata(c);
    evl_conn *to = me->other->c;
    if (to) {
        evl_shutdown(to);
        evl_release(to);
    }
}

static void proxy_connect(evl_conn *c, int err)
{
    struct srv *s = srv_of_conn(c);
    if (err)
        s->n.proxy_connect_failed++;
}

static void proxy_close(evl_conn *c)
{
    struct pside *me = evl_udata(c);
    evl_conn *to = me->other->c;
    me->c = NULL;
    if (to) {
        int why = evl_close_reason(c);
        if (why == EVL_CLOSE_EOF || why == EVL_CLOSE_LOCAL || why == EVL_CLOSE_STOP ||
            why == EVL_CLOSE_CONNECT || why == EVL_CLOSE_IDLE) {
            evl_close(to); /* flush what it has, then FIN */
        } else {
            evl_abort(to); /* reset, overflow, timeout, abort: pass the failure on */
        }
    } else {
        free(me->pair); /* the second side to go frees the pair */
    }
}

static const evl_handler proxy_handler = {
    .on_read = proxy_read,
    .on_drain = proxy_drain,
    .on_close = proxy_close,
    .on_connect = proxy_connect,
    .on_eof = proxy_eof,
};

bool proxy_accept(struct srv *s, evl_conn *c)
{
    struct ppair *pr = calloc(1, sizeof *pr);
    if (!pr)
        return false;
    pr->client.other = &pr->up;
    pr->up.other = &pr->client;
    pr->client.pair = pr->up.pair = pr;
    evl_conn *up = evl_connect(s->loop, s->cfg.upstream, s->cfg.upstream_port, 5000,
                               &proxy_handler, &pr->up);
    if (!up) {
        s->n.proxy_connect_failed++;
        free(pr);
        return false; /* the client is closed at once */
    }
    pr->up.c = up;
    pr->client.c = c;
    evl_set_udata(c, &pr->client);
    evl_set_handler(c, &proxy_handler);
    evl_hold(c);  /* each side stays while the other may still send to it */
    evl_hold(up);
    return true;
}
