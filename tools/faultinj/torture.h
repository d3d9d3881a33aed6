/*
 * The torture driver's scenario side (scenarios.c) and the checks every
 * scenario shares (check.c). A scenario runs in a forked child with at most
 * one fault armed (faultinj.h); it drives the loop through the public API
 * only, plays the peers with the driver's own system calls (which faultinj
 * does not catch), and calls tt_violation, which ends the child, the moment
 * an invariant breaks.
 */
#ifndef TORTURE_H
#define TORTURE_H

#include "evloop.h"
#include "faultinj.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TT_MAX_CONNS 16
#define TT_STALL_MS  1000 /* an exchange that makes no progress this long: stalled */
#define TT_EXIT_VIOLATION 3 /* child exit codes */
#define TT_EXIT_NOT_REACHED 4
#define TT_EXIT_GAVE_UP 5     /* persistent fault: the scenario could not go on */

/* One accepted or adopted connection, as the handler saw it (its udata). */
typedef struct tt_conn {
    evl_conn *c;          /* NULL once on_close ran */
    int closes;           /* on_close calls: exactly 1 by the end */
    size_t big_left;      /* bytes of a BIG reply still to write */
    size_t big_off;       /* offset of the next one in the pattern */
    bool write_failed;    /* an evl_write returned -1 */
} tt_conn;

typedef struct tt_ctx {
    evl_loop *l;
    tt_conn conns[TT_MAX_CONNS];
    int nconns;
    /* The fault of this run (armed false in the counting run). */
    bool armed;
    enum fi_kind kind;
    int err;
    unsigned long nth;
    bool persist;         /* every call of kind from nth on fails, not one */
    bool gave_up;         /* persist: stopped where progress was impossible */
    int in_loop;          /* inside evl_run_once/evl_run (callbacks may run) */
    int fds_before;       /* open fds when the scenario started */
    int stall_ms;         /* no progress this long: stalled (TT_STALL_MS; less
                             under persistent faults, where stalls are expected) */
    int stop_after_lines; /* evl_run scenarios: SIGTERM after this many lines (0: never) */
    int lines;            /* request lines served */
    int ticks;            /* on_tick calls */
    size_t fd_bytes;      /* read from extra fds by on_fd */
    bool fd_eof;          /* on_fd saw EOF (and removed the fd) */
} tt_ctx;

typedef struct tt_scenario {
    const char *name;
    const char *what;
    void (*run)(tt_ctx *x);
} tt_scenario;

extern const tt_scenario tt_scenarios[];
extern tt_ctx *tt_current; /* the child's one context (set by the runner) */
extern const size_t tt_nscenarios;

/* ---- check.c -------------------------------------------------------------- */

/* Prints "VIOLATION <class>: detail" (class is what reports group by) and
 * ends the child with TT_EXIT_VIOLATION. Under a persistent fault, the
 * classes that need the library to make progress (a retry, a fresh
 * connection, an exchange, a stop) end the scenario instead: through
 * tt_finish's checks, or at once from inside the loop. */
_Noreturn void tt_violation(const tt_ctx *x, const char *class, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A public call returned failure with err: it must be the fault's doing,
 * reported as the header says (the injected errno, or ENOMEM for an
 * allocation), never a failure out of nowhere. */
void tt_check_failure(const tt_ctx *x, const char *call, int err);

/* The handler every scenario uses (see scenarios.c for its protocol). */
const evl_handler *tt_handler(void);
tt_conn *tt_track(tt_ctx *x, evl_conn *c);

/* One evl_run_once; a -1 is checked with tt_check_failure. */
void tt_step(tt_ctx *x, int timeout_ms);

enum tt_outcome { TT_SERVED, TT_CLOSED, TT_STALLED };
/* Sends req from peer (a non-blocking socket) and drives the loop until the
 * peer has read expect_len bytes equal to expect (TT_SERVED), or sees EOF or a
 * reset after a prefix of it (TT_CLOSED), or nothing moves for x->stall_ms.
 * Bytes that are not a prefix of expect are a violation. */
enum tt_outcome tt_exchange(tt_ctx *x, int peer, const char *req, size_t req_len,
                            const char *expect, size_t expect_len);
/* Drives the loop until peer sees EOF or a reset; false if it stalled. */
bool tt_wait_eof(tt_ctx *x, int peer);
/* Drives the loop until every tracked connection's on_close ran. */
bool tt_wait_all_closed(tt_ctx *x);
/* A connection that the fault may have hit: served or closed, never stalled. */
void tt_expect_served_or_closed(const tt_ctx *x, enum tt_outcome o, const char *what);
/* The loop still serves: a fresh socketpair, adopted, gets its echo (a
 * second pair is tried if the fault fired during the first). */
void tt_check_serves(tt_ctx *x);
/* No spin: idle for a while, the loop makes only a few epoll_wait calls. */
void tt_check_idle(tt_ctx *x);
/* evl_free, on_close exactly once for everything tracked, the driver's fds
 * (peers) closed by the caller before: no fd and no byte leaked. Exits the
 * child: 0, or TT_EXIT_NOT_REACHED when the armed fault never fired. */
_Noreturn void tt_finish(tt_ctx *x);

int tt_count_fds(void);
uint64_t tt_now_ms(void);
/* A connected AF_UNIX stream socketpair; sv[1] (the peer) non-blocking and
 * owned by the driver (closed by tt_finish). */
void tt_pair(tt_ctx *x, int sv[2]);
/* fd is the driver's: closed by tt_finish, or now by tt_close_own. */
void tt_own(tt_ctx *x, int fd);
void tt_close_own(int fd);
/* The byte at offset i of a BIG reply. */
char tt_pattern(size_t i);

#endif /* TORTURE_H */
