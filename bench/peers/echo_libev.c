/* echo_libev: the echo server as libev users write it. libev gives readiness
 * only (ev_io), so buffering is ours: read, send at once when nothing is
 * queued, keep the tail, and start the write watcher until it drains. The
 * epoll backend is asked for explicitly, so every server compared here sits
 * on the same kernel interface. */
#include "peer_common.h"

#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct conn {
    ev_io rd, wr;
    char *out;       /* unsent bytes (NULL when none) */
    size_t off, len, cap;
    bool paused;     /* out reached PEER_HIGH: reading stopped until PEER_LOW */
    bool eof;        /* peer closed: close once out is flushed */
    struct conn *prev, *next; /* all connections, so SIGTERM can free them */
} conn;

static conn *conns;
static char rbuf[PEER_READ];

static void drop(struct ev_loop *loop, conn *c)
{
    ev_io_stop(loop, &c->rd);
    ev_io_stop(loop, &c->wr);
    close(c->rd.fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->out);
    free(c);
}

static bool queue(conn *c, const char *p, size_t n)
{
    if (c->off + c->len + n > c->cap) {
        if (c->len + n <= c->cap && c->off >= c->len) {
            memmove(c->out, c->out + c->off, c->len);
        } else {
            size_t cap = c->cap ? c->cap : 4096;
            while (cap < c->len + n)
                cap *= 2;
            char *o = malloc(cap);
            if (!o)
                return false;
            if (c->len)
                memcpy(o, c->out + c->off, c->len);
            free(c->out);
            c->out = o;
            c->cap = cap;
        }
        c->off = 0;
    }
    memcpy(c->out + c->off + c->len, p, n);
    c->len += n;
    return true;
}

/* Watchers follow state: read unless paused or at EOF (hysteresis between
 * the marks), write while something is pending. */
static void refresh(struct ev_loop *loop, conn *c)
{
    if (c->len >= PEER_HIGH)
        c->paused = true;
    else if (c->len <= PEER_LOW)
        c->paused = false;
    bool rd = !c->eof && !c->paused;
    if (rd && !ev_is_active(&c->rd))
        ev_io_start(loop, &c->rd);
    else if (!rd && ev_is_active(&c->rd))
        ev_io_stop(loop, &c->rd);
    if (c->len && !ev_is_active(&c->wr))
        ev_io_start(loop, &c->wr);
    else if (!c->len && ev_is_active(&c->wr))
        ev_io_stop(loop, &c->wr);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    conn *c = w->data;
    while (c->len) {
        ssize_t n = send(w->fd, c->out + c->off, c->len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            drop(loop, c);
            return;
        }
        c->off += (size_t)n;
        c->len -= (size_t)n;
    }
    if (!c->len) {
        free(c->out);
        c->out = NULL;
        c->off = c->cap = 0;
        if (c->eof) {
            drop(loop, c);
            return;
        }
    }
    refresh(loop, c);
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    conn *c = w->data;
    ssize_t n = read(w->fd, rbuf, sizeof rbuf);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n < 0 || !c->len) {
            drop(loop, c);
            return;
        }
        c->eof = true;
        refresh(loop, c);
        return;
    }
    size_t sent = 0;
    if (!c->len) {
        ssize_t s = send(w->fd, rbuf, (size_t)n, MSG_NOSIGNAL);
        if (s < 0 && errno != EAGAIN && errno != EINTR) {
            drop(loop, c);
            return;
        }
        sent = s > 0 ? (size_t)s : 0;
    }
    if (sent < (size_t)n && !queue(c, rbuf + sent, (size_t)n - sent)) {
        drop(loop, c);
        return;
    }
    refresh(loop, c);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    for (;;) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return;
        }
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        peer_nodelay(fd);
        ev_io_init(&c->rd, on_read, fd, EV_READ);
        ev_io_init(&c->wr, on_write, fd, EV_WRITE);
        c->rd.data = c->wr.data = c;
        c->next = conns;
        if (conns)
            conns->prev = c;
        conns = c;
        ev_io_start(loop, &c->rd);
    }
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
    int port = peer_args(argc, argv, "echo_libev");
    int lfd = peer_listen(port, &port);
    struct ev_loop *loop = ev_default_loop(EVBACKEND_EPOLL);
    if (!loop)
        peer_die("echo_libev", "ev_default_loop(EVBACKEND_EPOLL)");
    ev_io acc;
    ev_io_init(&acc, on_accept, lfd, EV_READ);
    ev_io_start(loop, &acc);
    ev_signal term, intr;
    ev_signal_init(&term, on_signal, SIGTERM);
    ev_signal_init(&intr, on_signal, SIGINT);
    ev_signal_start(loop, &term);
    ev_signal_start(loop, &intr);
    peer_listening(port);
    ev_run(loop, 0);
    for (conn *c = conns, *next; c; c = next) {
        next = c->next;
        drop(loop, c);
    }
    ev_io_stop(loop, &acc);
    close(lfd);
    ev_loop_destroy(loop);
    return 0;
}
