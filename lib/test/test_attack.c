/*
 * Issue 14's promises of the library: the per-iteration write budget that
 * all connections share, SO_SNDBUF on accepted and connected sockets, and
 * memory given back after buffers were released (malloc_trim, counted
 * through --wrap).
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int trims; /* malloc_trim calls made by the library */

int __real_malloc_trim(size_t pad);
int __wrap_malloc_trim(size_t pad);
int __wrap_malloc_trim(size_t pad)
{
    trims++;
    return __real_malloc_trim(pad);
}

/* write_budget bounds what one iteration sends over all connections: the
 * first connection's write spends it, the second's sends only the floor
 * every connection keeps (EVL__WRITE_FLOOR, 4 KiB) and queues the rest for
 * a later iteration. */
static void test_write_budget_is_shared_by_all_connections(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.write_budget = 16384;
    tu_state *s = tu_new(&o, TU_HOLD);
    tu_rec *a = tu_pair(s);
    tu_rec *b = tu_pair(s);
    tu_set_sndbuf(a->fd, 1 << 20);
    tu_set_sndbuf(b->fd, 1 << 20);
    static char chunk[16384];
    memset(chunk, 'b', sizeof chunk);
    assert_int_equal(evl_write(a->c, chunk, sizeof chunk), 0);
    assert_int_equal(evl_pending(a->c), 0); /* within the budget: sent at once */
    assert_int_equal(evl_write(b->c, chunk, sizeof chunk), 0);
    assert_int_equal(evl_pending(b->c), sizeof chunk - 4096); /* the floor went */
    TU_RUN_UNTIL(s, evl_pending(b->c) == 0, 2000);
    tu_dbuf got = {0};
    assert_false(tu_peer_collect(s, b->peer, &got, sizeof chunk, 2000, NULL)); /* all, no EOF */
    assert_memory_equal(got.p, chunk, sizeof chunk);
    tu_dbuf_free(&got);
    tu_finish(s);
}

/* Flushes share it too: in each iteration two connections with output
 * queued are sent at most the budget plus one floor between them, and
 * everything still arrives, in order. */
static void test_write_budget_bounds_each_iteration_of_flushes(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.write_budget = 8192;
    tu_state *s = tu_new(&o, TU_HOLD);
    tu_rec *r[2] = {tu_pair(s), tu_pair(s)};
    enum { EACH = 64 * 1024 };
    static char big[EACH];
    tu_pattern(big, EACH, 0, 7);
    tu_dbuf got[2] = {{0}, {0}};
    for (int i = 0; i < 2; i++) {
        tu_set_sndbuf(r[i]->fd, 1 << 20);
        assert_int_equal(evl_write(r[i]->c, big, EACH), 0);
    }
    int iterations = 0;
    while (evl_pending(r[0]->c) + evl_pending(r[1]->c) > 0 && iterations < 1000) {
        size_t before = evl_pending(r[0]->c) + evl_pending(r[1]->c);
        assert_true(evl_run_once(s->l, 100) >= 0);
        iterations++;
        size_t sent = before - (evl_pending(r[0]->c) + evl_pending(r[1]->c));
        if (sent > 8192 + 4096)
            TU_FAIL("%zu bytes sent in one iteration with a budget of 8192 (+ a 4096 floor)", sent);
        for (int i = 0; i < 2; i++)
            (void)tu_peer_drain(r[i]->peer, &got[i]);
    }
    for (int i = 0; i < 2; i++) {
        assert_false(tu_peer_collect(s, r[i]->peer, &got[i], EACH, 2000, NULL)); /* all, no EOF */
        assert_int_equal(tu_pattern_mismatch(got[i].p, EACH, 0, 7), -1);
        tu_dbuf_free(&got[i]);
    }
    tu_finish(s);
}

static void test_bad_budget_sndbuf_trim_are_refused(void **state)
{
    (void)state;
    evl_handler h = {0};
    evl_options o = tu_opts();
    o.write_budget = 0;
    errno = 0;
    assert_null(evl_new(&h, NULL, &o));
    assert_int_equal(errno, EINVAL);
    o = tu_opts();
    o.sndbuf = -1;
    assert_null(evl_new(&h, NULL, &o));
    o = tu_opts();
    o.trim_ms = -1;
    assert_null(evl_new(&h, NULL, &o));
}

static int sndbuf_of(int fd)
{
    int v = 0;
    socklen_t len = sizeof v;
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &len), 0);
    return v;
}

/* Linux doubles the value it is given (socket(7)): a socket that got
 * SO_SNDBUF 65536 reports 131072; one left to the kernel reports its
 * tcp_wmem default. */
static void test_sndbuf_set_on_accepted_and_connected_sockets(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.sndbuf = 65536;
    tu_state *s = tu_new(&o, TU_HOLD);
    int ls = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(ls >= 0);
    tu_track_fd(ls);
    assert_int_equal(evl_add_listener(s->l, ls), 0);
    struct sockaddr_in sin = {0};
    socklen_t sl = sizeof sin;
    assert_int_equal(getsockname(ls, (struct sockaddr *)&sin, &sl), 0);
    int cl = tu_tcp_connect(ntohs(sin.sin_port));
    tu_track_fd(cl);
    TU_RUN_UNTIL(s, s->accepts == 1, 2000);
    assert_int_equal(sndbuf_of(s->recs[0].fd), 2 * 65536);
    tu_finish(s);
    /* and a connection a loop makes (a loop of its own: the test state's
     * handler keeps records only for connections it accepted) */
    evl_handler h = {0};
    evl_loop *l = evl_new(&h, NULL, &o);
    assert_non_null(l);
    evl_conn *c = evl_connect(l, "127.0.0.1", ntohs(sin.sin_port), 0, NULL, NULL);
    assert_non_null(c);
    assert_int_equal(sndbuf_of(evl_fd(c)), 2 * 65536);
    evl_free(l);
}

/* What the kernel gives an accepted TCP socket (autotuned, tcp_wmem). */
static int kernel_sndbuf_of_accepted(void)
{
    int ls = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(ls >= 0);
    struct sockaddr_in sin = {0};
    socklen_t sl = sizeof sin;
    assert_int_equal(getsockname(ls, (struct sockaddr *)&sin, &sl), 0);
    int cl = tu_tcp_connect(ntohs(sin.sin_port));
    int sv = -1;
    for (int i = 0; i < 200 && sv < 0; i++) {
        sv = accept(ls, NULL, NULL);
        if (sv < 0)
            usleep(5000);
    }
    assert_true(sv >= 0);
    int v = sndbuf_of(sv);
    close(sv);
    close(cl);
    close(ls);
    return v;
}

static void test_sndbuf_default_is_64k(void **state)
{
    (void)state;
    evl_options o;
    evl_options_default(&o);
    assert_int_equal(o.sndbuf, 64 << 10);
    assert_int_equal(o.write_budget, 1 << 20);
    assert_int_equal(o.trim_ms, 1000);
}

static void test_sndbuf_zero_leaves_the_kernel_default(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.sndbuf = 0;
    tu_state *s = tu_new(&o, TU_HOLD);
    int ls = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(ls >= 0);
    tu_track_fd(ls);
    assert_int_equal(evl_add_listener(s->l, ls), 0);
    struct sockaddr_in sin = {0};
    socklen_t sl = sizeof sin;
    assert_int_equal(getsockname(ls, (struct sockaddr *)&sin, &sl), 0);
    int kernel = kernel_sndbuf_of_accepted();
    int cl = tu_tcp_connect(ntohs(sin.sin_port));
    tu_track_fd(cl);
    TU_RUN_UNTIL(s, s->accepts == 1, 2000);
    assert_int_equal(sndbuf_of(s->recs[0].fd), kernel);
    tu_finish(s);
}

/* Fills r's output past EVL__TRIM_MIN (256 KiB) against a peer that does
 * not read, then aborts it: its buffer goes back to malloc. */
static void release_a_big_buffer(tu_state *s)
{
    tu_rec *r = tu_pair(s);
    tu_set_sndbuf(r->fd, 4096);
    static char big[512 * 1024];
    memset(big, 'r', sizeof big);
    assert_int_equal(evl_write(r->c, big, sizeof big), 0);
    assert_true(evl_pending(r->c) >= (size_t)256 * 1024);
    evl_abort(r->c);
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
}

static void test_trim_after_buffers_were_released(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.trim_ms = 50;
    tu_state *s = tu_new(&o, TU_HOLD);
    trims = 0;
    tu_run_for(s, 120);
    assert_int_equal(trims, 0); /* nothing released: no trim, no timer */
    release_a_big_buffer(s);
    uint64_t t0 = tu_now_ms();
    TU_RUN_UNTIL(s, trims == 1, 2000);
    assert_true(tu_now_ms() - t0 + 5 >= 50 / 2); /* armed for trim_ms, not at once */
    tu_run_for(s, 150);
    assert_int_equal(trims, 1); /* once per release, not periodic */
    tu_finish(s);
}

/* A reset frees the output before the close is reaped: the trim must come
 * all the same (the slow-read attack's connections end this way). */
static void test_trim_after_a_reset_freed_the_output(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.trim_ms = 50;
    tu_state *s = tu_new(&o, TU_HOLD);
    trims = 0;
    tu_rec *r = tu_tcp(s);
    tu_set_sndbuf(r->fd, 4096);
    static char big[512 * 1024];
    memset(big, 'x', sizeof big);
    assert_int_equal(evl_write(r->c, big, sizeof big), 0);
    assert_true(evl_pending(r->c) >= (size_t)256 * 1024);
    tu_set_linger0(r->peer);
    tu_close_fd(r->peer); /* RST: the loop's next read or send fails */
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    TU_RUN_UNTIL(s, trims == 1, 2000);
    tu_finish(s);
}

static void test_trim_zero_never_trims(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.trim_ms = 0;
    tu_state *s = tu_new(&o, TU_HOLD);
    trims = 0;
    release_a_big_buffer(s);
    tu_run_for(s, 200);
    assert_int_equal(trims, 0);
    tu_finish(s);
}

int main(void)
{
    tu_init_process();
    const struct CMUnitTest tests[] = {
        TU_TEST(test_write_budget_is_shared_by_all_connections),
        TU_TEST(test_write_budget_bounds_each_iteration_of_flushes),
        TU_TEST(test_bad_budget_sndbuf_trim_are_refused),
        TU_TEST(test_sndbuf_set_on_accepted_and_connected_sockets),
        TU_TEST(test_sndbuf_default_is_64k),
        TU_TEST(test_sndbuf_zero_leaves_the_kernel_default),
        TU_TEST(test_trim_after_buffers_were_released),
        TU_TEST(test_trim_after_a_reset_freed_the_output),
        TU_TEST(test_trim_zero_never_trims),
    };
    return cmocka_run_group_tests_name("test_attack", tests, NULL, NULL);
}
