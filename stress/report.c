/* report.c: the result table, its JSON twin, and the TSV rows that carry
 * results from one evl-stress run to the final `evl-stress report`. */
#include "report.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void fmt_bytes(char *buf, size_t len, uint64_t v)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double d = (double)v;
    int u = 0;
    while (d >= 1024.0 && u < 4) {
        d /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%" PRIu64 " B", v);
    else
        snprintf(buf, len, "%.1f %s", d, unit[u]);
}

void guard_read(const char *path, struct guard_info *g)
{
    g->max_us = g->calls = g->eagain = -1;
    snprintf(g->slowest, sizeof g->slowest, "?");
    if (!path || !*path)
        return;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[256];
    if (fgets(line, sizeof line, f)) {
        char slow[16] = "?";
        if (sscanf(line, "max_write_us=%lld calls=%lld eagain=%lld slowest=%15s", &g->max_us,
                   &g->calls, &g->eagain, slow) >= 3)
            snprintf(g->slowest, sizeof g->slowest, "%s", slow);
    }
    fclose(f);
}

bool row_passed(const struct row *r)
{
    return !strcmp(r->result, "PASS");
}

static void ms(char *buf, size_t len, uint64_t us, bool known)
{
    if (known)
        snprintf(buf, len, "%.2f", (double)us / 1000.0);
    else
        snprintf(buf, len, "-");
}

enum { NCOL = 14 };
static const char *const head[NCOL] = {"scenario", "conns",    "requested", "verified", "probes",
                                       "p50 ms",   "p99 ms",   "max ms",    "srv RSS",  "kern SendQ",
                                       "TCP mem",  "srv CPU",  "max write", "result"};

static void cells_of(const struct row *r, char c[NCOL][32])
{
    struct guard_info g;
    guard_read(r->guard_file, &g);
    snprintf(c[0], 32, "%s", r->name);
    snprintf(c[1], 32, "%d", r->conns);
    fmt_bytes(c[2], 32, r->requested);
    fmt_bytes(c[3], 32, r->verified);
    snprintf(c[4], 32, "%" PRIu64, r->probes);
    ms(c[5], 32, r->p50_us, r->probes > 0);
    ms(c[6], 32, r->p99_us, r->probes > 0);
    ms(c[7], 32, r->max_us, r->probes > 0);
    if (r->rss_peak_kb)
        fmt_bytes(c[8], 32, r->rss_peak_kb * 1024);
    else
        snprintf(c[8], 32, "-");
    /* kernel memory beside the server's own: the send queues of its
     * sockets, and the whole host's TCP memory that tcp_mem limits */
    fmt_bytes(c[9], 32, r->sndq_peak);
    if (r->tcp_mem_peak_kb)
        fmt_bytes(c[10], 32, r->tcp_mem_peak_kb * 1024);
    else
        snprintf(c[10], 32, "-");
    if (r->cpu_ms)
        snprintf(c[11], 32, "%.1f s", (double)r->cpu_ms / 1000.0);
    else
        snprintf(c[11], 32, "-");
    if (g.max_us >= 0)
        snprintf(c[12], 32, "%lld us", g.max_us);
    else
        snprintf(c[12], 32, "-");
    snprintf(c[13], 32, "%s", row_passed(r) ? "PASS" : "FAIL");
}

void report_table(FILE *f, const struct row *rows, int n)
{
    if (!rows)
        n = 0;
    char(*cells)[NCOL][32] = calloc((size_t)n + 1, sizeof *cells);
    if (!cells)
        return;
    size_t w[NCOL];
    for (int k = 0; k < NCOL; k++) {
        snprintf(cells[0][k], 32, "%s", head[k]);
        w[k] = strlen(head[k]);
    }
    for (int i = 0; i < n; i++) {
        cells_of(&rows[i], cells[i + 1]);
        for (int k = 0; k < NCOL; k++)
            if (strlen(cells[i + 1][k]) > w[k])
                w[k] = strlen(cells[i + 1][k]);
    }
    for (int i = 0; i <= n; i++) {
        for (int k = 0; k < NCOL; k++) {
            /* names and results read left to right; numbers line up right */
            int left = (k == 0 || k == NCOL - 1);
            int width = k == NCOL - 1 ? 0 : (int)w[k]; /* no trailing blanks */
            fprintf(f, "%s%*s", k ? "  " : "", left ? -width : width, cells[i][k]);
        }
        fputc('\n', f);
    }
    free(cells);
    for (int i = 0; i < n; i++) {
        const struct row *r = &rows[i];
        fprintf(f, "  %-*s %s\n", (int)w[0], r->name, r->detail);
        struct guard_info g;
        guard_read(r->guard_file, &g);
        /* one server run may serve several rows: say it once */
        bool same = i > 0 && !strcmp(r->guard_file, rows[i - 1].guard_file);
        if (g.calls >= 0 && !same)
            fprintf(f, "  %-*s nbguard, whole server run: %lld guarded calls, %lld EAGAIN, "
                       "longest %lld us (%s), no blocking call\n",
                    (int)w[0], "", g.calls, g.eagain, g.max_us, g.slowest);
        if (!row_passed(r))
            fprintf(f, "  %-*s %s\n", (int)w[0], "", r->result);
    }
}

/* JSON string body: quotes, backslashes and control bytes escaped. */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

int report_json(const char *path, const struct row *rows, int n, const char *verdict)
{
    if (!rows)
        n = 0;
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "{\n  \"verdict\": ");
    json_str(f, verdict);
    fprintf(f, ",\n  \"rows\": [");
    for (int i = 0; i < n; i++) {
        const struct row *r = &rows[i];
        struct guard_info g;
        guard_read(r->guard_file, &g);
        fprintf(f, "%s\n    {\"scenario\": ", i ? "," : "");
        json_str(f, r->name);
        fprintf(f,
                ", \"conns\": %d, \"requested_bytes\": %" PRIu64 ", \"verified_bytes\": %" PRIu64
                ", \"probes\": %" PRIu64 ", \"probe_p50_ms\": %.3f, \"probe_p99_ms\": %.3f"
                ", \"probe_max_ms\": %.3f, \"server_rss_peak_kb\": %" PRIu64
                ", \"server_cpu_s\": %.2f, \"kernel_sendq_peak_bytes\": %" PRIu64
                ", \"sockstat_tcp_mem_peak_kb\": %" PRIu64,
                r->conns, r->requested, r->verified, r->probes, (double)r->p50_us / 1000.0,
                (double)r->p99_us / 1000.0, (double)r->max_us / 1000.0, r->rss_peak_kb,
                (double)r->cpu_ms / 1000.0, r->sndq_peak, r->tcp_mem_peak_kb);
        if (g.max_us >= 0)
            fprintf(f,
                    ", \"guard_max_write_us\": %lld, \"guard_calls\": %lld"
                    ", \"guard_eagain\": %lld",
                    g.max_us, g.calls, g.eagain);
        else
            fprintf(f, ", \"guard_max_write_us\": null");
        fprintf(f, ", \"result\": ");
        json_str(f, r->result);
        fprintf(f, ", \"detail\": ");
        json_str(f, r->detail);
        fputc('}', f);
    }
    fprintf(f, "\n  ]\n}\n");
    return fclose(f) == 0 ? 0 : -1;
}

/* XML attribute text: the five special characters escaped. */
static void xml_str(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default: fputc((unsigned char)*s < 0x20 ? ' ' : *s, f);
        }
    }
}

int report_junit(const char *path, const struct row *rows, int n, const char *const *extra,
                 int nextra)
{
    if (!rows)
        n = 0;
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int failures = nextra > 0;
    for (int i = 0; i < n; i++)
        failures += !row_passed(&rows[i]);
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f, "<testsuite name=\"stress\" tests=\"%d\" failures=\"%d\">\n", n + 1, failures);
    for (int i = 0; i < n; i++) {
        fprintf(f, "  <testcase classname=\"stress\" name=\"");
        xml_str(f, rows[i].name);
        fprintf(f, "\">");
        if (!row_passed(&rows[i])) {
            fprintf(f, "<failure message=\"");
            xml_str(f, rows[i].result);
            fprintf(f, "\"/>");
        }
        fprintf(f, "</testcase>\n");
    }
    fprintf(f, "  <testcase classname=\"stress\" name=\"servers exit 0, guard and tools clean\">");
    for (int i = 0; i < nextra; i++) {
        fprintf(f, "<failure message=\"");
        xml_str(f, extra[i]);
        fprintf(f, "\"/>");
    }
    fprintf(f, "</testcase>\n</testsuite>\n");
    return fclose(f) == 0 ? 0 : -1;
}

/* Tabs and newlines would split the TSV record: turn them into spaces. */
static void tsv_field(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc((*s == '\t' || *s == '\n' || *s == '\r') ? ' ' : *s, f);
}

int rows_append(const char *path, const struct row *r)
{
    FILE *f = fopen(path, "a");
    if (!f)
        return -1;
    tsv_field(f, r->name);
    fprintf(f,
            "\t%d\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64
            "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t",
            r->conns, r->requested, r->verified, r->probes, r->p50_us, r->p99_us, r->max_us,
            r->rss_peak_kb, r->cpu_ms, r->sndq_peak, r->tcp_mem_peak_kb);
    tsv_field(f, r->guard_file);
    fputc('\t', f);
    tsv_field(f, r->result);
    fputc('\t', f);
    tsv_field(f, r->detail);
    fputc('\n', f);
    return fclose(f) == 0 ? 0 : -1;
}

/* Splits line at tabs in place; returns the number of fields. */
static int split_tabs(char *line, char **field, int max)
{
    int n = 0;
    field[n++] = line;
    for (char *p = line; *p && n < max; p++)
        if (*p == '\t') {
            *p = '\0';
            field[n++] = p + 1;
        }
    return n;
}

static int row_parse(char *line, struct row *r)
{
    char *fl[15];
    line[strcspn(line, "\n")] = '\0';
    if (split_tabs(line, fl, 15) != 15)
        return -1;
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", fl[0]);
    r->conns = atoi(fl[1]);
    uint64_t *num[] = {&r->requested, &r->verified,  &r->probes,    &r->p50_us,
                       &r->p99_us,    &r->max_us,    &r->rss_peak_kb, &r->cpu_ms,
                       &r->sndq_peak, &r->tcp_mem_peak_kb};
    for (int i = 0; i < 10; i++)
        *num[i] = strtoull(fl[2 + i], NULL, 10);
    snprintf(r->guard_file, sizeof r->guard_file, "%s", fl[12]);
    snprintf(r->result, sizeof r->result, "%s", fl[13]);
    snprintf(r->detail, sizeof r->detail, "%s", fl[14]);
    return 0;
}

int rows_load(const char *path, struct row **rows, int *n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    *rows = NULL;
    *n = 0;
    int cap = 0;
    char line[2048];
    while (fgets(line, sizeof line, f)) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            struct row *nr = realloc(*rows, (size_t)cap * sizeof **rows);
            if (!nr) {
                fclose(f);
                return -1;
            }
            *rows = nr;
        }
        if (row_parse(line, &(*rows)[*n]) == 0)
            (*n)++;
    }
    fclose(f);
    return 0;
}
