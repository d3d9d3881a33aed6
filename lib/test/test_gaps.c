/*
 * The paths no other unit test reaches, found by `make coverage` and `make
 * mutants`: allocation and system-call failures, invalid arguments, size
 * overflow, handlers without optional callbacks, and the rarer branches of
 * the close state machine.
 *
 * This program is linked with -Wl,--wrap=malloc,... (GAPS_WRAP in
 * lib/test/unit.mk): the library's calls land in the __wrap_ functions below,
 * which fail the one call a test armed (fault_arm) with the errno it chose,
 * and otherwise make the real call. A test checks that the armed failure
 * fired, so it cannot pass by not reaching the path it is about. Callbacks
 * of the loops here allocate nothing (TU_HOLD), so an armed allocation
 * failure hits the library.
 */
#include "testutil.h"
#include "buf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- armed failures through --wrap -------------------------------------- */

enum fn { F_MALLOC, F_CALLOC, F_REALLOC, F_EPOLL_CREATE1, F_EPOLL_CTL, F_EPOLL_WAIT,
          F_READ, F_SIGNALFD, F_FCNTL, F_ACCEPT4, F_SOCKET, F_SETSOCKOPT,
          F_GETADDRINFO, F_LISTEN, F_SIGMASK, F_N };

static struct fault {
    bool armed;
    int skip;     /* matching calls to let through first */
    int err;      /* errno of the failure */
    int fd;       /* only calls on this fd (-1: any) */
    int op;       /* epoll_ctl: only this op (0: any); fcntl: only this cmd (-1: any) */
    int fired;    /* failures made */
} F[F_N];

static void fault_arm(enum fn f, int skip, int err, int fd, int op)
{
    F[f] = (struct fault){.armed = true, .skip = skip, .err = err, .fd = fd, .op = op};
}

static void faults_reset(void) { memset(F, 0, sizeof F); }

static bool should_fail(enum fn f, int fd, int op)
{
    struct fault *x = &F[f];
    if (!x->armed || (x->fd >= 0 && fd != x->fd) || (x->op && op != x->op))
        return false;
    if (x->skip > 0) {
        x->skip--;
        return false;
    }
    x->armed = false;
    x->fired++;
    errno = x->err;
    return true;
}

/* The largest single allocation the tests let through: a real malloc
 * refuses sizes it cannot map; refusing here as well keeps ASan from
 * treating the attempt as an error (allocator_may_return_null). */
#define HUGE_ALLOC ((size_t)1 << 40)

void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__wrap_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
int __real_epoll_create1(int flags);
int __wrap_epoll_create1(int flags);
int __real_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int __real_epoll_wait(int epfd, struct epoll_event *ev, int n, int ms);
int __wrap_epoll_wait(int epfd, struct epoll_event *ev, int n, int ms);
ssize_t __real_read(int fd, void *p, size_t n);
ssize_t __wrap_read(int fd, void *p, size_t n);
int __real_signalfd(int fd, const sigset_t *mask, int flags);
int __wrap_signalfd(int fd, const sigset_t *mask, int flags);
int __real_fcntl(int fd, int cmd, ...);
int __wrap_fcntl(int fd, int cmd, ...);
int __real_accept4(int fd, struct sockaddr *a, socklen_t *al, int flags);
int __wrap_accept4(int fd, struct sockaddr *a, socklen_t *al, int flags);
int __real_socket(int dom, int type, int proto);
int __wrap_socket(int dom, int type, int proto);
int __real_setsockopt(int fd, int lvl, int name, const void *v, socklen_t vl);
int __wrap_setsockopt(int fd, int lvl, int name, const void *v, socklen_t vl);
int __real_pthread_sigmask(int how, const sigset_t *set, sigset_t *old);
int __wrap_pthread_sigmask(int how, const sigset_t *set, sigset_t *old);
int __real_listen(int fd, int backlog);
int __wrap_listen(int fd, int backlog);
int __real_getaddrinfo(const char *h, const char *s, const struct addrinfo *hi, struct addrinfo **r);
int __wrap_getaddrinfo(const char *h, const char *s, const struct addrinfo *hi, struct addrinfo **r);

static long mallocs; /* malloc calls that succeeded */

void *__wrap_malloc(size_t n)
{
    if (n > HUGE_ALLOC) {
        errno = ENOMEM;
        return NULL;
    }
    if (should_fail(F_MALLOC, -1, 0))
        return NULL;
    void *p = __real_malloc(n);
    mallocs += p != NULL;
    return p;
}
void *__wrap_calloc(size_t n, size_t m)
{
    return should_fail(F_CALLOC, -1, 0) ? NULL : __real_calloc(n, m);
}
void *__wrap_realloc(void *p, size_t n)
{
    return should_fail(F_REALLOC, -1, 0) ? NULL : __real_realloc(p, n);
}
int __wrap_epoll_create1(int flags)
{
    return should_fail(F_EPOLL_CREATE1, -1, 0) ? -1 : __real_epoll_create1(flags);
}
int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    return should_fail(F_EPOLL_CTL, fd, op) ? -1 : __real_epoll_ctl(epfd, op, fd, ev);
}
int __wrap_epoll_wait(int epfd, struct epoll_event *ev, int n, int ms)
{
    return should_fail(F_EPOLL_WAIT, -1, 0) ? -1 : __real_epoll_wait(epfd, ev, n, ms);
}
ssize_t __wrap_read(int fd, void *p, size_t n)
{
    return should_fail(F_READ, fd, 0) ? -1 : __real_read(fd, p, n);
}
int __wrap_signalfd(int fd, const sigset_t *mask, int flags)
{
    return should_fail(F_SIGNALFD, -1, 0) ? -1 : __real_signalfd(fd, mask, flags);
}
int __wrap_fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    long arg = va_arg(ap, long); /* F_GETFL ignores it; F_SETFL takes an int */
    va_end(ap);
    return should_fail(F_FCNTL, fd, cmd) ? -1 : __real_fcntl(fd, cmd, arg);
}
int __wrap_accept4(int fd, struct sockaddr *a, socklen_t *al, int flags)
{
    return should_fail(F_ACCEPT4, fd, 0) ? -1 : __real_accept4(fd, a, al, flags);
}
int __wrap_socket(int dom, int type, int proto)
{
    return should_fail(F_SOCKET, -1, 0) ? -1 : __real_socket(dom, type, proto);
}
int __wrap_setsockopt(int fd, int lvl, int name, const void *v, socklen_t vl)
{
    return should_fail(F_SETSOCKOPT, -1, name) ? -1 : __real_setsockopt(fd, lvl, name, v, vl);
}
/* pthread_sigmask returns its error instead of setting errno. */
int __wrap_pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
    int saved = errno;
    if (should_fail(F_SIGMASK, -1, how)) {
        int err = errno;
        errno = saved;
        return err;
    }
    return __real_pthread_sigmask(how, set, old);
}
int __wrap_listen(int fd, int backlog)
{
    return should_fail(F_LISTEN, -1, 0) ? -1 : __real_listen(fd, backlog);
}
/* Armed with err -1: no failure, but every address twice (a name with
 * several addresses, without depending on /etc/hosts). glibc's freeaddrinfo
 * frees node by node, so the chained lists are released whole. */
int __wrap_getaddrinfo(const char *h, const char *s, const struct addrinfo *hi, struct addrinfo **r)
{
    if (F[F_GETADDRINFO].armed && F[F_GETADDRINFO].err == -1) {
        F[F_GETADDRINFO].armed = false;
        F[F_GETADDRINFO].fired++;
        struct addrinfo *a, *b;
        int rc = __real_getaddrinfo(h, s, hi, &a);
        if (rc != 0)
            return rc;
        rc = __real_getaddrinfo(h, s, hi, &b);
        if (rc != 0) {
            freeaddrinfo(a);
            return rc;
        }
        struct addrinfo *t = a;
        while (t->ai_next)
            t = t->ai_next;
        t->ai_next = b;
        *r = a;
        return 0;
    }
    if (should_fail(F_GETADDRINFO, -1, 0))
        return F[F_GETADDRINFO].err == 0 ? EAI_NONAME : EAI_SYSTEM;
    return __real_getaddrinfo(h, s, hi, r);
}

static int gaps_setup(void **state)
{
    faults_reset();
    return tu_setup(state);
}

static int gaps_teardown(void **state)
{
    faults_reset();
    return tu_teardown(state);
}

#define GAP_TEST(f) cmocka_unit_test_setup_teardown(f, gaps_setup, gaps_teardown)

/* Asserts that the armed failure of f happened exactly once. */
#define ASSERT_FIRED(f)                                                        \
    do {                                                                       \
        if (F[f].fired != 1)                                                   \
            TU_FAIL("armed failure %s fired %d times, not once", #f, F[f].fired); \
    } while (0)

/* ---- the byte buffer ------------------------------------------------------ */

static void test_buf_reserve_beyond_memory_fails_unchanged(void **state)
{
    (void)state;
    evl__buf b = {0};
    assert_int_equal(evl__buf_append(&b, "abc", 3), 0);
    errno = 0;
    /* A size whose power-of-two rounding would overflow: the allocation is
     * asked for the size itself, and refused. */
    assert_null(evl__buf_reserve(&b, SIZE_MAX / 2 + 2));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(evl__buf_len(&b), 3);
    assert_memory_equal(evl__buf_data(&b), "abc", 3);
    assert_null(evl__buf_check(&b));
    errno = 0;
    assert_null(evl__buf_reserve(&b, SIZE_MAX - 1)); /* len + n overflows */
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(evl__buf_len(&b), 3);
    evl__buf_free(&b);
}

static void test_buf_append_enomem_leaves_buffer_unchanged(void **state)
{
    (void)state;
    evl__buf b = {0};
    assert_int_equal(evl__buf_append(&b, "hello", 5), 0);
    char big[8192];
    memset(big, 'x', sizeof big);
    fault_arm(F_MALLOC, 0, ENOMEM, -1, 0);
    errno = 0;
    assert_int_equal(evl__buf_append(&b, big, sizeof big), -1);
    ASSERT_FIRED(F_MALLOC);
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(evl__buf_len(&b), 5);
    assert_memory_equal(evl__buf_data(&b), "hello", 5);
    assert_null(evl__buf_check(&b));
    evl__buf_free(&b);
}

static void test_buf_shrink_enomem_keeps_old_region(void **state)
{
    (void)state;
    evl__buf b = {0};
    size_t n = (size_t)1 << 20;
    char *p = evl__buf_reserve(&b, n);
    assert_non_null(p);
    memset(p, 'y', n);
    evl__buf_commit(&b, n);
    size_t cap = evl__buf_cap(&b);
    /* Consuming almost all would shrink the region; the copy's allocation
     * fails, so the old region stays, with the right bytes. */
    fault_arm(F_MALLOC, 0, ENOMEM, -1, 0);
    evl__buf_consume(&b, n - 10);
    ASSERT_FIRED(F_MALLOC);
    assert_int_equal(evl__buf_cap(&b), cap);
    assert_int_equal(evl__buf_len(&b), 10);
    assert_memory_equal(evl__buf_data(&b), "yyyyyyyyyy", 10);
    /* The next consume shrinks it, now that memory is there. */
    evl__buf_consume(&b, 1);
    assert_true(evl__buf_cap(&b) < cap);
    assert_null(evl__buf_check(&b));
    assert_memory_equal(evl__buf_data(&b), "yyyyyyyyy", 9);
    evl__buf_free(&b);
}

static void test_buf_check_names_each_broken_invariant(void **state)
{
    (void)state;
    struct evl__bufmem *mem = malloc(sizeof *mem); /* a header: bytes are not read */
    assert_non_null(mem);
    evl__buf b = {.m = mem};
    *mem = (struct evl__bufmem){.cap = 0};
    assert_non_null(evl__buf_check(&b)); /* memory without cap */
    *mem = (struct evl__bufmem){.cap = 16, .off = 17};
    assert_non_null(evl__buf_check(&b)); /* offset past the end */
    *mem = (struct evl__bufmem){.cap = 16, .off = 8, .len = 9};
    assert_non_null(evl__buf_check(&b)); /* bytes past the end */
    *mem = (struct evl__bufmem){.cap = 16, .off = 0, .len = 0};
    assert_non_null(evl__buf_check(&b)); /* empty but holding memory */
    *mem = (struct evl__bufmem){.cap = EVL__BUF_SLACK + 8, .len = 1};
    assert_non_null(evl__buf_check(&b)); /* capacity beyond 4*len + slack */
    *mem = (struct evl__bufmem){.cap = EVL__BUF_SLACK + 4, .len = 1};
    assert_null(evl__buf_check(&b)); /* exactly at the bound: sound */
    *mem = (struct evl__bufmem){.cap = 16, .off = 8, .len = 8};
    assert_null(evl__buf_check(&b)); /* exactly full: sound */
    free(mem);
    b = (evl__buf){0};
    assert_null(evl__buf_check(&b));
}

/* ---- creating a loop -------------------------------------------------------- */

/* The defaults with the i-th invalid setting (false past the last). */
static bool invalid_options(int i, evl_options *o)
{
    evl_options_default(o);
    switch (i) {
    case 0: o->tick_ms = -1; break;
    case 1: o->idle_timeout_ms = -1; break;
    case 2: o->close_timeout_ms = -1; break;
    case 3: o->rbuf_max = 0; break;
    case 4: o->write_quantum = 0; break;
    case 5: o->max_events = 0; break;
    case 6: o->wbuf_low = o->wbuf_high + 1; break;
    case 7: o->wbuf_high = 0, o->wbuf_low = 0; break;
    case 8: o->wbuf_max = o->wbuf_high - 1; break;
    case 9: o->max_events = -1; break;
    case 10: o->tick_ms = INT_MIN; break;
    case 11: o->wbuf_max = 1; break;
    case 12: o->rbuf_max = 0, o->tick_ms = 0; break;
    default: return false;
    }
    return true;
}

static void test_new_rejects_each_invalid_option(void **state)
{
    (void)state;
    evl_handler h = {0};
    evl_options d;
    evl_options bad;
    for (int i = 0; invalid_options(i, &bad); i++) {
        errno = 0;
        evl_loop *l = evl_new(&h, NULL, &bad);
        if (l) {
            evl_free(l);
            TU_FAIL("invalid options #%d accepted", i);
        }
        assert_int_equal(errno, EINVAL);
    }
    evl_options_default(&d);
    errno = 0;
    assert_null(evl_new(NULL, NULL, &d));
    assert_int_equal(errno, EINVAL);
    /* The edges that are valid. */
    evl_options ok = d;
    ok.tick_ms = ok.idle_timeout_ms = ok.close_timeout_ms = 0;
    ok.wbuf_low = ok.wbuf_high;
    ok.wbuf_max = ok.wbuf_high;
    evl_loop *l = evl_new(&h, NULL, &ok);
    assert_non_null(l);
    evl_free(l);
    l = evl_new(&h, NULL, NULL); /* NULL: the defaults */
    assert_non_null(l);
    assert_int_equal(evl_get_options(l)->tick_ms, d.tick_ms);
    evl_free(l);
    evl_free(NULL); /* allowed, does nothing */
}

static void test_new_fails_cleanly_on_each_resource(void **state)
{
    (void)state;
    evl_handler h = {0};
    struct { enum fn f; int skip; int err; } cases[] = {
        {F_CALLOC, 0, ENOMEM},         /* the loop itself */
        {F_EPOLL_CREATE1, 0, EMFILE},  /* the epoll fd */
        {F_CALLOC, 1, ENOMEM},         /* the event array */
        {F_MALLOC, 0, ENOMEM},         /* the read buffer */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        faults_reset();
        fault_arm(cases[i].f, cases[i].skip, cases[i].err, -1, 0);
        errno = 0;
        evl_loop *l = evl_new(&h, NULL, NULL);
        if (l) {
            evl_free(l);
            TU_FAIL("case %zu: evl_new succeeded", i);
        }
        ASSERT_FIRED(cases[i].f);
        assert_int_equal(errno, cases[i].err);
    }
    /* Nothing leaked (ASan) and a loop can still be made. */
    faults_reset();
    evl_loop *l = evl_new(&h, NULL, NULL);
    assert_non_null(l);
    evl_free(l);
}

/* ---- registering fds ---------------------------------------------------------- */

static void test_adopt_failures_leave_fd_to_caller(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    /* a number past the fd table's first 64 slots (the loop's own eventfd
     * is in them already): adopting it must grow the table */
    int hi = fcntl(sv[0], F_DUPFD_CLOEXEC, 100);
    assert_true(hi >= 100);
    close(sv[0]);
    sv[0] = hi;
    tu_track_fd(sv[1]); /* sv[0] is the loop's once adopted */
    struct { enum fn f; int err; int op; } cases[] = {
        {F_REALLOC, ENOMEM, 0},           /* the fd table: it grows */
        {F_CALLOC, ENOMEM, 0},            /* the connection */
        {F_EPOLL_CTL, ENOSPC, EPOLL_CTL_ADD}, /* max_user_watches */
        {F_FCNTL, EBADF, F_SETFL},        /* making it non-blocking */
        {F_FCNTL, EBADF, F_GETFL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        faults_reset();
        fault_arm(cases[i].f, 0, cases[i].err, -1, cases[i].op);
        errno = 0;
        assert_null(evl_adopt(s->l, sv[0]));
        ASSERT_FIRED(cases[i].f);
        assert_int_equal(errno, cases[i].err);
        assert_null(evl_conn_of(s->l, sv[0]));
        assert_true(fcntl(sv[0], F_GETFD) >= 0); /* still the caller's, open */
        assert_int_equal(tu_stats(s).conns, 0);
    }
    faults_reset();
    /* After every failure the same fd is adopted and served. */
    tu_rec *r = tu_adopt(s, sv[0], sv[1]);
    tu_peer_sends(sv[1], "x");
    TU_RUN_UNTIL(s, r->reads == 1, 2000);
    tu_finish(s);
}

static void test_add_fd_and_listener_errors(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    errno = 0;
    assert_int_equal(evl_add_fd(s->l, -1), -1);
    assert_int_equal(errno, EBADF);
    errno = 0;
    assert_int_equal(evl_add_listener(s->l, -1), -1);
    assert_int_equal(errno, EBADF);
    /* epoll refuses a regular file: the error is the caller's to see. */
    int file = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    assert_true(file >= 0);
    tu_track_fd(file);
    errno = 0;
    assert_int_equal(evl_add_fd(s->l, file), -1);
    assert_int_equal(errno, EPERM);
    assert_int_equal(evl_remove_fd(s->l, file), -1); /* never registered */
    assert_int_equal(errno, ENOENT);

    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    int hi = fcntl(p[0], F_DUPFD_CLOEXEC, 100); /* past the table's first 64 */
    assert_true(hi >= 100);
    close(p[0]);
    p[0] = hi;
    tu_track_fd(p[0]);
    tu_track_fd(p[1]);
    fault_arm(F_CALLOC, 0, ENOMEM, -1, 0);
    assert_int_equal(evl_add_fd(s->l, p[0]), -1);
    ASSERT_FIRED(F_CALLOC);
    assert_int_equal(errno, ENOMEM);
    fault_arm(F_REALLOC, 0, ENOMEM, -1, 0); /* fd 100+ grows the table */
    assert_int_equal(evl_add_fd(s->l, p[0]), -1);
    ASSERT_FIRED(F_REALLOC);
    assert_int_equal(evl_remove_fd(s->l, p[0]), -1);
    assert_int_equal(errno, ENOENT);
    fault_arm(F_FCNTL, 0, EBADF, p[0], F_SETFL);
    assert_int_equal(evl_add_fd(s->l, p[0]), -1);
    ASSERT_FIRED(F_FCNTL);
    assert_int_equal(errno, EBADF);
    assert_int_equal(evl_remove_fd(s->l, p[0]), -1);
    /* Now it works, and twice is EEXIST. */
    assert_int_equal(evl_add_fd(s->l, p[0]), 0);
    errno = 0;
    assert_int_equal(evl_add_fd(s->l, p[0]), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(evl_remove_fd(s->l, p[0]), 0);

    int ls = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(ls >= 0);
    tu_track_fd(ls);
    fault_arm(F_REALLOC, 0, ENOMEM, -1, 0); /* the listener array */
    assert_int_equal(evl_add_listener(s->l, ls), -1);
    ASSERT_FIRED(F_REALLOC);
    fault_arm(F_EPOLL_CTL, 0, ENOMEM, ls, EPOLL_CTL_ADD);
    assert_int_equal(evl_add_listener(s->l, ls), -1);
    ASSERT_FIRED(F_EPOLL_CTL);
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(evl_add_listener(s->l, ls), 0);
    errno = 0;
    assert_int_equal(evl_add_listener(s->l, ls), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(evl_remove_fd(s->l, ls), -1); /* a listener is not an extra fd */
    assert_int_equal(errno, ENOENT);
    /* The listener works after the failures. */
    int c = tu_tcp_connect(evl_local_port(ls));
    tu_track_fd(c);
    TU_RUN_UNTIL(s, s->accepts == 1, 2000);
    tu_finish(s);
}

/* ---- connection I/O failures ----------------------------------------------- */

/* A pair whose loop end is adopted, with the peer's and loop's buffers small. */
static tu_rec *small_pair(tu_state *s)
{
    tu_rec *r = tu_pair(s);
    tu_set_sndbuf(r->fd, 4096);
    tu_set_rcvbuf(r->peer, 4096);
    return r;
}

static void test_read_tail_kept_on_enomem_aborts(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = tu_pair(s);
    tu_peer_sends(r->peer, "held");
    /* on_read consumes nothing: the input must be copied out of the loop's
     * read buffer, and that copy fails. */
    fault_arm(F_MALLOC, 0, ENOMEM, -1, 0);
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    ASSERT_FIRED(F_MALLOC);
    assert_int_equal(r->reads, 1);
    tu_finish(s);
}

static void test_read_reserve_enomem_aborts(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = tu_pair(s);
    tu_peer_sends(r->peer, "first");
    TU_RUN_UNTIL(s, r->reads == 1, 2000);
    /* Input is buffered now: the next read goes into the buffer, whose
     * growth fails. */
    fault_arm(F_MALLOC, 0, ENOMEM, -1, 0);
    tu_peer_send(r->peer, "0123456789abcdef0123456789abcdef", 32);
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    ASSERT_FIRED(F_MALLOC);
    assert_int_equal(r->reads, 1);
    tu_finish(s);
}

static void test_read_eintr_and_eagain_retry(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_SINK);
    tu_rec *r = tu_pair(s);
    tu_peer_sends(r->peer, "abc");
    fault_arm(F_READ, 0, EINTR, r->fd, 0);
    tu_step(s, 100);
    ASSERT_FIRED(F_READ);
    assert_int_equal(r->reads, 0);
    fault_arm(F_READ, 0, EAGAIN, r->fd, 0);
    tu_step(s, 100);
    assert_int_equal(F[F_READ].fired, 1);
    assert_int_equal(r->reads, 0);
    assert_false(evl_peer_eof(r->c));
    TU_RUN_UNTIL(s, r->in.len == 3, 2000);
    assert_memory_equal(r->in.p, "abc", 3);
    tu_finish(s);
}

/* One line per call; once the peer is gone, try a write and record it. */
static void line_then_write(tu_state *s, tu_rec *r)
{
    size_t n;
    const char *p = evl_data(r->c, &n);
    const char *nl = p ? memchr(p, '\n', n) : NULL;
    if (evl_peer_eof(r->c)) {
        errno = 0;
        r->close_write_ret = evl_write(r->c, "z", 1);
        r->close_write_errno = errno;
        r->user++;
    }
    if (nl)
        evl_consume(r->c, (size_t)(nl - p) + 1);
    (void)s;
}

static void test_read_error_marks_broken_and_refuses_writes(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    s->read_hook = line_then_write;
    tu_rec *r = tu_pair(s);
    tu_peer_sends(r->peer, "a\nb\n");
    tu_step(s, 1000);
    assert_int_equal(r->reads, 1); /* "b" waits for the next iteration */
    tu_peer_sends(r->peer, "c");
    fault_arm(F_READ, 0, ECONNRESET, r->fd, 0);
    /* The read fails: input already received is still delivered, and a
     * write from that on_read is refused with EPIPE. */
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    ASSERT_FIRED(F_READ);
    assert_int_equal(r->reads, 2);
    assert_int_equal(r->user, 1);
    assert_int_equal(r->close_write_ret, -1);
    assert_int_equal(r->close_write_errno, EPIPE);
    tu_finish(s);
}

static void test_write_argument_errors(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = tu_pair(s);
    errno = 0;
    assert_int_equal(evl_writev(r->c, NULL, -1), -1);
    assert_int_equal(errno, EINVAL);
    char a = 'a';
    struct iovec big[2] = {{&a, SIZE_MAX / 2 + 1}, {&a, SIZE_MAX / 2 + 1}};
    errno = 0;
    assert_int_equal(evl_writev(r->c, big, 2), -1); /* the total overflows */
    assert_int_equal(errno, EINVAL);
    assert_int_equal(evl_pending(r->c), 0);
    assert_int_equal(evl_writev(r->c, big, 0), 0); /* nothing to write */
    assert_int_equal(evl_write(r->c, &a, 0), 0);
    /* The connection is unharmed. */
    assert_int_equal(evl_write(r->c, "ok", 2), 0);
    tu_peer_expect(s, r->peer, "ok", 2000);
    /* After evl_close: EPIPE, and evl_wake does nothing. */
    tu_peer_sends(r->peer, "in");
    TU_RUN_UNTIL(s, r->reads == 1, 2000);
    evl_conn *c = r->c;
    evl_close(c);
    errno = 0;
    assert_int_equal(evl_write(c, "x", 1), -1);
    assert_int_equal(errno, EPIPE);
    evl_wake(c);
    tu_step(s, 10);
    assert_int_equal(r->reads, 1);
    /* The same after evl_abort, before the loop reaped it. */
    tu_rec *r2 = tu_pair(s);
    tu_peer_sends(r2->peer, "in");
    TU_RUN_UNTIL(s, r2->reads == 1, 2000);
    evl_abort(r2->c);
    evl_wake(r2->c);
    errno = 0;
    assert_int_equal(evl_write(r2->c, "x", 1), -1);
    assert_int_equal(errno, EPIPE);
    TU_RUN_UNTIL(s, r2->closes == 1, 2000);
    assert_int_equal(r2->reads, 1);
    tu_finish(s);
}

static void test_queue_enomem_aborts(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = small_pair(s);
    size_t n = 1 << 20;
    char *p = malloc(n);
    assert_non_null(p);
    memset(p, 'q', n);
    /* The socket takes part; the rest must be queued, and that fails. */
    fault_arm(F_MALLOC, 0, ENOMEM, -1, 0);
    errno = 0;
    int rc = evl_write(r->c, p, n);
    int err = errno;
    free(p);
    ASSERT_FIRED(F_MALLOC);
    assert_int_equal(rc, -1);
    assert_int_equal(err, ENOMEM);
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    tu_finish(s);
}

/* ---- the close state machine ---------------------------------------------- */

static void test_close_keeps_flushing_after_peer_eof(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    tu_state *s = tu_new(&o, TU_HOLD);
    tu_rec *r = small_pair(s);
    size_t n = 256 << 10;
    char *p = malloc(n);
    assert_non_null(p);
    tu_pattern(p, n, 0, 7);
    assert_int_equal(evl_write(r->c, p, n), 0);
    free(p);
    assert_true(evl_pending(r->c) > 0);
    evl_close(r->c);
    /* The peer says it will send no more, but still reads: what was written
     * before the close must all arrive, then EOF. */
    assert_int_equal(shutdown(r->peer, SHUT_WR), 0);
    tu_step(s, 50);
    assert_int_equal(r->closes, 0);
    tu_dbuf got = {0};
    tu_peer_collect(s, r->peer, &got, n, 10000, NULL);
    assert_int_equal(got.len, n);
    assert_true(tu_pattern_mismatch(got.p, n, 0, 7) < 0);
    tu_dbuf_free(&got);
    tu_peer_expect_eof(s, r->peer, 2000);
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    tu_finish(s);
}

static void test_close_read_errors_while_lingering(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = tu_pair(s);
    evl_close(r->c); /* nothing pending: shut down, waiting for the peer */
    tu_peer_expect_eof(s, r->peer, 2000);
    tu_peer_sends(r->peer, "late");
    fault_arm(F_READ, 0, EINTR, r->fd, 0);
    tu_step(s, 100);
    ASSERT_FIRED(F_READ);
    assert_int_equal(r->closes, 0); /* EINTR is no EOF */
    fault_arm(F_READ, 0, EAGAIN, r->fd, 0);
    tu_peer_sends(r->peer, "more");
    tu_step(s, 100);
    assert_int_equal(r->closes, 0);
    fault_arm(F_READ, 0, ECONNRESET, r->fd, 0);
    tu_peer_sends(r->peer, "last");
    TU_RUN_UNTIL(s, r->closes == 1, 2000); /* an error ends the wait */
    ASSERT_FIRED(F_READ);
    tu_finish(s);
}

/* ---- handlers without the optional callbacks --------------------------------- */

static int bare_reads;
static void bare_on_read(evl_conn *c)
{
    size_t n;
    (void)evl_data(c, &n);
    bare_reads++;
    evl_consume(c, n);
}

static void test_handler_with_no_optional_callbacks(void **state)
{
    (void)state;
    evl_handler h = {0}; /* no callback at all */
    evl_options o;
    evl_options_default(&o);
    o.tick_ms = 10;
    o.wbuf_low = 1024;
    o.wbuf_high = 4096;
    evl_loop *l = evl_new(&h, NULL, &o);
    assert_non_null(l);
    /* Input without on_read stays unread; EOF closes without on_close. */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tu_track_fd(sv[1]);
    tu_set_sndbuf(sv[0], 4096);
    tu_set_rcvbuf(sv[1], 4096);
    evl_conn *c = evl_adopt(l, sv[0]);
    assert_non_null(c);
    tu_peer_sends(sv[1], "ignored");
    /* Written output is flushed, past wbuf_low, with no on_drain to call. */
    char big[16384];
    memset(big, 'd', sizeof big);
    tu_set_nonblock(sv[1]);
    assert_int_equal(evl_write(c, big, sizeof big), 0);
    size_t got = 0;
    char buf[4096];
    uint64_t end = tu_now_ms() + 5000;
    while (got < sizeof big && tu_now_ms() < end) {
        assert_true(evl_run_once(l, 10) >= 0);
        ssize_t k;
        while ((k = read(sv[1], buf, sizeof buf)) > 0)
            got += (size_t)k;
    }
    assert_int_equal(got, sizeof big);
    assert_int_equal(shutdown(sv[1], SHUT_WR), 0);
    struct evl_stats st;
    end = tu_now_ms() + 5000;
    do {
        assert_true(evl_run_once(l, 10) >= 0);
        evl_stats(l, &st);
    } while (st.closed == 0 && tu_now_ms() < end);
    assert_int_equal(st.closed, 1);
    assert_true(st.ticks >= 1); /* ticks without on_tick */
    /* An extra fd without on_fd is dropped at its first event, not spun on. */
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    int hi = fcntl(p[0], F_DUPFD_CLOEXEC, 100); /* past the table's first 64 */
    assert_true(hi >= 100);
    close(p[0]);
    p[0] = hi;
    tu_track_fd(p[0]);
    tu_track_fd(p[1]);
    assert_int_equal(evl_add_fd(l, p[0]), 0);
    assert_int_equal(write(p[1], "e", 1), 1);
    assert_int_equal(evl_run_once(l, 100), 1);
    errno = 0;
    assert_int_equal(evl_remove_fd(l, p[0]), -1);
    assert_int_equal(errno, ENOENT);
    /* A listener without on_accept accepts. */
    int ls = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(ls >= 0);
    tu_track_fd(ls);
    assert_int_equal(evl_add_listener(l, ls), 0);
    int cl = tu_tcp_connect(evl_local_port(ls));
    tu_track_fd(cl);
    end = tu_now_ms() + 5000;
    do {
        assert_true(evl_run_once(l, 10) >= 0);
        evl_stats(l, &st);
    } while (st.accepted < 2 && tu_now_ms() < end);
    assert_int_equal(st.accepted, 2);
    evl_free(l);
}

static void test_on_read_only_handler_serves(void **state)
{
    (void)state;
    evl_handler h = {.on_read = bare_on_read};
    evl_loop *l = evl_new(&h, NULL, NULL);
    assert_non_null(l);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tu_track_fd(sv[1]);
    evl_conn *c = evl_adopt(l, sv[0]);
    assert_non_null(c);
    bare_reads = 0;
    tu_peer_sends(sv[1], "abc");
    assert_int_equal(evl_run_once(l, 1000), 1);
    assert_int_equal(bare_reads, 1);
    evl_abort(c); /* no on_close to call */
    assert_true(evl_run_once(l, 0) >= 0);
    struct evl_stats st;
    evl_stats(l, &st);
    assert_int_equal(st.closed, 1);
    assert_int_equal(st.conns, 0);
    evl_free(l);
}

/* ---- accepting ------------------------------------------------------------------ */

static void test_accept_errors_skip_or_pause(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    int ls = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(ls >= 0);
    tu_track_fd(ls);
    assert_int_equal(evl_add_listener(s->l, ls), 0);
    int port = evl_local_port(ls);
    /* Errors about one client: skipped, the next accept4 takes the client. */
    int skip_errs[] = {EINTR, ECONNABORTED, EPROTO};
    int accepted = 0;
    for (size_t i = 0; i < 3; i++) {
        int cl = tu_tcp_connect(port);
        tu_track_fd(cl);
        fault_arm(F_ACCEPT4, 0, skip_errs[i], ls, 0);
        tu_step(s, 1000);
        ASSERT_FIRED(F_ACCEPT4);
        assert_int_equal(s->accepts, ++accepted);
        assert_int_equal(tu_stats(s).emfile, 0);
    }
    /* Out of a resource: counted, and accepting pauses, then resumes. */
    int pause_errs[] = {EMFILE, ENFILE, ENOBUFS, ENOMEM};
    for (size_t i = 0; i < 4; i++) {
        int cl = tu_tcp_connect(port);
        tu_track_fd(cl);
        fault_arm(F_ACCEPT4, 0, pause_errs[i], ls, 0);
        tu_step(s, 1000);
        ASSERT_FIRED(F_ACCEPT4);
        assert_int_equal(tu_stats(s).emfile, i + 1);
        assert_int_equal(s->accepts, accepted);
        TU_RUN_UNTIL(s, s->accepts == accepted + 1, 3000);
        accepted++;
    }
    tu_finish(s);
}

static void test_accepted_conn_registration_failure_rejects(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    int ls = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(ls >= 0);
    tu_track_fd(ls);
    assert_int_equal(evl_add_listener(s->l, ls), 0);
    int cl = tu_tcp_connect(evl_local_port(ls));
    tu_track_fd(cl);
    fault_arm(F_CALLOC, 0, ENOMEM, -1, 0);
    TU_RUN_UNTIL(s, tu_stats(s).rejected == 1, 2000);
    ASSERT_FIRED(F_CALLOC);
    assert_int_equal(s->accepts, 0);
    assert_int_equal(tu_peer_expect_closed(s, cl, 2000), 0);
    tu_finish(s);
}

/* ---- running ------------------------------------------------------------------- */

static void test_run_once_reports_epoll_wait_failure(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    fault_arm(F_EPOLL_WAIT, 0, EBADF, -1, 0);
    errno = 0;
    assert_int_equal(evl_run_once(s->l, 0), -1);
    ASSERT_FIRED(F_EPOLL_WAIT);
    assert_int_equal(errno, EBADF);
    /* EINTR is not an error: 0 events. */
    fault_arm(F_EPOLL_WAIT, 0, EINTR, -1, 0);
    assert_int_equal(evl_run_once(s->l, 0), 0);
    ASSERT_FIRED(F_EPOLL_WAIT);
    /* evl_run returns -1 on it, after its clean-up: a later run works. */
    fault_arm(F_EPOLL_WAIT, 0, EINVAL, -1, 0);
    errno = 0;
    assert_int_equal(evl_run(s->l, -1), -1);
    ASSERT_FIRED(F_EPOLL_WAIT);
    assert_int_equal(errno, EINVAL);
    evl_stop(s->l);
    assert_int_equal(evl_run(s->l, -1), 0);
    tu_finish(s);
}

static void test_run_setup_failures_restore_the_mask(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    sigset_t before, after;
    assert_int_equal(sigprocmask(SIG_SETMASK, NULL, &before), 0);
    fault_arm(F_SIGNALFD, 0, EMFILE, -1, 0);
    errno = 0;
    assert_int_equal(evl_run(s->l, -1), -1);
    ASSERT_FIRED(F_SIGNALFD);
    assert_int_equal(errno, EMFILE);
    assert_int_equal(sigprocmask(SIG_SETMASK, NULL, &after), 0);
    assert_int_equal(sigismember(&after, SIGTERM), sigismember(&before, SIGTERM));
    assert_int_equal(sigismember(&after, SIGINT), sigismember(&before, SIGINT));
    /* The signalfd is made, but registering it fails: closed again. */
    fault_arm(F_EPOLL_CTL, 0, ENOMEM, -1, EPOLL_CTL_ADD);
    errno = 0;
    assert_int_equal(evl_run(s->l, -1), -1);
    ASSERT_FIRED(F_EPOLL_CTL);
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(sigprocmask(SIG_SETMASK, NULL, &after), 0);
    assert_int_equal(sigismember(&after, SIGTERM), sigismember(&before, SIGTERM));
    /* A listener that cannot be added fails the run before anything else. */
    int file = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    assert_true(file >= 0);
    tu_track_fd(file);
    errno = 0;
    assert_int_equal(evl_run(s->l, file), -1);
    assert_int_equal(errno, EPERM);
    evl_stop(s->l);
    assert_int_equal(evl_run(s->l, -1), 0);
    tu_finish(s);
}

static void test_ticks_do_not_burst_after_a_stall(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.tick_ms = 200;
    tu_state *s = tu_new(&o, TU_HOLD);
    TU_RUN_UNTIL(s, s->ticks >= 1, 3000);
    int t = s->ticks;
    usleep(1000 * 1000); /* five ticks' worth without running */
    tu_step(s, 0);
    assert_int_equal(s->ticks, t + 1);
    tu_step(s, 0);
    assert_int_equal(s->ticks, t + 1); /* the next one is a full period away */
    tu_finish(s);
}

/* ---- listening sockets ---------------------------------------------------------- */

static void test_listen_argument_errors(void **state)
{
    (void)state;
    int bad_ports[] = {-1, 65536, INT_MAX, INT_MIN};
    for (size_t i = 0; i < 4; i++) {
        errno = 0;
        assert_int_equal(evl_listen_tcp("127.0.0.1", bad_ports[i], 0), -1);
        assert_int_equal(errno, EINVAL);
    }
    errno = 0;
    assert_int_equal(evl_listen_tcp("127.0.0.1", 0, 0x100), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(evl_listen_unix(NULL), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(evl_listen_unix(""), -1);
    assert_int_equal(errno, EINVAL);
    char longpath[sizeof ((struct sockaddr_un *)0)->sun_path + 1];
    memset(longpath, 'p', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = '\0';
    errno = 0;
    assert_int_equal(evl_listen_unix(longpath), -1);
    assert_int_equal(errno, EINVAL);
    /* evl_local_port: not a socket, and a unix socket (no port). */
    errno = 0;
    assert_int_equal(evl_local_port(-1), -1);
    assert_int_equal(errno, EBADF);
    char path[64];
    (void)snprintf(path, sizeof path, "/tmp/evl-gaps-%d.sock", (int)getpid());
    int us = evl_listen_unix(path);
    assert_true(us >= 0);
    errno = 0;
    assert_int_equal(evl_local_port(us), -1);
    assert_int_equal(errno, EAFNOSUPPORT);
    close(us);
    unlink(path);
}

static void test_listen_tcp_families_and_errors(void **state)
{
    (void)state;
    /* IPv6 loopback, when the machine has it. */
    int v6 = evl_listen_tcp("::1", 0, EVL_LISTEN_REUSEPORT);
    if (v6 >= 0) {
        assert_true(evl_local_port(v6) > 0);
        close(v6);
    } else {
        assert_true(errno == EADDRNOTAVAIL || errno == EAFNOSUPPORT);
    }
    /* A name with several addresses (localhost: ::1 and 127.0.0.1, from
     * /etc/hosts): the first that can listen is taken. */
    int any = evl_listen_tcp("localhost", 0, 0);
    assert_true(any >= 0);
    assert_true(evl_local_port(any) > 0);
    close(any);
    /* Two addresses that both could listen: the first is taken and the
     * second never tried (no fd opened for it). */
    int probe = dup(0);
    assert_true(probe >= 0);
    close(probe);
    fault_arm(F_GETADDRINFO, 0, -1, -1, 0);
    int two = evl_listen_tcp("127.0.0.1", 0, 0);
    ASSERT_FIRED(F_GETADDRINFO);
    assert_int_equal(two, probe);
    close(two);
    int again = dup(0);
    assert_int_equal(again, probe); /* nothing else was left open */
    close(again);
    /* listen() failing after bind: -1 with its errno, the socket closed. */
    fault_arm(F_LISTEN, 0, EADDRINUSE, -1, 0);
    errno = 0;
    assert_int_equal(evl_listen_tcp("127.0.0.1", 0, 0), -1);
    ASSERT_FIRED(F_LISTEN);
    assert_int_equal(errno, EADDRINUSE);
    again = dup(0);
    assert_int_equal(again, probe);
    close(again);
    /* A port in use: the error of the last address tried. */
    int a = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(a >= 0);
    errno = 0;
    assert_int_equal(evl_listen_tcp("127.0.0.1", evl_local_port(a), 0), -1);
    assert_int_equal(errno, EADDRINUSE);
    close(a);
    /* Name resolution failures: EADDRNOTAVAIL, or the system's errno. */
    fault_arm(F_GETADDRINFO, 0, 0, -1, 0);
    errno = 0;
    assert_int_equal(evl_listen_tcp("localhost", 0, 0), -1);
    ASSERT_FIRED(F_GETADDRINFO);
    assert_int_equal(errno, EADDRNOTAVAIL);
    fault_arm(F_GETADDRINFO, 0, EMFILE, -1, 0);
    errno = 0;
    assert_int_equal(evl_listen_tcp("localhost", 0, 0), -1);
    assert_int_equal(errno, EMFILE);
    /* Each system call of the set-up failing: -1 with its errno, no fd left. */
    fault_arm(F_SOCKET, 0, EMFILE, -1, 0);
    errno = 0;
    assert_int_equal(evl_listen_tcp(NULL, 0, 0), -1);
    ASSERT_FIRED(F_SOCKET);
    assert_int_equal(errno, EMFILE);
    fault_arm(F_SETSOCKOPT, 0, ENOPROTOOPT, -1, SO_REUSEADDR);
    errno = 0;
    assert_int_equal(evl_listen_tcp(NULL, 0, 0), -1);
    ASSERT_FIRED(F_SETSOCKOPT);
    assert_int_equal(errno, ENOPROTOOPT);
    fault_arm(F_SETSOCKOPT, 0, ENOPROTOOPT, -1, SO_REUSEPORT);
    errno = 0;
    assert_int_equal(evl_listen_tcp(NULL, 0, EVL_LISTEN_REUSEPORT), -1);
    ASSERT_FIRED(F_SETSOCKOPT);
    assert_int_equal(errno, ENOPROTOOPT);
    int rp = evl_listen_tcp("127.0.0.1", 0, EVL_LISTEN_REUSEPORT);
    assert_true(rp >= 0);
    int on = 0;
    socklen_t ol = sizeof on;
    assert_int_equal(getsockopt(rp, SOL_SOCKET, SO_REUSEPORT, &on, &ol), 0);
    assert_int_equal(on, 1);
    close(rp);
    /* Without the flag, SO_REUSEPORT is never set. */
    fault_arm(F_SETSOCKOPT, 0, ENOPROTOOPT, -1, SO_REUSEPORT);
    int b = evl_listen_tcp(NULL, 0, 0);
    assert_true(b >= 0);
    assert_int_equal(F[F_SETSOCKOPT].fired, 0);
    close(b);
    /* A unix socket sets no SO_REUSEADDR. */
    char path[64];
    (void)snprintf(path, sizeof path, "/tmp/evl-gaps-%d.sock", (int)getpid());
    fault_arm(F_SETSOCKOPT, 0, ENOPROTOOPT, -1, SO_REUSEADDR);
    int us = evl_listen_unix(path);
    assert_true(us >= 0);
    assert_int_equal(F[F_SETSOCKOPT].fired, 0);
    close(us);
    unlink(path);
}

/* ---- additions after the fixes of issue 11 ------------------------------------ */

static void test_release_without_hold_changes_nothing(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_SINK);
    tu_rec *r = tu_pair(s);
    evl_release(r->c); /* no hold: nothing to release, no count below zero */
    evl_release(r->c);
    tu_peer_sends(r->peer, "req");
    assert_int_equal(shutdown(r->peer, SHUT_WR), 0);
    /* Without a hold the half-closed connection closes as before. */
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    assert_int_equal(r->in.len, 3);
    tu_finish(s);
}

/* Two listeners; one fails to accept with err: what happens to each. */
static void accept_error_case(int err, bool dropped)
{
    tu_state *s = tu_new(NULL, TU_HOLD);
    int a = evl_listen_tcp("127.0.0.1", 0, 0);
    int b = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(a >= 0 && b >= 0);
    tu_track_fd(a);
    tu_track_fd(b);
    assert_int_equal(evl_add_listener(s->l, a), 0);
    assert_int_equal(evl_add_listener(s->l, b), 0);
    int cb = tu_tcp_connect(evl_local_port(b));
    tu_track_fd(cb);
    fault_arm(F_ACCEPT4, 0, err, b, 0);
    tu_step(s, 1000);
    ASSERT_FIRED(F_ACCEPT4);
    assert_int_equal(tu_stats(s).accept_errors, 1);
    assert_int_equal(tu_stats(s).emfile, 0);
    assert_int_equal(s->accepts, 0);
    /* The other listener is served either way (at once, or after the pause). */
    int ca = tu_tcp_connect(evl_local_port(a));
    tu_track_fd(ca);
    TU_RUN_UNTIL(s, s->accepts >= 1, 3000);
    if (dropped) {
        /* b left the loop (the fd is still the caller's): added again, fine. */
        tu_run_for(s, 300);
        assert_int_equal(s->accepts, 1);
        assert_true(fcntl(b, F_GETFD) >= 0);
        assert_int_equal(evl_add_listener(s->l, b), 0);
    }
    TU_RUN_UNTIL(s, s->accepts == 2, 3000); /* b's client, now or after the pause */
    tu_finish(s);
}

static void test_accept_errors_drop_or_pause_one_listener(void **state)
{
    (void)state;
    int drop[] = {EINVAL, EBADF, ENOTSOCK, EOPNOTSUPP};
    for (size_t i = 0; i < 4; i++)
        accept_error_case(drop[i], true);
    accept_error_case(EPERM, false);
}

static void test_add_listener_nonblock_failure(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    int ls = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(ls >= 0);
    tu_track_fd(ls);
    fault_arm(F_FCNTL, 0, EBADF, ls, F_SETFL);
    errno = 0;
    assert_int_equal(evl_add_listener(s->l, ls), -1);
    ASSERT_FIRED(F_FCNTL);
    assert_int_equal(errno, EBADF);
    assert_int_equal(evl_add_listener(s->l, ls), 0); /* nothing was left half-added */
    tu_finish(s);
}

static void sigmask_tick(tu_state *s)
{
    sigset_t m;
    evl_child_sigmask(s->l, &m);
    s->size = (size_t)(sigismember(&m, SIGTERM) * 2 + sigismember(&m, SIGINT)) + 1;
    evl_stop(s->l);
}

static void test_child_sigmask_inside_run_is_the_mask_before(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.tick_ms = 10;
    tu_state *s = tu_new(&o, TU_HOLD);
    s->tick_hook = sigmask_tick;
    /* SIGINT blocked by the caller before the run: the child's mask has it
     * blocked too, SIGTERM not (the run's own blocking is undone). */
    sigset_t before, saved, intr;
    sigemptyset(&intr);
    sigaddset(&intr, SIGINT);
    assert_int_equal(sigprocmask(SIG_BLOCK, &intr, &saved), 0);
    assert_int_equal(sigprocmask(SIG_SETMASK, NULL, &before), 0);
    int rc = evl_run(s->l, -1);
    assert_int_equal(sigprocmask(SIG_SETMASK, &saved, NULL), 0);
    assert_int_equal(rc, 0);
    assert_true(s->size > 0); /* the tick ran inside evl_run */
    size_t want = (size_t)(sigismember(&before, SIGTERM) * 2 + sigismember(&before, SIGINT)) + 1;
    assert_int_equal(s->size, want); /* not the mask evl_run set (both blocked) */
    tu_finish(s);
}

static void test_listen_unix_liveness_probe_failure(void **state)
{
    (void)state;
    char path[64];
    (void)snprintf(path, sizeof path, "/tmp/evl-gaps-live-%d.sock", (int)getpid());
    int old = evl_listen_unix(path);
    assert_true(old >= 0);
    close(old); /* the file stays: a stale socket */
    /* The probe cannot make its socket: the file is taken as stale. */
    fault_arm(F_SOCKET, 0, EMFILE, -1, 0);
    int fd = evl_listen_unix(path);
    ASSERT_FIRED(F_SOCKET);
    assert_true(fd >= 0);
    close(fd);
    unlink(path);
}

/* Found by coverage: the branch where re-registering a paused listener
 * fails was never taken. The listener must not be lost for good: accepting
 * resumes once epoll takes it back. */
static void test_accept_resume_retries_when_epoll_refuses(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    int ls = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(ls >= 0);
    tu_track_fd(ls);
    assert_int_equal(evl_add_listener(s->l, ls), 0);
    int c1 = tu_tcp_connect(evl_local_port(ls));
    tu_track_fd(c1);
    fault_arm(F_ACCEPT4, 0, EMFILE, ls, 0);
    tu_step(s, 1000);
    ASSERT_FIRED(F_ACCEPT4);
    assert_int_equal(tu_stats(s).emfile, 1);
    /* The pause ends; re-registering the listener fails once (ENOMEM). */
    fault_arm(F_EPOLL_CTL, 0, ENOMEM, ls, EPOLL_CTL_ADD);
    TU_RUN_UNTIL(s, F[F_EPOLL_CTL].fired == 1, 3000);
    TU_RUN_UNTIL(s, s->accepts == 1, 3000);
    tu_finish(s);
}

/* ---- found by make mutants: promises no test checked ------------------------- */

/* buf.c's growth: doubling, compaction paid for by consumed bytes, and
 * shrinking only when sparse. Counted in allocations, the one cost that a
 * wrong rule multiplies. */
static void test_buf_growth_and_shrink_are_amortised(void **state)
{
    (void)state;
    evl__buf b = {0};
    long before = mallocs;
    for (int i = 0; i < 100000; i++)
        assert_int_equal(evl__buf_append(&b, "x", 1), 0);
    /* 4 KiB doubling to 128 KiB: 6 allocations, not one per append. */
    if (mallocs - before > 8)
        TU_FAIL("100000 one-byte appends made %ld allocations", mallocs - before);
    evl__buf_free(&b);

    /* A window sliding by one byte: compaction in place, not reallocation. */
    char chunk[3000];
    memset(chunk, 'w', sizeof chunk);
    assert_int_equal(evl__buf_append(&b, chunk, sizeof chunk), 0);
    before = mallocs;
    for (int i = 0; i < 20000; i++) {
        evl__buf_consume(&b, 1);
        assert_int_equal(evl__buf_append(&b, "w", 1), 0);
    }
    if (mallocs - before > 2)
        TU_FAIL("a sliding window made %ld allocations", mallocs - before);
    assert_null(evl__buf_check(&b));
    evl__buf_free(&b);

    /* reserve(0) asks room for one byte: with exactly one free, no growth. */
    char fill[4095];
    memset(fill, 'r', sizeof fill);
    assert_int_equal(evl__buf_append(&b, fill, sizeof fill), 0);
    assert_int_equal(evl__buf_cap(&b), 4096);
    before = mallocs;
    assert_non_null(evl__buf_reserve(&b, 0));
    evl__buf_commit(&b, 0);
    assert_int_equal(mallocs, before);
    assert_int_equal(evl__buf_cap(&b), 4096);
    evl__buf_free(&b);

    /* A large buffer that is still dense is not copied on every consume. */
    size_t n = (size_t)1 << 20;
    char *p = evl__buf_reserve(&b, n);
    assert_non_null(p);
    memset(p, 'd', n);
    evl__buf_commit(&b, n);
    before = mallocs;
    for (int i = 0; i < 100; i++)
        evl__buf_consume(&b, 1);
    if (mallocs != before)
        TU_FAIL("consuming 100 bytes of 1 MiB made %ld allocations", mallocs - before);
    assert_null(evl__buf_check(&b));
    evl__buf_free(&b);
}

struct drain_ctx {
    int peer;
    tu_dbuf got;
};

/* Stops the loop, and reads the peer's side, from every tick. */
static void peer_drain_tick(tu_state *s)
{
    struct drain_ctx *x = s->user;
    evl_stop(s->l);
    (void)tu_peer_drain(x->peer, &x->got);
}

/* A stop flushes what is pending and closes at once: it does not wait for
 * the peer's EOF (which may never come) nor for close_timeout_ms. */
static void test_stop_flushes_and_closes_without_waiting_for_peer(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.tick_ms = 10;
    o.close_timeout_ms = 5000;
    tu_state *s = tu_new(&o, TU_HOLD);
    tu_rec *r = small_pair(s);
    size_t n = 64 << 10;
    char *p = malloc(n);
    assert_non_null(p);
    tu_pattern(p, n, 0, 3);
    assert_int_equal(evl_write(r->c, p, n), 0);
    free(p);
    assert_true(evl_pending(r->c) > 0);
    /* A second connection already closed by the handler: flushed, shut
     * down, lingering for its peer's EOF when the stop comes. */
    tu_rec *r2 = tu_pair(s);
    evl_close(r2->c);
    tu_step(s, 10);
    assert_int_equal(r2->closes, 0);
    struct drain_ctx ctx = {.peer = r->peer};
    s->user = &ctx;
    s->tick_hook = peer_drain_tick;
    uint64_t t0 = tu_now_ms();
    assert_int_equal(evl_run(s->l, -1), 0);
    uint64_t took = tu_now_ms() - t0;
    if (took > 2500)
        TU_FAIL("evl_run took %llu ms to stop: it waited for a peer", (unsigned long long)took);
    assert_int_equal(r->closes, 1);
    assert_int_equal(r2->closes, 1);
    (void)tu_peer_drain(r->peer, &ctx.got);
    assert_int_equal(ctx.got.len, n);
    assert_true(tu_pattern_mismatch(ctx.got.p, n, 0, 3) < 0);
    tu_dbuf_free(&ctx.got);
    s->user = NULL;
    tu_finish(s);
}

static void stop_tick(tu_state *s) { evl_stop(s->l); }

static void test_stop_removes_the_listener(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.tick_ms = 10;
    tu_state *s = tu_new(&o, TU_HOLD);
    int ls = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(ls >= 0);
    tu_track_fd(ls);
    s->tick_hook = stop_tick;
    assert_int_equal(evl_run(s->l, ls), 0);
    /* Removed from the loop (still open): it can be added again. */
    assert_true(fcntl(ls, F_GETFD) >= 0);
    assert_int_equal(evl_add_listener(s->l, ls), 0);
    /* The stop is over: the same loop runs again, until the next stop. */
    assert_false(evl_stopping(s->l));
    int ticks = s->ticks;
    assert_int_equal(evl_run(s->l, -1), 0);
    assert_int_equal(s->ticks, ticks + 1);
    assert_false(evl_stopping(s->l));
    tu_finish(s);
}

static void test_peer_eof_true_after_a_failed_write(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = tu_pair(s);
    tu_close_fd(r->peer);
    errno = 0;
    assert_int_equal(evl_write(r->c, "x", 1), -1);
    assert_int_equal(errno, EPIPE);
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    assert_true(r->eof_at_close); /* the peer is gone: nothing more comes */
    tu_finish(s);
}

/* on_read writes a then b bytes; records evl_pending after each call. */
static void write_two(tu_state *s, tu_rec *r)
{
    static const size_t plan[3][2] = {{600, 10}, {600, 10}, {1000, 10}};
    size_t len;
    (void)evl_data(r->c, &len);
    evl_consume(r->c, len);
    int k = r->reads - 1;
    if (k < 0 || k > 2)
        return;
    char buf[1000];
    memset(buf, 'q', sizeof buf);
    TU_CB_CHECK(s, evl_write(r->c, buf, plan[k][0]) == 0);
    TU_CB_CHECK(s, evl_write(r->c, buf, plan[k][1]) == 0);
    ((size_t *)s->user)[k] = evl_pending(r->c);
}

static void test_write_quantum_is_per_iteration(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.write_quantum = 1000;
    tu_state *s = tu_new(&o, TU_HOLD);
    size_t pending[3] = {99, 99, 99};
    s->user = pending;
    s->read_hook = write_two;
    tu_rec *r = tu_pair(s);
    for (int i = 1; i <= 3; i++) {
        tu_peer_sends(r->peer, "go");
        TU_RUN_UNTIL(s, r->reads == i, 2000);
    }
    assert_int_equal(pending[0], 0);  /* 610 of 1000: all sent at once */
    assert_int_equal(pending[1], 0);  /* a new iteration, a new budget */
    assert_int_equal(pending[2], 10); /* 1000 spent: the rest waits */
    s->user = NULL;
    tu_finish(s);
}

/* Writes small pieces until the socket is full; returns what is pending. */
static size_t fill_socket(evl_conn *c, size_t piece)
{
    char buf[128];
    memset(buf, 'f', sizeof buf);
    for (int i = 0; i < 1000000 && evl_pending(c) == 0; i++)
        assert_int_equal(evl_write(c, buf, piece), 0);
    return evl_pending(c);
}

static void test_watermarks_at_their_exact_values(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.wbuf_low = 1000;
    o.wbuf_high = 8000;
    o.wbuf_max = 8000;
    tu_state *s = tu_new(&o, TU_HOLD);
    tu_rec *r = small_pair(s);
    size_t p = fill_socket(r->c, 100);
    assert_true(p > 0 && p <= 100);
    char *buf = calloc(1, o.wbuf_max);
    assert_non_null(buf);
    /* Exactly up to wbuf_max: accepted, and reading pauses at wbuf_high. */
    assert_int_equal(evl_write(r->c, buf, o.wbuf_max - p), 0);
    assert_int_equal(evl_pending(r->c), o.wbuf_max);
    tu_peer_sends(r->peer, "x");
    tu_run_for(s, 100);
    assert_int_equal(r->reads, 0);
    /* One byte beyond wbuf_max: EVL_EOVERFLOW, and the connection goes. */
    errno = 0;
    assert_int_equal(evl_write(r->c, buf, 1), -1);
    assert_int_equal(errno, EVL_EOVERFLOW);
    free(buf);
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    assert_int_equal(tu_stats(s).overflow_closed, 1);
    tu_finish(s);
}

static void test_close_timeout_counts_one_pending_byte(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.close_timeout_ms = 50;
    tu_state *s = tu_new(&o, TU_HOLD);
    tu_rec *r = small_pair(s);
    assert_int_equal(fill_socket(r->c, 1), 1);
    evl_close(r->c);
    TU_RUN_UNTIL(s, r->closes == 1, 3000);
    assert_int_equal(tu_stats(s).close_timeouts, 1);
    tu_finish(s);
}

static void test_first_tick_a_full_period_after_new(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.tick_ms = 1000;
    tu_state *s = tu_new(&o, TU_HOLD);
    tu_step(s, 0);
    assert_int_equal(s->ticks, 0);
    tu_finish(s);
    o.tick_ms = 1; /* the smallest period ticks too */
    s = tu_new(&o, TU_HOLD);
    TU_RUN_UNTIL(s, s->ticks >= 2, 2000);
    tu_finish(s);
}

/* The defaults evloop.h documents, field by field. */
static void test_defaults_are_the_documented_ones(void **state)
{
    (void)state;
    evl_options o;
    memset(&o, 0x5a, sizeof o);
    evl_options_default(&o);
    assert_int_equal(o.tick_ms, 5000);
    assert_int_equal(o.rbuf_max, (size_t)1 << 20);
    assert_int_equal(o.wbuf_low, (size_t)64 << 10);
    assert_int_equal(o.wbuf_high, (size_t)1 << 20);
    assert_int_equal(o.wbuf_max, 0);
    assert_int_equal(o.idle_timeout_ms, 0);
    assert_int_equal(o.close_timeout_ms, 5000);
    assert_int_equal(o.max_conns, 0);
    assert_int_equal(o.write_quantum, (size_t)256 << 10);
    assert_int_equal(o.max_events, 256);
    /* The smallest valid values of the limits are accepted. */
    evl_handler h = {0};
    o.rbuf_max = 1;
    o.write_quantum = 1;
    o.max_events = 1;
    o.wbuf_low = 0;
    o.wbuf_high = 1;
    o.wbuf_max = 1;
    evl_loop *l = evl_new(&h, NULL, &o);
    assert_non_null(l);
    assert_int_equal(evl_get_options(l)->rbuf_max, 1);
    evl_free(l);
}

/* on_read aborts its connection, recording what was pending then. */
static void abort_in_read(tu_state *s, tu_rec *r)
{
    s->size = evl_pending(r->c);
    evl_abort(r->c);
}

/* "evl_abort: pending output is dropped", also when the same event says the
 * socket became writable: nothing more is handed to the kernel. */
static void test_abort_in_read_drops_output_even_when_writable(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = small_pair(s);
    size_t written = 0;
    char buf[128];
    memset(buf, 'a', sizeof buf);
    while (evl_pending(r->c) < 20000 && written < (1u << 24)) {
        assert_int_equal(evl_write(r->c, buf, sizeof buf), 0);
        written += sizeof buf;
    }
    tu_step(s, 0); /* EPOLLOUT registered, nothing to send yet */
    /* The peer makes room and sends a byte: one event, readable and
     * writable, and on_read aborts. */
    tu_dbuf got = {0};
    char tmp[2048];
    ssize_t k = tu_peer_read(r->peer, tmp, sizeof tmp);
    assert_true(k > 0);
    tu_dbuf_add(&got, tmp, (size_t)k);
    s->read_hook = abort_in_read;
    tu_peer_sends(r->peer, "!");
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    assert_true(s->size > 0);
    (void)tu_peer_drain(r->peer, &got);
    /* What the kernel had before the abort arrives; nothing of what was
     * still pending in the library. */
    assert_int_equal(got.len, written - s->size);
    tu_dbuf_free(&got);
    tu_finish(s);
}

/* More than IOV_MAX buffers whose first IOV_MAX are empty: the first sendmsg
 * sends nothing, which is no error, and the rest is queued and sent. */
static void test_writev_empty_leading_buffers_beyond_iov_max(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = tu_pair(s);
    int n = IOV_MAX + 1;
    struct iovec *iov = calloc((size_t)n, sizeof *iov);
    assert_non_null(iov);
    for (int i = 0; i < n; i++)
        iov[i].iov_base = (void *)"";
    iov[n - 1] = (struct iovec){.iov_base = (void *)"data", .iov_len = 4};
    errno = 0; /* a stale errno must not be taken for the result */
    assert_int_equal(evl_writev(r->c, iov, n), 0);
    free(iov);
    tu_peer_expect(s, r->peer, "data", 2000);
    assert_int_equal(r->closes, 0);
    tu_finish(s);
}

/* A daemon may run with fd 0 closed: the next fd the library makes is 0,
 * which is a valid fd like any other. */
static void test_fd_zero_is_a_valid_fd(void **state)
{
    (void)state;
    int saved = fcntl(0, F_DUPFD_CLOEXEC, 3);
    assert_true(saved >= 0);
    close(0);
    evl_handler h = {0};
    evl_loop *l = evl_new(&h, NULL, NULL); /* its epoll fd is 0 */
    int err = errno;
    bool zero_taken = fcntl(0, F_GETFD) >= 0;
    if (l) {
        assert_int_equal(evl_run_once(l, 0), 0);
        evl_free(l);
    }
    /* A failed evl_new closes its epoll fd, also when that is 0. */
    bool zero_leaked = false;
    if (fcntl(0, F_GETFD) < 0) {
        fault_arm(F_CALLOC, 1, ENOMEM, -1, 0); /* the event array */
        evl_loop *bad = evl_new(&h, NULL, NULL);
        zero_leaked = fcntl(0, F_GETFD) >= 0;
        if (bad)
            evl_free(bad);
    }
    int fired = F[F_CALLOC].fired;
    /* An extra fd 0 left registered is released by evl_free (ASan: leak). */
    int p[2] = {-1, -1};
    bool pipe_zero = fcntl(0, F_GETFD) < 0 && pipe2(p, O_CLOEXEC) == 0 && p[0] == 0;
    evl_loop *l2 = evl_new(&h, NULL, NULL);
    bool extra_zero = pipe_zero && l2 && evl_add_fd(l2, 0) == 0;
    if (l2)
        evl_free(l2);
    if (p[1] >= 0) {
        close(p[0]);
        close(p[1]);
    }
    assert_int_equal(dup2(saved, 0), 0);
    close(saved);
    if (!l)
        TU_FAIL("evl_new failed with fd 0 free: %s", strerror(err));
    assert_true(zero_taken);
    assert_int_equal(fired, 1);
    assert_false(zero_leaked);
    assert_true(extra_zero);
}

/* "timers ... shorten the wait": a long timeout_ms does not delay a tick. */
static void test_timer_shortens_a_long_run_once_timeout(void **state)
{
    (void)state;
    evl_options o = tu_opts();
    o.tick_ms = 50;
    tu_state *s = tu_new(&o, TU_HOLD);
    uint64_t t0 = tu_now_ms();
    while (s->ticks == 0 && tu_now_ms() - t0 < 5000)
        assert_true(evl_run_once(s->l, 3000) >= 0);
    uint64_t took = tu_now_ms() - t0;
    assert_int_equal(s->ticks, 1);
    if (took >= 1500)
        TU_FAIL("the first tick (50 ms) came after %llu ms", (unsigned long long)took);
    tu_finish(s);
}

/* The second on_read of the first connection aborts it; the second on_read
 * of the other records whether the first's on_close already ran. */
static void abort_first_then_look(tu_state *s, tu_rec *r)
{
    tu_rec **first = s->user;
    if (r->reads == 2) {
        if (!*first) {
            *first = r;
            evl_abort(r->c);
            return;
        }
        r->user = (*first)->closes + 1; /* 1: not yet, 2: already */
    }
    size_t n;
    const char *p = evl_data(r->c, &n);
    const char *nl = memchr(p, '\n', n);
    evl_consume(r->c, nl ? (size_t)(nl - p) + 1 : n);
}

/* "its on_close runs after the current callback returns": before the next
 * callback, also when both are re-dispatches of pipelined input. */
static void test_on_close_runs_before_the_next_redispatch(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *first = NULL;
    s->user = &first;
    s->read_hook = abort_first_then_look;
    tu_rec *a = tu_pair(s);
    tu_rec *b = tu_pair(s);
    tu_peer_sends(a->peer, "1\n2\n3\n");
    tu_peer_sends(b->peer, "1\n2\n3\n");
    tu_step(s, 1000);
    TU_RUN_UNTIL(s, a->reads >= 2 && b->reads >= 2, 2000);
    assert_non_null(first);
    tu_rec *other = first == a ? b : a;
    assert_int_equal(other->user, 2);
    s->user = NULL;
    tu_finish(s);
}

/* Connection events are no accepts: nothing lands in the accept counters. */
static void test_connection_events_count_no_accept_errors(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_ECHO);
    tu_rec *r = tu_pair(s);
    tu_peer_sends(r->peer, "echo");
    tu_peer_expect(s, r->peer, "echo", 2000);
    assert_int_equal(tu_stats(s).accept_errors, 0);
    assert_int_equal(tu_stats(s).emfile, 0);
    tu_finish(s);
}

/* wbuf_bytes and rbuf_bytes: what every connection holds now, open or
 * closing, to the byte. */
static void test_stats_count_buffered_bytes_of_every_connection(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *open_ = small_pair(s);
    tu_rec *closing = small_pair(s);
    size_t p1 = fill_socket(open_->c, 100);
    size_t p2 = fill_socket(closing->c, 100);
    assert_int_equal(evl_write(open_->c, "12345", 5), 0);
    p1 += 5;
    tu_peer_sends(open_->peer, "held");
    TU_RUN_UNTIL(s, open_->reads == 1, 2000);
    evl_close(closing->c);
    struct evl_stats st = tu_stats(s);
    assert_int_equal(evl_pending(open_->c), p1);
    assert_int_equal(st.wbuf_bytes, p1 + p2);
    assert_int_equal(st.rbuf_bytes, 4);
    tu_finish(s);
}

/* ---- after the merge of the fault-injection fixes ------------------------------- */

/* A removal whose EPOLL_CTL_DEL fails leaves a registration behind: no event
 * of it reaches on_fd, the removal is retried, and the fd can be added again
 * (at once, or after the retry). */
static void test_remove_fd_when_epoll_del_fails(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    int hi = fcntl(p[0], F_DUPFD_CLOEXEC, 100); /* past the table's first 64 */
    assert_true(hi >= 100);
    close(p[0]);
    p[0] = hi;
    tu_track_fd(p[0]);
    tu_track_fd(p[1]);
    assert_int_equal(evl_add_fd(s->l, p[0]), 0);
    fault_arm(F_EPOLL_CTL, 0, ENOMEM, p[0], EPOLL_CTL_DEL);
    assert_int_equal(evl_remove_fd(s->l, p[0]), 0);
    ASSERT_FIRED(F_EPOLL_CTL);
    /* Its event comes, is not delivered, and the DEL is retried. */
    assert_int_equal(write(p[1], "e", 1), 1);
    tu_step(s, 100);
    tu_step(s, 0);
    assert_int_equal(s->fd_events, 0);
    char c;
    assert_int_equal(read(p[0], &c, 1), 1);
    assert_int_equal(evl_add_fd(s->l, p[0]), 0);

    /* Added again before any event: the stale registration is reclaimed. */
    fault_arm(F_EPOLL_CTL, 0, ENOMEM, p[0], EPOLL_CTL_DEL);
    assert_int_equal(evl_remove_fd(s->l, p[0]), 0);
    ASSERT_FIRED(F_EPOLL_CTL);
    assert_int_equal(evl_add_fd(s->l, p[0]), 0);

    /* ... unless the retried DEL fails too: EEXIST, and a later add works. */
    fault_arm(F_EPOLL_CTL, 0, ENOMEM, p[0], EPOLL_CTL_DEL);
    assert_int_equal(evl_remove_fd(s->l, p[0]), 0);
    fault_arm(F_EPOLL_CTL, 0, ENOMEM, p[0], EPOLL_CTL_DEL);
    errno = 0;
    assert_int_equal(evl_add_fd(s->l, p[0]), -1);
    ASSERT_FIRED(F_EPOLL_CTL);
    /* the cause is reported: the stale registration could not be removed */
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(evl_add_fd(s->l, p[0]), 0);

    /* Two stale registrations: each is found by its own fd. */
    int q[2];
    assert_int_equal(pipe2(q, O_CLOEXEC), 0);
    tu_track_fd(q[0]);
    tu_track_fd(q[1]);
    assert_int_equal(evl_add_fd(s->l, q[0]), 0);
    fault_arm(F_EPOLL_CTL, 0, ENOMEM, p[0], EPOLL_CTL_DEL);
    assert_int_equal(evl_remove_fd(s->l, p[0]), 0);
    fault_arm(F_EPOLL_CTL, 0, ENOMEM, q[0], EPOLL_CTL_DEL);
    assert_int_equal(evl_remove_fd(s->l, q[0]), 0);
    ASSERT_FIRED(F_EPOLL_CTL);
    assert_int_equal(evl_add_fd(s->l, p[0]), 0); /* the older zombie, second in line */
    assert_int_equal(evl_add_fd(s->l, q[0]), 0);
    assert_int_equal(evl_remove_fd(s->l, q[0]), 0);

    /* A zombie left at evl_free is freed with the loop (ASan: no leak). */
    fault_arm(F_EPOLL_CTL, 0, ENOMEM, p[0], EPOLL_CTL_DEL);
    assert_int_equal(evl_remove_fd(s->l, p[0]), 0);
    ASSERT_FIRED(F_EPOLL_CTL);
    tu_finish(s);
}

static void test_run_fails_when_the_mask_cannot_be_set(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    int ls = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(ls >= 0);
    tu_track_fd(ls);
    fault_arm(F_SIGMASK, 0, EINVAL, -1, SIG_BLOCK);
    errno = 0;
    assert_int_equal(evl_run(s->l, ls), -1);
    ASSERT_FIRED(F_SIGMASK);
    assert_int_equal(errno, EINVAL);
    /* The listener it added is gone again: a retry can add it. */
    assert_int_equal(evl_add_listener(s->l, ls), 0);
    tu_finish(s);
}

/* A connection epoll will not watch for EPOLLOUT is aborted, not left to
 * wait for an event that cannot come. */
static void test_conn_aborted_when_epoll_refuses_its_interest(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_HOLD);
    tu_rec *r = small_pair(s);
    fault_arm(F_EPOLL_CTL, 0, ENOMEM, r->fd, EPOLL_CTL_MOD);
    char buf[128];
    memset(buf, 'm', sizeof buf);
    /* Interest changes are applied once, before the next wait: fill the
     * socket until a write queues, and the loop's next iteration asks epoll
     * for EPOLLOUT. */
    for (int i = 0; i < 100000 && evl_pending(r->c) == 0; i++)
        (void)evl_write(r->c, buf, sizeof buf);
    assert_true(evl_pending(r->c) > 0);
    TU_RUN_UNTIL(s, r->closes == 1, 2000);
    ASSERT_FIRED(F_EPOLL_CTL);
    tu_finish(s);
}

/* The fd table grows to hold fds at its exact power-of-two sizes (64, 128):
 * an off-by-one there writes past the table (ASan). */
static void test_fd_table_holds_fds_at_its_size_boundaries(void **state)
{
    (void)state;
    tu_state *s = tu_new(NULL, TU_SINK);
    int want[] = {64, 128};
    tu_rec *r[2];
    for (int i = 0; i < 2; i++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        if (fcntl(want[i], F_GETFD) >= 0)
            TU_FAIL("fd %d is taken: the test needs it free", want[i]);
        assert_int_equal(dup3(sv[0], want[i], O_CLOEXEC), want[i]);
        close(sv[0]);
        tu_set_nonblock(sv[1]);
        tu_track_fd(sv[1]);
        r[i] = tu_adopt(s, want[i], sv[1]);
        assert_ptr_equal(evl_conn_of(s->l, want[i]), r[i]->c);
    }
    for (int i = 0; i < 2; i++)
        tu_peer_sends(r[i]->peer, "fd");
    TU_RUN_UNTIL(s, r[0]->in.len == 2 && r[1]->in.len == 2, 2000);
    tu_finish(s);
}

static int batch_accepts;
static bool count_accept(evl_conn *c)
{
    (void)c;
    batch_accepts++;
    return true;
}

/* One listener event accepts at most a batch (128), so a flood of clients
 * cannot hold the loop; the rest are taken in the next iteration. */
static void test_accept_batch_is_bounded(void **state)
{
    (void)state;
    evl_handler h = {.on_accept = count_accept};
    evl_loop *l = evl_new(&h, NULL, NULL);
    assert_non_null(l);
    int ls = evl_listen_tcp("127.0.0.1", 0, 0);
    assert_true(ls >= 0);
    tu_track_fd(ls);
    assert_int_equal(evl_add_listener(l, ls), 0);
    int port = evl_local_port(ls);
    enum { N = 140 };
    for (int i = 0; i < N; i++)
        tu_track_fd(tu_tcp_connect(port));
    usleep(100 * 1000); /* let every handshake finish into the backlog */
    batch_accepts = 0;
    assert_int_equal(evl_run_once(l, 1000), 1);
    assert_int_equal(batch_accepts, 128);
    uint64_t end = tu_now_ms() + 3000;
    while (batch_accepts < N && tu_now_ms() < end)
        assert_true(evl_run_once(l, 100) >= 0);
    assert_int_equal(batch_accepts, N);
    evl_free(l);
}

int main(void)
{
    tu_init_process();
    const struct CMUnitTest tests[] = {
        GAP_TEST(test_buf_reserve_beyond_memory_fails_unchanged),
        GAP_TEST(test_buf_append_enomem_leaves_buffer_unchanged),
        GAP_TEST(test_buf_shrink_enomem_keeps_old_region),
        GAP_TEST(test_buf_check_names_each_broken_invariant),
        GAP_TEST(test_new_rejects_each_invalid_option),
        GAP_TEST(test_new_fails_cleanly_on_each_resource),
        GAP_TEST(test_adopt_failures_leave_fd_to_caller),
        GAP_TEST(test_add_fd_and_listener_errors),
        GAP_TEST(test_read_tail_kept_on_enomem_aborts),
        GAP_TEST(test_read_reserve_enomem_aborts),
        GAP_TEST(test_read_eintr_and_eagain_retry),
        GAP_TEST(test_read_error_marks_broken_and_refuses_writes),
        GAP_TEST(test_write_argument_errors),
        GAP_TEST(test_queue_enomem_aborts),
        GAP_TEST(test_close_keeps_flushing_after_peer_eof),
        GAP_TEST(test_close_read_errors_while_lingering),
        GAP_TEST(test_handler_with_no_optional_callbacks),
        GAP_TEST(test_on_read_only_handler_serves),
        GAP_TEST(test_accept_errors_skip_or_pause),
        GAP_TEST(test_accepted_conn_registration_failure_rejects),
        GAP_TEST(test_run_once_reports_epoll_wait_failure),
        GAP_TEST(test_run_setup_failures_restore_the_mask),
        GAP_TEST(test_ticks_do_not_burst_after_a_stall),
        GAP_TEST(test_listen_argument_errors),
        GAP_TEST(test_listen_tcp_families_and_errors),
        GAP_TEST(test_release_without_hold_changes_nothing),
        GAP_TEST(test_accept_errors_drop_or_pause_one_listener),
        GAP_TEST(test_add_listener_nonblock_failure),
        GAP_TEST(test_child_sigmask_inside_run_is_the_mask_before),
        GAP_TEST(test_listen_unix_liveness_probe_failure),
        GAP_TEST(test_accept_resume_retries_when_epoll_refuses),
        GAP_TEST(test_buf_growth_and_shrink_are_amortised),
        GAP_TEST(test_stop_flushes_and_closes_without_waiting_for_peer),
        GAP_TEST(test_stop_removes_the_listener),
        GAP_TEST(test_peer_eof_true_after_a_failed_write),
        GAP_TEST(test_write_quantum_is_per_iteration),
        GAP_TEST(test_watermarks_at_their_exact_values),
        GAP_TEST(test_close_timeout_counts_one_pending_byte),
        GAP_TEST(test_first_tick_a_full_period_after_new),
        GAP_TEST(test_defaults_are_the_documented_ones),
        GAP_TEST(test_abort_in_read_drops_output_even_when_writable),
        GAP_TEST(test_writev_empty_leading_buffers_beyond_iov_max),
        GAP_TEST(test_fd_zero_is_a_valid_fd),
        GAP_TEST(test_timer_shortens_a_long_run_once_timeout),
        GAP_TEST(test_on_close_runs_before_the_next_redispatch),
        GAP_TEST(test_connection_events_count_no_accept_errors),
        GAP_TEST(test_stats_count_buffered_bytes_of_every_connection),
        GAP_TEST(test_remove_fd_when_epoll_del_fails),
        GAP_TEST(test_run_fails_when_the_mask_cannot_be_set),
        GAP_TEST(test_conn_aborted_when_epoll_refuses_its_interest),
        GAP_TEST(test_fd_table_holds_fds_at_its_size_boundaries),
        GAP_TEST(test_accept_batch_is_bounded),
    };
    return cmocka_run_group_tests_name("test_gaps", tests, NULL, NULL);
}
