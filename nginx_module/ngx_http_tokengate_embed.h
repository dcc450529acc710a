/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_embed.h: what the two files of
 * ngx_http_tokengate_embed_module share (internal; not installed): its
 * configuration types and limits, and the functions one file offers the
 * other.  ngx_http_tokengate_embed.c owns the module definition and the
 * request side, ngx_http_tokengate_embed_conf.c the configuration.
 */


#ifndef _NGX_HTTP_TOKENGATE_EMBED_H_INCLUDED_
#define _NGX_HTTP_TOKENGATE_EMBED_H_INCLUDED_


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


#pragma GCC visibility push(hidden)


ngx_int_t ngx_http_tokengate_embed_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_tokengate_embed_build(ngx_http_request_t *r,
    ngx_pool_t *pool, ngx_http_tokengate_embed_loc_conf_t *elcf,
    tg_embed_params_t *p);
ngx_uint_t ngx_http_tokengate_embed_path_ok(u_char *p, size_t len);
ngx_uint_t ngx_http_tokengate_embed_allowed(ngx_array_t *allow,
    ngx_str_t *path);
void *ngx_http_tokengate_embed_create_main_conf(ngx_conf_t *cf);
void *ngx_http_tokengate_embed_create_loc_conf(ngx_conf_t *cf);
char *ngx_http_tokengate_embed_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
char *ngx_http_tokengate_embed(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tokengate_embed_host(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_tokengate_embed_query(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_tokengate_embed_allow(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_tokengate_embed_list_slot(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_tokengate_embed_attribute(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_tokengate_embed_secret_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_tokengate_embed_session(ngx_conf_t *cf, void *post,
    void *data);


#pragma GCC visibility pop


#endif /* _NGX_HTTP_TOKENGATE_EMBED_H_INCLUDED_ */
