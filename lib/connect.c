/* Outgoing connections: a non-blocking connect whose result reaches
 * on_connect; until then the connection queues writes and reads nothing. */
#include "evl_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* addr as a sockaddr: a unix path ('/...'), or a numeric IPv4/IPv6
 * address. 0, or -1 (EINVAL). */
static int parse_addr(const char *addr, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    if (!addr) {
        errno = EINVAL;
        return -1;
    }
    if (addr[0] == '/') {
        struct sockaddr_un *sun = (struct sockaddr_un *)ss;
        size_t n = strlen(addr);
        if (n >= sizeof sun->sun_path) {
            errno = EINVAL;
            return -1;
        }
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, addr, n + 1);
        *len = (socklen_t)sizeof *sun;
        return 0;
    }
    if (port < 0 || port > 65535) {
        errno = EINVAL;
        return -1;
    }
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = (socklen_t)sizeof *in4;
        return 0;
    }
    if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = (socklen_t)sizeof *in6;
        return 0;
    }
    errno = EINVAL;
    return -1;
}

static void connect_timeout(evl_timer *t, void *arg)
{
    (void)t;
    evl__connect_finish(arg, ETIMEDOUT);
}

/* The connect ended with err (0: connected). Called once. */
void evl__connect_finish(evl_conn *c, int err)
{
    if (c->state != EVL__CONNECTING)
        return;
    if (c->x) {
        evl_timer_free(c->x->connect_timer);
        c->x->connect_timer = NULL;
    }
    if (err) {
        evl__buf_free(&c->wbuf);
        evl__conn_kill(c, EVL_CLOSE_CONNECT, err);
    } else {
        int one = 1; /* as for accepted connections */
        (void)setsockopt(c->io.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        evl__conn_connected(c);
    }
    if (c->h->on_connect)
        c->h->on_connect(c, err);
}

evl_conn *evl_connect_sized(evl_loop *l, const char *addr, int port, int timeout_ms,
                            const evl_handler *h, size_t hsize, void *udata)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (timeout_ms < 0 || parse_addr(addr, port, &ss, &len) < 0) {
        errno = EINVAL;
        return NULL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int rc;
    do
        rc = connect(fd, (struct sockaddr *)&ss, len);
    while (rc < 0 && errno == EINTR);
    /* A unix connect to a full backlog says EAGAIN: it is refused for now,
     * not pending, so it fails like a refusal. */
    if (rc < 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        errno = err;
        return NULL;
    }
    l->now = evl__clock_ms(); /* as evl_adopt: perhaps long after a batch */
    /* The timeout is armed before the connection exists, so nothing needs
     * undoing in a connection that failed half-way. */
    evl_timer *t = NULL;
    if (timeout_ms > 0) {
        t = evl_timer_new(l, connect_timeout, NULL);
        if (!t || evl_timer_start(t, (uint64_t)timeout_ms, 0) < 0) {
            evl_timer_free(t);
            close(fd);
            errno = ENOMEM;
            return NULL;
        }
    }
    /* Connected at once or not, the result is reported from the loop (by
     * the EPOLLOUT that follows), never from inside this call. */
    if (l->o.sndbuf > 0) /* before the connect's handshake sizes the window */
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &l->o.sndbuf, sizeof l->o.sndbuf);
    /* The timer lives in the connection's extension: made before the
     * connection, so nothing needs undoing in one that failed half-way. */
    struct evl__conn_ext *x = t ? calloc(1, sizeof *x) : NULL;
    evl_conn *c = !t || x ? evl__conn_new(l, fd, true) : NULL;
    if (!c) {
        int err = x || !t ? errno : ENOMEM;
        free(x);
        evl_timer_free(t);
        close(fd);
        errno = err;
        return NULL;
    }
    if (t) {
        x->wbuf_max = l->o.wbuf_max;
        x->connect_timer = t;
        t->arg = c;
        c->x = x;
    }
    c->udata = udata;
    if (h)
        evl_set_handler_sized(c, h, hsize);
    l->st.accepted++;
    l->st.conns++;
    return c;
}

/* The 1.0/1.1 entry (the header's macro hides this name from new programs). */
evl_conn *(evl_connect)(evl_loop *l, const char *addr, int port, int timeout_ms,
                        const evl_handler *h, void *udata)
{
    return evl_connect_sized(l, addr, port, timeout_ms, h, offsetof(evl_handler, on_data), udata);
}
