/* examples/echo.c: a line echo server (the README's example).
 *   cc echo.c $(pkg-config --cflags --libs evloop) -o echo
 *   ./echo [port]      127.0.0.1, port 7000 by default (0: any free port) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <evloop.h>

static void on_read(evl_conn *c) /* echo one line per call */
{
    size_t n;
    const char *p = evl_data(c, &n);
    const char *nl = memchr(p, '\n', n);
    if (!nl)
        return; /* partial line: wait for more */
    size_t len = (size_t)(nl - p) + 1;
    if (evl_write(c, p, len) == 0) /* never blocks; on failure c is closed */
        evl_consume(c, len);
}

static void on_stop(evl_loop *l) /* SIGTERM: refuse new clients at once */
{
    int *listen_fd = evl_loop_udata(l);
    close(*listen_fd);
    *listen_fd = -1;
}

int main(int argc, char **argv)
{
    char *end = NULL;
    long port = argc == 2 ? strtol(argv[1], &end, 10) : 7000;
    if (argc > 2 || (end && (*end || end == argv[1] || port < 0 || port > 65535))) {
        (void)fprintf(stderr, "usage: echo [port]\n");
        return 2;
    }
    int fd = evl_listen_tcp("127.0.0.1", (int)port, 0);
    if (fd < 0) {
        (void)fprintf(stderr, "echo: cannot listen on 127.0.0.1 port %ld: %s\n", port, strerror(errno));
        return 1;
    }
    evl_handler h = {.on_read = on_read, .on_stop = on_stop};
    evl_loop *l = evl_new(&h, &fd, NULL); /* NULL options: the defaults */
    if (!l) {
        (void)fprintf(stderr, "echo: evl_new: %s\n", strerror(errno));
        close(fd);
        return 1;
    }
    (void)printf("echo: listening on 127.0.0.1 port %d\n", evl_local_port(fd));
    (void)fflush(stdout);
    int rc = evl_run(l, fd); /* until SIGTERM/SIGINT: 0 after a graceful stop */
    if (rc < 0)
        perror("echo: evl_run");
    evl_free(l);
    if (fd >= 0)
        close(fd);
    return rc == 0 ? 0 : 1;
}
