/* http.c: the HTTP/1.1 request parser (see http.h). Pure: no I/O, no state. */
#include "http.h"

#include <string.h>
#include <strings.h>

#define LEADING_EMPTY_MAX 4 /* empty lines tolerated before a request (RFC 9112 2.2) */

/* tchar of RFC 9110 5.6.2. */
static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Visible characters allowed in an origin-form target. */
static bool is_target_char(unsigned char c) { return c > 0x20 && c < 0x7f; }

static enum http_status fail(struct http_request *out, int code)
{
    out->code = code;
    return HTTP_ERR;
}

/* The line at buf[pos..len): its end (before "\r\n" or "\n") in *end and the
 * start of the next in *next; false when its '\n' has not arrived. A CR not
 * right before the LF is an error (*bad). */
static bool line_at(const char *buf, size_t len, size_t pos, size_t *end, size_t *next, bool *bad)
{
    const char *nl = memchr(buf + pos, '\n', len - pos);
    if (!nl)
        return false;
    size_t e = (size_t)(nl - buf);
    *next = e + 1;
    if (e > pos && buf[e - 1] == '\r')
        e--;
    *end = e;
    *bad = memchr(buf + pos, '\r', e - pos) != NULL;
    return true;
}

/* "GET /path HTTP/1.1", exactly single spaces. */
static enum http_status parse_request_line(const char *l, size_t n, struct http_request *out)
{
    size_t m = 0;
    while (m < n && is_tchar((unsigned char)l[m]))
        m++;
    if (m == 0 || m == n || l[m] != ' ')
        return fail(out, 400);
    size_t t = m + 1, te = t;
    while (te < n && is_target_char((unsigned char)l[te]))
        te++;
    if (te == t || te == n || l[te] != ' ' || l[t] != '/')
        return fail(out, 400);
    const char *v = l + te + 1;
    size_t vn = n - te - 1;
    if (vn != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
        v[7] < '0' || v[7] > '9')
        return fail(out, 400);
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return fail(out, 505);
    if (m != 3 || memcmp(l, "GET", 3) != 0)
        return fail(out, 405); /* checked after the version: a request, but not GET */
    out->target = l + t;
    out->target_len = te - t;
    out->minor = v[7] - '0';
    out->keep_alive = out->minor == 1;
    return HTTP_OK;
}

/* Does a comma-separated list hold tok (case-insensitive)? */
static bool list_has(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i < n;) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
            return true;
    }
    return false;
}

static bool name_is(const char *l, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(l, name, n) == 0;
}

struct head_state {
    int hosts, lengths;
    bool close; /* "close" in any Connection field: it wins (RFC 9112 9.6) */
};

/* "Name: value": checks it and applies what matters here. */
static enum http_status parse_header(const char *l, size_t n, struct http_request *out,
                                     struct head_state *hs)
{
    if (n == 0 || l[0] == ' ' || l[0] == '\t')
        return fail(out, 400); /* obsolete line folding */
    size_t c = 0;
    while (c < n && is_tchar((unsigned char)l[c]))
        c++;
    if (c == 0 || c == n || l[c] != ':')
        return fail(out, 400); /* includes whitespace before the colon */
    size_t v = c + 1, ve = n;
    while (v < ve && (l[v] == ' ' || l[v] == '\t'))
        v++;
    while (ve > v && (l[ve - 1] == ' ' || l[ve - 1] == '\t'))
        ve--;
    for (size_t i = v; i < ve; i++) {
        unsigned char ch = (unsigned char)l[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return fail(out, 400);
    }
    const char *val = l + v;
    size_t vn = ve - v;
    if (name_is(l, c, "host")) {
        hs->hosts++;
    } else if (name_is(l, c, "connection")) {
        if (list_has(val, vn, "close"))
            hs->close = true;
        else if (list_has(val, vn, "keep-alive"))
            out->keep_alive = true;
    } else if (name_is(l, c, "content-length")) {
        /* Only an empty body: a GET with one is refused, not skipped. */
        if (vn == 0 || ++hs->lengths > 1)
            return fail(out, 400);
        for (size_t i = 0; i < vn; i++)
            if (val[i] != '0')
                return fail(out, 400);
    } else if (name_is(l, c, "transfer-encoding")) {
        return fail(out, 501);
    }
    return HTTP_OK;
}

/* Before the request line is complete: refuse what cannot become one. */
static enum http_status check_partial_line(const char *l, size_t n, struct http_request *out)
{
    size_t m = 0;
    while (m < n && is_tchar((unsigned char)l[m]))
        m++;
    if (m < n && l[m] != ' ')
        return fail(out, 400);
    return n > HTTP_HEAD_MAX ? fail(out, 414) : HTTP_NEED_MORE;
}

enum http_status http_parse(const char *buf, size_t len, struct http_request *out)
{
    memset(out, 0, sizeof *out);
    size_t pos = 0, end, next;
    bool bad;
    for (int skipped = 0;; skipped++) { /* empty lines before the request */
        if (pos < len && buf[pos] != '\r' && buf[pos] != '\n')
            break;
        if (!line_at(buf, len, pos, &end, &next, &bad))
            return len - pos > 1 ? fail(out, 400) : HTTP_NEED_MORE;
        if (end != pos || bad || skipped == LEADING_EMPTY_MAX)
            return fail(out, 400);
        pos = next;
    }
    size_t start = pos;
    if (!line_at(buf, len, pos, &end, &next, &bad))
        return check_partial_line(buf + pos, len - pos, out);
    if (bad)
        return fail(out, 400);
    if (end - pos > HTTP_HEAD_MAX)
        return fail(out, 414);
    enum http_status st = parse_request_line(buf + pos, end - pos, out);
    if (st != HTTP_OK)
        return st;
    struct head_state hs = {0};
    for (int fields = 0;; fields++) {
        pos = next;
        if (pos - start > HTTP_HEAD_MAX)
            return fail(out, 431);
        if (!line_at(buf, len, pos, &end, &next, &bad))
            return len - start > HTTP_HEAD_MAX ? fail(out, 431) : HTTP_NEED_MORE;
        if (bad)
            return fail(out, 400);
        if (end == pos)
            break; /* the empty line: the head is complete */
        if (fields == HTTP_HEADERS_MAX)
            return fail(out, 431);
        st = parse_header(buf + pos, end - pos, out, &hs);
        if (st != HTTP_OK)
            return st;
    }
    if (next - start > HTTP_HEAD_MAX)
        return fail(out, 431);
    if (out->minor == 1 && hs.hosts != 1)
        return fail(out, 400);
    if (hs.close)
        out->keep_alive = false;
    out->consumed = next;
    return HTTP_OK;
}

int http_bytes_target(const struct http_request *r, uint64_t *n)
{
    static const char prefix[] = "/bytes/";
    size_t pl = sizeof prefix - 1;
    if (r->target_len < pl || memcmp(r->target, prefix, pl) != 0)
        return 0;
    size_t i = pl, end = r->target_len;
    const char *q = memchr(r->target + pl, '?', end - pl);
    if (q)
        end = (size_t)(q - r->target);
    if (i == end)
        return -1;
    uint64_t v = 0;
    for (; i < end; i++) {
        char c = r->target[i];
        if (c < '0' || c > '9')
            return -1;
        unsigned d = (unsigned)(c - '0');
        if (v > (HTTP_BYTES_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *n = v;
    return 1;
}

const char *http_reason(int code)
{
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 405: return "Method Not Allowed";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}
