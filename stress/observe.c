/* observe.c: STATS polling and /proc sampling of the server (see observe.h). */
#include "observe.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define POLL_US 100000u

/* The value after "key": in a flat JSON object; -1 if absent. Keys are
 * matched with their quotes, so "conns" does not match "max_conns". */
static long long json_int(const char *line, const char *key)
{
    char pat[48];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(line, pat);
    if (!p)
        return -1;
    p += strlen(pat);
    while (*p == ' ' || *p == ':')
        p++;
    char *end;
    long long v = strtoll(p, &end, 10);
    return end == p ? -1 : v;
}

int srvstats_parse(const char *line, struct srvstats *st)
{
    st->conns = json_int(line, "conns");
    st->accepted = json_int(line, "accepted");
    st->closed = json_int(line, "closed");
    st->wbuf_bytes = json_int(line, "wbuf_bytes");
    st->wbuf_peak = json_int(line, "wbuf_peak");
    st->rss_kb = json_int(line, "rss_kb");
    st->overflow_closed = json_int(line, "overflow_closed");
    return st->conns >= 0 ? 0 : -1;
}

static void stats_fail(struct statsconn *sc, const char *why)
{
    snprintf(sc->err, sizeof sc->err, "stats connection: %s", why);
    sock_close(&sc->s, false);
}

static void stats_event(struct ep *e, uint32_t events)
{
    struct statsconn *sc = (struct statsconn *)e;
    if (sock_event(&sc->s, events) < 0) {
        stats_fail(sc, strerror(sc->s.err));
        return;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    ssize_t r = sock_read(&sc->s, sc->lb.buf + sc->lb.len, LINE_CAP - sc->lb.len);
    if (r == 0 || (r < 0 && errno != EAGAIN)) {
        stats_fail(sc, r == 0 ? "closed by the server" : strerror(errno));
        return;
    }
    if (r < 0)
        return;
    sc->lb.len += (size_t)r;
    size_t pos = 0;
    char *line;
    while ((line = line_next(&sc->lb, &pos))) {
        if (!strncmp(line, "MSG ", 4))
            continue;
        struct srvstats st;
        if (!sc->waiting || srvstats_parse(line, &st) < 0) {
            char why[100];
            snprintf(why, sizeof why, "unexpected reply '%.60s'", line);
            stats_fail(sc, why);
            return;
        }
        sc->waiting = false;
        sc->replies++;
        sc->last = st;
        if (st.wbuf_bytes > sc->peak_wbuf_bytes)
            sc->peak_wbuf_bytes = st.wbuf_bytes;
        if (st.rss_kb > sc->peak_rss_kb)
            sc->peak_rss_kb = st.rss_kb;
    }
    line_compact(&sc->lb, pos);
    if (sc->lb.len == LINE_CAP)
        stats_fail(sc, "STATS line too long");
}

int statsconn_open(struct statsconn *sc, struct driver *d, const struct target *t)
{
    memset(sc, 0, sizeof *sc);
    if (sock_connect(&sc->s, d, t, 0, true, stats_event) < 0)
        return -1;
    sock_want_read(&sc->s, true);
    return 0;
}

void statsconn_tick(struct statsconn *sc, uint64_t now)
{
    if (!sock_open(&sc->s) || sc->s.connecting || sc->waiting || (now < sc->next && !sc->force))
        return;
    sc->waiting = true;
    sc->force = false;
    sc->next = now + POLL_US;
    if (sock_queue(&sc->s, "STATS\n", 6) < 0)
        stats_fail(sc, strerror(errno));
}

/* utime + stime of /proc/PID/stat in seconds; -1 if the process is gone or
 * a zombie (it has exited; only its parent's wait is missing). */
static double proc_cpu(int pid, char *state)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* the command name may hold spaces and ')': fields start after the last ')' */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    char st;
    unsigned long long ut, stt;
    if (sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &st, &ut, &stt) !=
        3)
        return -1;
    *state = st;
    if (st == 'Z' || st == 'X')
        return -1;
    return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

static long long proc_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

void procmon_start(struct procmon *m, int pid)
{
    memset(m, 0, sizeof *m);
    m->pid = pid;
    if (pid <= 0)
        return;
    char st;
    m->cpu0 = m->cpu = proc_cpu(pid, &st);
    m->gone = m->cpu0 < 0;
    procmon_tick(m, 0);
}

void procmon_tick(struct procmon *m, uint64_t now)
{
    if (m->pid <= 0 || m->gone || now < m->next)
        return;
    m->next = now + POLL_US;
    char st;
    double cpu = proc_cpu(m->pid, &st);
    long long rss = proc_rss_kb(m->pid);
    if (cpu < 0) {
        m->gone = true;
        return;
    }
    m->cpu = cpu;
    m->rss_kb = rss;
    if (rss > m->rss_peak_kb)
        m->rss_peak_kb = rss;
}

#define KERN_POLL_US 250000u

int target_port(const struct target *t)
{
    if (t->addr.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&t->addr)->sin_port);
    if (t->addr.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&t->addr)->sin6_port);
    return 0;
}

/* Adds the server's sockets of one /proc/net/tcp{,6} table: a line is
 * "sl local:PORT remote:PORT st tx_queue:rx_queue ...", hex. The listener
 * (st 0A) and TIME_WAIT (06, no memory but the bucket) are not connections. */
static void tcp_table(const char *path, int port, long long *sndq, long long *socks)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[512];
    if (!fgets(line, sizeof line, f)) { /* the header */
        fclose(f);
        return;
    }
    while (fgets(line, sizeof line, f)) {
        char local[64];
        unsigned st;
        unsigned long tx;
        if (sscanf(line, " %*u: %63s %*s %x %lx:%*x", local, &st, &tx) != 3)
            continue;
        const char *colon = strrchr(local, ':');
        if (!colon || strtol(colon + 1, NULL, 16) != port || st == 0x0A || st == 0x06)
            continue;
        *sndq += (long long)tx;
        (*socks)++;
    }
    fclose(f);
}

static long long sockstat_tcp_pages(void)
{
    FILE *f = fopen("/proc/net/sockstat", "r");
    if (!f)
        return -1;
    char line[256];
    long long pages = -1;
    while (fgets(line, sizeof line, f)) {
        const char *m = strncmp(line, "TCP:", 4) ? NULL : strstr(line, " mem ");
        if (m && sscanf(m, " mem %lld", &pages) == 1)
            break;
    }
    fclose(f);
    return pages;
}

uint64_t pages_kb(long long pages)
{
    return pages > 0 ? (uint64_t)pages * (uint64_t)(sysconf(_SC_PAGESIZE) / 1024) : 0;
}

void tcp_mem_limits(long long lim[3])
{
    lim[0] = lim[1] = lim[2] = 0;
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_mem", "r");
    if (!f)
        return;
    if (fscanf(f, "%lld %lld %lld", &lim[0], &lim[1], &lim[2]) != 3)
        lim[0] = lim[1] = lim[2] = 0;
    fclose(f);
}

void kernmon_start(struct kernmon *k, int port)
{
    memset(k, 0, sizeof *k);
    k->port = port;
    kernmon_tick(k, 0);
    k->sndq_peak = k->sndq;
    k->socks_peak = k->socks;
    k->tcp_pages_peak = k->tcp_pages;
}

void kernmon_tick(struct kernmon *k, uint64_t now)
{
    if (k->port <= 0 || now < k->next)
        return;
    k->next = now + KERN_POLL_US;
    k->sndq = k->socks = 0;
    tcp_table("/proc/net/tcp", k->port, &k->sndq, &k->socks);
    tcp_table("/proc/net/tcp6", k->port, &k->sndq, &k->socks);
    k->tcp_pages = sockstat_tcp_pages();
    if (k->sndq > k->sndq_peak)
        k->sndq_peak = k->sndq;
    if (k->socks > k->socks_peak)
        k->socks_peak = k->socks;
    if (k->tcp_pages > k->tcp_pages_peak)
        k->tcp_pages_peak = k->tcp_pages;
}
