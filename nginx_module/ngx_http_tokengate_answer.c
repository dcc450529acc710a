
/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_answer.c: what ngx_http_tokengate_module's access
 * check concludes for a request, and how nginx answers it.  The server's
 * answer becomes an outcome (ngx_http_tokengate_decide for an error,
 * ngx_http_tokengate_verdict for an accepted identity, with the rules,
 * tokengate_require_group and the identity kept for the $tokengate_*
 * variables), and the outcome becomes nginx's answer
 * (ngx_http_tokengate_answer, the one place that chooses a status and its
 * headers: tokengate_require, WWW-Authenticate, the tokengate_login_url
 * redirect, Retry-After, $remote_user).  ngx_http_tokengate_module.c
 * calls in here once a request is decided, from the cache, a validation
 * or the fleet's shared cache; nothing here makes a call or waits.
 */


#include "ngx_http_tokengate.h"


static ngx_int_t ngx_http_tokengate_groups_ok(
    ngx_http_tokengate_loc_conf_t *tlcf, tg_identity_t *id);
static ngx_int_t ngx_http_tokengate_require_ok(ngx_http_request_t *r,
    ngx_http_tokengate_loc_conf_t *tlcf);
static ngx_int_t ngx_http_tokengate_www_authenticate(ngx_http_request_t *r,
    ngx_str_t *realm, const char *error);
static ngx_int_t ngx_http_tokengate_login(ngx_http_request_t *r,
    ngx_str_t *url);


/* $tokengate_result of each outcome (NGX_HTTP_TOKENGATE_VALID, ...), in
 * the order of the counters in ngx_http_tokengate_stats_t. */
ngx_str_t  ngx_http_tokengate_results[] = {
    ngx_string("valid"),
    ngx_string("missing"),
    ngx_string("malformed"),
    ngx_string("invalid"),
    ngx_string("forbidden"),
    ngx_string("unavailable"),
    ngx_string("limited")
};


/* Set the outcome and $tokengate_result with it. */
void
ngx_http_tokengate_outcome(ngx_http_tokengate_ctx_t *ctx, ngx_uint_t outcome)
{
    ctx->outcome = outcome;
    ctx->result = ngx_http_tokengate_results[outcome];
}


/* One request's answer from the validation's outcome (its own location's
 * rules apply). */
void
ngx_http_tokengate_decide(ngx_http_tokengate_ctx_t *ctx, tg_err_t err,
    tg_identity_t *id, tg_diag_t *diag, long retry_after)
{
    ngx_http_request_t             *r;
    ngx_http_tokengate_loc_conf_t  *tlcf;

    r = ctx->request;
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tokengate_module);

    switch (err) {

    case TG_OK:
        ngx_http_tokengate_verdict(ctx, tlcf, id, 0);
        break;

    case TG_TOKEN_INVALID:
    case TG_REJECTED:
    case TG_NOT_FOUND:
        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_INVALID);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "tokengate: token %s rejected: %s", ctx->fp,
                      diag->message);
        break;

    case TG_FORBIDDEN:
        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_FORBIDDEN);

        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "tokengate: token %s forbidden: %s", ctx->fp,
                      diag->message);
        break;

    default:
        if (ctx->stale
            && tlcf->on_unavailable == NGX_HTTP_TOKENGATE_UNAVAILABLE_STALE
            && ngx_http_tokengate_use_stale(ctx, tlcf) == NGX_OK)
        {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "tokengate: token %s: the auth server failed "
                          "(err=%s): %s; deciding from a stale cache entry",
                          ctx->fp, tg_err_name(err), diag->message);
            break;
        }

        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_UNAVAILABLE);
        ctx->retry_after = retry_after;

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tokengate: token %s: the auth server failed "
                      "(err=%s): %s",
                      ctx->fp, tg_err_name(err), diag->message);
        break;
    }
}


/* The server accepted the token: apply the rules, keep the identity
 * (pooled: see ngx_http_tokengate_keep_identity). */
void
ngx_http_tokengate_verdict(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf, tg_identity_t *id, ngx_uint_t pooled)
{
    tg_diag_t            diag;
    ngx_http_request_t  *r;

    r = ctx->request;

    /* allow only on a parsed identity with a user id */

    if (id == NULL || id->id == NULL || id->id[0] == '\0') {
        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_UNAVAILABLE);

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tokengate: token %s: the answer has no user id",
                      ngx_http_tokengate_fp(ctx));
        return;
    }

    /* as in get_token: the diagnostic only for a denial */

    if (tg_rules_check(tlcf->tg, id, NULL) != TG_OK) {
        tg_diag_clear(&diag);
        (void) tg_rules_check(tlcf->tg, id, &diag);

        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_FORBIDDEN);

        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "tokengate: token %s forbidden: %s",
                      ngx_http_tokengate_fp(ctx), diag.message);
        return;
    }

    if (ngx_http_tokengate_groups_ok(tlcf, id) != NGX_OK) {
        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_FORBIDDEN);

        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "tokengate: token %s forbidden: "
                      "tokengate_require_group not satisfied",
                      ngx_http_tokengate_fp(ctx));
        return;
    }

    if (ngx_http_tokengate_keep_identity(r, ctx, id, pooled) != NGX_OK) {
        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_UNAVAILABLE);
        return;
    }

    ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_VALID);
    ctx->allowed = 1;
}


static ngx_int_t
ngx_http_tokengate_groups_ok(ngx_http_tokengate_loc_conf_t *tlcf,
    tg_identity_t *id)
{
    size_t       j;
    ngx_str_t   *group;
    ngx_uint_t   i, found;

    if (tlcf->groups == NULL || tlcf->groups->nelts == 0) {
        return NGX_OK;
    }

    if (!id->has_profile) {
        return NGX_DECLINED;
    }

    group = tlcf->groups->elts;

    for (i = 0; i < tlcf->groups->nelts; i++) {

        found = 0;

        for (j = 0; j < id->n_groups; j++) {
            if (id->groups[j] != NULL
                && ngx_strlen(id->groups[j]) == group[i].len
                && ngx_strncmp(id->groups[j], group[i].data, group[i].len)
                   == 0)
            {
                found = 1;
                break;
            }
        }

        if (found && tlcf->groups_mode == NGX_HTTP_TOKENGATE_GROUPS_ANY) {
            return NGX_OK;
        }

        if (!found && tlcf->groups_mode == NGX_HTTP_TOKENGATE_GROUPS_ALL) {
            return NGX_DECLINED;
        }
    }

    return tlcf->groups_mode == NGX_HTTP_TOKENGATE_GROUPS_ALL
           ? NGX_OK : NGX_DECLINED;
}


/*
 * The one place an outcome becomes nginx's answer (as pam_code() is for
 * PAM), after tokengate_require and with the request counted:
 *
 *   VALID        the phases go on; $remote_user is the user
 *   MISSING      401, WWW-Authenticate: Bearer realm="..."
 *   MALFORMED    400, ... error="invalid_request"
 *   INVALID      401, ... error="invalid_token"
 *   FORBIDDEN    403, ... error="insufficient_scope"; a failed
 *                tokengate_require answers its own status (401 with
 *                error="invalid_token", or 403)
 *   UNAVAILABLE  503, with Retry-After when the server advised one
 *   LIMITED      429, Retry-After: when tokengate_fail_limit allows the
 *                client one more refusal
 *
 * A 401 is a 302 to tokengate_login_url instead for a browser's GET or
 * HEAD.  The outcomes come from the token's syntax (MISSING, MALFORMED),
 * from the server's error (ngx_http_tokengate_decide: a rejected or
 * unknown token is INVALID, TG_FORBIDDEN is FORBIDDEN, any other failure
 * -- a timeout, a refused connection, TLS, a broken answer -- is
 * UNAVAILABLE unless tokengate_on_unavailable stale answers) and from the
 * rules on an accepted identity (FORBIDDEN); LIMITED from
 * tokengate_fail_limit, before anything else.  An INVALID answer is one
 * more refusal for tokengate_fail_limit.  tokengate_logout answers its
 * refusals here too, with a ctx of its own.
 */
ngx_int_t
ngx_http_tokengate_answer(ngx_http_request_t *r, ngx_http_tokengate_ctx_t *ctx)
{
    ngx_int_t                        rc, status;
    ngx_str_t                        url;
    const char                      *error;
    ngx_table_elt_t                 *h;
    ngx_http_variable_value_t       *vv;
    ngx_http_tokengate_loc_conf_t   *tlcf;
    ngx_http_tokengate_main_conf_t  *tmcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tokengate_module);

    if (ctx->outcome == NGX_HTTP_TOKENGATE_VALID && tlcf->require != NULL) {
        rc = ngx_http_tokengate_require_ok(r, tlcf);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc != NGX_OK) {
            /* denied: the identity goes */
            ctx->allowed = 0;
            ctx->require_failed = 1;
            ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_FORBIDDEN);

            ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                          "tokengate: token %s: tokengate_require not "
                          "satisfied", ctx->fp);
        }
    }

    ngx_http_tokengate_count(r, ctx);

    if (ctx->outcome == NGX_HTTP_TOKENGATE_INVALID) {
        ngx_http_tokengate_limit_refused(r, ctx, tlcf);
    }

    if (ctx->outcome == NGX_HTTP_TOKENGATE_VALID && !ctx->allowed) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "tokengate: no accepted validation behind an OK, "
                      "answering 503");
        ctx->outcome = NGX_HTTP_TOKENGATE_UNAVAILABLE;
    }

    switch (ctx->outcome) {

    case NGX_HTTP_TOKENGATE_VALID:
        tmcf = ngx_http_get_module_main_conf(r, ngx_http_tokengate_module);

        if (tmcf->remote_user_index != NGX_ERROR) {
            vv = &r->variables[tmcf->remote_user_index];
            vv->len = ctx->user.len;
            vv->data = ctx->user.data;
            vv->valid = 1;
            vv->no_cacheable = 0;
            vv->not_found = 0;
        }

        return NGX_OK;

    case NGX_HTTP_TOKENGATE_MISSING:
        status = NGX_HTTP_UNAUTHORIZED;
        error = NULL;
        break;

    case NGX_HTTP_TOKENGATE_MALFORMED:
        status = NGX_HTTP_BAD_REQUEST;
        error = "invalid_request";
        break;

    case NGX_HTTP_TOKENGATE_INVALID:
        status = NGX_HTTP_UNAUTHORIZED;
        error = "invalid_token";
        break;

    case NGX_HTTP_TOKENGATE_FORBIDDEN:
        status = ctx->require_failed ? tlcf->require_error
                                     : NGX_HTTP_FORBIDDEN;
        error = status == NGX_HTTP_UNAUTHORIZED ? "invalid_token"
                                                : "insufficient_scope";
        break;

    case NGX_HTTP_TOKENGATE_LIMITED:
        if (ngx_http_tokengate_retry_after(r, ctx->retry_after) != NGX_OK) {
            return NGX_ERROR;
        }

        return NGX_HTTP_TOO_MANY_REQUESTS;

    default: /* NGX_HTTP_TOKENGATE_UNAVAILABLE */
        if (ctx->retry_after > 0
            && ngx_http_tokengate_retry_after(r, ctx->retry_after) != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    if (status == NGX_HTTP_UNAUTHORIZED) {
        rc = ngx_http_tokengate_login(r, &url);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK) {
            ngx_http_clear_location(r);

            h = ngx_http_tokengate_header(r, "Location", &url);
            if (h == NULL) {
                return NGX_ERROR;
            }

            r->headers_out.location = h;

            return NGX_HTTP_MOVED_TEMPORARILY;
        }
    }

    if (ngx_http_tokengate_www_authenticate(r, &ctx->realm, error)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return status;
}


/* tokengate_require: every value non-empty and not "0", evaluated once
 * the token was accepted (so it may use $tokengate_* variables). */
static ngx_int_t
ngx_http_tokengate_require_ok(ngx_http_request_t *r,
    ngx_http_tokengate_loc_conf_t *tlcf)
{
    ngx_str_t                  val;
    ngx_uint_t                 i;
    ngx_http_complex_value_t  *cv;

    cv = tlcf->require->elts;

    for (i = 0; i < tlcf->require->nelts; i++) {
        if (ngx_http_complex_value(r, &cv[i], &val) != NGX_OK) {
            return NGX_ERROR;
        }

        if (val.len == 0 || (val.len == 1 && val.data[0] == '0')) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* Add WWW-Authenticate: Bearer realm="..."[, error="..."]; the realm's
 * quotes and backslashes are escaped. */
static ngx_int_t
ngx_http_tokengate_www_authenticate(ngx_http_request_t *r, ngx_str_t *realm,
    const char *error)
{
    u_char           *p;
    size_t            len, i;
    ngx_str_t         value;
    ngx_table_elt_t  *h;

    len = sizeof("Bearer realm=\"\"") - 1 + realm->len * 2;

    if (error != NULL) {
        len += sizeof(", error=\"\"") - 1 + ngx_strlen(error);
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value.data = p;

    p = ngx_cpymem(p, "Bearer realm=\"", sizeof("Bearer realm=\"") - 1);

    for (i = 0; i < realm->len; i++) {

        /* The realm may come from variables ($uri is decoded): a CR, LF
         * or other control byte would split the header. */
        if (realm->data[i] < 0x20 || realm->data[i] == 0x7f) {
            *p++ = '?';
            continue;
        }

        if (realm->data[i] == '"' || realm->data[i] == '\\') {
            *p++ = '\\';
        }

        *p++ = realm->data[i];
    }

    *p++ = '"';

    if (error != NULL) {
        p = ngx_cpymem(p, ", error=\"", sizeof(", error=\"") - 1);
        p = ngx_cpymem(p, error, ngx_strlen(error));
        *p++ = '"';
    }

    value.len = p - value.data;

    h = ngx_http_tokengate_header(r, "WWW-Authenticate", &value);
    if (h == NULL) {
        return NGX_ERROR;
    }

    r->headers_out.www_authenticate = h;

    return NGX_OK;
}


/* The tokengate_login_url a 401 becomes a 302 to (NGX_OK): for GET/HEAD
 * requests that accept text/html; API clients keep their 401
 * (NGX_DECLINED). */
static ngx_int_t
ngx_http_tokengate_login(ngx_http_request_t *r, ngx_str_t *url)
{
    ngx_uint_t                      i, html;
    ngx_list_part_t                *part;
    ngx_table_elt_t                *h;
    ngx_http_tokengate_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tokengate_module);

    if (tlcf->login_url == NULL
        || !(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)))
    {
        return NGX_DECLINED;
    }

    html = 0;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Accept") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Accept",
                               sizeof("Accept") - 1) == 0
            && ngx_strlcasestrn(h[i].value.data,
                                h[i].value.data + h[i].value.len,
                                (u_char *) "text/html",
                                sizeof("text/html") - 2) != NULL)
        {
            html = 1;
            break;
        }
    }

    if (!html) {
        return NGX_DECLINED;
    }

    if (ngx_http_complex_value(r, tlcf->login_url, url) != NGX_OK) {
        return NGX_ERROR;
    }

    /* A login URL built from variables must not split the header: keep
     * the 401 instead. */
    for (i = 0; i < url->len; i++) {
        if (url->data[i] < 0x20 || url->data[i] == 0x7f) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "tokengate: login url has a control byte, "
                          "answering 401");
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_tokengate_retry_after(ngx_http_request_t *r, long seconds)
{
    ngx_str_t  value;

    value.data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    value.len = ngx_sprintf(value.data, "%l", seconds) - value.data;

    if (ngx_http_tokengate_header(r, "Retry-After", &value) == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* Add a response header; the value is not copied. */
ngx_table_elt_t *
ngx_http_tokengate_header(ngx_http_request_t *r, char *key, ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NULL;
    }

    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value = *value;

    return h;
}


ngx_uint_t
ngx_http_tokengate_allowed(ngx_http_request_t *r)
{
    ngx_http_tokengate_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_tokengate_module);

    return ctx != NULL && ctx->allowed
           && ctx->outcome == NGX_HTTP_TOKENGATE_VALID;
}
