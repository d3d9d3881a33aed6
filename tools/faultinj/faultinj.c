/*
 * faultinj: the control state and the fi_ stand-ins for the calls the
 * library makes (see faultinj.h). Each stand-in counts its call, asks
 * should_fail, and either fails without a side effect or makes the real call.
 */
#include "faultinj.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* The names the library's objects call after objcopy (syms.txt). */
void *fi_malloc(size_t n);
void *fi_calloc(size_t n, size_t size);
void *fi_realloc(void *p, size_t n);
int fi_epoll_create1(int flags);
int fi_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int fi_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout);
int fi_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags);
ssize_t fi_read(int fd, void *p, size_t n);
ssize_t fi_recv(int fd, void *p, size_t n, int flags);
ssize_t fi_send(int fd, const void *p, size_t n, int flags);
ssize_t fi_sendmsg(int fd, const struct msghdr *m, int flags);
ssize_t fi_write(int fd, const void *p, size_t n);
ssize_t fi_writev(int fd, const struct iovec *iov, int iovcnt);
int fi_setsockopt(int fd, int level, int name, const void *v, socklen_t len);
int fi_getsockopt(int fd, int level, int name, void *v, socklen_t *len);
int fi_fcntl(int fd, int cmd, ...);
int fi_signalfd(int fd, const sigset_t *mask, int flags);
int fi_pthread_sigmask(int how, const sigset_t *set, sigset_t *old);
int fi_sigprocmask(int how, const sigset_t *set, sigset_t *old);
int fi_close(int fd);
int fi_shutdown(int fd, int how);
int fi_socket(int domain, int type, int proto);
int fi_bind(int fd, const struct sockaddr *sa, socklen_t len);
int fi_listen(int fd, int backlog);
int fi_getsockname(int fd, struct sockaddr *sa, socklen_t *len);
int fi_connect(int fd, const struct sockaddr *sa, socklen_t len);

#define ERRS(...) {__VA_ARGS__}
#define N(a) (sizeof(a) / sizeof(a)[0])

/* errno lists, from the man pages' ERRORS sections (Debian 12, man-pages
 * 6.03). The socket I/O calls also return the pending socket error
 * (ECONNRESET, ETIMEDOUT, EHOSTUNREACH: tcp(7), socket(7)). */
static const int e_alloc[] = ERRS(ENOMEM);
static const int e_epoll_create1[] = ERRS(EINVAL, EMFILE, ENFILE, ENOMEM);
static const int e_epoll_ctl[] = ERRS(EBADF, EEXIST, EINVAL, ELOOP, ENOENT, ENOMEM, ENOSPC, EPERM);
static const int e_epoll_wait[] = ERRS(EBADF, EFAULT, EINTR, EINVAL);
static const int e_accept4[] = ERRS(EAGAIN, EBADF, ECONNABORTED, EFAULT, EINTR, EINVAL, EMFILE,
                                    ENFILE, ENOBUFS, ENOMEM, ENOTSOCK, EOPNOTSUPP, EPERM, EPROTO,
                                    ENETDOWN, EHOSTUNREACH, ETIMEDOUT);
static const int e_read[] = ERRS(EAGAIN, EBADF, EFAULT, EINTR, EINVAL, EIO, EISDIR,
                                 ECONNRESET, ETIMEDOUT, EHOSTUNREACH);
static const int e_recv[] = ERRS(EAGAIN, EBADF, ECONNREFUSED, EFAULT, EINTR, EINVAL, ENOMEM,
                                 ENOTCONN, ENOTSOCK, ECONNRESET, ETIMEDOUT);
static const int e_send[] = ERRS(EACCES, EAGAIN, EALREADY, EBADF, ECONNRESET, EDESTADDRREQ,
                                 EFAULT, EINTR, EINVAL, EISCONN, EMSGSIZE, ENOBUFS, ENOMEM,
                                 ENOTCONN, ENOTSOCK, EOPNOTSUPP, EPIPE, ETIMEDOUT);
static const int e_write[] = ERRS(EAGAIN, EBADF, EDESTADDRREQ, EDQUOT, EFAULT, EFBIG, EINTR,
                                  EINVAL, EIO, ENOSPC, EPERM, EPIPE, ECONNRESET);
static const int e_sockopt[] = ERRS(EBADF, EFAULT, EINVAL, ENOPROTOOPT, ENOTSOCK);
static const int e_fcntl[] = ERRS(EACCES, EAGAIN, EBADF, EINTR, EINVAL, EPERM);
static const int e_signalfd[] = ERRS(EBADF, EINVAL, EMFILE, ENFILE, ENODEV, ENOMEM);
static const int e_sigmask[] = ERRS(EFAULT, EINVAL);
/* No EBADF: the library closes only fds it holds, and a close that reports
 * EBADF for an open fd is not something Linux does. */
static const int e_close[] = ERRS(EINTR, EIO, ENOSPC, EDQUOT);
static const int e_shutdown[] = ERRS(EBADF, EINVAL, ENOTCONN, ENOTSOCK);
static const int e_socket[] = ERRS(EACCES, EAFNOSUPPORT, EINVAL, EMFILE, ENFILE, ENOBUFS, ENOMEM,
                                   EPROTONOSUPPORT);
static const int e_bind[] = ERRS(EACCES, EADDRINUSE, EBADF, EINVAL, ENOTSOCK, EADDRNOTAVAIL,
                                 EFAULT, ELOOP, ENAMETOOLONG, ENOENT, ENOMEM, ENOTDIR, EROFS);
static const int e_listen[] = ERRS(EADDRINUSE, EBADF, ENOTSOCK, EOPNOTSUPP);
static const int e_getsockname[] = ERRS(EBADF, EFAULT, EINVAL, ENOBUFS, ENOTSOCK);
static const int e_connect[] = ERRS(EACCES, EPERM, EADDRINUSE, EADDRNOTAVAIL, EAFNOSUPPORT, EAGAIN,
                                    EALREADY, EBADF, ECONNREFUSED, EFAULT, EINPROGRESS, EINTR,
                                    EISCONN, ENETUNREACH, ENOTSOCK, EPROTOTYPE, ETIMEDOUT);

static const struct {
    const char *name;
    const int *errs;
    size_t nerrs;
} kinds[FI_NKINDS] = {
    [FI_MALLOC] = {"malloc", e_alloc, N(e_alloc)},
    [FI_CALLOC] = {"calloc", e_alloc, N(e_alloc)},
    [FI_REALLOC] = {"realloc", e_alloc, N(e_alloc)},
    [FI_EPOLL_CREATE1] = {"epoll_create1", e_epoll_create1, N(e_epoll_create1)},
    [FI_EPOLL_CTL] = {"epoll_ctl", e_epoll_ctl, N(e_epoll_ctl)},
    [FI_EPOLL_WAIT] = {"epoll_wait", e_epoll_wait, N(e_epoll_wait)},
    [FI_ACCEPT4] = {"accept4", e_accept4, N(e_accept4)},
    [FI_READ] = {"read", e_read, N(e_read)},
    [FI_RECV] = {"recv", e_recv, N(e_recv)},
    [FI_SEND] = {"send", e_send, N(e_send)},
    [FI_SENDMSG] = {"sendmsg", e_send, N(e_send)},
    [FI_WRITE] = {"write", e_write, N(e_write)},
    [FI_WRITEV] = {"writev", e_write, N(e_write)},
    [FI_SETSOCKOPT] = {"setsockopt", e_sockopt, N(e_sockopt)},
    [FI_GETSOCKOPT] = {"getsockopt", e_sockopt, N(e_sockopt)},
    [FI_FCNTL] = {"fcntl", e_fcntl, N(e_fcntl)},
    [FI_SIGNALFD] = {"signalfd", e_signalfd, N(e_signalfd)},
    [FI_SIGMASK] = {"sigmask", e_sigmask, N(e_sigmask)},
    [FI_CLOSE] = {"close", e_close, N(e_close)},
    [FI_SHUTDOWN] = {"shutdown", e_shutdown, N(e_shutdown)},
    [FI_SOCKET] = {"socket", e_socket, N(e_socket)},
    [FI_BIND] = {"bind", e_bind, N(e_bind)},
    [FI_LISTEN] = {"listen", e_listen, N(e_listen)},
    [FI_GETSOCKNAME] = {"getsockname", e_getsockname, N(e_getsockname)},
    [FI_CONNECT] = {"connect", e_connect, N(e_connect)},
};

static struct {
    unsigned long count[FI_NKINDS];
    unsigned long fired;
    int armed;
    enum fi_kind kind;
    unsigned long first, times;
    int err;
    fi_hook_fn hook;
    void *hook_ctx;
} S;

const char *fi_kind_name(enum fi_kind kind)
{
    return (unsigned)kind < FI_NKINDS ? kinds[kind].name : "?";
}

int fi_kind_by_name(const char *name)
{
    for (int k = 0; k < FI_NKINDS; k++)
        if (strcmp(kinds[k].name, name) == 0)
            return k;
    return -1;
}

const int *fi_errnos(enum fi_kind kind, size_t *n)
{
    *n = kinds[kind].nerrs;
    return kinds[kind].errs;
}

void fi_reset(void) { memset(&S, 0, sizeof S); }

void fi_arm(enum fi_kind kind, unsigned long nth, int err, unsigned long times)
{
    S.armed = 1;
    S.kind = kind;
    S.first = nth;
    S.times = times;
    S.err = err;
}

void fi_disarm(void) { S.armed = 0; }

void fi_set_hook(fi_hook_fn fn, void *ctx)
{
    S.hook = fn;
    S.hook_ctx = ctx;
}

unsigned long fi_count(enum fi_kind kind) { return S.count[kind]; }
unsigned long fi_fired(void) { return S.fired; }

/* Counts the call; the errno to fail it with, or 0. */
static int should_fail(enum fi_kind kind)
{
    unsigned long nth = ++S.count[kind];
    int err = 0;
    if (S.hook)
        err = S.hook(S.hook_ctx, kind, nth);
    else if (S.armed && S.kind == kind && nth >= S.first &&
             (S.times == 0 || nth - S.first < S.times))
        err = S.err;
    if (err)
        S.fired++;
    return err;
}

#define FAIL_WITH(kind, fail_value)                                            \
    do {                                                                       \
        int fi_err_ = should_fail(kind);                                       \
        if (fi_err_) {                                                         \
            errno = fi_err_;                                                   \
            return fail_value;                                                 \
        }                                                                      \
    } while (0)

void *fi_malloc(size_t n)
{
    FAIL_WITH(FI_MALLOC, NULL);
    return malloc(n);
}

void *fi_calloc(size_t n, size_t size)
{
    FAIL_WITH(FI_CALLOC, NULL);
    return calloc(n, size);
}

void *fi_realloc(void *p, size_t n)
{
    FAIL_WITH(FI_REALLOC, NULL);
    return realloc(p, n);
}

int fi_epoll_create1(int flags)
{
    FAIL_WITH(FI_EPOLL_CREATE1, -1);
    return epoll_create1(flags);
}

int fi_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    FAIL_WITH(FI_EPOLL_CTL, -1);
    return epoll_ctl(epfd, op, fd, ev);
}

int fi_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
    FAIL_WITH(FI_EPOLL_WAIT, -1);
    return epoll_wait(epfd, ev, max, timeout);
}

int fi_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
    FAIL_WITH(FI_ACCEPT4, -1);
    return accept4(fd, sa, len, flags);
}

ssize_t fi_read(int fd, void *p, size_t n)
{
    FAIL_WITH(FI_READ, -1);
    return read(fd, p, n);
}

ssize_t fi_recv(int fd, void *p, size_t n, int flags)
{
    FAIL_WITH(FI_RECV, -1);
    return recv(fd, p, n, flags);
}

ssize_t fi_send(int fd, const void *p, size_t n, int flags)
{
    FAIL_WITH(FI_SEND, -1);
    return send(fd, p, n, flags);
}

ssize_t fi_sendmsg(int fd, const struct msghdr *m, int flags)
{
    FAIL_WITH(FI_SENDMSG, -1);
    return sendmsg(fd, m, flags);
}

ssize_t fi_write(int fd, const void *p, size_t n)
{
    FAIL_WITH(FI_WRITE, -1);
    return write(fd, p, n);
}

ssize_t fi_writev(int fd, const struct iovec *iov, int iovcnt)
{
    FAIL_WITH(FI_WRITEV, -1);
    return writev(fd, iov, iovcnt);
}

int fi_setsockopt(int fd, int level, int name, const void *v, socklen_t len)
{
    FAIL_WITH(FI_SETSOCKOPT, -1);
    return setsockopt(fd, level, name, v, len);
}

int fi_getsockopt(int fd, int level, int name, void *v, socklen_t *len)
{
    FAIL_WITH(FI_GETSOCKOPT, -1);
    return getsockopt(fd, level, name, v, len);
}

int fi_fcntl(int fd, int cmd, ...)
{
    /* The library passes an int argument or none (F_GETFL, F_GETFD);
     * reading one that was not passed is what glibc's own fcntl does. */
    va_list ap;
    va_start(ap, cmd);
    int arg = va_arg(ap, int);
    va_end(ap);
    FAIL_WITH(FI_FCNTL, -1);
    return fcntl(fd, cmd, arg);
}

int fi_signalfd(int fd, const sigset_t *mask, int flags)
{
    FAIL_WITH(FI_SIGNALFD, -1);
    return signalfd(fd, mask, flags);
}

int fi_pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
    int err = should_fail(FI_SIGMASK);
    if (err)
        return err; /* the error is the return value; errno is untouched */
    return pthread_sigmask(how, set, old);
}

int fi_sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
    FAIL_WITH(FI_SIGMASK, -1);
    return sigprocmask(how, set, old);
}

int fi_close(int fd)
{
    int err = should_fail(FI_CLOSE);
    int rc = close(fd); /* Linux releases the fd whatever close reports */
    if (err) {
        errno = err;
        return -1;
    }
    return rc;
}

int fi_shutdown(int fd, int how)
{
    FAIL_WITH(FI_SHUTDOWN, -1);
    return shutdown(fd, how);
}

int fi_socket(int domain, int type, int proto)
{
    FAIL_WITH(FI_SOCKET, -1);
    return socket(domain, type, proto);
}

int fi_bind(int fd, const struct sockaddr *sa, socklen_t len)
{
    FAIL_WITH(FI_BIND, -1);
    return bind(fd, sa, len);
}

int fi_listen(int fd, int backlog)
{
    FAIL_WITH(FI_LISTEN, -1);
    return listen(fd, backlog);
}

int fi_getsockname(int fd, struct sockaddr *sa, socklen_t *len)
{
    FAIL_WITH(FI_GETSOCKNAME, -1);
    return getsockname(fd, sa, len);
}

int fi_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    FAIL_WITH(FI_CONNECT, -1);
    return connect(fd, sa, len);
}
