/*
 * Stopping to listen: evl_remove_listener, and on_stop, where the owner of a
 * listen fd closes it as a stop begins so that late clients are refused at
 * once (ECONNREFUSED) instead of waiting in the backlog for a reset.
 */
#include "testutil.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int listen_local(int *port)
{
    int lfd = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(lfd >= 0);
    tu_track_fd(lfd);
    *port = evl_local_port(lfd);
    assert_true(*port > 0);
    return lfd;
}

/* A blocking connect to 127.0.0.1:port: 0, or the errno it failed with. */
static int connect_errno(int port, int *fd_out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 ? 0 : errno;
    if (rc == 0 && fd_out) {
        tu_track_fd(fd);
        *fd_out = fd;
    } else {
        close(fd);
    }
    return rc;
}

static void test_remove_listener_stops_accepting(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = tu_pair(s);
    int port, lfd = listen_local(&port);
    assert_int_equal(evl_add_listener(s->l, lfd), 0);
    int a;
    assert_int_equal(connect_errno(port, &a), 0);
    TU_RUN_UNTIL(s, tu_stats(s).accepted == 2, 3000); /* the pair and a */

    assert_int_equal(evl_remove_listener(s->l, lfd), 0);
    assert_true(fcntl(lfd, F_GETFD) != -1); /* not closed: the caller's */
    int b;
    assert_int_equal(connect_errno(port, &b), 0); /* the backlog takes it */
    tu_run_for(s, 200);
    assert_int_equal(tu_stats(s).accepted, 2); /* nobody accepts it */

    errno = 0;
    assert_int_equal(evl_remove_listener(s->l, lfd), -1);
    assert_int_equal(errno, ENOENT);
    errno = 0;
    assert_int_equal(evl_remove_listener(s->l, r->fd), -1); /* a connection */
    assert_int_equal(errno, ENOENT);
    assert_ptr_equal(evl_conn_of(s->l, r->fd), r->c);       /* untouched */
    errno = 0;
    assert_int_equal(evl_remove_listener(s->l, -1), -1);
    assert_int_equal(errno, ENOENT);

    /* the fd is free for the loop again: b waits in the backlog */
    assert_int_equal(evl_add_listener(s->l, lfd), 0);
    TU_RUN_UNTIL(s, tu_stats(s).accepted == 3, 3000);
    tu_finish(s);
}

static int removed_fd;
static int removed_rc;
static void remove_listener_from_on_fd(tu_state *s, int fd)
{
    char b[16];
    while (read(fd, b, sizeof b) > 0)
        ;
    removed_rc = evl_remove_listener(s->l, removed_fd);
}

static void test_remove_listener_drops_an_event_of_the_same_batch(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    int port, lfd = listen_local(&port);
    assert_int_equal(evl_add_listener(s->l, lfd), 0);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    tu_track_fd(p[0]);
    tu_track_fd(p[1]);
    assert_int_equal(evl_add_fd(s->l, p[0]), 0);
    removed_fd = lfd;
    removed_rc = 1;
    s->fd_hook = remove_listener_from_on_fd;

    /* The pipe becomes ready first, then the listener: one epoll_wait
     * returns both, in that order, and on_fd removes the listener before
     * its event is dispatched. */
    assert_int_equal(write(p[1], "x", 1), 1);
    int a;
    assert_int_equal(connect_errno(port, &a), 0);
    struct pollfd pf = {.fd = lfd, .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 2000), 1);
    assert_int_equal(tu_step(s, 1000), 2);
    assert_int_equal(removed_rc, 0);
    assert_int_equal(s->fd_events, 1);
    assert_int_equal(tu_stats(s).accepted, 0); /* the fetched event was dropped */
    assert_int_equal(tu_stats(s).rejected, 0);
    tu_run_for(s, 100);
    assert_int_equal(tu_stats(s).accepted, 0);
    tu_finish(s);
}

/* on_stop: a hand-made handler, since the test's own has none. */
static struct {
    int lfd, port;
    int calls;
    bool stopping;         /* evl_stopping() inside on_stop */
    int remove_errno;      /* evl_remove_listener inside: already removed */
    int late_errno;        /* a client connecting after the close */
    int write_rc;          /* a goodbye written inside on_stop */
    evl_conn *c;
} stop;

static void on_stop_close_listener(evl_loop *l)
{
    stop.calls++;
    stop.stopping = evl_stopping(l);
    errno = 0;
    if (evl_remove_listener(l, stop.lfd) < 0)
        stop.remove_errno = errno;
    close(stop.lfd);
    stop.lfd = -1;
    stop.late_errno = connect_errno(stop.port, NULL);
    stop.write_rc = evl_write(stop.c, "bye\n", 4);
}

static void stop_on_tick(evl_loop *l)
{
    evl_stop(l);
}

static void test_on_stop_runs_once_with_listeners_removed(void **state)
{
    (void)state;
    memset(&stop, 0, sizeof stop);
    evl_handler h = {.on_stop = on_stop_close_listener, .on_tick = stop_on_tick};
    evl_options o;
    evl_options_default(&o);
    o.tick_ms = 20;
    o.close_timeout_ms = 2000;
    evl_loop *l = evl_new(&h, NULL, &o);
    assert_non_null(l);
    stop.lfd = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(stop.lfd >= 0);
    stop.port = evl_local_port(stop.lfd);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tu_track_fd(sv[1]);
    stop.c = evl_adopt(l, sv[0]);
    assert_non_null(stop.c);

    assert_int_equal(evl_run(l, stop.lfd), 0);
    assert_int_equal(stop.calls, 1);
    assert_true(stop.stopping);
    assert_int_equal(stop.remove_errno, ENOENT);   /* the loop removed it first */
    assert_int_equal(stop.late_errno, ECONNREFUSED); /* refused, not queued */
    assert_int_equal(stop.write_rc, 0);
    char buf[8];
    assert_int_equal(read(sv[1], buf, sizeof buf), 4); /* flushed by the stop */
    assert_memory_equal(buf, "bye\n", 4);
    assert_int_equal(read(sv[1], buf, sizeof buf), 0);
    evl_free(l);
}

int main(void)
{
    tu_init_process();
    const struct CMUnitTest tests[] = {
        TU_TEST(test_remove_listener_stops_accepting),
        TU_TEST(test_remove_listener_drops_an_event_of_the_same_batch),
        TU_TEST(test_on_stop_runs_once_with_listeners_removed),
    };
    return cmocka_run_group_tests_name("test_listener", tests, NULL, NULL);
}
