/* report.h: one result row per scenario run, and the ways it is shown: an
 * aligned table (people), JSON (tools), and a TSV line per row so that the
 * rows of several runs (main server, fault-injected servers) can be gathered
 * into one final table by `evl-stress report`. */
#ifndef STRESS_REPORT_H
#define STRESS_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct row {
    char name[40];
    int conns;
    uint64_t requested; /* bytes the clients asked the server for */
    uint64_t verified;  /* bytes received and checked */
    uint64_t probes;    /* PING round trips measured */
    uint64_t p50_us, p99_us, max_us;
    uint64_t rss_peak_kb; /* server, 0 = unknown */
    uint64_t cpu_ms;      /* server CPU time during the run, 0 = unknown */
    uint64_t sndq_peak;   /* bytes in the server's kernel send queues, peak */
    uint64_t tcp_mem_peak_kb; /* host TCP memory (sockstat), peak; 0 = unknown */
    char guard_file[200]; /* nbguard report of the server, read when shown */
    char result[240];     /* "PASS" or "FAIL: why" */
    char detail[400];     /* scenario-specific facts, one line */
};

/* What nbguard wrote at the server's exit (all -1 if the file is absent). */
struct guard_info {
    long long max_us, calls, eagain;
    char slowest[16];
};
void guard_read(const char *path, struct guard_info *g);

bool row_passed(const struct row *r);
void report_table(FILE *f, const struct row *rows, int n);
int report_json(const char *path, const struct row *rows, int n, const char *verdict);
/* JUnit XML: a test case per row, and one for the failures found outside
 * the rows (extra), so CI counts and shows them. */
int report_junit(const char *path, const struct row *rows, int n, const char *const *extra,
                 int nextra);
int rows_append(const char *path, const struct row *r);
/* Loads every row of a TSV file; *rows is malloc'd. -1 if unreadable. */
int rows_load(const char *path, struct row **rows, int *n);

/* "12.3 MiB" style, for bytes. */
void fmt_bytes(char *buf, size_t len, uint64_t v);

#endif
