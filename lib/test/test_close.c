/*
 * Closing: on_close exactly once whatever the cause, closes from inside
 * callbacks, graceful evl_close and its timeout, evl_free, and the stale
 * event of a closed connection whose fd number is reused within the same
 * batch (seed fault 9).
 */
#include "testutil.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void write_pattern(evl_conn *c, size_t n, uint32_t seed)
{
    char *p = malloc(n);
    assert_non_null(p);
    tu_pattern(p, n, 0, seed);
    assert_int_equal(evl_write(c, p, n), 0);
    free(p);
}

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

/* ---- on_close exactly once, every cause ------------------------------------ */

enum cause {
    C_PEER_EOF, C_PEER_RESET, C_WRITE_ERROR, C_IDLE, C_RBUF_MAX, C_WBUF_MAX,
    C_EVL_CLOSE, C_EVL_ABORT, C_ABORT_IN_READ, C_CLOSE_TIMEOUT, C_EVL_FREE, C_NCAUSES
};
static const char *const cause_name[C_NCAUSES] = {
    "peer EOF", "peer reset", "write error", "idle timeout", "rbuf_max", "wbuf_max",
    "evl_close", "evl_abort", "evl_abort in on_read", "close timeout", "evl_free",
};

static void abort_self(tu_state *s, tu_rec *r)
{
    (void)s;
    evl_abort(r->c);
    evl_abort(r->c); /* twice: still one on_close */
}

static void test_on_close_once_for_every_cause(void **state)
{
    (void)state;
    for (int cause = 0; cause < C_NCAUSES; cause++) {
        evl_options o = tu_opts();
        o.idle_timeout_ms = cause == C_IDLE ? 100 : 0;
        o.rbuf_max = 4096;
        o.wbuf_low = 1024;
        o.wbuf_high = 4096;
        o.wbuf_max = 8192;
        o.close_timeout_ms = 200;
        tu_state *s = tu_new(&o, cause == C_RBUF_MAX ? TU_HOLD : TU_SINK);
        s->write_in_close = true;
        tu_rec *r = cause == C_PEER_RESET ? tu_tcp(s) : tu_pair(s);
        if (cause == C_CLOSE_TIMEOUT)
            tu_set_sndbuf(r->fd, 4096);
        tu_step(s, 0);
        char chunk[1024] = {0};
        switch (cause) {
        case C_PEER_EOF:
            tu_close_fd(r->peer);
            break;
        case C_PEER_RESET:
            tu_set_linger0(r->peer);
            tu_close_fd(r->peer);
            break;
        case C_WRITE_ERROR:
            tu_close_fd(r->peer);
            assert_int_equal(evl_write(r->c, "x", 1), -1);
            break;
        case C_IDLE:
            break;
        case C_RBUF_MAX:
            tu_peer_fill(r->peer, 0);
            break;
        case C_WBUF_MAX: {
            int i = 0;
            while (evl_write(r->c, chunk, sizeof chunk) == 0 && i++ < 100000)
                ;
            assert_int_equal(errno, EVL_EOVERFLOW);
            break;
        }
        case C_EVL_CLOSE:
            evl_close(r->c);
            evl_close(r->c); /* idempotent */
            tu_close_fd(r->peer);
            break;
        case C_EVL_ABORT:
            evl_abort(r->c);
            assert_int_equal(r->closes, 0); /* not from inside evl_abort */
            break;
        case C_ABORT_IN_READ:
            s->read_hook = abort_self;
            tu_peer_sends(r->peer, "x");
            break;
        case C_CLOSE_TIMEOUT:
            /* pending output the peer never reads */
            while (evl_pending(r->c) < 4096)
                assert_int_equal(evl_write(r->c, chunk, sizeof chunk), 0);
            evl_close(r->c);
            break;
        case C_EVL_FREE:
            break;
        }
        if (cause == C_EVL_FREE) {
            evl_free(s->l);
            s->l = NULL;
        } else {
            uint64_t end = tu_now_ms() + 3000;
            while (r->closes == 0) {
                if (tu_now_ms() > end)
                    TU_FAIL("cause \"%s\": no on_close in 3 s", cause_name[cause]);
                tu_step(s, 10);
            }
            tu_run_for(s, 50); /* and no second one */
        }
        if (r->closes != 1)
            TU_FAIL("cause \"%s\": on_close called %d times", cause_name[cause], r->closes);
        /* inside on_close, c was valid and writes failed with EPIPE */
        if (r->close_write_ret != -1 || r->close_write_errno != EPIPE)
            TU_FAIL("cause \"%s\": evl_write in on_close returned %d (%s), not -1/EPIPE",
                    cause_name[cause], r->close_write_ret, strerror(r->close_write_errno));
        tu_finish(s);
    }
}

/* ---- closing from inside on_read --------------------------------------------- */

static tu_rec *killer, *victim;
static int victim_reads_after_abort;

static void kill_other_and_self(tu_state *s, tu_rec *r)
{
    if (r == victim) {
        if (victim->user)
            victim_reads_after_abort++;
        tu_default_read(s, r);
        return;
    }
    if (r != killer) {
        tu_default_read(s, r);
        return;
    }
    evl_consume(r->c, SIZE_MAX);
    evl_abort(victim->c);
    victim->user = 1;
    errno = 0;
    TU_CB_CHECK(s, evl_write(victim->c, "x", 1) == -1 && errno == EPIPE);
    evl_close(r->c);
    errno = 0;
    TU_CB_CHECK(s, evl_write(r->c, "y", 1) == -1 && errno == EPIPE);
    evl_abort(r->c);
    errno = 0;
    TU_CB_CHECK(s, evl_write(r->c, "z", 1) == -1 && errno == EPIPE);
    /* never re-entrant: neither on_close has run yet */
    TU_CB_CHECK(s, victim->closes == 0 && r->closes == 0);
    /* both still valid until their on_close */
    TU_CB_CHECK(s, evl_fd(victim->c) == victim->fd && evl_fd(r->c) == r->fd);
}

static void test_abort_other_and_self_in_on_read_then_write_fails(void **state)
{
    (void)state;
    victim_reads_after_abort = 0;
    tu_state *s = tu_new(NULL, TU_LINE_ECHO);
    s->read_hook = kill_other_and_self;
    killer = tu_pair(s);
    victim = tu_pair(s);
    tu_rec *bystander = tu_pair(s);
    /* victim and killer are readable in the same batch */
    tu_peer_sends(victim->peer, "v1\nv2\nv3\n");
    tu_peer_sends(killer->peer, "kill\n");
    TU_RUN_UNTIL(s, killer->closes == 1 && victim->closes == 1, 2000);
    assert_int_equal(victim_reads_after_abort, 0);
    tu_run_for(s, 50);
    /* the rest of the loop is unharmed */
    tu_peer_sends(bystander->peer, "still here\n");
    tu_peer_expect(s, bystander->peer, "still here\n", 2000);
    tu_peer_expect_closed(s, killer->peer, 2000);
    tu_peer_expect_closed(s, victim->peer, 2000);
    tu_finish(s);
}

static void test_abort_from_outside_runs_on_close_next_iteration(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = tu_pair(s);
    tu_set_sndbuf(r->fd, 8192);
    write_pattern(r->c, 256 << 10, 1);
    assert_true(evl_pending(r->c) > 0);
    evl_abort(r->c);
    assert_int_equal(r->closes, 0); /* not synchronous */
    errno = 0;
    assert_int_equal(evl_write(r->c, "x", 1), -1);
    assert_int_equal(errno, EPIPE);
    tu_step(s, 0);
    assert_int_equal(r->closes, 1);
    /* the pending output was dropped: the peer gets less than was written */
    tu_dbuf got = {0};
    uint64_t end = tu_now_ms() + 2000;
    while (!tu_peer_drain(r->peer, &got)) {
        if (tu_now_ms() > end)
            TU_FAIL("peer not closed 2 s after evl_abort");
        tu_step(s, 5);
    }
    assert_true(got.len < 256 << 10);
    tu_dbuf_free(&got);
    tu_finish(s);
}

static tu_rec *cascade_next;

static void abort_next_in_on_close(tu_state *s, tu_rec *r)
{
    (void)s;
    (void)r;
    if (cascade_next && cascade_next->c) {
        evl_conn *c = cascade_next->c;
        cascade_next = NULL;
        evl_abort(c);
    }
}

static void test_abort_from_inside_on_close(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_SINK);
    s->close_hook = abort_next_in_on_close;
    tu_rec *a = tu_pair(s);
    tu_rec *b = tu_pair(s);
    cascade_next = b;
    tu_close_fd(a->peer); /* a closes at EOF; its on_close aborts b */
    TU_RUN_UNTIL(s, a->closes == 1 && b->closes == 1, 2000);
    tu_run_for(s, 50);
    tu_finish(s);
}

/* ---- graceful close ------------------------------------------------------------- */

static void quit_handler(tu_state *s, tu_rec *r)
{
    size_t len;
    const char *p = evl_data(r->c, &len);
    const char *nl = memchr(p, '\n', len);
    if (!nl)
        return;
    if (memcmp(p, "QUIT\n", 5) == 0) {
        size_t n = s->size;
        char *big = malloc(n);
        TU_CB_CHECK(s, big != NULL);
        if (!big)
            return;
        tu_pattern(big, n, 0, 17);
        TU_CB_CHECK(s, evl_write(r->c, big, n) == 0);
        free(big);
        TU_CB_CHECK(s, evl_write(r->c, "BYE\n", 4) == 0);
        evl_close(r->c);
        errno = 0;
        TU_CB_CHECK(s, evl_write(r->c, "late\n", 5) == -1 && errno == EPIPE);
        return;
    }
    TU_CB_CHECK(s, evl_write(r->c, "PONG\n", 5) == 0);
    evl_consume(r->c, (size_t)(nl - p) + 1);
}

static void test_graceful_close_flushes_then_closes(void **state)
{
    (void)state;
    enum { BIG = 1 << 20 };
    tu_state *s = tu_new(NULL, TU_LINE);
    s->read_hook = quit_handler;
    s->size = BIG;
    tu_rec *r = tu_pair(s);
    /* PING after QUIT is discarded: evl_close stops reading */
    tu_peer_sends(r->peer, "PING\nQUIT\nPING\n");
    tu_dbuf got = {0};
    int err = 0;
    tu_peer_collect(s, r->peer, &got, 5 + BIG + 4, 10000, &err);
    if (got.len != 5 + BIG + 4)
        TU_FAIL("peer got %zu of %d bytes, then %s (close_timeouts %llu): pending output lost",
                got.len, 5 + BIG + 4, err ? strerror(err) : "EOF",
                (unsigned long long)tu_stats(s).close_timeouts);
    assert_memory_equal(got.p, "PONG\n", 5);
    assert_int_equal(tu_pattern_mismatch(got.p + 5, BIG, 0, 17), -1);
    assert_memory_equal(got.p + 5 + BIG, "BYE\n", 4);
    tu_dbuf_free(&got);
    /* then the write side is shut: a clean EOF, nothing more */
    tu_peer_expect_eof(s, r->peer, 2000);
    assert_int_equal(r->reads, 2);
    /* it waits for the peer's close (close_timeout_ms is 5 s: far away) */
    tu_run_for(s, 100);
    assert_int_equal(r->closes, 0);
    tu_close_fd(r->peer);
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    assert_int_equal(tu_stats(s).close_timeouts, 0);
    tu_finish(s);
}

static void test_close_timeout_aborts_when_peer_does_not_read(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.close_timeout_ms = 200;
    tu_state *s = tu_new(&o, TU_HOLD);
    tu_rec *r = tu_pair(s);
    tu_set_sndbuf(r->fd, 8192);
    write_pattern(r->c, 512 << 10, 3);
    assert_true(evl_pending(r->c) > 0);
    uint64_t t0 = tu_now_ms();
    evl_close(r->c);
    /* bounds: not before the timeout (the flush still had a chance), and
     * well within twice it plus a slow machine's slack */
    TU_RUN_UNTIL(s, r->closes == 1, 3000);
    uint64_t took = tu_now_ms() - t0;
    assert_true(took >= 150);
    assert_int_equal(tu_stats(s).close_timeouts, 1);
    assert_int_equal(tu_stats(s).wbuf_bytes, 0);
    tu_peer_expect_closed(s, r->peer, 2000);
    tu_finish(s);
}

static void test_close_timeout_when_peer_never_closes(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.close_timeout_ms = 300;
    tu_state *s = tu_new(&o, TU_HOLD);
    tu_rec *r = tu_pair(s);
    assert_int_equal(evl_write(r->c, "bye\n", 4), 0);
    evl_close(r->c);
    tu_peer_expect(s, r->peer, "bye\n", 2000);
    tu_peer_expect_eof(s, r->peer, 2000);
    /* flushed and shut down; the peer keeps its end open: lingering ends at
     * the timeout, and no bytes were pending, so it is not a close_timeout */
    TU_RUN_UNTIL(s, r->closes == 1, 3000);
    assert_int_equal(tu_stats(s).close_timeouts, 0);
    tu_finish(s);
}

static void test_evl_free_closes_all(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    tu_state *s = tu_new(&o, TU_HOLD);
    tu_rec *r[5];
    for (int i = 0; i < 5; i++)
        r[i] = tu_pair(s);
    write_pattern(r[1]->c, 1 << 20, 0);  /* pending output */
    tu_peer_sends(r[2]->peer, "unread"); /* pending input */
    evl_close(r[3]->c);                  /* closing */
    evl_abort(r[4]->c);                  /* aborted, on_close not yet run */
    tu_step(s, 0);
    int peers[5];
    for (int i = 0; i < 5; i++)
        peers[i] = r[i]->peer;
    evl_free(s->l);
    s->l = NULL;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(r[i]->closes, 1);
        /* the loop closed its fds: each peer sees the end */
        assert_true(tu_wait_readable(peers[i], 2000));
        tu_dbuf junk = {0};
        assert_true(tu_peer_drain(peers[i], &junk));
        tu_dbuf_free(&junk);
    }
    assert_int_equal(s->closes, 5);
    tu_finish(s);
}

/* ---- fault 9: a stale event for a reused fd ------------------------------------- */

static struct {
    tu_rec *conns[3];
    tu_rec *first;        /* the connection whose on_read aborted the others */
    tu_rec *fresh;        /* the new connection on a victim's old fd number */
    int fresh_peer;
    uint64_t fresh_step;  /* the iteration it was created in */
    int reused_fd;
} st9;

static bool is_victim(const tu_rec *r)
{
    return st9.first && r != st9.first && (r == st9.conns[0] || r == st9.conns[1] || r == st9.conns[2]);
}

static void abort_the_others(tu_state *s, tu_rec *r)
{
    if (r == st9.fresh) { /* echo a line: the new connection works */
        size_t before = r->in.len;
        tu_default_read(s, r);
        TU_CB_CHECK(s, evl_write(r->c, r->in.p + before, r->in.len - before) == 0);
        return;
    }
    if (!st9.first) {
        st9.first = r;
        for (int i = 0; i < 3; i++)
            if (st9.conns[i] != r)
                evl_abort(st9.conns[i]->c);
    }
    tu_default_read(s, r); /* its peer is gone: no reply */
}

/* In a victim's on_close: if the other victim's fd is already closed, open
 * sockets until one gets that number, and make it a new connection, while
 * the victim's event may still wait later in the same batch. */
static void reuse_a_victim_fd(tu_state *s, tu_rec *r)
{
    if (!is_victim(r) || st9.fresh)
        return;
    int target = -1;
    for (int i = 0; i < 3; i++) {
        tu_rec *v = st9.conns[i];
        if (is_victim(v) && v != r && !fd_is_open(v->fd))
            target = v->fd;
    }
    if (target < 0)
        return; /* this library defers close(): no reuse within a batch */
    for (int tries = 0; tries < 16; tries++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
            break;
        int mine = sv[0] == target ? 0 : sv[1] == target ? 1 : -1;
        if (mine < 0) {
            tu_track_fd(sv[0]); /* filling lower holes: closed at the end */
            tu_track_fd(sv[1]);
            continue;
        }
        int peer = sv[1 - mine];
        tu_track_fd(peer);
        evl_conn *c = evl_adopt(s->l, target);
        TU_CB_CHECK(s, c != NULL);
        if (!c)
            return;
        st9.fresh = tu_rec_new(s, c, peer);
        TU_CB_CHECK(s, st9.fresh != NULL);
        st9.fresh_peer = peer;
        st9.fresh_step = s->steps;
        st9.reused_fd = target;
        /* data waiting on the new connection: a stale EPOLLIN applied to it
         * would deliver this in the same batch */
        TU_CB_CHECK(s, send(peer, "boom\n", 5, MSG_NOSIGNAL) == 5);
        return;
    }
}

static void test_fault9_stale_event_after_fd_reuse(void **state)
{
    (void)state;
    memset(&st9, 0, sizeof st9);
    tu_state *s = tu_new(NULL, TU_LINE);
    s->read_hook = abort_the_others;
    s->close_hook = reuse_a_victim_fd;
    for (int i = 0; i < 3; i++)
        st9.conns[i] = tu_pair(s);
    tu_step(s, 0);
    /* all three readable and hung up before one batch fetches them: data
     * then close, so a stale event is EPOLLIN|EPOLLHUP, which applied to the
     * new connection would close it or read its data */
    for (int i = 0; i < 3; i++) {
        tu_peer_sends(st9.conns[i]->peer, "go\n");
        tu_close_fd(st9.conns[i]->peer);
    }
    tu_step(s, 1000);
    assert_non_null(st9.first);
    for (int i = 0; i < 3; i++)
        if (st9.conns[i] != st9.first)
            assert_int_equal(st9.conns[i]->closes, 1);
    /* The scenario must have happened: this library closes a connection's
     * fd right after its on_close (between two events of a batch), so the
     * number is free for reuse inside the batch. Without a reuse the test
     * would prove nothing about stale events; a library that defers close()
     * to the end of the batch makes this fail, and the test must change. */
    if (!st9.fresh)
        TU_FAIL("no fd number was reused within the batch: the stale-event scenario did not happen");
    /* the batch that created it must not have touched it */
    assert_int_equal(st9.fresh->fd, st9.reused_fd);
    if (st9.fresh->reads != 0 || st9.fresh->closes != 0)
        TU_FAIL("a stale event of the closed connection reached the new one on fd %d "
                "(on_read %d, on_close %d in the batch that created it)",
                st9.reused_fd, st9.fresh->reads, st9.fresh->closes);
    assert_true(evl_conn_of(s->l, st9.reused_fd) == st9.fresh->c);
    /* and it works normally afterwards */
    tu_peer_expect(s, st9.fresh_peer, "boom\n", 2000);
    assert_int_equal(st9.fresh->reads, 1);
    assert_true(st9.fresh->read_step > st9.fresh_step);
    TU_RUN_UNTIL(s, st9.first->closes == 1, 2000);
    tu_finish(s);
}

/* The same for extra fds: on_fd of one pipe removes and closes the other,
 * whose event is in the same batch, and registers a new pipe on its number. */
static struct {
    int rd[2], wr[2];
    int first;      /* index of the pipe whose on_fd ran first, or -1 */
    int removed;    /* the read fd it removed and closed */
    int fresh_rd, fresh_wr;
    int fresh_events;
    int other_events_after_removal;
} st9p;

static void swap_pipe_in_on_fd(tu_state *s, int fd)
{
    if (fd == st9p.fresh_rd) {
        st9p.fresh_events++;
        return;
    }
    if (st9p.first >= 0 && fd == st9p.removed) {
        st9p.other_events_after_removal++;
        return;
    }
    int me = fd == st9p.rd[0] ? 0 : fd == st9p.rd[1] ? 1 : -1;
    TU_CB_CHECK(s, me >= 0);
    if (me < 0)
        return;
    if (st9p.first >= 0 && me != st9p.first) {
        st9p.other_events_after_removal++;
        return;
    }
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    if (st9p.first >= 0)
        return;
    st9p.first = me;
    int other = 1 - me;
    int target = st9p.rd[other];
    st9p.removed = target;
    TU_CB_CHECK(s, evl_remove_fd(s->l, target) == 0);
    close(target);
    st9p.rd[other] = -1;
    int p[2];
    TU_CB_CHECK(s, pipe2(p, O_CLOEXEC) == 0);
    st9p.fresh_rd = p[0];
    st9p.fresh_wr = p[1];
    TU_CB_CHECK(s, evl_add_fd(s->l, p[0]) == 0);
    /* the new pipe has data too: a stale event passed to it would be seen */
    TU_CB_CHECK(s, write(p[1], "n", 1) == 1);
}

static void test_fault9_stale_extra_fd_event_dropped(void **state)
{
    (void)state;
    memset(&st9p, 0, sizeof st9p);
    st9p.first = -1;
    st9p.fresh_rd = st9p.fresh_wr = -1;
    tu_state *s = tu_new(NULL, TU_HOLD);
    s->fd_hook = swap_pipe_in_on_fd;
    for (int i = 0; i < 2; i++) {
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        st9p.rd[i] = p[0];
        st9p.wr[i] = p[1];
        tu_track_fd(p[1]);
        assert_int_equal(evl_add_fd(s->l, p[0]), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(write(st9p.wr[i], "x", 1), 1);
    tu_step(s, 1000);
    assert_true(st9p.first >= 0);
    /* the scenario happened: the new pipe took the removed number */
    if (st9p.fresh_rd != st9p.removed)
        TU_FAIL("the new pipe got fd %d, not the removed %d: no reuse was tested",
                st9p.fresh_rd, st9p.removed);
    /* the removed pipe's event, fetched in the same batch, was dropped: not
     * delivered under its old number, nor to the pipe that took the number */
    if (st9p.other_events_after_removal != 0 || st9p.fresh_events != 0)
        TU_FAIL("a stale event of the removed fd %d was delivered (%d times under its "
                "number, %d to the pipe that took it over)", st9p.removed,
                st9p.other_events_after_removal, st9p.fresh_events);
    /* the new pipe is served from the next iteration on */
    TU_RUN_UNTIL(s, st9p.fresh_events >= 1, 2000);
    assert_int_equal(evl_remove_fd(s->l, st9p.fresh_rd), 0);
    assert_int_equal(evl_remove_fd(s->l, st9p.rd[st9p.first]), 0);
    close(st9p.fresh_rd);
    close(st9p.fresh_wr);
    close(st9p.rd[st9p.first]);
    tu_finish(s);
}

int main(void)
{
    tu_init_process();
    const struct CMUnitTest tests[] = {
        TU_TEST(test_on_close_once_for_every_cause),
        TU_TEST(test_abort_other_and_self_in_on_read_then_write_fails),
        TU_TEST(test_abort_from_outside_runs_on_close_next_iteration),
        TU_TEST(test_abort_from_inside_on_close),
        TU_TEST(test_graceful_close_flushes_then_closes),
        TU_TEST(test_close_timeout_aborts_when_peer_does_not_read),
        TU_TEST(test_close_timeout_when_peer_never_closes),
        TU_TEST(test_evl_free_closes_all),
        TU_TEST(test_fault9_stale_event_after_fd_reuse),
        TU_TEST(test_fault9_stale_extra_fd_event_dropped),
    };
    return cmocka_run_group_tests_name("test_close", tests, NULL, NULL);
}
