/* The loop: epoll dispatch, accepting, timers (tick, idle, close deadlines,
 * accept pause), signals, extra fds, and the deferred reaping of closed
 * connections. */
#include "conn_fast.h"
#include "evl_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void tick_fired(evl_timer *t, void *arg);
static void trim_fired(evl_timer *t, void *arg);
static void accept_resume_fired(evl_timer *t, void *arg);
static void idle_sweep(evl_timer *t, void *arg);
static void close_sweep(evl_timer *t, void *arg);
static evl__io *add_io(evl_loop *l, int fd, enum evl__kind kind);

/* The caller's structs may come from an older header: smaller, since they
 * grow only at the end. Copy what both know; the rest keeps its default
 * (options), stays NULL (callbacks) or is not written (counters). */
static size_t known(size_t caller_size, size_t our_size)
{
    return caller_size < our_size ? caller_size : our_size;
}

void evl_options_default_sized(evl_options *o, size_t osize)
{
    evl_options d = {
        .tick_ms = 5000,
        .rbuf_max = 1u << 20,
        .wbuf_low = 64u << 10,
        .wbuf_high = 1u << 20,
        .wbuf_max = 0,
        .idle_timeout_ms = 0,
        .close_timeout_ms = 5000,
        .max_conns = 0,
        .write_quantum = 256u << 10,
        .max_events = 256,
        .write_budget = 1u << 20,
        .sndbuf = 64 << 10,
        .trim_ms = 1000,
    };
    memcpy(o, &d, known(osize, sizeof d));
}

static int options_valid(const evl_options *o)
{
    return o->tick_ms >= 0 && o->idle_timeout_ms >= 0 && o->close_timeout_ms >= 0 &&
           o->rbuf_max > 0 && o->write_quantum > 0 && o->max_events > 0 &&
           o->wbuf_low <= o->wbuf_high && o->wbuf_high > 0 &&
           (o->wbuf_max == 0 || o->wbuf_max >= o->wbuf_high) && o->write_budget > 0 &&
           o->sndbuf >= 0 && o->trim_ms >= 0;
}

evl_loop *evl_new_sized(const evl_handler *h, size_t hsize, void *udata,
                        const evl_options *o, size_t osize)
{
    evl_handler hd = {0};
    evl_options opts;
    evl_options_default(&opts);
    if (h)
        memcpy(&hd, h, known(hsize, sizeof hd));
    if (o)
        memcpy(&opts, o, known(osize, sizeof opts));
    if (!h || !options_valid(&opts)) {
        errno = EINVAL;
        return NULL;
    }
    evl_loop *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->h = hd;
    l->udata = udata;
    l->o = opts;
    l->pollfd = -1;
    evl__list_init(&l->active);
    evl__list_init(&l->closing);
    evl__list_init(&l->custom);
    evl__list_init(&l->ready);
    evl__list_init(&l->timers);
    evl__list_init(&l->killed);
    l->quantum = opts.write_quantum < UINT32_MAX ? opts.write_quantum : UINT32_MAX;
    l->next_due = UINT64_MAX;
    l->budget_left = opts.write_budget;
    l->read_max = opts.rbuf_max < EVL__READ_MAX ? opts.rbuf_max : EVL__READ_MAX;
    l->now = evl__clock_ms();
    evl__timer_init(l, &l->tick_timer, tick_fired, l);
    evl__timer_init(l, &l->accept_timer, accept_resume_fired, l);
    evl__timer_init(l, &l->idle_timer, idle_sweep, l);
    evl__timer_init(l, &l->close_timer, close_sweep, l);
    evl__timer_init(l, &l->trim_timer, trim_fired, l);
    l->scratch = malloc(EVL__READ_MAX);
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    l->heap = calloc(EVL__OWN_TIMERS, sizeof *l->heap);
    l->heapcap = EVL__OWN_TIMERS;
    int wfd = -1;
    if (!l->scratch || !l->heap || evl__poll_open(l) < 0 ||
        (wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
        !(l->wakeup = add_io(l, wfd, EVL__WAKEUP))) {
        int err = l->scratch && l->heap ? errno : ENOMEM;
        if (wfd >= 0)
            close(wfd);
        evl__poll_close(l);
        free(l->fdtab);
        free(l->heap);
        free(l->scratch);
        free(l);
        errno = err;
        return NULL;
    }
    if (opts.tick_ms > 0) {
        l->tick_timer.every = (uint64_t)opts.tick_ms;
        (void)evl__timer_at(&l->tick_timer, l->now + (uint64_t)opts.tick_ms);
    }
    return l;
}

/* ---- registry ------------------------------------------------------------ */

int evl__fdtab_put(evl_loop *l, evl__io *io)
{
    size_t fd = (size_t)io->fd;
    if (fd >= l->fdtab_len) {
        size_t n = l->fdtab_len ? l->fdtab_len : 64;
        while (n <= fd)
            n *= 2;
        /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
        evl__io **t = realloc(l->fdtab, n * sizeof *t);
        if (!t)
            return -1;
        /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
        memset(t + l->fdtab_len, 0, (n - l->fdtab_len) * sizeof *t);
        l->fdtab = t;
        l->fdtab_len = n;
    }
    l->fdtab[fd] = io;
    return 0;
}

static evl__io *fdtab_get(const evl_loop *l, int fd)
{
    return fd >= 0 && (size_t)fd < l->fdtab_len ? l->fdtab[fd] : NULL;
}

void evl__bury(evl_loop *l, evl__io *io)
{
    io->dead = 1;
    io->next_dead = l->graveyard;
    l->graveyard = io;
    l->attention = 1;
}

static void apply_interest(evl_loop *l);

static void free_graveyard(evl_loop *l)
{
    if (l->ndirty)
        apply_interest(l); /* the queue may name the dead: done with it first */
    while (l->graveyard) {
        evl__io *io = l->graveyard;
        l->graveyard = io->next_dead;
        free(io);
    }
}

static int reclaim_zombie(evl_loop *l, int fd);

/* Registers a non-connection fd (listener, extra, signalfd) for EPOLLIN. */
static evl__io *add_io(evl_loop *l, int fd, enum evl__kind kind)
{
    if (fd < 0) {
        errno = EBADF;
        return NULL;
    }
    if (fdtab_get(l, fd)) {
        errno = EEXIST;
        return NULL;
    }
    evl__io *io = calloc(1, sizeof *io);
    if (!io)
        return NULL;
    io->fd = fd;
    io->kind = (uint8_t)kind;
    int rc = evl__poll_set(l, io, EVL__IN);
    if (rc < 0 && errno == EEXIST && reclaim_zombie(l, fd) == 0)
        rc = evl__poll_set(l, io, EVL__IN); /* added again after removal */
    if (rc < 0 || evl__fdtab_put(l, io) < 0) {
        int err = errno;
        (void)evl__poll_del(l, io);
        free(io);
        errno = err;
        return NULL;
    }
    return io;
}

/* Takes io out of epoll and the fd table; it is freed at the end of the
 * batch. If the kernel refuses the EPOLL_CTL_DEL, the registration lives on
 * (while the fd, or a dup of it, is open) and its events still carry io:
 * freeing io would hand them freed memory. io is kept instead, as a zombie
 * whose events are dropped (retrying the DEL) until evl_free closes the
 * epoll fd; even after ENOENT, which the loop's own bookkeeping rules out
 * (a zombie then only costs its memory until evl_free). No interest means
 * not registered (evl__poll_set). */
void evl__unregister(evl_loop *l, evl__io *io)
{
    l->fdtab[io->fd] = NULL;
    if (io->events == 0 || evl__poll_del(l, io) == 0) {
        evl__bury(l, io);
        return;
    }
    io->dead = 1;
    io->zombie = 1;
    io->next_dead = l->zombies;
    l->zombies = io;
}

/* An event for a zombie: try the DEL again, unless a live object has taken
 * the fd number (the DEL would then remove its registration). */
static void retry_zombie(evl_loop *l, evl__io *io)
{
    if (fdtab_get(l, io->fd) || evl__poll_del(l, io) < 0)
        return;
    for (evl__io **p = &l->zombies; *p; p = &(*p)->next_dead) {
        if (*p == io) {
            *p = io->next_dead;
            break;
        }
    }
    io->zombie = 0;
    evl__bury(l, io);
}

/* fd is being added again while a zombie still holds its registration
 * (the caller's listener or extra fd stayed open): remove that first, or the
 * ADD fails with EEXIST. 0 if a zombie of fd was reclaimed. */
static int reclaim_zombie(evl_loop *l, int fd)
{
    for (evl__io *io = l->zombies; io; io = io->next_dead) {
        if (io->fd == fd) {
            retry_zombie(l, io);
            return io->zombie ? -1 : 0;
        }
    }
    return -1;
}

static void remove_io(evl_loop *l, evl__io *io) { evl__unregister(l, io); }

int evl_add_fd(evl_loop *l, int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return add_io(l, fd, EVL__EXTRA) ? 0 : -1;
}

int evl_remove_fd(evl_loop *l, int fd)
{
    evl__io *io = fdtab_get(l, fd);
    if (!io || io->kind != EVL__EXTRA) {
        errno = ENOENT;
        return -1;
    }
    remove_io(l, io);
    return 0;
}

int evl_add_listener(evl_loop *l, int listen_fd)
{
    /* accept_some takes a batch per event: on a blocking socket the accept
     * after the last waiting client would block the loop. */
    int fl = fcntl(listen_fd, F_GETFL);
    if (fl < 0 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    evl__io **t = realloc(l->listeners, (l->nlisteners + 1) * sizeof *t);
    if (!t)
        return -1;
    l->listeners = t;
    evl__io *io = add_io(l, listen_fd, EVL__LISTENER);
    if (!io)
        return -1;
    l->listeners[l->nlisteners++] = io;
    return 0;
}

/* Takes one listener out of the loop (the fd stays the caller's). */
static void drop_listener(evl_loop *l, evl__io *io)
{
    for (size_t i = 0; i < l->nlisteners; i++) {
        if (l->listeners[i] == io) {
            l->listeners[i] = l->listeners[--l->nlisteners];
            remove_io(l, io);
            return;
        }
    }
}

static void drop_listener_fd(evl_loop *l, int fd)
{
    evl__io *io = fdtab_get(l, fd);
    if (io && io->kind == EVL__LISTENER)
        drop_listener(l, io);
}

int evl_remove_listener(evl_loop *l, int listen_fd)
{
    evl__io *io = fdtab_get(l, listen_fd);
    if (!io || io->kind != EVL__LISTENER) {
        errno = ENOENT;
        return -1;
    }
    drop_listener(l, io); /* buried: an event fetched in this batch is dropped */
    return 0;
}

static void remove_listeners(evl_loop *l)
{
    for (size_t i = 0; i < l->nlisteners; i++)
        remove_io(l, l->listeners[i]);
    l->nlisteners = 0;
    evl__timer_stop(&l->accept_timer);
}

evl_conn *evl_conn_of(const evl_loop *l, int fd)
{
    evl__io *io = fdtab_get(l, fd);
    return io && io->kind == EVL__CONN ? (evl_conn *)(void *)io : NULL;
}

void evl_foreach_conn(evl_loop *l, void (*fn)(evl_conn *c, void *arg), void *arg)
{
    /* By fd, not along the lists: fn may close or abort any connection
     * (which unlinks it), and the table entry stays until the reap, which
     * cannot happen inside this call. The table may move as it grows (an
     * evl_adopt in fn), never shrinks: read it anew at each step. */
    size_t n = l->fdtab_len;
    for (size_t fd = 0; fd < n; fd++) {
        evl__io *io = l->fdtab[fd];
        if (!io || io->kind != EVL__CONN)
            continue;
        evl_conn *c = (evl_conn *)(void *)io;
        if (!evl__dead(c) && !evl__closing(c) && !c->refused)
            fn(c, arg);
    }
}

evl_conn *evl_adopt(evl_loop *l, int fd)
{
    int type;
    socklen_t tl = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0)
        return NULL; /* ENOTSOCK for a pipe or file, EBADF for a bad fd */
    if (fdtab_get(l, fd)) {
        errno = EEXIST;
        return NULL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return NULL;
    /* Called between iterations, perhaps long after the last one: the idle
     * clock of the new connection must start now, not at l->now. */
    l->now = evl__clock_ms();
    evl_conn *c = evl__conn_new(l, fd, false);
    if (!c)
        return NULL;
    l->st.accepted++;
    l->st.conns++;
    return c;
}

/* ---- reaping ------------------------------------------------------------- */

/* Runs on_close for connections killed since the last call. Called between
 * callbacks, so on_close never runs inside the call that caused it. An
 * on_close may kill others: they are reaped in the same pass. */
static void reap_all(evl_loop *l)
{
    l->reaping = 1;
    while (!evl__list_empty(&l->killed))
        evl__conn_reap(evl__container_of(l->killed.next, evl_conn, link));
    l->reaping = 0;
}

static inline __attribute__((always_inline)) void reap(evl_loop *l)
{
    /* Called after every event: the common case is nothing, which
     * `attention` says in one test. */
    if (__builtin_expect(l->attention, 0) && l->killed.next != &l->killed && !l->reaping)
        reap_all(l);
}

/* ---- accepting ----------------------------------------------------------- */

static void pause_accepting(evl_loop *l)
{
    /* The listen fd stays readable while fds are short: stop watching it
     * for a moment instead of spinning (fault 3); pending clients wait in
     * the backlog and are served when fds free up. */
    for (size_t i = 0; i < l->nlisteners; i++)
        (void)evl__poll_set(l, l->listeners[i], 0);
    (void)evl__timer_at(&l->accept_timer, l->now + EVL__ACCEPT_PAUSE_MS);
}

static void accept_resume_fired(evl_timer *t, void *arg)
{
    (void)t;
    evl_loop *l = arg;
    int failed = 0;
    for (size_t i = 0; i < l->nlisteners; i++)
        failed |= evl__poll_set(l, l->listeners[i], EVL__IN) < 0;
    /* A listener epoll would not take back (ENOMEM, ENOSPC) would never be
     * watched again: try again after another pause. */
    if (failed)
        (void)evl__timer_at(&l->accept_timer, l->now + EVL__ACCEPT_PAUSE_MS);
}

static void accept_some(evl_loop *l, evl__io *ls)
{
    for (int i = 0; i < EVL__ACCEPT_BATCH && !ls->dead && !l->stopping; i++) {
        int fd = accept4(ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return; /* the backlog is empty */
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                l->st.emfile++;
                pause_accepting(l);
                return;
            }
            /* Anything else would be reported again at once by level
             * triggering. A socket that cannot accept any more (shut down,
             * not listening, not a socket) leaves the loop; for the rest
             * (EPERM from a security module...) back off as for EMFILE. */
            l->st.accept_errors++;
            if (errno == EINVAL || errno == EBADF || errno == ENOTSOCK || errno == EOPNOTSUPP)
                drop_listener(l, ls);
            else
                pause_accepting(l);
            return;
        }
        evl_conn *c = NULL;
        if (l->o.max_conns && l->st.conns >= l->o.max_conns)
            ; /* refused without a word to the handler */
        else
            c = evl__conn_new(l, fd, false);
        if (!c) {
            close(fd);
            l->st.rejected++;
            continue;
        }
        int one = 1; /* replies go out now, not after a delayed ACK */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (l->o.sndbuf > 0) /* best effort: the kernel's default is the fallback */
            (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &l->o.sndbuf, sizeof l->o.sndbuf);
        if (l->h.on_accept && !l->h.on_accept(c)) {
            c->refused = 1;
            evl__conn_kill(c, EVL_CLOSE_LOCAL, 0);
            continue;
        }
        l->st.accepted++;
        l->st.conns++;
    }
}

/* ---- timers -------------------------------------------------------------- */

static evl_conn *first_conn(const evl__link *list)
{
    return evl__list_empty(list) ? NULL : evl__container_of(list->next, evl_conn, link);
}

/* The library's own timers: one each in the heap, re-armed for the next
 * deadline when they fire (connections are kept in deadline order). */
static void idle_sweep(evl_timer *t, void *arg)
{
    evl_loop *l = arg;
    uint64_t idle = (uint64_t)l->o.idle_timeout_ms;
    evl_conn *c;
    while ((c = first_conn(&l->active)) && c->stamp + idle <= l->now) {
        l->st.idle_closed++;
        evl__conn_kill(c, EVL_CLOSE_IDLE, 0); /* unlinks it from active */
    }
    if (c)
        (void)evl__timer_at(t, c->stamp + idle);
}

static void close_sweep(evl_timer *t, void *arg)
{
    evl_loop *l = arg;
    evl_conn *c;
    while ((c = first_conn(&l->closing)) && c->stamp <= l->now) {
        if (c->wbuf.m) {
            l->st.close_timeouts++;
            c->reason = EVL_CLOSE_TIMEOUT; /* bytes dropped: not a clean close */
        }
        evl__conn_kill(c, EVL_CLOSE_LOCAL, 0);
    }
    if (c)
        (void)evl__timer_at(t, c->stamp);
}

/* Armed by the closes and drains that free buffers (evl__trim_soon), so
 * an idle loop never wakes for it. glibc keeps freed memory for reuse and
 * returns it to the system only from the top of the heap: after a burst of
 * slow readers, RSS would stay at the burst's peak. malloc_trim(0) returns
 * every free page (madvise), at the cost of a walk over malloc's free
 * lists: done at most once per trim_ms, and only when buffers gave back at
 * least EVL__TRIM_MIN since the last one. */
static void trim_fired(evl_timer *t, void *arg)
{
    (void)t;
    (void)arg;
    if (evl__buf_released() >= EVL__TRIM_MIN) {
#ifdef __GLIBC__
        (void)malloc_trim(0);
#endif
    }
}

void evl__trim_soon(evl_loop *l)
{
    if (l->o.trim_ms > 0 && !l->trim_timer.slot)
        (void)evl__timer_at(&l->trim_timer, l->now + (uint64_t)l->o.trim_ms);
}

static void tick_fired(evl_timer *t, void *arg)
{
    (void)t;
    evl_loop *l = arg;
    l->st.ticks++;
    if (l->h.on_tick)
        l->h.on_tick(l);
}

/* How long epoll_wait may sleep: the caller's bound, shortened by the next
 * timer, and zero while input waits for re-dispatch, a kill waits to be
 * reaped, or a stop has nothing left to wait for (evl_run must return now,
 * not at the next event) or a connection to close (adopted during it). */
static inline int wait_ms(const evl_loop *l, int timeout_ms)
{
    if ((l->attention | l->stopping) &&
        (!evl__list_empty(&l->ready) || !evl__list_empty(&l->killed) ||
         (l->stopping && (l->st.conns == 0 || !evl__list_empty(&l->active)))))
        return 0;
    uint64_t due = l->next_due;
    if (due <= l->now)
        return 0;
    uint64_t left = due - l->now;
    /* evl_run's -1 makes the cap a constant: one compare in the common case */
    uint64_t cap = timeout_ms < 0 ? (uint64_t)INT_MAX : (uint64_t)timeout_ms;
    if (left < cap)
        return (int)left;
    /* no timer, or the caller's bound comes first; else the longest wait */
    return timeout_ms >= 0 || due == UINT64_MAX ? timeout_ms : INT_MAX;
}

/* ---- one iteration ------------------------------------------------------- */

static void on_signalfd(evl_loop *l)
{
    struct signalfd_siginfo si;
    while (read(l->sig->fd, &si, sizeof si) == (ssize_t)sizeof si)
        l->stop_requested = 1;
}

/* Drains the eventfd; on_wakeup runs once after the batch. */
static void on_wakeup_fd(evl_loop *l)
{
    uint64_t v;
    while (read(l->wakeup->fd, &v, sizeof v) == (ssize_t)sizeof v) {
        l->woken = 1;
        l->attention = 1;
    }
}

int evl_wakeup(evl_loop *l)
{
    uint64_t one = 1;
    /* EAGAIN: the counter is full, so the loop is woken already */
    if (write(l->wakeup->fd, &one, sizeof one) < 0 && errno != EAGAIN)
        return -1;
    return 0;
}

static void dispatch(evl_loop *l, evl__io *io, uint32_t events)
{
    if (io->dead) {
        if (io->zombie)
            retry_zombie(l, io);
        return; /* unregistered earlier in this batch (fault 9) */
    }
    switch (io->kind) {
    case EVL__CONN:
        evl__conn_event((evl_conn *)(void *)io, events);
        break;
    case EVL__LISTENER:
        accept_some(l, io);
        break;
    case EVL__EXTRA:
        if (l->h.on_fd)
            l->h.on_fd(l, io->fd);
        else
            remove_io(l, io); /* nobody reads it: level triggering would spin */
        break;
    case EVL__SIGNAL:
        on_signalfd(l);
        break;
    case EVL__WAKEUP:
        on_wakeup_fd(l);
        break;
    }
}

/* Calls on_read again for connections that kept input after consuming
 * some (fault 4). Each gets at most one call per iteration. */
static void redispatch(evl_loop *l)
{
    evl__link batch;
    evl__list_init(&batch);
    /* Move the list aside: connections marked ready during this pass wait
     * for the next iteration. */
    batch.next = l->ready.next;
    batch.prev = l->ready.prev;
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    evl__list_init(&l->ready);
    /* At most max_events calls per iteration, as for events: a thousand
     * pipelining clients cannot make one iteration long. The rest keep their
     * turn, first in the next iteration's pass. */
    for (int calls = 0; !evl__list_empty(&batch);) {
        if (calls == l->o.max_events) {
            evl__link *first = batch.next, *last = batch.prev;
            last->next = l->ready.next; /* batch, then what was marked meanwhile */
            l->ready.next->prev = last;
            first->prev = &l->ready;
            l->ready.next = first;
            return;
        }
        evl_conn *c = evl__container_of(batch.next, evl_conn, ready);
        evl__list_unlink(&c->ready);
        if (c->dispatched && c->mark == (uint16_t)l->iter) {
            evl__list_append(&l->ready, &c->ready); /* already served this round */
            continue;
        }
        evl__conn_deliver(c);
        /* Only a call of on_read counts: a connection that cannot be
         * served now (paused, closed meanwhile) takes no one's turn. */
        calls += c->dispatched && c->mark == (uint16_t)l->iter;
        reap(l);
    }
}

/* The interest changes of this iteration, in one pass (update_interest
 * queues them). Before every wait, and before the batch's dead are freed:
 * the list may name them. */
static void apply_interest(evl_loop *l)
{
    for (size_t i = 0; i < l->ndirty; i++) /* an abort here adds no entry */
        evl__conn_apply_interest(l->dirty[i]);
    l->ndirty = 0;
}

/* The work after the batch, each part rarely due: wakeup, re-dispatch,
 * timers, interest changes, reaping, freeing. */
static void after_batch(evl_loop *l)
{
    l->attention = 0; /* set again by whatever this work leaves to do */
    if (l->woken) {
        l->woken = 0;
        if (l->h.on_wakeup)
            l->h.on_wakeup(l);
        reap(l);
    }
    if (!evl__list_empty(&l->ready))
        redispatch(l);
    if (l->next_due <= l->now) {
        evl__timers_run(l);
        reap(l);
    }
    if (l->ndirty)
        apply_interest(l);
    reap(l);
    if (l->graveyard)
        free_graveyard(l);
    /* Conservative: what was done in here may have set it needlessly, and
     * what is left must keep it. */
    l->attention = !evl__list_empty(&l->ready) || !evl__list_empty(&l->killed) ||
                   l->ndirty || l->graveyard || l->woken;
}

/* Inlined in evl_run_once and in evl_run's loop: the call would be a
 * tenth of an echo's instructions. */
static inline __attribute__((always_inline)) int run_once(evl_loop *l, int timeout_ms,
                                                          bool clock_fresh)
{
    /* One clock read per iteration, after the wait. evl_run comes straight
     * back here, so its l->now is as old as the last iteration's work (a
     * timer is late by that much at most, never early); a caller of
     * evl_run_once may have been away for long: read it again then. */
    if (!clock_fresh)
        l->now = evl__clock_ms();
    if (l->attention) { /* the user's calls since the last iteration */
        apply_interest(l);
        reap(l);
    }
    int n = evl__poll_wait(l, wait_ms(l, timeout_ms));
    if (n < 0) {
        int err = errno;
        l->now = evl__clock_ms();
        l->iter++;
        if (err != EINTR) {
            free_graveyard(l);
            errno = err;
            return -1;
        }
        n = 0; /* EINTR: some signal with a handler; nothing to stop for (fault 2) */
    } else {
        l->now = evl__clock_ms();
        l->iter++;
    }
    l->budget_left = l->o.write_budget;
    for (int i = 0; i < n; i++) {
        uint32_t events;
        evl__io *io = evl__poll_event(l, i, &events);
        if (__builtin_expect(io->kind == EVL__CONN && !io->dead, 1)) {
            evl_conn *c = (evl_conn *)(void *)io;
            if (!evl__conn_fast_read(l, c, events))
                evl__conn_event(c, events);
        } else {
            dispatch(l, io, events);
        }
        reap(l);
    }
    if (__builtin_expect(l->attention, 0) || __builtin_expect(l->next_due <= l->now, 0))
        after_batch(l);
    return n;
}

int evl_run_once(evl_loop *l, int timeout_ms)
{
    if (l->busy) { /* from a callback: the batch in l->events is in use */
        errno = EBUSY;
        return -1;
    }
    l->busy = 1;
    int n = run_once(l, timeout_ms, false);
    l->busy = 0;
    /* Writes made between iterations (from outside any callback) get a
     * budget of their own, not what this iteration left. */
    l->budget_left = l->o.write_budget;
    return n;
}

/* ---- run and stop -------------------------------------------------------- */

void evl_stop(evl_loop *l) { l->stop_requested = 1; }

void evl_child_sigmask(const evl_loop *l, sigset_t *set)
{
    if (l->running)
        *set = l->child_mask;
    else
        pthread_sigmask(SIG_SETMASK, NULL, set);
}
bool evl_stopping(const evl_loop *l) { return l->stop_requested || l->stopping; }

static void begin_stop(evl_loop *l)
{
    l->stopping = 1;
    remove_listeners(l);
    l->budget_left = l->o.write_budget; /* on_stop's writes: a budget of their own */
    if (l->h.on_stop) {
        uint8_t was_busy = l->busy; /* evl_run holds it: restored after */
        l->busy = 1; /* a callback: evl_run_once, evl_run, evl_free refused */
        l->h.on_stop(l); /* closes the listen fds: late clients are refused */
        l->busy = was_busy;
    }
    evl_conn *c;
    while ((c = first_conn(&l->active)) || (c = first_conn(&l->custom)))
        evl_close(c); /* moves it to closing, or kills it */
    for (evl__link *p = l->closing.next, *next; p != &l->closing; p = next) {
        next = p->next;
        c = evl__container_of(p, evl_conn, link);
        if (c->state == EVL__LINGERING)
            evl__conn_kill(c, EVL_CLOSE_STOP, 0); /* flushed already: no need to wait for the peer */
    }
}

int evl_run(evl_loop *l, int listen_fd)
{
    if (l->busy) {
        errno = EBUSY;
        return -1;
    }
    if (listen_fd >= 0 && evl_add_listener(l, listen_fd) < 0)
        return -1;
    sigset_t stop_set, old;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGINT);
    /* Blocked and read through a signalfd: a stop is an event like any
     * other, and no handler runs in the middle of the loop's work. */
    int merr = pthread_sigmask(SIG_BLOCK, &stop_set, &old);
    if (merr != 0) { /* unblocked, a SIGTERM would kill instead of stopping */
        drop_listener_fd(l, listen_fd);
        free_graveyard(l);
        errno = merr;
        return -1;
    }
    l->child_mask = old;
    l->running = 1;
    int sfd = signalfd(-1, &stop_set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0 || !(l->sig = add_io(l, sfd, EVL__SIGNAL))) {
        int err = errno;
        if (sfd >= 0)
            close(sfd);
        drop_listener_fd(l, listen_fd); /* a retry must not find it (EEXIST) */
        free_graveyard(l);
        l->running = 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        errno = err;
        return -1;
    }
    int rc = 0;
    l->now = evl__clock_ms(); /* then once per iteration, after its wait */
    l->busy = 1; /* callbacks run: evl_run_once, evl_run, evl_free refused */
    for (;;) {
        if (l->stop_requested | l->stopping) { /* one test in the common case */
            if (!l->stopping)
                begin_stop(l);
            evl_conn *c;
            while ((c = first_conn(&l->active)))
                evl_close(c); /* adopted during the stop (by an on_close, say) */
            if (l->st.conns == 0)
                break;
        }
        if (run_once(l, -1, true) < 0) { /* the clock read after the last wait is fresh */
            rc = -1;
            break;
        }
    }
    l->busy = 0;
    int err = errno;
    on_signalfd(l); /* consume stop signals, so unblocking does not deliver them */
    remove_io(l, l->sig);
    if (rc < 0)
        drop_listener_fd(l, listen_fd); /* a stop removed it already */
    free_graveyard(l);
    l->running = 0;
    l->sig = NULL;
    close(sfd);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    l->stop_requested = 0;
    l->stopping = 0;
    errno = err;
    return rc;
}

/* ---- teardown and introspection ----------------------------------------- */

void evl_free(evl_loop *l)
{
    if (!l)
        return;
    if (l->busy) { /* from a callback: the caller's frame still uses l */
        errno = EBUSY;
        return;
    }
    l->busy = 1; /* on_close runs below: it must not free or run l either */
    do { /* an on_close may adopt a connection: it is closed too */
        evl_conn *c;
        while ((c = first_conn(&l->custom)))
            evl__conn_kill(c, EVL_CLOSE_STOP, 0);
        while ((c = first_conn(&l->active)))
            evl__conn_kill(c, EVL_CLOSE_STOP, 0);
        while ((c = first_conn(&l->closing)))
            evl__conn_kill(c, EVL_CLOSE_STOP, 0);
        reap(l);
    } while (!evl__list_empty(&l->active) || !evl__list_empty(&l->closing) ||
             !evl__list_empty(&l->custom));
    remove_listeners(l);
    int wfd = l->wakeup->fd; /* the loop's own: closed; the rest the caller's */
    for (size_t fd = 0; fd < l->fdtab_len; fd++)
        if (l->fdtab[fd])
            remove_io(l, l->fdtab[fd]);
    free_graveyard(l);
    close(wfd);
    evl__timers_free(l);
    evl__poll_close(l); /* forgets every registration, the zombies' too */
    while (l->zombies) {
        evl__io *io = l->zombies;
        l->zombies = io->next_dead;
        free(io);
    }
    free(l->dirty);
    free(l->listeners);
    free(l->fdtab);
    free(l->scratch);
    free(l);
}

static void add_buffered(const evl__link *list, struct evl_stats *st)
{
    for (const evl__link *p = list->next; p != list; p = p->next) {
        const evl_conn *c = evl__container_of(p, evl_conn, link);
        st->wbuf_bytes += evl__buf_len(&c->wbuf);
        st->rbuf_bytes += evl__buf_len(&c->rbuf);
    }
}

void evl_stats_sized(const evl_loop *l, struct evl_stats *st, size_t stsize)
{
    struct evl_stats all = l->st;
    all.iterations = l->iter; /* one counter: the marks' clock */
    all.wbuf_bytes = all.rbuf_bytes = 0;
    add_buffered(&l->active, &all);
    add_buffered(&l->custom, &all);
    add_buffered(&l->closing, &all);
    add_buffered(&l->killed, &all); /* held until the reap frees them */
    memcpy(st, &all, known(stsize, sizeof all));
}

void *evl_loop_udata(const evl_loop *l) { return l->udata; }
const evl_options *evl_get_options(const evl_loop *l) { return &l->o; }
