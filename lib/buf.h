/*
 * evl__buf — the byte buffer behind every connection's input and output.
 * Internal (not installed); its own small API so it can be unit-tested and
 * fuzzed without sockets.
 *
 * One pointer in the connection (8 bytes): NULL while empty, so an idle
 * connection's two buffers cost 16 bytes and no allocation. When bytes
 * arrive it points at one allocation holding a small header and the region:
 * the live bytes are data[off, off+len) of data[0, cap). Contiguous because
 * the handler reads input in place (evl_data). Capacity is kept within
 * cap <= 4*len + SLACK, so a buffer that once held a burst gives the memory
 * back as it drains; an emptied buffer frees it at once.
 */
#ifndef EVL_BUF_H
#define EVL_BUF_H

#include <stddef.h>
#include <sys/types.h>

#define EVL__BUF_MIN   ((size_t)4096)       /* smallest region */
#define EVL__BUF_SLACK ((size_t)256 << 10) /* capacity allowed beyond 4*len */

struct evl__bufmem {
    size_t off; /* consumed bytes at the front, not yet reclaimed */
    size_t len; /* live bytes */
    size_t cap; /* bytes in data[] */
    char data[];
};

typedef struct evl__buf {
    struct evl__bufmem *m; /* NULL: empty, holds no memory */
} evl__buf;

static inline size_t evl__buf_len(const evl__buf *b) { return b->m ? b->m->len : 0; }
static inline size_t evl__buf_cap(const evl__buf *b) { return b->m ? b->m->cap : 0; }
static inline const char *evl__buf_data(const evl__buf *b) { return b->m ? b->m->data + b->m->off : NULL; }

/* Writes up to n bytes from p; returns bytes written (>0), or -1 with errno
 * (EAGAIN: no room now; EINTR: retried by the caller; others: fatal). */
typedef ssize_t (*evl__writer_fn)(void *ctx, const void *p, size_t n);

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

/* Bytes of regions this thread's buffers have given back to malloc since
 * the last call, which resets the count: the loop's trim timer asks it
 * whether a malloc_trim is worth its cost (loop.c). Per thread, as a loop
 * runs on one thread. */
size_t evl__buf_released(void);

/* Checks the invariants (bounds, empty => no memory, capacity bound). Returns
 * NULL when sound, else a description of the first broken one. For tests and
 * fuzzers; costs nothing in the loop. */
const char *evl__buf_check(const evl__buf *b);

#endif /* EVL_BUF_H */
