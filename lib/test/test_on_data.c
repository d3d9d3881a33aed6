/*
 * on_data (evloop.h, since 1.2): on_read with the input passed in, and the
 * bytes it returns consumed. Each test drives its own loop over a
 * socketpair whose far end the test plays, and checks what the header says:
 * called instead of on_read, with all unconsumed input; the return consumed
 * as evl_consume would (clamped to len, after any evl_consume inside); the
 * rest re-dispatched or waited on exactly as for on_read; both on the hot
 * path (input read into the loop's buffer) and on the buffered one. And the
 * entries old programs call, (evl_set_handler) and (evl_connect), never read
 * on_data from a caller's struct that ends before it: the struct is copied
 * to a heap block of exactly that size, so ASan sees any read past it.
 */
#include "testutil.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct od {
    evl_loop *l;
    evl_conn *c;
    int peer;
    int datas, reads, closes, connects;
    size_t ret;           /* what on_data returns (SIZE_MAX: len) */
    size_t extra;         /* added to len when ret is SIZE_MAX */
    size_t inner_consume; /* evl_consume inside on_data first */
    bool echo;            /* write the input back */
    char seen[8][16];     /* the input of each call, as a string */
    int close_reason;
};

static struct od *od_of(evl_conn *c) { return evl_udata(c); }

static void od_note(struct od *o, const char *data, size_t len)
{
    if (o->datas + o->reads < 8) {
        size_t n = len < 15 ? len : 15;
        memcpy(o->seen[o->datas + o->reads], data, n);
        o->seen[o->datas + o->reads][n] = 0;
    }
}

static size_t od_data(evl_conn *c, const char *data, size_t len)
{
    struct od *o = od_of(c);
    /* evl_data inside shows the same input */
    size_t vlen;
    const char *v = evl_data(c, &vlen);
    assert_ptr_equal(v, data);
    assert_int_equal(vlen, len);
    assert_true(len > 0);
    od_note(o, data, len);
    o->datas++;
    if (o->echo)
        assert_int_equal(evl_write(c, data, len), 0);
    if (o->inner_consume)
        evl_consume(c, o->inner_consume);
    return o->ret == SIZE_MAX ? len + o->extra : o->ret;
}

static void od_read(evl_conn *c)
{
    struct od *o = od_of(c);
    size_t len;
    const char *d = evl_data(c, &len);
    od_note(o, d, len);
    o->reads++;
    evl_consume(c, len);
}

static void od_close(evl_conn *c)
{
    struct od *o = od_of(c);
    o->closes++;
    o->close_reason = evl_close_reason(c);
    o->c = NULL;
}

static void od_connect(evl_conn *c, int err)
{
    assert_int_equal(err, 0);
    od_of(c)->connects++;
}

/* on_read is set too: on_data wins, on_read is never called. */
static const evl_handler od_handler = {
    .on_read = od_read, .on_close = od_close, .on_connect = od_connect, .on_data = od_data};
static const evl_handler od_reader = {.on_read = od_read, .on_close = od_close};

static void od_open(struct od *o, const evl_handler *hd, const evl_options *opts)
{
    memset(o, 0, sizeof *o);
    o->ret = SIZE_MAX;
    o->l = evl_new(hd, o, opts);
    assert_non_null(o->l);
    o->c = tu_adopt_socketpair(o->l, o, &o->peer);
}

/* One iteration with the peer's bytes ready to read. */
static void od_send_and_run(struct od *o, const char *s)
{
    tu_peer_sends(o->peer, s);
    assert_true(tu_wait_readable(evl_fd(o->c), 2000));
    assert_true(evl_run_once(o->l, 0) >= 0);
}

static void od_done(struct od *o)
{
    evl_free(o->l);
    tu_close_fd(o->peer);
}

/* The echo the bench runs: everything returned is consumed, on_read never
 * runs, the peer gets its bytes back. */
static void test_on_data_is_called_instead_of_on_read(void **state)
{
    (void)state;
    struct od o;
    od_open(&o, &od_handler, NULL);
    o.echo = true;
    od_send_and_run(&o, "ping");
    assert_int_equal(o.datas, 1);
    assert_int_equal(o.reads, 0);
    assert_string_equal(o.seen[0], "ping");
    char buf[8] = {0};
    assert_int_equal(read(o.peer, buf, sizeof buf), 4);
    assert_string_equal(buf, "ping");
    od_send_and_run(&o, "pong"); /* all of "ping" was consumed */
    assert_string_equal(o.seen[1], "pong");
    assert_int_equal(o.datas, 2);
    od_done(&o);
}

/* Returning less than len: the rest is shown again in the next iteration
 * without new input (the re-dispatch rule), from the connection's buffer. */
static void test_on_data_partial_return_redispatches_the_rest(void **state)
{
    (void)state;
    struct od o;
    od_open(&o, &od_handler, NULL);
    o.ret = 1;
    od_send_and_run(&o, "abcd");
    assert_int_equal(o.datas, 1);
    for (int i = 0; i < 3; i++)
        assert_true(evl_run_once(o.l, 0) >= 0);
    assert_int_equal(o.datas, 4);
    assert_string_equal(o.seen[0], "abcd");
    assert_string_equal(o.seen[1], "bcd");
    assert_string_equal(o.seen[2], "cd");
    assert_string_equal(o.seen[3], "d");
    assert_true(evl_run_once(o.l, 0) >= 0); /* nothing left: no call */
    assert_int_equal(o.datas, 4);
    od_done(&o);
}

/* More than len counts as len: the next call sees only new bytes. */
static void test_on_data_return_beyond_len_counts_as_len(void **state)
{
    (void)state;
    struct od o;
    od_open(&o, &od_handler, NULL);
    o.extra = 100;
    od_send_and_run(&o, "xyz");
    assert_true(evl_run_once(o.l, 0) >= 0);
    assert_int_equal(o.datas, 1); /* nothing left to re-dispatch */
    od_send_and_run(&o, "next");
    assert_int_equal(o.datas, 2);
    assert_string_equal(o.seen[1], "next");
    o.inner_consume = 50; /* evl_consume beyond len inside: clamped too */
    o.ret = 0;
    od_send_and_run(&o, "ab");
    o.inner_consume = 0;
    o.ret = SIZE_MAX;
    od_send_and_run(&o, "cd");
    assert_int_equal(o.datas, 4);
    assert_string_equal(o.seen[3], "cd");
    od_done(&o);
}

/* evl_consume inside, then the return: both are consumed, in that order. */
static void test_on_data_return_is_consumed_after_evl_consume_inside(void **state)
{
    (void)state;
    struct od o;
    od_open(&o, &od_handler, NULL);
    o.inner_consume = 2;
    o.ret = 1;
    od_send_and_run(&o, "abcdefg"); /* 2 + 1 consumed: "defg" left */
    assert_true(evl_run_once(o.l, 0) >= 0); /* "defg": "g" left */
    assert_true(evl_run_once(o.l, 0) >= 0); /* "g": 2 then 1, clamped */
    assert_int_equal(o.datas, 3);
    assert_string_equal(o.seen[0], "abcdefg");
    assert_string_equal(o.seen[1], "defg");
    assert_string_equal(o.seen[2], "g");
    assert_true(evl_run_once(o.l, 0) >= 0); /* nothing left: no call */
    assert_int_equal(o.datas, 3);
    od_done(&o);
}

/* Returning 0 is a partial message: no call until more input comes, then
 * one call with all of it (from the buffer, the general path). */
static void test_on_data_returning_zero_waits_for_more(void **state)
{
    (void)state;
    struct od o;
    od_open(&o, &od_handler, NULL);
    o.ret = 0;
    od_send_and_run(&o, "par");
    for (int i = 0; i < 3; i++)
        assert_true(evl_run_once(o.l, 0) >= 0);
    assert_int_equal(o.datas, 1);
    o.ret = SIZE_MAX;
    od_send_and_run(&o, "tial");
    assert_int_equal(o.datas, 2);
    assert_string_equal(o.seen[1], "partial");
    assert_true(evl_run_once(o.l, 0) >= 0);
    assert_int_equal(o.datas, 2);
    od_done(&o);
}

/* A message larger than rbuf_max that on_data never takes: closed as
 * overflowed, as on_read's would be. */
static void test_on_data_declining_a_full_buffer_overflows(void **state)
{
    (void)state;
    evl_options opts = tu_opts();
    opts.rbuf_max = 8;
    struct od o;
    od_open(&o, &od_handler, &opts);
    o.ret = 0;
    tu_peer_sends(o.peer, "0123456789abcdef");
    for (int i = 0; i < 20 && o.closes == 0; i++)
        assert_true(evl_run_once(o.l, 10) >= 0);
    assert_int_equal(o.closes, 1);
    assert_int_equal(o.close_reason, EVL_CLOSE_OVERFLOW);
    od_done(&o);
}

/* A heap copy of h of exactly the size an old program's struct has. */
static evl_handler *old_sized_copy(const evl_handler *h)
{
    size_t n = offsetof(evl_handler, on_data);
    evl_handler *p = malloc(n);
    assert_non_null(p);
    memcpy(p, h, n);
    return p;
}

/* The 1.0/1.1 entry of evl_set_handler: its struct ends before on_data,
 * so on_read serves (ASan fails the test on a read of on_data). The
 * sized macro with a full struct takes on_data again. */
static void test_old_set_handler_entry_never_reads_on_data(void **state)
{
    (void)state;
    struct od o;
    od_open(&o, &od_reader, NULL);
    evl_handler *old = old_sized_copy(&od_handler);
    (evl_set_handler)(o.c, old);
    od_send_and_run(&o, "old");
    assert_int_equal(o.reads, 1);
    assert_int_equal(o.datas, 0);
    evl_set_handler(o.c, &od_handler); /* the macro: the full struct */
    od_send_and_run(&o, "new");
    assert_int_equal(o.datas, 1);
    assert_int_equal(o.reads, 1);
    evl_set_handler(o.c, NULL); /* the loop's own again: on_read only */
    od_send_and_run(&o, "own");
    assert_int_equal(o.reads, 2);
    od_done(&o);
    free(old);
}

/* The same for evl_connect: the old entry with an old-sized handler, the
 * macro with a full one, each to a unix listener the test accepts on. */
static void connect_and_read(bool old_entry)
{
    struct od o;
    memset(&o, 0, sizeof o);
    o.ret = SIZE_MAX;
    o.l = evl_new(&od_reader, &o, NULL);
    assert_non_null(o.l);
    char path[64];
    int plen = snprintf(path, sizeof path, "/tmp/evl-ondata-%d.sock", (int)getpid());
    assert_true(plen > 0 && (size_t)plen < sizeof path);
    int lfd = evl_listen_unix(path); /* removes a stale file first */
    assert_true(lfd >= 0);
    tu_track_fd(lfd);
    evl_handler *old = old_sized_copy(&od_handler);
    o.c = old_entry ? (evl_connect)(o.l, path, 0, 0, old, &o)
                    : evl_connect(o.l, path, 0, 0, &od_handler, &o);
    assert_non_null(o.c);
    int peer = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(peer >= 0);
    tu_track_fd(peer);
    for (int i = 0; i < 50 && o.connects == 0; i++)
        assert_true(evl_run_once(o.l, 10) >= 0);
    assert_int_equal(o.connects, 1);
    tu_peer_sends(peer, "hi");
    for (int i = 0; i < 50 && o.reads + o.datas == 0; i++)
        assert_true(evl_run_once(o.l, 10) >= 0);
    assert_int_equal(o.reads, old_entry ? 1 : 0);
    assert_int_equal(o.datas, old_entry ? 0 : 1);
    evl_free(o.l);
    free(old);
    tu_close_fd(peer);
    tu_close_fd(lfd);
    (void)unlink(path);
}

static void test_old_connect_entry_never_reads_on_data(void **state)
{
    (void)state;
    connect_and_read(true);
    connect_and_read(false);
}

int main(void)
{
    tu_init_process();
    const struct CMUnitTest tests[] = {
        TU_TEST(test_on_data_is_called_instead_of_on_read),
        TU_TEST(test_on_data_partial_return_redispatches_the_rest),
        TU_TEST(test_on_data_return_beyond_len_counts_as_len),
        TU_TEST(test_on_data_return_is_consumed_after_evl_consume_inside),
        TU_TEST(test_on_data_returning_zero_waits_for_more),
        TU_TEST(test_on_data_declining_a_full_buffer_overflows),
        TU_TEST(test_old_set_handler_entry_never_reads_on_data),
        TU_TEST(test_old_connect_entry_never_reads_on_data),
    };
    return cmocka_run_group_tests_name("test_on_data", tests, NULL, NULL);
}
