/*
 * fuzz_cmd: the test server's command parser (tools/testsrv/cmd.h) against a
 * reference model written from docs/PROTOCOL.md §4 and cmd.h, not from cmd.c:
 * the grammar as regular expressions (see model_parse).
 *
 * The first input byte picks the mode: the rest parsed as it is, or (top two
 * bits set) with a run of one byte inserted so the first line lands within +-128 bytes of
 * CMD_LINE_MAX (the fuzzer would never grow a 64 KiB input by itself).
 * Checked on every input:
 *  - status, kind, consumed, text, n and seed equal the model's;
 *  - the parser reads nothing past len (every call gets an exact-size heap
 *    copy, so ASan sees a read one byte past) and sets every field that
 *    its status promises (*out is poisoned before each call);
 *  - the result depends on the first line only: the same for buf[0, consumed)
 *    as for all of buf, and NEED_MORE for every shorter prefix that is not
 *    too long already;
 *  - a server-style loop over the whole input (parse, drop consumed, again)
 *    always progresses and ends in NEED_MORE or TOO_LONG.
 */
#include "../tools/testsrv/cmd.h"
#include "fuzz_common.h"

#include <stdbool.h>
#include <string.h>

/* ---- the model: the grammar as regular expressions ----------------------- *
 *
 * docs/PROTOCOL.md §4 and cmd.h say what a line is; what it means is said here as one
 * POSIX extended regular expression per command form, matched against the
 * whole line (REG_STARTEND: NUL bytes are part of the line), numbers judged
 * by their digit strings (no arithmetic), text taken from the match
 * offsets. No step of cmd.c's (name lookup, then tokens) is repeated. */

#include <regex.h>
#include <stdlib.h>

struct model {
    enum cmd_status st;
    enum cmd_kind kind;
    size_t consumed;
    size_t text_off, text_len; /* text as an offset into the buffer */
    uint64_t n;
    uint32_t seed;
};

enum { RX_NAME, RX_NOARG, RX_ECHO, RX_BCAST, RX_BLAST, RX_SINK, RX_COUNT };

static const char *const rx_src[RX_COUNT] = {
    [RX_NAME] = "^(PING|ECHO|BLAST|SINK|BCAST|STATS|QUIT|CLOSE)( |$)", /* a known command */
    [RX_NOARG] = "^(PING|STATS|QUIT|CLOSE) *$",
    [RX_ECHO] = "^ECHO( |$)",
    [RX_BCAST] = "^BCAST ",
    [RX_BLAST] = "^BLAST +([0-9]+) +([0-9]+) *$",
    [RX_SINK] = "^SINK +([0-9]+) *$",
};

static bool rx(int which, const char *line, size_t n, regmatch_t *m, size_t nm)
{
    static regex_t re[RX_COUNT];
    static bool ready;
    if (!ready) {
        for (int i = 0; i < RX_COUNT; i++)
            FZ_CHECK(regcomp(&re[i], rx_src[i], REG_EXTENDED) == 0, "regcomp %s", rx_src[i]);
        ready = true;
    }
    regmatch_t whole[3];
    FZ_CHECK(nm <= 3, "too many groups");
    /* NUL-terminated too: sanitizers' regexec reads up to a NUL */
    char *z = malloc(n + 1);
    FZ_CHECK(z != NULL, "out of memory");
    memcpy(z, line, n);
    z[n] = '\0';
    whole[0].rm_so = 0;
    whole[0].rm_eo = (regoff_t)n;
    int r = regexec(&re[which], z, 3, whole, REG_STARTEND);
    free(z);
    if (r != 0)
        return false;
    for (size_t i = 0; i < nm; i++)
        m[i] = whole[i];
    return true;
}

/* A decimal digit string no greater than max (given as digits), and its value. */
static bool in_range(const char *d, size_t n, const char *max, uint64_t *v)
{
    while (n > 1 && *d == '0')
        d++, n--;
    size_t ml = strlen(max);
    if (n > ml || (n == ml && memcmp(d, max, n) > 0))
        return false;
    char tmp[24];
    memcpy(tmp, d, n);
    tmp[n] = '\0';
    *v = strtoull(tmp, NULL, 10);
    return true;
}

static struct model model_parse(const char *b, size_t len)
{
    struct model m = {.st = CMD_NEED_MORE};
    size_t nl = 0;
    while (nl < len && b[nl] != '\n')
        nl++;
    if (nl == len) { /* no line yet; too long already if even a '\n' next cannot end it in time */
        m.st = len - (len > 0 && b[len - 1] == '\r') > CMD_LINE_MAX ? CMD_ERR_TOO_LONG : CMD_NEED_MORE;
        return m;
    }
    size_t line = nl - (nl > 0 && b[nl - 1] == '\r');
    if (line > CMD_LINE_MAX) {
        m.st = CMD_ERR_TOO_LONG;
        return m;
    }
    m.consumed = nl + 1;
    regmatch_t g[3];
    if (!rx(RX_NAME, b, line, g, 2)) {
        m.st = CMD_ERR_UNKNOWN;
        return m;
    }
    static const char *const names[] = {"", "PING", "ECHO", "BLAST", "SINK", "BCAST", "STATS", "QUIT", "CLOSE"};
    size_t name_len = (size_t)(g[1].rm_eo - g[1].rm_so);
    for (size_t k = 1; k < sizeof names / sizeof names[0]; k++)
        if (strlen(names[k]) == name_len && memcmp(b, names[k], name_len) == 0)
            m.kind = (enum cmd_kind)k;
    bool ok = false;
    uint64_t seed = 0;
    switch (m.kind) {
    case CMD_ECHO:
    case CMD_BCAST:
        ok = rx(m.kind == CMD_ECHO ? RX_ECHO : RX_BCAST, b, line, g, 1);
        m.text_off = (size_t)g[0].rm_eo < line ? (size_t)g[0].rm_eo : line;
        m.text_len = line - m.text_off;
        break;
    case CMD_BLAST:
        ok = rx(RX_BLAST, b, line, g, 3) &&
             in_range(b + g[1].rm_so, (size_t)(g[1].rm_eo - g[1].rm_so), "9223372036854775807", &m.n) &&
             in_range(b + g[2].rm_so, (size_t)(g[2].rm_eo - g[2].rm_so), "4294967295", &seed);
        m.seed = (uint32_t)seed;
        break;
    case CMD_SINK:
        ok = rx(RX_SINK, b, line, g, 2) &&
             in_range(b + g[1].rm_so, (size_t)(g[1].rm_eo - g[1].rm_so), "9223372036854775807", &m.n);
        break;
    default:
        ok = rx(RX_NOARG, b, line, g, 1);
        break;
    }
    m.st = ok ? CMD_OK : CMD_ERR_SYNTAX;
    return m;
}

/* ---- comparing ------------------------------------------------------------ */

static const char *status_name(enum cmd_status s)
{
    static const char *const n[] = {"OK", "NEED_MORE", "TOO_LONG", "SYNTAX", "UNKNOWN"};
    return (unsigned)s < 5 ? n[s] : "bad status";
}

/* cmd_parse on an exact-size copy of b[0, len); the result checked against
 * the model. Returns the status. */
static enum cmd_status parse_checked(const char *b, size_t len, struct cmd *out)
{
    /* malloc(0) on purpose too: then any read is past the end */
    /* NOLINTNEXTLINE(clang-analyzer-optin.portability.UnixAPI) */
    char *copy = malloc(len);
    FZ_CHECK(copy != NULL, "out of memory");
    memcpy(copy, b, len);
    memset(out, 0xa5, sizeof *out); /* fields it leaves alone show up */
    enum cmd_status st = cmd_parse(copy, len, out);
    struct model m = model_parse(b, len);
    FZ_CHECK(st == m.st, "len %zu: status %s, model %s", len, status_name(st), status_name(m.st));
    bool has_line = st == CMD_OK || st == CMD_ERR_SYNTAX || st == CMD_ERR_UNKNOWN;
    if (has_line)
        FZ_CHECK(out->consumed == m.consumed && out->consumed > 0 && out->consumed <= len,
                 "len %zu (%s): consumed %zu, model %zu", len, status_name(st), out->consumed, m.consumed);
    if (st == CMD_OK || st == CMD_ERR_SYNTAX)
        FZ_CHECK(out->kind == m.kind, "len %zu: kind %s, model %s", len, cmd_name(out->kind), cmd_name(m.kind));
    if (st == CMD_OK) {
        FZ_CHECK(strncmp(cmd_name(out->kind), copy, strlen(cmd_name(out->kind))) == 0,
                 "cmd_name(%d) is not the line's command", (int)out->kind);
        if (m.kind == CMD_ECHO || m.kind == CMD_BCAST) {
            FZ_CHECK(out->text == copy + m.text_off && out->text_len == m.text_len,
                     "text at %td len %zu, model at %zu len %zu", out->text - copy, out->text_len, m.text_off,
                     m.text_len);
        }
        if (m.kind == CMD_BLAST || m.kind == CMD_SINK)
            FZ_CHECK(out->n == m.n && out->n <= CMD_COUNT_MAX, "n %llu, model %llu",
                     (unsigned long long)out->n, (unsigned long long)m.n);
        if (m.kind == CMD_BLAST)
            FZ_CHECK(out->seed == m.seed, "seed %u, model %u", out->seed, m.seed);
    }
    free(copy);
    return st;
}

static bool parse_step(const char *b, size_t len, bool checked, size_t *consumed)
{
    struct cmd c;
    enum cmd_status st = checked ? parse_checked(b, len, &c) : cmd_parse(b, len, &c);
    if (!(st != CMD_NEED_MORE && st != CMD_ERR_TOO_LONG))
        return false;
    *consumed = c.consumed; /* set only with a request */
    return true;
}

static void check_input(const char *b, size_t len)
{
    struct cmd c;
    enum cmd_status st = parse_checked(b, len, &c);
    if (st == CMD_OK || st == CMD_ERR_SYNTAX || st == CMD_ERR_UNKNOWN) {
        /* The first line alone gives the same answer... */
        struct cmd c2;
        size_t line = c.consumed;
        FZ_CHECK(parse_checked(b, line, &c2) == st && c2.consumed == line,
                 "the first line alone parses differently");
        /* ...and any shorter prefix is incomplete (or already too long). */
        size_t cut = line - 1 - (size_t)(unsigned char)b[0] % line;
        enum cmd_status p = parse_checked(b, cut, &c2);
        FZ_CHECK(p == CMD_NEED_MORE || p == CMD_ERR_TOO_LONG, "prefix of %zu bytes: %s", cut, status_name(p));
    }
    /* The server's loop: every parse that returns a line moves forward.
     * The first lines against the model; the rest (a long run of '\n' makes
     * 64 Ki of them) only for progress, without the copies. */
    fz_parse_loop(b, len, len > 4096 ? 4 : 64, parse_step); /* each check copies the rest */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    if ((data[0] & 0xc0) != 0xc0) { /* 3 in 4: short; a long one costs 40x */
        check_input(p, n);
        return 0;
    }
    /* A long line: fill bytes inserted at a point of the rest so that it
     * grows by CMD_LINE_MAX - 128 .. CMD_LINE_MAX + 127 bytes. */
    if (n < 2)
        return 0;
    size_t run = CMD_LINE_MAX - 128 + (uint8_t)p[0];
    char fill = p[1];
    p += 2;
    n -= 2;
    size_t at = n ? (size_t)(data[0] & 0x3f) % (n + 1) : 0;
    char *big = malloc(n + run);
    FZ_CHECK(big != NULL, "out of memory");
    memcpy(big, p, at);
    memset(big + at, fill, run);
    memcpy(big + at + run, p + at, n - at);
    check_input(big, n + run);
    free(big);
    return 0;
}
