/* stress.h: evl-stress's options and its scenarios. */
#ifndef STRESS_STRESS_H
#define STRESS_STRESS_H

#include <stdint.h>

#include "net.h"
#include "report.h"

/* Numeric fields at -1 (or < 0) mean "the scenario's own default". */
struct opts {
    const char *scenario; /* the one running: names its latency samples */
    struct target target;
    int conns;           /* load connections (churn: the most open at once) */
    double seconds;      /* length of the load phase */
    int64_t bytes;       /* BLAST size per connection */
    double rate;         /* slowreaders: bytes/s per paced reader; fanout:
                          * BCASTs/s; churn: connections/s */
    int stall_ms;        /* slowreaders: how long stalled readers read nothing */
    int stalled_pct;     /* share of connections that stall */
    int paced_pct;       /* slowreaders: share read at --rate */
    int msg_bytes;       /* fanout: BCAST text size */
    int hold_ms;         /* churn: how long a holding connection waits before its reset */
    int probe_ms;        /* PING interval of the probe */
    int rcvbuf;          /* SO_RCVBUF of load connections (0: kernel default) */
    int server_pid;      /* sample /proc/PID when > 0 */
    double timeout_s;    /* hard deadline: load phase + this */
    int settle_ms;       /* how long the server may take to drop closed conns */
    double max_p99_ms;   /* thresholds: probe (and fanout delivery) p99 */
    double max_ms;       /* probe max */
    double max_rss_mb;   /* server peak RSS */
    const char *json, *rows, *latency_csv, *guard_report, *label;
    /* attack: the attacker's command (argv after "--"), its CSV and log,
     * the sampled time series, and the memory verdict's parameters */
    char **attacker;
    const char *attack_csv, *attack_log, *samples_csv;
    int sources;         /* scale: 127.0.0.x source addresses (0: one per 25000) */
    int active_pct;      /* scale: share that ping-pongs (1) */
    int rss_per_conn_kb; /* peak RSS bound per connection (0: not checked) */
    int after_ms;        /* RSS is judged this long after the last attacker left */
    double rss_ratio;    /* ... against this many times the RSS before */
    uint32_t seed;
};

/* Each runs one scenario against o->target, fills r, returns 0 on PASS. */
int run_slowreaders(const struct opts *o, struct row *r);
int run_blast(const struct opts *o, struct row *r);
int run_fanout(const struct opts *o, struct row *r);
int run_churn(const struct opts *o, struct row *r);
int run_attack(const struct opts *o, struct row *r);
int run_scale(const struct opts *o, struct row *r);

#endif
