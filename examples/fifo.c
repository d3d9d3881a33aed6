/* examples/fifo.c: a TCP server that also watches a FIFO. Every line written
 * to the FIFO is sent to every connected client (a log or event feed; input
 * from clients is discarded).
 *   cc fifo.c $(pkg-config --cflags --libs evloop) -o fifo
 *   ./fifo PATH [port]      creates the FIFO PATH if missing (removed at exit);
 *                           127.0.0.1, port 7002 (0: any free port)
 *   echo hello > PATH       every client gets "hello"
 *
 * The FIFO is an extra fd (evl_add_fd): on_fd runs while it is readable and,
 * level-triggered, again next iteration until it is read dry. The server
 * also holds a write end of its own FIFO open, so the read end never sees
 * EOF when the last outside writer leaves (which would make it readable
 * forever). A client that falls more than MAX_PENDING behind is dropped. */
#define _POSIX_C_SOURCE 200809L /* mkfifo, open */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <evloop.h>

#define MAX_LINE 4096
#define MAX_PENDING ((size_t)1 << 20)

struct feed {
    evl_conn **clients; /* every open connection, unordered */
    size_t nclients, cap;
    int listen_fd;
    int fifo_rd, fifo_wr;
    char line[MAX_LINE + 1]; /* a partial FIFO line */
    size_t len;
    bool skipping;           /* discarding the rest of a too-long line */
};

static void publish(struct feed *f, const char *line, size_t len)
{
    for (size_t i = 0; i < f->nclients; i++) {
        evl_conn *c = f->clients[i];
        if (evl_pending(c) + len > MAX_PENDING)
            evl_abort(c); /* too slow: dropped, not waited for */
        else
            (void)evl_write(c, line, len); /* a failure closes it */
    }
}

/* Splits what arrived into lines; a line longer than MAX_LINE is dropped. */
static void take(struct feed *f, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            if (!f->skipping) {
                f->line[f->len++] = '\n';
                publish(f, f->line, f->len);
            }
            f->len = 0;
            f->skipping = false;
        } else if (f->len < MAX_LINE) {
            f->line[f->len++] = p[i];
        } else {
            f->skipping = true;
        }
    }
}

static void on_fd(evl_loop *l, int fd)
{
    struct feed *f = evl_loop_udata(l);
    char buf[16384];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) /* read dry: level-triggered */
        take(f, buf, (size_t)n);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        perror("fifo: read");
        evl_stop(l);
    }
}

static bool on_accept(evl_conn *c)
{
    struct feed *f = evl_loop_udata(evl_loop_of(c));
    if (f->nclients == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 16;
        /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
        evl_conn **t = realloc(f->clients, cap * sizeof *t);
        if (!t)
            return false; /* refused: the loop closes it */
        f->clients = t;
        f->cap = cap;
    }
    f->clients[f->nclients++] = c;
    return true;
}

static void on_read(evl_conn *c) /* clients only listen */
{
    size_t n;
    (void)evl_data(c, &n);
    evl_consume(c, n);
}

static void on_close(evl_conn *c)
{
    struct feed *f = evl_loop_udata(evl_loop_of(c));
    for (size_t i = 0; i < f->nclients; i++) {
        if (f->clients[i] == c) {
            f->clients[i] = f->clients[--f->nclients];
            break;
        }
    }
}

static void on_stop(evl_loop *l)
{
    struct feed *f = evl_loop_udata(l);
    close(f->listen_fd); /* refuse new clients at once */
    f->listen_fd = -1;
}

int main(int argc, char **argv)
{
    char *end = NULL;
    long port = argc == 3 ? strtol(argv[2], &end, 10) : 7002;
    if (argc < 2 || argc > 3 || (end && (*end || end == argv[2] || port < 0 || port > 65535))) {
        (void)fprintf(stderr, "usage: fifo PATH [port]\n");
        return 2;
    }
    const char *path = argv[1];
    bool created = mkfifo(path, 0600) == 0;
    if (!created && errno != EEXIST) {
        (void)fprintf(stderr, "fifo: mkfifo %s: %s\n", path, strerror(errno));
        return 1;
    }
    struct feed f = {.listen_fd = -1, .fifo_wr = -1};
    int status = 1;
    evl_loop *l = NULL;
    /* read end first (O_NONBLOCK: does not wait for a writer), then our own
     * write end, which then does not wait for a reader either */
    f.fifo_rd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (f.fifo_rd >= 0)
        f.fifo_wr = open(path, O_WRONLY | O_CLOEXEC);
    if (f.fifo_rd < 0 || f.fifo_wr < 0) {
        (void)fprintf(stderr, "fifo: open %s: %s\n", path, strerror(errno));
        goto out;
    }
    f.listen_fd = evl_listen_tcp("127.0.0.1", (int)port, 0);
    if (f.listen_fd < 0) {
        (void)fprintf(stderr, "fifo: cannot listen on 127.0.0.1 port %ld: %s\n", port, strerror(errno));
        goto out;
    }
    evl_handler h = {
        .on_accept = on_accept,
        .on_read = on_read,
        .on_close = on_close,
        .on_fd = on_fd,
        .on_stop = on_stop,
    };
    l = evl_new(&h, &f, NULL);
    if (!l) {
        (void)fprintf(stderr, "fifo: evl_new: %s\n", strerror(errno));
        goto out;
    }
    if (evl_add_fd(l, f.fifo_rd) < 0) {
        (void)fprintf(stderr, "fifo: evl_add_fd: %s\n", strerror(errno));
        goto out;
    }
    (void)printf("fifo: listening on 127.0.0.1 port %d, reading %s\n", evl_local_port(f.listen_fd), path);
    (void)fflush(stdout);
    if (evl_run(l, f.listen_fd) == 0)
        status = 0;
    else
        perror("fifo: evl_run");
out:
    evl_free(l); /* before the fds it watches are closed */
    free(f.clients);
    if (f.listen_fd >= 0)
        close(f.listen_fd);
    if (f.fifo_wr >= 0)
        close(f.fifo_wr);
    if (f.fifo_rd >= 0)
        close(f.fifo_rd);
    if (created)
        (void)unlink(path);
    return status;
}
