/* fanout.c: the `fanout` scenario.
 *
 * Many connections; a share of them stalled (they never read). A sender
 * BCASTs numbered, timestamped, padded messages at a steady rate; every
 * reading receiver (the sender too) must get each one, whole and in order,
 * and the delivery latency (BCAST sent -> MSG read) is measured. Stalled
 * receivers make the server buffer for them; they must cost memory only, not
 * the readers' latency, and the server must keep them (nothing dropped). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "session.h"

struct fanout;

struct rcv {
    struct sock s; /* first: the callback casts back */
    struct fanout *fo;
    int idx;
    bool stalled, done;
    uint64_t next_seq;
    struct linebuf lb;
};

struct fanout {
    struct session ss;
    struct rcv *r; /* n receivers, then the sender at r[n] */
    int n, readers, readers_done;
    uint64_t msgs, sent, verified, sender_blocked;
    uint64_t requested; /* MSG bytes the server owes all receivers */
    size_t pad;
    double rate;
    struct hist deliv;
};

static void rcv_fail(struct rcv *rc, const char *why)
{
    session_fail(&rc->fo->ss, "%s %d: %s (at message %" PRIu64 ")",
                 rc->idx == rc->fo->n ? "sender" : "receiver", rc->idx, why, rc->next_seq);
    sock_close(&rc->s, true);
}

/* "MSG <seq> <t_us> <pad>": seq must be the next one, the pad intact. */
static int rcv_line(struct rcv *rc, const char *line, size_t len)
{
    struct fanout *fo = rc->fo;
    char *end;
    if (strncmp(line, "MSG ", 4) != 0)
        return -1;
    uint64_t seq = strtoull(line + 4, &end, 10);
    if (*end != ' ')
        return -1;
    uint64_t t = strtoull(end + 1, &end, 10);
    if (*end != ' ')
        return -1;
    const char *pad = end + 1;
    if ((size_t)(line + len - pad) != fo->pad)
        return -1;
    for (size_t j = 0; j < fo->pad; j++)
        if (pad[j] != (char)('a' + (seq + j) % 26))
            return -1;
    if (seq != rc->next_seq) {
        char why[120];
        snprintf(why, sizeof why, "got MSG %" PRIu64 ", expected %" PRIu64 " (lost or reordered)",
                 seq, rc->next_seq);
        rcv_fail(rc, why);
        return 1;
    }
    hist_add(&fo->deliv, fo->ss.drv.now > t ? fo->ss.drv.now - t : 0);
    fo->verified += len + 1;
    if (++rc->next_seq == fo->msgs) {
        rc->done = true;
        fo->readers_done++;
    }
    return 0;
}

static void rcv_event(struct ep *e, uint32_t events)
{
    struct rcv *rc = (struct rcv *)e;
    if (sock_event(&rc->s, events) < 0) {
        rcv_fail(rc, strerror(rc->s.err));
        return;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || !rc->s.want_in)
        return;
    ssize_t r = sock_read(&rc->s, rc->lb.buf + rc->lb.len, LINE_CAP - rc->lb.len);
    if (r == 0 || (r < 0 && errno != EAGAIN)) {
        rcv_fail(rc, r == 0 ? "closed by the server" : strerror(errno));
        return;
    }
    if (r < 0)
        return;
    rc->lb.len += (size_t)r;
    size_t pos = 0, start = 0;
    char *line;
    while ((line = line_next(&rc->lb, &pos))) {
        int bad = rcv_line(rc, line, pos - start - 1);
        if (bad < 0) {
            char why[100];
            snprintf(why, sizeof why, "malformed line '%.50s'", line);
            rcv_fail(rc, why);
        }
        if (bad)
            return;
        start = pos;
    }
    line_compact(&rc->lb, pos);
    if (rc->lb.len == LINE_CAP)
        rcv_fail(rc, "line too long");
}

/* Sends every BCAST that is due; a full queue (the server stopped reading
 * the sender) skips to the next tick and is counted. */
static void sender_tick(struct fanout *fo, uint64_t t_start)
{
    struct rcv *snd = &fo->r[fo->n];
    uint64_t now = fo->ss.drv.now;
    uint64_t due = (uint64_t)((double)(now - t_start) * fo->rate / 1e6) + 1;
    if (due > fo->msgs)
        due = fo->msgs;
    char line[OUT_CAP];
    while (fo->sent < due && sock_open(&snd->s)) {
        int h = snprintf(line, sizeof line, "BCAST %" PRIu64 " %" PRIu64 " ", fo->sent, now_us());
        size_t len = (size_t)h;
        for (size_t j = 0; j < fo->pad; j++)
            line[len++] = (char)('a' + (fo->sent + j) % 26);
        line[len++] = '\n';
        if (sock_queue(&snd->s, line, len) < 0) {
            if (errno == ENOBUFS) {
                fo->sender_blocked++;
                return;
            }
            rcv_fail(snd, strerror(errno));
            return;
        }
        fo->sent++;
        /* "BCAST x\n" comes back to each of them as "MSG x\n" */
        fo->requested += (len - 2) * (uint64_t)(fo->n + 1);
    }
}

/* BCAST reaches only connections the server has accepted: wait for all. */
static int wait_all_accepted(struct fanout *fo)
{
    struct session *ss = &fo->ss;
    long long want = fo->n + 1 + 2; /* receivers, sender, probe, STATS */
    uint64_t until = now_us() + 10000000u;
    struct srvstats st;
    for (;;) {
        if (session_stats_now(ss, &st) < 0)
            return -1;
        if (st.conns >= want)
            return 0;
        if (now_us() > until) {
            session_fail(ss, "server has %lld connections, want %lld, after 10 s", st.conns, want);
            return -1;
        }
    }
}

int run_fanout(const struct opts *o, struct row *row)
{
    int n = o->conns >= 0 ? o->conns : 400;
    double seconds = o->seconds > 0 ? o->seconds : 15;
    double rate = o->rate > 0 ? o->rate : 200;
    struct fanout fo = {.n = n, .rate = rate, .pad = o->msg_bytes >= 0 ? (size_t)o->msg_bytes : 256};
    fo.msgs = (uint64_t)(rate * seconds);
    if (fo.msgs < 1)
        fo.msgs = 1;
    int stalled_pct = o->stalled_pct >= 0 ? o->stalled_pct : 25;
    struct session *ss = &fo.ss;
    fo.r = calloc((size_t)n + 1, sizeof *fo.r);
    if (!fo.r) {
        memset(row, 0, sizeof *row);
        snprintf(row->result, sizeof row->result, "FAIL: fanout: out of memory");
        return 1;
    }
    int stalled = 0;
    long long backlog = -1;
    for (int i = 0; i <= n; i++) {
        /* spread the stalled ones evenly: i is stalled when the running
         * share crosses an integer */
        fo.r[i].stalled = i < n && (i * stalled_pct) / 100 != ((i + 1) * stalled_pct) / 100;
        stalled += fo.r[i].stalled;
    }
    if (session_begin(ss, o, row, "fanout", seconds + 10) == 0) {
        for (int i = 0; i <= n && !ss->failed; i++) {
            struct rcv *rc = &fo.r[i];
            rc->fo = &fo;
            rc->idx = i;
            if (sock_connect(&rc->s, &ss->drv, &o->target, o->rcvbuf, i == n, rcv_event) < 0) {
                session_fail(ss, "conn %d: connect: %s", i, strerror(errno));
                break;
            }
            sock_want_read(&rc->s, !rc->stalled);
        }
        fo.readers = n + 1 - stalled;
        if (!ss->failed && wait_all_accepted(&fo) == 0) {
            uint64_t t_start = now_us();
            ss->deadline = t_start + (uint64_t)((seconds + o->timeout_s) * 1e6);
            while (session_poll(ss) == 0) {
                sender_tick(&fo, t_start);
                if (fo.sent == fo.msgs && fo.readers_done == fo.readers)
                    break;
            }
            /* the stalled receivers' backlog is still in the server: it must
             * hold it, not drop them */
            struct srvstats st;
            if (!ss->failed && session_stats_now(ss, &st) == 0) {
                backlog = st.wbuf_bytes;
                if (st.conns != n + 3)
                    session_fail(ss, "server has %lld connections after the BCASTs, want %d "
                                     "(stalled receivers dropped?)", st.conns, n + 3);
            }
            if (ss->failed && !strstr(row->result, "receiver") && !strstr(row->result, "sender"))
                snprintf(row->result + strlen(row->result), sizeof row->result - strlen(row->result),
                         " (%" PRIu64 " of %" PRIu64 " sent, %d of %d readers complete)", fo.sent,
                         fo.msgs, fo.readers_done, fo.readers);
        }
    }
    for (int i = 0; i <= n; i++)
        if (fo.r[i].s.drv)
            sock_close(&fo.r[i].s, true);
    uint64_t p50 = hist_pct(&fo.deliv, 50), p99 = hist_pct(&fo.deliv, 99);
    row->conns = n + 1;
    row->requested = fo.requested;
    row->verified = fo.verified;
    int rc = session_end(ss);
    if (rc == 0 && (double)p99 > o->max_p99_ms * 1000.0)
        session_fail(ss, "delivery p99 %.1f ms > --max-p99-ms %.1f", (double)p99 / 1000.0,
                     o->max_p99_ms);
    char bl[32];
    fmt_bytes(bl, sizeof bl, backlog > 0 ? (uint64_t)backlog : 0);
    snprintf(row->detail, sizeof row->detail,
             "%" PRIu64 " BCASTs of %zu B at %.0f/s to %d receivers + sender, %d stalled; "
             "delivery p50/p99/max %.2f/%.2f/%.2f ms over %" PRIu64
             " messages; stalled backlog held by the server %s; sender paused %" PRIu64 " times",
             fo.msgs, fo.pad, rate, n, stalled, (double)p50 / 1000.0, (double)p99 / 1000.0,
             (double)fo.deliv.max / 1000.0, fo.deliv.n, bl, fo.sender_blocked);
    free(fo.r);
    return ss->failed ? 1 : 0;
}
