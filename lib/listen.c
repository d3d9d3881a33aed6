/* Listening sockets: non-blocking and close-on-exec from the start, so the
 * loop never sees a blocking fd of its own making. */
#include "evloop.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int listen_on(const struct sockaddr *sa, socklen_t len, int flags)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    if (sa->sa_family != AF_UNIX &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        goto fail;
    if ((flags & EVL_LISTEN_REUSEPORT) &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto fail;
    if (bind(fd, sa, len) < 0 || listen(fd, SOMAXCONN) < 0)
        goto fail;
    return fd;
fail:;
    int err = errno;
    close(fd);
    errno = err;
    return -1;
}

int evl_listen_tcp(const char *host, int port, int flags)
{
    if (port < 0 || port > 65535 || (flags & ~EVL_LISTEN_REUSEPORT)) {
        errno = EINVAL;
        return -1;
    }
    char service[8];
    (void)snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = host ? AF_UNSPEC : AF_INET,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        errno = rc == EAI_SYSTEM ? errno : EADDRNOTAVAIL;
        return -1;
    }
    int fd = -1, err = EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = listen_on(ai->ai_addr, ai->ai_addrlen, flags);
        if (fd < 0)
            err = errno;
    }
    freeaddrinfo(res);
    if (fd < 0)
        errno = err;
    return fd;
}

/* Whether a server still listens at sun: a stale socket file refuses
 * connections (ECONNREFUSED); a live one accepts, or has a full backlog
 * (EAGAIN on a non-blocking connect). */
static int socket_is_live(const struct sockaddr_un *sun)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int live = connect(fd, (const struct sockaddr *)sun, sizeof *sun) == 0 ||
               errno == EAGAIN || errno == EINPROGRESS;
    close(fd);
    return live;
}

int evl_listen_unix(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t n = path ? strlen(path) : 0;
    if (n == 0 || n >= sizeof sun.sun_path) {
        errno = EINVAL;
        return -1;
    }
    memcpy(sun.sun_path, path, n + 1);
    struct stat st;
    /* A socket file left by a previous run would make bind fail; anything
     * else at that path is somebody's file and is left alone. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        if (socket_is_live(&sun)) {
            errno = EADDRINUSE; /* a running server's: not stale */
            return -1;
        }
        (void)unlink(path);
    }
    return listen_on((const struct sockaddr *)&sun, sizeof sun, 0);
}

int evl_local_port(int fd)
{
    struct sockaddr_storage ss = {0};
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    errno = EAFNOSUPPORT;
    return -1;
}
