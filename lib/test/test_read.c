/*
 * Input: pipelining and re-dispatch, EOF as a half-close, hang-up and reset
 * with data still unread, rbuf_max, evl_data/evl_consume, evl_wake.
 * Seed faults 1, 4, 5 and 6 (read side) are guarded here.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>


/* ---- pipelining (fault 4) ------------------------------------------------- */

static uint64_t read_steps[64];
static int nread_steps;

static void record_step_then_line(tu_state *s, tu_rec *r)
{
    if (nread_steps < 64)
        read_steps[nread_steps++] = s->steps;
    tu_default_read(s, r);
}

static void test_fault4_pipelined_one_per_call_without_new_data(void **state)
{
    (void)state;
    nread_steps = 0;
    tu_state *s = tu_new(NULL, TU_LINE_ECHO);
    s->read_hook = record_step_then_line;
    tu_rec *r = tu_pair(s);
    /* three requests in one segment, then silence: the seed serves the first
     * and strands the other two until new data arrives, which never does */
    tu_peer_sends(r->peer, "one\ntwo\nthree\n");
    tu_peer_expect(s, r->peer, "one\ntwo\nthree\n", 3000);
    assert_int_equal(r->reads, 3); /* one message per call */
    /* each call in its own iteration (fairness), not a loop inside one */
    assert_int_equal(nread_steps, 3);
    assert_true(read_steps[0] < read_steps[1] && read_steps[1] < read_steps[2]);
    tu_finish(s);
}

static void test_fault4_redispatch_does_not_wait_for_timeout(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_LINE);
    tu_rec *r = tu_pair(s);
    tu_peer_sends(r->peer, "a\nb\n");
    TU_RUN_UNTIL(s, r->reads == 1, 2000);
    /* "b" is already buffered: the next iteration must not sleep through its
     * timeout (3 s) waiting for socket data. 1.5 s leaves room for a slow
     * machine and still tells the two apart. */
    uint64_t t0 = tu_now_ms();
    tu_step(s, 3000);
    uint64_t took = tu_now_ms() - t0;
    assert_int_equal(r->reads, 2);
    assert_true(took < 1500);
    assert_int_equal(r->in.len, 4);
    assert_memory_equal(r->in.p, "a\nb\n", 4);
    tu_finish(s);
}

static int order_log[256];
static int norder;

static void log_order(tu_state *s, tu_rec *r)
{
    if (norder < 256)
        order_log[norder++] = (int)(r - s->recs);
    tu_default_read(s, r);
}

static void test_fault4_pipelined_conns_are_served_fairly(void **state)
{
    (void)state;
    norder = 0;
    tu_state *s = tu_new(NULL, TU_LINE_ECHO);
    s->read_hook = log_order;
    tu_rec *a = tu_pair(s);
    tu_rec *b = tu_pair(s);
    /* 50 pipelined lines on a, one line on b, all there before the loop runs */
    char buf[150];
    for (int i = 0; i < 50; i++)
        memset(buf + (size_t)3 * i, 'x', 2), buf[(size_t)3 * i + 2] = '\n';
    tu_peer_send(a->peer, buf, sizeof buf);
    tu_peer_sends(b->peer, "b\n");
    TU_RUN_UNTIL(s, a->reads == 50 && b->reads == 1, 5000);
    /* one message per call and per iteration: b's only request is served
     * among the first few, not after a's fifty */
    int pos = -1;
    for (int i = 0; i < norder; i++)
        if (order_log[i] == (int)(b - s->recs)) {
            pos = i;
            break;
        }
    assert_true(pos >= 0 && pos <= 3);
    tu_finish(s);
}

/* ---- EOF (fault 1) -------------------------------------------------------- */

static void write_big_on_line(tu_state *s, tu_rec *r)
{
    size_t len;
    const char *p = evl_data(r->c, &len);
    const char *nl = memchr(p, '\n', len);
    if (!nl)
        return;
    evl_consume(r->c, (size_t)(nl - p) + 1);
    size_t n = s->size;
    char *big = malloc(n);
    TU_CB_CHECK(s, big != NULL);
    if (!big)
        return;
    tu_pattern(big, n, 0, 42);
    TU_CB_CHECK(s, evl_write(r->c, big, n) == 0);
    free(big);
}

static void test_fault1_eof_no_spin(void **state)
{
    (void)state;
    enum { BIG = 1 << 20 };
    evl_options o = tu_opts();
    /* reading must stay on, so the loop is the one to meet the EOF: keep the
     * reply below wbuf_high */
    o.wbuf_high = 8u << 20;
    tu_state *s = tu_new(&o, TU_LINE);
    s->read_hook = write_big_on_line;
    s->size = BIG;
    tu_rec *r = tu_pair(s);
    /* a request, then EOF, and the peer does not read the 1 MiB reply yet:
     * the connection stays open with output pending and the socket at EOF,
     * which a level-triggered EPOLLIN reports forever if ignored */
    tu_peer_sends(r->peer, "GIVE\n");
    assert_int_equal(shutdown(r->peer, SHUT_WR), 0);
    TU_RUN_UNTIL(s, r->reads == 1 && evl_peer_eof(r->c), 2000);
    assert_true(evl_pending(r->c) > 0);

    tu_assert_no_spin(s, 300, "at EOF with a reply pending");
    assert_int_equal(r->closes, 0); /* the reply is still owed */

    /* the peer reads: every byte arrives, then the loop closes */
    tu_dbuf got = {0};
    tu_peer_collect(s, r->peer, &got, BIG, 5000, NULL);
    assert_int_equal(got.len, BIG);
    assert_int_equal(tu_pattern_mismatch(got.p, got.len, 0, 42), -1);
    tu_dbuf_free(&got);
    tu_peer_expect_eof(s, r->peer, 2000);
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    assert_true(r->eof_at_close);
    tu_finish(s);
}

static void test_fault1_half_close_delivers_last_input_and_flushes(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_LINE_ECHO);
    tu_rec *r = tu_pair(s);
    tu_peer_sends(r->peer, "a\nbb\nccc\n");
    assert_int_equal(shutdown(r->peer, SHUT_WR), 0);
    /* every request before the EOF is answered, then a clean close */
    tu_peer_expect(s, r->peer, "a\nbb\nccc\n", 3000);
    tu_peer_expect_eof(s, r->peer, 3000);
    TU_RUN_UNTIL(s, r->closes == 1, 1000);
    assert_int_equal(r->reads, 3);
    assert_true(r->eof_at_close);
    tu_finish(s);
}

static void test_fault1_tcp_half_close_delivers_and_flushes(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_LINE_ECHO);
    tu_rec *r = tu_tcp(s);
    tu_peer_sends(r->peer, "first\nsecond\n");
    assert_int_equal(shutdown(r->peer, SHUT_WR), 0); /* FIN */
    tu_peer_expect(s, r->peer, "first\nsecond\n", 3000);
    tu_peer_expect_eof(s, r->peer, 3000);
    TU_RUN_UNTIL(s, r->closes == 1, 1000);
    tu_finish(s);
}

static void test_eof_with_partial_message_closes(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_LINE_ECHO);
    tu_rec *r = tu_pair(s);
    /* the tail "partial" never gets its newline: no more data can come, so
     * the connection must not be kept forever waiting for it */
    tu_peer_sends(r->peer, "a\npartial");
    assert_int_equal(shutdown(r->peer, SHUT_WR), 0);
    tu_peer_expect(s, r->peer, "a\n", 3000);
    tu_peer_expect_eof(s, r->peer, 3000);
    TU_RUN_UNTIL(s, r->closes == 1, 1000);
    tu_finish(s);
}

/* ---- hang-up and reset with data unread (fault 5) -------------------------- */

static void test_fault5_hup_with_unread_data_delivered(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_SINK);
    tu_rec *r = tu_pair(s);
    /* data, then a full close: the first event is EPOLLIN|EPOLLHUP */
    tu_peer_sends(r->peer, "last words\n");
    tu_close_fd(r->peer);
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    if (r->in.len != 11)
        TU_FAIL("closed at hang-up with %zu of 11 bytes delivered", r->in.len);
    assert_memory_equal(r->in.p, "last words\n", 11);
    tu_finish(s);
}

static void test_fault5_hup_with_much_unread_data_delivered(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_SINK);
    tu_rec *r = tu_pair(s);
    /* more than one read's worth queued before the hang-up */
    size_t n = tu_peer_fill(r->peer, 5);
    assert_true(n > 65536);
    tu_close_fd(r->peer);
    TU_RUN_UNTIL(s, r->closes == 1, 3000);
    if (r->in.len != n)
        TU_FAIL("closed at hang-up with %zu of %zu bytes delivered", r->in.len, n);
    assert_int_equal(tu_pattern_mismatch(r->in.p, n, 0, 5), -1);
    tu_finish(s);
}

static void test_fault5_tcp_reset_after_data_delivers_data(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_SINK);
    tu_rec *r = tu_tcp(s);
    /* data, then RST: the socket reports EPOLLIN|EPOLLERR|EPOLLHUP, and the
     * kernel still hands out the data before ECONNRESET */
    tu_peer_sends(r->peer, "final\n");
    tu_set_linger0(r->peer);
    tu_close_fd(r->peer);
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    if (r->in.len != 6)
        TU_FAIL("closed at reset with %zu of 6 bytes delivered", r->in.len);
    assert_memory_equal(r->in.p, "final\n", 6);
    tu_finish(s);
}

/* ---- rbuf_max (fault 6, read side) ------------------------------------------ */

static void test_fault6_rbuf_max_overflow_closes(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.rbuf_max = 8192;
    tu_state *s = tu_new(&o, TU_HOLD); /* never consumes */
    tu_rec *r = tu_pair(s);
    size_t sent = tu_peer_fill(r->peer, 1);
    assert_true(sent > 8192);
    TU_RUN_UNTIL(s, r->closes == 1, 3000);
    /* the cap held: the handler never saw more than rbuf_max */
    assert_true(r->max_view > 0 && r->max_view <= 8192);
    struct evl_stats st = tu_stats(s);
    assert_int_equal(st.overflow_closed, 1);
    assert_int_equal(st.rbuf_bytes, 0);
    tu_peer_expect_closed(s, r->peer, 2000);
    tu_finish(s);
}

static void test_rbuf_max_pauses_without_closing_a_consuming_handler(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.rbuf_max = 1024;
    tu_state *s = tu_new(&o, TU_LINE);
    tu_rec *r = tu_pair(s);
    /* 20 000 bytes queued, 20 times the cap: reading pauses at the cap, and
     * since every call consumes a line, nothing is closed */
    static char lines[200 * 100];
    for (int i = 0; i < 200; i++) {
        memset(lines + (size_t)100 * i, 'a' + i % 26, 99);
        lines[(size_t)100 * i + 99] = '\n';
    }
    tu_peer_send(r->peer, lines, sizeof lines);
    TU_RUN_UNTIL(s, r->in.len == sizeof lines, 5000);
    assert_memory_equal(r->in.p, lines, sizeof lines);
    assert_int_equal(r->reads, 200);
    assert_true(r->max_view <= 1024);
    assert_int_equal(r->closes, 0);
    assert_int_equal(tu_stats(s).overflow_closed, 0);
    tu_finish(s);
}

static void test_large_input_arrives_whole_and_in_order(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_SINK);
    tu_rec *r = tu_tcp(s);
    enum { TOTAL = 4 << 20 };
    static char chunk[65536];
    size_t sent = 0;
    uint64_t end = tu_now_ms() + 10000;
    while (r->in.len < TOTAL) {
        if (sent < TOTAL) {
            size_t n = TOTAL - sent < sizeof chunk ? TOTAL - sent : sizeof chunk;
            tu_pattern(chunk, n, sent, 77);
            ssize_t w = send(r->peer, chunk, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t)w;
        }
        if (tu_now_ms() > end)
            TU_FAIL("only %zu of %d bytes arrived", r->in.len, TOTAL);
        tu_step(s, 1);
    }
    assert_int_equal(r->in.len, TOTAL);
    assert_int_equal(tu_pattern_mismatch(r->in.p, TOTAL, 0, 77), -1);
    tu_finish(s);
}

/* ---- evl_data / evl_consume ---------------------------------------------------- */

static void consume_one_logging(tu_state *s, tu_rec *r)
{
    tu_dbuf *log = s->user;
    size_t len;
    const char *p = evl_data(r->c, &len);
    tu_dbuf_add(log, p, len);
    tu_dbuf_add(log, "|", 1);
    if (p[0] == 'd') {
        evl_consume(r->c, 1000); /* more than there is: drops all */
        p = evl_data(r->c, &len);
        TU_CB_CHECK(s, p == NULL && len == 0);
    } else {
        evl_consume(r->c, 1);
        const char *q = evl_data(r->c, &len);
        /* what is left is the same bytes, one further on */
        TU_CB_CHECK(s, len == 0 || q[0] == p[1]);
    }
}

static void test_data_and_consume(void **state)
{
    (void)state;
    tu_dbuf log = {0};
    tu_state *s = tu_new(NULL, TU_HOLD);
    s->read_hook = consume_one_logging;
    s->user = &log;
    tu_rec *r = tu_pair(s);
    size_t len = 99;
    assert_null(evl_data(r->c, &len)); /* no input yet */
    assert_int_equal(len, 0);

    tu_peer_sends(r->peer, "abc");
    /* consuming one byte a call re-dispatches the rest without new data */
    TU_RUN_UNTIL(s, r->reads == 3, 2000);
    tu_run_for(s, 50);
    assert_int_equal(r->reads, 3);
    tu_peer_sends(r->peer, "de");
    TU_RUN_UNTIL(s, r->reads == 4, 2000);
    tu_run_for(s, 50);
    assert_int_equal(r->reads, 4);
    assert_int_equal(log.len, strlen("abc|bc|c|de|"));
    assert_memory_equal(log.p, "abc|bc|c|de|", log.len);
    assert_null(evl_data(r->c, &len));
    assert_int_equal(len, 0);
    tu_finish(s);
    tu_dbuf_free(&log);
}

static void take_when_ready(tu_state *s, tu_rec *r)
{
    if (r->user) /* no longer busy */
        tu_default_read(s, r);
}

static void test_wake_redispatches_held_input(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_SINK);
    s->read_hook = take_when_ready;
    tu_rec *r = tu_pair(s);
    tu_peer_sends(r->peer, "hello");
    TU_RUN_UNTIL(s, r->reads == 1, 2000);
    /* consumed nothing: the loop waits for more data, without spinning and
     * without calling on_read again */
    tu_assert_no_spin(s, 200, "with held input and no new data");
    assert_int_equal(r->reads, 1);
    assert_int_equal(tu_stats(s).rbuf_bytes, 5);
    /* ready now: evl_wake brings the held input back without new data */
    r->user = 1;
    evl_wake(r->c);
    TU_RUN_UNTIL(s, r->in.len == 5, 2000);
    assert_memory_equal(r->in.p, "hello", 5);
    assert_int_equal(r->reads, 2);
    assert_int_equal(tu_stats(s).rbuf_bytes, 0);
    tu_finish(s);
}

static void test_wake_without_input_calls_nothing(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_SINK);
    tu_rec *r = tu_pair(s);
    evl_wake(r->c);
    tu_run_for(s, 100);
    assert_int_equal(r->reads, 0);
    tu_peer_sends(r->peer, "x");
    TU_RUN_UNTIL(s, r->reads == 1, 2000);
    evl_wake(r->c); /* everything was consumed: nothing to deliver */
    tu_run_for(s, 100);
    assert_int_equal(r->reads, 1);
    tu_finish(s);
}

int main(void)
{
    tu_init_process();
    const struct CMUnitTest tests[] = {
        TU_TEST(test_fault4_pipelined_one_per_call_without_new_data),
        TU_TEST(test_fault4_redispatch_does_not_wait_for_timeout),
        TU_TEST(test_fault4_pipelined_conns_are_served_fairly),
        TU_TEST(test_fault1_eof_no_spin),
        TU_TEST(test_fault1_half_close_delivers_last_input_and_flushes),
        TU_TEST(test_fault1_tcp_half_close_delivers_and_flushes),
        TU_TEST(test_eof_with_partial_message_closes),
        TU_TEST(test_fault5_hup_with_unread_data_delivered),
        TU_TEST(test_fault5_hup_with_much_unread_data_delivered),
        TU_TEST(test_fault5_tcp_reset_after_data_delivers_data),
        TU_TEST(test_fault6_rbuf_max_overflow_closes),
        TU_TEST(test_rbuf_max_pauses_without_closing_a_consuming_handler),
        TU_TEST(test_large_input_arrives_whole_and_in_order),
        TU_TEST(test_data_and_consume),
        TU_TEST(test_wake_redispatches_held_input),
        TU_TEST(test_wake_without_input_calls_nothing),
    };
    return cmocka_run_group_tests_name("test_read", tests, NULL, NULL);
}
