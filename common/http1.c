/* SPDX-License-Identifier: MIT */
/*
 * http1.c - HTTP/1.1 as pure code: the request bytes of a tg_request_t, and
 * an incremental parser of the answer (tg_http1.h says what each function
 * promises).  The nginx module's native transport runs it on its own event
 * loop; nothing here reads a socket or a clock other than time(NULL) for
 * an HTTP-date Retry-After.
 *
 * The parser is one pass over the bytes, whatever their split: each head
 * line is counted and checked byte by byte (its first TG__HTTP1_LINE_KEEP
 * bytes are kept for the names and values we read), so a line over the
 * caps fails before it is complete and nothing is buffered past them;
 * bodies are copied in blocks.  The only allocation is the body buffer,
 * which carries tokens and secrets: it never moves by realloc.
 *
 * It reproduces what libcurl 7.88 with curl.c and curl_error.c says for the
 * same bytes (the caps, their messages, 1xx answers skipped, "closed
 * without answering" before a status line), and refuses the broken heads
 * libcurl lets through: see tg_http1.h.
 */
#include "tg_http1.h"
#include "tg_internal.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h> /* curl_getdate(), as curl.c and libcurl parse dates */

/* The first allocation for a body; it doubles up to the cap (as curl.c). */
#define TG_HTTP1_BODY_INITIAL 4096
/* A Date or Retry-After value is ~29 bytes; longer ones are not parsed
 * (curl.c's limit for Date). */
#define TG_HTTP1_DATE_MAX 128
/* A chunk-size line: hex digits and extensions we ignore.  A longer one is
 * a malformed answer, not a line to read forever. */
#define TG_HTTP1_CHUNK_LINE_MAX 4096
/* Longest decimal form of a size_t (20 digits for 64 bits) and a NUL. */
#define TG_HTTP1_DIGITS_MAX 24

/*
 * What each byte is to the head parser: TG_H1_STOP ends a fast run of
 * ordinary bytes (NUL, CR, LF and the control bytes before CR), TG_H1_COLON
 * is ':', TG_H1_TCHAR a byte of an RFC 9110 token (a header name).
 */
#define TG_H1_STOP 1
#define TG_H1_COLON 2
#define TG_H1_TCHAR 4

/* Where in the answer the parser is. */
enum tg_http1_state {
    TG_H1_STATUS = 0, /* a status line (a zeroed parser starts here) */
    TG_H1_HEADER,     /* a header line, or the blank line */
    TG_H1_LENGTH,     /* a body of Content-Length bytes */
    TG_H1_CLOSE,      /* a body delimited by the close */
    TG_H1_CHUNK_SIZE, /* the hex size of a chunk */
    TG_H1_CHUNK_EXT,  /* the rest of a chunk-size line, up to its LF */
    TG_H1_CHUNK_DATA,
    TG_H1_CHUNK_CR, /* the CRLF after a chunk's data */
    TG_H1_CHUNK_LF,
    TG_H1_TRAILER, /* trailer lines, up to a blank line */
    TG_H1_DONE
};

/* The request's writer: a cursor into the one exactly sized buffer. */
typedef struct tg_http1_writer {
    char *p;
} tg_http1_writer_t;

static tg_err_t tg_http1_url(const char *url, const char **authority,
                             size_t *authority_len, const char **target,
                             size_t *target_len, tg_diag_t *diag);
static tg_err_t tg_http1_value_check(const char *name, const char *value,
                                     tg_diag_t *diag);
static size_t tg_http1_decimal(char *dst, size_t v);
static void tg_http1_put(tg_http1_writer_t *w, const char *s, size_t n);
static void tg_http1_put_header(tg_http1_writer_t *w, const char *name,
                                const char *value);
static int tg_http1_add(size_t *total, size_t n);
static tg_err_t tg_http1_malformed(tg_diag_t *diag, const char *why);
static tg_err_t tg_http1_too_large(const tg__http1_t *p, tg_diag_t *diag);
static tg_err_t tg_http1_headers_too_large(tg_diag_t *diag);
static tg_err_t tg_http1_line(tg__http1_t *p, const char *data, size_t len,
                              size_t *i, int *complete, tg_diag_t *diag);
static void tg_http1_line_reset(tg__http1_t *p);
static tg_err_t tg_http1_status_line(tg__http1_t *p, tg_diag_t *diag);
static tg_err_t tg_http1_header_line(tg__http1_t *p, tg_diag_t *diag);
static tg_err_t tg_http1_content_length(tg__http1_t *p, const char *v, size_t n,
                                        int cut, tg_diag_t *diag);
static void tg_http1_connection(tg__http1_t *p, const char *v, size_t n,
                                int cut);
static void tg_http1_date(tg__http1_t *p, const char *v, size_t n, int cut);
static void tg_http1_retry_after(tg__http1_t *p, const char *v, size_t n,
                                 int cut);
static tg_err_t tg_http1_head_end(tg__http1_t *p, tg_diag_t *diag);
static tg_err_t tg_http1_chunk_size_end(tg__http1_t *p, tg_diag_t *diag);
static tg_err_t tg_http1_body(tg__http1_t *p, const char *data, size_t n,
                              tg_diag_t *diag);
static int tg_http1_reusable(const tg__http1_t *p);
static int tg_http1_hex(unsigned char c);

/* The byte classes above, by byte. */
static const unsigned char tg_http1_class[256] = {
    [0 ... '\r'] = TG_H1_STOP,   [':'] = TG_H1_COLON,
    ['0' ... '9'] = TG_H1_TCHAR, ['A' ... 'Z'] = TG_H1_TCHAR,
    ['a' ... 'z'] = TG_H1_TCHAR, ['!'] = TG_H1_TCHAR,
    ['#'] = TG_H1_TCHAR,         ['$'] = TG_H1_TCHAR,
    ['%'] = TG_H1_TCHAR,         ['&'] = TG_H1_TCHAR,
    ['\''] = TG_H1_TCHAR,        ['*'] = TG_H1_TCHAR,
    ['+'] = TG_H1_TCHAR,         ['-'] = TG_H1_TCHAR,
    ['.'] = TG_H1_TCHAR,         ['^'] = TG_H1_TCHAR,
    ['_'] = TG_H1_TCHAR,         ['`'] = TG_H1_TCHAR,
    ['|'] = TG_H1_TCHAR,         ['~'] = TG_H1_TCHAR,
};

/* ---------------------------------------------------------------------- */
/* The request                                                            */
/* ---------------------------------------------------------------------- */

tg_err_t
tg__http1_request(const tg_request_t *req, char **out, size_t *len, size_t *cap,
                  tg_diag_t *diag)
{
    const char *authority = NULL, *target = NULL, *accept;
    size_t authority_len = 0, target_len = 0, total = 0, body_len = 0;
    size_t digits_len = 0;
    char digits[TG_HTTP1_DIGITS_MAX];
    int has_length = 0;
    tg_http1_writer_t w;
    tg_err_t err;
    char *buf;

    *out = NULL;
    *len = 0;
    *cap = 0;
    if (req == NULL || req->url == NULL || req->method == NULL) {
        return tg__fail(diag, TG_INTERNAL, "incomplete request");
    }
    /* The methods curl.c sends, with its rules for a body. */
    if (strcmp(req->method, "POST") == 0 || strcmp(req->method, "PATCH") == 0 ||
        (strcmp(req->method, "DELETE") == 0 && req->body != NULL)) {
        has_length = 1;
        body_len = req->body != NULL ? req->body_len : 0;
    } else if (strcmp(req->method, "GET") != 0 &&
               strcmp(req->method, "DELETE") != 0) {
        return tg__fail(diag, TG_INTERNAL, "unsupported method %s",
                        req->method);
    }
    err = tg_http1_url(req->url, &authority, &authority_len, &target,
                       &target_len, diag);
    if (err != TG_OK) {
        return err;
    }
    accept = req->accept != NULL ? req->accept : "*/*";
    if (tg_http1_value_check("Accept", accept, diag) != TG_OK ||
        tg_http1_value_check("Content-Type", req->content_type, diag) !=
            TG_OK ||
        tg_http1_value_check("Authorization", req->authorization, diag) !=
            TG_OK) {
        return TG_INPUT;
    }
    if (has_length) {
        digits_len = tg_http1_decimal(digits, body_len);
    }

    /* The size first, then one allocation and memcpy. */
    if (!tg_http1_add(&total, strlen(req->method) + 1) ||
        !tg_http1_add(&total, target_len + (target[0] != '/')) ||
        !tg_http1_add(&total, sizeof(" HTTP/1.1\r\nHost: ") - 1) ||
        !tg_http1_add(&total, authority_len) ||
        !tg_http1_add(&total,
                      sizeof("\r\nUser-Agent: tokengate/" PACKAGE_VERSION
                             "\r\nAccept: ") -
                          1) ||
        !tg_http1_add(&total, strlen(accept) + 2) ||
        (req->content_type != NULL &&
         !tg_http1_add(&total, sizeof("Content-Type: \r\n") - 1 +
                                   strlen(req->content_type))) ||
        (req->authorization != NULL &&
         !tg_http1_add(&total, sizeof("Authorization: \r\n") - 1 +
                                   strlen(req->authorization))) ||
        (has_length && !tg_http1_add(&total, sizeof("Content-Length: \r\n") -
                                                 1 + digits_len)) ||
        !tg_http1_add(&total, 2) || !tg_http1_add(&total, body_len)) {
        return tg__fail(diag, TG_NOMEM, "the request is too large");
    }
    buf = malloc(total);
    if (buf == NULL) {
        return tg__fail(diag, TG_NOMEM, "out of memory");
    }

    w.p = buf;
    tg_http1_put(&w, req->method, strlen(req->method));
    tg_http1_put(&w, " ", 1);
    /* origin-form: "/" before a bare query, or alone. */
    if (target[0] != '/') {
        tg_http1_put(&w, "/", 1);
    }
    tg_http1_put(&w, target, target_len);
    tg_http1_put(&w, " HTTP/1.1\r\nHost: ", sizeof(" HTTP/1.1\r\nHost: ") - 1);
    tg_http1_put(&w, authority, authority_len);
    tg_http1_put(&w, "\r\nUser-Agent: tokengate/" PACKAGE_VERSION "\r\n",
                 sizeof("\r\nUser-Agent: tokengate/" PACKAGE_VERSION "\r\n") -
                     1);
    tg_http1_put_header(&w, "Accept", accept);
    tg_http1_put_header(&w, "Content-Type", req->content_type);
    tg_http1_put_header(&w, "Authorization", req->authorization);
    if (has_length) {
        tg_http1_put(&w, "Content-Length: ", sizeof("Content-Length: ") - 1);
        tg_http1_put(&w, digits, digits_len);
        tg_http1_put(&w, "\r\n", 2);
    }
    tg_http1_put(&w, "\r\n", 2);
    if (body_len != 0) {
        tg_http1_put(&w, req->body, body_len);
    }
    if ((size_t) (w.p - buf) != total) {
        tg_secret_free_len(buf, total);
        return tg__fail(diag, TG_INTERNAL, "the request size was miscounted");
    }
    *out = buf;
    *len = total;
    *cap = total;
    return TG_OK;
}

/*
 * Split an absolute http(s) URL into its authority (host[:port] as
 * written) and its target (path and query, without the fragment; it may be
 * empty or start with '?', where the request adds a "/").
 */
static tg_err_t
tg_http1_url(const char *url, const char **authority, size_t *authority_len,
             const char **target, size_t *target_len, tg_diag_t *diag)
{
    const char *a, *colon = NULL, *s;
    size_t n, i, port_len;

    for (s = url; *s != '\0'; s++) {
        unsigned char c = (unsigned char) *s;

        if (c == '\r' || c == '\n') {
            return tg__fail(diag, TG_INPUT, "the URL contains a line break");
        }
        if (c <= ' ' || c >= 0x7f) {
            return tg__fail(diag, TG_CONFIG,
                            "bad URL: it has spaces, control or non-ASCII "
                            "bytes");
        }
    }
    if (strncasecmp(url, "http://", 7) == 0) {
        a = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        a = url + 8;
    } else {
        return tg__fail(diag, TG_CONFIG,
                        "bad URL: the scheme must be http:// or https://");
    }
    n = strcspn(a, "/?#");
    if (memchr(a, '@', n) != NULL) {
        return tg__fail(diag, TG_CONFIG,
                        "bad URL: it must not contain a user name");
    }
    /* The port: after the last ':' outside an IPv6 literal's brackets. */
    for (i = 0; i < n; i++) {
        if (a[i] == ']') {
            colon = NULL;
        } else if (a[i] == ':') {
            colon = a + i;
        }
    }
    if (n == 0 || a[0] == ':' || (a[0] == '[' && memchr(a, ']', n) == NULL)) {
        return tg__fail(diag, TG_CONFIG, "bad URL: it has no host");
    }
    if (colon != NULL && a[0] != '[' && memchr(a, ':', n) != colon) {
        return tg__fail(diag, TG_CONFIG, "bad URL: a bad port");
    }
    if (a[0] == '[') {
        s = memchr(a, ']', n);
        if (s + 1 != a + n && s + 1 != colon) {
            return tg__fail(diag, TG_CONFIG, "bad URL: a bad host");
        }
    }
    if (colon != NULL) {
        port_len = n - (size_t) (colon + 1 - a);
        if (port_len == 0 || port_len > 5 ||
            strspn(colon + 1, "0123456789") < port_len ||
            strtol(colon + 1, NULL, 10) > 65535) {
            return tg__fail(diag, TG_CONFIG, "bad URL: a bad port");
        }
    }
    *authority = a;
    *authority_len = n;
    *target = a + n;
    *target_len = strcspn(a + n, "#");
    return TG_OK;
}

/* A header value must not break the request's lines (it may be a token:
 * never quote it). */
static tg_err_t
tg_http1_value_check(const char *name, const char *value, tg_diag_t *diag)
{
    if (value != NULL && strpbrk(value, "\r\n") != NULL) {
        return tg__fail(diag, TG_INPUT, "the %s header contains a line break",
                        name);
    }
    return TG_OK;
}

/* v in decimal at dst (no NUL); its length. */
static size_t
tg_http1_decimal(char *dst, size_t v)
{
    char tmp[TG_HTTP1_DIGITS_MAX];
    size_t n = 0, i;

    do {
        tmp[n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (i = 0; i < n; i++) {
        dst[i] = tmp[n - 1 - i];
    }
    return n;
}

static void
tg_http1_put(tg_http1_writer_t *w, const char *s, size_t n)
{
    memcpy(w->p, s, n);
    w->p += n;
}

/* "Name: value\r\n", nothing for a NULL value. */
static void
tg_http1_put_header(tg_http1_writer_t *w, const char *name, const char *value)
{
    if (value == NULL) {
        return;
    }
    tg_http1_put(w, name, strlen(name));
    tg_http1_put(w, ": ", 2);
    tg_http1_put(w, value, strlen(value));
    tg_http1_put(w, "\r\n", 2);
}

/* *total += n, 0 when that would wrap. */
static int
tg_http1_add(size_t *total, size_t n)
{
    if (n > SIZE_MAX - *total) {
        return 0;
    }
    *total += n;
    return 1;
}

/* ---------------------------------------------------------------------- */
/* The answer                                                             */
/* ---------------------------------------------------------------------- */

void
tg__http1_init(tg__http1_t *p, size_t body_max, int want_date)
{
    memset(p, 0, sizeof(*p));
    p->body_max = body_max;
    p->want_date = want_date != 0;
    p->state = TG_H1_STATUS;
}

tg_err_t
tg__http1_parse(tg__http1_t *p, const char *data, size_t len, size_t *used,
                tg_diag_t *diag)
{
    size_t i = 0, n;
    int complete, d;
    unsigned char c;
    const char *lf;
    tg_err_t err = TG_OK;

    *used = 0;
    if (p->err != TG_OK) {
        return tg__fail(diag, p->err, "the answer was refused already");
    }
    if (len == 0) {
        return TG_OK;
    }
    if (p->state == TG_H1_DONE) {
        /* Bytes after a complete answer belong to no request. */
        p->extra = 1;
        p->keepalive = 0;
        return TG_OK;
    }
    p->received = 1;
    while (i < len && p->state != TG_H1_DONE && err == TG_OK) {
        switch (p->state) {
        case TG_H1_STATUS:
        case TG_H1_HEADER:
        case TG_H1_TRAILER:
            complete = 0;
            err = tg_http1_line(p, data, len, &i, &complete, diag);
            if (err != TG_OK || !complete) {
                break;
            }
            if (p->state == TG_H1_STATUS) {
                err = tg_http1_status_line(p, diag);
            } else if (p->state == TG_H1_TRAILER && p->line_text == 0) {
                p->state = TG_H1_DONE;
            } else {
                err = tg_http1_header_line(p, diag);
            }
            tg_http1_line_reset(p);
            break;
        case TG_H1_LENGTH:
        case TG_H1_CHUNK_DATA:
            n = len - i < p->remaining ? len - i : p->remaining;
            err = tg_http1_body(p, data + i, n, diag);
            i += n;
            p->remaining -= n;
            if (p->remaining == 0) {
                p->state =
                    p->state == TG_H1_LENGTH ? TG_H1_DONE : TG_H1_CHUNK_CR;
            }
            break;
        case TG_H1_CLOSE:
            err = tg_http1_body(p, data + i, len - i, diag);
            i = len;
            break;
        case TG_H1_CHUNK_SIZE:
            c = (unsigned char) data[i++];
            if (++p->chunk_line > TG_HTTP1_CHUNK_LINE_MAX) {
                err = tg_http1_malformed(diag, "a chunk-size line is too long");
                break;
            }
            d = tg_http1_hex(c);
            if (d >= 0) {
                if (p->remaining > (SIZE_MAX >> 4)) {
                    err = tg_http1_malformed(diag, "a chunk size is too large");
                    break;
                }
                p->remaining = p->remaining * 16 + (size_t) d;
                p->chunk_digits = 1;
            } else if (!p->chunk_digits) {
                err = tg_http1_malformed(diag, "a chunk size is not hex");
            } else if (c == '\n') {
                err = tg_http1_chunk_size_end(p, diag);
            } else if (c == ';' || c == ' ' || c == '\t' || c == '\r') {
                p->state = TG_H1_CHUNK_EXT;
            } else {
                err = tg_http1_malformed(diag, "a chunk size is not hex");
            }
            break;
        case TG_H1_CHUNK_EXT:
            /* Extensions (and the CR) are ignored up to the LF. */
            lf = memchr(data + i, '\n', len - i);
            n = lf != NULL ? (size_t) (lf - (data + i)) + 1 : len - i;
            i += n;
            if (n > TG_HTTP1_CHUNK_LINE_MAX - p->chunk_line) {
                err = tg_http1_malformed(diag, "a chunk-size line is too long");
                break;
            }
            p->chunk_line += n;
            if (lf != NULL) {
                err = tg_http1_chunk_size_end(p, diag);
            }
            break;
        case TG_H1_CHUNK_CR:
        case TG_H1_CHUNK_LF:
            c = (unsigned char) data[i++];
            if (c == '\r' && p->state == TG_H1_CHUNK_CR) {
                p->state = TG_H1_CHUNK_LF;
            } else if (c == '\n') {
                p->state = TG_H1_CHUNK_SIZE;
            } else {
                err = tg_http1_malformed(diag, "no line end after a chunk");
            }
            break;
        default:
            err = tg__fail(diag, TG_INTERNAL, "the HTTP parser is lost");
            break;
        }
    }
    if (err != TG_OK) {
        /* The connection is done for: nothing is left for anyone. */
        *used = len;
        p->err = err;
        return err;
    }
    *used = i;
    if (p->state == TG_H1_DONE) {
        p->done = 1;
        p->extra = i < len;
        p->keepalive = !p->extra && tg_http1_reusable(p);
    }
    return TG_OK;
}

tg_err_t
tg__http1_eof(tg__http1_t *p, tg_diag_t *diag)
{
    tg_err_t err;

    if (p->err != TG_OK) {
        return tg__fail(diag, p->err, "the answer was refused already");
    }
    switch (p->state) {
    case TG_H1_DONE:
        return TG_OK;
    case TG_H1_CLOSE:
        p->state = TG_H1_DONE;
        p->done = 1;
        p->keepalive = 0;
        return TG_OK;
    case TG_H1_STATUS:
        /* Nothing, part of a status line, or only 1xx answers: what
         * libcurl calls an empty reply (CURLE_GOT_NOTHING). */
        err = tg__fail(diag, TG_UNAVAILABLE,
                       "the server closed the connection without answering");
        break;
    case TG_H1_HEADER:
        err = tg__fail(diag, TG_PROTOCOL,
                       "truncated answer: the connection closed within the "
                       "headers");
        break;
    case TG_H1_LENGTH:
        err = tg__fail(diag, TG_PROTOCOL,
                       "truncated answer: the connection closed with %zu "
                       "bytes remaining to read",
                       p->remaining);
        break;
    default:
        err = tg__fail(diag, TG_PROTOCOL,
                       "truncated answer: the connection closed within the "
                       "chunked body");
        break;
    }
    p->err = err;
    return err;
}

int
tg__http1_done(const tg__http1_t *p)
{
    return p->done;
}

int
tg__http1_received(const tg__http1_t *p)
{
    return p->received;
}

int
tg__http1_status_seen(const tg__http1_t *p)
{
    return p->status_seen;
}

int
tg__http1_keepalive(const tg__http1_t *p)
{
    return p->done && p->keepalive;
}

void
tg__http1_response(const tg__http1_t *p, tg_response_t *resp,
                   long retry_after_max)
{
    long long retry = p->head.retry_after;

    memset(resp, 0, sizeof(*resp));
    resp->status = p->head.status;
    resp->content_type = p->head.has_content_type ? p->head.content_type : NULL;
    resp->body = p->body_len != 0 ? p->body : NULL;
    resp->body_len = p->body_len;
    /* As tg__curl_response: only a positive value is advice. */
    resp->retry_after = -1;
    if (retry > 0) {
        if (retry_after_max > 0 && retry > retry_after_max) {
            retry = retry_after_max;
        }
        resp->retry_after = retry > LONG_MAX ? LONG_MAX : (long) retry;
    }
    resp->server_date = p->head.server_date;
}

void
tg__http1_reset(tg__http1_t *p, size_t keep)
{
    char *body = p->body;
    size_t cap = p->body_cap, body_max = p->body_max;
    int want_date = p->want_date;

    /* Past body_len the buffer was never written (it grows by copy). */
    if (body != NULL) {
        explicit_bzero(body, p->body_len);
        if (cap > keep) {
            free(body);
            body = NULL;
            cap = 0;
        }
    }
    /* The head lines and the type went through p too. */
    explicit_bzero(p, sizeof(*p));
    p->body = body;
    p->body_cap = cap;
    p->body_max = body_max;
    p->want_date = want_date;
    p->state = TG_H1_STATUS;
}

void
tg__http1_free(tg__http1_t *p)
{
    tg_secret_free_len(p->body, p->body_cap);
    explicit_bzero(p, sizeof(*p));
}

tg_err_t
tg__http1_body_append(char **buf, size_t *len, size_t *cap, size_t max,
                      const char *data, size_t n)
{
    size_t want;
    char *grown;

    /* *len <= max always holds, so this cannot wrap. */
    if (n > max - *len) {
        return TG_PROTOCOL;
    }
    if (n > *cap - *len) {
        want = *cap != 0 ? *cap : TG_HTTP1_BODY_INITIAL;
        while (want < *len + n && want < max) {
            want = want > max / 2 ? max : want * 2;
        }
        if (want < *len + n) {
            want = *len + n;
        }
        grown = malloc(want);
        if (grown == NULL) {
            return TG_NOMEM;
        }
        if (*len != 0) {
            memcpy(grown, *buf, *len);
        }
        tg_secret_free_len(*buf, *cap);
        *buf = grown;
        *cap = want;
    }
    if (n != 0) {
        memcpy(*buf + *len, data, n);
        *len += n;
    }
    return TG_OK;
}

/* ---------------------------------------------------------------------- */
/* The parser's steps                                                     */
/* ---------------------------------------------------------------------- */

static tg_err_t
tg_http1_malformed(tg_diag_t *diag, const char *why)
{
    return tg__fail(diag, TG_PROTOCOL, "malformed answer: %s", why);
}

/* The messages of curl_error.c for the same causes. */
static tg_err_t
tg_http1_too_large(const tg__http1_t *p, tg_diag_t *diag)
{
    return tg__fail(diag, TG_PROTOCOL,
                    "response larger than max_response_bytes (%ld)",
                    (long) p->body_max);
}

static tg_err_t
tg_http1_headers_too_large(tg_diag_t *diag)
{
    return tg__fail(diag, TG_PROTOCOL,
                    "response headers too large (more than %ld bytes or %ld "
                    "lines)",
                    (long) TG__HTTP1_HEADER_BYTES_MAX,
                    (long) TG__HTTP1_HEADER_LINES_MAX);
}

/*
 * Read a head line (status, header, trailer) from data[*i..len) up to and
 * including its LF; *complete when the LF came.  Counted as curl.c's
 * header callback counts complete lines (bytes with the line end, and
 * lines), but refused as soon as the line cannot fit any more; the blank
 * line that ends the trailers is not counted (libcurl does not pass it on).
 * A NUL, or a CR not followed by LF, is a malformed answer.
 */
static tg_err_t
tg_http1_line(tg__http1_t *p, const char *data, size_t len, size_t *i,
              int *complete, tg_diag_t *diag)
{
    /* The bytes this line may take with its LF. */
    size_t room = TG__HTTP1_HEADER_BYTES_MAX - p->header_bytes;
    int trailer = p->state == TG_H1_TRAILER;
    int full = p->header_lines >= TG__HTTP1_HEADER_LINES_MAX;
    /* In locals while the loop runs: a store to p->line could alias
     * p's other fields for the compiler, which would reload them for
     * every byte. */
    size_t line_len = p->line_len, text = p->line_text, colon = p->colon;
    size_t k = *i, run, m;
    char *keep = p->line;
    unsigned char stop;
    int cr = p->line_cr;
    const char *why = NULL;
    unsigned char c;
    tg_err_t err = TG_OK;

    while (k < len) {
        /* A run of ordinary bytes (most of a head) in a tight loop: no
         * line end, CR, NUL or first ':', and room left after them. */
        if (!cr && (text != 0 || !full) && line_len + 1 < room) {
            run = len - k < room - 1 - line_len ? len - k : room - 1 - line_len;
            stop = colon == 0 ? TG_H1_STOP | TG_H1_COLON : TG_H1_STOP;
            for (m = 0; m < run; m++) {
                c = (unsigned char) data[k + m];
                if ((tg_http1_class[c] & stop) != 0) {
                    break;
                }
                if (text < TG__HTTP1_LINE_KEEP) {
                    keep[text] = (char) c;
                }
                text++;
            }
            k += m;
            line_len += m;
            if (k == len) {
                break;
            }
        }
        c = (unsigned char) data[k++];
        if (c == '\n') {
            if (trailer && text == 0) {
                *complete = 1;
            } else if (line_len + 1 > room || full) {
                err = tg_http1_headers_too_large(diag);
            } else {
                p->header_bytes += line_len + 1;
                p->header_lines++;
                *complete = 1;
            }
            break;
        }
        if (cr) {
            why = "a CR without LF in the head";
            break;
        }
        line_len++;
        if (line_len >= room && !(c == '\r' && trailer && text == 0)) {
            err = tg_http1_headers_too_large(diag);
            break;
        }
        if (c == '\r') {
            cr = 1;
            continue;
        }
        if (text == 0 && full) {
            err = tg_http1_headers_too_large(diag);
            break;
        }
        if (c == '\0') {
            why = "a NUL byte in the head";
            break;
        }
        if (c == ':' && colon == 0) {
            colon = text + 1;
        }
        if (text < TG__HTTP1_LINE_KEEP) {
            keep[text] = (char) c;
        }
        text++;
    }
    *i = k;
    p->line_len = line_len;
    p->line_text = text;
    p->colon = colon;
    p->line_cr = cr;
    if (why != NULL) {
        err = tg_http1_malformed(diag, why);
    }
    return err;
}

static void
tg_http1_line_reset(tg__http1_t *p)
{
    p->line_len = 0;
    p->line_text = 0;
    p->colon = 0;
    p->line_cr = 0;
}

/*
 * "HTTP/1.0" or "HTTP/1.1", SP, three digits, then the end or SP and a
 * reason.  A new answer starts: forget what an earlier (1xx) one said.
 */
static tg_err_t
tg_http1_status_line(tg__http1_t *p, tg_diag_t *diag)
{
    const char *s = p->line;
    size_t n =
        p->line_text < TG__HTTP1_LINE_KEEP ? p->line_text : TG__HTTP1_LINE_KEEP;
    size_t k = 9;
    long code;

    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 ||
        (s[7] != '0' && s[7] != '1') || s[8] != ' ') {
        return tg_http1_malformed(diag,
                                  "not an HTTP/1.0 or HTTP/1.1 status line");
    }
    while (k < n && s[k] == ' ') {
        k++;
    }
    if (n - k < 3 || s[k] < '1' || s[k] > '9' || s[k + 1] < '0' ||
        s[k + 1] > '9' || s[k + 2] < '0' || s[k + 2] > '9' ||
        (n - k > 3 && s[k + 3] != ' ')) {
        return tg_http1_malformed(diag, "no status code in the status line");
    }
    code = (s[k] - '0') * 100L + (s[k + 1] - '0') * 10L + (s[k + 2] - '0');
    if (code == 101) {
        return tg_http1_malformed(
            diag, "101 Switching Protocols, but no upgrade was asked for");
    }
    memset(&p->head, 0, sizeof(p->head));
    p->head.status = code;
    p->head.http10 = s[7] == '0';
    p->status_seen = 1;
    p->state = TG_H1_HEADER;
    return TG_OK;
}

/* "Name: value" (or the blank line that ends the head); the few headers
 * that say something to us are read, the others only checked. */
static tg_err_t
tg_http1_header_line(tg__http1_t *p, tg_diag_t *diag)
{
    const char *s = p->line;
    int cut = p->line_text > TG__HTTP1_LINE_KEEP;
    size_t n = cut ? TG__HTTP1_LINE_KEEP : p->line_text;
    size_t name_len, v, e, k;

    if (p->line_text == 0) {
        return tg_http1_head_end(p, diag);
    }
    if (s[0] == ' ' || s[0] == '\t') {
        return tg_http1_malformed(diag, "a folded header line");
    }
    if (p->colon <= 1) {
        return tg_http1_malformed(diag, "a header line without a name and ':'");
    }
    name_len = p->colon - 1;
    for (k = 0; k < name_len && k < n; k++) {
        if ((tg_http1_class[(unsigned char) s[k]] & TG_H1_TCHAR) == 0) {
            return tg_http1_malformed(diag, "a header name with a bad byte");
        }
    }
    if (p->state == TG_H1_TRAILER || name_len >= n) {
        return TG_OK;
    }
    /* The value without the whitespace around it. */
    for (v = p->colon; v < n && (s[v] == ' ' || s[v] == '\t'); v++) {
    }
    for (e = n; !cut && e > v && (s[e - 1] == ' ' || s[e - 1] == '\t'); e--) {
    }
    switch (name_len) {
    case 4:
        if (strncasecmp(s, "Date", 4) == 0) {
            tg_http1_date(p, s + v, e - v, cut);
        }
        break;
    case 10:
        if (strncasecmp(s, "Connection", 10) == 0) {
            tg_http1_connection(p, s + v, e - v, cut);
        }
        break;
    case 11:
        if (strncasecmp(s, "Retry-After", 11) == 0) {
            tg_http1_retry_after(p, s + v, e - v, cut);
        }
        break;
    case 12:
        if (strncasecmp(s, "Content-Type", 12) == 0) {
            if (cut || e - v > TG__HTTP1_CONTENT_TYPE_MAX) {
                return tg_http1_malformed(diag,
                                          "the Content-Type header is too "
                                          "long");
            }
            memcpy(p->head.content_type, s + v, e - v);
            p->head.content_type[e - v] = '\0';
            p->head.has_content_type = 1;
        }
        break;
    case 14:
        if (strncasecmp(s, "Content-Length", 14) == 0) {
            return tg_http1_content_length(p, s + v, e - v, cut, diag);
        }
        break;
    case 17:
        if (strncasecmp(s, "Transfer-Encoding", 17) == 0) {
            /* Only chunked, once: a coding we cannot undo is no body. */
            if (p->head.te_seen || cut || e - v != 7 ||
                strncasecmp(s + v, "chunked", 7) != 0) {
                return tg_http1_malformed(diag,
                                          "a Transfer-Encoding other than "
                                          "chunked");
            }
            p->head.te_seen = 1;
            p->head.chunked = 1;
        }
        break;
    default:
        break;
    }
    return TG_OK;
}

/* Digits only; a second Content-Length must say the same. */
static tg_err_t
tg_http1_content_length(tg__http1_t *p, const char *v, size_t n, int cut,
                        tg_diag_t *diag)
{
    size_t value = 0, k;

    if (cut || n == 0) {
        return tg_http1_malformed(diag, "a bad Content-Length");
    }
    for (k = 0; k < n; k++) {
        if (v[k] < '0' || v[k] > '9') {
            return tg_http1_malformed(diag, "a bad Content-Length");
        }
        if (value > (SIZE_MAX - (size_t) (v[k] - '0')) / 10) {
            return tg_http1_malformed(diag, "a Content-Length too large");
        }
        value = value * 10 + (size_t) (v[k] - '0');
    }
    if (p->head.has_length && p->head.length != value) {
        return tg_http1_malformed(diag, "two different Content-Length values");
    }
    p->head.has_length = 1;
    p->head.length = value;
    return TG_OK;
}

/* The close and keep-alive tokens of a comma list, in any case.  A value
 * too long to read whole counts as close. */
static void
tg_http1_connection(tg__http1_t *p, const char *v, size_t n, int cut)
{
    size_t a = 0, b, e;

    if (cut) {
        p->head.conn_close = 1;
        return;
    }
    while (a < n) {
        for (b = a; b < n && v[b] != ','; b++) {
        }
        for (e = b; e > a && (v[e - 1] == ' ' || v[e - 1] == '\t'); e--) {
        }
        while (a < e && (v[a] == ' ' || v[a] == '\t')) {
            a++;
        }
        if (e - a == 5 && strncasecmp(v + a, "close", 5) == 0) {
            p->head.conn_close = 1;
        } else if (e - a == 10 && strncasecmp(v + a, "keep-alive", 10) == 0) {
            p->head.conn_keepalive = 1;
        }
        a = b + 1;
    }
}

/* As curl.c's header callback: an unparseable date is 0. */
static void
tg_http1_date(tg__http1_t *p, const char *v, size_t n, int cut)
{
    char value[TG_HTTP1_DATE_MAX];
    time_t t;

    if (!p->want_date || cut || n == 0 || n >= sizeof(value)) {
        return;
    }
    memcpy(value, v, n);
    value[n] = '\0';
    t = curl_getdate(value, NULL);
    p->head.server_date = t > 0 ? t : 0;
}

/* Seconds, or an HTTP-date minus now (CURLINFO_RETRY_AFTER); anything
 * else is none (0). */
static void
tg_http1_retry_after(tg__http1_t *p, const char *v, size_t n, int cut)
{
    char value[TG_HTTP1_DATE_MAX];
    long long secs = 0;
    size_t k;
    time_t t;

    p->head.retry_after = 0;
    if (cut || n == 0 || n >= sizeof(value)) {
        return;
    }
    for (k = 0; k < n && v[k] >= '0' && v[k] <= '9'; k++) {
    }
    if (k == n) {
        for (k = 0; k < n; k++) {
            if (secs > (LLONG_MAX - 9) / 10) {
                secs = LLONG_MAX;
                break;
            }
            secs = secs * 10 + (v[k] - '0');
        }
        p->head.retry_after = secs;
        return;
    }
    memcpy(value, v, n);
    value[n] = '\0';
    t = curl_getdate(value, NULL);
    if (t != -1) {
        p->head.retry_after = (long long) t - (long long) time(NULL);
    }
}

/* The blank line: skip a 1xx answer, else find how the body ends. */
static tg_err_t
tg_http1_head_end(tg__http1_t *p, tg_diag_t *diag)
{
    if (p->head.status < 200) {
        p->state = TG_H1_STATUS;
    } else if (p->head.status == 204 || p->head.status == 304) {
        p->state = TG_H1_DONE;
    } else if (p->head.chunked) {
        p->state = TG_H1_CHUNK_SIZE;
        p->remaining = 0;
        p->chunk_line = 0;
        p->chunk_digits = 0;
    } else if (p->head.has_length) {
        /* CURLOPT_MAXFILESIZE: refused before any byte of the body. */
        if (p->head.length > p->body_max) {
            return tg_http1_too_large(p, diag);
        }
        p->remaining = p->head.length;
        p->state = p->head.length != 0 ? TG_H1_LENGTH : TG_H1_DONE;
    } else {
        p->state = TG_H1_CLOSE;
    }
    return TG_OK;
}

/* The LF of a chunk-size line: the last chunk, or data to read. */
static tg_err_t
tg_http1_chunk_size_end(tg__http1_t *p, tg_diag_t *diag)
{
    p->chunk_line = 0;
    p->chunk_digits = 0;
    if (p->remaining == 0) {
        p->state = TG_H1_TRAILER;
        return TG_OK;
    }
    if (p->remaining > p->body_max - p->body_len) {
        return tg_http1_too_large(p, diag);
    }
    p->state = TG_H1_CHUNK_DATA;
    return TG_OK;
}

static tg_err_t
tg_http1_body(tg__http1_t *p, const char *data, size_t n, tg_diag_t *diag)
{
    tg_err_t err;

    err = tg__http1_body_append(&p->body, &p->body_len, &p->body_cap,
                                p->body_max, data, n);
    if (err == TG_PROTOCOL) {
        return tg_http1_too_large(p, diag);
    }
    if (err != TG_OK) {
        return tg__fail(diag, TG_NOMEM,
                        "cannot store the response: out of memory");
    }
    return TG_OK;
}

/* Delimited, and the connection's version and Connection allow reuse. */
static int
tg_http1_reusable(const tg__http1_t *p)
{
    int delimited = p->head.status == 204 || p->head.status == 304 ||
                    p->head.chunked || p->head.has_length;

    if (!delimited || (p->head.chunked && p->head.has_length) ||
        p->head.conn_close) {
        return 0;
    }
    return !p->head.http10 || p->head.conn_keepalive;
}

/* A hex digit's value, -1 for another byte (bit 5 set folds only A-F
 * onto a-f). */
static int
tg_http1_hex(unsigned char c)
{
    unsigned char lower = (unsigned char) (c | 0x20);

    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    return lower >= 'a' && lower <= 'f' ? lower - 'a' + 10 : -1;
}
