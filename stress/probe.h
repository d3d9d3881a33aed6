/* probe.h: the fast client beside the load: one PING in flight at a time,
 * every few ms; its round trips are how long the server's loop took to come
 * back to an innocent connection. Against --mode http the same probe sends
 * "GET /" on one keep-alive connection instead, and a round trip ends with
 * the last byte of the response's body. */
#ifndef STRESS_PROBE_H
#define STRESS_PROBE_H

#include <stdio.h>

#include "hist.h"
#include "net.h"

struct probe {
    struct sock s; /* first: the callback casts back */
    struct linebuf lb;
    bool outstanding;
    bool http; /* GET / and an HTTP/1.1 response instead of PING/PONG */
    uint64_t sent, next, interval, t0;
    uint64_t sent_rt;  /* CLOCK_REALTIME ns of the request's send */
    uint64_t rx_rt;    /* the kernel's arrival time of the last bytes read
                        * (SO_TIMESTAMPNS, CLOCK_REALTIME ns), 0 if none */
    struct hist h;    /* the round trips measured */
    struct hist hc;   /* the same, corrected for coordinated omission: what
                       * the percentiles are taken from (see probe.c) */
    FILE *csv; /* per-sample "scenario,seconds,rtt_ms" when asked */
    const char *tag;
    char err[160];
};

int probe_start(struct probe *p, struct driver *d, const struct target *t, int interval_ms,
                bool http, FILE *csv, const char *tag);
void probe_tick(struct probe *p, uint64_t now);
/* An unanswered PING counts as a sample of its age so far: a server that
 * hangs shows as a huge max, not as a missing one. */
void probe_stop(struct probe *p, uint64_t now);

#endif
