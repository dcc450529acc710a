
/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_conf.c: the configuration of ngx_http_tokengate_module:
 * creating and merging the main and location configurations (each
 * location's tokengate.conf built and validated once, its cache
 * fingerprint computed once) and the parsers of the directives that need
 * more than nginx's slots.  The directive table itself is in
 * ngx_http_tokengate_module.c; tokengate_cache, tokengate_status and
 * tokengate_fail_limit are parsed next to what they configure
 * (ngx_http_tokengate_cache.c, ngx_http_tokengate_status.c,
 * ngx_http_tokengate_limit.c).
 */


#include "ngx_http_tokengate.h"

#include <openssl/evp.h>


static char *ngx_http_tokengate_build_config(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *conf);
static void ngx_http_tokengate_config_cleanup(void *data);


ngx_uint_t
ngx_http_tokengate_conf_on(ngx_http_tokengate_loc_conf_t *tlcf)
{
    if (tlcf->realm == NULL || tlcf->realm == NGX_CONF_UNSET_PTR
        || tlcf->tg == NULL)
    {
        return 0;
    }

    return !(tlcf->realm->lengths == NULL
             && tlcf->realm->value.len == 3
             && ngx_strncmp(tlcf->realm->value.data, "off", 3) == 0);
}

tg_config_t *
ngx_http_tokengate_conf_tg(ngx_http_tokengate_loc_conf_t *tlcf)
{
    return tlcf->tg;
}


void *
ngx_http_tokengate_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_tokengate_main_conf_t  *tmcf;

    tmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_tokengate_main_conf_t));
    if (tmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     tmcf->stats_zone = NULL;
     */

    tmcf->remote_user_index = NGX_ERROR;

    return tmcf;
}


void *
ngx_http_tokengate_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_tokengate_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_tokengate_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->config_file = { 0, NULL };
     *     conf->url = { 0, NULL };
     *     conf->tg = NULL;
     */

    conf->realm = NGX_CONF_UNSET_PTR;
    conf->token = NGX_CONF_UNSET_PTR;
    conf->login_url = NGX_CONF_UNSET_PTR;
    conf->basic = NGX_CONF_UNSET;
    conf->cache = NGX_CONF_UNSET_PTR;
    conf->shared = NGX_CONF_UNSET_PTR;
    conf->cache_ttl = NGX_CONF_UNSET;
    conf->cache_negative_ttl = NGX_CONF_UNSET;
    conf->cache_stale_ttl = NGX_CONF_UNSET;
    conf->on_unavailable = NGX_CONF_UNSET_UINT;
    conf->api = NGX_CONF_UNSET_UINT;
    conf->groups = NGX_CONF_UNSET_PTR;
    conf->groups_mode = NGX_CONF_UNSET_UINT;
    conf->require = NGX_CONF_UNSET_PTR;
    conf->require_error = NGX_CONF_UNSET;
    conf->timeout = NGX_CONF_UNSET_MSEC;
    conf->connect_timeout = NGX_CONF_UNSET_MSEC;
    conf->fail_limit = NGX_CONF_UNSET_PTR;
    conf->backoff = NGX_CONF_UNSET;
    conf->peer = NGX_CONF_UNSET_PTR;

    return conf;
}


char *
ngx_http_tokengate_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_tokengate_loc_conf_t *prev = parent;
    ngx_http_tokengate_loc_conf_t *conf = child;

    ngx_uint_t   own;

    own = (conf->config_file.data != NULL || conf->url.data != NULL
           || conf->api != NGX_CONF_UNSET_UINT);

    ngx_conf_merge_ptr_value(conf->realm, prev->realm, NULL);
    ngx_conf_merge_ptr_value(conf->token, prev->token, NULL);
    ngx_conf_merge_ptr_value(conf->login_url, prev->login_url, NULL);
    ngx_conf_merge_value(conf->basic, prev->basic, 0);

    if (conf->cache == NGX_CONF_UNSET_PTR) {
        conf->cache = prev->cache;
        conf->cache_ttl = prev->cache_ttl;
        conf->cache_negative_ttl = prev->cache_negative_ttl;
        conf->cache_stale_ttl = prev->cache_stale_ttl;
    }

    if (conf->cache == NGX_CONF_UNSET_PTR) {
        conf->cache = NULL;
    }

    ngx_conf_merge_ptr_value(conf->shared, prev->shared, NULL);

    ngx_conf_merge_uint_value(conf->on_unavailable, prev->on_unavailable,
                              NGX_HTTP_TOKENGATE_UNAVAILABLE_DENY);

    if (conf->on_unavailable == NGX_HTTP_TOKENGATE_UNAVAILABLE_STALE
        && (conf->cache == NULL || conf->cache_stale_ttl <= 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tokengate_on_unavailable stale\" needs "
                           "\"tokengate_cache\" with \"stale_ttl\"");
        return NGX_CONF_ERROR;
    }
    ngx_conf_merge_ptr_value(conf->groups, prev->groups, NULL);

    if (conf->require == NGX_CONF_UNSET_PTR) {
        conf->require = prev->require;
        conf->require_error = prev->require_error;
    }

    if (conf->require == NGX_CONF_UNSET_PTR) {
        conf->require = NULL;
    }

    ngx_conf_merge_value(conf->require_error, NGX_CONF_UNSET,
                         NGX_HTTP_FORBIDDEN);
    ngx_conf_merge_uint_value(conf->groups_mode, prev->groups_mode,
                              NGX_HTTP_TOKENGATE_GROUPS_ANY);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout,
                              NGX_CONF_UNSET_MSEC);
    ngx_conf_merge_msec_value(conf->connect_timeout, prev->connect_timeout,
                              NGX_CONF_UNSET_MSEC);
    ngx_conf_merge_value(conf->backoff, prev->backoff, 1);

    if (ngx_http_tokengate_fail_limit_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (conf->config_file.data == NULL) {
        conf->config_file = prev->config_file;
    }

    if (conf->url.data == NULL) {
        conf->url = prev->url;
    }

    if (conf->api == NGX_CONF_UNSET_UINT) {
        conf->api = prev->api;
    }

    if (!own && prev->tg != NULL) {
        conf->tg = prev->tg;

    } else if (conf->config_file.data != NULL || conf->url.data != NULL) {
        if (ngx_http_tokengate_build_config(cf, conf) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (conf->realm != NULL
        && !(conf->realm->lengths == NULL
             && conf->realm->value.len == 3
             && ngx_strncmp(conf->realm->value.data, "off", 3) == 0)
        && conf->tg == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tokengate\" needs \"tokengate_config\" or "
                           "\"tokengate_url\"");
        return NGX_CONF_ERROR;
    }

    /* "both" is one auth/currentuser call here: it carries everything the
     * rules need, and the cache bounds the entry's life by the TTL. */
    conf->which = tg_validate_which(conf->tg, conf->groups != NULL
                                              && conf->groups->nelts > 0);

    if (conf->which == TG_INSIGHT_VALIDATE_BOTH) {
        conf->which = TG_INSIGHT_VALIDATE_CURRENTUSER;
    }

    if (ngx_http_tokengate_shared_merge(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (conf->tg == NULL) {
        conf->peer = NULL;
        return NGX_CONF_OK;
    }

    conf->lifetime_max = (time_t) tg_config_token_lifetime_max(conf->tg);

    if (ngx_http_tokengate_peer_conf(cf, conf, prev) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_tokengate_backoff_conf(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    /* the same settings as the enclosing level: the same fingerprint */

    if (conf->tg == prev->tg && conf->which == prev->which) {
        ngx_memcpy(conf->fingerprint, prev->fingerprint,
                   NGX_HTTP_TOKENGATE_MAC_LEN);

    } else if (ngx_http_tokengate_fingerprint(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    /* the Redis entries logout and purge delete */

    return ngx_http_tokengate_shared_register(cf, conf);
}


/* The tokengate.conf file, then tokengate_url and tokengate_api on top,
 * validated as a whole. */
static char *
ngx_http_tokengate_build_config(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *conf)
{
    u_char              *path, *url;
    tg_diag_t            diag;
    tg_config_t         *tg;
    ngx_pool_cleanup_t  *cln;

    tg_diag_clear(&diag);

    tg = tg_config_new();
    if (tg == NULL) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        tg_config_free(tg);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_tokengate_config_cleanup;
    cln->data = tg;

    if (conf->config_file.data != NULL) {
        path = ngx_pnalloc(cf->pool, conf->config_file.len + 1);
        if (path == NULL) {
            return NGX_CONF_ERROR;
        }

        (void) ngx_cpystrn(path, conf->config_file.data,
                           conf->config_file.len + 1);

        if (tg_config_load_file(tg, (char *) path, &diag) != TG_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "tokengate_config: %s", diag.message);
            return NGX_CONF_ERROR;
        }
    }

    if (conf->url.data != NULL) {
        url = ngx_pnalloc(cf->pool, conf->url.len + 1);
        if (url == NULL) {
            return NGX_CONF_ERROR;
        }

        (void) ngx_cpystrn(url, conf->url.data, conf->url.len + 1);

        if (tg_config_set(tg, "url", (char *) url, "tokengate_url", &diag)
            != TG_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "tokengate_url: %s", diag.message);
            return NGX_CONF_ERROR;
        }
    }

    if (conf->api != NGX_CONF_UNSET_UINT
        && tg_config_set(tg, "api",
                         conf->api == TG_API_LOOKER ? "looker" : "insight",
                         "tokengate_api", &diag)
           != TG_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tokengate_api: %s", diag.message);
        return NGX_CONF_ERROR;
    }

    if (tg_config_validate(tg, &diag) != TG_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid configuration from \"tokengate_config\" "
                           "\"%V\" and \"tokengate_url\" \"%V\": %s",
                           &conf->config_file, &conf->url, diag.message);
        return NGX_CONF_ERROR;
    }

    conf->tg = tg;

    return NGX_CONF_OK;
}


static void
ngx_http_tokengate_config_cleanup(void *data)
{
    tg_config_free(data);
}


/* tokengate_config FILE: read now, so that errors name the directive's
 * line; the merged configuration is built again in merge. */
char *
ngx_http_tokengate_config_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tokengate_loc_conf_t *tlcf = conf;

    u_char       *path;
    ngx_str_t    *value;
    tg_diag_t     diag;
    tg_config_t  *tg;

    if (tlcf->config_file.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty file name";
    }

    if (ngx_conf_full_name(cf->cycle, &value[1], 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    path = ngx_pnalloc(cf->pool, value[1].len + 1);
    if (path == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(path, value[1].data, value[1].len + 1);

    tg = tg_config_new();
    if (tg == NULL) {
        return NGX_CONF_ERROR;
    }

    tg_diag_clear(&diag);

    if (tg_config_load_file(tg, (char *) path, &diag) != TG_OK) {
        tg_config_free(tg);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "tokengate_config: %s",
                           diag.message);
        return NGX_CONF_ERROR;
    }

    tg_config_free(tg);

    tlcf->config_file = value[1];

    return NGX_CONF_OK;
}


/* The enum slot, with the directive named in the error */
char *
ngx_http_tokengate_enum_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t        *value;
    ngx_conf_enum_t  *e;

    value = cf->args->elts;

    for (e = cmd->post; e->name.len != 0; e++) {
        if (e->name.len == value[1].len
            && ngx_strcmp(e->name.data, value[1].data) == 0)
        {
            return ngx_conf_set_enum_slot(cf, cmd, conf);
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\" directive",
                       &value[1], &cmd->name);

    return NGX_CONF_ERROR;
}


/* tokengate_require $value... [error=401|403] */
char *
ngx_http_tokengate_require(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tokengate_loc_conf_t *tlcf = conf;

    ngx_str_t                         *value;
    ngx_uint_t                         i, n;
    ngx_http_complex_value_t          *cv;
    ngx_http_compile_complex_value_t   ccv;

    if (tlcf->require != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;
    n = cf->args->nelts;

    tlcf->require_error = NGX_HTTP_FORBIDDEN;

    if (ngx_strncmp(value[n - 1].data, "error=", 6) == 0) {
        if (ngx_strcmp(value[n - 1].data, "error=401") == 0) {
            tlcf->require_error = NGX_HTTP_UNAUTHORIZED;

        } else if (ngx_strcmp(value[n - 1].data, "error=403") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"%V\" in \"%V\" directive, "
                               "it must be \"error=401\" or \"error=403\"",
                               &value[n - 1], &cmd->name);
            return NGX_CONF_ERROR;
        }

        n--;
    }

    if (n < 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" needs at least one value", &cmd->name);
        return NGX_CONF_ERROR;
    }

    tlcf->require = ngx_array_create(cf->pool, n - 1,
                                     sizeof(ngx_http_complex_value_t));
    if (tlcf->require == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < n; i++) {
        cv = ngx_array_push(tlcf->require);
        if (cv == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &value[i];
        ccv.complex_value = cv;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* tokengate_require_group G... [any|all] */
char *
ngx_http_tokengate_require_group(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_tokengate_loc_conf_t *tlcf = conf;

    ngx_str_t   *value, *g;
    ngx_uint_t   i, j, n;

    if (tlcf->groups != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;
    n = cf->args->nelts;

    tlcf->groups_mode = NGX_HTTP_TOKENGATE_GROUPS_ANY;

    if (ngx_strcmp(value[n - 1].data, "any") == 0) {
        n--;

    } else if (ngx_strcmp(value[n - 1].data, "all") == 0) {
        tlcf->groups_mode = NGX_HTTP_TOKENGATE_GROUPS_ALL;
        n--;
    }

    if (n < 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" needs at least one group", &cmd->name);
        return NGX_CONF_ERROR;
    }

    tlcf->groups = ngx_array_create(cf->pool, n - 1, sizeof(ngx_str_t));
    if (tlcf->groups == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < n; i++) {

        if (value[i].len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" has an empty group name", &cmd->name);
            return NGX_CONF_ERROR;
        }

        for (j = 0; j < value[i].len; j++) {
            if (value[i].data[j] <= ' ' || value[i].data[j] == ','
                || value[i].data[j] == 0x7f)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\" has an invalid group name \"%V\"",
                                   &cmd->name, &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        g = ngx_array_push(tlcf->groups);
        if (g == NULL) {
            return NGX_CONF_ERROR;
        }

        *g = value[i];
    }

    return NGX_CONF_OK;
}


char *
ngx_http_tokengate_positive_msec(ngx_conf_t *cf, void *post, void *data)
{
    ngx_msec_t  *np = data;

    if (*np == 0) {
        return "must be more than 0";
    }

    return NGX_CONF_OK;
}


/*
 * A "zone=NAME[:SIZE]" argument of tokengate_cache or tokengate_fail_limit:
 * NAME into name, SIZE (at least 8 pages) into size, which is left as it
 * is without one.  Errors name the argument and the directive.
 */
ngx_int_t
ngx_http_tokengate_zone_arg(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *arg, ngx_str_t *name, ssize_t *size)
{
    u_char     *p;
    ngx_str_t   s;

    name->data = arg->data + 5;
    name->len = arg->len - 5;

    p = ngx_strlchr(name->data, name->data + name->len, ':');

    if (p != NULL) {
        s.data = p + 1;
        s.len = name->data + name->len - s.data;
        name->len = p - name->data;

        *size = ngx_parse_size(&s);

        if (*size == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid zone size \"%V\" in \"%V\" "
                               "directive", arg, &cmd->name);
            return NGX_ERROR;
        }

        if (*size < (ssize_t) (8 * ngx_pagesize)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "zone \"%V\" of \"%V\" is too small",
                               arg, &cmd->name);
            return NGX_ERROR;
        }
    }

    if (name->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone name \"%V\" in \"%V\" directive",
                           arg, &cmd->name);
        return NGX_ERROR;
    }

    return NGX_OK;
}
