/* What the four echo peers share, so that they differ only in the library
 * they exercise: the command line, the loopback listen socket, the line that
 * tells the bench script where to connect, and the flow-control marks. */
#ifndef PEER_COMMON_H
#define PEER_COMMON_H

#include <stddef.h>

/* The same watermarks as evloop's defaults (wbuf_high / wbuf_low): a peer
 * stops reading a connection whose pending output reached PEER_HIGH and
 * resumes at PEER_LOW, so no server in the comparison buys speed with
 * unbounded memory. */
#define PEER_HIGH ((size_t)1 << 20)
#define PEER_LOW  ((size_t)64 << 10)
/* Bytes per read(): evloop reads up to 64 KiB at a time too. */
#define PEER_READ ((size_t)64 << 10)

/* Parses `--port N` (0, the default, takes a free port); anything else is a
 * usage error: message on stderr, exit 2. Returns the port. */
int peer_args(int argc, char **argv, const char *name);

/* A non-blocking, close-on-exec listening socket on 127.0.0.1:port, or exits
 * 1 with a message. *bound gets the port actually taken. */
int peer_listen(int port, int *bound);

/* Prints exactly `LISTENING <port>` and flushes: the bench script waits for it. */
void peer_listening(int port);

/* Disables Nagle on an accepted socket, as evloop does, so every server
 * answers a small request at once. */
void peer_nodelay(int fd);

/* Prints "name: what: strerror(errno)" and exits 1 (setup failures only). */
void peer_die(const char *name, const char *what);

#endif
