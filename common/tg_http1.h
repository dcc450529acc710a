/* SPDX-License-Identifier: MIT */
/*
 * tg_http1.h - HTTP/1.1 as pure code (tg__ names): a tg_request_t written
 * as request bytes, and an incremental parser of the answer into a
 * tg_response_t.  No I/O: the nginx module's native transport moves the
 * bytes, and the unit tests and a fuzzer drive it without a network.  Not
 * installed.
 *
 * It gives the outcome libcurl 7.88 with common/curl.c and curl_error.c
 * gives for the same bytes, so that one fault of the server stays one
 * error whichever transport met it (SECURITY.md section 6): the same
 * header caps, the same body cap and messages, the same "closed without
 * answering" before a status line.  Where libcurl is lenient about a
 * broken head (a Content-Length with junk, two lengths, a folded line, a
 * head the close cuts before its blank line) the parser refuses it as a
 * malformed or truncated answer (TG_PROTOCOL), and a status line that is
 * not HTTP/1.x is TG_PROTOCOL where libcurl says HTTP/0.9 (TG_CONFIG).
 *
 * 1xx answers: 100, 102, 103 and the others are skipped, as libcurl and
 * RFC 9110 section 15.2 do, and the final answer after them is parsed; their
 * header lines count toward the caps, and nothing else of them is kept
 * (libcurl keeps their Content-Type).  A 101 is refused at once: we never
 * ask to switch protocols.
 */
#ifndef TG_HTTP1_H
#define TG_HTTP1_H

#include <stddef.h>
#include <time.h>

#include "tokengate.h"

/*
 * The header caps of every front end (tg_curl.h's TG__CURL_HEADER_*_MAX,
 * which the unit tests check are the same): bytes of all head lines with
 * their line ends, and lines, the status lines and the blank lines
 * included, those of 1xx answers too.
 */
#define TG__HTTP1_HEADER_BYTES_MAX 32768
#define TG__HTTP1_HEADER_LINES_MAX 100

/* The first bytes of each head line kept for parsing: the names and the
 * values we read are short; the rest of a longer line is only checked. */
#define TG__HTTP1_LINE_KEEP 512
/* Longest Content-Type value; a longer one is a malformed answer. */
#define TG__HTTP1_CONTENT_TYPE_MAX 255

/*
 * One answer being parsed, and the next ones on the same connection after
 * tg__http1_reset().  Zero-initialisable (tg__http1_free of a zeroed one is
 * fine); tg__http1_init() sets the limits.  The fields are the parser's:
 * read them through the functions below (done is also a field, as the
 * transport's loops test it).
 */
typedef struct tg__http1 {
    size_t body_max; /* max_response_bytes */
    int want_date;   /* parse Date into server_date */

    int state;    /* where in the answer (http1.c) */
    tg_err_t err; /* not TG_OK once a call failed: every later call fails */
    int done;     /* the answer is complete */
    int received; /* any byte at all */
    int status_seen;
    int keepalive;

    /* the head, counted as libcurl's header callback counts it */
    size_t header_bytes;
    long header_lines;
    /* the head line being read */
    size_t line_len;  /* its bytes so far, a CR included */
    size_t line_text; /* its bytes before any CR */
    size_t colon;     /* 1 + offset of its first ':', 0 when none yet */
    int line_cr;      /* the last byte was a CR */
    int line_nul;     /* it has a NUL byte */
    char line[TG__HTTP1_LINE_KEEP];

    /* what the answer's head said; a new status line forgets it all */
    struct {
        long status;
        int http10;
        int conn_close, conn_keepalive;
        int has_length, chunked, te_seen;
        size_t length;
        time_t server_date;
        long long retry_after; /* seconds from now, 0 when none (libcurl) */
        int has_content_type;
        char content_type[TG__HTTP1_CONTENT_TYPE_MAX + 1];
    } head;

    /* the body */
    size_t remaining;  /* of the length, or of the chunk */
    size_t chunk_line; /* bytes of the chunk-size line so far */
    int chunk_digits;
    int extra; /* bytes came after the answer */
    char *body;
    size_t body_len;
    size_t body_cap;
} tg__http1_t;

/*
 * The request as bytes: "METHOD origin-form HTTP/1.1", Host (the URL's
 * authority as written), User-Agent, Accept (any type when req names none),
 * Content-Type and Authorization when req has them, Content-Length for
 * POST and PATCH (0 without a body) and for DELETE with a body, the blank
 * line and the body.  GET and a DELETE without a body send no body.
 * TG_CONFIG "bad URL: ..." unless the URL is http:// or https:// (any case)
 * with a host and no user name; TG_INPUT naming the header (or the URL),
 * never quoting it, for a CR or LF in a value; TG_INTERNAL for an
 * incomplete request or another method.  On success *out is the caller's,
 * *len bytes of it used, *cap allocated: it holds the token, so free it
 * with tg_secret_free_len(*out, *cap).  On failure *out is NULL.
 */
tg_err_t tg__http1_request(const tg_request_t *req, char **out, size_t *len,
                           size_t *cap, tg_diag_t *diag);

/* Ready p (zeroed or freed) for a first answer: body_max is
 * max_response_bytes; want_date parses Date into server_date. */
void tg__http1_init(tg__http1_t *p, size_t body_max, int want_date);

/*
 * Feed received bytes, split anywhere.  TG_OK: *used bytes were consumed,
 * fewer than len only when the answer is complete (p->done; what is left
 * belongs to no answer, and the connection is not kept).  Else TG_PROTOCOL
 * (malformed, or over a cap: the same messages as curl_error.c) or
 * TG_NOMEM, with the message in diag, *used is len, and every later call
 * fails too.
 */
tg_err_t tg__http1_parse(tg__http1_t *p, const char *data, size_t len,
                         size_t *used, tg_diag_t *diag);

/*
 * The server closed the connection (a read returned 0).  It completes a
 * body delimited by the close (TG_OK, done).  Before a status line is
 * complete (nothing came, part of one, or only 1xx answers): TG_UNAVAILABLE
 * "the server closed the connection without answering", as libcurl's
 * CURLE_GOT_NOTHING.  Within a head or a delimited body: TG_PROTOCOL
 * "truncated answer: ...".  TG_OK, and nothing changes, once done.
 */
tg_err_t tg__http1_eof(tg__http1_t *p, tg_diag_t *diag);

/* The answer is complete. */
int tg__http1_done(const tg__http1_t *p);
/* Any byte came: a kept connection that dies before any byte of its answer
 * may be retried once by the transport. */
int tg__http1_received(const tg__http1_t *p);
/* A whole status line came (a 1xx one too, as CURLINFO_RESPONSE_CODE):
 * a broken connection after it is TG_PROTOCOL, before it TG_UNAVAILABLE. */
int tg__http1_status_seen(const tg__http1_t *p);
/* After done: the connection may carry the next request (HTTP/1.1 without
 * Connection: close, or 1.0 with keep-alive; a body delimited by its
 * length or chunks, or none; no byte after the answer). */
int tg__http1_keepalive(const tg__http1_t *p);

/*
 * After done: the answer, its pointers borrowed from p until the next
 * tg__http1_reset() or tg__http1_free().  content_type is trimmed and
 * NUL-terminated, NULL when absent; body is NULL when empty.  retry_after:
 * seconds, or an HTTP-date minus now, when > 0, capped at retry_after_max
 * when that is > 0; else -1 (as tg__curl_response).  server_date: the Date
 * when asked for and valid, else 0.
 */
void tg__http1_response(const tg__http1_t *p, tg_response_t *resp,
                        long retry_after_max);

/* Ready for the next answer on the same connection: the body is wiped, its
 * buffer kept when it is at most keep bytes, else freed. */
void tg__http1_reset(tg__http1_t *p, size_t keep);

/* Wipe and free everything; p is left zeroed. */
void tg__http1_free(tg__http1_t *p);

/*
 * Append n bytes to a capped secret buffer (*buf, *len used, *cap
 * allocated): it never moves by realloc; a larger one is allocated (4 KiB
 * first, doubling up to max), the old one copied, wiped and freed.
 * TG_PROTOCOL when *len + n would pass max (nothing is appended), TG_NOMEM
 * when an allocation fails; no message (the callers say it).  The parser's
 * body and curl.c's write callback.
 */
tg_err_t tg__http1_body_append(char **buf, size_t *len, size_t *cap, size_t max,
                               const char *data, size_t n);

#endif /* TG_HTTP1_H */
