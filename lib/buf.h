/*
 * evl__buf — the byte buffer behind every connection's input and output.
 * Internal (not installed); its own small API so it can be unit-tested and
 * fuzzed without sockets.
 *
 * One contiguous region: [base, base+cap) holds the live bytes at
 * [base+off, base+off+len). Contiguous because the handler reads input in
 * place (evl_data). An empty buffer holds no memory (base == NULL), so idle
 * connections cost nothing; capacity is kept within cap <= 4*len + SLACK, so
 * a buffer that once held a burst gives the memory back as it drains.
 */
#ifndef EVL_BUF_H
#define EVL_BUF_H

#include <stddef.h>
#include <sys/types.h>

#define EVL__BUF_MIN   ((size_t)4096)       /* smallest allocation */
#define EVL__BUF_SLACK ((size_t)256 << 10) /* capacity allowed beyond 4*len */

typedef struct evl__buf {
    char *base;
    size_t off; /* consumed bytes at the front, not yet reclaimed */
    size_t len; /* live bytes */
    size_t cap; /* allocated bytes */
} evl__buf;

/* Writes up to n bytes from p; returns bytes written (>0), or -1 with errno
 * (EAGAIN: no room now; EINTR: retried by the caller; others: fatal). */
typedef ssize_t (*evl__writer_fn)(void *ctx, const void *p, size_t n);

static inline const char *evl__buf_data(const evl__buf *b) { return b->base ? b->base + b->off : NULL; }

/* Appends n bytes. 0, or -1 with errno ENOMEM (the buffer is unchanged). */
int evl__buf_append(evl__buf *b, const void *p, size_t n);

/* Room for n more bytes at the tail, for a read() straight into the buffer:
 * returns where to write, or NULL (ENOMEM). Follow with evl__buf_commit. */
char *evl__buf_reserve(evl__buf *b, size_t n);
/* Declares n bytes (n <= the reserved amount) written at the tail. */
void evl__buf_commit(evl__buf *b, size_t n);

/* Drops the first n bytes (n <= len). Releases the memory when empty. */
void evl__buf_consume(evl__buf *b, size_t n);

/* Hands bytes from the front to w until the buffer is empty, budget bytes
 * were written, or w reports EAGAIN; EINTR is retried. Written bytes are
 * consumed. Returns the bytes written (>= 0), or -1 with w's errno on any
 * other error (what was written before the error is still consumed). */
ssize_t evl__buf_drain(evl__buf *b, evl__writer_fn w, void *ctx, size_t budget);

void evl__buf_free(evl__buf *b);

/* Checks the invariants (bounds, empty => no memory, capacity bound). Returns
 * NULL when sound, else a description of the first broken one. For tests and
 * fuzzers; costs nothing in the loop. */
const char *evl__buf_check(const evl__buf *b);

#endif /* EVL_BUF_H */
