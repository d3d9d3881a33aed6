/*
 * cmd.h: the test server's command parser (docs/PROTOCOL.md §4, cmd mode).
 *
 * A pure function: bytes in, one parsed command (or "need more", or an
 * error) out. No I/O, no globals, no allocation, so a fuzzer can drive it
 * directly and compare it with a model.
 */
#ifndef TESTSRV_CMD_H
#define TESTSRV_CMD_H

#include <stddef.h>
#include <stdint.h>

/* Longest command line, the '\n' (and a '\r' before it) not counted. */
#define CMD_LINE_MAX 65536

/* BLAST and SINK counts are below 2^63. */
#define CMD_COUNT_MAX UINT64_C(0x7fffffffffffffff)

enum cmd_status {
    CMD_OK,           /* *out holds a command; out->consumed bytes used */
    CMD_NEED_MORE,    /* no complete line yet: call again with more bytes */
    CMD_ERR_TOO_LONG, /* the line passes CMD_LINE_MAX: reply, then close */
    CMD_ERR_SYNTAX,   /* a known command with bad arguments; out->consumed set */
    CMD_ERR_UNKNOWN,  /* anything else; out->consumed set */
};

enum cmd_kind {
    CMD_NONE,
    CMD_PING,  /* PING */
    CMD_ECHO,  /* ECHO [<text>]: text = everything after the first space */
    CMD_BLAST, /* BLAST <n> <seed> */
    CMD_SINK,  /* SINK <n> */
    CMD_BCAST, /* BCAST <text> */
    CMD_STATS, /* STATS */
    CMD_QUIT,  /* QUIT */
    CMD_CLOSE, /* CLOSE */
};

struct cmd {
    enum cmd_kind kind;   /* set for CMD_OK and CMD_ERR_SYNTAX */
    size_t consumed;      /* bytes of the line, its '\n' included */
    const char *text;     /* ECHO/BCAST text: points into the input */
    size_t text_len;
    uint64_t n;           /* BLAST/SINK count, <= CMD_COUNT_MAX */
    uint32_t seed;        /* BLAST seed */
};

/*
 * Parses the first line of buf[0..len). Command names are case-sensitive;
 * a trailing '\r' is dropped; arguments are separated by one or more
 * spaces; numbers are plain decimal (no sign). On every status but
 * CMD_NEED_MORE and CMD_ERR_TOO_LONG, out->consumed > 0 and the caller
 * drops that many bytes. text points into buf.
 */
enum cmd_status cmd_parse(const char *buf, size_t len, struct cmd *out);

/* The command's name ("PING", ...), for messages and tests. */
const char *cmd_name(enum cmd_kind kind);

#endif
