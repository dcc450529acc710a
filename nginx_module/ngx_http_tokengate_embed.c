
/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_embed_module: tokengate_embed, a content handler that
 * answers a request tokengate's access check let through with a 302 to a
 * Looker signed embed URL for the authenticated identity (api-spec.md C
 * and B.6).
 *
 *   local   the URL is signed here (tg_embed_sign) with the embed secret,
 *           read once when nginx reads its configuration;
 *   server  Looker signs it: POST /embed/sso_url with an admin token that
 *           each worker keeps (POST /login with tokengate.conf's client_id
 *           and client_secret_file; logged in again on a 401), through
 *           the module's curl multi handle on nginx's event loop.
 *
 * The URL works once, like a password: it goes out in Location with
 * Cache-Control: no-store, its copies are wiped, and logs carry only its
 * fingerprint.  The embed path comes from a complex value and must be in
 * tokengate_embed_allow; a request outside it never gets a signed URL.
 *
 * This file owns the module's definition and the request side; its
 * configuration is in ngx_http_tokengate_embed_conf.c, what the two share
 * in ngx_http_tokengate_embed.h.
 */


#include "ngx_http_tokengate_embed.h"


static ngx_int_t ngx_http_tokengate_embed_params(ngx_http_request_t *r,
    ngx_http_tokengate_embed_ctx_t *ctx);
static ngx_int_t ngx_http_tokengate_embed_path(ngx_http_request_t *r,
    ngx_pool_t *pool, ngx_http_tokengate_embed_loc_conf_t *elcf, char **out);
static ngx_int_t ngx_http_tokengate_embed_eval(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, char *sample, ngx_str_t *v);
static ngx_int_t ngx_http_tokengate_embed_value(ngx_http_request_t *r,
    ngx_pool_t *pool, ngx_http_complex_value_t *cv, char *sample,
    const char **out);
static ngx_int_t ngx_http_tokengate_embed_list(ngx_http_request_t *r,
    ngx_pool_t *pool, ngx_array_t *values, char *sample,
    const char *const **out, size_t *n);
static ngx_int_t ngx_http_tokengate_embed_attrs(ngx_http_request_t *r,
    ngx_pool_t *pool, ngx_array_t *attributes, tg_embed_params_t *p);
static ngx_int_t ngx_http_tokengate_embed_local(ngx_http_request_t *r,
    ngx_http_tokengate_embed_ctx_t *ctx);
static ngx_int_t ngx_http_tokengate_embed_server(
    ngx_http_tokengate_embed_ctx_t *ctx);
static ngx_int_t ngx_http_tokengate_embed_login(
    ngx_http_tokengate_embed_admin_t *admin,
    ngx_http_tokengate_loc_conf_t *tlcf);
static void ngx_http_tokengate_embed_login_done(void *data, tg_err_t err,
    tg_response_t *resp, time_t sent_at, const char *reason);
static ngx_int_t ngx_http_tokengate_embed_sso(
    ngx_http_tokengate_embed_ctx_t *ctx);
static void ngx_http_tokengate_embed_sso_done(void *data, tg_err_t err,
    tg_response_t *resp, time_t sent_at, const char *reason);
static ngx_int_t ngx_http_tokengate_embed_failed(ngx_http_request_t *r,
    tg_err_t err, long retry_after);
static void ngx_http_tokengate_embed_finish(
    ngx_http_tokengate_embed_ctx_t *ctx, ngx_int_t rc);
static void ngx_http_tokengate_embed_cleanup(void *data);
static ngx_int_t ngx_http_tokengate_embed_redirect(ngx_http_request_t *r,
    const char *url, const char *path, ngx_uint_t what);
static void ngx_http_tokengate_embed_wipe(void *data);
static ngx_int_t ngx_http_tokengate_embed_answer(ngx_http_request_t *r,
    ngx_int_t rc);


static ngx_conf_post_handler_pt  ngx_http_tokengate_embed_session_p =
    ngx_http_tokengate_embed_session;


static ngx_command_t  ngx_http_tokengate_embed_commands[] = {

    { ngx_string("tokengate_embed"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tokengate_embed,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tokengate_embed_host"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tokengate_embed_host,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tokengate_embed_path"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_embed_loc_conf_t, path),
      NULL },

    { ngx_string("tokengate_embed_query"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tokengate_embed_query,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tokengate_embed_allow"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tokengate_embed_allow,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tokengate_embed_permissions"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tokengate_embed_list_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_embed_loc_conf_t, permissions),
      NULL },

    { ngx_string("tokengate_embed_models"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tokengate_embed_list_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_embed_loc_conf_t, models),
      NULL },

    { ngx_string("tokengate_embed_group_ids"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tokengate_embed_list_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_embed_loc_conf_t, group_ids),
      NULL },

    { ngx_string("tokengate_embed_external_group_id"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_embed_loc_conf_t, external_group_id),
      NULL },

    { ngx_string("tokengate_embed_attribute"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_tokengate_embed_attribute,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tokengate_embed_external_user_id"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_embed_loc_conf_t, external_user_id),
      NULL },

    { ngx_string("tokengate_embed_first_name"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_embed_loc_conf_t, first_name),
      NULL },

    { ngx_string("tokengate_embed_last_name"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_embed_loc_conf_t, last_name),
      NULL },

    { ngx_string("tokengate_embed_timezone"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_embed_loc_conf_t, timezone),
      NULL },

    { ngx_string("tokengate_embed_session_length"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_embed_loc_conf_t, session_length),
      &ngx_http_tokengate_embed_session_p },

    { ngx_string("tokengate_embed_force_logout_login"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_embed_loc_conf_t, force_logout_login),
      NULL },

    { ngx_string("tokengate_embed_secret_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tokengate_embed_secret_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_tokengate_embed_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_tokengate_embed_create_main_conf,
                                           /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_tokengate_embed_create_loc_conf,
                                           /* create location configuration */
    ngx_http_tokengate_embed_merge_loc_conf
                                           /* merge location configuration */
};


ngx_module_t  ngx_http_tokengate_embed_module = {
    NGX_MODULE_V1,
    &ngx_http_tokengate_embed_module_ctx,  /* module context */
    ngx_http_tokengate_embed_commands,     /* module directives */
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


static ngx_str_t  ngx_http_tokengate_embed_no_store = ngx_string("no-store");
static ngx_str_t  ngx_http_tokengate_embed_get = ngx_string("GET");


/* Valid samples for values with variables, to check the others at load
 * time. */
static char  ngx_http_tokengate_embed_sample_path[] = "/embed/dashboards/1";
static char  ngx_http_tokengate_embed_sample_user[] = "tokengate";
static char  ngx_http_tokengate_embed_sample_permission[] = "access_data";
static char  ngx_http_tokengate_embed_sample_model[] = "model";
static char  ngx_http_tokengate_embed_sample_group[] = "1";


/*
 * The content handler.  tokengate's access check ran before it, so an
 * unauthenticated request got its 401 (or the login redirect) already;
 * here the request must carry the identity that check accepted.
 */
ngx_int_t
ngx_http_tokengate_embed_handler(ngx_http_request_t *r)
{
    ngx_int_t                             rc;
    ngx_http_cleanup_t                   *cln;
    ngx_http_tokengate_embed_ctx_t       *ctx;
    ngx_http_tokengate_embed_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_tokengate_embed_module);

    if (elcf->mode == NGX_HTTP_TOKENGATE_EMBED_MODE_OFF
        || elcf->tlcf == NULL)
    {
        /* a configuration this module did not check: never sign */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "tokengate_embed: no checked configuration here");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* Every answer, a signed URL or a refusal, is for this user only. */
    if (ngx_http_tokengate_header(r, "Cache-Control",
                                  &ngx_http_tokengate_embed_no_store)
        == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* A URL is minted for a navigation only: not for HEAD (link checkers,
     * prefetchers) and not for requests with bodies. */
    if (r->method != NGX_HTTP_GET) {
        if (ngx_http_tokengate_header(r, "Allow",
                                      &ngx_http_tokengate_embed_get)
            == NULL)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_tokengate_embed_answer(r, NGX_HTTP_NOT_ALLOWED);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (r != r->main) {
        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "tokengate_embed: refused in a subrequest");
        return ngx_http_tokengate_embed_answer(r, NGX_HTTP_FORBIDDEN);
    }

    if (!ngx_http_tokengate_allowed(r)) {
        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "tokengate_embed: the request has no identity "
                      "accepted by \"tokengate\" (turned off for it, or let "
                      "through by another access module), refused");
        return ngx_http_tokengate_embed_answer(r, NGX_HTTP_FORBIDDEN);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_tokengate_embed_ctx_t));
    if (ctx == NULL) {
        return ngx_http_tokengate_embed_answer(r,
                                            NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    ctx->request = r;
    ctx->elcf = elcf;

    rc = ngx_http_tokengate_embed_params(r, ctx);

    if (rc != NGX_OK) {
        return ngx_http_tokengate_embed_answer(r, rc == NGX_ERROR
                                            ? NGX_HTTP_INTERNAL_SERVER_ERROR
                                            : rc);
    }

    if (elcf->mode == NGX_HTTP_TOKENGATE_EMBED_MODE_LOCAL) {
        return ngx_http_tokengate_embed_answer(r,
                                    ngx_http_tokengate_embed_local(r, ctx));
    }

    /* server signing: the answer comes from the event loop */

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return ngx_http_tokengate_embed_answer(r,
                                            NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    cln->handler = ngx_http_tokengate_embed_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_tokengate_embed_module);

    rc = ngx_http_tokengate_embed_server(ctx);

    if (rc != NGX_DONE) {
        return ngx_http_tokengate_embed_answer(r, rc);
    }

    r->main->count++;

    /* notice a client that goes away: the cleanup cancels the call */

    r->read_event_handler = ngx_http_test_reading;

    if (r->connection->read->ready) {
        ngx_post_event(r->connection->read, &ngx_posted_events);
    }

    return NGX_DONE;
}


/* Everything the URL grants for this request, checked: NGX_OK, an HTTP
 * status to refuse with, or NGX_ERROR. */
static ngx_int_t
ngx_http_tokengate_embed_params(ngx_http_request_t *r,
    ngx_http_tokengate_embed_ctx_t *ctx)
{
    ngx_int_t           rc;
    tg_diag_t           diag;
    tg_embed_params_t  *p;

    p = &ctx->params;

    rc = ngx_http_tokengate_embed_build(r, r->pool, ctx->elcf, p);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tokengate_embed: a value for \"%V\" cannot be used "
                      "(a NUL byte, or more than %d list entries), refused",
                      &r->uri, NGX_HTTP_TOKENGATE_EMBED_LIST_MAX);
        return NGX_HTTP_FORBIDDEN;
    }

    if (rc != NGX_OK) {
        return rc;
    }

    if (p->external_user_id == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tokengate_embed: no usable external user id for "
                      "this identity (\"tokengate_embed_external_user_id\" "
                      "is empty), refused");
        return NGX_HTTP_FORBIDDEN;
    }

    tg_diag_clear(&diag);

    if (tg_embed_params_check(p, &diag) != TG_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tokengate_embed: cannot embed \"%s\" for this "
                      "identity: %s, refused", p->embed_path, diag.message);
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


/*
 * The parameters, unchecked, their strings in pool: from the request r,
 * or at load time (r is NULL) from the values without variables and a
 * valid sample for each value with variables.  NGX_OK, NGX_DECLINED for
 * a value that cannot be used, an HTTP status for the embed path, or
 * NGX_ERROR.
 */
ngx_int_t
ngx_http_tokengate_embed_build(ngx_http_request_t *r, ngx_pool_t *pool,
    ngx_http_tokengate_embed_loc_conf_t *elcf, tg_embed_params_t *p)
{
    char       *path;
    ngx_int_t   rc;

    rc = ngx_http_tokengate_embed_path(r, pool, elcf, &path);
    if (rc != NGX_OK) {
        return rc;
    }

    tg_embed_params_init(p);

    p->scheme = elcf->scheme;
    p->host = elcf->host;
    p->embed_path = path;
    p->session_length = (long) elcf->session_length;
    p->force_logout_login = elcf->force_logout_login ? 1 : 0;

    rc = ngx_http_tokengate_embed_value(r, pool, elcf->external_user_id,
                                    ngx_http_tokengate_embed_sample_user,
                                    &p->external_user_id);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_tokengate_embed_value(r, pool, elcf->first_name, NULL,
                                        &p->first_name);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_tokengate_embed_value(r, pool, elcf->last_name, NULL,
                                        &p->last_name);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_tokengate_embed_value(r, pool, elcf->timezone, NULL,
                                        &p->user_timezone);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_tokengate_embed_value(r, pool, elcf->external_group_id,
                                        NULL, &p->external_group_id);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_tokengate_embed_list(r, pool, elcf->permissions,
                                ngx_http_tokengate_embed_sample_permission,
                                &p->permissions, &p->n_permissions);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_tokengate_embed_list(r, pool, elcf->models,
                                       ngx_http_tokengate_embed_sample_model,
                                       &p->models, &p->n_models);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_tokengate_embed_list(r, pool, elcf->group_ids,
                                       ngx_http_tokengate_embed_sample_group,
                                       &p->group_ids, &p->n_group_ids);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_tokengate_embed_attrs(r, pool, elcf->attributes, p);
}


/*
 * tokengate_embed_path, then tokengate_embed_query, NUL-terminated in
 * pool.  For a request the path is checked (400 when malformed) and held
 * to tokengate_embed_allow (403 outside it); at load time a static path
 * was checked already (ngx_http_tokengate_embed_check) and the sample is
 * valid.
 */
static ngx_int_t
ngx_http_tokengate_embed_path(ngx_http_request_t *r, ngx_pool_t *pool,
    ngx_http_tokengate_embed_loc_conf_t *elcf, char **out)
{
    u_char     *p, *s;
    size_t      len;
    ngx_str_t   path;

    if (ngx_http_tokengate_embed_eval(r, elcf->path,
                                      ngx_http_tokengate_embed_sample_path,
                                      &path)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (r != NULL && path.len == 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "tokengate_embed: the embed path is empty");
        return NGX_HTTP_BAD_REQUEST;
    }

    if (r != NULL && !ngx_http_tokengate_embed_path_ok(path.data, path.len)) {
        /* not quoted: it may hold anything the client sent */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "tokengate_embed: malformed embed path (it must be "
                      "/embed/..., at most %d bytes of letters, digits, "
                      "\"-._~:/\", with no \".\" or \"..\" segments)",
                      TG_EMBED_PATH_MAX);
        return NGX_HTTP_BAD_REQUEST;
    }

    if (r != NULL && elcf->allow != NULL
        && !ngx_http_tokengate_embed_allowed(elcf->allow, &path))
    {
        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "tokengate_embed: embed path \"%V\" is not in "
                      "\"tokengate_embed_allow\", refused", &path);
        return NGX_HTTP_FORBIDDEN;
    }

    len = path.len + (elcf->query.len ? 1 + elcf->query.len : 0);

    s = ngx_pnalloc(pool, len + 1);
    if (s == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(s, path.data, path.len);

    if (elcf->query.len) {
        *p++ = '?';
        p = ngx_cpymem(p, elcf->query.data, elcf->query.len);
    }

    *p = '\0';

    *out = (char *) s;

    return NGX_OK;
}


/*
 * An embed path as Looker's: "/embed/" then letters, digits and "-._~:/"
 * (dashboards/model::name), no empty, "." or ".." segment, no query.  The
 * characters that could escape the allow-list after Looker decodes the
 * path ("%", "?", "#", "\") are not in the set.
 */
ngx_uint_t
ngx_http_tokengate_embed_path_ok(u_char *p, size_t len)
{
    u_char  *last, *seg;

    if (len <= sizeof("/embed/") - 1
        || len > TG_EMBED_PATH_MAX
        || ngx_strncmp(p, "/embed/", sizeof("/embed/") - 1) != 0)
    {
        return 0;
    }

    last = p + len;

    for (seg = p + 1; seg <= last; /* void */) {
        p = seg;

        while (p < last && *p != '/') {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'
                  || *p == '_' || *p == '~' || *p == ':'))
            {
                return 0;
            }

            p++;
        }

        if (p - seg == 0
            || (p - seg == 1 && seg[0] == '.')
            || (p - seg == 2 && seg[0] == '.' && seg[1] == '.'))
        {
            return 0;
        }

        seg = p + 1;
    }

    return 1;
}


/* An exact entry, or a prefix entry ending in "*" that something follows. */
ngx_uint_t
ngx_http_tokengate_embed_allowed(ngx_array_t *allow, ngx_str_t *path)
{
    ngx_str_t   *a;
    ngx_uint_t   i;

    a = allow->elts;

    for (i = 0; i < allow->nelts; i++) {

        if (a[i].data[a[i].len - 1] == '*') {
            if (path->len > a[i].len - 1
                && ngx_strncmp(path->data, a[i].data, a[i].len - 1) == 0)
            {
                return 1;
            }

            continue;
        }

        if (path->len == a[i].len
            && ngx_strncmp(path->data, a[i].data, a[i].len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* A complex value for request r; at load time (r is NULL) itself when it
 * has no variables, else the sample (empty when NULL). */
static ngx_int_t
ngx_http_tokengate_embed_eval(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, char *sample, ngx_str_t *v)
{
    if (r != NULL) {
        return ngx_http_complex_value(r, cv, v);
    }

    if (cv->lengths == NULL) {
        *v = cv->value;
        return NGX_OK;
    }

    v->data = (u_char *) sample;
    v->len = sample != NULL ? ngx_strlen(sample) : 0;

    return NGX_OK;
}


/* A complex value NUL-terminated in pool; *out NULL when cv is unset or
 * the value is empty.  NGX_DECLINED for a value with a NUL byte. */
static ngx_int_t
ngx_http_tokengate_embed_value(ngx_http_request_t *r, ngx_pool_t *pool,
    ngx_http_complex_value_t *cv, char *sample, const char **out)
{
    u_char     *s;
    ngx_str_t   v;

    *out = NULL;

    if (cv == NULL) {
        return NGX_OK;
    }

    if (ngx_http_tokengate_embed_eval(r, cv, sample, &v) != NGX_OK) {
        return NGX_ERROR;
    }

    if (v.len == 0) {
        return NGX_OK;
    }

    if (ngx_strlchr(v.data, v.data + v.len, '\0') != NULL) {
        return NGX_DECLINED;
    }

    s = ngx_pnalloc(pool, v.len + 1);
    if (s == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s, v.data, v.len);
    s[v.len] = '\0';

    *out = (const char *) s;

    return NGX_OK;
}


/*
 * A list directive: each value split at commas, blanks around entries and
 * empty entries dropped (so "$tokengate_groups" through a map works).  A
 * request's list may have NGX_HTTP_TOKENGATE_EMBED_LIST_MAX entries (else
 * NGX_DECLINED); at load time libtokengate's check says which directive
 * has too many.
 */
static ngx_int_t
ngx_http_tokengate_embed_list(ngx_http_request_t *r, ngx_pool_t *pool,
    ngx_array_t *values, char *sample, const char *const **out, size_t *n)
{
    u_char                    *p, *last, *start, *end, *s;
    size_t                     count;
    ngx_str_t                 *v;
    ngx_uint_t                 i;
    const char               **list;
    ngx_http_complex_value_t  *cv;

    *out = NULL;
    *n = 0;

    if (values == NULL) {
        return NGX_OK;
    }

    v = ngx_palloc(pool, values->nelts * sizeof(ngx_str_t));
    if (v == NULL) {
        return NGX_ERROR;
    }

    cv = values->elts;
    count = 0;

    for (i = 0; i < values->nelts; i++) {
        if (ngx_http_tokengate_embed_eval(r, &cv[i], sample, &v[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (ngx_strlchr(v[i].data, v[i].data + v[i].len, '\0') != NULL) {
            return NGX_DECLINED;
        }

        count += 1;

        for (p = v[i].data; p < v[i].data + v[i].len; p++) {
            if (*p == ',') {
                count++;
            }
        }
    }

    if (r != NULL && count > NGX_HTTP_TOKENGATE_EMBED_LIST_MAX) {
        return NGX_DECLINED;
    }

    list = ngx_palloc(pool, (count + 1) * sizeof(char *));
    if (list == NULL) {
        return NGX_ERROR;
    }

    count = 0;

    for (i = 0; i < values->nelts; i++) {
        p = v[i].data;
        last = v[i].data + v[i].len;

        while (p <= last) {
            start = p;

            while (p < last && *p != ',') {
                p++;
            }

            end = p;
            p++;

            while (start < end && (*start == ' ' || *start == '\t')) {
                start++;
            }

            while (end > start && (end[-1] == ' ' || end[-1] == '\t')) {
                end--;
            }

            if (start == end) {
                continue;
            }

            s = ngx_pnalloc(pool, end - start + 1);
            if (s == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(s, start, end - start);
            s[end - start] = '\0';

            list[count++] = (char *) s;
        }
    }

    list[count] = NULL;

    *out = (const char *const *) list;
    *n = count;

    return NGX_OK;
}


/* The user attributes; one whose value is empty is sent as "". */
static ngx_int_t
ngx_http_tokengate_embed_attrs(ngx_http_request_t *r, ngx_pool_t *pool,
    ngx_array_t *attributes, tg_embed_params_t *p)
{
    ngx_int_t                         rc;
    ngx_uint_t                        i;
    const char                       *value;
    tg_embed_attr_t                  *ua;
    ngx_http_tokengate_embed_attr_t  *a;

    if (attributes == NULL || attributes->nelts == 0) {
        return NGX_OK;
    }

    ua = ngx_palloc(pool, attributes->nelts * sizeof(tg_embed_attr_t));
    if (ua == NULL) {
        return NGX_ERROR;
    }

    a = attributes->elts;

    for (i = 0; i < attributes->nelts; i++) {
        rc = ngx_http_tokengate_embed_value(r, pool, &a[i].value, NULL,
                                            &value);
        if (rc != NGX_OK) {
            return rc;
        }

        ua[i].key = (const char *) a[i].name.data;
        ua[i].value = value != NULL ? value : "";
    }

    p->user_attributes = ua;
    p->n_user_attributes = attributes->nelts;

    return NGX_OK;
}


/* Local signing: the answer now. */
static ngx_int_t
ngx_http_tokengate_embed_local(ngx_http_request_t *r,
    ngx_http_tokengate_embed_ctx_t *ctx)
{
    char                                 *url;
    tg_err_t                              err;
    ngx_int_t                             rc;
    tg_diag_t                             diag;
    ngx_http_tokengate_embed_loc_conf_t  *elcf;

    elcf = ctx->elcf;
    url = NULL;

    tg_diag_clear(&diag);

    err = tg_embed_sign(&ctx->params, elcf->secret, elcf->secret_len, &url,
                        NULL, &diag);

    if (err != TG_OK) {
        tg_secret_free(url);

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tokengate_embed: cannot sign \"%s\" (%s): %s",
                      ctx->params.embed_path, tg_err_name(err), diag.message);

        return err == TG_INPUT ? NGX_HTTP_FORBIDDEN
                               : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_tokengate_embed_redirect(r, url, ctx->params.embed_path,
                                           NGX_HTTP_TOKENGATE_EMBED_LOCAL);

    tg_secret_free(url);

    return rc;
}


/*
 * Server signing: ask Looker with the worker's admin token, logging in
 * first (once for all the requests that wait, with the timeouts of the
 * location whose request starts the login) when there is none.
 * NGX_DONE while waiting, else a status to answer now.
 */
static ngx_int_t
ngx_http_tokengate_embed_server(ngx_http_tokengate_embed_ctx_t *ctx)
{
    ngx_http_tokengate_embed_admin_t  *admin;

    admin = ctx->elcf->admin;

    if (admin->token.value != NULL
        && (admin->token.expires_at == 0
            || ngx_time() + NGX_HTTP_TOKENGATE_EMBED_TOKEN_MARGIN
               < admin->token.expires_at))
    {
        return ngx_http_tokengate_embed_sso(ctx);
    }

    if (admin->login == NULL
        && ngx_http_tokengate_embed_login(admin, ctx->elcf->tlcf) != NGX_OK)
    {
        return ngx_http_tokengate_embed_failed(ctx->request, TG_INTERNAL, -1);
    }

    ngx_queue_insert_tail(&admin->waiting, &ctx->queue);
    ctx->waiting = 1;

    return NGX_DONE;
}


static ngx_int_t
ngx_http_tokengate_embed_login(ngx_http_tokengate_embed_admin_t *admin,
    ngx_http_tokengate_loc_conf_t *tlcf)
{
    tg_diag_t     diag;
    tg_request_t  req;

    ngx_memzero(&req, sizeof(tg_request_t));
    tg_diag_clear(&diag);

    tg_token_clear(&admin->token);

    if (tg_build_token(admin->tg, admin->tg->client_id, admin->client_secret,
                       &req, &diag)
        != TG_OK)
    {
        tg_request_clear(&req);
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "tokengate_embed: cannot build the admin login: %s",
                      diag.message);
        return NGX_ERROR;
    }

    /* the login belongs to no request: the requests waiting on it may all
     * go away, the token is kept for the next ones */

    admin->login = ngx_http_tokengate_call(tlcf, &req, ngx_cycle->log,
                                           ngx_http_tokengate_embed_login_done,
                                           admin);
    if (admin->login == NULL) {
        return NGX_ERROR;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "tokengate_embed: admin login");

    return NGX_OK;
}


static void
ngx_http_tokengate_embed_login_done(void *data, tg_err_t err,
    tg_response_t *resp, time_t sent_at, const char *reason)
{
    ngx_http_tokengate_embed_admin_t *admin = data;

    long                             retry_after;
    char                             fp[TG_FINGERPRINT_SIZE];
    ngx_int_t                        rc;
    tg_diag_t                        diag;
    tg_token_t                       tok;
    ngx_queue_t                     *q, waiting;
    ngx_http_tokengate_embed_ctx_t  *ctx;

    admin->login = NULL;
    retry_after = -1;

    tg_diag_clear(&diag);
    ngx_memzero(&tok, sizeof(tg_token_t));

    if (err == TG_OK) {
        err = tg_parse_token(admin->tg, resp, sent_at, &tok, &diag);
        retry_after = diag.retry_after > 0 ? diag.retry_after
                                           : resp->retry_after;
    }

    if (err == TG_OK) {
        admin->token = tok;
        admin->generation++;

        tg_fingerprint(tok.value, ngx_strlen(tok.value), fp);

        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "tokengate_embed: admin token %s from %s", fp,
                      admin->tg->url);

    } else {
        tg_token_clear(&tok);

        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "tokengate_embed: the admin login to %s failed "
                      "(%s): %s", admin->tg->url, tg_err_name(err),
                      resp != NULL ? diag.message : reason);
    }

    /* Answer the requests that waited for this login; a request that
     * comes meanwhile (a posted one, an HTTP/2 stream) waits for the next
     * login, not for this one. */

    ngx_queue_init(&waiting);

    if (!ngx_queue_empty(&admin->waiting)) {
        ngx_queue_add(&waiting, &admin->waiting);
        ngx_queue_init(&admin->waiting);
    }

    while (!ngx_queue_empty(&waiting)) {
        q = ngx_queue_head(&waiting);
        ngx_queue_remove(q);

        ctx = ngx_queue_data(q, ngx_http_tokengate_embed_ctx_t, queue);
        ctx->waiting = 0;

        if (err == TG_OK) {
            rc = ngx_http_tokengate_embed_sso(ctx);

            if (rc == NGX_DONE) {
                continue;
            }

        } else {
            rc = ngx_http_tokengate_embed_failed(ctx->request, err,
                                                 retry_after);
        }

        ngx_http_tokengate_embed_finish(ctx, rc);
    }
}


/* POST /embed/sso_url: NGX_DONE while it runs, else a status now. */
static ngx_int_t
ngx_http_tokengate_embed_sso(ngx_http_tokengate_embed_ctx_t *ctx)
{
    tg_err_t                           err;
    tg_diag_t                          diag;
    tg_request_t                       req;
    ngx_http_request_t                *r;
    ngx_http_tokengate_embed_admin_t  *admin;

    r = ctx->request;
    admin = ctx->elcf->admin;

    ngx_memzero(&req, sizeof(tg_request_t));
    tg_diag_clear(&diag);

    err = tg_build_embed_sso_url(admin->tg, admin->token.value, &ctx->params,
                                 &req, &diag);
    if (err != TG_OK) {
        tg_request_clear(&req);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tokengate_embed: cannot build the sso_url request "
                      "for \"%s\": %s", ctx->params.embed_path,
                      diag.message);
        return ngx_http_tokengate_embed_failed(r, TG_INTERNAL, -1);
    }

    ctx->generation = admin->generation;

    ctx->call = ngx_http_tokengate_call(ctx->elcf->tlcf, &req,
                                        r->connection->log,
                                        ngx_http_tokengate_embed_sso_done,
                                        ctx);
    if (ctx->call == NULL) {
        return ngx_http_tokengate_embed_failed(r, TG_INTERNAL, -1);
    }

    return NGX_DONE;
}


static void
ngx_http_tokengate_embed_sso_done(void *data, tg_err_t err,
    tg_response_t *resp, time_t sent_at, const char *reason)
{
    ngx_http_tokengate_embed_ctx_t *ctx = data;

    char                              *url;
    long                               retry_after;
    ngx_int_t                          rc;
    tg_diag_t                          diag;
    ngx_http_request_t                *r;
    ngx_http_tokengate_embed_admin_t  *admin;

    ctx->call = NULL;

    r = ctx->request;
    admin = ctx->elcf->admin;
    url = NULL;
    retry_after = -1;

    ngx_http_set_log_request(r->connection->log, r);

    tg_diag_clear(&diag);

    if (err == TG_OK) {
        err = tg_parse_embed_sso_url(admin->tg, resp, &url, &diag);
        retry_after = diag.retry_after > 0 ? diag.retry_after
                                           : resp->retry_after;
    }

    if (err == TG_TOKEN_INVALID && !ctx->retried) {
        /* the admin token expired or was revoked: log in again, once */

        ctx->retried = 1;

        if (ctx->generation == admin->generation) {
            tg_token_clear(&admin->token);
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "tokengate_embed: the admin token was rejected, "
                      "logging in again");

        rc = ngx_http_tokengate_embed_server(ctx);

        if (rc != NGX_DONE) {
            ngx_http_tokengate_embed_finish(ctx, rc);
        }

        return;
    }

    if (err != TG_OK) {
        tg_secret_free(url);

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tokengate_embed: Looker did not sign \"%s\" (%s): %s",
                      ctx->params.embed_path, tg_err_name(err),
                      resp != NULL ? diag.message : reason);

        ngx_http_tokengate_embed_finish(ctx,
                            ngx_http_tokengate_embed_failed(r, err,
                                                            retry_after));
        return;
    }

    /* never send a browser anywhere but the configured Looker host */

    if (ngx_strncasecmp((u_char *) url, ctx->elcf->origin.data,
                        ctx->elcf->origin.len)
        != 0)
    {
        tg_secret_free(url);

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tokengate_embed: Looker's signed URL for \"%s\" is "
                      "not on \"tokengate_embed_host\" %V",
                      ctx->params.embed_path, &ctx->elcf->host_url);

        ngx_http_tokengate_embed_finish(ctx,
                            ngx_http_tokengate_embed_failed(r, TG_PROTOCOL,
                                                            -1));
        return;
    }

    rc = ngx_http_tokengate_embed_redirect(r, url, ctx->params.embed_path,
                                           NGX_HTTP_TOKENGATE_EMBED_SERVER);

    tg_secret_free(url);

    ngx_http_tokengate_embed_finish(ctx, rc);
}


/*
 * A failed server signing: 503 (with Retry-After when Looker sent one)
 * when trying again later may work (down, timeout, 5xx, 429, TLS, our own
 * failures), 502 when Looker refused or answered nonsense (4xx, rejected
 * admin credentials, a malformed answer): the reason is in the error log.
 */
static ngx_int_t
ngx_http_tokengate_embed_failed(ngx_http_request_t *r, tg_err_t err,
    long retry_after)
{
    switch (err) {

    case TG_RATE_LIMITED:
    case TG_UNAVAILABLE:
    case TG_TIMEOUT:
    case TG_TLS:
    case TG_NOMEM:
    case TG_INTERNAL:
        if (retry_after > 0
            && ngx_http_tokengate_retry_after(r, retry_after) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_HTTP_SERVICE_UNAVAILABLE;

    default:
        return NGX_HTTP_BAD_GATEWAY;
    }
}


/* Answer a request that waited for Looker (it holds a count). */
static void
ngx_http_tokengate_embed_finish(ngx_http_tokengate_embed_ctx_t *ctx,
    ngx_int_t rc)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    r->read_event_handler = ngx_http_block_reading;

    ngx_http_finalize_request(r, ngx_http_tokengate_embed_answer(r, rc));
    ngx_http_run_posted_requests(c);
}


/* The request goes away: stop waiting. */
static void
ngx_http_tokengate_embed_cleanup(void *data)
{
    ngx_http_tokengate_embed_ctx_t *ctx = data;

    if (ctx->waiting) {
        ngx_queue_remove(&ctx->queue);
        ctx->waiting = 0;
    }

    if (ctx->call != NULL) {
        ngx_http_tokengate_call_cancel(ctx->call);
        ctx->call = NULL;

        ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                      "tokengate_embed: signing cancelled");
    }
}


/* 302 to the signed URL, copied into r->pool (wiped with it) and logged
 * as a fingerprint only. */
static ngx_int_t
ngx_http_tokengate_embed_redirect(ngx_http_request_t *r, const char *url,
    const char *path, ngx_uint_t what)
{
    char                              fp[TG_FINGERPRINT_SIZE];
    size_t                            len, i;
    ngx_int_t                         rc;
    ngx_str_t                         location;
    ngx_table_elt_t                  *h;
    ngx_pool_cleanup_t               *cln;
    ngx_http_tokengate_embed_wipe_t  *w;

    len = ngx_strlen(url);

    for (i = 0; i < len; i++) {
        if ((u_char) url[i] <= 0x20 || url[i] == 0x7f) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "tokengate_embed: the signed URL has a blank or a "
                          "control byte");
            return NGX_HTTP_BAD_GATEWAY;
        }
    }

    cln = ngx_pool_cleanup_add(r->pool,
                               sizeof(ngx_http_tokengate_embed_wipe_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w = cln->data;
    w->data = NULL;
    w->len = 0;
    cln->handler = ngx_http_tokengate_embed_wipe;

    w->data = ngx_pnalloc(r->pool, len);
    if (w->data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(w->data, url, len);
    w->len = len;

    location.data = w->data;
    location.len = len;

    h = ngx_http_tokengate_header(r, "Location", &location);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_clear_location(r);
    r->headers_out.location = h;

    tg_fingerprint(url, len, fp);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "tokengate_embed: signed URL %s (%s signing) for \"%s\"",
                  fp, what == NGX_HTTP_TOKENGATE_EMBED_LOCAL
                      ? "local" : "server", path);

    /* an empty 302 sent here, so that error_page and msie_refresh (which
     * would copy the URL into a body) do not apply */

    r->headers_out.status = NGX_HTTP_MOVED_TEMPORARILY;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    rc = ngx_http_send_header(r);

    if (rc != NGX_ERROR) {
        ngx_http_tokengate_embed_count(r, what);
    }

    return rc;
}


static void
ngx_http_tokengate_embed_wipe(void *data)
{
    ngx_http_tokengate_embed_wipe_t *w = data;

    if (w->data != NULL) {
        ngx_explicit_memzero(w->data, w->len);
    }
}


/* Count a refusal or a failure and return its status. */
static ngx_int_t
ngx_http_tokengate_embed_answer(ngx_http_request_t *r, ngx_int_t rc)
{
    if (rc >= NGX_HTTP_BAD_REQUEST && rc < NGX_HTTP_INTERNAL_SERVER_ERROR) {
        ngx_http_tokengate_embed_count(r, NGX_HTTP_TOKENGATE_EMBED_REFUSED);

    } else if (rc >= NGX_HTTP_INTERNAL_SERVER_ERROR || rc == NGX_ERROR) {
        ngx_http_tokengate_embed_count(r, NGX_HTTP_TOKENGATE_EMBED_FAILED);
    }

    return rc;
}
