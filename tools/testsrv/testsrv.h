/*
 * testsrv.h: state shared by the server's own files (server.c, bcast.c,
 * fifo.c, stats.c). Not used outside tools/testsrv.
 */
#ifndef TESTSRV_TESTSRV_H
#define TESTSRV_TESTSRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evloop.h"
#include "server.h"

/* BLAST writes this much at a time, so at most about wbuf_low + one chunk is
 * ever buffered beyond what the socket took. */
#define BLAST_CHUNK ((size_t)64 << 10)

/* Cap on what BCAST holds for one receiver when --wbuf-max is 0 (no library
 * cap): the server's own default wbuf_max. */
#define BCAST_CAP_DEFAULT ((size_t)64 << 20)

/* Longest FIFO line broadcast; longer ones are dropped, like command lines. */
#define FIFO_LINE_MAX 65536

/* MSG lines held back while the connection runs a BLAST. */
struct outbox {
    char *data;
    size_t len, cap;
};

/* Per connection (evl_udata). */
struct sconn {
    struct sconn *prev, *next; /* every open connection: BCAST's receivers */
    evl_conn *c;
    bool dead;                 /* aborted by us: write nothing more */
    uint64_t blast_left;       /* bytes of the running BLAST still to write */
    uint64_t blast_off;        /* position in the pattern */
    uint32_t blast_seed;
    bool close_after_blast;    /* http without keep-alive: close when streamed */
    uint64_t sink_left;        /* bytes of the running SINK still to read */
    uint64_t sink_total;
    unsigned long sink_crc;
    struct outbox outbox;
};

/* Server counters shown by STATS beside the library's. */
struct srv_counters {
    uint64_t bcast_msgs;     /* BCAST commands and FIFO lines broadcast */
    uint64_t bcast_dropped;  /* receivers aborted: BCAST cap passed */
    uint64_t bcast_overflow; /* receivers closed by wbuf_max on a MSG write */
    uint64_t outbox_bytes;   /* MSG bytes held behind running BLASTs, now */
    uint64_t fifo_lines;     /* lines read from the FIFO */
    uint64_t fifo_reopens;   /* FIFO reopened after its last writer left */
    uint64_t blast_yields;   /* BLAST writes that stopped with bytes left,
                                pending above wbuf_low: on_drain resumes */
    uint64_t tick_calls;     /* on_tick calls this server received (the
                                library's "ticks" counts them on its side) */
};

struct srv {
    struct srv_config cfg;
    evl_loop *loop;
    struct sconn *conns;     /* list head */
    struct srv_counters n;
    uint8_t *chunk;          /* BLAST scratch, BLAST_CHUNK bytes */
    int listen_fd;           /* closed by on_stop as a stop begins; -1 after */
    int fifo_fd;             /* -1 when none */
    bool fifo_created;       /* we made the FIFO node: remove it at exit */
    bool fifo_skip;          /* discarding a too-long FIFO line */
    char *fifo_buf;          /* a partial FIFO line, FIFO_LINE_MAX + 1 bytes */
    size_t fifo_len;
};

/* server.c: streams n pattern bytes like BLAST (from on_drain, in chunks);
 * later input waits until the last byte is written. */
void blast_start(struct srv *s, struct sconn *sc, uint64_t n, uint32_t seed);

/* modes.c: on_read for --mode resp and --mode http. */
void on_read_resp(evl_conn *c);
void on_read_http(evl_conn *c);

/* bcast.c */
void bcast_send(struct srv *s, const char *text, size_t len);
void outbox_flush(struct srv *s, struct sconn *sc);
void outbox_free(struct srv *s, struct sconn *sc);

/* fifo.c */
int fifo_open(struct srv *s);
void fifo_readable(struct srv *s);
void fifo_close(struct srv *s);

/* stats.c: writes the STATS line to c. */
void stats_reply(struct srv *s, evl_conn *c);

#endif
