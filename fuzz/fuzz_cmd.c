/*
 * fuzz_cmd: the test server's command parser (tools/testsrv/cmd.h) against a
 * reference model written from docs/PROTOCOL.md §4 and cmd.h, not from cmd.c.
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

/* ---- the model: a line, then words --------------------------------------- */

struct model {
    enum cmd_status st;
    enum cmd_kind kind;
    size_t consumed;
    size_t text_off, text_len; /* text as an offset into the buffer */
    uint64_t n;
    uint32_t seed;
};

/* Plain decimal, no sign, at most max; arbitrary leading zeros. */
static bool decimal(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    unsigned __int128 v = 0; /* cannot overflow: it stops above max < 2^64 */
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
        if (v > max)
            return false;
    }
    *out = (uint64_t)v;
    return true;
}

/* Splits [s, s+n) at runs of spaces into at most max words; returns the
 * count, or max + 1 if there are more. */
static size_t words(const char *s, size_t n, const char **w, size_t *wl, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == ' ') {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && s[j] != ' ')
            j++;
        if (k == max)
            return max + 1;
        w[k] = s + i;
        wl[k] = j - i;
        k++;
        i = j;
    }
    return k;
}

static struct model model_parse(const char *b, size_t len)
{
    struct model m = {.st = CMD_NEED_MORE};
    const char *nl = memchr(b, '\n', len);
    if (!nl) {
        /* Too long already, even if the next byte is the '\n' after a '\r'. */
        size_t least = len - (len > 0 && b[len - 1] == '\r');
        m.st = least > CMD_LINE_MAX ? CMD_ERR_TOO_LONG : CMD_NEED_MORE;
        return m;
    }
    size_t line = (size_t)(nl - b);
    if (line > 0 && b[line - 1] == '\r')
        line--;
    if (line > CMD_LINE_MAX) {
        m.st = CMD_ERR_TOO_LONG;
        return m;
    }
    m.consumed = (size_t)(nl - b) + 1;
    static const char *const names[] = {"", "PING", "ECHO", "BLAST", "SINK", "BCAST", "STATS", "QUIT", "CLOSE"};
    const char *sp = memchr(b, ' ', line);
    size_t name_len = sp ? (size_t)(sp - b) : line;
    for (size_t k = 1; k < sizeof names / sizeof names[0]; k++)
        if (strlen(names[k]) == name_len && memcmp(b, names[k], name_len) == 0)
            m.kind = (enum cmd_kind)k;
    if (m.kind == CMD_NONE) {
        m.st = CMD_ERR_UNKNOWN;
        return m;
    }
    size_t args = sp ? name_len + 1 : line; /* after the first space */
    const char *w[3];
    size_t wl[3], nw = words(b + args, line - args, w, wl, 2);
    bool ok;
    uint64_t seed = 0;
    switch (m.kind) {
    case CMD_ECHO: /* everything after the first space, spaces kept */
    case CMD_BCAST:
        m.text_off = args;
        m.text_len = line - args;
        ok = m.kind == CMD_ECHO || sp != NULL; /* BCAST needs its text */
        break;
    case CMD_BLAST:
        ok = nw == 2 && decimal(w[0], wl[0], CMD_COUNT_MAX, &m.n) && decimal(w[1], wl[1], UINT32_MAX, &seed);
        m.seed = (uint32_t)seed;
        break;
    case CMD_SINK:
        ok = nw == 1 && decimal(w[0], wl[0], CMD_COUNT_MAX, &m.n);
        break;
    default:
        ok = nw == 0;
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
    char *copy = malloc(len); /* malloc(0) too: then any read is past the end */
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
