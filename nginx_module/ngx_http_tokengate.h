/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate.h: what the files of the tokengate nginx module share
 * (internal; not installed).
 *
 * ngx_http_tokengate_module.c owns the access check, the shared counters
 * and the worker's curl multi handle.  Other parts of the module (the
 * tokengate_embed handler) make their own HTTP calls to the BI server on
 * that multi handle through ngx_http_tokengate_call(), read the identity
 * the access phase accepted through ngx_http_tokengate_allowed() and the
 * $tokengate_* variables, and count what they do in tokengate_status.
 */


#ifndef _NGX_HTTP_TOKENGATE_H_INCLUDED_
#define _NGX_HTTP_TOKENGATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <tokengate.h>


/* The counters of tokengate_status for tokengate_embed. */
#define NGX_HTTP_TOKENGATE_EMBED_LOCAL     0    /* 302 to a URL signed here */
#define NGX_HTTP_TOKENGATE_EMBED_SERVER    1    /* 302 to a URL from Looker */
#define NGX_HTTP_TOKENGATE_EMBED_REFUSED   2    /* 4xx: not for this client */
#define NGX_HTTP_TOKENGATE_EMBED_FAILED    3    /* 5xx: Looker or nginx */
#define NGX_HTTP_TOKENGATE_EMBED_N         4


typedef struct ngx_http_tokengate_loc_conf_s  ngx_http_tokengate_loc_conf_t;

/* One HTTP call in flight; opaque outside ngx_http_tokengate_module.c. */
typedef struct ngx_http_tokengate_ctx_s  ngx_http_tokengate_call_t;

/*
 * The end of a call, through the path the access check's validations take
 * too (ngx_http_tokengate_complete): run once libcurl's callbacks have
 * returned, never from libcurl's stack, so it may start new calls and
 * finalize requests.  err is TG_OK when an
 * HTTP answer came (any status: resp holds it, borrowed until the handler
 * returns); otherwise the transfer's error from common/curl_error.c (the
 * map the CLI and PAM use: TG_TIMEOUT, TG_UNAVAILABLE, TG_TLS, TG_PROTOCOL
 * for a broken or too large answer, ...) with its reason, and resp is
 * NULL.  sent_at is when the request was sent.  The call is freed after
 * the handler returns.
 */
typedef void (*ngx_http_tokengate_call_pt)(void *data, tg_err_t err,
    tg_response_t *resp, time_t sent_at, const char *reason);


/* Shared between the module's files only: not exported from the .so. */
#pragma GCC visibility push(hidden)


/*
 * Send req (the call takes it over and wipes it) to the server of tlcf on
 * the worker's multi handle, with tlcf's timeouts and TLS settings.  The
 * call does not belong to a request: whoever holds it cancels it when it
 * is no longer wanted.  NULL on failure (req is wiped then too).
 */
ngx_http_tokengate_call_t *ngx_http_tokengate_call(
    ngx_http_tokengate_loc_conf_t *tlcf, tg_request_t *req, ngx_log_t *log,
    ngx_http_tokengate_call_pt handler, void *data);

/* Stop a call whose handler has not run yet and free it; the handler will
 * not run. */
void ngx_http_tokengate_call_cancel(ngx_http_tokengate_call_t *call);

/* The request (its main request) was let through by tokengate's access
 * check with an identity: 1, else 0. */
ngx_uint_t ngx_http_tokengate_allowed(ngx_http_request_t *r);

/* Configuration time: is "tokengate" on (not absent, not a literal off)
 * in this merged location conf, and which tokengate.conf applies. */
ngx_uint_t ngx_http_tokengate_conf_on(ngx_http_tokengate_loc_conf_t *tlcf);
tg_config_t *ngx_http_tokengate_conf_tg(ngx_http_tokengate_loc_conf_t *tlcf);

/* Count one tokengate_embed answer (NGX_HTTP_TOKENGATE_EMBED_*). */
void ngx_http_tokengate_embed_count(ngx_http_request_t *r, ngx_uint_t what);

/* Add "Retry-After: seconds" to the response headers. */
ngx_int_t ngx_http_tokengate_retry_after(ngx_http_request_t *r, long seconds);

#pragma GCC visibility pop


extern ngx_module_t  ngx_http_tokengate_module;
extern ngx_module_t  ngx_http_tokengate_embed_module;


#endif /* _NGX_HTTP_TOKENGATE_H_INCLUDED_ */
