/* echo_libuv: the echo server as libuv users write it when they care about
 * speed. Reads land in 64 KiB blocks from a free list (no malloc per read);
 * the echo is first offered to uv_try_write, and only a tail the socket did
 * not take becomes a uv_write request, which owns its block until its
 * callback. The write queue is bounded like every other server's: reading
 * stops at PEER_HIGH queued bytes and resumes at PEER_LOW. */
#include "peer_common.h"

#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <uv.h>

typedef struct block {
    uv_write_t req;      /* used only when the block carries a queued write */
    struct block *next;  /* free list */
    char data[PEER_READ];
} block;

typedef struct conn {
    uv_tcp_t tcp;        /* first: the handle pointer is the conn pointer */
    uv_shutdown_t shut;
    bool paused;
} conn;

#define POOL_KEEP 64     /* free blocks kept; more go back to malloc */
static block *pool;
static unsigned pooled;

static block *block_get(void)
{
    block *b = pool;
    if (b) {
        pool = b->next;
        pooled--;
        return b;
    }
    return malloc(sizeof *b);
}

static void block_put(block *b)
{
    if (pooled >= POOL_KEEP) {
        free(b);
        return;
    }
    b->next = pool;
    pool = b;
    pooled++;
}

static block *block_of(const uv_buf_t *buf)
{
    return (block *)(void *)(buf->base - offsetof(block, data));
}

static void on_closed(uv_handle_t *h) { free(h); }

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    block *b = block_get();
    *buf = b ? uv_buf_init(b->data, sizeof b->data) : uv_buf_init(NULL, 0);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    /* Cancelled (UV_ECANCELED) when SIGTERM closed the handle first. */
    if (!uv_is_closing((uv_handle_t *)req->handle))
        uv_close((uv_handle_t *)req->handle, on_closed);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_written(uv_write_t *req, int status)
{
    uv_stream_t *s = req->handle;
    conn *c = (conn *)s;
    block_put((block *)req);
    if (status < 0) { /* reset, or cancelled by uv_close */
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, on_closed);
        return;
    }
    if (c->paused && uv_stream_get_write_queue_size(s) <= PEER_LOW) {
        c->paused = false;
        uv_read_start(s, on_alloc, on_read);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = (conn *)s;
    block *b = buf->base ? block_of(buf) : NULL;
    if (nread > 0 && !b)
        nread = UV_ENOBUFS; /* libuv reports that itself; said again for the analyzer */
    if (nread <= 0) {
        if (b)
            block_put(b);
        if (nread == 0)
            return; /* EAGAIN */
        uv_read_stop(s);
        /* EOF: uv_shutdown waits for queued writes, so owed echoes go out. */
        if (nread != UV_EOF || uv_shutdown(&c->shut, s, on_shutdown) < 0)
            uv_close((uv_handle_t *)s, on_closed);
        return;
    }
    /* uv_try_write sends only when nothing is queued, so order is kept. */
    int sent = 0;
    if (uv_stream_get_write_queue_size(s) == 0) {
        uv_buf_t now = uv_buf_init(b->data, (unsigned)nread);
        sent = uv_try_write(s, &now, 1);
        if (sent == UV_EAGAIN)
            sent = 0;
        else if (sent < 0) {
            block_put(b);
            uv_close((uv_handle_t *)s, on_closed);
            return;
        }
    }
    if (sent == nread) {
        block_put(b);
        return;
    }
    uv_buf_t rest = uv_buf_init(b->data + sent, (unsigned)(nread - sent));
    if (uv_write(&b->req, s, &rest, 1, on_written) < 0) {
        block_put(b);
        uv_close((uv_handle_t *)s, on_closed);
        return;
    }
    if (uv_stream_get_write_queue_size(s) >= PEER_HIGH) {
        c->paused = true;
        uv_read_stop(s);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    uv_tcp_init(server->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static uv_tcp_t listener;
static uv_signal_t sig_term, sig_int;

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    /* Only connections were allocated; the rest are static. */
    bool conn_handle = h->type == UV_TCP && h != (uv_handle_t *)&listener;
    uv_close(h, conn_handle ? on_closed : NULL);
}

static void on_signal(uv_signal_t *sg, int signum)
{
    (void)signum;
    uv_walk(sg->loop, close_any, NULL);
}

int main(int argc, char **argv)
{
    int port = peer_args(argc, argv, "echo_libuv");
    uv_loop_t *loop = uv_default_loop();
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    uv_tcp_init(loop, &listener);
    if (uv_tcp_bind(&listener, (const struct sockaddr *)&a, 0) < 0 ||
        uv_listen((uv_stream_t *)&listener, SOMAXCONN, on_connection) < 0)
        peer_die("echo_libuv", "bind/listen");
    int len = sizeof a;
    uv_tcp_getsockname(&listener, (struct sockaddr *)&a, &len);
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    peer_listening(ntohs(a.sin_port));
    uv_run(loop, UV_RUN_DEFAULT); /* returns once every handle is closed */
    uv_loop_close(loop);
    while (pool) {
        block *b = pool;
        pool = b->next;
        free(b);
    }
    return 0;
}
