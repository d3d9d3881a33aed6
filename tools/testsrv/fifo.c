/*
 * fifo.c: --fifo PATH. Each complete line written into the FIFO is broadcast
 * like BCAST.
 *
 * When the last writer closes, read() returns 0 and a FIFO stays readable
 * (hung up) for good: level-triggered epoll would spin. So at EOF the FIFO
 * is reopened: the new descriptor is opened before the old one is closed, so
 * the FIFO never lacks a reader (a writer arriving in between neither fails
 * with EPIPE nor loses bytes), and a fresh descriptor does not report the
 * old hang-up. A partial line at EOF is dropped, as on a connection.
 */
#include "testsrv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int open_reader(const char *path)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode)) {
        close(fd);
        errno = EINVAL; /* a regular file is always readable: no events */
        return -1;
    }
    return fd;
}

int fifo_open(struct srv *s)
{
    const char *path = s->cfg.fifo_path;
    if (mkfifo(path, 0600) == 0)
        s->fifo_created = true;
    else if (errno != EEXIST)
        return -1;
    s->fifo_buf = malloc(FIFO_LINE_MAX + 1);
    if (!s->fifo_buf)
        return -1;
    s->fifo_fd = open_reader(path);
    if (s->fifo_fd < 0)
        return -1;
    if (evl_add_fd(s->loop, s->fifo_fd) < 0) {
        int e = errno;
        close(s->fifo_fd);
        s->fifo_fd = -1;
        errno = e;
        return -1;
    }
    return 0;
}

static void reopen(struct srv *s)
{
    int fd = open_reader(s->cfg.fifo_path);
    if (fd < 0 || evl_add_fd(s->loop, fd) < 0) {
        /* The node is gone or unusable: stop watching rather than spin. */
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    (void)evl_remove_fd(s->loop, s->fifo_fd);
    close(s->fifo_fd);
    s->fifo_fd = fd;
    s->fifo_len = 0;
    s->fifo_skip = false;
    s->n.fifo_reopens++;
}

/* Broadcasts the complete lines in buf[0..n), keeps a partial one. */
static void take(struct srv *s, const char *buf, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(buf, '\n', n);
        size_t part = nl ? (size_t)(nl - buf) : n;
        if (!s->fifo_skip) {
            if (s->fifo_len + part > FIFO_LINE_MAX) {
                s->fifo_skip = true; /* too long: drop through its newline */
                s->fifo_len = 0;
            } else {
                memcpy(s->fifo_buf + s->fifo_len, buf, part);
                s->fifo_len += part;
            }
        }
        if (!nl)
            return;
        if (!s->fifo_skip) {
            size_t len = s->fifo_len;
            if (len > 0 && s->fifo_buf[len - 1] == '\r')
                len--;
            s->n.fifo_lines++;
            bcast_send(s, s->fifo_buf, len);
        }
        s->fifo_len = 0;
        s->fifo_skip = false;
        buf += part + 1;
        n -= part + 1;
    }
}

/* One read per call: level triggering brings us back, and a busy writer
 * cannot starve the connections. */
void fifo_readable(struct srv *s)
{
    char buf[16384];
    ssize_t n = read(s->fifo_fd, buf, sizeof buf);
    if (n > 0)
        take(s, buf, (size_t)n);
    else if (n == 0 || (errno != EAGAIN && errno != EINTR))
        reopen(s); /* EOF (last writer gone) or a broken descriptor */
}

void fifo_close(struct srv *s)
{
    if (s->fifo_fd >= 0)
        close(s->fifo_fd); /* evl_free has forgotten it already */
    s->fifo_fd = -1;
    if (s->fifo_created)
        (void)unlink(s->cfg.fifo_path);
    free(s->fifo_buf);
    s->fifo_buf = NULL;
}
