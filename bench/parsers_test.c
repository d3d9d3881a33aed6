/* parsers_test: unit tests of the test server's resp and http parsers
 * (tools/testsrv/resp.c, http.c), run by `make parsers-test` under ASan and
 * UBSan. Fixed cases (what redis-benchmark, wrk and curl send, and each
 * error), then properties: every proper prefix of a valid request is "need
 * more", a pipelined stream parses to the same requests whole or fed byte by
 * byte, and random bytes never break the parsers' bounds. */
#include "../tools/testsrv/http.h"
#include "../tools/testsrv/resp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks, failures;

#define CHECK(cond)                                                      \
    do {                                                                 \
        checks++;                                                        \
        if (!(cond)) {                                                   \
            failures++;                                                  \
            (void)fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                \
    } while (0)

#define S(lit) lit, sizeof(lit) - 1

static bool arg_is(const struct resp_request *r, int i, const char *s)
{
    return i < r->argc && r->argl[i] == strlen(s) && memcmp(r->argv[i], s, r->argl[i]) == 0;
}

/* Parses buf whole; expects RESP_OK consuming all of it. */
static struct resp_request resp_one(const char *buf, size_t len)
{
    struct resp_request r;
    CHECK(resp_parse(buf, len, &r) == RESP_OK);
    CHECK(r.consumed == len);
    return r;
}

static void resp_prefixes_need_more(const char *buf, size_t len)
{
    struct resp_request r;
    for (size_t n = 0; n < len; n++)
        CHECK(resp_parse(buf, n, &r) == RESP_NEED_MORE);
}

static void test_resp_fixed(void)
{
    struct resp_request r = resp_one(S("PING\r\n"));
    CHECK(resp_command(&r) == RESP_CMD_PING && r.argc == 1);
    r = resp_one(S("PING\n"));
    CHECK(resp_command(&r) == RESP_CMD_PING);
    r = resp_one(S("ping  hello\t world\r\n"));
    CHECK(resp_command(&r) == RESP_CMD_PING && r.argc == 3 && arg_is(&r, 1, "hello") &&
          arg_is(&r, 2, "world"));
    r = resp_one(S("*1\r\n$4\r\nPING\r\n")); /* redis-benchmark ping_mbulk */
    CHECK(resp_command(&r) == RESP_CMD_PING && r.argc == 1);
    r = resp_one(S("*2\r\n$4\r\nEcHo\r\n$5\r\nhello\r\n"));
    CHECK(resp_command(&r) == RESP_CMD_ECHO && arg_is(&r, 1, "hello"));
    r = resp_one(S("*2\r\n$4\r\nECHO\r\n$4\r\na\r\nb\r\n")); /* binary-safe */
    CHECK(arg_is(&r, 1, "a\r\nb"));
    r = resp_one(S("*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"));
    CHECK(r.argc == 2 && r.argl[1] == 0);
    r = resp_one(S("\r\n"));
    CHECK(resp_command(&r) == RESP_CMD_EMPTY);
    r = resp_one(S("*0\r\n"));
    CHECK(resp_command(&r) == RESP_CMD_EMPTY);
    r = resp_one(S("*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nsave\r\n"));
    CHECK(resp_command(&r) == RESP_CMD_UNKNOWN);
    r = resp_one(S("PINGX\r\n"));
    CHECK(resp_command(&r) == RESP_CMD_UNKNOWN);

    resp_prefixes_need_more(S("*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n"));
    resp_prefixes_need_more(S("PING hello\r\n"));

    /* Pipelined: one request at a time, in order. */
    const char pipe[] = "PING\r\n*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nEC";
    size_t off = 0, len = sizeof pipe - 1;
    CHECK(resp_parse(pipe + off, len - off, &r) == RESP_OK && r.consumed == 6);
    off += r.consumed;
    CHECK(resp_parse(pipe + off, len - off, &r) == RESP_OK && r.consumed == 14);
    off += r.consumed;
    CHECK(resp_parse(pipe + off, len - off, &r) == RESP_OK && arg_is(&r, 1, "hi"));
    off += r.consumed;
    CHECK(resp_parse(pipe + off, len - off, &r) == RESP_NEED_MORE);

    /* Protocol errors: reply, then close. */
    const char *bad[] = {
        "*x\r\n", "*1\r\nX", "*1\r\n$-1\r\n", "*1\r\n$4\r\nPINGxx", "*17\r\n",
        "*1\r\n$99999999999\r\n", "*1\rx", "*1\r\n$4\rx", "*1\r\n$\r\n", "*-\r\n",
        "*1\r\n$524289\r\n", "*123456789012345678901234567890",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r.error = NULL;
        CHECK(resp_parse(bad[i], strlen(bad[i]), &r) == RESP_ERR && r.error != NULL);
    }
    /* 17 inline arguments: one too many. */
    r.error = NULL;
    CHECK(resp_parse(S("a b c d e f g h i j k l m n o p q\r\n"), &r) == RESP_ERR && r.error);
    /* An inline line at the cap is fine; one byte more is not. */
    size_t big = RESP_INLINE_MAX + 2;
    char *line = malloc(big);
    if (!line)
        abort();
    memset(line, 'a', big);
    line[RESP_INLINE_MAX] = '\n';
    CHECK(resp_parse(line, RESP_INLINE_MAX + 1, &r) == RESP_OK && r.argl[0] == RESP_INLINE_MAX);
    CHECK(resp_parse(line, RESP_INLINE_MAX, &r) == RESP_NEED_MORE);
    line[RESP_INLINE_MAX] = 'a';
    CHECK(resp_parse(line, RESP_INLINE_MAX + 1, &r) == RESP_ERR);
    free(line);
}

static struct http_request http_one(const char *buf, size_t len)
{
    struct http_request h;
    CHECK(http_parse(buf, len, &h) == HTTP_OK);
    CHECK(h.consumed == len);
    return h;
}

static int http_code(const char *buf, size_t len)
{
    struct http_request h;
    return http_parse(buf, len, &h) == HTTP_ERR ? h.code : 0;
}

static void test_http_fixed(void)
{
    /* What wrk sends. */
    const char wrk[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
    struct http_request h = http_one(S(wrk));
    CHECK(h.keep_alive && h.minor == 1 && h.target_len == 1 && h.target[0] == '/');
    struct http_request p;
    for (size_t n = 0; n < sizeof wrk - 1; n++)
        CHECK(http_parse(wrk, n, &p) == HTTP_NEED_MORE);

    h = http_one(S("GET /x HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n"));
    CHECK(!h.keep_alive);
    h = http_one(S("GET /x HTTP/1.0\r\n\r\n"));
    CHECK(!h.keep_alive && h.minor == 0);
    h = http_one(S("GET /x HTTP/1.0\r\nConnection: foo, Keep-Alive\r\n\r\n"));
    CHECK(h.keep_alive);
    h = http_one(S("GET / HTTP/1.1\nHost: a\n\n")); /* bare LF lines */
    CHECK(h.keep_alive);
    h = http_one(S("\r\nGET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nX-A:\r\n\r\n"));
    CHECK(h.target_len == 1);

    /* Pipelined. */
    const char two[] = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /bytes/5 HTTP/1.1\r\nHost: a\r\n\r\nGE";
    size_t off = 0, len = sizeof two - 1;
    uint64_t n = 0;
    CHECK(http_parse(two, len, &h) == HTTP_OK && h.target_len == 2 && http_bytes_target(&h, &n) == 0);
    off += h.consumed;
    CHECK(http_parse(two + off, len - off, &h) == HTTP_OK && http_bytes_target(&h, &n) == 1 && n == 5);
    off += h.consumed;
    CHECK(http_parse(two + off, len - off, &h) == HTTP_NEED_MORE);

    CHECK(http_code(S("POST / HTTP/1.1\r\n")) == 405);
    CHECK(http_code(S("get / HTTP/1.1\r\nHost: a\r\n\r\n")) == 405);
    CHECK(http_code(S("GET / HTTP/2.0\r\n")) == 505);
    CHECK(http_code(S("GET / HTTP/1.1\r\n\r\n")) == 400); /* no Host */
    CHECK(http_code(S("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")) == 400);
    CHECK(http_code(S("GET / HTTP/1.1\r\nHost : a\r\n\r\n")) == 400);
    CHECK(http_code(S("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n")) == 400);
    CHECK(http_code(S("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n")) == 400);
    CHECK(http_code(S("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n")) == 400);
    CHECK(http_code(S("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")) == 501);
    CHECK(http_code(S("GET / HTTP/1.1\r\nHo\rst: a\r\n\r\n")) == 400);
    CHECK(http_code(S("GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n")) == 400);
    CHECK(http_code(S("\x16\x03\x01\x02")) == 400); /* a TLS hello: at once */
    CHECK(http_code(S("GET  / HTTP/1.1\r\n")) == 400);
    CHECK(http_code(S("GET http://a/ HTTP/1.1\r\n")) == 400);
    CHECK(http_code(S("GET / HTTP/1.1 \r\n")) == 400);
    CHECK(http_code(S("GET / XTTP/1.1\r\n")) == 400);
    CHECK(http_code(S("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n")) == 400);

    /* Caps: a request line, a head, a field count. */
    size_t big = HTTP_HEAD_MAX + 64;
    char *buf = malloc(big);
    if (!buf)
        abort();
    memset(buf, 'a', big);
    memcpy(buf, "GET /", 5); // NOLINT(bugprone-not-null-terminated-result): not a string
    CHECK(http_code(buf, HTTP_HEAD_MAX + 1) == 414);
    CHECK(http_parse(buf, HTTP_HEAD_MAX, &h) == HTTP_NEED_MORE);
    int k = snprintf(buf, big, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(buf + k, 'b', big - (size_t)k);
    CHECK(http_code(buf, HTTP_HEAD_MAX + 1) == 431);
    char *many = malloc((size_t)16 * (HTTP_HEADERS_MAX + 2));
    if (!many)
        abort();
    int m = sprintf(many, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < HTTP_HEADERS_MAX; i++)
        m += sprintf(many + m, "X%d: y\r\n", i);
    m += sprintf(many + m, "\r\n");
    CHECK(http_code(many, (size_t)m) == 431);
    free(many);
    free(buf);

    /* /bytes/<n> */
    struct { const char *t; int want; uint64_t n; } bt[] = {
        {"/bytes/100", 1, 100}, {"/bytes/0?x=1", 1, 0}, {"/bytes/", -1, 0},
        {"/bytes/abc", -1, 0}, {"/bytes/9223372036854775807", 1, UINT64_C(9223372036854775807)},
        {"/bytes/9223372036854775808", -1, 0}, {"/bytesx/1", 0, 0}, {"/", 0, 0},
    };
    for (size_t i = 0; i < sizeof bt / sizeof bt[0]; i++) {
        struct http_request r = {.target = bt[i].t, .target_len = strlen(bt[i].t)};
        uint64_t v = 12345;
        int got = http_bytes_target(&r, &v);
        CHECK(got == bt[i].want && (got != 1 || v == bt[i].n));
    }
    CHECK(strcmp(http_reason(431), "Request Header Fields Too Large") == 0);
}

/* A stream of pipelined requests parses the same whole or grown byte by
 * byte, the way a server sees it arrive in pieces. */
static void test_split_feed(void)
{
    const char rs[] = "PING\r\n*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\n\r\nECHO x y\n*1\r\n$4\r\nPING\r\n";
    size_t len = sizeof rs - 1, off = 0, grown = 0, count = 0;
    while (off < len) {
        struct resp_request r;
        enum resp_status st;
        while ((st = resp_parse(rs + off, grown - off, &r)) == RESP_NEED_MORE && grown < len)
            grown++;
        CHECK(st == RESP_OK);
        if (st != RESP_OK)
            return;
        struct resp_request whole;
        CHECK(resp_parse(rs + off, len - off, &whole) == RESP_OK && whole.consumed == r.consumed &&
              whole.argc == r.argc);
        off += r.consumed;
        CHECK(grown == off); /* complete exactly when its last byte arrived */
        count++;
    }
    CHECK(count == 5);

    const char hs[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.0\r\n\r\n"
                      "GET /bytes/7 HTTP/1.1\nHost: y\nConnection: close\n\n";
    len = sizeof hs - 1, off = 0, grown = 0, count = 0;
    while (off < len) {
        struct http_request h;
        enum http_status st;
        while ((st = http_parse(hs + off, grown - off, &h)) == HTTP_NEED_MORE && grown < len)
            grown++;
        CHECK(st == HTTP_OK);
        if (st != HTTP_OK)
            return;
        off += h.consumed;
        CHECK(grown == off);
        count++;
    }
    CHECK(count == 3);
}

/* Random bytes, and valid requests with random bytes flipped: whatever the
 * verdict, the parsers stay in bounds (ASan watches) and say consistent
 * things. */
static void test_random(void)
{
    unsigned seed = 12345;
    char buf[512];
    const char *seeds[] = {"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n", "PING a b\r\n",
                           "GET /bytes/10 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"};
    for (int iter = 0; iter < 200000; iter++) {
        size_t len;
        if (iter % 2) {
            const char *s = seeds[(unsigned)iter % 3];
            len = strlen(s);
            memcpy(buf, s, len);
            seed = seed * 1103515245u + 12345u;
            buf[(seed >> 8) % len] = (char)(seed >> 20);
        } else {
            seed = seed * 1103515245u + 12345u;
            len = (seed >> 16) % sizeof buf;
            for (size_t i = 0; i < len; i++) {
                seed = seed * 1103515245u + 12345u;
                buf[i] = "*$\r\n0123 PINGECHOGET/HTTP1.:Host"[(seed >> 16) % 31];
            }
        }
        /* A heap copy of exactly len bytes: any read past it is caught. */
        char *p = malloc(len ? len : 1);
        memcpy(p, buf, len);
        struct resp_request r;
        enum resp_status rs = resp_parse(p, len, &r);
        if (rs == RESP_OK) {
            CHECK(r.consumed > 0 && r.consumed <= len && r.argc <= RESP_ARGS_MAX);
            for (int i = 0; i < r.argc; i++)
                CHECK(r.argv[i] >= p && r.argv[i] + r.argl[i] <= p + r.consumed);
        }
        struct http_request h;
        enum http_status hst = http_parse(p, len, &h);
        if (hst == HTTP_OK)
            CHECK(h.consumed > 0 && h.consumed <= len && h.target >= p &&
                  h.target + h.target_len <= p + h.consumed);
        if (hst == HTTP_ERR)
            CHECK(h.code >= 400 && h.code <= 505);
        free(p);
    }
}

int main(void)
{
    test_resp_fixed();
    test_http_fixed();
    test_split_feed();
    test_random();
    (void)printf("parsers-test: %d checks, %d failed: %s\n", checks, failures, failures ? "FAIL" : "PASS");
    return failures ? 1 : 0;
}
