/* observe.h: watching the server from outside: its STATS counters over a
 * connection of our own, and its RSS and CPU time from /proc. */
#ifndef STRESS_OBSERVE_H
#define STRESS_OBSERVE_H

#include <stdint.h>

#include "net.h"

/* The STATS fields the scenarios judge by (-1 when absent). */
struct srvstats {
    long long conns, accepted, closed, wbuf_bytes, wbuf_peak, rss_kb, overflow_closed;
};

/* Polls STATS every 100 ms and keeps the peaks: total buffered bytes
 * (wbuf_bytes) is the memory the watermarks are meant to bound. */
struct statsconn {
    struct sock s; /* first: the callback casts back */
    struct linebuf lb;
    bool waiting, force;
    uint64_t replies, next;
    struct srvstats last;
    long long peak_wbuf_bytes, peak_rss_kb;
    char err[160];
};

int statsconn_open(struct statsconn *sc, struct driver *d, const struct target *t);
void statsconn_tick(struct statsconn *sc, uint64_t now);
/* Parses one STATS line; 0 if it carried at least "conns". */
int srvstats_parse(const char *line, struct srvstats *st);

/* /proc/PID sampling every ~100 ms. */
struct procmon {
    int pid;
    uint64_t next;
    long long rss_peak_kb;
    double cpu0, cpu; /* seconds of user+system time at start, now */
    long long rss_kb; /* at the last sample */
    bool gone;
};

void procmon_start(struct procmon *m, int pid);
void procmon_tick(struct procmon *m, uint64_t now);

/* Kernel memory behind the server, sampled every ~250 ms without forking:
 * the send queues of its sockets (the Send-Q column of `ss -tn`, from the
 * tx_queue field of /proc/net/tcp and tcp6, local port = the server's) and
 * the host's TCP memory (the "mem" pages of /proc/net/sockstat, the figure
 * the kernel compares with /proc/sys/net/ipv4/tcp_mem). */
struct kernmon {
    int port; /* 0: not a TCP target, nothing sampled */
    uint64_t next;
    long long sndq, sndq_peak;     /* bytes queued in the server's sockets */
    long long socks, socks_peak;   /* the server's connected sockets */
    long long tcp_pages, tcp_pages_peak; /* sockstat TCP mem, pages */
};

/* port of a 127.0.0.1 / ::1 target, 0 for a unix socket. */
int target_port(const struct target *t);
void kernmon_start(struct kernmon *k, int port);
void kernmon_tick(struct kernmon *k, uint64_t now);
/* pages (sockstat's and tcp_mem's unit) in KiB; 0 for an unknown (< 0). */
uint64_t pages_kb(long long pages);
/* /proc/sys/net/ipv4/tcp_mem's three limits in pages (0 if unreadable). */
void tcp_mem_limits(long long lim[3]);

#endif
