/*
 * http.h: the test server's HTTP/1.1 request parser (docs/PROTOCOL.md §6, --mode http).
 *
 * A pure function: bytes in, one parsed request head (or "need more", or an
 * error with the status code to answer) out. No I/O, no globals, no
 * allocation: a fuzzer can drive it directly. Enough for wrk, curl and
 * slowhttptest: GET only, keep-alive and pipelining, no request bodies.
 * Strict where leniency lets requests be misread (RFC 9112): whitespace
 * before a header's colon, folded header lines, a bare CR, a body on a GET,
 * an HTTP/1.1 request without exactly one Host are all errors.
 */
#ifndef TESTSRV_HTTP_H
#define TESTSRV_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_HEAD_MAX    8192 /* request line + headers + the empty line */
#define HTTP_HEADERS_MAX 64   /* header fields per request */
#define HTTP_BYTES_MAX   UINT64_C(0x7fffffffffffffff) /* GET /bytes/<n>: n < 2^63 */

enum http_status {
    HTTP_OK,        /* *out holds a request; out->consumed bytes used */
    HTTP_NEED_MORE, /* the head is incomplete: call again with more bytes */
    HTTP_ERR,       /* answer out->code (http_reason), then close */
};

struct http_request {
    size_t consumed;  /* bytes of the head (leading empty lines included) */
    const char *target; /* the request-target, e.g. "/bytes/100?x": points into the input */
    size_t target_len;
    int minor;        /* HTTP/1.<minor>: 0 or 1 */
    bool keep_alive;  /* 1.1 unless "Connection: close"; 1.0 only with "keep-alive" */
    int code;         /* HTTP_ERR: 400, 405, 414, 431, 501 or 505 */
};

/* Parses the first request head in buf[0..len). Errors that the first bytes
 * already show (a method that is not a token, a request line or head past
 * its cap) are reported without waiting for the rest. */
enum http_status http_parse(const char *buf, size_t len, struct http_request *out);

/* For "GET /bytes/<n>" (a query after it allowed): 1 with *n set; -1 when
 * the path is /bytes/ but <n> is not a decimal below 2^63 (answer 400); 0
 * for any other path. */
int http_bytes_target(const struct http_request *r, uint64_t *n);

/* "Bad Request" for 400, and so on; "Error" for a code it does not know. */
const char *http_reason(int code);

#endif
