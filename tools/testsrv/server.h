/*
 * server.h: the test server's connection handlers (docs/PROTOCOL.md §4), cmd and echo
 * modes (resp and http in modes.c), on the public evloop API only.
 */
#ifndef TESTSRV_SERVER_H
#define TESTSRV_SERVER_H

#include "evloop.h"

enum srv_mode { SRV_MODE_CMD, SRV_MODE_ECHO, SRV_MODE_RESP, SRV_MODE_HTTP, SRV_MODE_PROXY };

struct srv_config {
    enum srv_mode mode;
    const char *fifo_path; /* lines written here are broadcast; NULL = none */
    char upstream[108];    /* --mode proxy: numeric address or unix path */
    int upstream_port;
};

struct srv;

/* The callbacks; evl_new must get the struct srv as its udata. */
extern const evl_handler srv_handler;
const evl_handler *srv_handler_of(const struct srv_config *cfg); /* the mode's */

/* NULL with errno on failure. cfg is copied (fifo_path is not: it must
 * outlive the server). */
struct srv *srv_new(const struct srv_config *cfg);

/* Binds the server to its loop and listen fd and opens the FIFO if one is
 * configured. -1 with errno on failure (the caller reports it). The listen fd
 * is closed by on_stop as a stop begins: srv_listen_fd tells if it was. */
int srv_start(struct srv *s, evl_loop *l, int listen_fd);
int srv_listen_fd(const struct srv *s);

/* After evl_free (whose on_close calls still need the server). */
void srv_free(struct srv *s);

#endif
