/* The byte buffer: one allocation (header and region), released when empty
 * (see buf.h). */
#include "buf.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HDR offsetof(struct evl__bufmem, data)

static _Thread_local size_t released;

size_t evl__buf_released(void)
{
    size_t n = released;
    released = 0;
    return n;
}

static size_t pow2_at_least(size_t n)
{
    size_t c = EVL__BUF_MIN;
    while (c < n) {
        if (c > SIZE_MAX / 2)
            return n;
        c *= 2;
    }
    return c;
}

/* Moves the live bytes into a fresh region of new_cap bytes at offset 0. */
static int relocate(evl__buf *b, size_t new_cap)
{
    struct evl__bufmem *m = new_cap <= SIZE_MAX - HDR ? malloc(HDR + new_cap) : NULL;
    if (!m) {
        errno = ENOMEM;
        return -1;
    }
    m->off = 0;
    m->len = 0;
    m->cap = new_cap;
    if (b->m) {
        m->len = b->m->len;
        memcpy(m->data, b->m->data + b->m->off, m->len);
        released += b->m->cap;
        free(b->m);
    }
    b->m = m;
    return 0;
}

/* Makes room for n bytes at the tail. Compacting in place costs len bytes
 * of memmove, so it is done only when the reclaimed front (off) is at least
 * that large: every moved byte is paid for by a consumed one, which keeps
 * append amortised O(1) even for a consume-1/append-1 pattern. Otherwise the
 * region grows to a power of two, at least doubling. */
static int make_room(evl__buf *b, size_t n)
{
    size_t len = evl__buf_len(b), cap = evl__buf_cap(b);
    if (n > SIZE_MAX - len) {
        errno = ENOMEM;
        return -1;
    }
    size_t need = len + n;
    if (b->m && b->m->off + need <= cap)
        return 0;
    if (b->m && need <= cap && b->m->off >= len) {
        memmove(b->m->data, b->m->data + b->m->off, len);
        b->m->off = 0;
        return 0;
    }
    size_t want = need > cap ? need : cap + 1;
    return relocate(b, pow2_at_least(want));
}

/* Gives memory back once the content is small beside the region, keeping
 * cap <= 4*len + SLACK; the copy is paid for by the bytes consumed (or the
 * room reserved and not used) since the region was sized. On ENOMEM the old
 * region stays. */
static void shrink_if_sparse(evl__buf *b)
{
    if (b->m->cap > 4 * b->m->len + EVL__BUF_SLACK)
        (void)relocate(b, pow2_at_least(2 * b->m->len));
}

int evl__buf_append(evl__buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (make_room(b, n) < 0)
        return -1;
    memcpy(b->m->data + b->m->off + b->m->len, p, n);
    b->m->len += n;
    return 0;
}

char *evl__buf_reserve(evl__buf *b, size_t n)
{
    if (make_room(b, n ? n : 1) < 0)
        return NULL;
    return b->m->data + b->m->off + b->m->len;
}

void evl__buf_commit(evl__buf *b, size_t n)
{
    assert(b->m && b->m->off + b->m->len + n <= b->m->cap);
    b->m->len += n;
    if (b->m->len == 0) {
        evl__buf_free(b); /* a reserve that read nothing keeps no memory */
        return;
    }
    shrink_if_sparse(b); /* a large reserve that received little */
}

void evl__buf_consume(evl__buf *b, size_t n)
{
    assert(n <= evl__buf_len(b));
    if (n == 0)
        return;
    b->m->off += n;
    b->m->len -= n;
    if (b->m->len == 0) {
        evl__buf_free(b);
        return;
    }
    shrink_if_sparse(b);
}

ssize_t evl__buf_drain(evl__buf *b, evl__writer_fn w, void *ctx, size_t budget)
{
    size_t done = 0;
    while (b->m && done < budget) {
        size_t n = b->m->len < budget - done ? b->m->len : budget - done;
        ssize_t r = w(ctx, b->m->data + b->m->off, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        if (r == 0) /* a writer that takes nothing without an error: no room */
            break;
        assert((size_t)r <= n);
        evl__buf_consume(b, (size_t)r);
        done += (size_t)r;
    }
    return (ssize_t)done;
}

void evl__buf_free(evl__buf *b)
{
    if (b->m)
        released += b->m->cap;
    free(b->m);
    b->m = NULL;
}

const char *evl__buf_check(const evl__buf *b)
{
    const struct evl__bufmem *m = b->m;
    if (!m)
        return NULL;
    if (m->cap == 0)
        return "a region of no bytes is allocated";
    if (m->off > m->cap || m->len > m->cap - m->off)
        return "live bytes extend past the region";
    if (m->len == 0)
        return "empty buffer holds memory";
    if (m->cap > 4 * m->len + EVL__BUF_SLACK)
        return "capacity exceeds 4*len + slack";
    return NULL;
}
