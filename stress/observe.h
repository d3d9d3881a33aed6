/* observe.h: watching the server from outside: its STATS counters over a
 * connection of our own, and its RSS and CPU time from /proc. */
#ifndef STRESS_OBSERVE_H
#define STRESS_OBSERVE_H

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
    bool gone;
};

void procmon_start(struct procmon *m, int pid);
void procmon_tick(struct procmon *m, uint64_t now);

#endif
