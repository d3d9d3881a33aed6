/* flags.h: evl-testsrv's command line. */
#ifndef TESTSRV_FLAGS_H
#define TESTSRV_FLAGS_H

#include "evloop.h"
#include "server.h"

struct flags {
    char host[256];        /* TCP address to listen on (default 127.0.0.1) */
    int port;              /* TCP port; 0 = a free one */
    const char *unix_path; /* listen on this unix socket instead of TCP */
    evl_options opts;      /* the library's defaults but wbuf_max 64 MiB */
    struct srv_config srv;
};

/* Fills *f from argv. Returns 0 to run, 1 after printing --help (exit 0), or
 * -1 after printing an error and the usage to stderr (exit 2). */
int flags_parse(int argc, char **argv, struct flags *f);

#endif
