/* probe.c: PING/PONG round trips during the load (see probe.h). */
#include "probe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The round trip ends when the reply reached this host, as the kernel
 * stamped it (SO_TIMESTAMPNS), not when this loop got round to reading it:
 * the load this same loop drives (300 readers checking every byte) would
 * otherwise add its own iterations to the server's latency. Without a
 * stamp, the loop's time. */
static uint64_t round_trip_us(const struct probe *p)
{
    if (p->rx_rt && p->sent_rt && p->rx_rt >= p->sent_rt)
        return (p->rx_rt - p->sent_rt) / 1000u;
    return p->s.drv->now - p->sent;
}

/* sock_read, and the arrival stamp of what it read. */
static ssize_t probe_read(struct probe *p, void *buf, size_t n)
{
    struct iovec iov = {buf, n};
    union {
        char b[CMSG_SPACE(sizeof(struct timespec))];
        struct cmsghdr align;
    } ctl;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                       .msg_controllen = sizeof ctl.b};
    ssize_t r = recvmsg(p->s.ep.fd, &m, 0);
    if (r < 0) {
        if (errno != EAGAIN && errno != EINTR && !p->s.err)
            p->s.err = errno;
        if (errno == EINTR)
            errno = EAGAIN;
        return r;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            p->rx_rt = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        }
    return r;
}

/* One PING is in flight at a time, so while the server stalls for a second
 * the probe takes one sample, not the 200 it would have taken at a 5 ms
 * interval: stalls would be under-counted in the percentiles (coordinated
 * omission). The PINGs that would have left every interval during the wait
 * are added as the waits they would have seen, as HdrHistogram's
 * recordValueWithExpectedInterval does. */
static void probe_sample(struct probe *p, uint64_t rtt, uint64_t at)
{
    hist_add(&p->h, rtt);
    hist_add(&p->hc, rtt);
    for (uint64_t v = rtt; p->interval > 0 && v > p->interval;) {
        v -= p->interval;
        hist_add(&p->hc, v);
    }
    if (p->csv)
        fprintf(p->csv, "%s,%.4f,%.3f\n", p->tag, (double)(at - p->t0) / 1e6,
                (double)rtt / 1000.0);
}

static void probe_error(struct probe *p, const char *why)
{
    snprintf(p->err, sizeof p->err, "probe: %s", why);
    sock_close(&p->s, false);
}

/* Length of the first complete response in lb (head + Content-Length body),
 * 0 if it has not all arrived, -1 (p->err set) if it is not a 200 with a
 * Content-Length. */
static long http_response_len(struct probe *p)
{
    const char *b = p->lb.buf;
    size_t n = p->lb.len, head = 0;
    for (size_t i = 3; i < n && !head; i++)
        if (b[i] == '\n' && b[i - 1] == '\r' && b[i - 2] == '\n' && b[i - 3] == '\r')
            head = i + 1;
    if (!head)
        return 0;
    if (head < 13 || strncmp(b, "HTTP/1.1 200 ", 13) != 0) {
        char why[100];
        snprintf(why, sizeof why, "unexpected response '%.40s'", b);
        probe_error(p, why);
        return -1;
    }
    long body = -1;
    for (size_t i = 0; i + 16 < head; i++)
        if (b[i] == '\n' && !strncasecmp(b + i + 1, "content-length:", 15)) {
            body = strtol(b + i + 16, NULL, 10);
            break;
        }
    if (body < 0 || body > LINE_CAP - (long)head) {
        probe_error(p, "response without a usable Content-Length");
        return -1;
    }
    return n >= head + (size_t)body ? (long)head + body : 0;
}

/* HTTP: every complete response ends the round trip in flight. */
static void probe_http(struct probe *p)
{
    long len;
    while ((len = http_response_len(p)) > 0) {
        if (!p->outstanding) {
            probe_error(p, "a response no request asked for");
            return;
        }
        p->outstanding = false;
        probe_sample(p, round_trip_us(p), p->s.drv->now);
        memmove(p->lb.buf, p->lb.buf + len, p->lb.len - (size_t)len);
        p->lb.len -= (size_t)len;
    }
    if (len == 0 && p->lb.len == LINE_CAP)
        probe_error(p, "response head longer than the probe's buffer");
}

static void probe_event(struct ep *e, uint32_t events)
{
    struct probe *p = (struct probe *)e;
    if (sock_event(&p->s, events) < 0) {
        snprintf(p->err, sizeof p->err, "probe connection: %s", strerror(p->s.err));
        sock_close(&p->s, false);
        return;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    ssize_t r = probe_read(p, p->lb.buf + p->lb.len, LINE_CAP - p->lb.len);
    if (r == 0 || (r < 0 && errno != EAGAIN)) {
        snprintf(p->err, sizeof p->err, "probe connection: %s",
                 r == 0 ? "closed by the server" : strerror(errno));
        sock_close(&p->s, false);
        return;
    }
    if (r < 0)
        return;
    p->lb.len += (size_t)r;
    if (p->http) {
        probe_http(p);
        return;
    }
    size_t pos = 0;
    char *line;
    while ((line = line_next(&p->lb, &pos))) {
        if (!strncmp(line, "MSG ", 4))
            continue; /* a BCAST reaches every connection, the probe too */
        if (strcmp(line, "PONG") != 0 || !p->outstanding) {
            snprintf(p->err, sizeof p->err, "probe: unexpected reply '%.60s'", line);
            sock_close(&p->s, false);
            return;
        }
        p->outstanding = false;
        probe_sample(p, round_trip_us(p), p->s.drv->now);
    }
    line_compact(&p->lb, pos);
    if (p->lb.len == LINE_CAP) {
        snprintf(p->err, sizeof p->err, "probe: reply line longer than %d bytes", LINE_CAP);
        sock_close(&p->s, false);
    }
}

int probe_start(struct probe *p, struct driver *d, const struct target *t, int interval_ms,
                bool http, FILE *csv, const char *tag)
{
    memset(p, 0, sizeof *p);
    p->http = http;
    p->interval = (uint64_t)interval_ms * 1000u;
    p->csv = csv;
    p->tag = tag;
    p->t0 = p->next = now_us();
    if (sock_connect(&p->s, d, t, 0, true, probe_event) < 0)
        return -1;
    int one = 1; /* best effort: without it, round_trip_us uses the loop's time */
    (void)setsockopt(p->s.ep.fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    sock_want_read(&p->s, true);
    return 0;
}

void probe_tick(struct probe *p, uint64_t now)
{
    if (!sock_open(&p->s) || p->s.connecting || p->outstanding || now < p->next)
        return;
    p->sent = now_us();
    p->sent_rt = realtime_ns();
    p->rx_rt = 0;
    p->outstanding = true;
    /* the next PING leaves one interval after this one, not after its reply:
     * a slow reply delays the next, it does not hide several */
    p->next = p->sent + p->interval;
    static const char get[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    int rc = p->http ? sock_queue(&p->s, get, sizeof get - 1) : sock_queue(&p->s, "PING\n", 5);
    if (rc < 0) {
        snprintf(p->err, sizeof p->err, "probe: send: %s", strerror(errno));
        sock_close(&p->s, false);
    }
}

void probe_stop(struct probe *p, uint64_t now)
{
    if (p->outstanding && sock_open(&p->s))
        probe_sample(p, now - p->sent, now);
    p->outstanding = false;
    sock_close(&p->s, false);
}
