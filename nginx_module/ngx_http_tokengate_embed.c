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
 */


#include "ngx_http_tokengate.h"


/* Entries of one list (permissions, models, group ids) after values are
 * split at commas, so that a variable cannot make the URL unbounded
 * (libtokengate's limit too; an embed path is held to its
 * TG_EMBED_PATH_MAX). */
#define NGX_HTTP_TOKENGATE_EMBED_LIST_MAX     256

/* An admin token is replaced this many seconds before its expiry, so that
 * it does not expire between the check and Looker reading it. */
#define NGX_HTTP_TOKENGATE_EMBED_TOKEN_MARGIN 60

#define NGX_HTTP_TOKENGATE_EMBED_MODE_OFF     0
#define NGX_HTTP_TOKENGATE_EMBED_MODE_LOCAL   1
#define NGX_HTTP_TOKENGATE_EMBED_MODE_SERVER  2


/* tokengate_embed_attribute NAME VALUE */
typedef struct {
    ngx_str_t                         name;      /* NUL-terminated */
    ngx_http_complex_value_t          value;
} ngx_http_tokengate_embed_attr_t;


/* Local signing: an embed secret file, read once for all the locations
 * that name it. */
typedef struct {
    char                             *path;
    char                             *secret;
    size_t                            len;
} ngx_http_tokengate_embed_secret_t;


/*
 * Server signing: the admin login of one tokengate.conf.  Created when the
 * configuration is read; after the fork each worker logs in on its own and
 * keeps its token (a worker's copy of configuration memory is its own).
 */
typedef struct {
    tg_config_t                      *tg;
    char                             *client_secret;
    tg_token_t                        token;
    ngx_uint_t                        generation; /* one per token */
    ngx_http_tokengate_call_t        *login;      /* in flight */
    ngx_queue_t                       waiting;    /* requests on the login */
} ngx_http_tokengate_embed_admin_t;


typedef struct {
    ngx_array_t                       secrets;    /* embed_secret_t */
    ngx_array_t                       admins;     /* embed_admin_t * */
} ngx_http_tokengate_embed_main_conf_t;


typedef struct {
    ngx_uint_t                        mode;

    ngx_str_t                         host_url;   /* as written */
    char                             *scheme;
    char                             *host;
    ngx_str_t                         origin;     /* "scheme://host/" */

    ngx_http_complex_value_t         *path;
    ngx_str_t                         query;
    ngx_array_t                      *allow;      /* ngx_str_t */

    ngx_array_t                      *permissions; /* complex values */
    ngx_array_t                      *models;
    ngx_array_t                      *group_ids;
    ngx_http_complex_value_t         *external_group_id;
    ngx_array_t                      *attributes; /* embed_attr_t */

    ngx_http_complex_value_t         *external_user_id;
    ngx_http_complex_value_t         *first_name;
    ngx_http_complex_value_t         *last_name;
    ngx_http_complex_value_t         *timezone;

    time_t                            session_length;
    ngx_flag_t                        force_logout_login;
    ngx_str_t                         secret_file;

    /* made when the configuration is read, for tokengate_embed locations */
    char                             *secret;     /* local signing */
    size_t                            secret_len;
    ngx_http_tokengate_loc_conf_t    *tlcf;
    ngx_http_tokengate_embed_admin_t *admin;      /* server signing */
} ngx_http_tokengate_embed_loc_conf_t;


typedef struct {
    ngx_http_request_t                   *request;
    ngx_http_tokengate_embed_loc_conf_t  *elcf;
    tg_embed_params_t                     params;
    ngx_http_tokengate_call_t            *call;
    ngx_queue_t                           queue;
    ngx_uint_t                            generation;
    unsigned                              waiting:1;
    unsigned                              retried:1;
} ngx_http_tokengate_embed_ctx_t;


/* A wiped-on-free copy of a signed URL in a request pool. */
typedef struct {
    u_char                           *data;
    size_t                            len;
} ngx_http_tokengate_embed_wipe_t;


/* tg_embed_params_check() names a parameter; the directive that sets it. */
typedef struct {
    const char                       *param;
    const char                       *directive;
} ngx_http_tokengate_embed_name_t;


static ngx_int_t ngx_http_tokengate_embed_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_tokengate_embed_params(ngx_http_request_t *r,
    ngx_http_tokengate_embed_ctx_t *ctx);
static ngx_int_t ngx_http_tokengate_embed_build(ngx_http_request_t *r,
    ngx_pool_t *pool, ngx_http_tokengate_embed_loc_conf_t *elcf,
    tg_embed_params_t *p);
static ngx_int_t ngx_http_tokengate_embed_path(ngx_http_request_t *r,
    ngx_pool_t *pool, ngx_http_tokengate_embed_loc_conf_t *elcf, char **out);
static ngx_uint_t ngx_http_tokengate_embed_path_ok(u_char *p, size_t len);
static ngx_uint_t ngx_http_tokengate_embed_allowed(ngx_array_t *allow,
    ngx_str_t *path);
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
static ngx_table_elt_t *ngx_http_tokengate_embed_header(
    ngx_http_request_t *r, char *key, ngx_str_t *value);
static ngx_int_t ngx_http_tokengate_embed_answer(ngx_http_request_t *r,
    ngx_int_t rc);

static void *ngx_http_tokengate_embed_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_tokengate_embed_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_tokengate_embed_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_tokengate_embed_check(ngx_conf_t *cf,
    ngx_http_tokengate_embed_loc_conf_t *conf, ngx_str_t *location);
static char *ngx_http_tokengate_embed_check_params(ngx_conf_t *cf,
    ngx_http_tokengate_embed_loc_conf_t *conf, ngx_str_t *location);
static char *ngx_http_tokengate_embed_read_secret(ngx_conf_t *cf,
    ngx_http_tokengate_embed_loc_conf_t *conf, tg_config_t *tg,
    ngx_str_t *location);
static char *ngx_http_tokengate_embed_get_admin(ngx_conf_t *cf,
    ngx_http_tokengate_embed_loc_conf_t *conf, tg_config_t *tg,
    ngx_str_t *location);
static ngx_http_complex_value_t *ngx_http_tokengate_embed_compile(
    ngx_conf_t *cf, ngx_str_t *value, ngx_http_complex_value_t *cv);
static void ngx_http_tokengate_embed_secret_cleanup(void *data);
static void ngx_http_tokengate_embed_admin_cleanup(void *data);
static char *ngx_http_tokengate_embed(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_tokengate_embed_host(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_tokengate_embed_query(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_tokengate_embed_allow(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_tokengate_embed_list_slot(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_tokengate_embed_attribute(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_tokengate_embed_secret_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_tokengate_embed_session(ngx_conf_t *cf, void *post,
    void *data);


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


static ngx_str_t  ngx_http_tokengate_embed_default_user_id =
    ngx_string("$tokengate_user_id");
static ngx_str_t  ngx_http_tokengate_embed_default_first_name =
    ngx_string("$tokengate_user");

static ngx_str_t  ngx_http_tokengate_embed_no_store = ngx_string("no-store");
static ngx_str_t  ngx_http_tokengate_embed_get = ngx_string("GET");

/* Valid samples for values with variables, to check the others at load
 * time. */
static char  ngx_http_tokengate_embed_sample_path[] = "/embed/dashboards/1";
static char  ngx_http_tokengate_embed_sample_user[] = "tokengate";
static char  ngx_http_tokengate_embed_sample_permission[] = "access_data";
static char  ngx_http_tokengate_embed_sample_model[] = "model";
static char  ngx_http_tokengate_embed_sample_group[] = "1";

static ngx_http_tokengate_embed_name_t  ngx_http_tokengate_embed_dirs[] = {
    { "scheme", "tokengate_embed_host" },
    { "host", "tokengate_embed_host" },
    { "embed_path", "tokengate_embed_path" },
    { "permissions", "tokengate_embed_permissions" },
    { "models", "tokengate_embed_models" },
    { "group_ids", "tokengate_embed_group_ids" },
    { "external_group_id", "tokengate_embed_external_group_id" },
    { "user_attributes", "tokengate_embed_attribute" },
    { "session_length", "tokengate_embed_session_length" },
    { "external_user_id", "tokengate_embed_external_user_id" },
    { "first_name", "tokengate_embed_first_name" },
    { "last_name", "tokengate_embed_last_name" },
    { "user_timezone", "tokengate_embed_timezone" },
    { NULL, NULL }
};


/*
 * The content handler.  tokengate's access check ran before it, so an
 * unauthenticated request got its 401 (or the login redirect) already;
 * here the request must carry the identity that check accepted.
 */
static ngx_int_t
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
    if (ngx_http_tokengate_embed_header(r, "Cache-Control",
                                        &ngx_http_tokengate_embed_no_store)
        == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* A URL is minted for a navigation only: not for HEAD (link checkers,
     * prefetchers) and not for requests with bodies. */
    if (r->method != NGX_HTTP_GET) {
        if (ngx_http_tokengate_embed_header(r, "Allow",
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
static ngx_int_t
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
static ngx_uint_t
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
static ngx_uint_t
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

    h = ngx_http_tokengate_embed_header(r, "Location", &location);
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


/* Add a response header; the value is not copied. */
static ngx_table_elt_t *
ngx_http_tokengate_embed_header(ngx_http_request_t *r, char *key,
    ngx_str_t *value)
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


static void *
ngx_http_tokengate_embed_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_tokengate_embed_main_conf_t  *emcf;

    emcf = ngx_palloc(cf->pool, sizeof(ngx_http_tokengate_embed_main_conf_t));
    if (emcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&emcf->secrets, cf->pool, 1,
                       sizeof(ngx_http_tokengate_embed_secret_t))
        != NGX_OK
        || ngx_array_init(&emcf->admins, cf->pool, 1,
                          sizeof(ngx_http_tokengate_embed_admin_t *))
           != NGX_OK)
    {
        return NULL;
    }

    return emcf;
}


static void *
ngx_http_tokengate_embed_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_tokengate_embed_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_tokengate_embed_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->host_url = { 0, NULL };
     *     conf->scheme = NULL;
     *     conf->host = NULL;
     *     conf->origin = { 0, NULL };
     *     conf->query = { 0, NULL };
     *     conf->secret_file = { 0, NULL };
     *     conf->secret = NULL;
     *     conf->secret_len = 0;
     *     conf->tlcf = NULL;
     *     conf->admin = NULL;
     */

    conf->mode = NGX_CONF_UNSET_UINT;
    conf->path = NGX_CONF_UNSET_PTR;
    conf->allow = NGX_CONF_UNSET_PTR;
    conf->permissions = NGX_CONF_UNSET_PTR;
    conf->models = NGX_CONF_UNSET_PTR;
    conf->group_ids = NGX_CONF_UNSET_PTR;
    conf->external_group_id = NGX_CONF_UNSET_PTR;
    conf->attributes = NGX_CONF_UNSET_PTR;
    conf->external_user_id = NGX_CONF_UNSET_PTR;
    conf->first_name = NGX_CONF_UNSET_PTR;
    conf->last_name = NGX_CONF_UNSET_PTR;
    conf->timezone = NGX_CONF_UNSET_PTR;
    conf->session_length = NGX_CONF_UNSET;
    conf->force_logout_login = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_tokengate_embed_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_tokengate_embed_loc_conf_t *prev = parent;
    ngx_http_tokengate_embed_loc_conf_t *conf = child;

    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    /*
     * tokengate_embed itself is not inherited: it makes this location's
     * content handler, as proxy_pass does.  An "if" or "limit_except"
     * block (noname) keeps its location's content handler, though, so it
     * keeps the location's tokengate_embed and what was made for it (the
     * parent is merged and checked first; no embed directive is allowed
     * in such a block).
     */

    if (conf->mode == NGX_CONF_UNSET_UINT) {
        if (clcf->noname && prev->mode != NGX_CONF_UNSET_UINT) {
            conf->mode = prev->mode;
            conf->secret = prev->secret;
            conf->secret_len = prev->secret_len;
            conf->tlcf = prev->tlcf;
            conf->admin = prev->admin;

        } else {
            conf->mode = NGX_HTTP_TOKENGATE_EMBED_MODE_OFF;
        }
    }

    if (conf->host == NULL) {
        conf->host_url = prev->host_url;
        conf->scheme = prev->scheme;
        conf->host = prev->host;
        conf->origin = prev->origin;
    }

    ngx_conf_merge_ptr_value(conf->path, prev->path, NULL);
    ngx_conf_merge_str_value(conf->query, prev->query, "");
    ngx_conf_merge_ptr_value(conf->allow, prev->allow, NULL);
    ngx_conf_merge_ptr_value(conf->permissions, prev->permissions, NULL);
    ngx_conf_merge_ptr_value(conf->models, prev->models, NULL);
    ngx_conf_merge_ptr_value(conf->group_ids, prev->group_ids, NULL);
    ngx_conf_merge_ptr_value(conf->external_group_id,
                             prev->external_group_id, NULL);
    ngx_conf_merge_ptr_value(conf->attributes, prev->attributes, NULL);
    ngx_conf_merge_ptr_value(conf->external_user_id, prev->external_user_id,
                             NULL);
    ngx_conf_merge_ptr_value(conf->first_name, prev->first_name, NULL);
    ngx_conf_merge_ptr_value(conf->last_name, prev->last_name, NULL);
    ngx_conf_merge_ptr_value(conf->timezone, prev->timezone, NULL);
    ngx_conf_merge_sec_value(conf->session_length, prev->session_length,
                             TG_EMBED_SESSION_DEFAULT);
    ngx_conf_merge_value(conf->force_logout_login, prev->force_logout_login,
                         1);
    ngx_conf_merge_str_value(conf->secret_file, prev->secret_file, "");

    if (conf->mode == NGX_HTTP_TOKENGATE_EMBED_MODE_OFF
        || conf->tlcf != NULL)
    {
        /* off, or inherited by an "if" block, checked already */
        return NGX_CONF_OK;
    }

    return ngx_http_tokengate_embed_check(cf, conf, &clcf->name);
}


/*
 * A tokengate_embed location, merged: everything a request will need is
 * known now, so a mistake fails "nginx -t" instead of a request.
 */
static char *
ngx_http_tokengate_embed_check(ngx_conf_t *cf,
    ngx_http_tokengate_embed_loc_conf_t *conf, ngx_str_t *location)
{
    char         *rv;
    ngx_str_t     path;
    tg_config_t  *tg;

    /*
     * ngx_http_tokengate_module comes before this module in the module
     * list (this one is not in ngx_module_order, so it is appended), so
     * its location confs are merged already.
     */

    conf->tlcf = ngx_http_conf_get_module_loc_conf(cf,
                                                   ngx_http_tokengate_module);

    if (!ngx_http_tokengate_conf_on(conf->tlcf)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tokengate_embed\" in location \"%V\" needs "
                           "\"tokengate\" (not off) in the same location: "
                           "the URL is signed for the identity it accepts",
                           location);
        return NGX_CONF_ERROR;
    }

    tg = ngx_http_tokengate_conf_tg(conf->tlcf);

    if (conf->host == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tokengate_embed\" in location \"%V\" needs "
                           "\"tokengate_embed_host\"", location);
        return NGX_CONF_ERROR;
    }

    if (conf->path == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tokengate_embed\" in location \"%V\" needs "
                           "\"tokengate_embed_path\"", location);
        return NGX_CONF_ERROR;
    }

    if (conf->path->lengths != NULL && conf->allow == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tokengate_embed_path\" with variables in "
                           "location \"%V\" needs \"tokengate_embed_allow\"",
                           location);
        return NGX_CONF_ERROR;
    }

    if (conf->path->lengths == NULL) {
        path = conf->path->value;

        if (!ngx_http_tokengate_embed_path_ok(path.data, path.len)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"tokengate_embed_path\" \"%V\" in "
                               "location \"%V\": it must be /embed/... with "
                               "letters, digits and \"-._~:/\" only (a query "
                               "goes in \"tokengate_embed_query\")",
                               &path, location);
            return NGX_CONF_ERROR;
        }

        if (conf->allow != NULL
            && !ngx_http_tokengate_embed_allowed(conf->allow, &path))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"tokengate_embed_path\" \"%V\" in location "
                               "\"%V\" is not in \"tokengate_embed_allow\"",
                               &path, location);
            return NGX_CONF_ERROR;
        }
    }

    if (conf->group_ids == NULL
        && (conf->permissions == NULL || conf->models == NULL))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tokengate_embed\" in location \"%V\" needs "
                           "\"tokengate_embed_permissions\" and "
                           "\"tokengate_embed_models\", or "
                           "\"tokengate_embed_group_ids\": the URL would "
                           "grant nothing", location);
        return NGX_CONF_ERROR;
    }

    /* the identity: tokengate's own variables unless configured */

    if (conf->external_user_id == NULL) {
        conf->external_user_id = ngx_http_tokengate_embed_compile(cf,
                                &ngx_http_tokengate_embed_default_user_id,
                                NULL);
        if (conf->external_user_id == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (conf->first_name == NULL) {
        conf->first_name = ngx_http_tokengate_embed_compile(cf,
                                &ngx_http_tokengate_embed_default_first_name,
                                NULL);
        if (conf->first_name == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    rv = ngx_http_tokengate_embed_check_params(cf, conf, location);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (conf->mode == NGX_HTTP_TOKENGATE_EMBED_MODE_LOCAL) {
        return ngx_http_tokengate_embed_read_secret(cf, conf, tg, location);
    }

    return ngx_http_tokengate_embed_get_admin(cf, conf, tg, location);
}


/* The parameters known now, checked as a request would check them; the
 * error names the directive. */
static char *
ngx_http_tokengate_embed_check_params(ngx_conf_t *cf,
    ngx_http_tokengate_embed_loc_conf_t *conf, ngx_str_t *location)
{
    size_t                            len;
    ngx_int_t                         rc;
    tg_diag_t                         diag;
    tg_embed_params_t                 params;
    ngx_http_tokengate_embed_name_t  *name;

    rc = ngx_http_tokengate_embed_build(NULL, cf->pool, conf, &params);

    if (rc == NGX_DECLINED) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "a \"tokengate_embed_*\" value in location "
                           "\"%V\" has a NUL byte", location);
        return NGX_CONF_ERROR;
    }

    if (rc != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    tg_diag_clear(&diag);

    if (tg_embed_params_check(&params, &diag) == TG_OK) {
        return NGX_CONF_OK;
    }

    for (name = ngx_http_tokengate_embed_dirs; name->param; name++) {
        len = ngx_strlen(name->param);

        if (ngx_strncmp(diag.message, name->param, len) == 0
            && diag.message[len] == ':')
        {
            break;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid \"%s\" in location \"%V\": %s",
                       name->param ? name->directive : "tokengate_embed",
                       location, diag.message);

    return NGX_CONF_ERROR;
}


/* Local signing: the embed secret, read now and kept in memory (wiped
 * when the configuration goes), once per file for all the locations that
 * name it; the workers never open the file. */
static char *
ngx_http_tokengate_embed_read_secret(ngx_conf_t *cf,
    ngx_http_tokengate_embed_loc_conf_t *conf, tg_config_t *tg,
    ngx_str_t *location)
{
    char                                  *path, *secret;
    const char                            *key;
    tg_diag_t                              diag;
    ngx_uint_t                             i;
    ngx_pool_cleanup_t                    *cln;
    ngx_http_tokengate_embed_secret_t     *sec;
    ngx_http_tokengate_embed_main_conf_t  *emcf;

    if (conf->secret_file.len != 0) {
        path = (char *) conf->secret_file.data;
        key = "tokengate_embed_secret_file";

    } else if (tg->embed_secret_file != NULL
               && tg->embed_secret_file[0] != '\0')
    {
        path = tg->embed_secret_file;
        key = "embed_secret_file of \"tokengate_config\"";

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tokengate_embed local\" in location \"%V\" "
                           "needs an embed secret: "
                           "\"tokengate_embed_secret_file\", or "
                           "embed_secret_file in \"tokengate_config\"",
                           location);
        return NGX_CONF_ERROR;
    }

    emcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_tokengate_embed_module);

    sec = emcf->secrets.elts;

    for (i = 0; i < emcf->secrets.nelts; i++) {
        if (ngx_strcmp(sec[i].path, path) == 0) {
            conf->secret = sec[i].secret;
            conf->secret_len = sec[i].len;
            return NGX_CONF_OK;
        }
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    secret = NULL;
    tg_diag_clear(&diag);

    if (tg_secret_file_read(path, key, &secret, &diag) != TG_OK) {
        tg_secret_free(secret);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tokengate_embed local\" in location \"%V\": %s",
                           location, diag.message);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_tokengate_embed_secret_cleanup;
    cln->data = secret;

    sec = ngx_array_push(&emcf->secrets);
    if (sec == NULL) {
        return NGX_CONF_ERROR;
    }

    sec->path = path;
    sec->secret = secret;
    sec->len = ngx_strlen(secret);

    conf->secret = sec->secret;
    conf->secret_len = sec->len;

    return NGX_CONF_OK;
}


/* Server signing: the admin login of this location's tokengate.conf, one
 * per configuration file and URL (shared by the locations that use it). */
static char *
ngx_http_tokengate_embed_get_admin(ngx_conf_t *cf,
    ngx_http_tokengate_embed_loc_conf_t *conf, tg_config_t *tg,
    ngx_str_t *location)
{
    ngx_uint_t                             i;
    tg_diag_t                              diag;
    ngx_pool_cleanup_t                    *cln;
    ngx_http_tokengate_embed_admin_t     **admins, *admin;
    ngx_http_tokengate_embed_main_conf_t  *emcf;

    if (tg->api != TG_API_LOOKER) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tokengate_embed server\" in location \"%V\" "
                           "needs api = looker in \"tokengate_config\" (or "
                           "\"tokengate_api looker\")", location);
        return NGX_CONF_ERROR;
    }

    if (tg->client_id == NULL || tg->client_id[0] == '\0'
        || tg->client_secret_file == NULL
        || tg->client_secret_file[0] == '\0')
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tokengate_embed server\" in location \"%V\" "
                           "needs client_id and client_secret_file (an "
                           "admin API user) in \"tokengate_config\"",
                           location);
        return NGX_CONF_ERROR;
    }

    emcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_tokengate_embed_module);

    admins = emcf->admins.elts;

    for (i = 0; i < emcf->admins.nelts; i++) {
        if (admins[i]->tg == tg) {
            conf->admin = admins[i];
            return NGX_CONF_OK;
        }
    }

    admin = ngx_pcalloc(cf->pool, sizeof(ngx_http_tokengate_embed_admin_t));
    if (admin == NULL) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    tg_diag_clear(&diag);

    if (tg_secret_file_read(tg->client_secret_file,
                            "client_secret_file of \"tokengate_config\"",
                            &admin->client_secret, &diag)
        != TG_OK)
    {
        tg_secret_free(admin->client_secret);
        admin->client_secret = NULL;
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tokengate_embed server\" in location \"%V\": "
                           "%s", location, diag.message);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_tokengate_embed_admin_cleanup;
    cln->data = admin;

    admin->tg = tg;
    ngx_queue_init(&admin->waiting);

    admins = ngx_array_push(&emcf->admins);
    if (admins == NULL) {
        return NGX_CONF_ERROR;
    }

    *admins = admin;
    conf->admin = admin;

    return NGX_CONF_OK;
}


/* Compile value into cv, or into a new complex value when cv is NULL:
 * the complex value, or NULL on error. */
static ngx_http_complex_value_t *
ngx_http_tokengate_embed_compile(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_complex_value_t *cv)
{
    ngx_http_compile_complex_value_t  ccv;

    if (cv == NULL) {
        cv = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (cv == NULL) {
            return NULL;
        }
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = value;
    ccv.complex_value = cv;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NULL;
    }

    return cv;
}


static void
ngx_http_tokengate_embed_secret_cleanup(void *data)
{
    tg_secret_free(data);
}


/* The configuration goes (a reload, a worker's exit): wipe the client
 * secret and the token; a login still in flight is stopped. */
static void
ngx_http_tokengate_embed_admin_cleanup(void *data)
{
    ngx_http_tokengate_embed_admin_t *admin = data;

    if (admin->login != NULL) {
        ngx_http_tokengate_call_cancel(admin->login);
        admin->login = NULL;
    }

    tg_token_clear(&admin->token);
    tg_secret_free(admin->client_secret);
    admin->client_secret = NULL;
}


/* tokengate_embed local | server */
static char *
ngx_http_tokengate_embed(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tokengate_embed_loc_conf_t *elcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (elcf->mode != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "local") == 0) {
        elcf->mode = NGX_HTTP_TOKENGATE_EMBED_MODE_LOCAL;

    } else if (ngx_strcmp(value[1].data, "server") == 0) {
        elcf->mode = NGX_HTTP_TOKENGATE_EMBED_MODE_SERVER;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, it "
                           "must be \"local\" or \"server\"",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_tokengate_embed_handler;

    return NGX_CONF_OK;
}


/*
 * tokengate_embed_host https://HOST[:PORT] | http://LOOPBACK:PORT: the
 * Looker host as the browser reaches it.  A default port is dropped: the
 * host is the first line of the string to sign, as the browser sends it.
 * The rest (no path, a lower-case name, a port, http only for a loopback
 * host) is libtokengate's check, run where tokengate_embed is used.
 */
static char *
ngx_http_tokengate_embed_host(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tokengate_embed_loc_conf_t *elcf = conf;

    u_char     *host, *last, *port;
    size_t      len;
    ngx_str_t  *value, dflt;

    if (elcf->host != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len > 8
        && ngx_strncasecmp(value[1].data, (u_char *) "https://", 8) == 0)
    {
        elcf->scheme = "https";
        ngx_str_set(&dflt, ":443");

    } else if (value[1].len > 7
               && ngx_strncasecmp(value[1].data, (u_char *) "http://", 7)
                  == 0)
    {
        elcf->scheme = "http";
        ngx_str_set(&dflt, ":80");

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"%V\" \"%V\": it must start with "
                           "\"https://\" (\"http://\" only for a loopback "
                           "host)", &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    host = value[1].data + ngx_strlen(elcf->scheme) + sizeof("://") - 1;
    last = value[1].data + value[1].len;

    if (last > host && last[-1] == '/') {
        last--;
    }

    /* the port: after an IPv6 literal's "]", else after the first ":" */

    port = host;

    if (host < last && *host == '[') {
        port = ngx_strlchr(host, last, ']');

        if (port == NULL) {
            port = last;
        }
    }

    port = ngx_strlchr(port, last, ':');

    if (port != NULL && (size_t) (last - port) == dflt.len
        && ngx_strncmp(port, dflt.data, dflt.len) == 0)
    {
        last = port;
    }

    len = last - host;

    elcf->host = ngx_pnalloc(cf->pool, len + 1);
    if (elcf->host == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(elcf->host, host, len);
    elcf->host[len] = '\0';

    elcf->host_url = value[1];

    elcf->origin.len = ngx_strlen(elcf->scheme) + sizeof("://") - 1 + len + 1;
    elcf->origin.data = ngx_pnalloc(cf->pool, elcf->origin.len + 1);
    if (elcf->origin.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(elcf->origin.data, "%s://%s/%Z", elcf->scheme, elcf->host);

    return NGX_CONF_OK;
}


/* tokengate_embed_query STRING: fixed query parameters of the embed path
 * ("embed_domain=https://app.example.com&sdk=2"), signed with it. */
static char *
ngx_http_tokengate_embed_query(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_tokengate_embed_loc_conf_t *elcf = conf;

    u_char     *p;
    ngx_str_t  *value;

    if (elcf->query.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].data[0] == '?'
        || value[1].len > TG_EMBED_PATH_MAX / 2)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"%V\" \"%V\": NAME=VALUE[&...] without "
                           "the \"?\"", &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    for (p = value[1].data; p < value[1].data + value[1].len; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9')
              || (*p != '\0' && ngx_strchr("-._~:/=&%,+", *p) != NULL)))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"%V\" \"%V\": character \"%c\" is "
                               "not allowed", &cmd->name, &value[1], *p);
            return NGX_CONF_ERROR;
        }
    }

    elcf->query = value[1];

    return NGX_CONF_OK;
}


/* tokengate_embed_allow PATH | PREFIX* ... */
static char *
ngx_http_tokengate_embed_allow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_tokengate_embed_loc_conf_t *elcf = conf;

    size_t       len;
    ngx_str_t   *value, *a;
    ngx_uint_t   i, prefix;

    if (elcf->allow != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    elcf->allow = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                   sizeof(ngx_str_t));
    if (elcf->allow == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        len = value[i].len;
        prefix = (len > 0 && value[i].data[len - 1] == '*');

        /* a prefix is checked as a path with one more character */

        if (prefix) {
            value[i].data[len - 1] = 'x';
        }

        if (!ngx_http_tokengate_embed_path_ok(value[i].data, len)) {
            if (prefix) {
                value[i].data[len - 1] = '*';
            }

            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"%V\" entry \"%V\": an embed path "
                               "(/embed/...) or a prefix of one ending in "
                               "\"*\"", &cmd->name, &value[i]);
            return NGX_CONF_ERROR;
        }

        if (prefix) {
            value[i].data[len - 1] = '*';
        }

        a = ngx_array_push(elcf->allow);
        if (a == NULL) {
            return NGX_CONF_ERROR;
        }

        *a = value[i];
    }

    return NGX_CONF_OK;
}


/* tokengate_embed_permissions | _models | _group_ids VALUE...: complex
 * values, each split at commas when the request is answered. */
static char *
ngx_http_tokengate_embed_list_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char  *p = conf;

    ngx_str_t                 *value;
    ngx_uint_t                 i;
    ngx_array_t              **a;
    ngx_http_complex_value_t  *cv;

    a = (ngx_array_t **) (p + cmd->offset);

    if (*a != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    *a = ngx_array_create(cf->pool, cf->args->nelts - 1,
                          sizeof(ngx_http_complex_value_t));
    if (*a == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        if (value[i].len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" has an empty value", &cmd->name);
            return NGX_CONF_ERROR;
        }

        cv = ngx_array_push(*a);
        if (cv == NULL
            || ngx_http_tokengate_embed_compile(cf, &value[i], cv) == NULL)
        {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* tokengate_embed_attribute NAME VALUE: a Looker user attribute. */
static char *
ngx_http_tokengate_embed_attribute(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_tokengate_embed_loc_conf_t *elcf = conf;

    u_char                           *p;
    ngx_str_t                        *value;
    ngx_uint_t                        i;
    ngx_http_tokengate_embed_attr_t  *a;

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > 255) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid attribute name \"%V\" in \"%V\"",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    for (p = value[1].data; p < value[1].data + value[1].len; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
              || *p == '_'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid attribute name \"%V\" in \"%V\": "
                               "Looker's are lower-case letters, digits and "
                               "\"_\"", &value[1], &cmd->name);
            return NGX_CONF_ERROR;
        }
    }

    if (elcf->attributes == NGX_CONF_UNSET_PTR) {
        elcf->attributes = ngx_array_create(cf->pool, 4,
                                   sizeof(ngx_http_tokengate_embed_attr_t));
        if (elcf->attributes == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    a = elcf->attributes->elts;

    for (i = 0; i < elcf->attributes->nelts; i++) {
        if (a[i].name.len == value[1].len
            && ngx_strncmp(a[i].name.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate attribute \"%V\" in \"%V\"",
                               &value[1], &cmd->name);
            return NGX_CONF_ERROR;
        }
    }

    a = ngx_array_push(elcf->attributes);
    if (a == NULL) {
        return NGX_CONF_ERROR;
    }

    a->name = value[1];     /* the configuration parser NUL-terminates */

    if (ngx_http_tokengate_embed_compile(cf, &value[2], &a->value) == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* tokengate_embed_secret_file FILE: checked now (root or owner only, no
 * group or other access), so that an unsafe file fails "nginx -t" at its
 * line; read by the locations that sign locally. */
static char *
ngx_http_tokengate_embed_secret_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_tokengate_embed_loc_conf_t *elcf = conf;

    ngx_str_t  *value;
    tg_diag_t   diag;

    if (elcf->secret_file.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty file name";
    }

    if (ngx_conf_full_name(cf->cycle, &value[1], 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    tg_diag_clear(&diag);

    /* ngx_conf_full_name() NUL-terminates */

    if (tg_secret_file_check((char *) value[1].data,
                             "tokengate_embed_secret_file", &diag)
        != TG_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s", diag.message);
        return NGX_CONF_ERROR;
    }

    elcf->secret_file = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_http_tokengate_embed_session(ngx_conf_t *cf, void *post, void *data)
{
    time_t  *sp = data;

    if (*sp < 0 || *sp > TG_EMBED_SESSION_MAX) {
        return "must be between 0 and 30d (Looker's maximum)";
    }

    return NGX_CONF_OK;
}
