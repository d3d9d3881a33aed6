/* net.c: the client's epoll driver and non-blocking sockets (see net.h). */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int parse_port(const char *s, in_port_t *port)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v == 0 || v > 65535)
        return -1;
    *port = htons((in_port_t)v);
    return 0;
}

int target_parse(const char *s, struct target *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    snprintf(t->text, sizeof t->text, "%s", s);
    if (!strncmp(s, "unix:", 5) || s[0] == '/') {
        const char *path = s[0] == '/' ? s : s + 5;
        struct sockaddr_un *un = (struct sockaddr_un *)&t->addr;
        if (!*path || strlen(path) >= sizeof un->sun_path) {
            snprintf(err, errlen, "bad unix socket path '%s'", path);
            return -1;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, path, strlen(path) + 1);
        t->len = sizeof *un;
        return 0;
    }
    const char *colon = strrchr(s, ':');
    if (!colon) {
        snprintf(err, errlen, "'%s': expected HOST:PORT or unix:PATH", s);
        return -1;
    }
    char host[64];
    size_t hl = (size_t)(colon - s);
    if (hl >= sizeof host) {
        snprintf(err, errlen, "'%s': host too long", s);
        return -1;
    }
    memcpy(host, s, hl);
    host[hl] = '\0';
    in_port_t port;
    if (parse_port(colon + 1, &port) < 0) {
        snprintf(err, errlen, "'%s': bad port", s);
        return -1;
    }
    if (!strcmp(host, "127.0.0.1") || !strcmp(host, "localhost")) {
        struct sockaddr_in *in = (struct sockaddr_in *)&t->addr;
        in->sin_family = AF_INET;
        in->sin_port = port;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        t->len = sizeof *in;
        return 0;
    }
    if (!strcmp(host, "[::1]") || !strcmp(host, "::1")) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&t->addr;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = port;
        in6->sin6_addr = in6addr_loopback;
        t->len = sizeof *in6;
        return 0;
    }
    snprintf(err, errlen, "refusing '%s': only 127.0.0.1, [::1] or a unix socket", host);
    return -1;
}

int drv_init(struct driver *d)
{
    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    d->now = now_us();
    return d->epfd < 0 ? -1 : 0;
}

void drv_free(struct driver *d)
{
    if (d->epfd >= 0)
        close(d->epfd);
    d->epfd = -1;
}

int drv_watch(struct driver *d, struct ep *e, uint32_t events)
{
    if (e->added && e->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = e};
    if (epoll_ctl(d->epfd, e->added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, e->fd, &ev) < 0)
        return -1;
    e->added = true;
    e->events = events;
    return 0;
}

int drv_poll(struct driver *d, int timeout_ms)
{
    struct epoll_event evs[128];
    int n = epoll_wait(d->epfd, evs, 128, timeout_ms);
    d->now = now_us();
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) {
        struct ep *e = evs[i].data.ptr;
        /* closed earlier in this batch by its own callback: the struct is
         * still valid (never freed while the loop runs), the fd is gone */
        if (e->fd >= 0)
            e->cb(e, evs[i].events);
    }
    return n;
}

static void sock_update(struct sock *s)
{
    uint32_t ev = (s->want_in ? EPOLLIN : 0u) |
                  ((s->connecting || s->out_len > s->out_off) ? EPOLLOUT : 0u);
    if (drv_watch(s->drv, &s->ep, ev) < 0 && !s->err)
        s->err = errno;
}

int sock_connect(struct sock *s, struct driver *d, const struct target *t, int rcvbuf,
                 bool nodelay, ep_cb *cb)
{
    return sock_connect_from(s, d, t, NULL, rcvbuf, nodelay, cb);
}

int sock_connect_from(struct sock *s, struct driver *d, const struct target *t,
                      const struct sockaddr_in *src, int rcvbuf, bool nodelay, ep_cb *cb)
{
    s->ep = (struct ep){.fd = -1, .cb = cb};
    s->drv = d;
    s->connecting = true;
    s->want_in = false;
    s->err = 0;
    s->out_len = s->out_off = 0;
    int fam = t->addr.ss_family;
    int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (nodelay && fam != AF_UNIX) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (src && fam == AF_INET) {
        /* the port is chosen at connect(), per (source, destination): each
         * source address has its own ephemeral range */
        int one = 1;
        (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (const struct sockaddr *)src, sizeof *src) < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
    }
    if (connect(fd, (const struct sockaddr *)&t->addr, t->len) < 0 && errno != EINPROGRESS &&
        errno != EAGAIN) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    s->ep.fd = fd;
    sock_update(s);
    if (s->err) {
        close(fd);
        s->ep.fd = -1;
        errno = s->err;
        return -1;
    }
    return 0;
}

bool sock_open(const struct sock *s)
{
    return s->ep.fd >= 0;
}

static int sock_flush(struct sock *s)
{
    while (!s->connecting && s->out_off < s->out_len) {
        ssize_t r = send(s->ep.fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            s->err = errno;
            return -1;
        }
        s->out_off += (size_t)r;
    }
    if (s->out_off == s->out_len)
        s->out_off = s->out_len = 0;
    sock_update(s);
    return s->err ? -1 : 0;
}

int sock_event(struct sock *s, uint32_t events)
{
    if (s->err)
        return -1;
    if (s->connecting && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int e = 0;
        socklen_t l = sizeof e;
        if (getsockopt(s->ep.fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
            e = errno;
        if (e) {
            s->err = e;
            return -1;
        }
        s->connecting = false;
    }
    /* An error with no read interest: nobody would ever read it, and level
     * triggering would report it forever. */
    if ((events & (EPOLLERR | EPOLLHUP)) && !s->want_in) {
        int e = 0;
        socklen_t l = sizeof e;
        (void)getsockopt(s->ep.fd, SOL_SOCKET, SO_ERROR, &e, &l);
        s->err = e ? e : ECONNRESET;
        return -1;
    }
    if (events & EPOLLOUT)
        return sock_flush(s);
    return 0;
}

size_t sock_pending(const struct sock *s)
{
    return s->out_len - s->out_off;
}

int sock_queue(struct sock *s, const void *p, size_t n)
{
    if (s->err) {
        errno = s->err;
        return -1;
    }
    if (s->out_off > 0 && s->out_len + n > OUT_CAP) {
        memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
        s->out_len -= s->out_off;
        s->out_off = 0;
    }
    if (s->out_len + n > OUT_CAP) {
        errno = ENOBUFS;
        return -1;
    }
    memcpy(s->out + s->out_len, p, n);
    s->out_len += n;
    if (sock_flush(s) < 0) {
        errno = s->err;
        return -1;
    }
    return 0;
}

void sock_want_read(struct sock *s, bool on)
{
    if (s->want_in == on || s->ep.fd < 0)
        return;
    s->want_in = on;
    sock_update(s);
}

ssize_t sock_read(struct sock *s, void *buf, size_t n)
{
    ssize_t r = recv(s->ep.fd, buf, n, 0);
    if (r < 0 && errno != EAGAIN && errno != EINTR && !s->err)
        s->err = errno;
    if (r < 0 && errno == EINTR)
        errno = EAGAIN;
    return r;
}

void sock_close(struct sock *s, bool reset)
{
    if (s->ep.fd < 0)
        return;
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(s->ep.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    /* close() drops the epoll registration with the last reference */
    close(s->ep.fd);
    s->ep.fd = -1;
    s->ep.added = false;
}

char *line_next(struct linebuf *lb, size_t *pos)
{
    char *start = lb->buf + *pos;
    char *nl = memchr(start, '\n', lb->len - *pos);
    if (!nl)
        return NULL;
    *nl = '\0';
    if (nl > start && nl[-1] == '\r')
        nl[-1] = '\0';
    *pos = (size_t)(nl - lb->buf) + 1;
    return start;
}

void line_compact(struct linebuf *lb, size_t pos)
{
    memmove(lb->buf, lb->buf + pos, lb->len - pos);
    lb->len -= pos;
}
