/* SPDX-License-Identifier: MIT */
/*
 * test_http1.c - HTTP/1.1 as pure code (common/http1.c): the request bytes
 * the nginx module's native transport sends, and the answer parser that
 * must give the outcome libcurl 7.88 with curl.c and curl_error.c gives
 * for the same bytes (the fault matrix, SECURITY.md section 6).
 *
 * The answers are data: one case = the bytes, the limits, whether the
 * server then closes, and what must come out.  Each case is fed whole, one
 * byte at a time, and split in two at every point (at many points for the
 * large ones): every way must give the same outcome, as a transport reads
 * whatever the network hands it.  Each test is named by what it protects.
 */
#include "tokengate.h"
#include "tg_curl.h"
#include "tg_http1.h"
#include "tg_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tg_test.h"

/* One limit for every front end. */
_Static_assert(TG__HTTP1_HEADER_BYTES_MAX == TG__CURL_HEADER_BYTES_MAX,
               "the header byte caps of http1.c and curl.c differ");
_Static_assert(TG__HTTP1_HEADER_LINES_MAX == TG__CURL_HEADER_LINES_MAX,
               "the header line caps of http1.c and curl.c differ");

/* Inputs up to this size are split at every point; larger ones at a
 * sample of points (every point of 32 KiB is 10^9 parsed bytes). */
#define SPLIT_ALL_MAX 4096
#define SPLIT_SAMPLES 64
/* Room for one outcome's body, and for the generated inputs. */
#define BODY_MAX_TEST 65536

#define UA "User-Agent: tokengate/" PACKAGE_VERSION "\r\n"

/* What one parse gave: compared across the ways of feeding it. */
typedef struct outcome {
    tg_err_t err;
    char message[sizeof(((tg_diag_t *) 0)->message)];
    int done, keepalive, received, status_seen;
    size_t used;
    long status;
    int has_type;
    char type[TG__HTTP1_CONTENT_TYPE_MAX + 1];
    size_t body_len;
    char body[BODY_MAX_TEST];
    long retry_after;
    time_t server_date;
} outcome_t;

/* One answer and what must come of it. */
typedef struct hcase {
    const char *name;
    const char *raw;
    size_t raw_len;  /* 0: strlen(raw) */
    size_t body_max; /* 0: 65536 */
    int want_date;
    int eof; /* the server closes after the bytes */
    tg_err_t err;
    const char *says; /* in the message (or NULL) */
    long status;      /* on TG_OK */
    const char *type; /* on TG_OK: NULL absent */
    const char *body; /* on TG_OK: NULL empty */
    int keepalive;    /* on TG_OK */
    long used;        /* -1: all of raw */
} hcase_t;

#define OK200(h) "HTTP/1.1 200 OK\r\n" h
#define MALFORMED(n, raw)                                                      \
    {                                                                          \
        n, raw, 0, 0, 0, 1, TG_PROTOCOL, "malformed answer", 0, NULL, NULL, 0, \
            -1                                                                 \
    }

static const hcase_t cases[] = {
    /* Complete answers and whether the connection stays. */
    {"length-delimited, kept", OK200("Content-Length: 2\r\n\r\n{}"), 0, 0, 0, 0,
     TG_OK, NULL, 200, NULL, "{}", 1, -1},
    {"a validate answer",
     OK200("Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
           "Content-Type:  application/json; "
           "charset=utf-8 \t\r\nConnection: keep-alive\r\n"
           "Content-Length: 11\r\n\r\n{\"uid\":\"a\"}"),
     0, 0, 1, 0, TG_OK, NULL, 200, "application/json; charset=utf-8",
     "{\"uid\":\"a\"}", 1, -1},
    {"bare LF line ends", "HTTP/1.1 200 OK\nContent-Length: 2\n\n{}", 0, 0, 0,
     0, TG_OK, NULL, 200, NULL, "{}", 1, -1},
    {"header names in any case",
     OK200("content-TYPE: text/plain\r\nCONTENT-length: 1\r\n\r\nx"), 0, 0, 0,
     0, TG_OK, NULL, 200, "text/plain", "x", 1, -1},
    {"an empty Content-Type is there",
     OK200("Content-Type:\r\n"
           "Content-Length: 0\r\n\r\n"),
     0, 0, 0, 0, TG_OK, NULL, 200, "", NULL, 1, -1},
    {"a status line without a reason",
     "HTTP/1.1 503\r\nContent-Length: 0\r\n"
     "\r\n",
     0, 0, 0, 0, TG_OK, NULL, 503, NULL, NULL, 1, -1},
    {"a status code above 599", "HTTP/1.1 600 X\r\nContent-Length: 0\r\n\r\n",
     0, 0, 0, 0, TG_OK, NULL, 600, NULL, NULL, 1, -1},
    {"chunked with extensions and trailers",
     OK200("Transfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;a=b\r\npedia\r\n"
           "0\r\nX-Trailer: 1\r\n\r\n"),
     0, 0, 0, 0, TG_OK, NULL, 200, NULL, "Wikipedia", 1, -1},
    {"chunked, upper-case hex, bare LFs",
     OK200("Transfer-Encoding: Chunked\r\n\r\nA\nabcdefghij\n0\n\n"), 0, 0, 0,
     0, TG_OK, NULL, 200, NULL, "abcdefghij", 1, -1},
    {"chunked and a length: chunked, not kept",
     OK200("Content-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
           "2\r\n{}\r\n0\r\n\r\n"),
     0, 0, 0, 0, TG_OK, NULL, 200, NULL, "{}", 0, -1},
    {"delimited by the close, not kept", OK200("Content-Type: a/b\r\n\r\n{}"),
     0, 0, 0, 1, TG_OK, NULL, 200, "a/b", "{}", 0, -1},
    {"nothing after the head, closed: an empty body", OK200("\r\n"), 0, 0, 0, 1,
     TG_OK, NULL, 200, NULL, NULL, 0, -1},
    {"HTTP/1.0 closes by default",
     "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", 0, 0, 0, 0, TG_OK, NULL,
     200, NULL, "{}", 0, -1},
    {"HTTP/1.0 with keep-alive is kept",
     "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\n{}",
     0, 0, 0, 0, TG_OK, NULL, 200, NULL, "{}", 1, -1},
    {"Connection: close in a list",
     OK200("Connection: upgrade ,  CLOSE\r\n"
           "Content-Length: 2\r\n\r\n{}"),
     0, 0, 0, 0, TG_OK, NULL, 200, NULL, "{}", 0, -1},
    {"the same Content-Length twice",
     OK200("Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}"), 0, 0, 0, 0,
     TG_OK, NULL, 200, NULL, "{}", 1, -1},
    {"bytes after the answer: stop there, not kept",
     OK200("Content-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\n"), 0, 0, 0, 0, TG_OK,
     NULL, 200, NULL, "{}", 0, 40},
    {"204 has no body, its length aside",
     "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", 0, 0, 0, 0,
     TG_OK, NULL, 204, NULL, NULL, 0, 46},
    {"204 alone is kept", "HTTP/1.1 204 No Content\r\n\r\n", 0, 0, 0, 0, TG_OK,
     NULL, 204, NULL, NULL, 1, -1},
    {"304 has no body",
     "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", 0, 0, 0, 0,
     TG_OK, NULL, 304, NULL, NULL, 1, -1},
    {"a length of 0 is complete at once", OK200("Content-Length: 0\r\n\r\n"), 0,
     0, 0, 0, TG_OK, NULL, 200, NULL, NULL, 1, -1},
    {"a long reason and an unknown long header",
     "HTTP/1.1 200 "
     "OKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOK"
     "OKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOK"
     "OKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOK"
     "OKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOK"
     "OKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOK"
     "OKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOK"
     "OKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOK"
     "OKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOKOK"
     "\r\nX-Long: "
     "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij"
     "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij"
     "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij"
     "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij"
     "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij"
     "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij"
     "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij"
     "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij"
     "\r\nContent-Length: 2\r\n\r\n{}",
     0, 0, 0, 0, TG_OK, NULL, 200, NULL, "{}", 1, -1},

    /* 1xx answers: skipped as libcurl and RFC 9110 15.2 do; 101 refused. */
    {"100 Continue, then the answer",
     "HTTP/1.1 100 Continue\r\n\r\n" OK200("Content-Length: 2\r\n\r\n{}"), 0, 0,
     0, 0, TG_OK, NULL, 200, NULL, "{}", 1, -1},
    {"102 and 103 with headers, then the answer",
     "HTTP/1.1 102 Processing\r\nContent-Type: a/b\r\nContent-Length: 5\r\n\r\n"
     "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" OK200(
         "Content-Length: 2\r\n\r\n{}"),
     0, 0, 0, 0, TG_OK, NULL, 200, NULL, "{}", 1, -1},
    {"199, then the answer",
     "HTTP/1.1 199 X\r\n\r\n" OK200("Content-Length: 2\r\n\r\n{}"), 0, 0, 0, 0,
     TG_OK, NULL, 200, NULL, "{}", 1, -1},
    {"102 then the close: closed without answering (CURLE_GOT_NOTHING)",
     "HTTP/1.1 102 Processing\r\nContent-Type: application/json\r\n\r\n", 0, 0,
     0, 1, TG_UNAVAILABLE, "without answering", 0, NULL, NULL, 0, -1},
    {"101 is refused", "HTTP/1.1 101 Switching Protocols\r\n\r\nhello", 0, 0, 0,
     1, TG_PROTOCOL, "101 Switching Protocols", 0, NULL, NULL, 0, -1},

    /* The close before, within and after the head. */
    {"closed without a byte", "", 0, 0, 0, 1, TG_UNAVAILABLE,
     "the server closed the connection without answering", 0, NULL, NULL, 0,
     -1},
    {"closed within the status line", "HTTP/1.1 20", 0, 0, 0, 1, TG_UNAVAILABLE,
     "without answering", 0, NULL, NULL, 0, -1},
    {"closed within the headers", OK200("Content-Length: 2\r\n"), 0, 0, 0, 1,
     TG_PROTOCOL, "truncated answer", 0, NULL, NULL, 0, -1},
    {"closed before the length's end", OK200("Content-Length: 100\r\n\r\n{\"u"),
     0, 0, 0, 1, TG_PROTOCOL, "truncated answer", 0, NULL, NULL, 0, -1},
    {"closed within a chunk",
     OK200("Transfer-Encoding: chunked\r\n\r\n"
           "5\r\n{}"),
     0, 0, 0, 1, TG_PROTOCOL, "truncated answer", 0, NULL, NULL, 0, -1},
    {"closed before the last chunk",
     OK200("Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n"), 0, 0, 0, 1,
     TG_PROTOCOL, "truncated answer", 0, NULL, NULL, 0, -1},
    {"closed before the trailers' end",
     OK200("Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"), 0, 0, 0, 1,
     TG_PROTOCOL, "truncated answer", 0, NULL, NULL, 0, -1},

    /* Malformed heads: what libcurl refuses, and what it lets through. */
    MALFORMED("garbage", "garbage\r\n\r\n"),
    MALFORMED("HTTP/2 on this connection", "HTTP/2 200\r\n\r\n"),
    MALFORMED("HTTP/1.2", "HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n"),
    MALFORMED("lower-case version", "http/1.1 200 OK\r\n\r\n"),
    MALFORMED("no code", "HTTP/1.1 \r\n\r\n"),
    MALFORMED("a code that is no number", "HTTP/1.1 abc\r\n\r\n"),
    MALFORMED("two digits", "HTTP/1.1 20\r\n\r\n"),
    MALFORMED("four digits", "HTTP/1.1 2000 OK\r\n\r\n"),
    MALFORMED("a code below 100", "HTTP/1.1 099 OK\r\n\r\n"),
    MALFORMED("no space after the code", "HTTP/1.1 200OK\r\n\r\n"),
    MALFORMED("a header line without ':'", OK200("NoColon\r\n\r\n")),
    MALFORMED("an empty header name", OK200(": x\r\n\r\n")),
    MALFORMED("a space before ':'", OK200("Content-Length : 2\r\n\r\n{}")),
    MALFORMED("a folded line", OK200("X-A: b\r\n c\r\nContent-Length: 0\r\n"
                                     "\r\n")),
    MALFORMED("a CR without LF", OK200("X-A: b\rc\r\n\r\n")),
    MALFORMED("a Content-Length with junk", OK200("Content-Length: 2x\r\n\r\n"
                                                  "{}")),
    MALFORMED("a negative Content-Length", OK200("Content-Length: -1\r\n\r\n")),
    MALFORMED("an empty Content-Length", OK200("Content-Length:\r\n\r\n")),
    MALFORMED("a list of lengths", OK200("Content-Length: 2, 2\r\n\r\n{}")),
    MALFORMED("two different lengths",
              OK200("Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}x")),
    MALFORMED("a Content-Length past size_t",
              OK200("Content-Length: 99999999999999999999999\r\n\r\n{}")),
    MALFORMED("a coding we cannot undo",
              OK200("Transfer-Encoding: gzip, chunked\r\n\r\n")),
    MALFORMED("chunked twice", OK200("Transfer-Encoding: chunked\r\n"
                                     "Transfer-Encoding: chunked\r\n\r\n")),
    MALFORMED("a chunk size that is no hex",
              OK200("Transfer-Encoding: chunked\r\n\r\nzz\r\n")),
    MALFORMED("a chunk size with no digit",
              OK200("Transfer-Encoding: chunked\r\n\r\n;x\r\n")),
    MALFORMED("a chunk size past size_t",
              OK200("Transfer-Encoding: chunked\r\n\r\n"
                    "100000000000000000\r\n")),
    MALFORMED("junk after a chunk's data",
              OK200("Transfer-Encoding: chunked\r\n\r\n2\r\n{}x\r\n")),
    MALFORMED("a trailer without ':'",
              OK200("Transfer-Encoding: chunked\r\n\r\n0\r\nBad\r\n\r\n")),
    {"a NUL byte in the head", "HTTP/1.1 200 OK\r\nX-A: b\0c\r\n\r\n", 29, 0, 0,
     1, TG_PROTOCOL, "NUL", 0, NULL, NULL, 0, -1},

    /* The body cap (max_response_bytes). */
    {"a length at the cap", OK200("Content-Length: 4\r\n\r\nabcd"), 0, 4, 0, 0,
     TG_OK, NULL, 200, NULL, "abcd", 1, -1},
    {"a length over the cap, before any body byte",
     OK200("Content-Length: 5\r\n\r\n"), 0, 4, 0, 0, TG_PROTOCOL,
     "response larger than max_response_bytes (4)", 0, NULL, NULL, 0, -1},
    {"chunks at the cap",
     OK200("Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n"),
     0, 4, 0, 0, TG_OK, NULL, 200, NULL, "abcd", 1, -1},
    {"chunks over the cap",
     OK200("Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n"), 0, 4,
     0, 1, TG_PROTOCOL, "response larger than max_response_bytes (4)", 0, NULL,
     NULL, 0, -1},
    {"a close-delimited body at the cap", OK200("\r\nabcd"), 0, 4, 0, 1, TG_OK,
     NULL, 200, NULL, "abcd", 0, -1},
    {"a close-delimited body over the cap", OK200("\r\nabcde"), 0, 4, 0, 1,
     TG_PROTOCOL, "response larger than max_response_bytes (4)", 0, NULL, NULL,
     0, -1},
    {"a 204's length is no body over the cap",
     "HTTP/1.1 204 No Content\r\nContent-Length: 500\r\n\r\n", 0, 4, 0, 0,
     TG_OK, NULL, 204, NULL, NULL, 1, -1},
};

/* ---------------------------------------------------------------------- */
/* Feeding                                                                */
/* ---------------------------------------------------------------------- */

/* Record what p says now (after an error, or after the last byte). */
static void
outcome_take(outcome_t *o, tg__http1_t *p, tg_err_t err, const tg_diag_t *d,
             size_t used)
{
    tg_response_t resp;

    memset(o, 0, sizeof(*o));
    o->err = err;
    snprintf(o->message, sizeof(o->message), "%s", d->message);
    o->done = tg__http1_done(p);
    o->keepalive = tg__http1_keepalive(p);
    o->received = tg__http1_received(p);
    o->status_seen = tg__http1_status_seen(p);
    o->used = used;
    if (err != TG_OK || !o->done) {
        return;
    }
    tg__http1_response(p, &resp, 300);
    o->status = resp.status;
    o->has_type = resp.content_type != NULL;
    if (o->has_type) {
        snprintf(o->type, sizeof(o->type), "%s", resp.content_type);
    }
    assert_true(resp.body_len <= sizeof(o->body));
    assert_true((resp.body == NULL) == (resp.body_len == 0));
    o->body_len = resp.body_len;
    if (resp.body_len != 0) {
        memcpy(o->body, resp.body, resp.body_len);
    }
    o->retry_after = resp.retry_after;
    o->server_date = resp.server_date;
}

/*
 * Parse raw fed in pieces: cuts[] are the offsets where one read ends and
 * the next starts (ascending, inside raw).  Feeding stops at an error, or
 * at the end of the answer with a read to spare (the transport would close
 * the connection); with eof the close follows the last byte.
 */
static void
feed(const hcase_t *c, const char *raw, size_t len, const size_t *cuts,
     size_t n_cuts, outcome_t *o)
{
    tg__http1_t p;
    tg_diag_t d;
    tg_err_t err = TG_OK;
    size_t start = 0, end, used, total = 0, k;

    memset(&p, 0, sizeof(p));
    tg__http1_init(&p, c->body_max != 0 ? c->body_max : BODY_MAX_TEST,
                   c->want_date);
    tg_diag_clear(&d);
    for (k = 0; k <= n_cuts && err == TG_OK; k++) {
        end = k < n_cuts ? cuts[k] : len;
        if (end == start && k < n_cuts) {
            continue;
        }
        used = 99999;
        err = tg__http1_parse(&p, raw + start, end - start, &used, &d);
        assert_true(used <= end - start);
        total += used;
        if (err != TG_OK) {
            assert_int_equal(used, end - start);
            break;
        }
        /* Bytes are left only when the answer is complete. */
        assert_true(used == end - start || tg__http1_done(&p));
        if (used < end - start) {
            break;
        }
        start = end;
    }
    if (err == TG_OK && c->eof && !tg__http1_done(&p)) {
        err = tg__http1_eof(&p, &d);
    }
    outcome_take(o, &p, err, &d, total);
    /* Once failed, every later call fails the same way. */
    if (err != TG_OK) {
        assert_int_equal(tg__http1_parse(&p, "x", 1, &used, NULL), err);
        assert_int_equal(tg__http1_eof(&p, NULL), err);
    }
    tg__http1_free(&p);
    assert_null(p.body);
}

static void
expect_same(const hcase_t *c, const char *how, const outcome_t *a,
            const outcome_t *b)
{
    if (a->err != b->err || strcmp(a->message, b->message) != 0 ||
        a->done != b->done || a->keepalive != b->keepalive ||
        (a->err == TG_OK && a->used != b->used) || a->status != b->status ||
        a->has_type != b->has_type || strcmp(a->type, b->type) != 0 ||
        a->body_len != b->body_len ||
        memcmp(a->body, b->body, a->body_len) != 0 ||
        a->retry_after != b->retry_after || a->server_date != b->server_date ||
        a->status_seen != b->status_seen || a->received != b->received) {
        fail_msg("%s: fed %s: %s \"%s\" used %zu keep %d, whole: %s \"%s\" "
                 "used %zu keep %d",
                 c->name, how, tg_err_name(b->err), b->message, b->used,
                 b->keepalive, tg_err_name(a->err), a->message, a->used,
                 a->keepalive);
    }
}

/* Whole, byte by byte, and in two at every point (or a sample of points):
 * the outcomes must all be the same; the whole one is *o. */
static void
feed_every_way(const hcase_t *c, const char *raw, size_t len, outcome_t *o)
{
    static outcome_t other;
    size_t *cuts, k, step;
    char how[64];

    feed(c, raw, len, NULL, 0, o);
    if (len > 1) {
        cuts = malloc((len - 1) * sizeof(*cuts));
        assert_non_null(cuts);
        for (k = 0; k + 1 < len; k++) {
            cuts[k] = k + 1;
        }
        feed(c, raw, len, cuts, len - 1, &other);
        expect_same(c, "byte by byte", o, &other);
        free(cuts);
    }
    step = len <= SPLIT_ALL_MAX ? 1 : len / SPLIT_SAMPLES;
    for (k = 0; k <= len; k += step) {
        feed(c, raw, len, &k, 1, &other);
        snprintf(how, sizeof(how), "split at %zu", k);
        expect_same(c, how, o, &other);
    }
}

/* Check a case's outcome against what it must be. */
static void
expect_case(const hcase_t *c, const outcome_t *o, size_t len)
{
    if (o->err != c->err) {
        fail_msg("%s: %s (%s), want %s", c->name, tg_err_name(o->err),
                 o->message, tg_err_name(c->err));
    }
    assert_true((o->err == TG_OK) == (o->message[0] == '\0'));
    if (c->says != NULL) {
        assert_contains(o->message, c->says);
    }
    if (c->err != TG_OK) {
        return;
    }
    if (!o->done) {
        fail_msg("%s: not done", c->name);
    }
    assert_int_equal(o->status, c->status);
    assert_int_equal(o->has_type, c->type != NULL);
    if (c->type != NULL) {
        assert_string_equal(o->type, c->type);
    }
    assert_int_equal(o->body_len, c->body != NULL ? strlen(c->body) : 0);
    if (c->body != NULL) {
        assert_memory_equal(o->body, c->body, o->body_len);
    }
    if (o->keepalive != c->keepalive) {
        fail_msg("%s: keepalive %d, want %d", c->name, o->keepalive,
                 c->keepalive);
    }
    assert_int_equal(o->used, c->used >= 0 ? (size_t) c->used : len);
    assert_int_equal(o->status_seen, 1);
}

static void
run_case(const hcase_t *c, const char *raw, size_t len)
{
    static outcome_t o;

    feed_every_way(c, raw, len, &o);
    expect_case(c, &o, len);
}

/* ---------------------------------------------------------------------- */
/* The answer parser                                                      */
/* ---------------------------------------------------------------------- */

static void
every_case_gives_its_outcome_however_it_is_split(void **state)
{
    size_t i, len;

    (void) state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        len = cases[i].raw_len != 0 ? cases[i].raw_len : strlen(cases[i].raw);
        run_case(&cases[i], cases[i].raw, len);
    }
}

/* A head of exactly `bytes` bytes in `lines` lines (status line and blank
 * line included), the 1xx part first when with_1xx, then "{}". */
static char *
head_of(size_t bytes, size_t lines, int with_1xx, size_t *len)
{
    static const char status[] = "HTTP/1.1 200 OK\r\n";
    static const char cl[] = "Content-Length: 2\r\n";
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    size_t fixed = strlen(status) + strlen(cl) + 2, pad_lines, k, n, each;
    char *buf, *w;

    if (with_1xx) {
        fixed += strlen(cont);
        lines -= 2;
    }
    /* The X-P lines: "X-P: " + padding + CRLF, at least 7 bytes each. */
    pad_lines = lines - 3;
    assert_true(bytes >= fixed + pad_lines * 7);
    buf = malloc(bytes + 2);
    assert_non_null(buf);
    w = buf;
    if (with_1xx) {
        memcpy(w, cont, strlen(cont));
        w += strlen(cont);
    }
    memcpy(w, status, strlen(status));
    w += strlen(status);
    memcpy(w, cl, strlen(cl));
    w += strlen(cl);
    n = bytes - fixed;
    for (k = 0; k < pad_lines; k++) {
        each = k + 1 < pad_lines ? n / pad_lines : n - (n / pad_lines) * k;
        memcpy(w, "X-P: ", 5);
        memset(w + 5, 'a', each - 7);
        memcpy(w + each - 2, "\r\n", 2);
        w += each;
    }
    memcpy(w, "\r\n{}", 4);
    w += 4;
    *len = (size_t) (w - buf);
    assert_int_equal(*len, bytes + 2);
    return buf;
}

static void
header_caps_hold_at_the_limit_and_refuse_one_more(void **state)
{
    const hcase_t ok = {"headers at the caps",
                        NULL,
                        0,
                        0,
                        0,
                        0,
                        TG_OK,
                        NULL,
                        200,
                        NULL,
                        "{}",
                        1,
                        -1};
    const hcase_t over = {"headers over the caps",
                          NULL,
                          0,
                          0,
                          0,
                          1,
                          TG_PROTOCOL,
                          "response headers too large (more than 32768 bytes "
                          "or 100 lines)",
                          0,
                          NULL,
                          NULL,
                          0,
                          -1};
    size_t len;
    char *raw;
    int with_1xx;

    (void) state;
    for (with_1xx = 0; with_1xx <= 1; with_1xx++) {
        /* bytes: 32768 with the lines' ends is fine, one more is not */
        raw = head_of(TG__HTTP1_HEADER_BYTES_MAX, 10, with_1xx, &len);
        run_case(&ok, raw, len);
        free(raw);
        raw = head_of(TG__HTTP1_HEADER_BYTES_MAX + 1, 10, with_1xx, &len);
        run_case(&over, raw, len);
        free(raw);
        /* lines: 100 is fine, 101 is not (a 1xx answer's count too) */
        raw = head_of(2000, TG__HTTP1_HEADER_LINES_MAX, with_1xx, &len);
        run_case(&ok, raw, len);
        free(raw);
        raw = head_of(2000, TG__HTTP1_HEADER_LINES_MAX + 1, with_1xx, &len);
        run_case(&over, raw, len);
        free(raw);
    }
}

/* A 1 MB header line is refused within the cap: nothing waits for its end
 * and nothing is buffered past the cap. */
static void
a_huge_header_line_is_refused_before_its_end(void **state)
{
    const size_t big = 1 << 20;
    tg__http1_t p;
    tg_diag_t d;
    tg_err_t err = TG_OK;
    char *raw;
    size_t used, off;

    (void) state;
    raw = malloc(big);
    assert_non_null(raw);
    memcpy(raw, "HTTP/1.1 200 OK\r\nX-Big: ", 24);
    memset(raw + 24, 'a', big - 24);
    tg__http1_init(&p, 65536, 0);
    tg_diag_clear(&d);
    /* Fed as reads of 4 KiB: the one that passes the cap fails. */
    for (off = 0; off < big; off += 4096) {
        err = tg__http1_parse(&p, raw + off, 4096, &used, &d);
        if (err != TG_OK) {
            break;
        }
        assert_int_equal(used, 4096);
    }
    free(raw);
    assert_int_equal(err, TG_PROTOCOL);
    assert_contains(d.message, "headers too large");
    assert_int_equal(off, TG__HTTP1_HEADER_BYTES_MAX - 4096);
    assert_true(tg__http1_status_seen(&p));
    tg__http1_free(&p);
}

/* Retry-After as seconds or an HTTP-date, only when positive, capped
 * (SECURITY.md 3.12), as tg__curl_response reads CURLINFO_RETRY_AFTER. */
static void
retry_after_is_seconds_or_a_date_positive_and_capped(void **state)
{
    static const struct {
        const char *value;
        long want; /* -2: 110..120 (a date two minutes ahead) */
    } rows[] = {
        {"7", 7},
        {" 7 ", 7},
        {"999999", 300},
        {"0", -1},
        {"-3", -1},
        {"garbage", -1},
        {"", -1},
        {"5x", -1},
        {"99999999999999999999999", 300},
        {"DATE", -2},
        {"Sun, 06 Nov 1994 08:49:37 GMT", -1},
    };
    hcase_t c = {"Retry-After", NULL, 0,    0,    0, 0, TG_OK,
                 NULL,          429,  NULL, NULL, 1, -1};
    static outcome_t o;
    char raw[512], date[64];
    time_t later = time(NULL) + 120;
    struct tm tm;
    size_t i;
    int n;

    (void) state;
    gmtime_r(&later, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        n = snprintf(raw, sizeof(raw),
                     "HTTP/1.1 429 Too Many\r\nRetry-After: %s\r\n"
                     "Content-Length: 0\r\n\r\n",
                     rows[i].want == -2 ? date : rows[i].value);
        c.name = rows[i].value;
        feed(&c, raw, (size_t) n, NULL, 0, &o);
        expect_case(&c, &o, (size_t) n);
        if (rows[i].want == -2) {
            assert_true(o.retry_after >= 110 && o.retry_after <= 120);
        } else if (o.retry_after != rows[i].want) {
            fail_msg("Retry-After \"%s\": %ld, want %ld", rows[i].value,
                     o.retry_after, rows[i].want);
        }
    }
}

/* No Retry-After is -1; the cap is not applied when retry_after_max is 0. */
static void
retry_after_absent_is_minus_one_and_no_cap_at_zero(void **state)
{
    static const char raw[] = "HTTP/1.1 429 X\r\nRetry-After: 999999\r\n"
                              "Content-Length: 0\r\n\r\n";
    static const char none[] = "HTTP/1.1 429 X\r\nContent-Length: 0\r\n\r\n";
    tg__http1_t p;
    tg_response_t resp;
    size_t used;

    (void) state;
    tg__http1_init(&p, 100, 0);
    assert_int_equal(tg__http1_parse(&p, raw, strlen(raw), &used, NULL), TG_OK);
    tg__http1_response(&p, &resp, 0);
    assert_int_equal(resp.retry_after, 999999);
    tg__http1_reset(&p, 0);
    assert_int_equal(tg__http1_parse(&p, none, strlen(none), &used, NULL),
                     TG_OK);
    tg__http1_response(&p, &resp, 300);
    assert_int_equal(resp.retry_after, -1);
    tg__http1_free(&p);
}

/* Date is read when asked for; a 1xx answer's Date is forgotten. */
static void
date_is_read_when_asked_and_a_1xx_date_is_forgotten(void **state)
{
    hcase_t c = {"Date", NULL, 0, 0, 1, 0, TG_OK, NULL, 200, NULL, "{}", 1, -1};
    static outcome_t o;
    static const char dated[] = "HTTP/1.1 200 OK\r\n"
                                "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                                "Content-Length: 2\r\n\r\n{}";
    static const char after_1xx[] = "HTTP/1.1 103 Early\r\n"
                                    "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                                    "\r\n"
                                    "HTTP/1.1 200 OK\r\n"
                                    "Content-Length: 2\r\n\r\n{}";
    static const char bad[] = "HTTP/1.1 200 OK\r\nDate: yesterday\r\n"
                              "Content-Length: 2\r\n\r\n{}";

    (void) state;
    feed_every_way(&c, dated, strlen(dated), &o);
    expect_case(&c, &o, strlen(dated));
    assert_int_equal(o.server_date, 784111777);
    c.want_date = 0;
    feed(&c, dated, strlen(dated), NULL, 0, &o);
    assert_int_equal(o.server_date, 0);
    c.want_date = 1;
    feed_every_way(&c, after_1xx, strlen(after_1xx), &o);
    expect_case(&c, &o, strlen(after_1xx));
    assert_int_equal(o.server_date, 0);
    feed(&c, bad, strlen(bad), NULL, 0, &o);
    assert_int_equal(o.server_date, 0);
}

/* What the transport asks before the answer is complete. */
static void
received_and_status_seen_tell_the_transport_how_far_it_came(void **state)
{
    tg__http1_t p;
    size_t used;

    (void) state;
    tg__http1_init(&p, 100, 0);
    assert_false(tg__http1_received(&p));
    assert_int_equal(tg__http1_parse(&p, "", 0, &used, NULL), TG_OK);
    assert_false(tg__http1_received(&p));
    assert_int_equal(tg__http1_parse(&p, "HTTP/1.1 200", 12, &used, NULL),
                     TG_OK);
    assert_true(tg__http1_received(&p));
    assert_false(tg__http1_status_seen(&p));
    assert_int_equal(tg__http1_parse(&p, " OK\r\n", 5, &used, NULL), TG_OK);
    assert_true(tg__http1_status_seen(&p));
    assert_false(tg__http1_done(&p));
    assert_false(tg__http1_keepalive(&p));
    tg__http1_free(&p);
}

/* The body carries tokens: reset wipes it and keeps a small buffer; a
 * larger one is freed; the next answer on the connection parses afresh. */
static void
reset_wipes_the_body_and_keeps_a_small_buffer(void **state)
{
    static const char raw[] = "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\n"
                              "Content-Length: 20\r\n\r\nsecret-token-value-1";
    static const char next[] = "HTTP/1.1 204 No Content\r\n\r\n";
    static const char zeros[20];
    tg__http1_t p;
    tg_response_t resp;
    char *buf;
    size_t used, cap;

    (void) state;
    memset(&p, 0, sizeof(p));
    tg__http1_init(&p, 65536, 0);
    assert_int_equal(tg__http1_parse(&p, raw, strlen(raw), &used, NULL), TG_OK);
    assert_true(tg__http1_keepalive(&p));
    buf = p.body;
    cap = p.body_cap;
    assert_non_null(buf);
    assert_memory_equal(buf, "secret-token-value-1", 20);
    tg__http1_reset(&p, cap);
    assert_ptr_equal(p.body, buf);
    assert_int_equal(p.body_cap, cap);
    assert_memory_equal(buf, zeros, sizeof(zeros));
    assert_int_equal(p.body_len, 0);
    assert_false(tg__http1_done(&p));
    assert_false(tg__http1_received(&p));
    assert_int_equal(p.header_bytes, 0);
    assert_int_equal(p.body_max, 65536);

    assert_int_equal(tg__http1_parse(&p, next, strlen(next), &used, NULL),
                     TG_OK);
    tg__http1_response(&p, &resp, 0);
    assert_int_equal(resp.status, 204);
    assert_null(resp.content_type);
    assert_null(resp.body);

    tg__http1_reset(&p, 0);
    assert_int_equal(tg__http1_parse(&p, raw, strlen(raw), &used, NULL), TG_OK);
    tg__http1_reset(&p, cap - 1);
    assert_null(p.body);
    assert_int_equal(p.body_cap, 0);
    tg__http1_free(&p);
    tg__http1_free(&p);
}

/* The body buffer grows by copy (4 KiB, doubling, up to the cap), never
 * past the cap, and what it held stays. */
static void
body_buffer_grows_by_copy_up_to_the_cap(void **state)
{
    char *buf = NULL, block[3000];
    size_t len = 0, cap = 0, i;

    (void) state;
    for (i = 0; i < sizeof(block); i++) {
        block[i] = (char) ('a' + i % 26);
    }
    assert_int_equal(
        tg__http1_body_append(&buf, &len, &cap, 10000, block, 3000), TG_OK);
    assert_int_equal(cap, 4096);
    assert_int_equal(
        tg__http1_body_append(&buf, &len, &cap, 10000, block, 3000), TG_OK);
    assert_int_equal(cap, 8192);
    assert_memory_equal(buf, block, 3000);
    assert_memory_equal(buf + 3000, block, 3000);
    assert_int_equal(
        tg__http1_body_append(&buf, &len, &cap, 10000, block, 3000), TG_OK);
    assert_int_equal(cap, 10000);
    assert_int_equal(
        tg__http1_body_append(&buf, &len, &cap, 10000, block, 1001),
        TG_PROTOCOL);
    assert_int_equal(len, 9000);
    assert_int_equal(
        tg__http1_body_append(&buf, &len, &cap, 10000, block, 1000), TG_OK);
    assert_int_equal(len, 10000);
    assert_int_equal(tg__http1_body_append(&buf, &len, &cap, 10000, NULL, 0),
                     TG_OK);
    tg_secret_free_len(buf, cap);
}

/* ---------------------------------------------------------------------- */
/* The request                                                            */
/* ---------------------------------------------------------------------- */

/* One request and its exact bytes. */
typedef struct rcase {
    const char *name;
    const char *method, *url, *authorization, *content_type, *accept;
    const char *body; /* its length is strlen */
    const char *want;
} rcase_t;

static const rcase_t requests[] = {
    {"GET with a bearer token, no fragment", "GET",
     "https://bi.example.com:8443/api/4.0/user?fields=id#frag",
     "Bearer abc.def-123", NULL, "application/json", NULL,
     "GET /api/4.0/user?fields=id HTTP/1.1\r\n"
     "Host: bi.example.com:8443\r\n" UA "Accept: application/json\r\n"
     "Authorization: Bearer abc.def-123\r\n\r\n"},
    {"POST with a body has its length (any case of scheme)", "POST",
     "HTTP://127.0.0.1:8080/insightservices/rest/v1/auth/token", NULL,
     "application/json", NULL, "{\"clientId\":\"c\",\"secret\":\"s\\u0000x\"}",
     "POST /insightservices/rest/v1/auth/token HTTP/1.1\r\n"
     "Host: 127.0.0.1:8080\r\n" UA "Accept: */*\r\n"
     "Content-Type: application/json\r\n"
     "Content-Length: 36\r\n\r\n"
     "{\"clientId\":\"c\",\"secret\":\"s\\u0000x\"}"},
    {"DELETE without a body has no length", "DELETE",
     "http://[::1]:9/api/4.0/logout", "token xyz", NULL, NULL, NULL,
     "DELETE /api/4.0/logout HTTP/1.1\r\n"
     "Host: [::1]:9\r\n" UA "Accept: */*\r\n"
     "Authorization: token xyz\r\n\r\n"},
    {"DELETE with a body has its length", "DELETE",
     "http://[::1]:9/api/4.0/logout", "token xyz", "application/json", NULL,
     "{}",
     "DELETE /api/4.0/logout HTTP/1.1\r\n"
     "Host: [::1]:9\r\n" UA "Accept: */*\r\n"
     "Content-Type: application/json\r\n"
     "Authorization: token xyz\r\nContent-Length: 2\r\n\r\n{}"},
    {"PATCH without a body says 0", "PATCH", "http://[::1]:9/api/4.0/session",
     NULL, NULL, NULL, NULL,
     "PATCH /api/4.0/session HTTP/1.1\r\n"
     "Host: [::1]:9\r\n" UA "Accept: */*\r\nContent-Length: 0\r\n\r\n"},
    {"GET never sends a body", "GET", "http://h/x", NULL, NULL, NULL, "{}",
     "GET /x HTTP/1.1\r\nHost: h\r\n" UA "Accept: */*\r\n\r\n"},
    {"no path asks for the root", "GET", "https://h.example", NULL, NULL, NULL,
     NULL, "GET / HTTP/1.1\r\nHost: h.example\r\n" UA "Accept: */*\r\n\r\n"},
    {"a bare query gets its slash", "GET", "https://h.example?x=1", NULL, NULL,
     NULL, NULL,
     "GET /?x=1 HTTP/1.1\r\nHost: h.example\r\n" UA "Accept: */*\r\n\r\n"},
};

static void
requests_are_exactly_the_bytes_curl_sends(void **state)
{
    tg_request_t req;
    tg_diag_t d;
    char *out, url[256], auth[256], body[256];
    size_t i, len, cap;

    (void) state;
    for (i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
        const rcase_t *r = &requests[i];

        memset(&req, 0, sizeof(req));
        snprintf(url, sizeof(url), "%s", r->url);
        req.method = r->method;
        req.url = url;
        if (r->authorization != NULL) {
            snprintf(auth, sizeof(auth), "%s", r->authorization);
            req.authorization = auth;
        }
        req.content_type = r->content_type;
        req.accept = r->accept;
        if (r->body != NULL) {
            req.body_len = (size_t) snprintf(body, sizeof(body), "%s", r->body);
            req.body = body;
        }
        out = NULL;
        tg_diag_clear(&d);
        if (tg__http1_request(&req, &out, &len, &cap, &d) != TG_OK) {
            fail_msg("%s: %s", r->name, d.message);
        }
        assert_non_null(out);
        assert_true(cap >= len);
        if (len != strlen(r->want) || memcmp(out, r->want, len) != 0) {
            fail_msg("%s: got\n%.*s\nwant:\n%s", r->name, (int) len, out,
                     r->want);
        }
        tg_secret_free_len(out, cap);
    }
}

static void
request_refuses_bad_urls_and_methods(void **state)
{
    static const struct {
        const char *url;
        tg_err_t want;
        const char *says;
    } rows[] = {
        {"ftp://h/x", TG_CONFIG, "bad URL"},
        {"h.example/x", TG_CONFIG, "bad URL"},
        {"https://", TG_CONFIG, "bad URL"},
        {"https:///x", TG_CONFIG, "bad URL"},
        {"https://:80/x", TG_CONFIG, "bad URL"},
        {"https://user:pw@h/x", TG_CONFIG, "bad URL"},
        {"https://h:99999/x", TG_CONFIG, "bad URL"},
        {"https://h:/x", TG_CONFIG, "bad URL"},
        {"https://h:8a/x", TG_CONFIG, "bad URL"},
        {"https://a:1:2/x", TG_CONFIG, "bad URL"},
        {"https://[::1/x", TG_CONFIG, "bad URL"},
        {"https://[::1]x/x", TG_CONFIG, "bad URL"},
        {"https://h/a b", TG_CONFIG, "bad URL"},
        {"https://h/\x7f", TG_CONFIG, "bad URL"},
        {"https://h/\xc3\xa9", TG_CONFIG, "bad URL"},
        {"https://h/x\r\nX-Injected: 1", TG_INPUT, "URL"},
        {"https://h\n/x", TG_INPUT, "URL"},
    };
    tg_request_t req;
    tg_diag_t d;
    char *out, url[128];
    size_t len, cap, i;

    (void) state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        memset(&req, 0, sizeof(req));
        snprintf(url, sizeof(url), "%s", rows[i].url);
        req.method = "GET";
        req.url = url;
        tg_diag_clear(&d);
        out = (char *) 1;
        if (tg__http1_request(&req, &out, &len, &cap, &d) != rows[i].want) {
            fail_msg("%s: %s", rows[i].url, d.message);
        }
        assert_null(out);
        assert_contains(d.message, rows[i].says);
    }
    memset(&req, 0, sizeof(req));
    snprintf(url, sizeof(url), "https://h/x");
    req.url = url;
    req.method = "PUT";
    tg_diag_clear(&d);
    assert_int_equal(tg__http1_request(&req, &out, &len, &cap, &d),
                     TG_INTERNAL);
    assert_contains(d.message, "PUT");
    req.method = NULL;
    assert_int_equal(tg__http1_request(&req, &out, &len, &cap, NULL),
                     TG_INTERNAL);
    assert_int_equal(tg__http1_request(NULL, &out, &len, &cap, NULL),
                     TG_INTERNAL);
}

/* A line break in a header value would inject a header (SECURITY.md 3.6):
 * refused, naming the header and never quoting the value (a token). */
static void
request_refuses_line_breaks_in_values_without_quoting_them(void **state)
{
    char url[] = "https://h/x";
    char auth_cr[] = "Bearer SECRETtoken\rX-Injected: 1";
    char auth_lf[] = "Bearer SECRETtoken\nX-Injected: 1";
    tg_request_t req = {"GET", url, auth_cr, NULL, NULL, NULL, 0};
    tg_diag_t d;
    char *out = NULL;
    size_t len, cap;

    (void) state;
    tg_diag_clear(&d);
    assert_int_equal(tg__http1_request(&req, &out, &len, &cap, &d), TG_INPUT);
    assert_null(out);
    assert_contains(d.message, "Authorization");
    assert_null(strstr(d.message, "SECRET"));
    assert_null(strstr(d.message, "Injected"));
    req.authorization = auth_lf;
    tg_diag_clear(&d);
    assert_int_equal(tg__http1_request(&req, &out, &len, &cap, &d), TG_INPUT);
    assert_null(strstr(d.message, "SECRET"));
    req.authorization = NULL;
    req.content_type = "a/b\r\nX: y";
    tg_diag_clear(&d);
    assert_int_equal(tg__http1_request(&req, &out, &len, &cap, &d), TG_INPUT);
    assert_contains(d.message, "Content-Type");
    req.content_type = NULL;
    req.accept = "\n";
    tg_diag_clear(&d);
    assert_int_equal(tg__http1_request(&req, &out, &len, &cap, &d), TG_INPUT);
    assert_contains(d.message, "Accept");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_case_gives_its_outcome_however_it_is_split),
        cmocka_unit_test(header_caps_hold_at_the_limit_and_refuse_one_more),
        cmocka_unit_test(a_huge_header_line_is_refused_before_its_end),
        cmocka_unit_test(retry_after_is_seconds_or_a_date_positive_and_capped),
        cmocka_unit_test(retry_after_absent_is_minus_one_and_no_cap_at_zero),
        cmocka_unit_test(date_is_read_when_asked_and_a_1xx_date_is_forgotten),
        cmocka_unit_test(
            received_and_status_seen_tell_the_transport_how_far_it_came),
        cmocka_unit_test(reset_wipes_the_body_and_keeps_a_small_buffer),
        cmocka_unit_test(body_buffer_grows_by_copy_up_to_the_cap),
        cmocka_unit_test(requests_are_exactly_the_bytes_curl_sends),
        cmocka_unit_test(request_refuses_bad_urls_and_methods),
        cmocka_unit_test(
            request_refuses_line_breaks_in_values_without_quoting_them),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
