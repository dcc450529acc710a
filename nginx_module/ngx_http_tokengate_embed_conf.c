/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_embed_conf.c: the configuration of
 * ngx_http_tokengate_embed_module: creating and merging its
 * configurations, the checks a tokengate_embed location passes when nginx
 * reads it (its parameters tried with sample values, its host, its embed
 * secret read once, its admin login shared by the locations of one
 * tokengate.conf) and the parsers of its directives.  The directive table
 * and the request side are in ngx_http_tokengate_embed.c.
 */


#include "ngx_http_tokengate_embed.h"


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


static ngx_str_t  ngx_http_tokengate_embed_default_user_id =
    ngx_string("$tokengate_user_id");
static ngx_str_t  ngx_http_tokengate_embed_default_first_name =
    ngx_string("$tokengate_user");


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


void *
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


void *
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


char *
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
char *
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
char *
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
char *
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
char *
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
char *
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
char *
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
char *
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


char *
ngx_http_tokengate_embed_session(ngx_conf_t *cf, void *post, void *data)
{
    time_t  *sp = data;

    if (*sp < 0 || *sp > TG_EMBED_SESSION_MAX) {
        return "must be between 0 and 30d (Looker's maximum)";
    }

    return NGX_CONF_OK;
}
