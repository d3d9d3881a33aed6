/* echo_raw: the ceiling. A hand-written level-triggered epoll echo loop with
 * no abstraction: an fd-indexed table, one read per readiness event into a
 * shared buffer, a send straight back, and a per-connection tail buffer only
 * when the socket did not take everything (EPOLLOUT armed until it drains).
 * Whatever evloop does beyond this is the cost of its guarantees. */
#include "peer_common.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct conn {
    char *out;       /* bytes the socket has not taken yet (NULL when none) */
    size_t off, len; /* live bytes at out[off, off+len) */
    size_t cap;
    uint32_t events; /* interest registered now */
    bool paused;     /* out reached PEER_HIGH: not reading until PEER_LOW */
    bool eof;        /* peer closed: close once out is flushed */
} conn;

static int ep;
static conn **tab;
static size_t tab_len;
static char rbuf[PEER_READ];

static void set_interest(int fd, conn *c, uint32_t want)
{
    if (c->events == want)
        return; /* no syscall when nothing changes */
    struct epoll_event ev = {.events = want, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) == 0)
        c->events = want;
}

static void drop(int fd)
{
    conn *c = tab[fd];
    tab[fd] = NULL;
    free(c->out);
    free(c);
    close(fd); /* also removes it from the epoll set */
}

static void add_conn(int fd)
{
    if ((size_t)fd >= tab_len) {
        size_t n = tab_len ? tab_len * 2 : 1024;
        while (n <= (size_t)fd)
            n *= 2;
        /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
        conn **t = realloc(tab, n * sizeof *t);
        if (!t) {
            close(fd);
            return;
        }
        /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
        memset(t + tab_len, 0, (n - tab_len) * sizeof *t);
        tab = t;
        tab_len = n;
    }
    conn *c = calloc(1, sizeof *c);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (!c || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        free(c);
        close(fd);
        return;
    }
    c->events = EPOLLIN;
    tab[fd] = c;
    peer_nodelay(fd);
}

/* Keeps n unsent bytes; false when memory ran out. */
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

/* Interest follows state: read unless paused or at EOF, write while
 * something is pending. Pausing has hysteresis (high mark on, low mark off)
 * so a connection at the limit does not flap its interest every event. */
static void refresh(int fd, conn *c)
{
    if (c->len >= PEER_HIGH)
        c->paused = true;
    else if (c->len <= PEER_LOW)
        c->paused = false;
    uint32_t want = 0;
    if (!c->eof && !c->paused)
        want |= EPOLLIN;
    if (c->len)
        want |= EPOLLOUT;
    set_interest(fd, c, want);
}

static void on_writable(int fd, conn *c)
{
    while (c->len) {
        ssize_t n = send(fd, c->out + c->off, c->len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            drop(fd);
            return;
        }
        c->off += (size_t)n;
        c->len -= (size_t)n;
    }
    if (!c->len) { /* an idle connection holds no buffer */
        free(c->out);
        c->out = NULL;
        c->off = c->cap = 0;
        if (c->eof) {
            drop(fd);
            return;
        }
    }
    refresh(fd, c);
}

static void on_readable(int fd, conn *c)
{
    ssize_t n = read(fd, rbuf, sizeof rbuf);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n < 0 || !c->len) {
            drop(fd);
            return;
        }
        c->eof = true; /* flush the replies already owed, then close */
        refresh(fd, c);
        return;
    }
    size_t sent = 0;
    if (!c->len) { /* only when nothing is queued, or bytes would reorder */
        ssize_t w = send(fd, rbuf, (size_t)n, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            drop(fd);
            return;
        }
        sent = w > 0 ? (size_t)w : 0;
    }
    if (sent < (size_t)n && !queue(c, rbuf + sent, (size_t)n - sent)) {
        drop(fd);
        return;
    }
    refresh(fd, c);
}

static void accept_all(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return; /* EAGAIN, or out of fds: retried on the next event */
        }
        add_conn(fd);
    }
}

int main(int argc, char **argv)
{
    int port = peer_args(argc, argv, "echo_raw");
    int lfd = peer_listen(port, &port);
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    int sfd = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (sfd < 0 || ep < 0)
        peer_die("echo_raw", "signalfd/epoll");
    /* The listen and signal fds are told apart from connections by number. */
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    struct epoll_event sev = {.events = EPOLLIN, .data.fd = sfd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &sev) < 0)
        peer_die("echo_raw", "epoll_ctl");
    peer_listening(port);

    struct epoll_event evs[256];
    bool running = true;
    while (running) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno != EINTR)
            peer_die("echo_raw", "epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                accept_all(lfd);
            } else if (fd == sfd) {
                running = false;
            } else if ((size_t)fd < tab_len && tab[fd]) {
                /* Hang-up and error: read first, so nothing sent is lost. */
                uint32_t e = evs[i].events;
                if (e & (EPOLLHUP | EPOLLERR))
                    e |= EPOLLIN | EPOLLOUT;
                if (e & EPOLLIN)
                    on_readable(fd, tab[fd]);
                if ((e & EPOLLOUT) && (size_t)fd < tab_len && tab[fd] && tab[fd]->len)
                    on_writable(fd, tab[fd]);
            }
        }
    }
    for (size_t fd = 0; fd < tab_len; fd++)
        if (tab[fd])
            drop((int)fd);
    free(tab);
    close(lfd);
    close(sfd);
    close(ep);
    return 0;
}
