/* The readiness backend: every epoll call of the library is here, behind the
 * four evl__poll_ functions of evl_int.h, so another backend (io_uring's
 * poll, kqueue) replaces this file and touches nothing else. */
#include "evl_int.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

/* The backend-neutral event bits are epoll's own values: no translation on
 * the hot path. */
_Static_assert(EVL__IN == EPOLLIN && EVL__OUT == EPOLLOUT && EVL__ERR == EPOLLERR &&
                   EVL__HUP == EPOLLHUP,
               "EVL__ event bits must equal epoll's");

int evl__poll_open(evl_loop *l)
{
    l->events = calloc((size_t)l->o.max_events, sizeof(struct epoll_event));
    if (!l->events)
        return -1;
    l->pollfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->pollfd < 0) {
        int err = errno;
        free(l->events);
        l->events = NULL;
        errno = err;
        return -1;
    }
    return 0;
}

void evl__poll_close(evl_loop *l)
{
    if (l->pollfd >= 0)
        close(l->pollfd);
    free(l->events);
}

/* The one place interest changes. No interest means not registered at all:
 * epoll reports EPOLLHUP and EPOLLERR whatever the interest, so an fd kept
 * registered with none (a paused listener that was shut down, a half-closed
 * unix connection waiting for its deferred reply) would be reported again in
 * every iteration: a spin. */
int evl__poll_set(evl_loop *l, evl__io *io, uint32_t events)
{
    if (io->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    int op = events == 0 ? EPOLL_CTL_DEL : io->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(l->pollfd, op, io->fd, &ev) < 0)
        return -1;
    io->events = events;
    return 0;
}

/* Unregisters io whatever its interest. 0, or -1 with epoll's errno: the
 * registration then lives on (see evl__unregister's zombies). */
int evl__poll_del(evl_loop *l, evl__io *io)
{
    if (epoll_ctl(l->pollfd, EPOLL_CTL_DEL, io->fd, NULL) < 0)
        return -1;
    io->events = 0;
    return 0;
}
