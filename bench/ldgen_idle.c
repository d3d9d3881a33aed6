/* ldgen idle: what an idle connection costs the server, in its own RSS.
 * A few warm-up connections first (so one-off costs such as a shared read
 * buffer or a first table growth are not charged to the count), then the
 * server's VmRSS, then N connections that each echo one small message (so
 * the server has surely accepted and served each, and any buffer it keeps
 * after use is counted) and then sit idle, then VmRSS again. */
#include "ldgen.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WARM_CONNS 8
#define TOUCH_SIZE 64

static void sleep_s(double s)
{
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* One verified echo on every connection, all at once. */
static int touch_all(const int *fds, int n, uint32_t first_stream, double deadline)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    size_t *got = calloc((size_t)n, sizeof *got);
    int rc = -1, left = n;
    char msg[TOUCH_SIZE], buf[TOUCH_SIZE];
    if (ep < 0 || !got) {
        ldgen_fail("out of memory or fds");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        ldgen_pat_fill(first_stream + (uint32_t)i, 0, msg, sizeof msg);
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        /* 64 bytes into an empty socket buffer: a short send cannot happen. */
        if (send(fds[i], msg, sizeof msg, MSG_NOSIGNAL) != (ssize_t)sizeof msg ||
            epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e) < 0) {
            ldgen_fail("send: %s", strerror(errno));
            goto out;
        }
    }
    struct epoll_event evs[256];
    while (left > 0) {
        double t = deadline - ldgen_now();
        if (t <= 0) {
            ldgen_fail("timeout: %d of %d connections not echoed", left, n);
            goto out;
        }
        int k = epoll_wait(ep, evs, 256, (int)(t * 1000) + 1);
        for (int j = 0; j < k; j++) {
            uint32_t i = evs[j].data.u32;
            ssize_t r = read(fds[i], buf, sizeof buf - got[i]);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0 || !ldgen_pat_check(first_stream + i, got[i], buf, (size_t)r)) {
                ldgen_fail("connection %u: %s", i, r <= 0 ? "closed by the server" : "wrong echo");
                goto out;
            }
            got[i] += (size_t)r;
            if (got[i] == TOUCH_SIZE) {
                (void)epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
                left--;
            }
        }
    }
    rc = 0;
out:
    if (ep >= 0)
        close(ep);
    free(got);
    return rc;
}

int ldgen_idle(const ldgen_opts *o, ldgen_result *r)
{
    double deadline = ldgen_now() + o->timeout;
    int n = o->conns;
    if (ldgen_rss_kb(o->pid) < 0) {
        ldgen_fail("cannot read /proc/%d/status", o->pid);
        return -1;
    }
    int *fds = calloc((size_t)n + WARM_CONNS, sizeof *fds);
    if (!fds) {
        ldgen_fail("out of memory");
        return -1;
    }
    int rc = -1, opened = 0;
    if (ldgen_open(o->port, WARM_CONNS, fds, deadline) < 0)
        goto out;
    opened = WARM_CONNS;
    if (touch_all(fds, WARM_CONNS, 0, deadline) < 0)
        goto out;
    sleep_s(o->settle);
    r->rss_before_kb = ldgen_rss_kb(o->pid);
    if (ldgen_open(o->port, n, fds + WARM_CONNS, deadline) < 0)
        goto out;
    opened += n;
    if (touch_all(fds + WARM_CONNS, n, WARM_CONNS, deadline) < 0)
        goto out;
    sleep_s(o->settle);
    r->rss_after_kb = ldgen_rss_kb(o->pid);
    if (r->rss_before_kb < 0 || r->rss_after_kb < 0) {
        ldgen_fail("the server (pid %d) went away", o->pid);
        goto out;
    }
    r->msgs = (uint64_t)n;
    r->rate = (double)(r->rss_after_kb - r->rss_before_kb) * 1024.0 / n;
    if (o->hold > 0)
        sleep_s(o->hold);
    rc = 0;
out:
    for (int i = 0; i < opened; i++)
        close(fds[i]);
    free(fds);
    return rc;
}
