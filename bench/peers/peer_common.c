/* Command line, listen socket and the LISTENING line for the echo peers. */
#include "peer_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void peer_die(const char *name, const char *what)
{
    (void)fprintf(stderr, "%s: %s: %s\n", name, what, strerror(errno));
    exit(1);
}

int peer_args(int argc, char **argv, const char *name)
{
    int port = 0;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        long v = -1;
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            errno = 0;
            v = strtol(argv[++i], &end, 10);
        }
        if (v < 0 || v > 65535 || !end || *end || errno) {
            (void)fprintf(stderr, "usage: %s [--port N]   (N = 0: a free port)\n", name);
            exit(2);
        }
        port = (int)v;
    }
    return port;
}

int peer_listen(int port, int *bound)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        peer_die("peer", "socket");
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, SOMAXCONN) < 0)
        peer_die("peer", "bind/listen");
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        peer_die("peer", "getsockname");
    *bound = ntohs(a.sin_port);
    return fd;
}

void peer_listening(int port)
{
    (void)printf("LISTENING %d\n", port);
    (void)fflush(stdout);
}

void peer_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}
