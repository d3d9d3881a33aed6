/* Internal to lib/: the loop and connection structs, shared by loop.c (the
 * loop, dispatch, timers, accept) and conn.c (a connection's I/O and its
 * close state machine). Public names are evl_, internal ones evl__. */
#ifndef EVL_INT_H
#define EVL_INT_H

#include "buf.h"
#include "evloop.h"

#include <signal.h>
#include <stdint.h>
#include <time.h>

#define EVL__READ_MAX        ((size_t)64 << 10) /* bytes per read() */
#define EVL__ACCEPT_BATCH    128           /* accepts per listener event */
#define EVL__DIRECT_IOV      64            /* buffers per direct sendmsg (< IOV_MAX) */
#define EVL__ACCEPT_PAUSE_MS 100           /* after EMFILE: retry this late */
#define EVL__OWN_TIMERS      5             /* tick, accept, idle, close, trim */
#define EVL__TRIM_MIN        ((size_t)256 << 10) /* released before a malloc_trim */
#define EVL__WRITE_FLOOR     ((size_t)4096) /* sent per connection per iteration
                                               whatever is left of write_budget */

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
    uint8_t events;             /* interest registered with epoll now */
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

/* What few connections use, allocated on first use so an idle connection
 * stays small (issue 14: the struct is 120 bytes, one 128-byte malloc chunk;
 * keep it there). */
struct evl__conn_ext {
    evl_timer *connect_timer;/* evl_connect's timeout, while connecting */
    evl_timer *idle_timer;   /* evl_set_idle_timeout: its own, off the LRU */
    int idle_ms;             /*   and its period */
    size_t wbuf_max;         /* evl_set_wbuf_max (a copy of the loop's until) */
};

struct evl_conn {
    evl__io io;
    evl_loop *loop;
    void *udata;
    evl__buf rbuf;           /* unconsumed input, when it outlives on_read */
    evl__buf wbuf;           /* output the kernel has not taken yet */
    evl__link link;          /* in loop->active (LRU), ->custom, ->closing
                                (FIFO) or, once killed, ->killed */
    evl__link ready;         /* in loop->ready: input to re-dispatch */
    uint64_t stamp;          /* active: last progress (ms); closing: deadline */
    const evl_handler *h;    /* this connection's callbacks */
    struct evl__conn_ext *x; /* NULL until an override or evl_connect needs it */
    uint32_t sent_now;       /* bytes sent in iteration `mark`: write_quantum */
    unsigned holds;          /* evl_hold count: EOF does not close it */
    uint16_t mark;           /* the loop's iteration (low 16 bits) that
                                sent_now and dispatched count for; a wrap can
                                only delay a connection by one iteration */
    uint8_t state;           /* enum evl__state: the connection's life */
    uint8_t reason;          /* enum evl_close_reason, set by the first cause */
    /* Conditions, not states; uint16_t bit-fields so they fit in two bytes. */
    uint16_t peer_eof : 1;   /* read() returned 0 (or failed) */
    uint16_t broken : 1;     /* the socket failed: nothing can be sent */
    uint16_t paused : 1;     /* pending reached wbuf_high: not reading */
    uint16_t drain_armed : 1;/* pending went above wbuf_low: on_drain due */
    uint16_t refused : 1;    /* on_accept said no: close without on_close */
    uint16_t read_paused : 1;/* evl_read_pause */
    uint16_t eof_reported : 1;/* on_eof was called */
    uint16_t shut_req : 1;   /* evl_shutdown: FIN once flushed, no more writes */
    uint16_t wr_shut : 1;    /* the FIN is sent */
    uint16_t dispatched : 1; /* on_read was called in iteration `mark` */
    uint16_t interest_queued : 1; /* in loop->dirty: epoll_ctl before the wait */
    uint16_t eof_only : 1;   /* in loop->ready only to report the EOF: no
                                on_read with input it already declined */
    uint16_t h_short : 1;    /* h came from a program built before on_data
                                (the evl_set_handler of ABI 1.0/1.1): its
                                on_data, past the caller's struct, is unread */
    int16_t err;             /* errno behind the close reason */
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
    evl_conn **dirty;           /* conns whose interest changed: applied once, */
    size_t ndirty, dirtycap;    /*   before the next epoll_wait */
    size_t budget_left;         /* of write_budget, in this iteration */
    size_t quantum;             /* write_quantum, at most UINT32_MAX (sent_now) */
    size_t read_max;            /* one read's size: rbuf_max, at most EVL__READ_MAX */
    evl__link killed;           /* killed, on_close not run yet (FIFO) */
    evl_conn *view_conn;        /* during its on_read: input shown in place */
    const char *view;           /*   from the loop's read buffer (no copy) */
    size_t view_len;
    evl__io *graveyard;         /* freed at the end of the batch */
    evl__io *zombies;           /* freed by evl_free (see evl__unregister) */

    evl__io **listeners;
    size_t nlisteners;
    evl__io *sig;               /* signalfd while evl_run runs */
    evl__io *wakeup;            /* eventfd of evl_wakeup */

    uint64_t now;               /* ms, CLOCK_MONOTONIC, refreshed per batch */
    uint8_t attention;          /* 0: nothing ready, killed, dirty, buried or
                                   woken: the iteration's tail is skipped */
    evl_timer **heap;           /* armed timers, a binary min-heap (timer.c) */
    size_t nheap, heapcap;
    uint64_t next_due;          /* heap[0]->due, UINT64_MAX when empty */
    uint64_t timer_seq;
    evl__link timers;           /* every user timer, for evl_free */
    evl_timer tick_timer;       /* on_tick, every tick_ms */
    evl_timer accept_timer;     /* re-arms listeners paused after EMFILE */
    evl_timer idle_timer;       /* due when the LRU head idles out */
    evl_timer close_timer;      /* due at the first close deadline */
    evl_timer trim_timer;       /* malloc_trim after buffers were released */
    uint64_t iter;
    sigset_t child_mask;        /* the mask from before evl_run blocked the
                                   stop signals (evl_child_sigmask) */
    /* Flags as whole bytes: tested on every iteration, a byte load is
     * cheaper than a bit-field's load, mask and test. */
    uint8_t running;            /* inside evl_run */
    uint8_t woken;              /* the eventfd fired: on_wakeup due */
    uint8_t stop_requested;
    uint8_t stopping;           /* graceful stop under way */
    uint8_t reaping;            /* inside evl__reap: no nested reaping */
    uint8_t busy;               /* inside evl_run_once or evl_free: callbacks may
                                   run, so neither may be re-entered (EBUSY) */
};

/* poll.c: the readiness backend */
int evl__poll_open(evl_loop *l);
void evl__poll_close(evl_loop *l);
int evl__poll_set(evl_loop *l, evl__io *io, uint32_t events);
int evl__poll_del(evl_loop *l, evl__io *io);

/* The loop's clock: milliseconds of CLOCK_MONOTONIC. Inline: read once per
 * iteration on the hot path. */
static inline uint64_t evl__clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* timer.c */
void evl__timer_init(evl_loop *l, evl_timer *t, evl_timer_fn fn, void *arg);
int evl__timer_at(evl_timer *t, uint64_t due);
void evl__timer_ensure(evl_timer *t, uint64_t due);
void evl__timer_stop(evl_timer *t);
void evl__timers_run(evl_loop *l);
void evl__timers_free(evl_loop *l);

/* loop.c */
int evl__fdtab_put(evl_loop *l, evl__io *io);
void evl__bury(evl_loop *l, evl__io *io);
void evl__unregister(evl_loop *l, evl__io *io);
void evl__trim_soon(evl_loop *l);

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
void evl__conn_apply_interest(evl_conn *c);
void evl__conn_read_ended(evl_conn *c, ssize_t n, int err);
void evl__conn_after_read(evl_conn *c, size_t before);
struct evl__conn_ext *evl__conn_ext(evl_conn *c);
void evl__conn_connected(evl_conn *c);

/* connect.c */
void evl__connect_finish(evl_conn *c, int err);
void evl__conn_reap(evl_conn *c);
size_t evl__conn_input_len(const evl_conn *c);

#include "evl_poll.h" /* the backend's inline half: wait and read the batch */

#endif /* EVL_INT_H */
