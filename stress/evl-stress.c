/* evl-stress: stress clients for evl-testsrv (stress/README.md, docs/PROTOCOL.md §8).
 *
 *   evl-stress SCENARIO --connect HOST:PORT [options]
 *   evl-stress report --rows FILE [--json FILE] [--junit FILE] [--note TEXT]...
 *                         [--fail REASON]...
 *
 * One process, one epoll loop, no threads, and not the library under test:
 * the server is judged from outside. Prints a table and, last, exactly
 * "PASS" or "FAIL: <reason>"; exits 0 only on PASS, 2 on bad usage. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "stress.h"

static const char usage_text[] =
    "usage: evl-stress SCENARIO --connect ADDR [options]\n"
    "       evl-stress attack --connect ADDR --server-pid P [options] -- ATTACKER [ARGS...]\n"
    "       evl-stress report --rows FILE [--json FILE] [--junit FILE] [--note TEXT]...\n"
    "                         [--fail REASON]...\n"
    "\n"
    "SCENARIO: slowreaders | fanout | churn | blast | all (slowreaders, fanout, churn)\n"
    "          scale: --conns N (or the fd limits' ceiling) held, --active PCT ping-pong\n"
    "          attack: runs ATTACKER (slowhttptest) against --mode http (stress/README.md)\n"
    "ADDR:     127.0.0.1:PORT, [::1]:PORT, unix:PATH (nothing else is accepted)\n"
    "\n"
    "load (each scenario has its own defaults, see stress/README.md):\n"
    "  --conns N         load connections (churn: most open at once)\n"
    "  --seconds S       length of the load phase\n"
    "  --bytes B         BLAST size per connection (K, M, G suffixes: KiB...)\n"
    "  --rate R          slowreaders: bytes/s per paced reader; fanout: BCASTs/s;\n"
    "                    churn: new connections/s\n"
    "  --stall-ms MS     slowreaders: how long stalled readers read nothing\n"
    "  --stalled PCT     share of connections that stall (slowreaders 75, fanout 25)\n"
    "  --paced PCT       slowreaders: share that reads at --rate (20)\n"
    "  --msg-bytes B     fanout: padding per BCAST message (256)\n"
    "  --hold-ms MS      churn: how long holding connections wait before the reset (50)\n"
    "  --probe-ms MS     PING interval of the probe connection (5)\n"
    "  --rcvbuf B        SO_RCVBUF of load connections, 0 = kernel default (65536)\n"
    "  --seed N          base of the BLAST seeds (1)\n"
    "observation and verdict:\n"
    "  --server-pid P    sample /proc/P (RSS, CPU time) every 100 ms\n"
    "  --max-p99-ms X    probe p99 (and fanout delivery p99) limit (250)\n"
    "  --max-ms X        probe max limit (2000)\n"
    "  --max-rss-mb X    server peak RSS limit (512)\n"
    "  --timeout S       hard deadline: load phase + S seconds (60)\n"
    "  --settle-ms MS    time the server has to drop closed connections (5000)\n"
    "scale (--stalled PCT: slow readers, 1; --seconds: the hold, 10):\n"
    "  --active PCT      share of connections that ping-pong during the hold (1)\n"
    "  --sources K       connect from 127.0.0.2 .. 127.0.0.(K+1) in turn (1 per 25000)\n"
    "attack (the probe sends GET / instead of PING; --seconds: the attack's length):\n"
    "  --attack-csv F    the attacker's CSV (slowhttptest -g -o): read after it exits\n"
    "  --attack-log F    where the attacker's stdout and stderr go (/dev/null)\n"
    "  --samples-csv F   append RSS, kernel send queue, conns, TCP mem every 250 ms\n"
    "  --rss-per-conn-kb K  peak RSS bound: RSS before + peak conns x K (0 = none)\n"
    "  --after-ms MS     judge RSS this long after the last attacker left (5000)\n"
    "  --rss-ratio X     ... against X times the RSS before the attack (2)\n"
    "output:\n"
    "  --json FILE       the results as JSON\n"
    "  --rows FILE       append the rows as TSV (for `evl-stress report`)\n"
    "  --latency-csv F   append every probe sample: scenario,seconds,rtt_ms\n"
    "  --guard-report F  nbguard's report file of this server (read when shown)\n"
    "  --label NAME      name of the row (one scenario only)\n"
    "report (gathers the rows of several runs into one table and verdict):\n"
    "  --junit FILE      the results as JUnit XML, a test case per row\n"
    "  --note TEXT       a line printed under the table\n"
    "  --fail REASON     a failure found outside the rows (e.g. the server's exit)\n";

static _Noreturn void usage(const char *why)
{
    if (why)
        fprintf(stderr, "evl-stress: %s\n", why);
    fputs(usage_text, stderr);
    exit(2);
}

/* "16M" -> 16 MiB; plain numbers are bytes. */
static int64_t parse_size(const char *flag, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0; end++; break;
    case 'm': case 'M': mul = 1048576.0; end++; break;
    case 'g': case 'G': mul = 1073741824.0; end++; break;
    default: break;
    }
    if (mul > 1 && *end == 'i')
        end++;
    if (mul > 1 && (*end == 'B' || *end == 'b'))
        end++;
    if (errno || end == s || *end || !(v >= 0) || v * mul > 9.2e18) {
        char why[120];
        snprintf(why, sizeof why, "%s: bad size '%s'", flag, s);
        usage(why);
    }
    return (int64_t)(v * mul);
}

static double parse_num(const char *flag, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        char why[120];
        snprintf(why, sizeof why, "%s: '%s' is not a number in [%g, %g]", flag, s, lo, hi);
        usage(why);
    }
    return v;
}

enum {
    O_CONNECT = 256, O_CONNS, O_SECONDS, O_BYTES, O_RATE, O_STALL, O_STALLED, O_PACED, O_MSG,
    O_HOLD, O_PROBE, O_RCVBUF, O_SEED, O_PID, O_P99, O_MAX, O_RSS, O_TIMEOUT, O_SETTLE, O_JSON,
    O_ROWS, O_CSV, O_GUARD, O_LABEL, O_FAIL, O_NOTE, O_JUNIT, O_HELP,
    O_ATK_CSV, O_ATK_LOG, O_SAMPLES, O_PER_CONN, O_AFTER, O_RATIO, O_ACTIVE, O_SOURCES
};

static const struct option longopts[] = {
    {"connect", 1, 0, O_CONNECT},  {"conns", 1, 0, O_CONNS},     {"seconds", 1, 0, O_SECONDS},
    {"bytes", 1, 0, O_BYTES},      {"rate", 1, 0, O_RATE},       {"stall-ms", 1, 0, O_STALL},
    {"stalled", 1, 0, O_STALLED},  {"paced", 1, 0, O_PACED},     {"msg-bytes", 1, 0, O_MSG},
    {"hold-ms", 1, 0, O_HOLD},     {"probe-ms", 1, 0, O_PROBE},  {"rcvbuf", 1, 0, O_RCVBUF},
    {"seed", 1, 0, O_SEED},        {"server-pid", 1, 0, O_PID},  {"max-p99-ms", 1, 0, O_P99},
    {"max-ms", 1, 0, O_MAX},       {"max-rss-mb", 1, 0, O_RSS},  {"timeout", 1, 0, O_TIMEOUT},
    {"settle-ms", 1, 0, O_SETTLE}, {"json", 1, 0, O_JSON},       {"rows", 1, 0, O_ROWS},
    {"latency-csv", 1, 0, O_CSV},  {"guard-report", 1, 0, O_GUARD}, {"label", 1, 0, O_LABEL},
    {"fail", 1, 0, O_FAIL},        {"note", 1, 0, O_NOTE},       {"junit", 1, 0, O_JUNIT},
    {"help", 0, 0, O_HELP},
    {"attack-csv", 1, 0, O_ATK_CSV}, {"attack-log", 1, 0, O_ATK_LOG},
    {"samples-csv", 1, 0, O_SAMPLES}, {"rss-per-conn-kb", 1, 0, O_PER_CONN},
    {"after-ms", 1, 0, O_AFTER},   {"rss-ratio", 1, 0, O_RATIO},
    {"active", 1, 0, O_ACTIVE},    {"sources", 1, 0, O_SOURCES},
    {0, 0, 0, 0},
};

#define MAX_FAILS 8

struct cli {
    struct opts o;
    const char *scenario, *connect, *junit;
    const char *fails[MAX_FAILS], *notes[MAX_FAILS];
    int nfails, nnotes;
};

static void parse_args(int argc, char **argv, struct cli *c)
{
    struct opts *o = &c->o;
    *o = (struct opts){.conns = -1, .seconds = -1, .bytes = -1, .rate = -1, .stall_ms = -1,
                       .stalled_pct = -1, .paced_pct = -1, .msg_bytes = -1, .hold_ms = -1,
                       .probe_ms = 5, .rcvbuf = 65536, .timeout_s = 60, .settle_ms = 5000,
                       .max_p99_ms = 250, .max_ms = 2000, .max_rss_mb = 512, .seed = 1,
                       .after_ms = 5000, .rss_ratio = 2, .active_pct = -1};
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            fputs(usage_text, stdout);
            exit(0);
        }
        usage("missing SCENARIO");
    }
    c->scenario = argv[1];
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case O_CONNECT: c->connect = optarg; break;
        case O_CONNS: o->conns = (int)parse_num("--conns", optarg, 1, 100000); break;
        case O_SECONDS: o->seconds = parse_num("--seconds", optarg, 0.1, 86400); break;
        case O_BYTES: o->bytes = parse_size("--bytes", optarg); break;
        case O_RATE: o->rate = (double)parse_size("--rate", optarg); break;
        case O_STALL: o->stall_ms = (int)parse_num("--stall-ms", optarg, 0, 86400000); break;
        case O_STALLED: o->stalled_pct = (int)parse_num("--stalled", optarg, 0, 100); break;
        case O_PACED: o->paced_pct = (int)parse_num("--paced", optarg, 0, 100); break;
        case O_MSG: o->msg_bytes = (int)parse_num("--msg-bytes", optarg, 1, 4000); break;
        case O_HOLD: o->hold_ms = (int)parse_num("--hold-ms", optarg, 0, 60000); break;
        case O_PROBE: o->probe_ms = (int)parse_num("--probe-ms", optarg, 1, 10000); break;
        case O_RCVBUF: o->rcvbuf = (int)parse_size("--rcvbuf", optarg); break;
        case O_SEED: o->seed = (uint32_t)parse_num("--seed", optarg, 0, 4294967295.0); break;
        case O_PID: o->server_pid = (int)parse_num("--server-pid", optarg, 1, 4194304); break;
        case O_P99: o->max_p99_ms = parse_num("--max-p99-ms", optarg, 0, 1e9); break;
        case O_MAX: o->max_ms = parse_num("--max-ms", optarg, 0, 1e9); break;
        case O_RSS: o->max_rss_mb = parse_num("--max-rss-mb", optarg, 0, 1e9); break;
        case O_TIMEOUT: o->timeout_s = parse_num("--timeout", optarg, 1, 86400); break;
        case O_SETTLE: o->settle_ms = (int)parse_num("--settle-ms", optarg, 0, 600000); break;
        case O_JSON: o->json = optarg; break;
        case O_ROWS: o->rows = optarg; break;
        case O_CSV: o->latency_csv = optarg; break;
        case O_GUARD: o->guard_report = optarg; break;
        case O_LABEL: o->label = optarg; break;
        case O_FAIL:
            if (c->nfails < MAX_FAILS)
                c->fails[c->nfails++] = optarg;
            break;
        case O_JUNIT: c->junit = optarg; break;
        case O_NOTE:
            if (c->nnotes < MAX_FAILS)
                c->notes[c->nnotes++] = optarg;
            break;
        case O_ATK_CSV: o->attack_csv = optarg; break;
        case O_ATK_LOG: o->attack_log = optarg; break;
        case O_SAMPLES: o->samples_csv = optarg; break;
        case O_PER_CONN: o->rss_per_conn_kb = (int)parse_num("--rss-per-conn-kb", optarg, 0, 1e8); break;
        case O_AFTER: o->after_ms = (int)parse_num("--after-ms", optarg, 0, 600000); break;
        case O_RATIO: o->rss_ratio = parse_num("--rss-ratio", optarg, 1, 1000); break;
        case O_ACTIVE: o->active_pct = (int)parse_num("--active", optarg, 0, 100); break;
        case O_SOURCES: o->sources = (int)parse_num("--sources", optarg, 1, 250); break;
        case O_HELP: fputs(usage_text, stdout); exit(0);
        default: usage(NULL);
        }
    }
    /* the attacker's command: what getopt left after "--" */
    if (!strcmp(c->scenario, "attack") && optind < argc && !strcmp(argv[optind - 1], "--"))
        o->attacker = argv + optind;
    else if (optind < argc)
        usage("unexpected argument");
    if (!strcmp(c->scenario, "attack") && !o->attacker)
        usage("attack needs the attacker's command after --");
    if (o->stalled_pct >= 0 && o->paced_pct >= 0 && o->stalled_pct + o->paced_pct > 100)
        usage("--stalled + --paced is more than 100");
    if (o->rcvbuf > (1 << 30))
        usage("--rcvbuf too large");
}

/* The table, then the verdict as the last line. */
static int finish(const struct opts *o, const struct row *rows, int n, const char *const *notes,
                  int nnotes, const char *const *extra, int nextra)
{
    /* a failure of the server itself (a guard abort, a sanitizer report, a
     * bad exit) usually explains the rows' failures: it is named first */
    const char *first = nextra > 0 ? extra[0] : NULL;
    for (int i = 0; i < n && !first; i++)
        if (!row_passed(&rows[i]))
            first = rows[i].result;
    char verdict[300];
    if (!first)
        snprintf(verdict, sizeof verdict, "PASS");
    else if (!strncmp(first, "FAIL", 4))
        snprintf(verdict, sizeof verdict, "%s", first);
    else
        snprintf(verdict, sizeof verdict, "FAIL: %s", first);
    report_table(stdout, rows, n);
    for (int i = 0; i < nnotes; i++)
        printf("  %s\n", notes[i]);
    for (int i = 0; i < nextra; i++)
        printf("  %s\n", extra[i]);
    if (o->json && report_json(o->json, rows, n, verdict) < 0)
        fprintf(stderr, "evl-stress: cannot write %s: %s\n", o->json, strerror(errno));
    printf("%s\n", verdict);
    fflush(stdout);
    return first ? 1 : 0;
}

static int run_report(struct cli *c)
{
    struct row *rows = NULL;
    int n = 0;
    if (!c->o.rows)
        usage("report needs --rows FILE");
    if (rows_load(c->o.rows, &rows, &n) < 0) {
        static char why[300]; /* outlives the call: c->fails keeps it */
        snprintf(why, sizeof why, "cannot read %s: %s", c->o.rows, strerror(errno));
        if (c->nfails < MAX_FAILS)
            c->fails[c->nfails++] = why;
        int rc = finish(&c->o, rows, 0, c->notes, c->nnotes, c->fails, c->nfails);
        free(rows);
        return rc;
    }
    if (n == 0 && c->nfails < MAX_FAILS)
        c->fails[c->nfails++] = "no result rows";
    if (c->junit && report_junit(c->junit, rows, n, c->fails, c->nfails) < 0)
        fprintf(stderr, "evl-stress: cannot write %s: %s\n", c->junit, strerror(errno));
    int rc = finish(&c->o, rows, n, c->notes, c->nnotes, c->fails, c->nfails);
    free(rows);
    return rc;
}

typedef int scenario_fn(const struct opts *, struct row *);

static scenario_fn *scenario_named(const char *name)
{
    if (!strcmp(name, "slowreaders"))
        return run_slowreaders;
    if (!strcmp(name, "fanout"))
        return run_fanout;
    if (!strcmp(name, "churn"))
        return run_churn;
    if (!strcmp(name, "blast"))
        return run_blast;
    if (!strcmp(name, "attack"))
        return run_attack;
    if (!strcmp(name, "scale"))
        return run_scale;
    return NULL;
}

int main(int argc, char **argv)
{
    struct cli c = {0};
    parse_args(argc, argv, &c);
    if (!strcmp(c.scenario, "report"))
        return run_report(&c);

    static const char *const all[] = {"slowreaders", "fanout", "churn"};
    const char *list[3];
    int nlist = 0;
    if (!strcmp(c.scenario, "all")) {
        for (int i = 0; i < 3; i++)
            list[nlist++] = all[i];
        if (c.o.label)
            usage("--label names one scenario's row; not with all");
    } else if (scenario_named(c.scenario)) {
        list[nlist++] = c.scenario;
    } else {
        char why[120];
        snprintf(why, sizeof why, "unknown scenario '%s'", c.scenario);
        usage(why);
    }
    if (!c.connect)
        usage("missing --connect ADDR");
    char err[200];
    if (target_parse(c.connect, &c.o.target, err, sizeof err) < 0)
        usage(err);

    /* a reset peer must be an error return, never a signal */
    signal(SIGPIPE, SIG_IGN);
    /* hundreds of connections: take all the descriptors we are allowed */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct row rows[3];
    for (int i = 0; i < nlist; i++) {
        c.o.scenario = list[i];
        scenario_named(list[i])(&c.o, &rows[i]);
        if (c.o.rows && rows_append(c.o.rows, &rows[i]) < 0)
            fprintf(stderr, "evl-stress: cannot append to %s: %s\n", c.o.rows, strerror(errno));
        /* progress for people watching a long run; the table comes at the end */
        if (row_passed(&rows[i]))
            fprintf(stderr, "evl-stress: %s: PASS\n", rows[i].name);
        else
            fprintf(stderr, "evl-stress: %s\n", rows[i].result);
    }
    return finish(&c.o, rows, nlist, NULL, 0, NULL, 0);
}
