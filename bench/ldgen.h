/* ldgen: the bench's load generator (bench/README.md). One process, one
 * epoll loop, non-blocking sockets, loopback only; every echoed byte is
 * checked against what was sent. */
#ifndef LDGEN_H
#define LDGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LDGEN_MAX_CONNS 100000
#define LDGEN_MAX_SIZE  ((size_t)1 << 20)  /* message / chunk size cap */
#define LDGEN_MAX_DEPTH 1024

typedef struct ldgen_opts {
    int port;          /* server on 127.0.0.1 */
    int conns;         /* connections */
    size_t size;       /* pingpong: message bytes; pump: bytes per send */
    int depth;         /* pingpong: messages in flight per connection */
    uint64_t msgs;     /* pingpong: total messages (0 with duration: unbounded) */
    bool msgs_set;     /* --msgs given: count mode (--msgs 0 connects and quits) */
    double duration;   /* seconds measured (time mode) */
    double warmup;     /* seconds run before measuring */
    double timeout;    /* hard bound on the whole run */
    size_t window;     /* pump: bytes in flight per connection */
    int pid;           /* idle: the server whose RSS is read */
    double settle;     /* idle: wait before reading RSS */
    double hold;       /* idle: keep the connections open this long after */
    bool json;
} ldgen_opts;

/* What a mode measured: printed as one line (or one JSON object). */
typedef struct ldgen_result {
    uint64_t msgs;     /* pingpong: messages echoed in the window */
    uint64_t bytes;    /* pump: bytes echoed in the window */
    double secs;       /* length of the measured window */
    double rate;       /* msg/s, MB/s (10^6 bytes) or bytes per connection */
    double p50_us, p99_us, max_us;
    long rss_before_kb, rss_after_kb;
} ldgen_result;

/* ---- the modes: 0, or 1 with a reason printed on stderr ---- */
int ldgen_pingpong(const ldgen_opts *o, ldgen_result *r);
int ldgen_pump(const ldgen_opts *o, ldgen_result *r);
int ldgen_idle(const ldgen_opts *o, ldgen_result *r);

/* ---- ldgen_net.c: sockets, time, the byte pattern, latencies ---- */
double ldgen_now(void);                  /* seconds, CLOCK_MONOTONIC */
uint64_t ldgen_now_ns(void);
/* A non-blocking socket connecting to 127.0.0.1:port (TCP_NODELAY), or -1. */
int ldgen_connect(int port);
/* After EPOLLOUT on a connecting socket: 0 if connected, else -1/errno. */
int ldgen_connected(int fd);
/* Opens n connections into fds[], all established (or -1, none left open,
 * the reason printed) before deadline (ldgen_now() seconds). */
int ldgen_open(int port, int n, int *fds, double deadline);
/* Raises the soft fd limit to the hard one; -1 if below need. */
int ldgen_fd_room(int need);
void ldgen_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The byte stream a connection sends: stream s, byte at offset off. A
 * pseudo-random sequence with a prime period, so an echo shifted, repeated
 * or swapped with another stream's mismatches. */
void ldgen_pat_fill(uint32_t stream, uint64_t off, char *dst, size_t n);
/* True when p[0..n) equals the stream's bytes at off. */
bool ldgen_pat_check(uint32_t stream, uint64_t off, const char *p, size_t n);

/* Latency histogram: log-linear buckets, about 1.5% resolution. */
typedef struct ldgen_hist {
    uint64_t count, max_ns;
    uint64_t bucket[64 * 64];
} ldgen_hist;
void ldgen_hist_add(ldgen_hist *h, uint64_t ns);
double ldgen_hist_pct_us(const ldgen_hist *h, double pct);

/* VmRSS of a process in kB from /proc/<pid>/status, or -1. */
long ldgen_rss_kb(int pid);

#endif
