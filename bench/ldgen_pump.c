/* ldgen pump: every connection streams its pattern as fast as the server
 * echoes it, with at most `window` bytes sent and not yet echoed (so the
 * server's buffers, not the client's patience, bound what is in flight).
 * Throughput is the verified echoed bytes in the window after warm-up, in
 * MB/s (10^6 bytes). */
#include "ldgen.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct pump_conn {
    int fd;
    uint32_t stream;
    uint64_t tx_off, rx_off;
    uint32_t events;
} pump_conn;

static char tx_buf[LDGEN_MAX_SIZE];
static char rx_buf[256 << 10];

static int set_events(int ep, pump_conn *c, uint32_t ev)
{
    if (c->events == ev)
        return 0;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    c->events = ev;
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* Writes until the window is full (then only reading reopens it) or the
 * socket is (then EPOLLOUT says when to go on). */
static int tx(const ldgen_opts *o, int ep, pump_conn *c)
{
    while (c->tx_off - c->rx_off < o->window) {
        size_t room = (size_t)(o->window - (c->tx_off - c->rx_off));
        size_t n = room < o->size ? room : o->size;
        ldgen_pat_fill(c->stream, c->tx_off, tx_buf, n);
        ssize_t w = send(c->fd, tx_buf, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return set_events(ep, c, EPOLLIN | EPOLLOUT);
            ldgen_fail("send: %s", strerror(errno));
            return -1;
        }
        c->tx_off += (uint64_t)w;
    }
    return set_events(ep, c, EPOLLIN);
}

/* Returns bytes verified (>= 0) or -1. */
static ssize_t rx(pump_conn *c)
{
    ssize_t n = read(c->fd, rx_buf, sizeof rx_buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        ldgen_fail("server closed a connection (%s)", n < 0 ? strerror(errno) : "EOF");
        return -1;
    }
    if (c->rx_off + (uint64_t)n > c->tx_off ||
        !ldgen_pat_check(c->stream, c->rx_off, rx_buf, (size_t)n)) {
        ldgen_fail("wrong bytes echoed at offset %llu of connection %u",
                   (unsigned long long)c->rx_off, c->stream);
        return -1;
    }
    c->rx_off += (uint64_t)n;
    return n;
}

int ldgen_pump(const ldgen_opts *o, ldgen_result *r)
{
    double deadline = ldgen_now() + o->timeout;
    int n = o->conns;
    pump_conn *cs = calloc((size_t)n, sizeof *cs);
    int *fds = calloc((size_t)n, sizeof *fds);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int rc = -1, opened = 0;
    if (!cs || !fds || ep < 0) {
        ldgen_fail("out of memory or fds");
        goto out;
    }
    if (ldgen_open(o->port, n, fds, deadline) < 0)
        goto out;
    opened = 1;
    for (int i = 0; i < n; i++) {
        cs[i] = (pump_conn){.fd = fds[i], .stream = (uint32_t)i, .events = EPOLLIN};
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &cs[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e) < 0 || tx(o, ep, &cs[i]) < 0)
            goto out;
    }
    double t_start = ldgen_now() + o->warmup, t_end = t_start + o->duration;
    uint64_t counted = 0;
    struct epoll_event evs[256];
    for (;;) {
        double now = ldgen_now();
        if (now >= t_end)
            break;
        int k = epoll_wait(ep, evs, 256, (int)((t_end - now) * 1000) + 1);
        if (k < 0 && errno != EINTR) {
            ldgen_fail("epoll_wait: %s", strerror(errno));
            goto out;
        }
        for (int i = 0; i < k; i++) {
            pump_conn *c = evs[i].data.ptr;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t got = rx(c);
                if (got < 0)
                    goto out;
                double t = ldgen_now();
                if (t >= t_start && t < t_end)
                    counted += (uint64_t)got;
            }
            /* Reading reopened the window, or the socket has room again. */
            if (tx(o, ep, c) < 0)
                goto out;
        }
    }
    r->bytes = counted;
    r->secs = o->duration;
    r->rate = (double)counted / o->duration / 1e6;
    rc = 0;
out:
    if (opened)
        for (int i = 0; i < n; i++)
            close(fds[i]);
    if (ep >= 0)
        close(ep);
    free(cs);
    free(fds);
    return rc;
}
