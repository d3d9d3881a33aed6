/* session.h: what every scenario shares: the driver, the probe, the STATS
 * connection, /proc sampling, the hard deadline, the first failure, and the
 * closing checks (the server is back to one connection and no buffered
 * bytes; thresholds) that turn it all into a row. */
#ifndef STRESS_SESSION_H
#define STRESS_SESSION_H

#include <stdarg.h>

#include "observe.h"
#include "probe.h"
#include "stress.h"

struct session {
    const struct opts *o;
    struct row *row;
    struct driver drv;
    struct probe probe;
    struct statsconn sc;
    struct procmon mon;
    struct kernmon km;
    FILE *csv;
    uint64_t t0;       /* the load starts */
    uint64_t deadline; /* hard: past it the scenario fails, whatever the server does */
    struct srvstats first; /* STATS before the load */
    bool failed;
};

/* Connects the probe and the STATS connection and waits for both to answer.
 * budget_s is the scenario's expected length; the deadline is that plus
 * o->timeout_s. -1 (and the row failed) if the server does not answer. */
int session_begin(struct session *ss, const struct opts *o, struct row *row, const char *name,
                  double budget_s);
/* One batch of events plus the periodic work; -1 once the session failed
 * (server gone, probe or STATS connection broken, deadline passed). */
int session_poll(struct session *ss);
/* Records the first failure; later ones are consequences. */
void session_fail(struct session *ss, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A STATS reply requested now (not an older one); -1 if none within 5 s. */
int session_stats_now(struct session *ss, struct srvstats *st);
/* Stops the probe, checks the server settles (conns == 1, the STATS
 * connection itself, and wbuf_bytes == 0), applies the thresholds, fills the
 * row. Returns 0 on PASS. */
int session_end(struct session *ss);

#endif
