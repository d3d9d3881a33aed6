/* Internal to lib/: the loop and connection structs, shared by loop.c (the
 * loop, dispatch, timers, accept) and conn.c (a connection's I/O and its
 * close state machine). Public names are evl_, internal ones evl__. */
#ifndef EVL_INT_H
#define EVL_INT_H

#include "buf.h"
#include "evloop.h"

#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>

#define EVL__READ_MAX        ((size_t)64 << 10) /* bytes per read() */
#define EVL__ACCEPT_BATCH    128           /* accepts per listener event */
#define EVL__DIRECT_IOV      64            /* buffers per direct sendmsg (< IOV_MAX) */
#define EVL__ACCEPT_PAUSE_MS 100           /* after EMFILE: retry this late */

/* An intrusive doubly linked list; a head is a link pointing at itself. */
typedef struct evl__link {
    struct evl__link *prev, *next;
} evl__link;

static inline void evl__list_init(evl__link *h) { h->prev = h->next = h; }
static inline int evl__list_empty(const evl__link *h) { return h->next == h; }
static inline int evl__linked(const evl__link *n) { return n->next != NULL; }
static inline void evl__list_unlink(evl__link *n)
{
    if (!n->next)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}
static inline void evl__list_append(evl__link *h, evl__link *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}
#define evl__container_of(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

enum evl__kind { EVL__CONN, EVL__LISTENER, EVL__EXTRA, EVL__SIGNAL };

/* First member of everything registered with epoll; epoll_event.data.ptr
 * points here, so an event carries its object, not a bare fd. An object
 * unregistered during a batch is marked dead and freed only at the end of
 * the batch, so a stale event still in the batch finds "dead" and is
 * dropped, even if its fd number was already reused by a new object. */
typedef struct evl__io {
    int fd;
    uint8_t kind;
    uint8_t dead;
    uint8_t zombie;             /* dead, but epoll refused to forget it */
    uint32_t events;            /* interest registered with epoll now */
    struct evl__io *next_dead;  /* graveyard chain */
} evl__io;

struct evl_conn {
    evl__io io;
    evl_loop *loop;
    void *udata;
    evl__buf rbuf;           /* unconsumed input, when it outlives on_read */
    evl__buf wbuf;           /* output the kernel has not taken yet */
    const char *view;        /* during on_read: input shown in place from the */
    size_t view_len;         /*   loop's read buffer (no copy) */
    evl__link link;          /* in loop->active (LRU) or loop->closing (FIFO) */
    evl__link ready;         /* in loop->ready: input to re-dispatch */
    evl_conn *next_kill;     /* in loop's kill queue */
    uint64_t stamp;          /* active: last progress (ms); closing: deadline */
    uint64_t dispatched;     /* iteration of the last on_read */
    uint64_t sent_iter;      /* iteration that sent_now counts for */
    size_t sent_now;         /* bytes sent in it: capped by write_quantum */
    unsigned peer_eof : 1;   /* read() returned 0 (or failed) */
    unsigned broken : 1;     /* the socket failed: nothing can be sent */
    unsigned paused : 1;     /* pending reached wbuf_high: not reading */
    unsigned drain_armed : 1;/* pending went above wbuf_low: on_drain due */
    unsigned closing : 1;    /* evl_close: flushing, then lingering */
    unsigned lingering : 1;  /* flushed and shut down; waiting for peer EOF */
    unsigned killed : 1;     /* queued for on_close and close() */
    unsigned refused : 1;    /* on_accept said no: close without on_close */
    unsigned holds;          /* evl_hold count: EOF does not close it */
};

struct evl_loop {
    int epfd;
    evl_handler h;
    void *udata;
    evl_options o;
    struct evl_stats st;        /* wbuf_bytes/rbuf_bytes filled on demand */

    evl__io **fdtab;            /* fd -> registered object, O(1) */
    size_t fdtab_len;
    struct epoll_event *events;
    char *scratch;              /* read buffer shared by all connections */

    evl__link active;           /* open conns, least recently active first */
    evl__link closing;          /* evl_close'd conns, earliest deadline first */
    evl__link ready;            /* conns with input to re-dispatch */
    evl_conn *kill_head, **kill_tail;
    evl__io *graveyard;         /* freed at the end of the batch */
    evl__io *zombies;           /* freed by evl_free (see evl__unregister) */

    evl__io **listeners;
    size_t nlisteners;
    evl__io *sig;               /* signalfd while evl_run runs */

    uint64_t now;               /* ms, CLOCK_MONOTONIC, refreshed per batch */
    uint64_t next_tick;
    uint64_t accept_resume;     /* 0, or when to re-arm paused listeners */
    uint64_t iter;
    sigset_t child_mask;        /* the mask from before evl_run blocked the
                                   stop signals (evl_child_sigmask) */
    unsigned running : 1;       /* inside evl_run */
    unsigned stop_requested : 1;
    unsigned stopping : 1;      /* graceful stop under way */
    unsigned reaping : 1;       /* inside evl__reap: no nested reaping */
    unsigned busy : 1;          /* inside evl_run_once or evl_free: callbacks may
                                   run, so neither may be re-entered (EBUSY) */
};

/* loop.c */
int evl__fdtab_put(evl_loop *l, evl__io *io);
void evl__bury(evl_loop *l, evl__io *io);
void evl__unregister(evl_loop *l, evl__io *io);
int evl__set_interest(evl_loop *l, evl__io *io, uint32_t events);

/* conn.c */
evl_conn *evl__conn_new(evl_loop *l, int fd);
void evl__conn_event(evl_conn *c, uint32_t events);
void evl__conn_deliver(evl_conn *c);
void evl__conn_kill(evl_conn *c);
void evl__conn_reap(evl_conn *c);
size_t evl__conn_input_len(const evl_conn *c);

#endif /* EVL_INT_H */
