/*
 * torture: every call the library makes, failed in turn.
 *
 * For each scenario (scenarios.c), a counting run first learns how many calls
 * of each kind (faultinj.h) the library makes in it; then the scenario is run
 * again once per (kind, call index, errno from the call's man page), with
 * that one call failing. Each run is a forked child: a crash, a sanitizer
 * report or a hang is contained and reported with its point, and no state
 * (heap, fds, signal mask, counters) leaks from one run into the next, which
 * an in-process rerun could not promise after a fault the library mishandles.
 * The child checks the invariants (check.c) and exits 0, or 4 when the call
 * index was not reached in this run (timing varies: evl_run's ticks).
 *
 *   torture [--quick K] [--persist] [--scenario S]... [--kind K]...
 *           [--regressions FILE] [--waivers FILE] [--report FILE] [--junit FILE]
 *           [--timeout S] [-v]
 *   torture [--persist] --point SCENARIO:KIND:N:ERRNO     one run, its output shown
 *   torture --list
 *
 * --persist: a second sweep in which every call of the kind fails from the
 * index on (SQLite's persistent mode), where only the invariants that ask
 * no progress of the library are held (check.c: needs_progress).
 * --quick K: only the first K call indices of each kind, and the last one
 * (the full run takes every index). --regressions FILE: lines
 * "scenario kind errno" run at every index of that kind whatever --quick
 * says (the points where bugs were found). --waivers FILE: see waiver below.
 * Exit 1 if any run broke an invariant (waived ones aside), 2 for bad usage.
 */
#include "torture.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIGS 64
#define MSG_MAX 240

enum result { RUN_OK, RUN_NOT_REACHED, RUN_FAIL, RUN_WAIVED, RUN_GAVE_UP };

/* The two sweeps: one failing call (curl's torture), or every call of the
 * kind from the index on (SQLite's persistent OOM mode: cleanup paths
 * under a failure that does not go away). */
enum mode { ONCE, PERSIST, NMODES };
static const char *const mode_names[NMODES] = {"once", "persist"};

typedef struct signature {
    char text[MSG_MAX];   /* the violation class, or the sanitizer's SUMMARY */
    unsigned long hits;
    char example[MSG_MAX]; /* scenario:kind:n:errno of the first hit */
    char detail[MSG_MAX];  /* its first message line */
} signature;

typedef struct tally {
    unsigned long points[FI_NKINDS];  /* call indices exercised */
    unsigned long runs[FI_NKINDS];    /* (index, errno) runs */
    unsigned long reached[FI_NKINDS]; /* runs where the call failed on purpose */
    unsigned long failed[FI_NKINDS];  /* runs that broke an invariant */
    unsigned long waived[FI_NKINDS];  /* failed runs a waiver explains */
    unsigned long gave_up[FI_NKINDS]; /* persist: runs that could not go on */
    double secs;
    bool ran;
} tally;

static struct {
    tally t[NMODES];
    signature sigs[MAX_SIGS];
    int nsigs;
    unsigned long total_runs, total_failed;
} R;

static int timeout_s = 10;
static int verbose;

static char *regressions[64][3];
static int nregressions;

/* Waivers (--waivers FILE): "kind | signature | reason" lines; a failed run
 * of that kind with that signature is counted as waived, not failed, and
 * listed with its reason. For failures the call cannot have in the
 * library's use of it, never for a bug waiting for a fix. */
typedef struct waiver {
    char kind[32];
    char sig[MSG_MAX];
    char reason[MSG_MAX];
    unsigned long hits;
} waiver;
static waiver waivers[16];
static int nwaivers;

/* ---- one run ------------------------------------------------------------------ */

/* Runs scenario s in a child with the fault (kind, nth, err) armed, or none
 * when nth is 0; its output (stdout and stderr) is collected into out. */
static int run_child(const tt_scenario *s, enum mode m, enum fi_kind kind, unsigned long nth,
                     int err, char *out, size_t outsz)
{
    int pfd[2];
    if (pipe(pfd) < 0) {
        perror("torture: pipe");
        exit(2);
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("torture: fork");
        exit(2);
    }
    if (pid == 0) {
        (void)close(pfd[0]);
        (void)dup2(pfd[1], 1);
        (void)dup2(pfd[1], 2);
        (void)close(pfd[1]);
        sigset_t none;
        (void)sigemptyset(&none);
        (void)sigprocmask(SIG_SETMASK, &none, NULL);
        (void)signal(SIGPIPE, SIG_DFL); /* a send without MSG_NOSIGNAL kills the run */
        (void)alarm((unsigned)timeout_s);
        tt_ctx x = {.armed = nth > 0, .kind = kind, .err = err, .nth = nth,
                    .persist = m == PERSIST, .stall_ms = m == PERSIST ? 200 : TT_STALL_MS};
        tt_current = &x;
        fi_reset();
        if (nth)
            fi_arm(kind, nth, err, m == PERSIST ? 0 : 1);
        x.fds_before = tt_count_fds();
        s->run(&x);
        _exit(99); /* scenarios end in tt_finish */
    }
    (void)close(pfd[1]);
    size_t len = 0;
    time_t deadline = time(NULL) + timeout_s + 5;
    for (;;) {
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        int pr = poll(&p, 1, 1000);
        if (pr > 0) {
            char buf[4096];
            ssize_t n = read(pfd[0], buf, sizeof buf);
            if (n <= 0)
                break;
            size_t keep = (size_t)n < outsz - 1 - len ? (size_t)n : outsz - 1 - len;
            memcpy(out + len, buf, keep);
            len += keep;
        }
        if (time(NULL) > deadline) {
            (void)kill(pid, SIGKILL); /* the child's alarm did not end it */
            break;
        }
    }
    out[len] = '\0';
    (void)close(pfd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

/* The line of out that starts with prefix, copied into dst. */
static bool find_line(const char *out, const char *prefix, char *dst, size_t n)
{
    const char *p = strstr(out, prefix);
    if (!p)
        return false;
    size_t len = strcspn(p, "\n");
    if (len >= n)
        len = n - 1;
    memcpy(dst, p, len);
    dst[len] = '\0';
    return true;
}

/* What went wrong, as a signature shared by every run that hit the same bug. */
static void classify(int status, const char *out, char *sig, char *detail)
{
    detail[0] = '\0';
    if (find_line(out, "VIOLATION ", detail, MSG_MAX)) {
        size_t n = strcspn(detail, ":");
        (void)snprintf(sig, MSG_MAX, "%.*s", (int)n, detail);
        return;
    }
    if (!find_line(out, "==ERROR: ", detail, MSG_MAX))
        (void)find_line(out, "runtime error", detail, MSG_MAX);
    if (find_line(out, "SUMMARY: ", sig, MSG_MAX))
        return;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        (void)snprintf(sig, MSG_MAX, "hang: no end within %d s", timeout_s);
    else if (WIFSIGNALED(status))
        (void)snprintf(sig, MSG_MAX, "killed by %s", strsignal(WTERMSIG(status)));
    else
        (void)snprintf(sig, MSG_MAX, "exit %d", WEXITSTATUS(status));
}

static void record(const char *sig, const char *detail, const char *example)
{
    for (int i = 0; i < R.nsigs; i++)
        if (strcmp(R.sigs[i].text, sig) == 0) {
            R.sigs[i].hits++;
            return;
        }
    if (R.nsigs == MAX_SIGS)
        return;
    signature *g = &R.sigs[R.nsigs++];
    (void)snprintf(g->text, sizeof g->text, "%s", sig);
    (void)snprintf(g->example, sizeof g->example, "%s", example);
    (void)snprintf(g->detail, sizeof g->detail, "%s", detail);
    g->hits = 1;
}

static enum result one_run(const tt_scenario *s, enum mode m, enum fi_kind kind,
                           unsigned long nth, int err)
{
    static char out[1 << 16];
    int status = run_child(s, m, kind, nth, err, out, sizeof out);
    char example[MSG_MAX];
    (void)snprintf(example, sizeof example, "%s%s:%s:%lu:%s", m == PERSIST ? "--persist " : "",
                   s->name, fi_kind_name(kind), nth, strerrorname_np(err));
    R.total_runs++;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return RUN_OK;
    if (WIFEXITED(status) && WEXITSTATUS(status) == TT_EXIT_GAVE_UP)
        return RUN_GAVE_UP;
    if (WIFEXITED(status) && WEXITSTATUS(status) == TT_EXIT_NOT_REACHED)
        return RUN_NOT_REACHED;
    char sig[MSG_MAX], detail[MSG_MAX];
    classify(status, out, sig, detail);
    for (int i = 0; i < nwaivers; i++)
        if (strcmp(waivers[i].kind, fi_kind_name(kind)) == 0 && strcmp(waivers[i].sig, sig) == 0) {
            waivers[i].hits++;
            return RUN_WAIVED;
        }
    record(sig, detail, example);
    R.total_failed++;
    if (verbose)
        (void)fprintf(stderr, "FAIL %s: %s\n     %s\n", example, sig, detail);
    return RUN_FAIL;
}

/* ---- the sweep ---------------------------------------------------------------- */

static bool is_regression(const tt_scenario *s, enum fi_kind k, int err)
{
    for (int i = 0; i < nregressions; i++)
        if (strcmp(regressions[i][0], s->name) == 0 &&
            strcmp(regressions[i][1], fi_kind_name(k)) == 0 &&
            strcmp(regressions[i][2], strerrorname_np(err)) == 0)
            return true;
    return false;
}

/* The counting run: calls of each kind, or false if the scenario fails
 * without any fault. */
static bool count_calls(const tt_scenario *s, unsigned long counts[FI_NKINDS])
{
    static char out[1 << 16];
    int status = run_child(s, ONCE, FI_MALLOC, 0, 0, out, sizeof out);
    const char *p = strstr(out, "FI-COUNTS");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !p) {
        char sig[MSG_MAX], detail[MSG_MAX], example[MSG_MAX];
        classify(status, out, sig, detail);
        (void)snprintf(example, sizeof example, "%s (no fault)", s->name);
        record(sig, detail, example);
        R.total_failed++;
        (void)fprintf(stderr, "torture: %s fails with no fault injected:\n%s\n", s->name, out);
        return false;
    }
    p += strlen("FI-COUNTS");
    for (int k = 0; k < FI_NKINDS; k++) {
        char *end;
        counts[k] = strtoul(p, &end, 10);
        p = end;
    }
    return true;
}

typedef struct group {
    unsigned long runs, failed;
} group;

static void sweep(const tt_scenario *s, enum mode m, const bool kinds[FI_NKINDS],
                  unsigned long quick, group groups[FI_NKINDS])
{
    tally *t = &R.t[m];
    t->ran = true;
    unsigned long counts[FI_NKINDS];
    if (!count_calls(s, counts))
        return;
    for (int k = 0; k < FI_NKINDS; k++) {
        if (!kinds[k] || counts[k] == 0)
            continue;
        size_t nerr;
        const int *errs = fi_errnos((enum fi_kind)k, &nerr);
        for (unsigned long nth = 1; nth <= counts[k]; nth++) {
            bool sampled = !quick || nth <= quick || nth == counts[k];
            bool point = false;
            for (size_t e = 0; e < nerr; e++) {
                if (!sampled && !is_regression(s, (enum fi_kind)k, errs[e]))
                    continue;
                /* EINTR for ever is a signal storm that never ends: retrying,
                 * the only right answer to one EINTR, cannot end either. */
                if (m == PERSIST && errs[e] == EINTR)
                    continue;
                point = true;
                enum result r = one_run(s, m, (enum fi_kind)k, nth, errs[e]);
                t->runs[k]++;
                groups[k].runs++;
                if (r != RUN_NOT_REACHED)
                    t->reached[k]++;
                if (r == RUN_WAIVED)
                    t->waived[k]++;
                if (r == RUN_GAVE_UP)
                    t->gave_up[k]++;
                if (r == RUN_FAIL) {
                    t->failed[k]++;
                    groups[k].failed++;
                }
            }
            t->points[k] += point;
        }
    }
}

/* ---- reports ------------------------------------------------------------------ */

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            (void)fputs("&lt;", f);
        else if (*s == '>')
            (void)fputs("&gt;", f);
        else if (*s == '&')
            (void)fputs("&amp;", f);
        else if (*s == '"')
            (void)fputs("&quot;", f);
        else
            (void)fputc(*s, f);
    }
}

static void write_table(FILE *f, enum mode m, const char *sample)
{
    const tally *t = &R.t[m];
    (void)fprintf(f, "mode %s (%s), %.1f s\n", mode_names[m], sample, t->secs);
    (void)fprintf(f, "%-14s %7s %7s %7s %8s %7s %7s %7s\n", "call", "points", "errnos", "runs",
                  "reached", "failed", "waived", "gave-up");
    unsigned long sum[6] = {0};
    for (int k = 0; k < FI_NKINDS; k++) {
        size_t nerr;
        (void)fi_errnos((enum fi_kind)k, &nerr);
        (void)fprintf(f, "%-14s %7lu %7zu %7lu %8lu %7lu %7lu %7lu\n",
                      fi_kind_name((enum fi_kind)k), t->points[k], nerr, t->runs[k],
                      t->reached[k], t->failed[k], t->waived[k], t->gave_up[k]);
        sum[0] += t->points[k];
        sum[1] += t->runs[k];
        sum[2] += t->reached[k];
        sum[3] += t->failed[k];
        sum[4] += t->waived[k];
        sum[5] += t->gave_up[k];
    }
    (void)fprintf(f, "%-14s %7lu %7s %7lu %8lu %7lu %7lu %7lu\n\n", "total", sum[0], "", sum[1],
                  sum[2], sum[3], sum[4], sum[5]);
}

static void write_text(FILE *f, const char *sample)
{
    (void)fprintf(f, "torture: systematic fault injection into lib/\n\n");
    for (int m = 0; m < NMODES; m++)
        if (R.t[m].ran)
            write_table(f, (enum mode)m, sample);
    (void)fprintf(f, "points: call indices failed (summed over scenarios); runs: points x errnos;\n"
                     "reached: runs in which the call index was reached and failed; gave-up:\n"
                     "persistent faults under which the scenario could not go on (its\n"
                     "leak, fd, on_close and errno checks still ran where the loop was free).\n\n");
    (void)fprintf(f, "distinct invariant violations: %d\n", R.nsigs);
    for (int i = 0; i < R.nsigs; i++)
        (void)fprintf(f, "  [%lu runs] %s\n    first: %s\n    %s\n", R.sigs[i].hits,
                      R.sigs[i].text, R.sigs[i].example, R.sigs[i].detail);
    if (R.nsigs)
        (void)fprintf(f, "reproduce one: torture [--persist] --point SCENARIO:KIND:N:ERRNO\n");
    (void)fprintf(f, "\nwaived (a failure the call cannot have where the library makes it):\n");
    for (int i = 0; i < nwaivers; i++)
        (void)fprintf(f, "  [%lu runs] %s: %s\n    %s\n", waivers[i].hits, waivers[i].kind,
                      waivers[i].sig, waivers[i].reason);
}

typedef group groups_t[NMODES][64][FI_NKINDS];

/* One test case per mode, scenario and call kind that ran. */
static void write_junit(FILE *f, groups_t *g, double secs)
{
    unsigned long tests = 0, failures = 0;
    for (int m = 0; m < NMODES; m++)
        for (size_t s = 0; s < tt_nscenarios; s++)
            for (int k = 0; k < FI_NKINDS; k++)
                if ((*g)[m][s][k].runs) {
                    tests++;
                    failures += (*g)[m][s][k].failed > 0;
                }
    (void)fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    (void)fprintf(f, "<testsuite name=\"torture\" tests=\"%lu\" failures=\"%lu\" time=\"%.1f\">\n",
                  tests, failures, secs);
    for (int m = 0; m < NMODES; m++)
        for (size_t s = 0; s < tt_nscenarios; s++)
            for (int k = 0; k < FI_NKINDS; k++) {
                const group *gr = &(*g)[m][s][k];
                if (!gr->runs)
                    continue;
                (void)fprintf(f, "  <testcase classname=\"torture.%s.%s\" name=\"%s (%lu runs)\">",
                              mode_names[m], tt_scenarios[s].name,
                              fi_kind_name((enum fi_kind)k), gr->runs);
                if (gr->failed) {
                    (void)fprintf(f, "<failure message=\"%lu runs broke an invariant\">",
                                  gr->failed);
                    for (int i = 0; i < R.nsigs; i++)
                        if (strstr(R.sigs[i].example, tt_scenarios[s].name)) {
                            xml_text(f, R.sigs[i].text);
                            (void)fputs("\n", f);
                        }
                    (void)fputs("</failure>", f);
                }
                (void)fputs("</testcase>\n", f);
            }
    (void)fputs("</testsuite>\n", f);
}

/* ---- main --------------------------------------------------------------------- */

static _Noreturn void usage(void)
{
    (void)fputs("usage: torture [--quick K] [--persist] [--scenario S]... [--kind K]...\n"
          "               [--regressions FILE] [--waivers FILE] [--report FILE] [--junit FILE]\n"
          "               [--timeout S] [-v]\n"
          "       torture [--persist] --point SCENARIO:KIND:N:ERRNO | --list\n",
          stderr);
    exit(2);
}

static const tt_scenario *scenario_by_name(const char *name)
{
    for (size_t i = 0; i < tt_nscenarios; i++)
        if (strcmp(tt_scenarios[i].name, name) == 0)
            return &tt_scenarios[i];
    return NULL;
}

static int errno_by_name(enum fi_kind k, const char *name)
{
    size_t n;
    const int *errs = fi_errnos(k, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(strerrorname_np(errs[i]), name) == 0)
            return errs[i];
    return 0;
}

static void load_regressions(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        exit(2);
    }
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char a[64], b[64], c[64];
        if (line[0] == '#' || sscanf(line, "%63s %63s %63s", a, b, c) != 3)
            continue;
        const tt_scenario *s = scenario_by_name(a);
        int k = fi_kind_by_name(b);
        if (!s || k < 0 || !errno_by_name((enum fi_kind)k, c) || nregressions == 64) {
            (void)fprintf(stderr, "%s: bad line: %s", path, line);
            exit(2);
        }
        regressions[nregressions][0] = strdup(a);
        regressions[nregressions][1] = strdup(b);
        regressions[nregressions][2] = strdup(c);
        nregressions++;
    }
    (void)fclose(f);
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n'))
        s[--n] = '\0';
    size_t lead = strspn(s, " ");
    memmove(s, s + lead, n - lead + 1);
}

static void load_waivers(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        exit(2);
    }
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char *a = strtok(line, "|"), *b = strtok(NULL, "|"), *r = strtok(NULL, "");
        if (!a || !b || !r || nwaivers == 16) {
            (void)fprintf(stderr, "%s: bad line\n", path);
            exit(2);
        }
        waiver *w = &waivers[nwaivers++];
        trim(a);
        trim(b);
        trim(r);
        (void)snprintf(w->kind, sizeof w->kind, "%s", a);
        (void)snprintf(w->sig, sizeof w->sig, "%s", b);
        (void)snprintf(w->reason, sizeof w->reason, "%s", r);
        if (fi_kind_by_name(w->kind) < 0) {
            (void)fprintf(stderr, "%s: no call kind '%s'\n", path, w->kind);
            exit(2);
        }
    }
    (void)fclose(f);
}

static int run_point(const char *spec, enum mode m)
{
    char sname[64], kname[64], ename[64];
    unsigned long nth;
    if (sscanf(spec, "%63[^:]:%63[^:]:%lu:%63s", sname, kname, &nth, ename) != 4)
        usage();
    const tt_scenario *s = scenario_by_name(sname);
    int k = fi_kind_by_name(kname);
    int err = k >= 0 ? errno_by_name((enum fi_kind)k, ename) : 0;
    if (!s || !err || nth == 0)
        usage();
    static char out[1 << 16];
    int status = run_child(s, m, (enum fi_kind)k, nth, err, out, sizeof out);
    (void)fputs(out, stdout);
    (void)printf("torture: %s -> %s %d\n", spec, WIFEXITED(status) ? "exit" : "signal",
           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    return WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 4 ||
                                 WEXITSTATUS(status) == 5) ? 0 : 1;
}

int main(int argc, char **argv)
{
    unsigned long quick = 0;
    bool kinds[FI_NKINDS], any_kind = false;
    bool scen[64] = {0}, any_scen = false, persist = false;
    const char *report = NULL, *junit = NULL;
    memset(kinds, 0, sizeof kinds);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-v") == 0) {
            verbose = 1;
            continue;
        }
        if (strcmp(a, "--persist") == 0) {
            persist = true;
            continue;
        }
        if (strcmp(a, "--list") == 0) {
            for (size_t s = 0; s < tt_nscenarios; s++)
                (void)printf("%-16s %s\n", tt_scenarios[s].name, tt_scenarios[s].what);
            return 0;
        }
        if (!v)
            usage();
        i++;
        if (strcmp(a, "--quick") == 0) {
            quick = strtoul(v, NULL, 10);
            if (quick == 0)
                usage();
        } else if (strcmp(a, "--scenario") == 0) {
            const tt_scenario *s = scenario_by_name(v);
            if (!s)
                usage();
            scen[s - tt_scenarios] = any_scen = true;
        } else if (strcmp(a, "--kind") == 0) {
            int k = fi_kind_by_name(v);
            if (k < 0)
                usage();
            kinds[k] = any_kind = true;
        } else if (strcmp(a, "--regressions") == 0) {
            load_regressions(v);
        } else if (strcmp(a, "--waivers") == 0) {
            load_waivers(v);
        } else if (strcmp(a, "--report") == 0) {
            report = v;
        } else if (strcmp(a, "--junit") == 0) {
            junit = v;
        } else if (strcmp(a, "--timeout") == 0) {
            timeout_s = atoi(v);
            if (timeout_s <= 0)
                usage();
        } else if (strcmp(a, "--point") == 0) {
            return run_point(v, persist ? PERSIST : ONCE);
        } else {
            usage();
        }
    }
    for (int k = 0; k < FI_NKINDS && !any_kind; k++)
        kinds[k] = true;
    static groups_t groups;
    char sample[64];
    if (quick)
        (void)snprintf(sample, sizeof sample, "first %lu indices and the last", quick);
    else
        (void)snprintf(sample, sizeof sample, "every call index");
    double total = 0;
    for (int m = 0; m < (persist ? NMODES : 1); m++) {
        struct timespec t0, t1;
        (void)clock_gettime(CLOCK_MONOTONIC, &t0);
        for (size_t s = 0; s < tt_nscenarios; s++) {
            if (any_scen && !scen[s])
                continue;
            (void)fprintf(stderr, "torture: %s %s\n", mode_names[m], tt_scenarios[s].name);
            sweep(&tt_scenarios[s], (enum mode)m, kinds, quick, groups[m][s]);
        }
        (void)clock_gettime(CLOCK_MONOTONIC, &t1);
        R.t[m].secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        total += R.t[m].secs;
    }
    write_text(stdout, sample);
    if (report) {
        FILE *f = fopen(report, "w");
        if (!f) {
            perror(report);
            return 2;
        }
        write_text(f, sample);
        (void)fclose(f);
    }
    if (junit) {
        FILE *f = fopen(junit, "w");
        if (!f) {
            perror(junit);
            return 2;
        }
        write_junit(f, &groups, total);
        (void)fclose(f);
    }
    for (int i = 0; i < nregressions; i++)
        for (int j = 0; j < 3; j++)
            free(regressions[i][j]);
    return R.total_failed ? 1 : 0;
}
