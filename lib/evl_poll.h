/* The readiness backend's inline half (poll.c has the rest; not "poll.h", which would shadow <poll.h>): waiting and
 * reading the batch run once per iteration and once per event, so they are
 * inline; another backend replaces this file and poll.c. Included by
 * evl_int.h, after the loop struct. */
#ifndef EVL_POLL_H
#define EVL_POLL_H

#include <sys/epoll.h>

/* Waits for events; they stay in the batch until the next wait. */
static inline int evl__poll_wait(evl_loop *l, int timeout_ms)
{
    return epoll_wait(l->pollfd, (struct epoll_event *)l->events, l->o.max_events, timeout_ms);
}

static inline evl__io *evl__poll_event(const evl_loop *l, int i, uint32_t *events)
{
    const struct epoll_event *ev = (const struct epoll_event *)l->events + i;
    *events = ev->events;
    return (evl__io *)ev->data.ptr;
}

#endif /* EVL_POLL_H */
