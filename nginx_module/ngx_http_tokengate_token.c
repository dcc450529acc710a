
/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_token.c: what a request brings to
 * ngx_http_tokengate_module and what it leaves with: its credentials (a
 * bearer token from tokengate_token or the Authorization header, or Basic
 * client credentials with tokengate_basic), checked for syntax before
 * anything is sent, and the short fingerprint of the token that log lines
 * carry instead of it; then the accepted identity, kept in the request
 * for the $tokengate_* variables.
 */


#include "ngx_http_tokengate.h"


static ngx_int_t ngx_http_tokengate_get_basic(ngx_http_request_t *r,
    ngx_table_elt_t *h, ngx_str_t *creds);
static ngx_int_t ngx_http_tokengate_copy(ngx_http_request_t *r, ngx_str_t *dst,
    const char *src);
static void ngx_http_tokengate_borrow(ngx_str_t *dst, const char *src);
static ngx_int_t ngx_http_tokengate_join_in_place(
    ngx_http_tokengate_ctx_t *ctx, tg_identity_t *id);
static ngx_int_t ngx_http_tokengate_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_tokengate_vars[] = {

    { ngx_string("tokengate_user"), NULL, ngx_http_tokengate_variable,
      offsetof(ngx_http_tokengate_ctx_t, user), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tokengate_user_id"), NULL, ngx_http_tokengate_variable,
      offsetof(ngx_http_tokengate_ctx_t, user_id),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tokengate_email"), NULL, ngx_http_tokengate_variable,
      offsetof(ngx_http_tokengate_ctx_t, email), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tokengate_groups"), NULL, ngx_http_tokengate_variable,
      offsetof(ngx_http_tokengate_ctx_t, groups), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tokengate_result"), NULL, ngx_http_tokengate_variable,
      offsetof(ngx_http_tokengate_ctx_t, result), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tokengate_cache_status"), NULL, ngx_http_tokengate_variable,
      offsetof(ngx_http_tokengate_ctx_t, cache_status),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/* The token's fingerprint (the first bytes of its SHA-256) for log lines.
 * Computing it costs a digest, so only requests that log pay for it. */
char *
ngx_http_tokengate_fp(ngx_http_tokengate_ctx_t *ctx)
{
    if (ctx->fp[0] == '\0') {
        if (ctx->token.data != NULL) {
            tg_fingerprint((char *) ctx->token.data, ctx->token.len, ctx->fp);

        } else {
            /* not reached: every request that may log computes it while
             * the token is there */
            ngx_memcpy(ctx->fp, "????????", TG_FINGERPRINT_SIZE);
        }
    }

    return ctx->fp;
}


/*
 * The token, NUL-terminated in r->pool and checked (the caller wipes it):
 * NGX_OK; NGX_DONE with Basic credentials; NGX_HTTP_UNAUTHORIZED when
 * there are no credentials, NGX_HTTP_BAD_REQUEST when they are malformed.
 */
ngx_int_t
ngx_http_tokengate_get_token(ngx_http_request_t *r,
    ngx_http_tokengate_loc_conf_t *tlcf, ngx_str_t *token)
{
    ngx_int_t  rc;

    rc = ngx_http_tokengate_find_token(r, tlcf, token);

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_tokengate_check_token(r, token);
}


/*
 * The credentials as the access check first takes them: NGX_OK with token
 * pointing at the request's own bytes (the header, or the value of
 * tokengate_token), not copied, not NUL-terminated and not checked yet: a
 * cache lookup needs only their MAC, and a hit means that the same bytes
 * were checked and validated before.  ngx_http_tokengate_check_token
 * copies and checks them for a validation.  NGX_DONE with Basic
 * credentials (decoded and checked, in r->pool: the caller wipes them);
 * NGX_HTTP_UNAUTHORIZED when there are no credentials,
 * NGX_HTTP_BAD_REQUEST when they are malformed.
 */
ngx_int_t
ngx_http_tokengate_find_token(ngx_http_request_t *r,
    ngx_http_tokengate_loc_conf_t *tlcf, ngx_str_t *token)
{
    u_char           *p, *last;
    ngx_str_t         value;
    ngx_table_elt_t  *h;

    if (tlcf->token != NULL) {
        if (ngx_http_complex_value(r, tlcf->token, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        if (value.len == 0) {
            return NGX_HTTP_UNAUTHORIZED;
        }

    } else {
        h = r->headers_in.authorization;

        if (h == NULL) {
            return NGX_HTTP_UNAUTHORIZED;
        }

        p = h->value.data;
        last = p + h->value.len;

        if (tlcf->basic
            && h->value.len >= sizeof("Basic ") - 1
            && ngx_strncasecmp(p, (u_char *) "Basic ", sizeof("Basic ") - 1)
               == 0)
        {
            return ngx_http_tokengate_get_basic(r, h, token);
        }

        /* "Bearer " as clients send it first: ngx_strncasecmp folds the
         * case of each byte */
        if (h->value.len < sizeof("Bearer ") - 1
            || (ngx_strncmp(p, "Bearer ", sizeof("Bearer ") - 1) != 0
                && ngx_strncasecmp(p, (u_char *) "Bearer ",
                                   sizeof("Bearer ") - 1)
                   != 0))
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "tokengate: the Authorization header is not "
                          "\"Bearer\"");
            return NGX_HTTP_BAD_REQUEST;
        }

        p += sizeof("Bearer ") - 1;

        while (p < last && *p == ' ') {
            p++;
        }

        value.data = p;
        value.len = last - p;

        if (value.len == 0) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "tokengate: empty bearer token");
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    if (value.len > TG_TOKEN_MAX) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "tokengate: bearer token longer than %d bytes",
                      TG_TOKEN_MAX);
        return NGX_HTTP_BAD_REQUEST;
    }

    *token = value;

    return NGX_OK;
}


/*
 * The bearer token from ngx_http_tokengate_find_token, before it is sent:
 * copied NUL-terminated into r->pool (the caller wipes the copy) and
 * checked.  NGX_OK with token the copy, NGX_HTTP_BAD_REQUEST when it is
 * malformed (nothing is left to wipe then), NGX_ERROR.
 */
ngx_int_t
ngx_http_tokengate_check_token(ngx_http_request_t *r, ngx_str_t *token)
{
    u_char     *copy;
    tg_diag_t   diag;

    copy = ngx_pnalloc(r->pool, token->len + 1);
    if (copy == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(copy, token->data, token->len);
    copy[token->len] = '\0';

    /* without a diagnostic first (clearing one costs more than the check),
     * then again with one to say why */

    if (tg_token_check((char *) copy, NULL) != TG_OK) {
        tg_diag_clear(&diag);
        (void) tg_token_check((char *) copy, &diag);
        ngx_explicit_memzero(copy, token->len);
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "tokengate: malformed bearer token: %s", diag.message);
        return NGX_HTTP_BAD_REQUEST;
    }

    token->data = copy;

    return NGX_OK;
}


/*
 * tokengate_basic: "Basic base64(client_id:secret)" decoded into creds
 * ("client_id:secret", NUL-terminated, the caller wipes it), or
 * NGX_HTTP_BAD_REQUEST.  NGX_DONE tells the caller these are credentials to
 * exchange for a token, not a token.
 */
static ngx_int_t
ngx_http_tokengate_get_basic(ngx_http_request_t *r, ngx_table_elt_t *h,
    ngx_str_t *creds)
{
    u_char     *p, *last, *colon;
    ngx_str_t   enc;
    tg_diag_t   diag;

    p = h->value.data + sizeof("Basic ") - 1;
    last = h->value.data + h->value.len;

    while (p < last && *p == ' ') {
        p++;
    }

    enc.data = p;
    enc.len = last - p;

    if (enc.len == 0 || enc.len > 4 * ((2 * TG_SECRET_MAX + 3) / 3)) {
        return NGX_HTTP_BAD_REQUEST;
    }

    creds->data = ngx_pnalloc(r->pool, ngx_base64_decoded_length(enc.len) + 1);
    if (creds->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64(creds, &enc) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "tokengate: malformed Basic credentials");
        return NGX_HTTP_BAD_REQUEST;
    }

    creds->data[creds->len] = '\0';

    colon = ngx_strlchr(creds->data, creds->data + creds->len, ':');

    if (colon == NULL || ngx_strlen(creds->data) != creds->len) {
        ngx_explicit_memzero(creds->data, creds->len);
        return NGX_HTTP_BAD_REQUEST;
    }

    /* check both halves in place */

    *colon = '\0';

    tg_diag_clear(&diag);

    if (tg_credential_check((char *) creds->data, "client id", &diag)
        != TG_OK
        || tg_credential_check((char *) colon + 1, "client secret", &diag)
           != TG_OK)
    {
        ngx_explicit_memzero(creds->data, creds->len);
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "tokengate: malformed Basic credentials: %s",
                      diag.message);
        return NGX_HTTP_BAD_REQUEST;
    }

    *colon = ':';

    return NGX_DONE;
}


static ngx_int_t
ngx_http_tokengate_copy(ngx_http_request_t *r, ngx_str_t *dst,
    const char *src)
{
    size_t  len;

    len = src != NULL ? ngx_strlen(src) : 0;

    dst->len = len;
    dst->data = ngx_pnalloc(r->pool, len + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src != NULL ? src : "", len);
    dst->data[len] = '\0';

    return NGX_OK;
}


/*
 * $tokengate_user is libtokengate's choice (tg_identity_user), the same
 * for one token at a location with group rules (auth/currentuser) and one
 * without (auth/user).  pooled: id is a cache entry decoded into r->pool
 * (ngx_http_tokengate_decode), so its strings already live as long as the
 * request and are kept as they are, and its groups, one after the other
 * with a NUL after each, are joined in place; else everything is copied.
 */
ngx_int_t
ngx_http_tokengate_keep_identity(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, tg_identity_t *id, ngx_uint_t pooled)
{
    u_char                         *p;
    size_t                          i, len;
    ngx_http_tokengate_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tokengate_module);

    if (pooled) {
        ngx_http_tokengate_borrow(&ctx->user, tg_identity_user(tlcf->tg, id));
        ngx_http_tokengate_borrow(&ctx->user_id, id->id);
        ngx_http_tokengate_borrow(&ctx->email, id->email);

        if (ngx_http_tokengate_join_in_place(ctx, id) == NGX_OK) {
            return NGX_OK;
        }

    } else if (ngx_http_tokengate_copy(r, &ctx->user,
                                       tg_identity_user(tlcf->tg, id))
               != NGX_OK
               || ngx_http_tokengate_copy(r, &ctx->user_id, id->id) != NGX_OK
               || ngx_http_tokengate_copy(r, &ctx->email, id->email)
                  != NGX_OK)
    {
        return NGX_ERROR;
    }

    len = 0;

    for (i = 0; i < id->n_groups; i++) {
        len += ngx_strlen(id->groups[i]) + 1;
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->groups.data = p;

    for (i = 0; i < id->n_groups; i++) {
        if (i != 0) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, id->groups[i], ngx_strlen(id->groups[i]));
    }

    ctx->groups.len = p - ctx->groups.data;

    return NGX_OK;
}


/* A string of a pooled identity, kept where it is ("" for NULL). */
static void
ngx_http_tokengate_borrow(ngx_str_t *dst, const char *src)
{
    if (src == NULL) {
        ngx_str_set(dst, "");
        return;
    }

    dst->data = (u_char *) src;
    dst->len = ngx_strlen(src);
}


/*
 * $tokengate_groups of a pooled identity: the NULs between its groups
 * become commas when the groups lie one after the other, as decoded from
 * an entry (then id's group strings run into each other: the identity is
 * not read again).  NGX_DECLINED when they do not: the caller copies.
 */
static ngx_int_t
ngx_http_tokengate_join_in_place(ngx_http_tokengate_ctx_t *ctx,
    tg_identity_t *id)
{
    u_char  *first, *p;
    size_t   i;

    if (id->n_groups == 0) {
        ngx_str_set(&ctx->groups, "");
        return NGX_OK;
    }

    first = (u_char *) id->groups[0];
    p = first + ngx_strlen(first);

    for (i = 1; i < id->n_groups; i++) {
        if ((u_char *) id->groups[i] != p + 1) {
            return NGX_DECLINED;
        }

        p += 1 + ngx_strlen(p + 1);
    }

    for (i = 1; i < id->n_groups; i++) {
        *((u_char *) id->groups[i] - 1) = ',';
    }

    ctx->groups.data = first;
    ctx->groups.len = p - first;

    return NGX_OK;
}


/* $tokengate_*: only for allowed requests; $tokengate_result and
 * $tokengate_cache_status (no identity data) always. */
static ngx_int_t
ngx_http_tokengate_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                 *s;
    ngx_http_tokengate_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_tokengate_module);

    if (ctx == NULL
        || (!ctx->allowed
            && data != offsetof(ngx_http_tokengate_ctx_t, result)
            && data != offsetof(ngx_http_tokengate_ctx_t, cache_status)))
    {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (ngx_str_t *) ((char *) ctx + data);

    if (s->data == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


ngx_int_t
ngx_http_tokengate_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_tokengate_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}
