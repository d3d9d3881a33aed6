/* cmd.c: the command parser (see cmd.h). Pure: no I/O, no state. */
#include "cmd.h"

#include <stdbool.h>
#include <string.h>

static const struct {
    const char *name;
    enum cmd_kind kind;
} cmd_table[] = {
    {"PING", CMD_PING},   {"ECHO", CMD_ECHO},   {"BLAST", CMD_BLAST},
    {"SINK", CMD_SINK},   {"BCAST", CMD_BCAST}, {"STATS", CMD_STATS},
    {"QUIT", CMD_QUIT},   {"CLOSE", CMD_CLOSE},
};

const char *cmd_name(enum cmd_kind kind)
{
    for (size_t i = 0; i < sizeof cmd_table / sizeof cmd_table[0]; i++)
        if (cmd_table[i].kind == kind)
            return cmd_table[i].name;
    return "?";
}

static enum cmd_kind lookup(const char *p, size_t n)
{
    for (size_t i = 0; i < sizeof cmd_table / sizeof cmd_table[0]; i++)
        if (strlen(cmd_table[i].name) == n && memcmp(cmd_table[i].name, p, n) == 0)
            return cmd_table[i].kind;
    return CMD_NONE;
}

/* The next space-separated token of [*p, end), or false at the end. */
static bool next_token(const char **p, const char *end, const char **tok, size_t *tok_len)
{
    const char *s = *p;
    while (s < end && *s == ' ')
        s++;
    if (s == end)
        return false;
    const char *e = s;
    while (e < end && *e != ' ')
        e++;
    *tok = s;
    *tok_len = (size_t)(e - s);
    *p = e;
    return true;
}

static bool parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Fills the arguments of out->kind from [args, end): false = bad arguments. */
static bool parse_args(struct cmd *out, const char *args, const char *end, bool has_space)
{
    const char *tok;
    size_t tok_len;
    uint64_t v;

    switch (out->kind) {
    case CMD_ECHO:
    case CMD_BCAST:
        /* inner and trailing spaces are part of the text */
        out->text = args;
        out->text_len = (size_t)(end - args);
        return out->kind == CMD_ECHO || has_space;
    case CMD_BLAST:
        if (!next_token(&args, end, &tok, &tok_len) || !parse_u64(tok, tok_len, CMD_COUNT_MAX, &out->n))
            return false;
        if (!next_token(&args, end, &tok, &tok_len) || !parse_u64(tok, tok_len, UINT32_MAX, &v))
            return false;
        out->seed = (uint32_t)v;
        break;
    case CMD_SINK:
        if (!next_token(&args, end, &tok, &tok_len) || !parse_u64(tok, tok_len, CMD_COUNT_MAX, &out->n))
            return false;
        break;
    default:
        break;
    }
    /* every command but ECHO/BCAST takes a fixed number of arguments */
    return !next_token(&args, end, &tok, &tok_len);
}

enum cmd_status cmd_parse(const char *buf, size_t len, struct cmd *out)
{
    memset(out, 0, sizeof *out);

    /* A '\r' just before the '\n' is not part of the line, so the newline
     * may be up to CMD_LINE_MAX + 1 bytes in. */
    size_t scan = len < CMD_LINE_MAX + 2 ? len : CMD_LINE_MAX + 2;
    const char *nl = memchr(buf, '\n', scan);
    if (!nl) {
        /* The shortest line this can still become: a last '\r' may be
         * followed by the '\n'. */
        size_t least = len;
        if (len > 0 && buf[len - 1] == '\r')
            least--;
        return least > CMD_LINE_MAX ? CMD_ERR_TOO_LONG : CMD_NEED_MORE;
    }
    const char *end = nl;
    if (end > buf && end[-1] == '\r')
        end--;
    if ((size_t)(end - buf) > CMD_LINE_MAX)
        return CMD_ERR_TOO_LONG;
    out->consumed = (size_t)(nl - buf) + 1;

    const char *sp = memchr(buf, ' ', (size_t)(end - buf));
    const char *name_end = sp ? sp : end;
    out->kind = lookup(buf, (size_t)(name_end - buf));
    if (out->kind == CMD_NONE)
        return CMD_ERR_UNKNOWN;
    const char *args = sp ? sp + 1 : end;
    return parse_args(out, args, end, sp != NULL) ? CMD_OK : CMD_ERR_SYNTAX;
}
