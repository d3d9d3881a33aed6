/*
 * evl-testsrv: the scripted test server (docs/PROTOCOL.md) that conformance, stress,
 * fuzz and bench drive. This file: flags, signals, listening, the LISTENING
 * line, run, clean exit.
 *
 * Exit status: 0 after SIGTERM/SIGINT (graceful stop), 1 when it cannot
 * listen or start, 2 on bad arguments.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "evloop.h"
#include "flags.h"
#include "server.h"

static void ignore_signal(int sig)
{
    (void)sig;
}

/* Do-nothing handlers without SA_RESTART: these signals interrupt
 * epoll_wait with EINTR, and the loop must carry on (seed fault 2).
 * SIGPIPE keeps its default on purpose: a send without MSG_NOSIGNAL must
 * kill the server where a test can see it (seed fault 8). */
static int install_signals(void)
{
    static const int sigs[] = {SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ignore_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (sigaction(sigs[i], &sa, NULL) < 0)
            return -1;

    /* Held from here on: a SIGTERM sent right after LISTENING, before
     * evl_run's signalfd exists, stays pending for it instead of killing us
     * with the default action. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    return sigprocmask(SIG_BLOCK, &stop, NULL);
}

static int listen_on(const struct flags *f)
{
    int fd = f->unix_path ? evl_listen_unix(f->unix_path) : evl_listen_tcp(f->host, f->port, 0);
    if (fd < 0) {
        if (f->unix_path)
            (void)fprintf(stderr, "evl-testsrv: cannot listen on %s: %s\n", f->unix_path, strerror(errno));
        else
            (void)fprintf(stderr, "evl-testsrv: cannot listen on %s port %d: %s\n", f->host, f->port,
                    strerror(errno));
    }
    return fd;
}

static int announce(const struct flags *f, int fd)
{
    if (f->unix_path)
        printf("LISTENING %s\n", f->unix_path);
    else {
        int port = evl_local_port(fd);
        if (port < 0)
            return -1;
        printf("LISTENING %d\n", port);
    }
    return fflush(stdout) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct flags f;
    int rc = flags_parse(argc, argv, &f);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    if (install_signals() < 0) {
        perror("evl-testsrv: signals");
        return 1;
    }

    struct srv *s = srv_new(&f.srv);
    if (!s) {
        perror("evl-testsrv");
        return 1;
    }
    evl_loop *l = evl_new(srv_handler_of(&f.srv), s, &f.opts);
    if (!l) {
        int e = errno;
        (void)fprintf(stderr, "evl-testsrv: cannot start the loop: %s\n", strerror(e));
        srv_free(s);
        return e == EINVAL ? 2 : 1;
    }

    int status = 1;
    int fd = listen_on(&f);
    if (fd < 0)
        goto out;
    if (srv_start(s, l, fd) < 0) {
        (void)fprintf(stderr, "evl-testsrv: cannot open the FIFO %s: %s\n", f.srv.fifo_path, strerror(errno));
        goto out;
    }
    if (announce(&f, fd) < 0) {
        perror("evl-testsrv: stdout");
        goto out;
    }
    if (evl_run(l, fd) == 0)
        status = 0;
    else
        perror("evl-testsrv: event loop");
out:
    evl_free(l);
    if (fd >= 0) {
        if (srv_listen_fd(s) == fd) /* not closed by on_stop */
            close(fd);
        if (f.unix_path)
            (void)unlink(f.unix_path);
    }
    srv_free(s);
    return status;
}
