/* net.h: the client's own event loop (epoll, level-triggered) and its
 * non-blocking sockets. evl-stress does not use the library it tests: the
 * server must be judged from outside. */
#ifndef STRESS_NET_H
#define STRESS_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Where the server listens: 127.0.0.1, ::1 or a unix socket, nothing else
 * (a stress client must never be pointed at someone else's machine). */
struct target {
    struct sockaddr_storage addr;
    socklen_t len;
    char text[120];
};

/* Parses "127.0.0.1:PORT", "localhost:PORT", "[::1]:PORT", "unix:PATH" or an
 * absolute PATH; on error writes why into err and returns -1. */
int target_parse(const char *s, struct target *t, char *err, size_t errlen);

uint64_t now_us(void);

/* An epoll registration: the callback gets the ready events. The struct must
 * stay valid while registered; callbacks may close only their own socket and
 * must not open new ones (a reused fd could then meet a stale event of the
 * same batch) — scenarios open connections between batches. */
struct ep;
typedef void ep_cb(struct ep *e, uint32_t events);
struct ep {
    int fd;
    uint32_t events; /* current interest, to skip needless epoll_ctl */
    bool added;
    ep_cb *cb;
};

struct driver {
    int epfd;
    uint64_t now; /* µs, read just after epoll_wait: a reply's arrival time
                   * does not include the time spent on earlier events */
};

int drv_init(struct driver *d);
void drv_free(struct driver *d);
int drv_watch(struct driver *d, struct ep *e, uint32_t events);
/* One batch: waits at most timeout_ms, dispatches; -1 only on a fatal epoll
 * error. */
int drv_poll(struct driver *d, int timeout_ms);

#define OUT_CAP 4608 /* largest request: a BCAST line of 4000 bytes + header */

/* A non-blocking client socket with a small outbound queue (requests are
 * short; a full queue is the caller's backpressure signal). */
struct sock {
    struct ep ep; /* first: callbacks cast ep back to the owner */
    struct driver *drv;
    bool connecting; /* connect() in progress */
    bool want_in;    /* EPOLLIN interest */
    int err;         /* errno of the failure that ended it, 0 if none */
    size_t out_len, out_off;
    char out[OUT_CAP];
};

/* Non-blocking connect; cb receives the events. rcvbuf > 0 sets SO_RCVBUF
 * (a small one makes the server meet EAGAIN sooner). -1 with errno. */
int sock_connect(struct sock *s, struct driver *d, const struct target *t, int rcvbuf,
                 bool nodelay, ep_cb *cb);
/* The same from a given 127.x source address (more ephemeral ports than one
 * source has); src NULL or a non-IPv4 target: the kernel's choice. */
struct sockaddr_in;
int sock_connect_from(struct sock *s, struct driver *d, const struct target *t,
                      const struct sockaddr_in *src, int rcvbuf, bool nodelay, ep_cb *cb);
/* The common part of an event: completes the connect, flushes the queue,
 * turns EPOLLERR into s->err. Returns -1 if the socket failed (s->err). */
int sock_event(struct sock *s, uint32_t events);
/* Queues n bytes and tries to send them; -1 (errno ENOBUFS) if they do not
 * fit, or with errno of a send failure. */
int sock_queue(struct sock *s, const void *p, size_t n);
size_t sock_pending(const struct sock *s);
void sock_want_read(struct sock *s, bool on);
/* recv once: >0 bytes, 0 at EOF, -1 with errno (EAGAIN: nothing now). */
ssize_t sock_read(struct sock *s, void *buf, size_t n);
/* reset: SO_LINGER 0, so close() sends an RST (a peer vanishing mid-transfer). */
void sock_close(struct sock *s, bool reset);
bool sock_open(const struct sock *s);

/* Complete '\n'-terminated lines arriving on a socket. */
#define LINE_CAP 8192
struct linebuf {
    size_t len;
    char buf[LINE_CAP];
};
/* Takes the next complete line (NUL-terminated in place, '\n' and a trailing
 * '\r' removed); NULL when none is complete. line_compact() then drops the
 * consumed part. */
char *line_next(struct linebuf *lb, size_t *pos);
void line_compact(struct linebuf *lb, size_t pos);

#endif
