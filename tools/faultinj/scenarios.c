/*
 * The torture scenarios: the shapes of the unit tests (accept and echo,
 * writes under backpressure, graceful close, half-close, evl_run stopped by a
 * signal, adopt, extra fds, evl_free with busy connections), written so that
 * any single failing call inside the library leaves an outcome the header
 * allows. A public call that fails is checked (tt_check_failure) and retried
 * once: the fault is one-shot, so the retry must work, or the failed call
 * left state behind (the kind of bug a failed evl_run left in issue 11 #6).
 */
#include "torture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static evl_options quiet_options(void)
{
    evl_options o;
    evl_options_default(&o);
    o.tick_ms = 0; /* idle means idle: the spin check counts epoll_waits */
    o.close_timeout_ms = 500;
    return o;
}

static void new_loop(tt_ctx *x, const evl_options *o)
{
    for (int attempt = 0; attempt < 2 && !x->l; attempt++) {
        x->l = evl_new(tt_handler(), x, o);
        if (!x->l)
            tt_check_failure(x, "evl_new", errno);
    }
    if (!x->l)
        tt_violation(x, "retry fails", "evl_new fails twice");
}

static evl_conn *adopt(tt_ctx *x, int fd)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        evl_conn *c = evl_adopt(x->l, fd);
        if (c) {
            (void)tt_track(x, c);
            return c;
        }
        tt_check_failure(x, "evl_adopt", errno);
        if (fcntl(fd, F_GETFD) < 0)
            tt_violation(x, "fd closed on failure", "evl_adopt closed the fd it refused");
    }
    (void)close(fd); /* still ours: refused */
    tt_violation(x, "retry fails", "evl_adopt fails twice");
}

/* A socketpair whose loop end is adopted; returns the peer. */
static int adopted_pair(tt_ctx *x)
{
    int sv[2];
    tt_pair(x, sv);
    (void)adopt(x, sv[0]);
    return sv[1];
}

static int listener(tt_ctx *x, int *port)
{
    int fd = -1;
    for (int attempt = 0; attempt < 2 && fd < 0; attempt++) {
        fd = evl_listen_tcp("127.0.0.1", 0, 0);
        if (fd < 0)
            tt_check_failure(x, "evl_listen_tcp", errno);
    }
    if (fd < 0)
        tt_violation(x, "retry fails", "evl_listen_tcp fails twice");
    tt_own(x, fd);
    *port = evl_local_port(fd);
    if (*port < 0) {
        tt_check_failure(x, "evl_local_port", errno);
        *port = evl_local_port(fd);
        if (*port < 0)
            tt_violation(x, "retry fails", "evl_local_port fails twice");
    }
    return fd;
}

static void add_listener(tt_ctx *x, int fd)
{
    if (evl_add_listener(x->l, fd) == 0)
        return;
    tt_check_failure(x, "evl_add_listener", errno);
    if (evl_add_listener(x->l, fd) < 0)
        tt_violation(x, "retry fails", "evl_add_listener: %s after a failed call",
                     strerrorname_np(errno));
}

/* A TCP client of port, connected (the backlog completes it), non-blocking. */
static int client(tt_ctx *x, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    tt_own(x, fd);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        tt_violation(x, "driver", "connect: %s", strerror(errno));
    (void)fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static enum tt_outcome echo(tt_ctx *x, int peer, const char *line)
{
    return tt_exchange(x, peer, line, strlen(line), line, strlen(line));
}

/* evl_add_listener: an accept error that says the socket cannot accept
 * (EINVAL, EBADF, ENOTSOCK, EOPNOTSUPP) removes the listener from the loop. */
static bool listener_dropped(const tt_ctx *x)
{
    return x->kind == FI_ACCEPT4 && fi_fired() &&
           (x->err == EINVAL || x->err == EBADF || x->err == ENOTSOCK || x->err == EOPNOTSUPP);
}

/* An echo over a client of listener lfd; when the fault made the loop drop the
 * listener as documented, adding it again must work and serve the client
 * waiting in the backlog. */
static enum tt_outcome listener_echo(tt_ctx *x, int fd, int lfd, bool *readded,
                                     const char *line)
{
    enum tt_outcome out = echo(x, fd, line);
    if (out == TT_STALLED && listener_dropped(x) && !*readded) {
        *readded = true;
        add_listener(x, lfd);
        out = tt_exchange(x, fd, NULL, 0, line, strlen(line));
    }
    return out;
}

static enum tt_outcome tcp_echo(tt_ctx *x, int port, int lfd, bool *readded, const char *line)
{
    return listener_echo(x, client(x, port), lfd, readded, line);
}

/* ---- scenarios ------------------------------------------------------------- */

static void accept_echo(tt_ctx *x)
{
    evl_options o = quiet_options();
    new_loop(x, &o);
    int port;
    int lfd = listener(x, &port);
    add_listener(x, lfd);
    bool readded = false;
    tt_expect_served_or_closed(x, tcp_echo(x, port, lfd, &readded, "hello\n"), "first client");
    tt_expect_served_or_closed(x, tcp_echo(x, port, lfd, &readded, "vectored\n"),
                               "second client");
    /* The listener still accepts: a fault spends itself on one client. */
    unsigned long fired = fi_fired();
    enum tt_outcome out = tcp_echo(x, port, lfd, &readded, "third\n");
    if (out != TT_SERVED && fi_fired() != fired)
        out = tcp_echo(x, port, lfd, &readded, "fourth\n");
    if (out != TT_SERVED)
        tt_violation(x, "loop stops serving", "a new TCP client is not served");
    tt_check_idle(x);
    tt_finish(x);
}

static void backpressure(tt_ctx *x)
{
    evl_options o = quiet_options();
    o.wbuf_low = 8u << 10;
    o.wbuf_high = 32u << 10;
    o.write_quantum = 64u << 10;
    new_loop(x, &o);
    int peer = adopted_pair(x);
    /* A stream larger than the socket buffers, then a pipelined line that
     * waits while reading is paused at wbuf_high. */
    enum { BIG = 600000 };
    static char expect[BIG + 6];
    for (size_t i = 0; i < BIG; i++)
        expect[i] = tt_pattern(i);
    for (size_t i = 0; i < 6; i++)
        expect[BIG + i] = "after\n"[i];
    static const char req[] = "BIG 600000\nafter\n";
    enum tt_outcome out = tt_exchange(x, peer, req, sizeof req - 1, expect, BIG + 6);
    tt_expect_served_or_closed(x, out, "streamed reply");
    tt_check_serves(x);
    tt_check_idle(x);
    tt_finish(x);
}

static void graceful_close(tt_ctx *x)
{
    evl_options o = quiet_options();
    new_loop(x, &o);
    int peer = adopted_pair(x);
    tt_expect_served_or_closed(x, tt_exchange(x, peer, "BYE\n", 4, "bye\n", 4), "BYE");
    if (!tt_wait_eof(x, peer))
        tt_violation(x, "stalled connection", "no FIN after evl_close flushed");
    tt_close_own(peer);
    if (!tt_wait_all_closed(x))
        tt_violation(x, "stalled connection", "on_close never ran after both sides closed");
    tt_check_serves(x);
    tt_check_idle(x);
    tt_finish(x);
}

static void half_close(tt_ctx *x)
{
    evl_options o = quiet_options();
    new_loop(x, &o);
    int peer = adopted_pair(x);
    /* Two pipelined requests, then the peer's FIN: both replies, then EOF. */
    if (send(peer, "a-one\nb-two\n", 12, MSG_NOSIGNAL) != 12 || shutdown(peer, SHUT_WR) < 0)
        tt_violation(x, "driver", "send/shutdown: %s", strerror(errno));
    enum tt_outcome out = tt_exchange(x, peer, NULL, 0, "a-one\nb-two\n", 12);
    tt_expect_served_or_closed(x, out, "replies after the peer's FIN");
    if (!tt_wait_eof(x, peer))
        tt_violation(x, "stalled connection", "not closed after the replies to a half-closed peer");
    if (!tt_wait_all_closed(x))
        tt_violation(x, "stalled connection", "on_close never ran after the half-close");
    tt_check_serves(x);
    tt_check_idle(x);
    tt_finish(x);
}

/* What a peer holds when the loop is done with it: a prefix of expect. */
static void check_received(const tt_ctx *x, int peer, const char *expect)
{
    char buf[256];
    ssize_t n = recv(peer, buf, sizeof buf, 0);
    size_t len = n > 0 ? (size_t)n : 0;
    if (len > strlen(expect) || memcmp(buf, expect, len) != 0)
        tt_violation(x, "corrupt stream", "a peer of evl_run got %zu unexpected bytes", len);
}

static bool stop_signal_pending_or_blocked(void)
{
    sigset_t cur, pend;
    (void)sigprocmask(SIG_SETMASK, NULL, &cur);
    (void)sigpending(&pend);
    return sigismember(&cur, SIGTERM) || sigismember(&pend, SIGTERM);
}

/* One evl_run over the listener and one adopted peer, stopped by SIGTERM
 * once `lines` request lines were served (or their connection is gone). */
static int run_once(tt_ctx *x, int lfd, int lines)
{
    x->lines = 0;
    x->ticks = 0;
    x->stop_after_lines = lines;
    x->in_loop++;
    int rc = evl_run(x->l, lfd);
    int err = errno;
    x->in_loop--;
    x->stop_after_lines = 0;
    if (stop_signal_pending_or_blocked())
        tt_violation(x, "signal mask", "SIGTERM blocked or pending after evl_run returned");
    if (rc < 0) {
        tt_check_failure(x, "evl_run", err);
        return -1;
    }
    for (int i = 0; i < x->nconns; i++)
        if (x->conns[i].c)
            tt_violation(x, "evl_run returns early", "returned 0 with connection %d open", i);
    return 0;
}

static void run_signal(tt_ctx *x)
{
    evl_options o = quiet_options();
    o.tick_ms = 20;
    new_loop(x, &o);
    int port;
    int lfd = listener(x, &port);
    int tcp = client(x, port);
    if (send(tcp, "one\n", 4, MSG_NOSIGNAL) != 4)
        tt_violation(x, "driver", "send: %s", strerror(errno));
    int peer = adopted_pair(x);
    if (send(peer, "two\nSTOP\n", 9, MSG_NOSIGNAL) != 9)
        tt_violation(x, "driver", "send: %s", strerror(errno));
    int rc = run_once(x, lfd, 3);
    if (rc == 0) {
        check_received(x, tcp, "one\n");
        check_received(x, peer, "two\nSTOP\n");
    }
    /* The same loop runs again (the header says so), also after a failure. */
    int peer2 = adopted_pair(x);
    if (send(peer2, "again\nSTOP\n", 11, MSG_NOSIGNAL) != 11)
        tt_violation(x, "driver", "send: %s", strerror(errno));
    unsigned long fired = fi_fired();
    if (run_once(x, lfd, rc == 0 ? 2 : 4) < 0 && fi_fired() == fired)
        tt_violation(x, "retry fails", "evl_run fails again after a failed run");
    tt_finish(x);
}

static void adopt_echo(tt_ctx *x)
{
    evl_options o = quiet_options();
    new_loop(x, &o);
    int sv[2];
    tt_pair(x, sv);
    (void)adopt(x, sv[0]);
    tt_expect_served_or_closed(x, echo(x, sv[1], "hello\n"), "adopted");
    /* Refusals the header documents, and the fd stays the caller's. */
    unsigned long fired = fi_fired();
    if (x->conns[0].c && evl_adopt(x->l, sv[0]))
        tt_violation(x, "wrong errno", "an fd was adopted twice");
    if (x->conns[0].c && errno != EEXIST) {
        if (fi_fired() == fired)
            tt_violation(x, "wrong errno", "adopting an fd twice: %s, not EEXIST",
                         strerrorname_np(errno));
        tt_check_failure(x, "evl_adopt(twice)", errno);
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        tt_violation(x, "driver", "pipe: %s", strerror(errno));
    tt_own(x, p[0]);
    tt_own(x, p[1]);
    if (evl_adopt(x->l, p[0]))
        tt_violation(x, "wrong errno", "a pipe was adopted");
    if (errno != ENOTSOCK)
        tt_check_failure(x, "evl_adopt(pipe)", errno);
    if (fcntl(p[0], F_GETFD) < 0)
        tt_violation(x, "fd closed on failure", "evl_adopt closed the pipe it refused");
    tt_check_serves(x);
    tt_check_idle(x);
    tt_finish(x);
}

static void writev_echo(tt_ctx *x)
{
    evl_options o = quiet_options();
    new_loop(x, &o);
    int peer = adopted_pair(x);
    tt_expect_served_or_closed(x, echo(x, peer, "v-three-pieces\n"), "writev");
    tt_expect_served_or_closed(x, echo(x, peer, "v-again\n"), "writev again");
    tt_check_serves(x);
    tt_check_idle(x);
    tt_finish(x);
}

static void add_fd(tt_ctx *x)
{
    evl_options o = quiet_options();
    new_loop(x, &o);
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        tt_violation(x, "driver", "pipe: %s", strerror(errno));
    tt_own(x, p[0]);
    tt_own(x, p[1]);
    if (evl_add_fd(x->l, p[0]) < 0) {
        tt_check_failure(x, "evl_add_fd", errno);
        if (evl_add_fd(x->l, p[0]) < 0)
            tt_violation(x, "retry fails", "evl_add_fd: %s after a failed call",
                         strerrorname_np(errno));
    }
    if (write(p[1], "0123456789", 10) != 10)
        tt_violation(x, "driver", "write: %s", strerror(errno));
    uint64_t end = tt_now_ms() + x->stall_ms;
    while (x->fd_bytes < 10 && tt_now_ms() < end)
        tt_step(x, 5);
    if (x->fd_bytes != 10)
        tt_violation(x, "stalled fd", "on_fd read %zu of 10 bytes", x->fd_bytes);
    tt_close_own(p[1]); /* EOF: on_fd removes the fd */
    while (!x->fd_eof && tt_now_ms() < end + x->stall_ms)
        tt_step(x, 5);
    if (!x->fd_eof)
        tt_violation(x, "stalled fd", "on_fd never saw EOF");
    if (evl_remove_fd(x->l, p[0]) != -1 || errno != ENOENT)
        tt_violation(x, "wrong errno", "evl_remove_fd of a removed fd: not ENOENT");
    tt_check_serves(x);
    tt_check_idle(x);
    tt_finish(x);
}

static void free_busy(tt_ctx *x)
{
    evl_options o = quiet_options();
    o.wbuf_low = 4u << 10;
    o.wbuf_high = 16u << 10;
    new_loop(x, &o);
    /* Three connections in three states: idle, holding a partial request,
     * and with output pending to a peer that does not read; then evl_free. */
    (void)adopted_pair(x);
    int partial = adopted_pair(x);
    int stuck = adopted_pair(x);
    if (send(partial, "no newline", 10, MSG_NOSIGNAL) != 10 ||
        send(stuck, "BIG 400000\n", 11, MSG_NOSIGNAL) != 11)
        tt_violation(x, "driver", "send: %s", strerror(errno));
    for (int i = 0; i < 20; i++)
        tt_step(x, 2);
    evl_conn *closing = x->conns[0].c;
    if (closing)
        evl_close(closing); /* one more state: closing, lingering on its peer */
    tt_step(x, 2);
    tt_finish(x); /* evl_free: on_close for each, nothing leaked */
}

/* evl_listen_unix over a stale socket file (bound, closed, left behind):
 * the stale file is replaced, a unix client is echoed. A connect failing
 * in the liveness probe with EAGAIN or EINPROGRESS reads as a live server
 * with a full backlog, for which the header's answer is EADDRINUSE. */
static void unix_listener(tt_ctx *x)
{
    evl_options o = quiet_options();
    new_loop(x, &o);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    (void)snprintf(sun.sun_path, sizeof sun.sun_path, "/tmp/evl-torture-%d.sock", (int)getpid());
    int stale = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (stale < 0 || bind(stale, (struct sockaddr *)&sun, sizeof sun) < 0)
        tt_violation(x, "driver", "stale socket: %s", strerror(errno));
    (void)close(stale);
    int lfd = -1;
    for (int attempt = 0; attempt < 2 && lfd < 0; attempt++) {
        lfd = evl_listen_unix(sun.sun_path);
        if (lfd >= 0)
            break;
        if (!(x->kind == FI_CONNECT && fi_fired() && errno == EADDRINUSE))
            tt_check_failure(x, "evl_listen_unix", errno);
    }
    if (lfd < 0) {
        (void)unlink(sun.sun_path);
        tt_violation(x, "retry fails", "evl_listen_unix fails twice");
    }
    tt_own(x, lfd);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    tt_own(x, fd);
    int rc = connect(fd, (struct sockaddr *)&sun, sizeof sun); /* the backlog takes it */
    (void)unlink(sun.sun_path); /* the listener works on without its name */
    if (rc < 0)
        tt_violation(x, "driver", "connect: %s", strerror(errno));
    (void)fcntl(fd, F_SETFL, O_NONBLOCK);
    add_listener(x, lfd);
    bool readded = false;
    tt_expect_served_or_closed(x, listener_echo(x, fd, lfd, &readded, "unix\n"), "unix client");
    tt_check_serves(x);
    tt_check_idle(x);
    tt_finish(x);
}

/* The fd limit reached for real (no injection): accept4 fails with EMFILE,
 * the loop pauses accepting, and resumes once fds are back; the client that
 * waited in the backlog is then served. The sweep then fails each call of
 * the pause and the resume (epoll_ctl DEL and ADD of the listener). */
static void accept_emfile(tt_ctx *x)
{
    evl_options o = quiet_options();
    new_loop(x, &o);
    int port;
    int lfd = listener(x, &port);
    add_listener(x, lfd);
    int waiting = client(x, port); /* in the backlog until the pause ends */
    struct rlimit old;
    if (getrlimit(RLIMIT_NOFILE, &old) < 0)
        tt_violation(x, "driver", "getrlimit: %s", strerror(errno));
    int lowest = dup(0); /* the next fd the kernel would hand out */
    (void)close(lowest);
    struct rlimit low = {.rlim_cur = (rlim_t)lowest, .rlim_max = old.rlim_max};
    if (lowest < 0 || setrlimit(RLIMIT_NOFILE, &low) < 0)
        tt_violation(x, "driver", "setrlimit: %s", strerror(errno));
    for (int i = 0; i < 5; i++)
        tt_step(x, 2);
    if (setrlimit(RLIMIT_NOFILE, &old) < 0)
        tt_violation(x, "driver", "setrlimit: %s", strerror(errno));
    bool readded = false;
    tt_expect_served_or_closed(x, listener_echo(x, waiting, lfd, &readded, "later\n"),
                               "client accepted after the pause");
    unsigned long fired = fi_fired();
    enum tt_outcome out = tcp_echo(x, port, lfd, &readded, "next\n");
    if (out != TT_SERVED && fi_fired() != fired)
        out = tcp_echo(x, port, lfd, &readded, "again\n");
    if (out != TT_SERVED)
        tt_violation(x, "loop stops serving", "a new TCP client is not served after the pause");
    tt_check_idle(x);
    tt_finish(x);
}

const tt_scenario tt_scenarios[] = {
    {"accept_echo", "TCP listener, two clients echoed, a third still accepted", accept_echo},
    {"accept_emfile", "accept4 fails with EMFILE for real: pause, resume, the waiting client served", accept_emfile},
    {"backpressure", "600 kB streamed from on_drain past wbuf_high, pipelined line after", backpressure},
    {"graceful_close", "reply then evl_close: reply, FIN, on_close after the peer closes", graceful_close},
    {"half_close", "two requests and the peer's FIN: both replies, then close", half_close},
    {"run_signal", "evl_run with a listener stopped by SIGTERM, then run again", run_signal},
    {"adopt", "adopt, echo, EEXIST on a second adopt, ENOTSOCK for a pipe", adopt_echo},
    {"writev", "replies by evl_writev (sendmsg)", writev_echo},
    {"add_fd", "an extra fd (pipe) read to EOF by on_fd and removed", add_fd},
    {"unix_listener", "evl_listen_unix over a stale socket file, a unix client echoed", unix_listener},
    {"free_busy", "evl_free with idle, partial-input, backlogged and closing connections", free_busy},
};
const size_t tt_nscenarios = sizeof tt_scenarios / sizeof tt_scenarios[0];
