/*
 * fuzz_resp: the test server's Redis-protocol parser (tools/testsrv/resp.h).
 *
 * No full model here (RESP has two syntaxes and many error paths); instead
 * properties that any correct parser of one request at a time must have:
 *  - it reads nothing past len (each call gets an exact-size heap copy);
 *  - RESP_OK: 0 < consumed <= len, 0 <= argc <= RESP_ARGS_MAX, every argv
 *    inside the consumed bytes, RESP_CMD_EMPTY exactly when argc is 0;
 *    RESP_ERR: an error text;
 *  - the answer depends on the first request only: the same for
 *    buf[0, consumed) as for all of buf, and every shorter prefix is
 *    NEED_MORE or an error (never a different request);
 *  - round trip: a parsed request re-encoded as a multibulk parses back to
 *    the same arguments and consumes exactly the encoding;
 *  - a server-style loop over the input (parse, drop, again) progresses.
 */
#include "../tools/testsrv/resp.h"
#include "fuzz_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *status_name(enum resp_status s)
{
    return s == RESP_OK ? "OK" : s == RESP_NEED_MORE ? "NEED_MORE" : "ERR";
}

/* Parses an exact-size copy and checks the fields its status promises.
 * out's pointers are rebased onto b so callers can compare them. */
static enum resp_status parse_checked(const char *b, size_t len, struct resp_request *out)
{
    char *copy = malloc(len ? len : 1);
    FZ_CHECK(copy != NULL, "out of memory");
    memcpy(copy, b, len);
    memset(out, 0xa5, sizeof *out);
    enum resp_status st = resp_parse(copy, len, out);
    FZ_CHECK(st == RESP_OK || st == RESP_NEED_MORE || st == RESP_ERR, "len %zu: status %d", len, (int)st);
    if (st == RESP_ERR)
        FZ_CHECK(out->error != NULL && strlen(out->error) > 0, "len %zu: ERR without a text", len);
    if (st == RESP_OK) {
        FZ_CHECK(out->consumed > 0 && out->consumed <= len, "len %zu: consumed %zu", len, out->consumed);
        FZ_CHECK(out->argc >= 0 && out->argc <= RESP_ARGS_MAX, "argc %d", out->argc);
        for (int i = 0; i < out->argc; i++) {
            FZ_CHECK(out->argv[i] >= copy && out->argl[i] <= out->consumed &&
                         (size_t)(out->argv[i] - copy) <= out->consumed - out->argl[i],
                     "argv[%d] (%zu bytes) outside the %zu consumed bytes", i, out->argl[i], out->consumed);
            out->argv[i] = b + (out->argv[i] - copy); /* rebase before the copy goes */
        }
        FZ_CHECK((resp_command(out) == RESP_CMD_EMPTY) == (out->argc == 0),
                 "argc %d but command %d", out->argc, (int)resp_command(out));
    }
    free(copy);
    return st;
}

static bool same_args(const struct resp_request *a, const struct resp_request *b)
{
    if (a->argc != b->argc)
        return false;
    for (int i = 0; i < a->argc; i++)
        if (a->argl[i] != b->argl[i] || memcmp(a->argv[i], b->argv[i], a->argl[i]) != 0)
            return false;
    return true;
}

/* "*argc\r\n" then "$len\r\n<bytes>\r\n" per argument. */
static void round_trip(const struct resp_request *r)
{
    if (r->argc == 0)
        return; /* "*0" and an empty line are both EMPTY: nothing to compare */
    size_t cap = 32;
    for (int i = 0; i < r->argc; i++)
        cap += r->argl[i] + 32;
    char *enc = malloc(cap);
    FZ_CHECK(enc != NULL, "out of memory");
    size_t n = (size_t)snprintf(enc, cap, "*%d\r\n", r->argc);
    for (int i = 0; i < r->argc; i++) {
        n += (size_t)snprintf(enc + n, cap - n, "$%zu\r\n", r->argl[i]);
        memcpy(enc + n, r->argv[i], r->argl[i]);
        n += r->argl[i];
        enc[n++] = '\r'; /* binary framing, not a C string */
        enc[n++] = '\n';
    }
    struct resp_request back;
    enum resp_status st = parse_checked(enc, n, &back);
    FZ_CHECK(st == RESP_OK && back.consumed == n, "re-encoded request (%zu bytes): %s, consumed %zu", n,
             status_name(st), st == RESP_OK ? back.consumed : 0);
    FZ_CHECK(same_args(r, &back), "re-encoded request parses to other arguments");
    free(enc);
}

static bool parse_step(const char *b, size_t len, bool checked, size_t *consumed)
{
    struct resp_request r;
    enum resp_status st = checked ? parse_checked(b, len, &r) : resp_parse(b, len, &r);
    if (!(st == RESP_OK))
        return false;
    *consumed = r.consumed; /* set only with a request */
    return true;
}

static void check_input(const char *b, size_t len)
{
    struct resp_request r, r2;
    enum resp_status st = parse_checked(b, len, &r);
    if (st == RESP_OK) {
        FZ_CHECK(parse_checked(b, r.consumed, &r2) == RESP_OK && r2.consumed == r.consumed && same_args(&r, &r2),
                 "the first request alone (%zu bytes) parses differently", r.consumed);
        size_t cut = r.consumed - 1 - (len ? (size_t)(unsigned char)b[len - 1] : 0) % r.consumed;
        enum resp_status p = parse_checked(b, cut, &r2);
        FZ_CHECK(p != RESP_OK, "a %zu-byte prefix of a %zu-byte request is a request of %zu bytes", cut,
                 r.consumed, r2.consumed);
        round_trip(&r);
    }
    fz_parse_loop(b, len, 32, parse_step);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_input((const char *)data, size);
    return 0;
}
