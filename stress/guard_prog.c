/* guard-prog: the victim for stress/guard_test.sh, run under nbguard.so.
 *
 *   guard-prog clean          every guarded call on non-blocking fds, plus a
 *                             regular file and stdout: must exit 0
 *   guard-prog block CALL     one CALL (write|writev|send|sendmsg|sendto|pipe)
 *                             on a blocking fd: the guard must abort it
 *
 * A blocking write of one byte into an empty socketpair does not actually
 * block, so without the guard "block" exits 0: the abort is the guard's doing,
 * not the kernel's. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static int fail(const char *what)
{
    perror(what);
    return 1;
}

/* One call of the named kind on fd; returns what the call returned. */
static ssize_t one_call(const char *call, int fd)
{
    char byte = 'x';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (!strcmp(call, "write") || !strcmp(call, "pipe"))
        return write(fd, &byte, 1);
    if (!strcmp(call, "writev"))
        return writev(fd, &iov, 1);
    if (!strcmp(call, "send"))
        return send(fd, &byte, 1, MSG_NOSIGNAL);
    if (!strcmp(call, "sendmsg"))
        return sendmsg(fd, &m, MSG_NOSIGNAL);
    if (!strcmp(call, "sendto"))
        return sendto(fd, &byte, 1, MSG_NOSIGNAL, NULL, 0);
    fprintf(stderr, "guard-prog: unknown call %s\n", call);
    exit(2);
}

static int run_clean(void)
{
    static const char *const calls[] = {"write", "writev", "send", "sendmsg", "sendto"};
    int sv[2], pv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
        return fail("socketpair");
    if (pipe2(pv, O_NONBLOCK) < 0)
        return fail("pipe2");
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++)
        if (one_call(calls[i], sv[0]) != 1)
            return fail(calls[i]);
    if (one_call("pipe", pv[1]) != 1)
        return fail("pipe write");
    /* Fill the socket until EAGAIN: the guard must count it, not abort. */
    char chunk[4096];
    memset(chunk, 'y', sizeof chunk);
    while (send(sv[0], chunk, sizeof chunk, MSG_NOSIGNAL) > 0)
        ;
    FILE *f = tmpfile();
    if (!f || write(fileno(f), "z", 1) != 1)
        return fail("regular file");
    fclose(f);
    /* stdout may be a terminal, a file or a pipe; write only when it is not
     * a pipe, which the guard would rightly refuse when blocking. */
    printf("guard-prog: clean run done\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "clean"))
        return run_clean();
    if (argc != 3 || strcmp(argv[1], "block") != 0) {
        fprintf(stderr, "usage: guard-prog clean | guard-prog block CALL\n");
        return 2;
    }
    int fds[2];
    int wfd;
    if (!strcmp(argv[2], "pipe")) {
        if (pipe(fds) < 0)
            return fail("pipe");
        wfd = fds[1];
    } else {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
            return fail("socketpair");
        wfd = fds[0];
    }
    if (one_call(argv[2], wfd) != 1)
        return fail(argv[2]);
    printf("guard-prog: blocking %s went through\n", argv[2]);
    return 0;
}
