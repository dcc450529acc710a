/* SPDX-License-Identifier: MIT */
/*
 * tg_curl.h - what the two HTTP transports share about libcurl (tg__
 * names): the blocking one (transport.c, for the CLI and PAM) and the nginx
 * module's multi-socket one, which links the same archive.  Not installed.
 *
 * The one map from a failed transfer to a tg_err_t lives here, so that one
 * fault of the server is one error in every front end (the CLI's exit code,
 * PAM's return code, nginx's status and every log line's err= name).
 */
#ifndef TG_CURL_H
#define TG_CURL_H

#include <curl/curl.h>

#include "tokengate.h"

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
