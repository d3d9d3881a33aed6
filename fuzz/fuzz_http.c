/*
 * fuzz_http: the test server's HTTP/1.1 request-head parser
 * (tools/testsrv/http.h), by properties:
 *  - it reads nothing past len (each call gets an exact-size heap copy);
 *  - HTTP_OK: 0 < consumed <= len, the head ends in an empty line
 *    ("\r\n\r\n" or "\n\n" style ending at consumed), target non-empty and
 *    inside the head, minor 0 or 1; HTTP_ERR: one of the documented codes,
 *    with a reason;
 *  - the answer depends on the first head only: the same for
 *    buf[0, consumed) as for all of buf (target, version, keep-alive), and
 *    a shorter prefix is never a complete request;
 *  - http_bytes_target agrees with a plain reading of "/bytes/<n>";
 *  - a server-style loop over pipelined input progresses;
 *  - a model written from http.h and RFC 9112, not from http.c: it splits
 *    the whole input into lines first, then judges the head as a set of
 *    facts (request line, fields, sizes), collecting every error code that
 *    applies. A complete head it finds valid must parse OK with the same
 *    length, target, version and keep-alive (a "close" in any Connection
 *    field wins, RFC 9112 9.6); one with errors must fail with one of the
 *    codes it collected; a valid but incomplete one must ask for more.
 */
#include "../tools/testsrv/http.h"
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static enum http_status parse_checked(const char *b, size_t len, struct http_request *out)
{
    char *copy = malloc(len ? len : 1);
    FZ_CHECK(copy != NULL, "out of memory");
    memcpy(copy, b, len);
    memset(out, 0xa5, sizeof *out);
    enum http_status st = http_parse(copy, len, out);
    FZ_CHECK(st == HTTP_OK || st == HTTP_NEED_MORE || st == HTTP_ERR, "len %zu: status %d", len, (int)st);
    if (st == HTTP_ERR) {
        int c = out->code;
        FZ_CHECK(c == 400 || c == 405 || c == 414 || c == 431 || c == 501 || c == 505, "error code %d", c);
        FZ_CHECK(strcmp(http_reason(c), "Error") != 0, "code %d has no reason", c);
    }
    if (st == HTTP_OK) {
        FZ_CHECK(out->consumed > 0 && out->consumed <= len && out->consumed <= HTTP_HEAD_MAX + 1024,
                 "len %zu: consumed %zu", len, out->consumed);
        FZ_CHECK(copy[out->consumed - 1] == '\n', "the head does not end with a line end");
        FZ_CHECK(out->minor == 0 || out->minor == 1, "HTTP/1.%d", out->minor);
        FZ_CHECK(out->target_len > 0 && out->target >= copy &&
                     (size_t)(out->target - copy) + out->target_len <= out->consumed,
                 "target outside the head");
        out->target = b + (out->target - copy);
    }
    free(copy);
    return st;
}

/* "/bytes/<n>" with an optional "?query": the plain reading. */
static int bytes_model(const struct http_request *r, uint64_t *n)
{
    static const char pre[] = "/bytes/";
    size_t pl = sizeof pre - 1, tl = r->target_len;
    if (tl < pl || memcmp(r->target, pre, pl) != 0)
        return 0;
    size_t end = pl;
    while (end < tl && r->target[end] != '?')
        end++;
    if (end == pl)
        return -1;
    unsigned __int128 v = 0;
    for (size_t i = pl; i < end; i++) {
        char ch = r->target[i];
        if (ch < '0' || ch > '9')
            return -1;
        v = v * 10 + (unsigned)(ch - '0');
        if (v > HTTP_BYTES_MAX)
            return -1;
    }
    *n = (uint64_t)v;
    return 1;
}

/* ---- the model ---------------------------------------------------------- */

#define M_LINES 200
#define M_LEADING_MAX 4 /* RFC 9112 2.2: a few empty lines before a request */

typedef struct mline {
    size_t s, e;   /* content, without the "\r\n" or "\n" */
    bool cr;       /* a CR inside it: never allowed */
} mline;

typedef struct mhead {
    enum http_status st;
    unsigned codes;  /* ERR: bit per code that applies (see code_bit) */
    size_t consumed, target, target_len;
    int minor;
    bool keep_alive;
} mhead;

static unsigned code_bit(int code)
{
    switch (code) {
    case 400: return 1;
    case 405: return 2;
    case 414: return 4;
    case 431: return 8;
    case 501: return 16;
    case 505: return 32;
    default: return 64;
    }
}

static bool m_tchar(unsigned char c) { return c > 0x20 && c < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", c); }

/* A comma-separated list of a Connection field: does it name tok? */
static bool m_token_in(const char *v, size_t n, const char *tok)
{
    /* Each comma-separated element, OWS trimmed at both ends, compared
     * whole: found by bounds in v, not copied (a fixed copy once cut a long
     * element "close    ...   !" to "close" plus blanks: a false alarm). */
    size_t tl = strlen(tok);
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && v[i] != ',')
            continue;
        size_t a = start, e = i;
        while (a < e && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (e > a && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - a == tl && strncasecmp(v + a, tok, tl) == 0)
            return true;
        start = i + 1;
    }
    return false;
}

static void m_field(const char *b, const mline *ln, mhead *m, int *hosts, int *lengths, bool *close, bool *ka)
{
    const char *l = b + ln->s;
    size_t n = ln->e - ln->s;
    const char *colon = memchr(l, ':', n);
    size_t c = colon ? (size_t)(colon - l) : n;
    bool name_ok = c > 0 && colon;
    for (size_t i = 0; i < c && name_ok; i++)
        name_ok = m_tchar((unsigned char)l[i]); /* also: no space before ':', no folding */
    if (!name_ok) {
        m->codes |= code_bit(400);
        return;
    }
    size_t v = c + 1, ve = n;
    while (v < ve && (l[v] == ' ' || l[v] == '\t'))
        v++;
    while (ve > v && (l[ve - 1] == ' ' || l[ve - 1] == '\t'))
        ve--;
    for (size_t i = v; i < ve; i++)
        if (((unsigned char)l[i] < 0x20 && l[i] != '\t') || l[i] == 0x7f)
            m->codes |= code_bit(400);
    const char *val = l + v;
    size_t vn = ve - v;
    if (c == 4 && strncasecmp(l, "host", 4) == 0)
        (*hosts)++;
    else if (c == 10 && strncasecmp(l, "connection", 10) == 0) {
        *close |= m_token_in(val, vn, "close");
        *ka |= m_token_in(val, vn, "keep-alive");
    } else if (c == 14 && strncasecmp(l, "content-length", 14) == 0) {
        bool zero = vn > 0;
        for (size_t i = 0; i < vn; i++)
            zero &= val[i] == '0';
        if (!zero || ++*lengths > 1)
            m->codes |= code_bit(400); /* a GET carries no body */
    } else if (c == 17 && strncasecmp(l, "transfer-encoding", 17) == 0) {
        m->codes |= code_bit(501);
    }
}

/* The model's verdict on buf[0, len); false: it does not judge this input
 * (an incomplete head with errors that show early, or one past the caps). */
static bool model_head(const char *b, size_t len, mhead *m)
{
    static mline ln[M_LINES];
    size_t nl = 0, pos = 0;
    while (pos < len && nl < M_LINES) {
        const char *e = memchr(b + pos, '\n', len - pos);
        if (!e)
            break;
        size_t end = (size_t)(e - b);
        ln[nl].s = pos;
        ln[nl].e = end > pos && b[end - 1] == '\r' ? end - 1 : end;
        ln[nl].cr = memchr(b + pos, '\r', ln[nl].e - pos) != NULL;
        nl++;
        pos = end + 1;
    }
    if (nl == M_LINES)
        return false;
    *m = (mhead){.st = HTTP_ERR};
    size_t first = 0;
    while (first < nl && ln[first].e == ln[first].s && !ln[first].cr)
        first++;
    if (first > M_LEADING_MAX || (first < nl && first > 0 && ln[first].cr && ln[first].e == ln[first].s))
        return false;
    size_t end = first + 1;
    while (end < nl && ln[end].e != ln[end].s)
        end++;
    if (first >= nl || end >= nl) {
        /* incomplete: judged only when small and nothing in it is wrong yet */
        if (len - (first < nl ? ln[first].s : pos) > 512 || first > 0 || memchr(b, '\r', len))
            return false;
        m->st = HTTP_NEED_MORE;
        return false; /* (a prefix check elsewhere covers "need more") */
    }
    size_t start = ln[first].s, head_end = ln[end].e + (b[ln[end].e] == '\r' ? 2 : 1);
    for (size_t i = first; i <= end; i++)
        if (ln[i].cr)
            m->codes |= code_bit(400);
    if (ln[first].e - start > HTTP_HEAD_MAX)
        m->codes |= code_bit(414);
    if (head_end - start > HTTP_HEAD_MAX || end - first - 1 > HTTP_HEADERS_MAX)
        m->codes |= code_bit(431);
    /* the request line: three parts split by single spaces */
    const char *rl = b + start;
    size_t rn = ln[first].e - start;
    const char *sp1 = memchr(rl, ' ', rn);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', rn - (size_t)(sp1 + 1 - rl)) : NULL;
    if (!sp1 || !sp2) {
        m->codes |= code_bit(400);
    } else {
        size_t ml = (size_t)(sp1 - rl), tl = (size_t)(sp2 - sp1 - 1), vl = rn - (size_t)(sp2 + 1 - rl);
        const char *v = sp2 + 1;
        bool method_ok = ml > 0, target_ok = tl > 0 && sp1[1] == '/';
        for (size_t i = 0; i < ml; i++)
            method_ok &= m_tchar((unsigned char)rl[i]);
        for (size_t i = 0; i < tl; i++)
            target_ok &= sp1[1 + i] > 0x20 && sp1[1 + i] < 0x7f;
        int maj = -1, min = -1;
        if (vl == 8 && memcmp(v, "HTTP/", 5) == 0 && v[6] == '.' && v[5] >= '0' && v[5] <= '9' && v[7] >= '0' &&
            v[7] <= '9') {
            maj = v[5] - '0';
            min = v[7] - '0';
        }
        if (!method_ok || !target_ok || maj < 0)
            m->codes |= code_bit(400);
        else if (maj != 1 || min > 1)
            m->codes |= code_bit(505);
        else if (ml != 3 || memcmp(rl, "GET", 3) != 0)
            m->codes |= code_bit(405);
        m->target = (size_t)(sp1 + 1 - b);
        m->target_len = tl;
        m->minor = min;
    }
    int hosts = 0, lengths = 0;
    bool close = false, ka = false;
    for (size_t i = first + 1; i < end; i++)
        m_field(b, &ln[i], m, &hosts, &lengths, &close, &ka);
    if (m->minor == 1 && hosts != 1)
        m->codes |= code_bit(400);
    if (m->codes)
        return true;
    m->st = HTTP_OK;
    m->consumed = head_end;
    m->keep_alive = !close && (m->minor == 1 || ka);
    return true;
}

static void check_model(const char *b, size_t len, enum http_status st, const struct http_request *r)
{
    mhead m;
    if (!model_head(b, len, &m))
        return;
    if (m.st == HTTP_OK) {
        FZ_CHECK(st == HTTP_OK, "model: a valid head of %zu bytes; parser: status %d code %d", m.consumed, (int)st,
                 r->code);
        FZ_CHECK(r->consumed == m.consumed && (size_t)(r->target - b) == m.target && r->target_len == m.target_len &&
                     r->minor == m.minor && r->keep_alive == m.keep_alive,
                 "model: head %zu target %zu+%zu 1.%d keep-alive %d; parser: %zu %zu+%zu 1.%d %d", m.consumed,
                 m.target, m.target_len, m.minor, m.keep_alive, r->consumed, (size_t)(r->target - b),
                 r->target_len, r->minor, r->keep_alive);
        return;
    }
    FZ_CHECK(st == HTTP_ERR && (code_bit(r->code) & m.codes),
             "model: errors (code bits 0x%x); parser: status %d code %d", m.codes, (int)st, r->code);
}

static bool parse_step(const char *b, size_t len, bool checked, size_t *consumed)
{
    struct http_request r;
    enum http_status st = checked ? parse_checked(b, len, &r) : http_parse(b, len, &r);
    if (!(st == HTTP_OK))
        return false;
    *consumed = r.consumed; /* set only with a request */
    return true;
}

static void check_input(const char *b, size_t len)
{
    struct http_request r, r2;
    enum http_status st = parse_checked(b, len, &r);
    check_model(b, len, st, &r);
    if (st == HTTP_OK) {
        FZ_CHECK(parse_checked(b, r.consumed, &r2) == HTTP_OK && r2.consumed == r.consumed &&
                     r2.target == r.target && r2.target_len == r.target_len && r2.minor == r.minor &&
                     r2.keep_alive == r.keep_alive,
                 "the first head alone (%zu bytes) parses differently", r.consumed);
        size_t cut = r.consumed - 1 - (len ? (size_t)(unsigned char)b[len - 1] : 0) % r.consumed;
        FZ_CHECK(parse_checked(b, cut, &r2) != HTTP_OK, "a %zu-byte prefix of a %zu-byte head is a request", cut,
                 r.consumed);
        uint64_t n = 0, m = 0;
        int got = http_bytes_target(&r, &n), want = bytes_model(&r, &m);
        FZ_CHECK(got == want && (got != 1 || n == m), "http_bytes_target %d (%llu), model %d (%llu)", got,
                 (unsigned long long)n, want, (unsigned long long)m);
    }
    fz_parse_loop(b, len, 32, parse_step);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_input((const char *)data, size);
    return 0;
}
