/* churn.c: the `churn` scenario.
 *
 * At a steady rate: connect, ask for a BLAST, and reset (SO_LINGER 0) while
 * it is in flight, in three ways taken in turn: at once after the request;
 * after reading and verifying part of the reply; after holding a while
 * without reading (the server has bytes pending for a peer that vanishes).
 * The probe runs meanwhile. At the end the server must be back to one
 * connection (the STATS one) and no buffered bytes: every reset connection
 * was noticed and freed. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "pattern.h"
#include "session.h"

enum kind { AT_ONCE, MID_READ, HOLD, NKIND };

struct churn;

struct cconn {
    struct sock s; /* first: the callback casts back */
    struct churn *ch;
    int slot;
    enum kind kind;
    bool busy;
    uint64_t nth; /* which connection of the run, from 0 */
    uint32_t seed;
    uint64_t got, want, hold_until;
};

struct churn {
    struct session ss;
    struct cconn *c;
    int *free_slots, nfree, cap;
    uint64_t total, started, finished, verified, saturated;
    uint64_t bytes, hold_us;
    uint64_t resets[NKIND];
};

static uint8_t scratch[1 << 16];

static void cc_finish(struct cconn *cc)
{
    struct churn *ch = cc->ch;
    sock_close(&cc->s, true);
    cc->busy = false;
    ch->free_slots[ch->nfree++] = cc->slot;
    ch->finished++;
    ch->resets[cc->kind]++;
}

static void cc_fail(struct cconn *cc, const char *why)
{
    static const char *const kind_name[] = {"reset at once", "reset mid-read", "reset after a hold"};
    session_fail(&cc->ch->ss, "connection %" PRIu64 " (%s, seed %" PRIu32 "): %s", cc->nth,
                 kind_name[cc->kind], cc->seed, why);
    cc_finish(cc);
}

static void cc_event(struct ep *e, uint32_t events)
{
    struct cconn *cc = (struct cconn *)e;
    if (sock_event(&cc->s, events) < 0) {
        cc_fail(cc, strerror(cc->s.err));
        return;
    }
    if (cc->kind == AT_ONCE) {
        if (!cc->s.connecting && sock_pending(&cc->s) == 0)
            cc_finish(cc);
        return;
    }
    if (cc->kind != MID_READ || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    size_t cap = sizeof scratch;
    if (cc->want - cc->got < cap)
        cap = (size_t)(cc->want - cc->got);
    ssize_t n = sock_read(&cc->s, scratch, cap);
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
        cc_fail(cc, n == 0 ? "closed by the server mid-BLAST" : strerror(errno));
        return;
    }
    if (n < 0)
        return;
    size_t bad = pattern_check(cc->seed, cc->got, scratch, (size_t)n);
    if (bad < (size_t)n) {
        char why[100];
        snprintf(why, sizeof why, "byte %" PRIu64 " is 0x%02x, pattern says 0x%02x", cc->got + bad,
                 scratch[bad], pattern_byte(cc->seed, cc->got + bad));
        cc_fail(cc, why);
        return;
    }
    cc->got += (uint64_t)n;
    cc->ch->verified += (uint64_t)n;
    if (cc->got >= cc->want)
        cc_finish(cc);
}

static void cc_start(struct churn *ch, const struct opts *o)
{
    struct cconn *cc = &ch->c[ch->free_slots[--ch->nfree]];
    uint64_t k = ch->started++;
    cc->ch = ch;
    cc->busy = true;
    cc->nth = k;
    cc->kind = (enum kind)(k % NKIND);
    cc->seed = o->seed + (uint32_t)k * 2654435761u;
    cc->got = 0;
    /* how far into the reply the reset comes: spread over the first 512 KiB */
    uint64_t span = ch->bytes < (512u << 10) ? ch->bytes : (512u << 10);
    cc->want = 1 + (k * 7919u) % span;
    cc->hold_until = ch->ss.drv.now + ch->hold_us;
    char req[64];
    int len = snprintf(req, sizeof req, "BLAST %" PRIu64 " %" PRIu32 "\n", ch->bytes, cc->seed);
    if (sock_connect(&cc->s, &ch->ss.drv, &o->target, o->rcvbuf, false, cc_event) < 0 ||
        sock_queue(&cc->s, req, (size_t)len) < 0) {
        cc_fail(cc, strerror(errno));
        return;
    }
    sock_want_read(&cc->s, cc->kind == MID_READ);
}

static void churn_tick(struct churn *ch, const struct opts *o, double rate)
{
    uint64_t now = ch->ss.drv.now;
    uint64_t due = (uint64_t)((double)(now - ch->ss.t0) * rate / 1e6) + 1;
    if (due > ch->total)
        due = ch->total;
    while (ch->started < due && !ch->ss.failed) {
        if (ch->nfree == 0) {
            ch->saturated++; /* all slots busy: the server is slow to answer */
            break;
        }
        cc_start(ch, o);
    }
    for (int i = 0; i < ch->cap; i++) {
        struct cconn *cc = &ch->c[i];
        if (cc->busy && cc->kind == HOLD && !cc->s.connecting && now >= cc->hold_until)
            cc_finish(cc);
    }
}

int run_churn(const struct opts *o, struct row *row)
{
    double seconds = o->seconds > 0 ? o->seconds : 15;
    double rate = o->rate > 0 ? o->rate : 400;
    struct churn ch = {.cap = o->conns > 0 ? o->conns : 64,
                       .bytes = o->bytes > 0 ? (uint64_t)o->bytes : 8u << 20,
                       .hold_us = (uint64_t)(o->hold_ms >= 0 ? o->hold_ms : 50) * 1000u};
    ch.total = (uint64_t)(rate * seconds);
    struct session *ss = &ch.ss;
    ch.c = calloc((size_t)ch.cap, sizeof *ch.c);
    ch.free_slots = calloc((size_t)ch.cap, sizeof *ch.free_slots);
    if (!ch.c || !ch.free_slots) {
        memset(row, 0, sizeof *row);
        snprintf(row->result, sizeof row->result, "FAIL: churn: out of memory");
        free(ch.c);
        free(ch.free_slots);
        return 1;
    }
    for (int i = 0; i < ch.cap; i++) {
        ch.c[i].slot = i;
        ch.free_slots[ch.nfree++] = ch.cap - 1 - i;
    }
    long long accepted = -1;
    if (session_begin(ss, o, row, "churn", seconds) == 0) {
        while (ch.finished < ch.total && session_poll(ss) == 0)
            churn_tick(&ch, o, rate);
        struct srvstats st;
        if (!ss->failed && session_stats_now(ss, &st) == 0 && st.accepted >= 0)
            accepted = st.accepted - ss->first.accepted;
        if (ss->failed && !strstr(row->result, "connection "))
            snprintf(row->result + strlen(row->result), sizeof row->result - strlen(row->result),
                     " (%" PRIu64 " of %" PRIu64 " connections done)", ch.finished, ch.total);
    }
    for (int i = 0; i < ch.cap; i++)
        if (ch.c[i].busy)
            sock_close(&ch.c[i].s, true);
    row->conns = (int)ch.total;
    row->requested = ch.total * ch.bytes;
    row->verified = ch.verified;
    session_end(ss);
    char acc[24] = "?";
    if (accepted >= 0)
        snprintf(acc, sizeof acc, "%lld", accepted);
    snprintf(row->detail, sizeof row->detail,
             "%" PRIu64 " connections at %.0f/s (at most %d open), each BLAST %" PRIu64
             " B then RST: %" PRIu64 " at once, %" PRIu64 " mid-read, %" PRIu64
             " after %" PRIu64 " ms unread; server accepted %s; slots full %" PRIu64 " times",
             ch.total, rate, ch.cap, ch.bytes, ch.resets[AT_ONCE], ch.resets[MID_READ],
             ch.resets[HOLD], ch.hold_us / 1000u, acc, ch.saturated);
    free(ch.c);
    free(ch.free_slots);
    return ss->failed ? 1 : 0;
}
