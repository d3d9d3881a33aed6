/*
 * resp.h: the test server's Redis-protocol parser (docs/PROTOCOL.md §6, --mode resp).
 *
 * A pure function: bytes in, one parsed request (or "need more", or a
 * protocol error) out. No I/O, no globals, no allocation: a fuzzer can drive
 * it directly. Enough of RESP2 for what redis-benchmark and redis-cli send:
 * inline commands ("PING\r\n") and multibulk ones ("*1\r\n$4\r\nPING\r\n"),
 * pipelined. Inline commands are split on spaces and tabs only (no quoting).
 */
#ifndef TESTSRV_RESP_H
#define TESTSRV_RESP_H

#include <stddef.h>

#define RESP_INLINE_MAX ((size_t)64 << 10)  /* an inline line, '\n' not counted (Redis: 64 KiB) */
#define RESP_ARGS_MAX   16           /* arguments of one command */
#define RESP_BULK_MAX   ((long)512 << 10)  /* one bulk argument's bytes */
#define RESP_NUM_MAX    20           /* digits (and sign) of a "*n" or "$n" line */

enum resp_status {
    RESP_OK,        /* *out holds a request; out->consumed bytes used */
    RESP_NEED_MORE, /* incomplete: call again with more bytes */
    RESP_ERR,       /* a protocol error (out->error says what): reply, then close */
};

enum resp_cmd {
    RESP_CMD_EMPTY,   /* an empty inline line or "*0": Redis ignores it, so do we */
    RESP_CMD_PING,    /* PING [message] */
    RESP_CMD_ECHO,    /* ECHO message */
    RESP_CMD_UNKNOWN, /* any other name: an error reply, the connection stays */
};

struct resp_request {
    size_t consumed;                 /* bytes of this request */
    int argc;                        /* 0 for RESP_CMD_EMPTY */
    const char *argv[RESP_ARGS_MAX]; /* point into the input: no copies */
    size_t argl[RESP_ARGS_MAX];
    const char *error;               /* RESP_ERR: text for "-ERR Protocol error: ..." */
};

/* Parses the first request in buf[0..len). On RESP_OK, argv points into buf
 * and the caller drops out->consumed bytes. */
enum resp_status resp_parse(const char *buf, size_t len, struct resp_request *out);

/* Which command a parsed request names (case-insensitive, as Redis). */
enum resp_cmd resp_command(const struct resp_request *r);

#endif
