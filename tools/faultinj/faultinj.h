/*
 * faultinj: make the library's Nth call of one kind fail with a chosen errno.
 *
 * How the calls are caught: the library's objects are copied with
 * `objcopy --redefine-sym malloc=fi_malloc ...` (tools/faultinj/syms.txt),
 * so only calls made from the library (lib/ *.c) land in the fi_ functions of faultinj.c;
 * the test driver, cmocka, ASan and libc keep the real ones. (The linker's
 * --wrap would also redirect the driver's own malloc and read.) faultinj.mk
 * checks after the copy that the library calls no function that is neither
 * caught here nor listed as harmless, so a new system call in lib/ cannot
 * escape the torture run unnoticed.
 *
 * Use (single-threaded, like the library):
 *
 *   fi_reset();                         counters to 0, nothing armed
 *   ... run a scenario ...
 *   n = fi_count(FI_EPOLL_CTL);         the scenario made n epoll_ctl calls
 *   fi_reset();
 *   fi_arm(FI_EPOLL_CTL, 3, ENOMEM, 1); the 3rd epoll_ctl fails, once
 *   ... run the scenario again, check the invariants ...
 *   fi_fired();                         1 if the 3rd call was reached
 *
 * For a fuzzer (fuzz_loop): fi_set_hook(decide, ctx) lets the input choose.
 * decide(ctx, kind, nth) runs before every caught call and returns 0 to
 * let it through or an errno to fail it with; the hook wins over fi_arm.
 * fi_errnos(kind) gives the errnos worth choosing from.
 *
 * A failed call has no side effect, as the kernel's errors have none, with
 * one exception that follows the kernel: close() releases the fd even when
 * it reports an error (close(2), Linux), so a failed fi_close still closes.
 * pthread_sigmask reports its error as the return value, the others as -1
 * (NULL for the allocators) with errno.
 */
#ifndef FAULTINJ_H
#define FAULTINJ_H

#include <stddef.h>

enum fi_kind {
    FI_MALLOC,
    FI_CALLOC,
    FI_REALLOC,
    FI_EPOLL_CREATE1,
    FI_EPOLL_CTL,
    FI_EPOLL_WAIT,
    FI_ACCEPT4,
    FI_READ,
    FI_RECV,
    FI_SEND,
    FI_SENDMSG,
    FI_WRITE,
    FI_WRITEV,
    FI_SETSOCKOPT,
    FI_GETSOCKOPT,
    FI_FCNTL,
    FI_SIGNALFD,
    FI_SIGMASK, /* pthread_sigmask and sigprocmask */
    FI_CLOSE,
    FI_SHUTDOWN,
    FI_SOCKET,
    FI_BIND,
    FI_LISTEN,
    FI_GETSOCKNAME,
    FI_CONNECT,
    FI_NKINDS
};

/* What to do before a caught call: 0 = make it, else fail it with this errno. */
typedef int (*fi_hook_fn)(void *ctx, enum fi_kind kind, unsigned long nth);

const char *fi_kind_name(enum fi_kind kind);
/* The kind named name (as fi_kind_name spells it), or -1. */
int fi_kind_by_name(const char *name);

/* The errnos the call's man page lists (its ERRORS section, and for the
 * socket calls the pending socket errors tcp(7) says they report); *n is
 * set to their number. Never empty. */
const int *fi_errnos(enum fi_kind kind, size_t *n);

/* Counters to zero, fi_arm and the hook cleared. */
void fi_reset(void);
/* From now on, calls nth .. nth+times-1 (1-based, counted since fi_reset) of
 * kind fail with err; times 0 fails every call from nth on. One arm at a
 * time: a new fi_arm replaces the last. */
void fi_arm(enum fi_kind kind, unsigned long nth, int err, unsigned long times);
void fi_disarm(void);
void fi_set_hook(fi_hook_fn fn, void *ctx);

/* Calls of kind since fi_reset (failed ones included). */
unsigned long fi_count(enum fi_kind kind);
/* Calls failed on purpose since fi_reset. */
unsigned long fi_fired(void);

#endif /* FAULTINJ_H */
