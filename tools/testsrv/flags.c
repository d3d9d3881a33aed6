/* flags.c: evl-testsrv's command line (docs/PROTOCOL.md §1). */
#include "flags.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/un.h>

static const char usage_text[] =
    "usage: evl-testsrv [--listen HOST:PORT | --port N | --unix PATH]\n"
    "                   [--mode cmd|echo|resp|http|proxy] [--upstream ADDR:PORT|PATH]\n"
    "                   [--rbuf-max B] [--wbuf-high B]\n"
    "                   [--wbuf-low B] [--wbuf-max B] [--idle-timeout MS]\n"
    "                   [--tick-ms MS] [--close-timeout MS] [--max-conns N]\n"
    "                   [--sndbuf B] [--write-budget B] [--trim-ms MS]\n"
    "                   [--fifo PATH] [--help]\n"
    "  --listen HOST:PORT  listen there ([::1]:PORT for IPv6)\n"
    "  --port N            listen on 127.0.0.1:N (default 0: a free port)\n"
    "  --unix PATH         listen on a unix stream socket\n"
    "  --mode M            cmd (default: the command protocol), echo, resp (Redis\n"
    "                      PING/ECHO), http (GET: keep-alive, pipelining) or proxy\n"
    "  --upstream A        proxy mode: where each client's bytes go: a numeric\n"
    "                      ADDR:PORT ([::1]:PORT for IPv6) or a unix socket /PATH\n"
    "  --rbuf-max B        unconsumed input cap per connection (1M)\n"
    "  --wbuf-high B       stop reading a connection at this many pending bytes (1M)\n"
    "  --wbuf-low B        resume reading, stream the next chunk, at this many (64K)\n"
    "  --wbuf-max B        close a connection whose pending bytes would pass this (64M; 0 = none)\n"
    "  --idle-timeout MS   close connections idle this long (0 = never)\n"
    "  --tick-ms MS        timer period (5000; 0 = none)\n"
    "  --close-timeout MS  graceful close gives up after this long (5000)\n"
    "  --max-conns N       refuse connections beyond N (0 = no cap)\n"
    "  --sndbuf B          SO_SNDBUF of accepted sockets (evl_options.sndbuf; 0 = the kernel's)\n"
    "  --write-budget B    bytes sent per loop iteration, all connections (1M)\n"
    "  --trim-ms MS        give freed memory back this long after a release (1000; 0 = never)\n"
    "  --fifo PATH         broadcast each line written into this FIFO (made if missing)\n"
    "Sizes B are bytes, or with a K, M or G suffix (KiB, MiB, GiB).\n"
    "Prints \"LISTENING <port>\" (or \"LISTENING <path>\") once it listens.\n";

static void usage_error(const char *msg)
{
    (void)fprintf(stderr, "evl-testsrv: %s\n%s", msg, usage_text);
}

static const char *opt_name(int opt);

/* Decimal, with an optional binary K/M/G suffix, within [lo, hi]. */
static int parse_num(const char *s, uint64_t lo, uint64_t hi, bool suffix, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    unsigned shift = 0;
    if (suffix && *end) {
        switch (*end) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        default: return -1;
        }
        end++;
    }
    if (*end || v > (hi >> shift) || (v << shift) < lo)
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

/* Sizes stop at 1 TiB: more is a typo, and sums stay far from overflow. */
#define SIZE_LIMIT ((uint64_t)1 << 40)

static int parse_listen(const char *arg, struct flags *f)
{
    const char *colon = strrchr(arg, ':');
    if (!colon || colon == arg)
        return -1;
    const char *host = arg;
    size_t hlen = (size_t)(colon - arg);
    if (host[0] == '[') {
        if (hlen < 3 || host[hlen - 1] != ']')
            return -1;
        host++;
        hlen -= 2;
    }
    if (hlen >= sizeof f->host)
        return -1;
    uint64_t port;
    if (parse_num(colon + 1, 0, 65535, false, &port) < 0)
        return -1;
    memcpy(f->host, host, hlen);
    f->host[hlen] = '\0';
    f->port = (int)port;
    return 0;
}

enum { O_LISTEN = 256, O_PORT, O_UNIX, O_MODE, O_RBUF_MAX, O_WBUF_HIGH, O_WBUF_LOW,
       O_WBUF_MAX, O_IDLE, O_TICK, O_CLOSE_TIMEOUT, O_MAX_CONNS, O_SNDBUF, O_WRITE_BUDGET, O_TRIM, O_FIFO,
       O_UPSTREAM };

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, O_LISTEN},
    {"port", required_argument, NULL, O_PORT},
    {"unix", required_argument, NULL, O_UNIX},
    {"mode", required_argument, NULL, O_MODE},
    {"rbuf-max", required_argument, NULL, O_RBUF_MAX},
    {"wbuf-high", required_argument, NULL, O_WBUF_HIGH},
    {"wbuf-low", required_argument, NULL, O_WBUF_LOW},
    {"wbuf-max", required_argument, NULL, O_WBUF_MAX},
    {"idle-timeout", required_argument, NULL, O_IDLE},
    {"tick-ms", required_argument, NULL, O_TICK},
    {"close-timeout", required_argument, NULL, O_CLOSE_TIMEOUT},
    {"max-conns", required_argument, NULL, O_MAX_CONNS},
    {"sndbuf", required_argument, NULL, O_SNDBUF},
    {"write-budget", required_argument, NULL, O_WRITE_BUDGET},
    {"trim-ms", required_argument, NULL, O_TRIM},
    {"fifo", required_argument, NULL, O_FIFO},
    {"upstream", required_argument, NULL, O_UPSTREAM},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const char *opt_name(int opt)
{
    for (const struct option *o = long_opts; o->name; o++)
        if (o->val == opt)
            return o->name;
    return "?";
}

/* --upstream: a unix path, or a numeric ADDR:PORT (evl_connect resolves
 * nothing: a name would only fail later, on the first client). */
static int parse_upstream(const char *arg, struct srv_config *c)
{
    if (arg[0] == '/') {
        if (strlen(arg) >= sizeof c->upstream)
            return -1;
        (void)snprintf(c->upstream, sizeof c->upstream, "%s", arg);
        c->upstream_port = 0;
        return 0;
    }
    struct flags tmp;
    if (parse_listen(arg, &tmp) < 0 || strlen(tmp.host) >= sizeof c->upstream)
        return -1;
    unsigned char a[16];
    if (inet_pton(AF_INET, tmp.host, a) != 1 && inet_pton(AF_INET6, tmp.host, a) != 1)
        return -1;
    (void)snprintf(c->upstream, sizeof c->upstream, "%s", tmp.host);
    c->upstream_port = tmp.port;
    return tmp.port > 0 ? 0 : -1;
}

/* One option's value; -1 when it is bad. */
static int set_opt(int opt, const char *arg, struct flags *f, int *listeners)
{
    uint64_t v = 0;
    int rc = 0;

    switch (opt) {
    case O_LISTEN:
        ++*listeners;
        return parse_listen(arg, f);
    case O_PORT:
        ++*listeners;
        rc = parse_num(arg, 0, 65535, false, &v);
        f->port = (int)v;
        return rc;
    case O_UNIX:
        ++*listeners;
        f->unix_path = arg;
        return *arg && strlen(arg) < sizeof ((struct sockaddr_un *)0)->sun_path ? 0 : -1;
    case O_MODE:
        if (strcmp(arg, "cmd") == 0)
            f->srv.mode = SRV_MODE_CMD;
        else if (strcmp(arg, "echo") == 0)
            f->srv.mode = SRV_MODE_ECHO;
        else if (strcmp(arg, "resp") == 0)
            f->srv.mode = SRV_MODE_RESP;
        else if (strcmp(arg, "http") == 0)
            f->srv.mode = SRV_MODE_HTTP;
        else if (strcmp(arg, "proxy") == 0)
            f->srv.mode = SRV_MODE_PROXY;
        else
            return -1;
        return 0;
    case O_RBUF_MAX:
        rc = parse_num(arg, 1, SIZE_LIMIT, true, &v);
        f->opts.rbuf_max = (size_t)v;
        return rc;
    case O_WBUF_HIGH:
        rc = parse_num(arg, 0, SIZE_LIMIT, true, &v);
        f->opts.wbuf_high = (size_t)v;
        return rc;
    case O_WBUF_LOW:
        rc = parse_num(arg, 0, SIZE_LIMIT, true, &v);
        f->opts.wbuf_low = (size_t)v;
        return rc;
    case O_WBUF_MAX:
        rc = parse_num(arg, 0, SIZE_LIMIT, true, &v);
        f->opts.wbuf_max = (size_t)v;
        return rc;
    case O_IDLE:
        rc = parse_num(arg, 0, INT_MAX, false, &v);
        f->opts.idle_timeout_ms = (int)v;
        return rc;
    case O_TICK:
        rc = parse_num(arg, 0, INT_MAX, false, &v);
        f->opts.tick_ms = (int)v;
        return rc;
    case O_CLOSE_TIMEOUT:
        rc = parse_num(arg, 0, INT_MAX, false, &v);
        f->opts.close_timeout_ms = (int)v;
        return rc;
    case O_MAX_CONNS:
        rc = parse_num(arg, 0, UINT_MAX, false, &v);
        f->opts.max_conns = (unsigned)v;
        return rc;
    case O_SNDBUF:
        rc = parse_num(arg, 0, INT_MAX / 2, true, &v);
        f->opts.sndbuf = (int)v; /* the library sets it on every accepted socket */
        return rc;
    case O_WRITE_BUDGET:
        rc = parse_num(arg, 1, SIZE_MAX, true, &v);
        f->opts.write_budget = (size_t)v;
        return rc;
    case O_TRIM:
        rc = parse_num(arg, 0, INT_MAX, false, &v);
        f->opts.trim_ms = (int)v;
        return rc;
    case O_FIFO:
        f->srv.fifo_path = arg;
        return *arg ? 0 : -1;
    case O_UPSTREAM:
        return parse_upstream(arg, &f->srv);
    default:
        return -1;
    }
}

/* The library refuses these too (EINVAL), but without saying which. */
static int check_watermarks(const evl_options *o)
{
    if (o->wbuf_low > o->wbuf_high) {
        usage_error("--wbuf-low must not exceed --wbuf-high");
        return -1;
    }
    /* BLAST streams while pending <= wbuf_low, one chunk at a time under
     * wbuf_max: the cap needs room above the low mark. */
    if (o->wbuf_max && (o->wbuf_max < o->wbuf_high || o->wbuf_max <= o->wbuf_low)) {
        usage_error("--wbuf-max must be 0 or at least --wbuf-high (and above --wbuf-low)");
        return -1;
    }
    return 0;
}

int flags_parse(int argc, char **argv, struct flags *f)
{
    memset(f, 0, sizeof *f);
    strcpy(f->host, "127.0.0.1");
    evl_options_default(&f->opts);
    f->opts.wbuf_max = (size_t)64 << 20; /* so BCAST to a non-reader is bounded */
    f->srv.mode = SRV_MODE_CMD;

    int listeners = 0, opt;
    opterr = 1; /* getopt names unknown options and missing values itself */
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        if (opt == 'h') {
            (void)fputs(usage_text, stdout);
            return 1;
        }
        if (opt == '?') {
            (void)fputs(usage_text, stderr);
            return -1;
        }
        if (set_opt(opt, optarg, f, &listeners) < 0) {
            char msg[256];
            (void)snprintf(msg, sizeof msg, "bad value for --%s: '%s'", opt_name(opt), optarg);
            usage_error(msg);
            return -1;
        }
    }
    if (optind < argc) {
        char msg[256];
        (void)snprintf(msg, sizeof msg, "unexpected argument '%s'", argv[optind]);
        usage_error(msg);
        return -1;
    }
    if (listeners > 1) {
        usage_error("give at most one of --listen, --port, --unix");
        return -1;
    }
    if ((f->srv.mode == SRV_MODE_PROXY) != (f->srv.upstream[0] != '\0')) {
        usage_error("--mode proxy needs --upstream, and --upstream needs --mode proxy");
        return -1;
    }
    return check_watermarks(&f->opts);
}
