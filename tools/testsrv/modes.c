/*
 * modes.c: --mode resp and --mode http (docs/PROTOCOL.md §6). The parsing is in resp.c
 * and http.c (pure functions); this file turns a parsed request into its
 * reply. resp serves a whole pipeline per on_read call, as Redis does;
 * http, like cmd mode, one request per call (the library re-dispatches the
 * rest), and replies keep request order: while GET /bytes/<n> streams, later
 * requests wait in the buffer.
 * Malformed input gets an error reply, then a graceful close.
 */
#include "testsrv.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "http.h"
#include "resp.h"

/* ---- resp ----------------------------------------------------------------- */

/* Redis serves every complete request of a pipeline in one pass and sends
 * the replies with one write; so does this mode (cmd mode keeps one command
 * per call, to exercise the library's re-dispatch). Replies gather here and
 * go out in one evl_write when the pass ends or the buffer is full. */
#define RESP_BATCH 256 /* requests per on_read; the library re-dispatches the rest */
struct resp_out {
    evl_conn *c;
    size_t n;
    char b[16384];
};

static void out_flush(struct resp_out *o)
{
    if (o->n > 0)
        (void)evl_write(o->c, o->b, o->n); /* a failure has already aborted c */
    o->n = 0;
}

static void out_add(struct resp_out *o, const void *p, size_t n)
{
    if (n > sizeof o->b - o->n)
        out_flush(o);
    if (n > sizeof o->b) {
        (void)evl_write(o->c, p, n); /* order kept: the buffer was flushed first */
        return;
    }
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void resp_bulk(struct resp_out *o, const char *p, size_t n)
{
    char head[32];
    int k = snprintf(head, sizeof head, "$%zu\r\n", n);
    out_add(o, head, (size_t)k);
    out_add(o, p, n);
    out_add(o, "\r\n", 2);
}

/* "-ERR <before><arg><after>": arg comes from the client, so it is cut
 * short and no CR or LF in it may end the line early. */
static void resp_error(struct resp_out *o, const char *before, const char *arg, size_t arg_len,
                       const char *after)
{
    char name[64] = {0};
    memcpy(name, arg, arg_len < sizeof name - 1 ? arg_len : sizeof name - 1);
    /* %s stops at a NUL, so a CR or LF after one is never printed either. */
    for (char *q = name; (q = strpbrk(q, "\r\n")) != NULL;)
        *q = ' ';
    char line[192];
    int k = snprintf(line, sizeof line, "-ERR %s%s%s\r\n", before, name, after);
    out_add(o, line, (size_t)k);
}

/* Serves one parsed request into o. */
static void resp_serve(struct resp_out *o, const struct resp_request *r)
{
    switch (resp_command(r)) {
    case RESP_CMD_EMPTY:
        break;
    case RESP_CMD_PING:
        if (r->argc == 1)
            out_add(o, "+PONG\r\n", 7);
        else if (r->argc == 2)
            resp_bulk(o, r->argv[1], r->argl[1]);
        else
            resp_error(o, "wrong number of arguments for '", "ping", 4, "' command");
        break;
    case RESP_CMD_ECHO:
        if (r->argc == 2)
            resp_bulk(o, r->argv[1], r->argl[1]);
        else
            resp_error(o, "wrong number of arguments for '", "echo", 4, "' command");
        break;
    case RESP_CMD_UNKNOWN: /* redis-benchmark asks CONFIG GET first: an error, not a close */
        resp_error(o, "unknown command '", r->argv[0], r->argl[0], "'");
        break;
    }
}

void on_read_resp(evl_conn *c)
{
    struct resp_out o = {.c = c, .n = 0};
    const evl_options *opt = evl_get_options(evl_loop_of(c));
    for (int i = 0; i < RESP_BATCH; i++) {
        size_t len;
        const char *p = evl_data(c, &len);
        if (len == 0)
            break;
        struct resp_request r;
        enum resp_status st = resp_parse(p, len, &r);
        if (st == RESP_NEED_MORE)
            break;
        if (st == RESP_ERR) {
            resp_error(&o, "Protocol error: ", r.error, strlen(r.error), "");
            out_flush(&o);
            evl_close(c);
            return;
        }
        resp_serve(&o, &r); /* copies what it needs of argv (the input) */
        evl_consume(c, r.consumed);
        if (evl_pending(c) >= opt->wbuf_high)
            break; /* a client that does not read: the library pauses it */
    }
    out_flush(&o);
}

/* ---- http ----------------------------------------------------------------- */

#define HTTP_BODY "hello, world\n" /* bench/run.sh gives nginx the same body */

static void http_error(evl_conn *c, int code)
{
    const char *reason = http_reason(code);
    char head[256];
    int k = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "%sConnection: close\r\n\r\n%s\n",
                     code, reason, strlen(reason) + 1, code == 405 ? "Allow: GET\r\n" : "", reason);
    (void)evl_write(c, head, (size_t)k);
    evl_close(c);
}

/* What a response says about the connection: HTTP/1.1 keeps it by default,
 * HTTP/1.0 only when asked, and then says so. */
static const char *conn_header(const struct http_request *r)
{
    if (!r->keep_alive)
        return "Connection: close\r\n";
    return r->minor == 0 ? "Connection: keep-alive\r\n" : "";
}

void on_read_http(evl_conn *c)
{
    struct sconn *sc = evl_udata(c);
    if (sc->dead || sc->blast_left > 0)
        return; /* later requests wait for the streamed body's last byte */
    size_t len;
    const char *p = evl_data(c, &len);
    if (len == 0)
        return;
    struct http_request r;
    switch (http_parse(p, len, &r)) {
    case HTTP_NEED_MORE:
        return;
    case HTTP_ERR:
        http_error(c, r.code);
        return;
    case HTTP_OK:
        break;
    }
    uint64_t n = 0;
    int bytes = http_bytes_target(&r, &n);
    evl_consume(c, r.consumed);
    if (bytes < 0) {
        http_error(c, 400);
        return;
    }
    char head[256];
    if (bytes == 0) {
        int k = snprintf(head, sizeof head,
                         "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                         "%s\r\n" HTTP_BODY,
                         sizeof HTTP_BODY - 1, conn_header(&r));
        if (evl_write(c, head, (size_t)k) == 0 && !r.keep_alive)
            evl_close(c);
        return;
    }
    int k = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: %" PRIu64 "\r\n%s\r\n",
                     n, conn_header(&r));
    if (evl_write(c, head, (size_t)k) < 0)
        return;
    /* The body is BLAST's pattern with seed 0, streamed the same way. */
    sc->close_after_blast = !r.keep_alive;
    blast_start(evl_loop_udata(evl_loop_of(c)), sc, n, 0);
}
