/* The byte buffer: one contiguous region, released when empty (see buf.h). */
#include "buf.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    char *p = malloc(new_cap);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    if (b->len)
        memcpy(p, b->base + b->off, b->len);
    free(b->base);
    b->base = p;
    b->off = 0;
    b->cap = new_cap;
    return 0;
}

/* Makes room for n bytes at the tail. Compacting in place costs len bytes
 * of memmove, so it is done only when the reclaimed front (off) is at least
 * that large: every moved byte is paid for by a consumed one, which keeps
 * append amortised O(1) even for a consume-1/append-1 pattern. Otherwise the
 * region grows to a power of two, at least doubling. */
static int make_room(evl__buf *b, size_t n)
{
    if (n > SIZE_MAX - b->len) {
        errno = ENOMEM;
        return -1;
    }
    size_t need = b->len + n;
    if (b->off + need <= b->cap)
        return 0;
    if (need <= b->cap && b->off >= b->len) {
        memmove(b->base, b->base + b->off, b->len);
        b->off = 0;
        return 0;
    }
    size_t want = need > b->cap ? need : b->cap + 1;
    return relocate(b, pow2_at_least(want));
}

/* Gives memory back once the content is small beside the region, keeping
 * cap <= 4*len + SLACK; the copy is paid for by the bytes consumed (or the
 * room reserved and not used) since the region was sized. On ENOMEM the old
 * region stays. */
static void shrink_if_sparse(evl__buf *b)
{
    if (b->cap > 4 * b->len + EVL__BUF_SLACK)
        (void)relocate(b, pow2_at_least(2 * b->len));
}

int evl__buf_append(evl__buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (make_room(b, n) < 0)
        return -1;
    memcpy(b->base + b->off + b->len, p, n);
    b->len += n;
    return 0;
}

char *evl__buf_reserve(evl__buf *b, size_t n)
{
    if (make_room(b, n ? n : 1) < 0)
        return NULL;
    return b->base + b->off + b->len;
}

void evl__buf_commit(evl__buf *b, size_t n)
{
    assert(b->off + b->len + n <= b->cap);
    b->len += n;
    if (b->len == 0) {
        evl__buf_free(b); /* a reserve that read nothing keeps no memory */
        return;
    }
    shrink_if_sparse(b); /* a large reserve that received little */
}

void evl__buf_consume(evl__buf *b, size_t n)
{
    assert(n <= b->len);
    b->off += n;
    b->len -= n;
    if (b->len == 0) {
        evl__buf_free(b);
        return;
    }
    shrink_if_sparse(b);
}

ssize_t evl__buf_drain(evl__buf *b, evl__writer_fn w, void *ctx, size_t budget)
{
    size_t done = 0;
    while (b->len > 0 && done < budget) {
        size_t n = b->len < budget - done ? b->len : budget - done;
        ssize_t r = w(ctx, b->base + b->off, n);
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
    free(b->base);
    b->base = NULL;
    b->off = b->len = b->cap = 0;
}

const char *evl__buf_check(const evl__buf *b)
{
    if ((b->base == NULL) != (b->cap == 0))
        return "base and cap disagree about having memory";
    if (b->off > b->cap || b->len > b->cap - b->off)
        return "live bytes extend past the region";
    if (b->len == 0 && b->base != NULL)
        return "empty buffer holds memory";
    if (b->cap > 4 * b->len + EVL__BUF_SLACK)
        return "capacity exceeds 4*len + slack";
    return NULL;
}
