/* Internal to lib/: the loop and connection structs, shared by loop.c (the
 * loop, dispatch, timers, accept) and conn.c (a connection's I/O and its
 * close state machine). Public names are evl_, internal ones evl__. */
#ifndef EVL_INT_H
#define EVL_INT_H

#include "buf.h"
#include "evloop.h"

#include <signal.h>
#include <stdint.h>

#define EVL__READ_MAX        ((size_t)64 << 10) /* bytes per read() */
#define EVL__ACCEPT_BATCH    128           /* accepts per listener event */
#define EVL__DIRECT_IOV      64            /* buffers per direct sendmsg (< IOV_MAX) */
#define EVL__ACCEPT_PAUSE_MS 100           /* after EMFILE: retry this late */
#define EVL__OWN_TIMERS      4             /* tick, accept, idle, close */

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

enum evl__kind { EVL__CONN, EVL__LISTENER, EVL__EXTRA, EVL__SIGNAL, EVL__WAKEUP };

/* Readiness bits, backend-neutral (poll.c checks they equal epoll's). */
#define EVL__IN  0x001u
#define EVL__OUT 0x004u
#define EVL__ERR 0x008u
#define EVL__HUP 0x010u

/* A timer: in the loop's heap while armed (slot = index + 1, 0 = not
 * armed). The user's are allocated by evl_timer_new and listed in
 * loop->timers; the library's own are members of the loop. */
struct evl_timer {
    evl_loop *loop;
    evl_timer_fn fn;
    void *arg;
    uint64_t due;            /* ms, the loop's clock */
    uint64_t every;          /* period, 0 = one-shot */
    uint64_t seq;            /* arming order: ties, and "armed in this pass" */
    size_t slot;
    evl__link link;          /* in loop->timers (user timers only) */
    unsigned user : 1;
};

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

/* A connection's life (conn.c's enter() is the one place it changes):
 *   CONNECTING -> OPEN        evl_connect's connect succeeded
 *   OPEN -> FLUSHING          evl_close (or a stop): no more reading for the
 *                             handler; pending output goes out
 *   FLUSHING -> LINGERING     flushed: our FIN sent, waiting for the peer's
 *   any but DEAD -> DEAD      killed: on_close and close() at the next reap
 * The other bits of evl_conn are conditions, not states: the peer's EOF,
 * a broken socket, the two read pauses, a requested half-close. */
enum evl__state { EVL__CONNECTING, EVL__OPEN, EVL__FLUSHING, EVL__LINGERING, EVL__DEAD };

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
    uint8_t state;           /* enum evl__state: the connection's life */
    unsigned peer_eof : 1;   /* read() returned 0 (or failed) */
    unsigned broken : 1;     /* the socket failed: nothing can be sent */
    unsigned paused : 1;     /* pending reached wbuf_high: not reading */
    unsigned drain_armed : 1;/* pending went above wbuf_low: on_drain due */
    unsigned refused : 1;    /* on_accept said no: close without on_close */
    unsigned read_paused : 1;/* evl_read_pause */
    unsigned eof_reported : 1;/* on_eof was called */
    unsigned shut_req : 1;   /* evl_shutdown: FIN once flushed, no more writes */
    unsigned wr_shut : 1;    /* the FIN is sent */
    uint8_t reason;          /* enum evl_close_reason, set by the first cause */
    unsigned holds;          /* evl_hold count: EOF does not close it */
    int err;                 /* errno behind the close reason */
    const evl_handler *h;    /* this connection's callbacks */
    evl_timer *connect_timer;/* evl_connect's timeout, while connecting */
    evl_timer *idle_timer;   /* evl_set_idle_timeout: its own, off the LRU */
    int idle_ms;             /*   and its period */
    size_t wbuf_max;         /* evl_set_wbuf_max; the loop's by default */
};

struct evl_loop {
    int pollfd;                 /* the backend's fd (poll.c) */
    evl_handler h;
    void *udata;
    evl_options o;
    struct evl_stats st;        /* wbuf_bytes/rbuf_bytes filled on demand */

    evl__io **fdtab;            /* fd -> registered object, O(1) */
    size_t fdtab_len;
    void *events;               /* the backend's event batch (poll.c) */
    char *scratch;              /* read buffer shared by all connections */

    evl__link active;           /* open conns, least recently active first */
    evl__link closing;          /* evl_close'd conns, earliest deadline first */
    evl__link custom;           /* open conns with their own idle timeout */
    evl__link ready;            /* conns with input to re-dispatch */
    evl_conn *kill_head, **kill_tail;
    evl__io *graveyard;         /* freed at the end of the batch */
    evl__io *zombies;           /* freed by evl_free (see evl__unregister) */

    evl__io **listeners;
    size_t nlisteners;
    evl__io *sig;               /* signalfd while evl_run runs */
    evl__io *wakeup;            /* eventfd of evl_wakeup */

    uint64_t now;               /* ms, CLOCK_MONOTONIC, refreshed per batch */
    evl_timer **heap;           /* armed timers, a binary min-heap (timer.c) */
    size_t nheap, heapcap;
    uint64_t timer_seq;
    evl__link timers;           /* every user timer, for evl_free */
    evl_timer tick_timer;       /* on_tick, every tick_ms */
    evl_timer accept_timer;     /* re-arms listeners paused after EMFILE */
    evl_timer idle_timer;       /* due when the LRU head idles out */
    evl_timer close_timer;      /* due at the first close deadline */
    uint64_t iter;
    sigset_t child_mask;        /* the mask from before evl_run blocked the
                                   stop signals (evl_child_sigmask) */
    unsigned running : 1;       /* inside evl_run */
    unsigned woken : 1;         /* the eventfd fired: on_wakeup due */
    unsigned stop_requested : 1;
    unsigned stopping : 1;      /* graceful stop under way */
    unsigned reaping : 1;       /* inside evl__reap: no nested reaping */
    unsigned busy : 1;          /* inside evl_run_once or evl_free: callbacks may
                                   run, so neither may be re-entered (EBUSY) */
};

/* poll.c: the readiness backend */
int evl__poll_open(evl_loop *l);
void evl__poll_close(evl_loop *l);
int evl__poll_set(evl_loop *l, evl__io *io, uint32_t events);
int evl__poll_del(evl_loop *l, evl__io *io);
int evl__poll_wait(evl_loop *l, int timeout_ms);
evl__io *evl__poll_event(const evl_loop *l, int i, uint32_t *events);

/* timer.c */
uint64_t evl__clock_ms(void);
void evl__timer_init(evl_loop *l, evl_timer *t, evl_timer_fn fn, void *arg);
int evl__timer_at(evl_timer *t, uint64_t due);
void evl__timer_ensure(evl_timer *t, uint64_t due);
void evl__timer_stop(evl_timer *t);
uint64_t evl__timer_next(const evl_loop *l);
void evl__timers_run(evl_loop *l);
void evl__timers_free(evl_loop *l);

/* loop.c */
int evl__fdtab_put(evl_loop *l, evl__io *io);
void evl__bury(evl_loop *l, evl__io *io);
void evl__unregister(evl_loop *l, evl__io *io);

static inline bool evl__dead(const evl_conn *c) { return c->state == EVL__DEAD; }
static inline bool evl__closing(const evl_conn *c)
{
    return c->state == EVL__FLUSHING || c->state == EVL__LINGERING;
}

/* conn.c */
evl_conn *evl__conn_new(evl_loop *l, int fd, bool connecting);
void evl__conn_event(evl_conn *c, uint32_t events);
void evl__conn_deliver(evl_conn *c);
void evl__conn_kill(evl_conn *c, int reason, int err);
void evl__conn_connected(evl_conn *c);

/* connect.c */
void evl__connect_finish(evl_conn *c, int err);
void evl__conn_reap(evl_conn *c);
size_t evl__conn_input_len(const evl_conn *c);

#endif /* EVL_INT_H */
