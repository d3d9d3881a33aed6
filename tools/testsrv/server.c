/*
 * server.c: the connection handlers. cmd mode serves one command per on_read
 * call, in order; BLAST streams from on_drain and SINK eats raw input, and
 * while either runs later commands stay unconsumed in the read buffer, so
 * replies keep the order of the commands.
 */
#include "testsrv.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "cmd.h"
#include "pattern.h"

static struct srv *srv_of(evl_conn *c)
{
    return evl_loop_udata(evl_loop_of(c));
}

static void reply(evl_conn *c, const char *s)
{
    /* A failed write has already aborted the connection: nothing to do. */
    (void)evl_write(c, s, strlen(s));
}

/* The BLAST is over: MSG lines held behind it follow its last byte, and the
 * commands that arrived meanwhile are still buffered with no new socket data
 * to announce them. */
static void blast_done(struct srv *s, struct sconn *sc)
{
    outbox_flush(s, sc);
    if (sc->close_after_blast)
        evl_close(sc->c);
    else
        evl_wake(sc->c);
}

/* How much the next write offers: a chunk, within the stream and wbuf_max. */
static size_t blast_offer(const evl_options *o, const struct sconn *sc, size_t pending)
{
    size_t n = BLAST_CHUNK;
    if (n > sc->blast_left)
        n = (size_t)sc->blast_left;
    if (o->wbuf_max && n > o->wbuf_max - pending)
        n = o->wbuf_max - pending;
    return n;
}

/* Writes pattern chunks until more than wbuf_low is pending (on_drain comes
 * back when the peer has read) or the stream ends. A reader that keeps up does
 * not make this loop endless: the library sends at most write_quantum per
 * connection per iteration, and queues the rest, so pending passes wbuf_low
 * within a quantum and a chunk or two. Pending never drops to 0 mid-stream,
 * so a half-closed peer is not closed early. */
static void blast_pump(struct srv *s, struct sconn *sc)
{
    const evl_options *o = evl_get_options(s->loop);

    while (sc->blast_left > 0) {
        size_t pending = evl_pending(sc->c);
        if (pending > o->wbuf_low) {
            s->n.blast_yields++;
            return;
        }
        if (o->wbuf_max && pending >= o->wbuf_max)
            return; /* flags keep wbuf_max > wbuf_low: only a safety net */
        size_t n = blast_offer(o, sc, pending);
        pattern_fill(s->chunk, n, sc->blast_off, sc->blast_seed);
        if (evl_write(sc->c, s->chunk, n) < 0) {
            sc->dead = true; /* the library aborted it */
            sc->blast_left = 0;
            return;
        }
        sc->blast_off += n;
        sc->blast_left -= n;
    }
    blast_done(s, sc);
}

void blast_start(struct srv *s, struct sconn *sc, uint64_t n, uint32_t seed)
{
    sc->blast_left = n;
    sc->blast_off = 0;
    sc->blast_seed = seed;
    blast_pump(s, sc);
}

static void sink_feed(evl_conn *c, struct sconn *sc)
{
    size_t len;
    const char *p = evl_data(c, &len);
    if (len > sc->sink_left)
        len = (size_t)sc->sink_left;
    if (len > 0) {
        sc->sink_crc = crc32_z(sc->sink_crc, (const Bytef *)p, len);
        evl_consume(c, len);
        sc->sink_left -= len;
    }
    if (sc->sink_left == 0) {
        char line[64];
        (void)snprintf(line, sizeof line, "SUNK %" PRIu64 " %08lx\n", sc->sink_total, sc->sink_crc);
        reply(c, line);
        evl_wake(c);
    }
}

static void text_reply(evl_conn *c, const char *prefix, const char *text, size_t len)
{
    struct iovec iov[3] = {
        {(void *)prefix, strlen(prefix)},
        {(void *)text, len},
        {"\n", 1},
    };
    (void)evl_writev(c, iov, 3);
}

/* Runs one parsed command. The input is consumed afterwards: cmd->text
 * points into it. */
static void run_cmd(struct srv *s, evl_conn *c, struct sconn *sc, const struct cmd *cmd)
{
    switch (cmd->kind) {
    case CMD_PING:
        reply(c, "PONG\n");
        break;
    case CMD_ECHO:
        text_reply(c, "", cmd->text, cmd->text_len);
        break;
    case CMD_BLAST:
        blast_start(s, sc, cmd->n, cmd->seed);
        break;
    case CMD_SINK:
        sc->sink_left = cmd->n;
        sc->sink_total = cmd->n;
        sc->sink_crc = crc32_z(0, Z_NULL, 0);
        if (cmd->n == 0)
            sink_feed(c, sc);
        break;
    case CMD_BCAST:
        bcast_send(s, cmd->text, cmd->text_len);
        break;
    case CMD_STATS:
        stats_reply(s, c);
        break;
    case CMD_QUIT:
        reply(c, "BYE\n");
        evl_close(c);
        break;
    case CMD_CLOSE:
        sc->dead = true;
        evl_abort(c);
        break;
    case CMD_NONE:
        break;
    }
}

static void on_read_cmd(evl_conn *c)
{
    struct srv *s = srv_of(c);
    struct sconn *sc = evl_udata(c);

    if (sc->dead || sc->blast_left > 0)
        return; /* later commands wait for the BLAST's last byte */
    if (sc->sink_left > 0) {
        sink_feed(c, sc);
        return;
    }

    size_t len;
    const char *p = evl_data(c, &len);
    if (len == 0)
        return;
    struct cmd cmd;
    switch (cmd_parse(p, len, &cmd)) {
    case CMD_NEED_MORE:
        return;
    case CMD_ERR_TOO_LONG:
        reply(c, "ERR too long\n");
        evl_close(c);
        return;
    case CMD_ERR_UNKNOWN:
        reply(c, "ERR unknown\n");
        break;
    case CMD_ERR_SYNTAX:
        reply(c, "ERR syntax\n");
        break;
    case CMD_OK:
        run_cmd(s, c, sc, &cmd);
        break;
    }
    evl_consume(c, cmd.consumed);
}

/* Flow control is the library's: it stops reading at wbuf_high. Called only
 * with input: len > 0. What could not be written stays unconsumed. */
static size_t on_data_echo(evl_conn *c, const char *p, size_t len)
{
    return evl_write(c, p, len) == 0 ? len : 0;
}

static void on_read_echo(evl_conn *c)
{
    size_t len;
    const char *p = evl_data(c, &len);
    evl_consume(c, on_data_echo(c, p, len));
}

static void on_read(evl_conn *c)
{
    switch (srv_of(c)->cfg.mode) {
    case SRV_MODE_ECHO:
        on_read_echo(c);
        break;
    case SRV_MODE_RESP:
        on_read_resp(c);
        break;
    case SRV_MODE_HTTP:
        on_read_http(c);
        break;
    case SRV_MODE_CMD:
        on_read_cmd(c);
        break;
    case SRV_MODE_PROXY:
        break; /* proxied connections have the proxy's own handler */
    }
}

static void on_drain(evl_conn *c)
{
    struct sconn *sc = evl_udata(c);
    if (sc && !sc->dead && sc->blast_left > 0)
        blast_pump(srv_of(c), sc);
}

static bool on_accept(evl_conn *c)
{
    struct srv *s = srv_of(c);
    if (s->cfg.mode == SRV_MODE_ECHO)
        return true; /* no commands, no per-connection state (udata NULL) */
    if (s->cfg.mode == SRV_MODE_PROXY)
        return proxy_accept(s, c); /* its own handler from here on */
    struct sconn *sc = calloc(1, sizeof *sc);
    if (!sc)
        return false;
    sc->c = c;
    sc->next = s->conns;
    if (s->conns)
        s->conns->prev = sc;
    s->conns = sc;
    evl_set_udata(c, sc);
    return true;
}

static void on_close(evl_conn *c)
{
    struct srv *s = srv_of(c);
    struct sconn *sc = evl_udata(c);
    if (!sc)
        return;
    if (sc->prev)
        sc->prev->next = sc->next;
    else
        s->conns = sc->next;
    if (sc->next)
        sc->next->prev = sc->prev;
    outbox_free(s, sc);
    evl_set_udata(c, NULL);
    free(sc);
}

static void on_fd(evl_loop *l, int fd)
{
    struct srv *s = evl_loop_udata(l);
    if (fd == s->fifo_fd)
        fifo_readable(s);
}

/* Counts its own calls: STATS "tick_calls" shows that on_tick was really
 * delivered, not only counted by the library ("ticks"). */
static void on_tick(evl_loop *l)
{
    struct srv *s = evl_loop_udata(l);
    s->n.tick_calls++;
}

/* A stop began: the loop no longer accepts, but the kernel would keep
 * completing handshakes into the backlog of an open listen fd, and those
 * clients would wait until exit for a reset. Closed now, a late client is
 * refused at once. */
static void on_stop(evl_loop *l)
{
    struct srv *s = evl_loop_udata(l);
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        s->listen_fd = -1;
    }
}

const evl_handler srv_handler = {
    .on_accept = on_accept,
    .on_read = on_read,
    .on_drain = on_drain,
    .on_close = on_close,
    .on_fd = on_fd,
    .on_tick = on_tick,
    .on_stop = on_stop,
};

/* Echo mode's handler is the echo itself, through on_data: the bench counts
 * the library's instructions per message, not a mode switch's. */
static const evl_handler srv_echo_handler = {
    .on_accept = on_accept,
    .on_data = on_data_echo,
    .on_drain = on_drain,
    .on_close = on_close,
    .on_fd = on_fd,
    .on_tick = on_tick,
    .on_stop = on_stop,
};

const evl_handler *srv_handler_of(const struct srv_config *cfg)
{
    return cfg->mode == SRV_MODE_ECHO ? &srv_echo_handler : &srv_handler;
}

struct srv *srv_new(const struct srv_config *cfg)
{
    struct srv *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cfg = *cfg;
    s->listen_fd = -1;
    s->fifo_fd = -1;
    s->chunk = malloc(BLAST_CHUNK);
    if (!s->chunk) {
        free(s);
        return NULL;
    }
    return s;
}

int srv_start(struct srv *s, evl_loop *l, int listen_fd)
{
    s->loop = l;
    s->listen_fd = listen_fd;
    return s->cfg.fifo_path ? fifo_open(s) : 0;
}

int srv_listen_fd(const struct srv *s)
{
    return s->listen_fd;
}

void srv_free(struct srv *s)
{
    if (!s)
        return;
    fifo_close(s);
    free(s->chunk);
    free(s);
}
