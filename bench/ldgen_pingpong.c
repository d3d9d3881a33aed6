/* ldgen pingpong: every connection keeps `depth` messages of `size` bytes in
 * flight; each echo is checked byte for byte against what was sent, and the
 * time from sending a message's first byte to receiving its last is its
 * latency. Time mode counts messages completed in the window after warm-up;
 * count mode (--msgs) sends exactly that many and waits for all of them. */
#include "ldgen.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct pp_conn {
    int fd;
    uint32_t stream;
    uint64_t quota;   /* messages this connection sends */
    uint64_t tx_off;  /* bytes sent */
    uint64_t rx_off;  /* bytes echoed and verified */
    uint64_t *t_sent; /* send time of message k at [k % depth] */
    uint32_t events;  /* epoll interest now */
} pp_conn;

typedef struct pp_run {
    const ldgen_opts *o;
    int ep;
    double t_start, t_end; /* the measured window */
    uint64_t counted;
    ldgen_hist *hist;
} pp_run;

static char io_buf[256 << 10];

static int set_events(pp_run *run, pp_conn *c, uint32_t ev)
{
    if (c->events == ev)
        return 0;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    c->events = ev;
    return epoll_ctl(run->ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* Sends until `depth` messages are in flight or the socket is full. */
static int tx(pp_run *run, pp_conn *c)
{
    size_t size = run->o->size;
    uint64_t rx_msgs = c->rx_off / size;
    uint64_t limit = rx_msgs + (uint64_t)run->o->depth;
    if (limit > c->quota)
        limit = c->quota;
    uint64_t target = limit * size;
    while (c->tx_off < target) {
        size_t n = target - c->tx_off < sizeof io_buf ? (size_t)(target - c->tx_off) : sizeof io_buf;
        ldgen_pat_fill(c->stream, c->tx_off, io_buf, n);
        ssize_t w = send(c->fd, io_buf, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return set_events(run, c, EPOLLIN | EPOLLOUT);
            ldgen_fail("send: %s", strerror(errno));
            return -1;
        }
        /* Stamp the messages whose first byte just left. */
        uint64_t now = ldgen_now_ns();
        uint64_t first = (c->tx_off + size - 1) / size;
        uint64_t end = c->tx_off + (uint64_t)w;
        for (uint64_t k = first; k * size < end; k++)
            c->t_sent[k % (uint64_t)run->o->depth] = now;
        c->tx_off = end;
    }
    return set_events(run, c, EPOLLIN);
}

static int rx(pp_run *run, pp_conn *c)
{
    ssize_t n = read(c->fd, io_buf, sizeof io_buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        ldgen_fail("server closed a connection (%s)", n < 0 ? strerror(errno) : "EOF");
        return -1;
    }
    if (c->rx_off + (uint64_t)n > c->tx_off) {
        ldgen_fail("echo longer than what was sent");
        return -1;
    }
    if (!ldgen_pat_check(c->stream, c->rx_off, io_buf, (size_t)n)) {
        ldgen_fail("wrong bytes echoed at offset %llu of connection %u",
                   (unsigned long long)c->rx_off, c->stream);
        return -1;
    }
    size_t size = run->o->size;
    uint64_t from = c->rx_off / size;
    c->rx_off += (uint64_t)n;
    uint64_t to = c->rx_off / size;
    if (to > from) {
        uint64_t now = ldgen_now_ns();
        double t = (double)now / 1e9;
        if (t >= run->t_start && t < run->t_end) {
            for (uint64_t k = from; k < to; k++)
                ldgen_hist_add(run->hist, now - c->t_sent[k % (uint64_t)run->o->depth]);
            run->counted += to - from;
        }
    }
    return tx(run, c);
}

static bool all_done(const pp_conn *cs, int n, size_t size)
{
    for (int i = 0; i < n; i++)
        if (cs[i].rx_off / size < cs[i].quota)
            return false;
    return true;
}

int ldgen_pingpong(const ldgen_opts *o, ldgen_result *r)
{
    double t0 = ldgen_now();
    double deadline = t0 + o->timeout;
    int n = o->conns;
    pp_conn *cs = calloc((size_t)n, sizeof *cs);
    int *fds = calloc((size_t)n, sizeof *fds);
    uint64_t *stamps = calloc((size_t)n * (size_t)o->depth, sizeof *stamps);
    ldgen_hist *hist = calloc(1, sizeof *hist);
    pp_run run = {.o = o, .ep = epoll_create1(EPOLL_CLOEXEC), .hist = hist};
    int rc = -1, opened = 0;
    if (!cs || !fds || !stamps || !hist || run.ep < 0) {
        ldgen_fail("out of memory or fds");
        goto out;
    }
    if (ldgen_open(o->port, n, fds, deadline) < 0)
        goto out;
    opened = 1;
    for (int i = 0; i < n; i++) {
        cs[i].fd = fds[i];
        cs[i].stream = (uint32_t)i;
        cs[i].t_sent = stamps + (size_t)i * (size_t)o->depth;
        cs[i].quota = UINT64_MAX / o->size;
        if (o->msgs_set) /* spread the total; the first ones take the rest */
            cs[i].quota = o->msgs / (uint64_t)n + ((uint64_t)i < o->msgs % (uint64_t)n);
        cs[i].events = EPOLLIN;
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &cs[i]};
        if (epoll_ctl(run.ep, EPOLL_CTL_ADD, cs[i].fd, &e) < 0) {
            ldgen_fail("epoll_ctl: %s", strerror(errno));
            goto out;
        }
    }
    double begin = ldgen_now();
    run.t_start = o->msgs_set ? begin : begin + o->warmup;
    run.t_end = o->msgs_set ? deadline : run.t_start + o->duration;
    for (int i = 0; i < n; i++)
        if (tx(&run, &cs[i]) < 0)
            goto out;
    struct epoll_event evs[256];
    for (;;) {
        double now = ldgen_now();
        if (o->msgs_set ? all_done(cs, n, o->size) : now >= run.t_end)
            break;
        if (now >= deadline) {
            ldgen_fail("timeout after %.1f s", o->timeout);
            goto out;
        }
        double until = o->msgs_set ? deadline : run.t_end;
        int k = epoll_wait(run.ep, evs, 256, (int)((until - now) * 1000) + 1);
        if (k < 0 && errno != EINTR) {
            ldgen_fail("epoll_wait: %s", strerror(errno));
            goto out;
        }
        for (int i = 0; i < k; i++) {
            pp_conn *c = evs[i].data.ptr;
            if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && rx(&run, c) < 0)
                goto out;
            if ((evs[i].events & EPOLLOUT) && tx(&run, c) < 0)
                goto out;
        }
    }
    double end = ldgen_now();
    r->msgs = run.counted;
    r->secs = o->msgs_set ? end - begin : o->duration;
    r->rate = r->secs > 0 ? (double)r->msgs / r->secs : 0;
    r->p50_us = ldgen_hist_pct_us(hist, 50);
    r->p99_us = ldgen_hist_pct_us(hist, 99);
    r->max_us = (double)hist->max_ns / 1000.0;
    rc = 0;
out:
    if (opened)
        for (int i = 0; i < n; i++)
            close(fds[i]);
    if (run.ep >= 0)
        close(run.ep);
    free(cs);
    free(fds);
    free(stamps);
    free(hist);
    return rc;
}
