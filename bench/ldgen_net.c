/* ldgen's shared pieces: loopback sockets, clocks, the verified byte pattern,
 * the latency histogram and /proc RSS. */
#include "ldgen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t ldgen_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double ldgen_now(void) { return (double)ldgen_now_ns() / 1e9; }

void ldgen_fail(const char *fmt, ...)
{
    (void)fputs("ldgen: FAIL: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    /* A known false positive: the analyzer loses track of va_start when it
     * analyses several files in one clang-tidy run (see lib/test/testutil.c). */
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
    (void)vfprintf(stderr, fmt, ap);
    va_end(ap);
    (void)fputc('\n', stderr);
}

int ldgen_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

int ldgen_connected(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -1;
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

int ldgen_fd_room(int need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur >= (rlim_t)need ? 0 : -1;
}

/* Non-blocking connects, at most OPEN_BATCH unfinished at once: a burst of
 * thousands would overflow the server's accept queue, and a dropped SYN is
 * retried only a second later. */
#define OPEN_BATCH 256

int ldgen_open(int port, int n, int *fds, double deadline)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return -1;
    int started = 0, done = 0, pending = 0, rc = 0;
    struct epoll_event evs[OPEN_BATCH];
    while (done < n) {
        while (pending < OPEN_BATCH && started < n) {
            int fd = ldgen_connect(port);
            struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)started};
            if (fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
                ldgen_fail("connect #%d: %s", started, strerror(errno));
                if (fd >= 0)
                    close(fd);
                rc = -1;
                goto out;
            }
            fds[started++] = fd;
            pending++;
        }
        double left = deadline - ldgen_now();
        if (left <= 0) {
            ldgen_fail("timeout: %d of %d connections established", done, n);
            rc = -1;
            goto out;
        }
        int k = epoll_wait(ep, evs, OPEN_BATCH, (int)(left * 1000) + 1);
        for (int i = 0; i < k; i++) {
            int fd = fds[evs[i].data.u32];
            if (ldgen_connected(fd) < 0) {
                ldgen_fail("connect: %s", strerror(errno));
                rc = -1;
                goto out;
            }
            (void)epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
            pending--;
            done++;
        }
    }
out:
    if (rc < 0)
        for (int i = 0; i < started; i++)
            close(fds[i]);
    close(ep);
    return rc;
}

/* ---- pattern -------------------------------------------------------------- */

#define PAT_PERIOD 65521u /* prime: no shift but a multiple of it matches */
static char pat[PAT_PERIOD];
static bool pat_ready;

static void pat_init(void)
{
    uint32_t x = 2463534242u; /* xorshift32: cheap, and no short cycles */
    for (size_t i = 0; i < PAT_PERIOD; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        pat[i] = (char)(x >> 24);
    }
    pat_ready = true;
}

/* Streams start at different points of the cycle, so two connections'
 * bytes differ at equal offsets. */
static size_t pat_pos(uint32_t stream, uint64_t off)
{
    return (size_t)(((uint64_t)stream * 7919u + off) % PAT_PERIOD);
}

void ldgen_pat_fill(uint32_t stream, uint64_t off, char *dst, size_t n)
{
    if (!pat_ready)
        pat_init();
    size_t k = pat_pos(stream, off);
    while (n) {
        size_t m = PAT_PERIOD - k < n ? PAT_PERIOD - k : n;
        memcpy(dst, pat + k, m);
        dst += m;
        n -= m;
        k = 0;
    }
}

bool ldgen_pat_check(uint32_t stream, uint64_t off, const char *p, size_t n)
{
    if (!pat_ready)
        pat_init();
    size_t k = pat_pos(stream, off);
    while (n) {
        size_t m = PAT_PERIOD - k < n ? PAT_PERIOD - k : n;
        if (memcmp(p, pat + k, m) != 0)
            return false;
        p += m;
        n -= m;
        k = 0;
    }
    return true;
}

/* ---- histogram ------------------------------------------------------------ */

/* Bucket: the position of the top bit (0..63) and the 6 bits after it. */
static size_t bucket_of(uint64_t ns)
{
    if (ns < 64)
        return (size_t)ns;
    unsigned top = 63u - (unsigned)__builtin_clzll(ns);
    return (size_t)top * 64u + (size_t)((ns >> (top - 6)) & 63u);
}

static uint64_t bucket_value(size_t b)
{
    if (b < 64)
        return b;
    unsigned top = (unsigned)(b / 64);
    uint64_t sub = b % 64;
    uint64_t half = top > 6 ? (uint64_t)1 << (top - 7) : 0; /* the middle of the bucket */
    return ((uint64_t)1 << top) + (sub << (top - 6)) + half;
}

void ldgen_hist_add(ldgen_hist *h, uint64_t ns)
{
    h->bucket[bucket_of(ns)]++;
    h->count++;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

double ldgen_hist_pct_us(const ldgen_hist *h, double pct)
{
    if (!h->count)
        return 0;
    uint64_t want = (uint64_t)((double)h->count * pct / 100.0);
    if (want >= h->count)
        want = h->count - 1;
    uint64_t seen = 0;
    for (size_t b = 0; b < sizeof h->bucket / sizeof h->bucket[0]; b++) {
        seen += h->bucket[b];
        if (seen > want)
            return (double)bucket_value(b) / 1000.0;
    }
    return (double)h->max_ns / 1000.0;
}

/* ---- /proc ----------------------------------------------------------------- */

long ldgen_rss_kb(int pid)
{
    char path[64], line[256];
    (void)snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    (void)fclose(f);
    return kb;
}
