/* resp.c: the Redis-protocol parser (see resp.h). Pure: no I/O, no state. */
#include "resp.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

static enum resp_status fail(struct resp_request *out, const char *why)
{
    out->error = why;
    return RESP_ERR;
}

/* "PING\r\n", "ECHO hello\n": split on spaces and tabs. */
static enum resp_status parse_inline(const char *buf, size_t len, struct resp_request *out)
{
    const char *nl = memchr(buf, '\n', len < RESP_INLINE_MAX + 1 ? len : RESP_INLINE_MAX + 1);
    if (!nl)
        return len > RESP_INLINE_MAX ? fail(out, "too big inline request") : RESP_NEED_MORE;
    out->consumed = (size_t)(nl - buf) + 1;
    const char *end = nl;
    if (end > buf && end[-1] == '\r')
        end--;
    for (const char *p = buf;;) {
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p == end)
            break;
        const char *e = p;
        while (e < end && *e != ' ' && *e != '\t')
            e++;
        if (out->argc == RESP_ARGS_MAX)
            return fail(out, "too many arguments");
        out->argv[out->argc] = p;
        out->argl[out->argc++] = (size_t)(e - p);
        p = e;
    }
    return RESP_OK;
}

/* A "<prefix><number>\r\n" line at buf[*pos]. Returns RESP_OK with *v set
 * and *pos past the line, RESP_NEED_MORE, or RESP_ERR. Negative numbers are
 * allowed (the caller decides); digits only otherwise. */
static enum resp_status parse_number_line(const char *buf, size_t len, size_t *pos, long *v,
                                          struct resp_request *out, const char *what)
{
    size_t p = *pos + 1; /* past '*' or '$' */
    size_t limit = len - p < RESP_NUM_MAX + 2 ? len - p : RESP_NUM_MAX + 2;
    const char *cr = memchr(buf + p, '\r', limit);
    if (!cr)
        return len - p >= RESP_NUM_MAX + 2 ? fail(out, what) : RESP_NEED_MORE;
    size_t end = (size_t)(cr - buf);
    if (end + 1 >= len)
        return RESP_NEED_MORE;
    if (buf[end + 1] != '\n')
        return fail(out, what);
    bool neg = p < end && buf[p] == '-';
    size_t d = p + neg;
    if (d == end || end - d > 10) /* beyond any cap here: refuse before it overflows */
        return fail(out, what);
    long n = 0;
    for (; d < end; d++) {
        if (buf[d] < '0' || buf[d] > '9')
            return fail(out, what);
        n = n * 10 + (buf[d] - '0');
    }
    *v = neg ? -n : n;
    *pos = end + 2;
    return RESP_OK;
}

/* "*<n>\r\n" then n times "$<len>\r\n<bytes>\r\n". */
static enum resp_status parse_multibulk(const char *buf, size_t len, struct resp_request *out)
{
    size_t pos = 0;
    long n;
    enum resp_status st = parse_number_line(buf, len, &pos, &n, out, "invalid multibulk length");
    if (st != RESP_OK)
        return st;
    if (n > RESP_ARGS_MAX)
        return fail(out, "invalid multibulk length");
    for (long i = 0; i < n; i++) { /* n <= 0: an empty request, as Redis */
        if (pos >= len)
            return RESP_NEED_MORE;
        if (buf[pos] != '$')
            return fail(out, "expected '$'");
        long bl;
        st = parse_number_line(buf, len, &pos, &bl, out, "invalid bulk length");
        if (st != RESP_OK)
            return st;
        if (bl < 0 || bl > RESP_BULK_MAX)
            return fail(out, "invalid bulk length");
        size_t b = (size_t)bl;
        if (len - pos < b + 2)
            return RESP_NEED_MORE;
        if (buf[pos + b] != '\r' || buf[pos + b + 1] != '\n')
            return fail(out, "bulk not followed by CRLF");
        out->argv[out->argc] = buf + pos;
        out->argl[out->argc++] = b;
        pos += b + 2;
    }
    out->consumed = pos;
    return RESP_OK;
}

enum resp_status resp_parse(const char *buf, size_t len, struct resp_request *out)
{
    memset(out, 0, sizeof *out);
    if (len == 0)
        return RESP_NEED_MORE;
    return buf[0] == '*' ? parse_multibulk(buf, len, out) : parse_inline(buf, len, out);
}

enum resp_cmd resp_command(const struct resp_request *r)
{
    if (r->argc == 0)
        return RESP_CMD_EMPTY;
    if (r->argl[0] == 4 && strncasecmp(r->argv[0], "PING", 4) == 0)
        return RESP_CMD_PING;
    if (r->argl[0] == 4 && strncasecmp(r->argv[0], "ECHO", 4) == 0)
        return RESP_CMD_ECHO;
    return RESP_CMD_UNKNOWN;
}
