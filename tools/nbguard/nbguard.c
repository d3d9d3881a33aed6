/* nbguard.so: LD_PRELOAD guard that proves a server never makes a write-family
 * call that could block.
 *
 * It wraps write, writev, send, sendmsg and sendto. When the fd is a socket or
 * a pipe/FIFO and O_NONBLOCK is not set on it, the call could block the whole
 * event loop, so the guard prints the call, the fd and a backtrace to stderr and
 * aborts: a violation is a crash, never a number in a report. Regular files and
 * ttys are not guarded (a server prints its LISTENING line to stdout).
 *
 * The check is the fd's O_NONBLOCK flag, as docs/PROTOCOL.md §8 says, not MSG_DONTWAIT: a
 * blocking fd blocks the loop elsewhere too (read, accept, a later write
 * without the flag), so it is what the guard insists on.
 *
 * Every guarded call is timed (CLOCK_MONOTONIC); the longest one, the number of
 * guarded calls and how many returned EAGAIN are written at exit to the file
 * named by $NBGUARD_REPORT, as one line:
 *   max_write_us=12 calls=12345 eagain=678 slowest=send eagain_writable=9
 * eagain_writable counts the EAGAINs after which poll() found the fd writable
 * at once: the kernel refuses a write only when the buffer is full, so these
 * are (nearly all) EAGAINs that a fault injector (libfiu) made up; the stress
 * run uses the count to prove that the injector really reached the server.
 *
 * Limits: only calls that go through the dynamic symbols are seen (the
 * program's own calls and other libraries'); glibc's internal writes (stdio
 * flushing, backtrace_symbols_fd) bypass them. The report is written by a
 * destructor, so a process that dies by a signal or _exit() leaves none.
 *
 * The hot path does not allocate and takes no lock: two syscalls (fstat,
 * fcntl; a third, poll, after an EAGAIN), two vDSO clock reads and relaxed atomics, so it is safe in a signal
 * handler and in several threads at once. */
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*send_fn)(int, const void *, size_t, int);
typedef ssize_t (*sendmsg_fn)(int, const struct msghdr *, int);
typedef ssize_t (*sendto_fn)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);

static write_fn real_write;
static writev_fn real_writev;
static send_fn real_send;
static sendmsg_fn real_sendmsg;
static sendto_fn real_sendto;

enum call { C_WRITE, C_WRITEV, C_SEND, C_SENDMSG, C_SENDTO };
static const char *const call_name[] = {"write", "writev", "send", "sendmsg", "sendto"};

static atomic_uint_fast64_t max_ns;
static atomic_uint_fast64_t ncalls;
static atomic_uint_fast64_t neagain;
static atomic_uint_fast64_t neagain_writable;
static atomic_int slowest = C_WRITE;

/* dlsym is not async-signal-safe, so everything is resolved in the
 * constructor; resolve() runs again only if another library's constructor
 * writes before ours has run. */
static void resolve(void)
{
    real_write = (write_fn)dlsym(RTLD_NEXT, "write");
    real_writev = (writev_fn)dlsym(RTLD_NEXT, "writev");
    real_send = (send_fn)dlsym(RTLD_NEXT, "send");
    real_sendmsg = (sendmsg_fn)dlsym(RTLD_NEXT, "sendmsg");
    real_sendto = (sendto_fn)dlsym(RTLD_NEXT, "sendto");
}

__attribute__((constructor)) static void nbguard_init(void)
{
    resolve();
    /* The first backtrace() loads libgcc_s (it allocates): do it now, so the
     * abort path later does not depend on malloc. */
    void *frames[2];
    (void)backtrace(frames, 2);
}

/* Appends s to buf at *len (bounded); the abort path cannot use stdio. */
static void put_str(char *buf, size_t cap, size_t *len, const char *s)
{
    while (*s && *len + 1 < cap)
        buf[(*len)++] = *s++;
    buf[*len] = '\0';
}

static void put_u64(char *buf, size_t cap, size_t *len, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    char out[24];
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    put_str(buf, cap, len, out);
}

static void raw_stderr(const char *s, size_t n)
{
    /* syscall-level write: stderr may itself be a blocking pipe, and going
     * through our own wrapper would report the reporter. */
    while (n > 0) {
        ssize_t r = real_write ? real_write(2, s, n) : -1;
        if (r <= 0)
            return;
        s += r;
        n -= (size_t)r;
    }
}

static _Noreturn void violation(enum call c, int fd, const char *kind)
{
    char msg[256];
    size_t len = 0;
    put_str(msg, sizeof msg, &len, "nbguard: blocking ");
    put_str(msg, sizeof msg, &len, call_name[c]);
    put_str(msg, sizeof msg, &len, "() on fd ");
    put_u64(msg, sizeof msg, &len, (uint64_t)fd);
    put_str(msg, sizeof msg, &len, " (");
    put_str(msg, sizeof msg, &len, kind);
    put_str(msg, sizeof msg, &len, " without O_NONBLOCK): aborting\nbacktrace:\n");
    raw_stderr(msg, len);
    void *frames[64];
    int n = backtrace(frames, 64);
    backtrace_symbols_fd(frames, n, 2);
    abort();
}

/* Returns true if the call must be timed (a non-blocking socket or pipe);
 * aborts if it could block. */
static bool guarded(enum call c, int fd)
{
    if (!real_write)
        resolve();
    struct stat st;
    if (fstat(fd, &st) < 0)
        return false; /* EBADF and friends: the real call reports it */
    const char *kind = S_ISSOCK(st.st_mode) ? "socket" : S_ISFIFO(st.st_mode) ? "pipe" : NULL;
    if (!kind)
        return false;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        violation(c, fd, kind);
    return true;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void account(enum call c, int fd, uint64_t t0, ssize_t r, int err)
{
    uint64_t d = now_ns() - t0;
    atomic_fetch_add_explicit(&ncalls, 1, memory_order_relaxed);
    if (r < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
        atomic_fetch_add_explicit(&neagain, 1, memory_order_relaxed);
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 0) == 1 && (p.revents & POLLOUT))
            atomic_fetch_add_explicit(&neagain_writable, 1, memory_order_relaxed);
    }
    uint_fast64_t cur = atomic_load_explicit(&max_ns, memory_order_relaxed);
    while (d > cur) {
        if (atomic_compare_exchange_weak_explicit(&max_ns, &cur, d, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            atomic_store_explicit(&slowest, (int)c, memory_order_relaxed);
            break;
        }
    }
}

/* One macro body for the five wrappers: check, time, call, account, and keep
 * errno as the real call left it. */
#define GUARDED_CALL(c, fd, real, ...)                                                             \
    do {                                                                                           \
        if (!guarded(c, fd))                                                                       \
            return real(__VA_ARGS__);                                                              \
        uint64_t t0_ = now_ns();                                                                   \
        ssize_t r_ = real(__VA_ARGS__);                                                            \
        int e_ = errno;                                                                            \
        account(c, fd, t0_, r_, e_);                                                                   \
        errno = e_;                                                                                \
        return r_;                                                                                 \
    } while (0)

ssize_t write(int fd, const void *buf, size_t n)
{
    GUARDED_CALL(C_WRITE, fd, real_write, fd, buf, n);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    GUARDED_CALL(C_WRITEV, fd, real_writev, fd, iov, iovcnt);
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    GUARDED_CALL(C_SEND, fd, real_send, fd, buf, n, flags);
}

ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
    GUARDED_CALL(C_SENDMSG, fd, real_sendmsg, fd, m, flags);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to,
               socklen_t tolen)
{
    GUARDED_CALL(C_SENDTO, fd, real_sendto, fd, buf, n, flags, to, tolen);
}

__attribute__((destructor)) static void nbguard_report(void)
{
    const char *path = getenv("NBGUARD_REPORT");
    if (!path || !*path || !real_write)
        return;
    uint64_t ns = atomic_load(&max_ns);
    char line[160];
    size_t len = 0;
    put_str(line, sizeof line, &len, "max_write_us=");
    put_u64(line, sizeof line, &len, (ns + 999) / 1000);
    put_str(line, sizeof line, &len, " calls=");
    put_u64(line, sizeof line, &len, atomic_load(&ncalls));
    put_str(line, sizeof line, &len, " eagain=");
    put_u64(line, sizeof line, &len, atomic_load(&neagain));
    put_str(line, sizeof line, &len, " slowest=");
    put_str(line, sizeof line, &len, call_name[atomic_load(&slowest)]);
    put_str(line, sizeof line, &len, " eagain_writable=");
    put_u64(line, sizeof line, &len, atomic_load(&neagain_writable));
    put_str(line, sizeof line, &len, "\n");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    /* A regular file: not guarded, so the real call is used directly. */
    (void)real_write(fd, line, len);
    close(fd);
}
