/* SPDX-License-Identifier: MIT */
/*
 * tg_curl.h - the one libcurl layer (tg__ names) under the two HTTP
 * transports: the blocking one (transport.c, for the CLI and PAM) and the
 * nginx module's multi-socket one, which links the same archive.  Not
 * installed.  curl.c sets up an easy handle with every option and limit and
 * owns the capped body and header buffers; curl_error.c maps a failed
 * transfer to a tg_err_t.  All the libcurl discipline of the project
 * (STYLE.md rule 9) is in these two files.
 *
 * The one map from a failed transfer to a tg_err_t lives here, so that one
 * fault of the server is one error in every front end (the CLI's exit code,
 * PAM's return code, nginx's status and every log line's err= name).
 */
#ifndef TG_CURL_H
#define TG_CURL_H

#include <stddef.h>
#include <time.h>

#include <curl/curl.h>

#include "tokengate.h"

/* ---------------------------------------------------------------------- */
/* The easy-handle layer (curl.c)                                         */
/* ---------------------------------------------------------------------- */

/*
 * Response headers are small (a status line, a date, a type, a length);
 * anything past these limits is a hostile or broken server (F10).  One
 * limit for every front end: 32 KiB leaves room for the cookies a load
 * balancer in front of the server may add (it is nginx's own default for
 * a client's request headers, 4 x 8k).
 */
#define TG__CURL_HEADER_BYTES_MAX 32768
#define TG__CURL_HEADER_LINES_MAX 100

/* A certificate is only checked at connect: no connection is reused for
 * longer than this, in seconds (SECURITY.md 3.4). */
#define TG__CURL_MAXLIFETIME_CONN 300L

/* Request header lines are built in fixed buffers (no allocation per
 * transfer, wiped after it); Accept and Content-Type values are short
 * constants of protocol.c. */
#define TG__CURL_TYPE_LINE_MAX 128
#define TG__CURL_AUTH_LINE_MAX (TG_TOKEN_MAX + 64)

/*
 * One easy handle and everything one transfer on it needs: the settings
 * its constant options were set for, curl's error buffer, the request
 * header lines and the capped response buffers.  curl keeps pointers into
 * it (error buffer, callback data, header list), so it must not move while
 * the handle exists: embed it in a heap object.  Zero it before first use;
 * the caller fills easy, cfg, the timeouts and http, then calls
 * tg__curl_setup().
 */
typedef struct tg__curl {
    CURL *easy;
    const tg_config_t *cfg; /* borrowed; outlives the handle's use */
    long connect_timeout_ms;
    long timeout_ms;
    int http;      /* http:// allowed (the URL is http) */
    int want_date; /* remember the answer's Date header */

    char errbuf[CURL_ERROR_SIZE];

    /* the request: "Expect:", then Accept, Content-Type, Authorization */
    struct curl_slist lines[4];
    char accept[TG__CURL_TYPE_LINE_MAX];
    char content_type[TG__CURL_TYPE_LINE_MAX];
    char authorization[TG__CURL_AUTH_LINE_MAX];
    int post;   /* POSTFIELDS point into the caller's request */
    int custom; /* CUSTOMREQUEST is set */

    /* the response: the body is wiped before reuse */
    char *body;
    size_t body_len;
    size_t body_cap;
    size_t body_max;
    int body_overflow;
    size_t header_bytes;
    long header_lines;
    int header_overflow;
    time_t server_date;
} tg__curl_t;

/*
 * curl_global_init(CURL_GLOBAL_DEFAULT), once per process however many
 * times it is called (pthread_once), and never undone; its result.  Call
 * it before the first easy handle, and before threads in a host process
 * that does not own libcurl.
 */
CURLcode tg__curl_global_init(void);

/*
 * Set every constant option of c->easy (after curl_easy_init or
 * curl_easy_reset): NOSIGNAL, allowed protocols, no redirects, TLS
 * verification, the CA bundle (the configured one, else libcurl's own,
 * pinned), the pinned key, the proxy (never from the environment), the
 * timeouts, the body cap, the callbacks, the user agent and the connection
 * lifetime.  TG_INTERNAL naming the option that failed.
 */
tg_err_t tg__curl_setup(tg__curl_t *c, tg_diag_t *diag);

/*
 * Set the per-transfer options from req: URL, method, body and header
 * lines, and forget the previous response.  req (its URL, body and
 * strings) must stay alive until tg__curl_end(); the header lines are
 * copied into c (wiped by tg__curl_end).
 */
tg_err_t tg__curl_request(tg__curl_t *c, const tg_request_t *req,
                          tg_diag_t *diag);

/*
 * The answer of a transfer that completed (CURLE_OK): status, content
 * type, Retry-After (capped by retry_after_max; -1 when none), the Date
 * when asked for, and the body, borrowed from c until the next
 * tg__curl_request() or tg__curl_end().
 */
tg_err_t tg__curl_response(tg__curl_t *c, tg_response_t *resp, tg_diag_t *diag);

/* A failed transfer (rc != CURLE_OK) through the one map below, with the
 * facts of c (its limits, what its callbacks refused). */
tg_err_t tg__curl_failed(tg__curl_t *c, CURLcode rc, tg_diag_t *diag);

/* Wipe the request's header lines (the Authorization one holds a token);
 * the response stays. */
void tg__curl_wipe_request(tg__curl_t *c);

/*
 * The transfer is over (the handle is out of any multi): wipe the header
 * lines and the body, free a body buffer larger than keep bytes, and drop
 * curl's pointers into the caller's request.  0 when the handle may serve
 * another transfer, -1 when an option could not be reset.
 */
int tg__curl_end(tg__curl_t *c, size_t keep);

/* Free the easy handle and the buffers, wiped.  Not c itself. */
void tg__curl_free(tg__curl_t *c);

/* ---------------------------------------------------------------------- */
/* The error map (curl_error.c)                                           */
/* ---------------------------------------------------------------------- */

/*
 * A failed transfer: the CURLcode and the facts the map needs that the
 * CURLcode alone does not tell.  tg__curl_result_read() fills status,
 * os_errno and sent from the easy handle; the transport fills the rest
 * (its callbacks and limits).
 */
typedef struct tg__curl_result {
    CURLcode rc;
    const char *errbuf;  /* CURLOPT_ERRORBUFFER; NULL or "" when unset */
    long status;         /* CURLINFO_RESPONSE_CODE; 0: no status line came */
    long os_errno;       /* CURLINFO_OS_ERRNO */
    int sent;            /* the request went out (pre-transfer time > 0) */
    int https;           /* the URL was https:// */
    int body_overflow;   /* our write callback refused: over body_max */
    int header_overflow; /* our header callback refused: over the caps */
    long body_max;       /* max_response_bytes */
    long header_bytes_max, header_lines_max;
    long connect_timeout_ms, timeout_ms;
} tg__curl_result_t;

/* Fill res->status, res->os_errno and res->sent from easy (the transfer
 * that just ended).  Facts curl cannot give stay 0. */
void tg__curl_result_read(CURL *easy, tg__curl_result_t *res);

/*
 * The one CURLcode -> tg_err_t map.  Records a message naming the cause in
 * diag (NULL is fine; the first error wins), with curl's reason sanitized,
 * never a token (tokens are never in URLs).  Rules that hold across
 * transports: before any status line a dead connection is the server being
 * unavailable; once a status line came, anything broken or too large in
 * the answer is the server's protocol violation (TG_PROTOCOL), including
 * libcurl's own refusal of a header line over its limit, which it reports
 * as CURLE_OUT_OF_MEMORY.  res->rc must not be CURLE_OK.
 */
tg_err_t tg__curl_error(const tg__curl_result_t *res, tg_diag_t *diag);

#endif /* TG_CURL_H */
