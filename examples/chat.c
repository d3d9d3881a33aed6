/* examples/chat.c: a line-based chat server. Each line a client sends goes
 * to every other client, prefixed with the sender's number.
 *   cc chat.c $(pkg-config --cflags --libs evloop) -o chat
 *   ./chat [port [max_pending]]    127.0.0.1, port 7001 (0: any free port)
 *
 * Slow receivers: a broadcast never waits for anyone. A receiver whose
 * unsent output would pass max_pending bytes (default 256 KiB) is dropped
 * (evl_abort: its pending output is discarded, its socket closed) and
 * counted. The alternative, holding everything for it, would let one
 * stalled reader grow the server's memory with every line the others send.
 * A line longer than MAX_LINE closes its sender. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <evloop.h>

#define MAX_LINE 4096

struct client {
    struct client *prev, *next;
    evl_conn *c;
    unsigned id;
};

struct room {
    struct client *clients; /* every open connection */
    unsigned next_id;
    size_t max_pending;
    int listen_fd;
    unsigned long dropped; /* receivers dropped for being too slow */
};

static struct room *room_of(evl_conn *c)
{
    return evl_loop_udata(evl_loop_of(c));
}

/* Writes to one receiver, or drops it if it has fallen too far behind. */
static void deliver(struct room *r, struct client *to, const char *msg, size_t len)
{
    if (evl_pending(to->c) + len > r->max_pending) {
        r->dropped++;
        evl_abort(to->c); /* its on_close runs after this callback */
        return;
    }
    (void)evl_write(to->c, msg, len); /* a failure closes it: nothing to do */
}

static void broadcast(struct room *r, const struct client *from, const char *line, size_t len)
{
    char msg[MAX_LINE + 32];
    int n = snprintf(msg, sizeof msg, "%u: %.*s\n", from->id, (int)len, line);
    if (n < 0 || (size_t)n >= sizeof msg)
        return;
    for (struct client *to = r->clients; to; to = to->next)
        if (to != from)
            deliver(r, to, msg, (size_t)n);
}

static bool on_accept(evl_conn *c)
{
    struct room *r = room_of(c);
    struct client *cl = calloc(1, sizeof *cl);
    if (!cl)
        return false; /* refused: the loop closes it */
    cl->c = c;
    cl->id = ++r->next_id;
    cl->next = r->clients;
    if (r->clients)
        r->clients->prev = cl;
    r->clients = cl;
    evl_set_udata(c, cl);
    char hello[64];
    int n = snprintf(hello, sizeof hello, "* you are %u\n", cl->id);
    (void)evl_write(c, hello, (size_t)n);
    return true;
}

static void on_read(evl_conn *c) /* one line per call: the loop calls again */
{
    struct client *cl = evl_udata(c);
    size_t n;
    const char *p = evl_data(c, &n);
    const char *nl = memchr(p, '\n', n);
    if (!nl) {
        if (n > MAX_LINE) {
            (void)evl_write(c, "* line too long\n", 16);
            evl_close(c);
        }
        return; /* a partial line: wait for the rest */
    }
    size_t len = (size_t)(nl - p);
    if (len > MAX_LINE) {
        (void)evl_write(c, "* line too long\n", 16);
        evl_close(c);
        return;
    }
    broadcast(room_of(c), cl, p, len > 0 && p[len - 1] == '\r' ? len - 1 : len);
    evl_consume(c, len + 1);
}

static void on_close(evl_conn *c)
{
    struct room *r = room_of(c);
    struct client *cl = evl_udata(c);
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        r->clients = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    free(cl);
}

static void on_stop(evl_loop *l)
{
    struct room *r = evl_loop_udata(l);
    close(r->listen_fd); /* refuse new clients at once */
    r->listen_fd = -1;
    for (struct client *to = r->clients; to; to = to->next)
        deliver(r, to, "* server stopping\n", 18); /* flushed before the close */
}

static int parse(const char *s, long max, long *out)
{
    char *end;
    errno = 0;
    *out = strtol(s, &end, 10);
    return errno == 0 && end != s && !*end && *out >= 0 && *out <= max ? 0 : -1;
}

int main(int argc, char **argv)
{
    long port = 7001, max_pending = 256 << 10;
    if (argc > 3 || (argc > 1 && parse(argv[1], 65535, &port) < 0) ||
        (argc > 2 && (parse(argv[2], 1L << 30, &max_pending) < 0 || max_pending == 0))) {
        (void)fprintf(stderr, "usage: chat [port [max_pending]]\n");
        return 2;
    }
    struct room r = {.max_pending = (size_t)max_pending};
    r.listen_fd = evl_listen_tcp("127.0.0.1", (int)port, 0);
    if (r.listen_fd < 0) {
        (void)fprintf(stderr, "chat: cannot listen on 127.0.0.1 port %ld: %s\n", port, strerror(errno));
        return 1;
    }
    evl_handler h = {
        .on_accept = on_accept,
        .on_read = on_read,
        .on_close = on_close,
        .on_stop = on_stop,
    };
    evl_loop *l = evl_new(&h, &r, NULL);
    if (!l) {
        (void)fprintf(stderr, "chat: evl_new: %s\n", strerror(errno));
        close(r.listen_fd);
        return 1;
    }
    (void)printf("chat: listening on 127.0.0.1 port %d\n", evl_local_port(r.listen_fd));
    (void)fflush(stdout);
    int rc = evl_run(l, r.listen_fd);
    if (rc < 0)
        perror("chat: evl_run");
    evl_free(l);
    if (r.listen_fd >= 0)
        close(r.listen_fd);
    (void)fprintf(stderr, "chat: %lu slow receivers dropped\n", r.dropped);
    return rc == 0 ? 0 : 1;
}
