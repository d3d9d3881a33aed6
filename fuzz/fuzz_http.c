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
 *  - a server-style loop over pipelined input progresses.
 */
#include "../tools/testsrv/http.h"
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

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
