
/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_logout_module: two content handlers that take a token
 * out of tokengate's cache.
 *
 *   tokengate_logout  a user's logout: the request's token, taken as the
 *                     location's access check takes it, is logged out at
 *                     Looker (DELETE /logout, through the module's curl
 *                     multi handle on nginx's event loop) and its entries
 *                     leave every tokengate_cache zone of this nginx;
 *                     204, or 302 to redirect=, with Cache-Control:
 *                     no-store.  No token or one the server does not know:
 *                     the access check's 401 (ngx_http_tokengate_answer).
 *                     The server did not answer: the entries are removed
 *                     all the same, and 503 says the logout did not happen
 *                     there.  Insight has no logout call, and Basic client
 *                     credentials no session: their entries are removed,
 *                     the token stays valid at the server until it
 *                     expires (logged).
 *   tokengate_purge   an administrator's: every entry of the token in the
 *                     request's Authorization header, or of every token
 *                     (?all=1), in one zone (zone=NAME) or in all of them;
 *                     200 {"removed": N}.  Protect it with allow/deny.
 *
 * Both remove a token's entries through ngx_http_tokengate_cache_purge_token
 * (ngx_http_tokengate_cache.c), whose index of tokens finds them whatever
 * the location (the fingerprint) that made them.
 */


#include "ngx_http_tokengate.h"


#define NGX_HTTP_TOKENGATE_LOGOUT_OFF     0
#define NGX_HTTP_TOKENGATE_LOGOUT_ON      1
#define NGX_HTTP_TOKENGATE_PURGE_ON       2


typedef struct {
    ngx_uint_t                      mode;
    ngx_str_t                       redirect;   /* tokengate_logout */
    ngx_shm_zone_t                 *zone;       /* tokengate_purge; NULL:
                                                   every zone */
    ngx_http_tokengate_loc_conf_t  *tlcf;
} ngx_http_tokengate_logout_loc_conf_t;


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_tokengate_ctx_t       *tctx;       /* for the answer */
    ngx_http_tokengate_call_t      *call;
    ngx_str_t                       token;      /* wiped with the pool */
    ngx_uint_t                      removed;
    char                            fp[TG_FINGERPRINT_SIZE];
} ngx_http_tokengate_logout_ctx_t;


static ngx_int_t ngx_http_tokengate_logout_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_tokengate_logout_start(
    ngx_http_tokengate_logout_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf);
static void ngx_http_tokengate_logout_done(void *data, tg_err_t err,
    tg_response_t *resp, time_t sent_at, const char *reason);
static ngx_int_t ngx_http_tokengate_logout_refuse(
    ngx_http_tokengate_logout_ctx_t *ctx, ngx_uint_t outcome,
    ngx_uint_t what);
static ngx_int_t ngx_http_tokengate_logout_ok(ngx_http_request_t *r,
    ngx_http_tokengate_logout_loc_conf_t *llcf);
static void ngx_http_tokengate_logout_cleanup(void *data);
static void ngx_http_tokengate_logout_wipe(void *data);
static ngx_int_t ngx_http_tokengate_purge_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_tokengate_logout_method(ngx_http_request_t *r);
static ngx_int_t ngx_http_tokengate_logout_token(ngx_http_request_t *r,
    ngx_http_tokengate_loc_conf_t *tlcf, ngx_str_t *token,
    ngx_uint_t *basic);
static void *ngx_http_tokengate_logout_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_tokengate_logout_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_tokengate_logout(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_tokengate_purge(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_tokengate_logout_commands[] = {

    { ngx_string("tokengate_logout"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_tokengate_logout,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tokengate_purge"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_tokengate_purge,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_tokengate_logout_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_tokengate_logout_create_loc_conf,
                                           /* create location configuration */
    ngx_http_tokengate_logout_merge_loc_conf
                                           /* merge location configuration */
};


ngx_module_t  ngx_http_tokengate_logout_module = {
    NGX_MODULE_V1,
    &ngx_http_tokengate_logout_module_ctx, /* module context */
    ngx_http_tokengate_logout_commands,    /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_tokengate_logout_no_store =
    ngx_string("no-store");
static ngx_str_t  ngx_http_tokengate_logout_allow =
    ngx_string("GET, POST");


/*
 * tokengate_logout.  The access check, when it is on here, ran first: a
 * request without a token, or with one the server refuses, got its 401
 * there already.  With it off, the handler checks the token's syntax
 * itself and the server's logout answer decides.
 */
static ngx_int_t
ngx_http_tokengate_logout_handler(ngx_http_request_t *r)
{
    ngx_int_t                              rc;
    ngx_str_t                              realm;
    ngx_uint_t                             basic;
    ngx_http_cleanup_t                    *cln;
    ngx_http_tokengate_ctx_t              *actx;
    ngx_http_tokengate_loc_conf_t         *tlcf;
    ngx_http_tokengate_logout_ctx_t       *ctx;
    ngx_http_tokengate_logout_loc_conf_t  *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_tokengate_logout_module);
    tlcf = llcf->tlcf;

    rc = ngx_http_tokengate_logout_method(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (tlcf == NULL || tlcf->tg == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "tokengate_logout: no checked configuration here");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_tokengate_logout_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;

    ctx->tctx = ngx_pcalloc(r->pool, sizeof(ngx_http_tokengate_ctx_t));
    if (ctx->tctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the realm of the access check's 401, or the location's */

    actx = ngx_http_get_module_ctx(r, ngx_http_tokengate_module);
    ngx_str_null(&realm);

    if (actx != NULL) {
        realm = actx->realm;

    } else if (tlcf->realm != NULL
               && ngx_http_complex_value(r, tlcf->realm, &realm) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (realm.len == 3 && ngx_strncmp(realm.data, "off", 3) == 0) {
        ngx_str_null(&realm);
    }

    ctx->tctx->request = r;
    ctx->tctx->realm = realm;
    ctx->tctx->retry_after = -1;

    rc = ngx_http_tokengate_logout_token(r, tlcf, &ctx->token, &basic);

    if (rc == NGX_HTTP_UNAUTHORIZED) {
        return ngx_http_tokengate_logout_refuse(ctx,
                                            NGX_HTTP_TOKENGATE_MISSING,
                                            NGX_HTTP_TOKENGATE_LOGOUT_REFUSED);
    }

    if (rc == NGX_HTTP_BAD_REQUEST) {
        return ngx_http_tokengate_logout_refuse(ctx,
                                            NGX_HTTP_TOKENGATE_MALFORMED,
                                            NGX_HTTP_TOKENGATE_LOGOUT_REFUSED);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    tg_fingerprint((char *) ctx->token.data, ctx->token.len, ctx->fp);

    /* out of the caches first: while the server is asked, no request is
     * let through from what it said before */

    ctx->removed = ngx_http_tokengate_cache_purge_token(NULL, &ctx->token,
                                                        basic,
                                                        r->connection->log);

    if (basic || tlcf->tg->api != TG_API_LOOKER) {
        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "tokengate_logout: %s %s: %ui cache entries removed; "
                      "%s, so it stays valid at the server until it expires",
                      basic ? "credentials" : "token", ctx->fp, ctx->removed,
                      basic ? "Basic client credentials have no session"
                            : "Insight has no logout call");

        ngx_http_tokengate_logout_count(r, NGX_HTTP_TOKENGATE_LOGOUT_LOCAL,
                                        1);

        return ngx_http_tokengate_logout_ok(r, llcf);
    }

    /* Looker: the answer comes from the event loop */

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_tokengate_logout_cleanup;
    cln->data = ctx;

    if (ngx_http_tokengate_logout_start(ctx, tlcf) != NGX_OK) {
        return ngx_http_tokengate_logout_refuse(ctx,
                                            NGX_HTTP_TOKENGATE_UNAVAILABLE,
                                            NGX_HTTP_TOKENGATE_LOGOUT_FAILED);
    }

    r->main->count++;

    /* notice a client that goes away: the cleanup cancels the call */

    r->read_event_handler = ngx_http_test_reading;

    if (r->connection->read->ready) {
        ngx_post_event(r->connection->read, &ngx_posted_events);
    }

    return NGX_DONE;
}


/* DELETE /logout with the token, on the worker's multi handle. */
static ngx_int_t
ngx_http_tokengate_logout_start(ngx_http_tokengate_logout_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf)
{
    tg_diag_t            diag;
    tg_request_t         req;
    ngx_http_request_t  *r;

    r = ctx->request;

    ngx_memzero(&req, sizeof(tg_request_t));
    tg_diag_clear(&diag);

    if (tg_build_logout(tlcf->tg, (char *) ctx->token.data, &req, &diag)
        != TG_OK)
    {
        tg_request_clear(&req);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tokengate_logout: token %s: %s", ctx->fp,
                      diag.message);
        return NGX_ERROR;
    }

    ctx->call = ngx_http_tokengate_call(tlcf, &req, r->connection->log,
                                        ngx_http_tokengate_logout_done, ctx);
    if (ctx->call == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Looker answered, or did not: the token's entries go again (a request
 * validated while the logout ran may have stored one), then 204 or 302
 * when Looker logged the token out, the access check's 401 when it does
 * not know the token, 503 for anything else: the user must know that the
 * token may still be valid at the server.
 */
static void
ngx_http_tokengate_logout_done(void *data, tg_err_t err, tg_response_t *resp,
    time_t sent_at, const char *reason)
{
    ngx_http_tokengate_logout_ctx_t *ctx = data;

    ngx_int_t                              rc;
    tg_diag_t                              diag;
    ngx_connection_t                      *c;
    ngx_http_request_t                    *r;
    ngx_http_tokengate_logout_loc_conf_t  *llcf;

    ctx->call = NULL;

    r = ctx->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_tokengate_logout_module);

    tg_diag_clear(&diag);

    if (err == TG_OK) {
        err = tg_parse_logout(llcf->tlcf->tg, resp, &diag);
        ctx->tctx->retry_after = diag.retry_after > 0 ? diag.retry_after
                                                      : resp->retry_after;
        reason = diag.message;
    }

    ctx->removed += ngx_http_tokengate_cache_purge_token(NULL, &ctx->token,
                                                         0, c->log);

    switch (err) {

    case TG_OK:
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "tokengate_logout: token %s logged out, %ui cache "
                      "entries removed", ctx->fp, ctx->removed);

        ngx_http_tokengate_logout_count(r, NGX_HTTP_TOKENGATE_LOGOUT_SERVER,
                                        1);

        rc = ngx_http_tokengate_logout_ok(r, llcf);
        break;

    case TG_TOKEN_INVALID:
    case TG_REJECTED:
    case TG_NOT_FOUND:
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "tokengate_logout: token %s rejected: %s", ctx->fp,
                      reason);

        rc = ngx_http_tokengate_logout_refuse(ctx,
                                            NGX_HTTP_TOKENGATE_INVALID,
                                            NGX_HTTP_TOKENGATE_LOGOUT_REFUSED);
        break;

    default:
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "tokengate_logout: token %s: the auth server did not "
                      "log it out (err=%s): %s; %ui cache entries removed",
                      ctx->fp, tg_err_name(err), reason, ctx->removed);

        rc = ngx_http_tokengate_logout_refuse(ctx,
                                            NGX_HTTP_TOKENGATE_UNAVAILABLE,
                                            NGX_HTTP_TOKENGATE_LOGOUT_FAILED);
        break;
    }

    r->read_event_handler = ngx_http_block_reading;

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* A refusal, through the access check's one answer (401 with its
 * challenge or the login redirect, 400, 503 with Retry-After). */
static ngx_int_t
ngx_http_tokengate_logout_refuse(ngx_http_tokengate_logout_ctx_t *ctx,
    ngx_uint_t outcome, ngx_uint_t what)
{
    ngx_int_t  rc;

    ngx_http_tokengate_outcome(ctx->tctx, outcome);
    ngx_http_tokengate_logout_count(ctx->request, what, 1);

    rc = ngx_http_tokengate_answer(ctx->request, ctx->tctx);

    return rc == NGX_ERROR ? NGX_HTTP_INTERNAL_SERVER_ERROR : rc;
}


/* Logged out: 204, or 302 to redirect=. */
static ngx_int_t
ngx_http_tokengate_logout_ok(ngx_http_request_t *r,
    ngx_http_tokengate_logout_loc_conf_t *llcf)
{
    ngx_table_elt_t  *h;

    if (llcf->redirect.len != 0) {
        ngx_http_clear_location(r);

        h = ngx_http_tokengate_header(r, "Location", &llcf->redirect);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        r->headers_out.location = h;

        return NGX_HTTP_MOVED_TEMPORARILY;
    }

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    /* header_only: nothing follows the header */
    return ngx_http_send_header(r);
}


/* The request goes away: stop the call. */
static void
ngx_http_tokengate_logout_cleanup(void *data)
{
    ngx_http_tokengate_logout_ctx_t *ctx = data;

    if (ctx->call != NULL) {
        ngx_http_tokengate_call_cancel(ctx->call);
        ctx->call = NULL;

        ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                      "tokengate_logout: token %s: logout cancelled", ctx->fp);
    }
}


static void
ngx_http_tokengate_logout_wipe(void *data)
{
    ngx_str_t *token = data;

    if (token->data != NULL) {
        ngx_explicit_memzero(token->data, token->len);
    }
}


/*
 * tokengate_purge: the token of the Authorization header ("Bearer" or
 * "Basic", as the access check takes them) or, with ?all=1, every token,
 * out of the zone or every zone.
 */
static ngx_int_t
ngx_http_tokengate_purge_handler(ngx_http_request_t *r)
{
    u_char                                *p;
    char                                   fp[TG_FINGERPRINT_SIZE];
    ngx_int_t                              rc, n;
    ngx_buf_t                             *b;
    ngx_str_t                              token, all;
    ngx_uint_t                             basic;
    ngx_chain_t                            out;
    ngx_http_tokengate_loc_conf_t          tlcf;
    ngx_http_tokengate_logout_loc_conf_t  *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_tokengate_logout_module);

    rc = ngx_http_tokengate_logout_method(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_arg(r, (u_char *) "all", 3, &all) == NGX_OK) {
        if (all.len != 1 || all.data[0] != '1') {
            return NGX_HTTP_BAD_REQUEST;
        }

        n = ngx_http_tokengate_cache_purge_all(llcf->zone,
                                               r->connection->log);

        if (llcf->zone != NULL) {
            ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                          "tokengate_purge: %i cache entries removed from "
                          "zone \"%V\"", n, &llcf->zone->shm.name);

        } else {
            ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                          "tokengate_purge: %i cache entries removed from "
                          "every zone", n);
        }

        ngx_http_tokengate_logout_count(r, NGX_HTTP_TOKENGATE_PURGE_ALL, 1);

    } else {
        /* a location's settings with nothing but "tokengate_basic on":
         * the credentials as the access check takes them */

        ngx_memzero(&tlcf, sizeof(ngx_http_tokengate_loc_conf_t));
        tlcf.basic = 1;

        rc = ngx_http_tokengate_logout_token(r, &tlcf, &token, &basic);

        if (rc == NGX_HTTP_UNAUTHORIZED || rc == NGX_HTTP_BAD_REQUEST) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "tokengate_purge: no token to purge in "
                          "\"Authorization\" and no \"all=1\"");
            return NGX_HTTP_BAD_REQUEST;
        }

        if (rc != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        tg_fingerprint((char *) token.data, token.len, fp);

        n = ngx_http_tokengate_cache_purge_token(llcf->zone, &token, basic,
                                                 r->connection->log);

        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "tokengate_purge: %s %s: %i cache entries removed",
                      basic ? "credentials" : "token", fp, n);

        ngx_http_tokengate_logout_count(r, NGX_HTTP_TOKENGATE_PURGE_TOKEN, 1);
    }

    if (n < 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_tokengate_logout_count(r, NGX_HTTP_TOKENGATE_PURGE_ENTRIES,
                                    (ngx_uint_t) n);

    b = ngx_create_temp_buf(r->pool,
                            sizeof("{\"removed\":}\n") + NGX_INT_T_LEN);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(b->last, "{\"removed\":%i}\n", n);
    b->last = p;
    b->last_buf = 1;
    b->last_in_chain = 1;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* What both handlers check first: every answer is no-store; GET and POST
 * only, in a main request; the body is not read.  NGX_OK to go on. */
static ngx_int_t
ngx_http_tokengate_logout_method(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    if (ngx_http_tokengate_header(r, "Cache-Control",
                                  &ngx_http_tokengate_logout_no_store)
        == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_POST))) {
        if (ngx_http_tokengate_header(r, "Allow",
                                      &ngx_http_tokengate_logout_allow)
            == NULL)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_HTTP_NOT_ALLOWED;
    }

    if (r != r->main) {
        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "tokengate: logout and purge refused in a subrequest");
        return NGX_HTTP_FORBIDDEN;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return NGX_OK;
}


/* The token as tlcf's access check takes it (ngx_http_tokengate_get_token),
 * copied so that it lives (and is wiped) with the request's pool. */
static ngx_int_t
ngx_http_tokengate_logout_token(ngx_http_request_t *r,
    ngx_http_tokengate_loc_conf_t *tlcf, ngx_str_t *token, ngx_uint_t *basic)
{
    ngx_int_t            rc;
    ngx_str_t           *keep;
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_str_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    keep = cln->data;
    ngx_str_null(keep);
    cln->handler = ngx_http_tokengate_logout_wipe;

    ngx_str_null(token);
    *basic = 0;

    rc = ngx_http_tokengate_get_token(r, tlcf, token);

    if (rc == NGX_DONE) {
        *basic = 1;
        rc = NGX_OK;
    }

    if (rc == NGX_OK) {
        *keep = *token;
    }

    return rc;
}


static void *
ngx_http_tokengate_logout_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_tokengate_logout_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_tokengate_logout_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->mode = NGX_HTTP_TOKENGATE_LOGOUT_OFF;
     *     conf->redirect = { 0, NULL };
     *     conf->zone = NULL;
     *     conf->tlcf = NULL;
     */

    return conf;
}


/* Checked once the tokengate location configurations are merged (this
 * module comes after ngx_http_tokengate_module). */
static char *
ngx_http_tokengate_logout_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_tokengate_logout_loc_conf_t *conf = child;

    ngx_http_tokengate_loc_conf_t  *tlcf;

    if (conf->mode == NGX_HTTP_TOKENGATE_LOGOUT_OFF) {
        return NGX_CONF_OK;
    }

    tlcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_tokengate_module);

    if (conf->mode == NGX_HTTP_TOKENGATE_PURGE_ON) {
        if (conf->zone != NULL && conf->zone->data == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"tokengate_purge\" zone \"%V\" is not a "
                               "\"tokengate_cache\" zone",
                               &conf->zone->shm.name);
            return NGX_CONF_ERROR;
        }

        if (ngx_http_tokengate_conf_on(tlcf)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"tokengate_purge\" takes the token to purge "
                               "from \"Authorization\": turn the access "
                               "check off in its location (\"tokengate "
                               "off\") and protect it with \"allow\" and "
                               "\"deny\"");
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    if (ngx_http_tokengate_conf_tg(tlcf) == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tokengate_logout\" needs \"tokengate_config\" "
                           "or \"tokengate_url\"");
        return NGX_CONF_ERROR;
    }

    /* Insight has no logout call: accepted (a location may serve both
     * flavors through one example), each logout says it in the log */

    conf->tlcf = tlcf;

    return NGX_CONF_OK;
}


/* tokengate_logout [redirect=URL]: an absolute path or an http(s) URL,
 * without variables (never an open redirect) or blanks. */
static char *
ngx_http_tokengate_logout(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tokengate_logout_loc_conf_t *llcf = conf;

    ngx_str_t                 *value, url;
    ngx_uint_t                 i;
    ngx_http_core_loc_conf_t  *clcf;

    if (llcf->mode != NGX_HTTP_TOKENGATE_LOGOUT_OFF) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2) {
        if (ngx_strncmp(value[1].data, "redirect=", 9) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in \"%V\" directive",
                               &value[1], &cmd->name);
            return NGX_CONF_ERROR;
        }

        url.data = value[1].data + 9;
        url.len = value[1].len - 9;

        for (i = 0; i < url.len; i++) {
            if (url.data[i] <= ' ' || url.data[i] == 0x7f
                || url.data[i] == '$' || url.data[i] == '\\')
            {
                break;
            }
        }

        if (i < url.len
            || !((url.len >= 1 && url.data[0] == '/'
                  && (url.len == 1 || url.data[1] != '/'))
                 || (url.len > 7
                     && ngx_strncasecmp(url.data, (u_char *) "http://", 7)
                        == 0)
                 || (url.len > 8
                     && ngx_strncasecmp(url.data, (u_char *) "https://", 8)
                        == 0)))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"%V\" in \"%V\" directive, it must "
                               "be an absolute path or an http(s) URL, "
                               "without variables", &value[1], &cmd->name);
            return NGX_CONF_ERROR;
        }

        llcf->redirect = url;
    }

    llcf->mode = NGX_HTTP_TOKENGATE_LOGOUT_ON;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_tokengate_logout_handler;

    return NGX_CONF_OK;
}


/* tokengate_purge [zone=NAME] */
static char *
ngx_http_tokengate_purge(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tokengate_logout_loc_conf_t *llcf = conf;

    ngx_str_t                 *value, name;
    ngx_http_core_loc_conf_t  *clcf;

    if (llcf->mode != NGX_HTTP_TOKENGATE_LOGOUT_OFF) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2) {
        if (ngx_strncmp(value[1].data, "zone=", 5) != 0
            || value[1].len == 5)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in \"%V\" directive",
                               &value[1], &cmd->name);
            return NGX_CONF_ERROR;
        }

        name.data = value[1].data + 5;
        name.len = value[1].len - 5;

        /* the zone of a tokengate_cache, before or after this line */
        llcf->zone = ngx_shared_memory_add(cf, &name, 0,
                                           &ngx_http_tokengate_module);
        if (llcf->zone == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    llcf->mode = NGX_HTTP_TOKENGATE_PURGE_ON;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_tokengate_purge_handler;

    return NGX_CONF_OK;
}
