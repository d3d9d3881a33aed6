/* Timers: one binary min-heap per loop, ordered by (due, arming order), for
 * the user's evl_timer_ and the library's own deadlines alike (tick, accept
 * pause, idle sweep, close sweep). Arm, disarm and re-arm are O(log n); the
 * earliest deadline is O(1), which is all the wait computation needs. */
#include "evl_int.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>


static int before(const evl_timer *a, const evl_timer *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

/* The earliest deadline is kept in l->next_due too: the loop reads it
 * twice per iteration, without touching the heap. */
static void place(evl_loop *l, size_t i, evl_timer *t)
{
    l->heap[i] = t;
    t->slot = i + 1;
    if (i == 0)
        l->next_due = t->due;
}

static void sift_up(evl_loop *l, size_t i)
{
    evl_timer *t = l->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(t, l->heap[parent]))
            break;
        place(l, i, l->heap[parent]);
        i = parent;
    }
    place(l, i, t);
}

static void sift_down(evl_loop *l, size_t i)
{
    evl_timer *t = l->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= l->nheap)
            break;
        if (child + 1 < l->nheap && before(l->heap[child + 1], l->heap[child]))
            child++;
        if (!before(l->heap[child], t))
            break;
        place(l, i, l->heap[child]);
        i = child;
    }
    place(l, i, t);
}

void evl__timer_init(evl_loop *l, evl_timer *t, evl_timer_fn fn, void *arg)
{
    *t = (evl_timer){.loop = l, .fn = fn, .arg = arg};
}

void evl__timer_stop(evl_timer *t)
{
    if (!t->slot)
        return;
    evl_loop *l = t->loop;
    size_t i = t->slot - 1;
    t->slot = 0;
    evl_timer *last = l->heap[--l->nheap];
    if (l->nheap == 0)
        l->next_due = UINT64_MAX;
    if (i == l->nheap)
        return;
    place(l, i, last);
    if (i > 0 && before(last, l->heap[(i - 1) / 2]))
        sift_up(l, i);
    else
        sift_down(l, i);
}

int evl__timer_at(evl_timer *t, uint64_t due)
{
    evl_loop *l = t->loop;
    evl__timer_stop(t);
    /* The library's own timers never allocate (evl_new reserves their
     * slots, and user timers keep them free), so a deadline can always be
     * armed: only evl_timer_start can fail with ENOMEM. */
    if (l->nheap + (t->user ? 1 + EVL__OWN_TIMERS : 1) > l->heapcap) {
        size_t cap = l->heapcap ? 2 * l->heapcap : 16;
        /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
        evl_timer **h = realloc(l->heap, cap * sizeof *h);
        if (!h)
            return -1;
        l->heap = h;
        l->heapcap = cap;
    }
    t->due = due;
    t->seq = l->timer_seq++;
    place(l, l->nheap++, t);
    sift_up(l, t->slot - 1);
    return 0;
}

/* Arms t for due unless it is armed already (a sweep timer: it re-arms
 * itself for the next deadline when it fires). */
void evl__timer_ensure(evl_timer *t, uint64_t due)
{
    if (!t->slot)
        (void)evl__timer_at(t, due);
}


/* Fires the timers due now. A callback may stop, re-arm or free any timer,
 * itself included, and arm new ones; a timer armed during this pass (even
 * for "now") waits for the next iteration, so a callback that re-arms
 * itself at 0 cannot hold the loop. A periodic timer is re-armed before its
 * callback runs, so the callback may also stop or free it. */
void evl__timers_run(evl_loop *l)
{
    uint64_t pass = l->timer_seq;
    while (l->nheap) {
        evl_timer *t = l->heap[0];
        if (t->due > l->now || t->seq >= pass)
            break;
        evl__timer_stop(t);
        if (t->every) {
            uint64_t next = t->due + t->every;
            if (next <= l->now) /* fell behind: no burst of catch-up calls */
                next = l->now + t->every;
            (void)evl__timer_at(t, next); /* the slot freed above: no allocation */
        }
        t->fn(t, t->arg);
    }
}

/* ---- the public timers: allocated by the loop, freed by the user or by
 * evl_free ------------------------------------------------------------- */

evl_timer *evl_timer_new(evl_loop *l, evl_timer_fn fn, void *arg)
{
    if (!fn) {
        errno = EINVAL;
        return NULL;
    }
    evl_timer *t = malloc(sizeof *t);
    if (!t)
        return NULL;
    evl__timer_init(l, t, fn, arg);
    t->user = 1;
    evl__list_append(&l->timers, &t->link);
    return t;
}

int evl_timer_start(evl_timer *t, uint64_t after_ms, uint64_t every_ms)
{
    evl_loop *l = t->loop;
    if (after_ms > UINT64_MAX / 2 || every_ms > UINT64_MAX / 2) {
        errno = EINVAL;
        return -1;
    }
    t->every = every_ms;
    /* Perhaps called long after the last iteration: count from now. */
    l->now = evl__clock_ms();
    return evl__timer_at(t, l->now + after_ms);
}

void evl_timer_stop(evl_timer *t) { evl__timer_stop(t); }
bool evl_timer_pending(const evl_timer *t) { return t->slot != 0; }
evl_loop *evl_timer_loop(const evl_timer *t) { return t->loop; }

void evl_timer_free(evl_timer *t)
{
    if (!t)
        return;
    evl__timer_stop(t);
    evl__list_unlink(&t->link);
    free(t);
}

void evl__timers_free(evl_loop *l)
{
    /* The heap goes as a whole, so the timers need no stopping. */
    for (evl__link *p = l->timers.next, *next; p != &l->timers; p = next) {
        next = p->next;
        free(evl__container_of(p, evl_timer, link));
    }
    evl__list_init(&l->timers);
    free(l->heap);
    l->heap = NULL;
    l->nheap = l->heapcap = 0;
}
