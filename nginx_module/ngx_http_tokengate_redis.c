
/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_redis.c: the fleet's shared cache of
 * ngx_http_tokengate_module (tokengate_shared_cache), a second level behind
 * the node's zone: the directive and hiredis's async API on nginx's event
 * loop (GET, SET, DEL).  What is stored, sealed, is
 * ngx_http_tokengate_seal.c's.
 *
 * Per worker and per Redis URL: one connection, kept alive, re-opened
 * after a failure with back-off (1 s doubling to 30 s).  Its fd is an
 * nginx connection whose read and write events call hiredis; a lookup has
 * a timer of its own (timeout): past it, the connection is dropped (every
 * lookup on it ends as an error) and the request goes on to the BI server.
 */


#include "ngx_http_tokengate.h"


#if (NGX_HTTP_TOKENGATE_REDIS)
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#endif


#define NGX_HTTP_TOKENGATE_PREFIX_MAX      64
#define NGX_HTTP_TOKENGATE_PENDING_MAX     4096
#define NGX_HTTP_TOKENGATE_BACKOFF_MIN     1000
#define NGX_HTTP_TOKENGATE_BACKOFF_MAX     30000
#define NGX_HTTP_TOKENGATE_LOG_INTERVAL    10


/* One Redis of a worker: the URL's address, AUTH, SELECT. */
struct ngx_http_tokengate_redis_s {
    ngx_str_t                  url;
    u_char                    *host;           /* NUL-terminated */
    ngx_int_t                  port;
    ngx_int_t                  db;
    ngx_str_t                  password;       /* empty: no AUTH */

#if (NGX_HTTP_TOKENGATE_REDIS)
    redisAsyncContext         *ac;
#else
    void                      *ac;
#endif
    ngx_connection_t          *conn;
    ngx_event_t                timer;          /* reconnect */
    ngx_msec_t                 backoff;
    ngx_uint_t                 pending;
    ngx_uint_t                 writing;        /* in the write handler */
    time_t                     logged;
    ngx_uint_t                 suppressed;
};


/* A GET in flight: its timer, and who gets the value (handler NULL: the
 * caller went away, the reply is dropped). */
typedef struct {
    ngx_event_t                timer;
    ngx_http_tokengate_redis_t  *redis;
    ngx_http_tokengate_shared_get_pt  handler;
    void                      *data;
    ngx_http_tokengate_shared_t  *sh;
    size_t                     key_len;
    u_char                     key[NGX_HTTP_TOKENGATE_SKEY_MAX];
} ngx_http_tokengate_get_t;


/*
 * A (Redis, validator fingerprint) pair some location stores its entries
 * under, and its zone: what logout and purge delete a token's Redis entries
 * for (ngx_http_tokengate_shared_purge).  Registered at configuration time
 * by the merged locations, once per pair and zone.
 */
typedef struct {
    ngx_http_tokengate_shared_t  *sh;
    ngx_shm_zone_t            *zone;
    u_char                     fingerprint[NGX_HTTP_TOKENGATE_MAC_LEN];
} ngx_http_tokengate_pair_t;


/*
 * The back-off of a server (its key, ngx_http_tokengate_backoff.c's) that
 * locations with a shared cache call: its Retry-After deadline is kept in
 * that Redis, sealed (8 bytes, big-endian), under prefix "backoff:" and the
 * hex of the key, and polled by each worker about once a second.
 */
typedef struct {
    ngx_http_tokengate_shared_t  *sh;
    u_char                     key[NGX_HTTP_TOKENGATE_MAC_LEN];
    size_t                     skey_len;
    u_char                     skey[NGX_HTTP_TOKENGATE_SKEY_MAX];
    ngx_uint_t                 polling;        /* a GET in flight */
} ngx_http_tokengate_shared_backoff_t;


#define NGX_HTTP_TOKENGATE_POLL            1000


static char *ngx_http_tokengate_shared_register_backoff(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *conf);


#if (NGX_HTTP_TOKENGATE_REDIS)
static void ngx_http_tokengate_backoff_poll(ngx_event_t *ev);
static char *ngx_http_tokengate_shared_parse(ngx_conf_t *cf,
    ngx_command_t *cmd, ngx_http_tokengate_loc_conf_t *tlcf);
static void ngx_http_tokengate_redis_connect(ngx_http_tokengate_redis_t *rd);
static void ngx_http_tokengate_redis_drop(ngx_http_tokengate_redis_t *rd,
    const char *why);
static void ngx_http_tokengate_redis_log(ngx_http_tokengate_redis_t *rd,
    const char *what, const char *detail);
static void ngx_http_tokengate_redis_flush(ngx_http_tokengate_redis_t *rd);
#endif


#if (NGX_HTTP_TOKENGATE_REDIS)
static ngx_uint_t   ngx_http_tokengate_redis_exiting;
static ngx_event_t  ngx_http_tokengate_poll_timer;
#endif


/*
 * tokengate_shared_cache redis://HOST:PORT[/DB] key_file=FILE
 *     [password_file=FILE] [timeout=TIME] [prefix=STR] | off
 */
char *
ngx_http_tokengate_shared_cache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_tokengate_loc_conf_t *tlcf = conf;

    ngx_str_t  *value;

    if (tlcf->shared != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        tlcf->shared = NULL;
        return NGX_CONF_OK;
    }

#if (NGX_HTTP_TOKENGATE_REDIS)

    return ngx_http_tokengate_shared_parse(cf, cmd, tlcf);

#else

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "tokengate_shared_cache: this module was built "
                       "without Redis support (configure --with-redis, "
                       "libhiredis-dev)");
    return NGX_CONF_ERROR;

#endif
}


#if (NGX_HTTP_TOKENGATE_REDIS)

static char *
ngx_http_tokengate_shared_parse(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_tokengate_loc_conf_t *tlcf)
{

    u_char                          *p, *last, *colon, *slash;
    ngx_int_t                        n;
    ngx_str_t                       *value, key_file, password_file, s,
                                     password, host;
    ngx_uint_t                       i;
    ngx_http_tokengate_redis_t      *rd, *rds;
    ngx_http_tokengate_shared_t     *sh;
    ngx_http_tokengate_main_conf_t  *tmcf;

    value = cf->args->elts;

    sh = ngx_pcalloc(cf->pool, sizeof(ngx_http_tokengate_shared_t));
    if (sh == NULL) {
        return NGX_CONF_ERROR;
    }

    sh->timeout = 50;
    ngx_str_set(&sh->prefix, "tokengate:");
    ngx_str_null(&key_file);
    ngx_str_null(&password_file);

    /* redis://HOST:PORT[/DB] */

    if (value[1].len <= 8 || ngx_strncmp(value[1].data, "redis://", 8) != 0) {
        goto bad_url;
    }

    p = value[1].data + 8;
    last = value[1].data + value[1].len;

    slash = ngx_strlchr(p, last, '/');
    colon = ngx_strlchr(p, slash != NULL ? slash : last, ':');

    if (colon == NULL || colon == p) {
        goto bad_url;
    }

    host.data = p;
    host.len = colon - p;

    for (i = 0; i < host.len; i++) {
        if (!(isalnum(host.data[i]) || host.data[i] == '.'
              || host.data[i] == '-'))
        {
            goto bad_url;
        }
    }

    s.data = colon + 1;
    s.len = (slash != NULL ? slash : last) - s.data;

    n = ngx_atoi(s.data, s.len);

    if (n < 1 || n > 65535) {
        goto bad_url;
    }

    rd = NULL;
    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_tokengate_module);

    if (slash != NULL) {
        if (ngx_atoi(slash + 1, last - slash - 1) == NGX_ERROR) {
            goto bad_url;
        }
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "key_file=", 9) == 0) {
            key_file.data = value[i].data + 9;
            key_file.len = value[i].len - 9;
            continue;
        }

        if (ngx_strncmp(value[i].data, "password_file=", 14) == 0) {
            password_file.data = value[i].data + 14;
            password_file.len = value[i].len - 14;
            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            n = ngx_parse_time(&s, 0);

            if (n == NGX_ERROR || n == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"%V\" directive",
                                   &value[i], &cmd->name);
                return NGX_CONF_ERROR;
            }

            sh->timeout = (ngx_msec_t) n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {
            sh->prefix.data = value[i].data + 7;
            sh->prefix.len = value[i].len - 7;

            if (sh->prefix.len > NGX_HTTP_TOKENGATE_PREFIX_MAX) {
                goto bad_prefix;
            }

            for (p = sh->prefix.data; p < sh->prefix.data + sh->prefix.len;
                 p++)
            {
                if (!(isalnum(*p) || *p == ':' || *p == '_' || *p == '.'
                      || *p == '-'))
                {
                    goto bad_prefix;
                }
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"%V\" directive",
                           &value[i], &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (key_file.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have a \"key_file\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_tokengate_shared_keys(cf, sh, &key_file) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_str_null(&password);

    if (password_file.len != 0) {
        if (ngx_http_tokengate_read_secret(cf, &password_file,
                                           "password_file", 1, 0, &password)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        while (password.len > 0
               && (password.data[password.len - 1] == '\n'
                   || password.data[password.len - 1] == '\r'))
        {
            password.len--;
        }
    }

    /* one connection per worker for each URL and password */

    if (tmcf->shared_servers == NULL) {
        tmcf->shared_servers = ngx_array_create(cf->pool, 16,
                                            sizeof(ngx_http_tokengate_redis_t));
        if (tmcf->shared_servers == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    rds = tmcf->shared_servers->elts;

    for (i = 0; i < tmcf->shared_servers->nelts; i++) {
        if (rds[i].url.len == value[1].len
            && ngx_strncmp(rds[i].url.data, value[1].data, value[1].len) == 0
            && rds[i].password.len == password.len
            && ngx_memcmp(rds[i].password.data, password.data, password.len)
               == 0)
        {
            rd = &rds[i];
            break;
        }
    }

    if (rd == NULL) {
        if (tmcf->shared_servers->nelts == tmcf->shared_servers->nalloc) {
            /* the array would move: the pointers into it must not */
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "too many Redis servers in \"%V\"",
                               &cmd->name);
            return NGX_CONF_ERROR;
        }

        rd = ngx_array_push(tmcf->shared_servers);
        if (rd == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(rd, sizeof(ngx_http_tokengate_redis_t));

        rd->url = value[1];
        rd->host = ngx_pnalloc(cf->pool, host.len + 1);
        if (rd->host == NULL) {
            return NGX_CONF_ERROR;
        }

        (void) ngx_cpystrn(rd->host, host.data, host.len + 1);
        rd->port = ngx_atoi(colon + 1,
                            (slash != NULL ? slash : last) - colon - 1);
        rd->db = slash != NULL ? ngx_atoi(slash + 1, last - slash - 1) : 0;
        rd->password = password;
        rd->backoff = NGX_HTTP_TOKENGATE_BACKOFF_MIN;
    }

    sh->redis = rd;
    tlcf->shared = sh;

    return NGX_CONF_OK;

bad_url:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid URL \"%V\" in \"%V\" directive "
                       "(redis://HOST:PORT[/DB])", &value[1], &cmd->name);
    return NGX_CONF_ERROR;

bad_prefix:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid \"%V\" in \"%V\" directive (at most %d of "
                       "A-Z a-z 0-9 : _ . -)", &value[i], &cmd->name,
                       NGX_HTTP_TOKENGATE_PREFIX_MAX);
    return NGX_CONF_ERROR;
}

#endif


/* The merged location: the shared level needs the node's zone. */
char *
ngx_http_tokengate_shared_merge(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *conf)
{
    if (conf->shared != NULL && conf->cache == NULL
        && ngx_http_tokengate_conf_on(conf))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tokengate_shared_cache\" needs "
                           "\"tokengate_cache\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* A merged location that stores in Redis: its pair (see
 * ngx_http_tokengate_pair_t), unless known already. */
char *
ngx_http_tokengate_shared_register(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *conf)
{
    ngx_uint_t                       i;
    ngx_http_tokengate_pair_t       *pair;
    ngx_http_tokengate_main_conf_t  *tmcf;

    if (conf->shared == NULL || conf->cache == NULL || conf->tg == NULL) {
        return NGX_CONF_OK;
    }

    if (ngx_http_tokengate_shared_register_backoff(cf, conf) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_tokengate_module);

    if (tmcf->shared_pairs == NULL) {
        tmcf->shared_pairs = ngx_array_create(cf->pool, 4,
                                             sizeof(ngx_http_tokengate_pair_t));
        if (tmcf->shared_pairs == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    pair = tmcf->shared_pairs->elts;

    for (i = 0; i < tmcf->shared_pairs->nelts; i++) {
        if (pair[i].sh == conf->shared && pair[i].zone == conf->cache
            && ngx_memcmp(pair[i].fingerprint, conf->fingerprint,
                          NGX_HTTP_TOKENGATE_MAC_LEN)
               == 0)
        {
            return NGX_CONF_OK;
        }
    }

    pair = ngx_array_push(tmcf->shared_pairs);
    if (pair == NULL) {
        return NGX_CONF_ERROR;
    }

    pair->sh = conf->shared;
    pair->zone = conf->cache;
    ngx_memcpy(pair->fingerprint, conf->fingerprint,
               NGX_HTTP_TOKENGATE_MAC_LEN);

    return NGX_CONF_OK;
}


/* The location's server's back-off, in its Redis (see
 * ngx_http_tokengate_shared_backoff_t), unless known already. */
static char *
ngx_http_tokengate_shared_register_backoff(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *conf)
{
    u_char                               *p;
    ngx_uint_t                            i;
    ngx_http_tokengate_main_conf_t       *tmcf;
    ngx_http_tokengate_shared_backoff_t  *b;

    if (!conf->backoff || conf->tg->url == NULL) {
        return NGX_CONF_OK;
    }

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_tokengate_module);

    if (tmcf->shared_backoffs == NULL) {
        tmcf->shared_backoffs = ngx_array_create(cf->pool, 4,
                                   sizeof(ngx_http_tokengate_shared_backoff_t));
        if (tmcf->shared_backoffs == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    b = tmcf->shared_backoffs->elts;

    for (i = 0; i < tmcf->shared_backoffs->nelts; i++) {
        if (b[i].sh == conf->shared
            && ngx_memcmp(b[i].key, conf->backoff_key,
                          NGX_HTTP_TOKENGATE_MAC_LEN)
               == 0)
        {
            return NGX_CONF_OK;
        }
    }

    b = ngx_array_push(tmcf->shared_backoffs);
    if (b == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(b, sizeof(ngx_http_tokengate_shared_backoff_t));

    b->sh = conf->shared;
    ngx_memcpy(b->key, conf->backoff_key, NGX_HTTP_TOKENGATE_MAC_LEN);

    p = ngx_cpymem(b->skey, conf->shared->prefix.data,
                   conf->shared->prefix.len);
    p = ngx_cpymem(p, "backoff:", sizeof("backoff:") - 1);
    p = ngx_hex_dump(p, b->key, NGX_HTTP_TOKENGATE_MAC_LEN);
    b->skey_len = p - b->skey;

    return NGX_CONF_OK;
}


/*
 * A Retry-After deadline of the server of key, set on this node
 * (ngx_http_tokengate_backoff_record): SET it, sealed, in each Redis whose
 * locations call that server, until it passes, for the other nodes.
 */
void
ngx_http_tokengate_shared_backoff(const u_char *key, time_t until)
{
#if (NGX_HTTP_TOKENGATE_REDIS)

    time_t                                now;
    ngx_uint_t                            i, n;
    ngx_http_tokengate_main_conf_t       *tmcf;
    ngx_http_tokengate_shared_backoff_t  *b;
    u_char                                plain[8];
    u_char                                sealed[NGX_HTTP_TOKENGATE_SEALED(8)];

    tmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_tokengate_module);

    now = ngx_time();

    if (tmcf == NULL || tmcf->shared_backoffs == NULL || until <= now) {
        return;
    }

    for (n = 0; n < 8; n++) {
        plain[n] = (u_char) ((uint64_t) until >> (56 - 8 * n));
    }

    b = tmcf->shared_backoffs->elts;

    for (i = 0; i < tmcf->shared_backoffs->nelts; i++) {
        if (ngx_memcmp(b[i].key, key, NGX_HTTP_TOKENGATE_MAC_LEN) != 0) {
            continue;
        }

        if (ngx_http_tokengate_seal(b[i].sh, b[i].skey, b[i].skey_len, plain,
                                    sizeof(plain), sealed)
            != NGX_OK)
        {
            continue;
        }

        (void) ngx_http_tokengate_shared_set(b[i].sh, b[i].skey,
                                             b[i].skey_len, sealed,
                                             sizeof(sealed),
                                             (ngx_msec_t) (until - now)
                                             * 1000);
    }

#endif
}


#if (NGX_HTTP_TOKENGATE_REDIS)

/* A polled deadline came: no call to that server before it. */
static void
ngx_http_tokengate_backoff_polled(void *data, ngx_int_t rc, u_char *value,
    size_t len)
{
    ngx_http_tokengate_shared_backoff_t *b = data;

    time_t      until;
    ngx_int_t   n;
    ngx_uint_t  i;
    u_char      plain[NGX_HTTP_TOKENGATE_SEALED(8)];

    b->polling = 0;

    if (rc != NGX_OK) {
        return;
    }

    if (len != NGX_HTTP_TOKENGATE_SEALED(8)) {
        ngx_http_tokengate_shared_count(NGX_HTTP_TOKENGATE_SHARED_REJECTED);
        return;
    }

    n = ngx_http_tokengate_open(b->sh, b->skey, b->skey_len, value, len,
                                plain);

    if (n != 8) {
        ngx_http_tokengate_shared_count(NGX_HTTP_TOKENGATE_SHARED_REJECTED);
        return;
    }

    until = 0;

    for (i = 0; i < 8; i++) {
        until = (time_t) (((uint64_t) until << 8) | plain[i]);
    }

    if (until > ngx_time()) {
        ngx_http_tokengate_backoff_extend(b->key, until);
    }
}


/* Every second: GET each deadline (never on a request's path). */
static void
ngx_http_tokengate_backoff_poll(ngx_event_t *ev)
{
    ngx_uint_t                            i;
    ngx_http_tokengate_main_conf_t       *tmcf;
    ngx_http_tokengate_shared_backoff_t  *b;

    if (ngx_http_tokengate_redis_exiting || ngx_exiting || ngx_quit) {
        return;
    }

    tmcf = ev->data;
    b = tmcf->shared_backoffs->elts;

    for (i = 0; i < tmcf->shared_backoffs->nelts; i++) {
        if (b[i].polling) {
            continue;
        }

        if (ngx_http_tokengate_shared_get(b[i].sh, b[i].skey, b[i].skey_len,
                                          ngx_http_tokengate_backoff_polled,
                                          &b[i])
            != NULL)
        {
            b[i].polling = 1;
        }
    }

    ngx_add_timer(ev, NGX_HTTP_TOKENGATE_POLL);
}

#endif


/*
 * Logout and purge: DEL the token's entry in Redis under every pair (of
 * zone's locations; zone NULL: of every location), so that no node of the
 * fleet takes it from there again.  Not waited for: a DEL is written at
 * once and Redis runs the commands of a connection in order.  Without a
 * connection now, the entry stays until its PX (logged).
 */
void
ngx_http_tokengate_shared_purge(ngx_shm_zone_t *zone, ngx_str_t *token,
    ngx_uint_t basic, ngx_log_t *log)
{
    size_t                           len;
    ngx_uint_t                       i, n;
    ngx_http_tokengate_pair_t       *pair;
    ngx_http_tokengate_main_conf_t  *tmcf;
    u_char                           key[NGX_HTTP_TOKENGATE_SKEY_MAX];

    tmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_tokengate_module);

    if (tmcf == NULL || tmcf->shared_pairs == NULL) {
        return;
    }

    pair = tmcf->shared_pairs->elts;
    n = 0;

    for (i = 0; i < tmcf->shared_pairs->nelts; i++) {
        if (zone != NULL && pair[i].zone != zone
            && pair[i].zone->shm.addr != zone->shm.addr)
        {
            continue;
        }

        if (ngx_http_tokengate_shared_key(pair[i].sh, token, basic,
                                          pair[i].fingerprint, key, &len)
            != NGX_OK)
        {
            continue;
        }

        if (ngx_http_tokengate_shared_delete(pair[i].sh, key, len) != NGX_OK)
        {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "tokengate: Redis %V: not connected, a purged "
                          "token's entry stays there until it expires",
                          &pair[i].sh->redis->url);
            continue;
        }

        n++;
    }

    ngx_explicit_memzero(key, sizeof(key));

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "tokengate: %ui Redis entries of a token deleted", n);
}


/* The lookup's leader changes (ngx_http_tokengate_handover). */
void
ngx_http_tokengate_shared_move(void *lookup, ngx_http_tokengate_ctx_t *ctx)
{
    ngx_http_tokengate_get_t *g = lookup;

    g->data = ctx;
}


/* Forget a GET whose caller goes away; its reply will be dropped. */
void
ngx_http_tokengate_shared_cancel(void *lookup)
{
    ngx_http_tokengate_get_t *g = lookup;

    g->handler = NULL;
    g->data = NULL;

    if (g->timer.timer_set) {
        ngx_del_timer(&g->timer);
    }
}


#if (NGX_HTTP_TOKENGATE_REDIS)

/* hiredis's event hooks on the connection's nginx events. */

static void
ngx_http_tokengate_redis_add_read(void *privdata)
{
    ngx_http_tokengate_redis_t *rd = privdata;

    if (rd->conn != NULL && !rd->conn->read->active) {
        (void) ngx_add_event(rd->conn->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_tokengate_redis_del_read(void *privdata)
{
    ngx_http_tokengate_redis_t *rd = privdata;

    if (rd->conn != NULL && rd->conn->read->active) {
        (void) ngx_del_event(rd->conn->read, NGX_READ_EVENT, 0);
    }
}


/*
 * hiredis has something to write: once connected, try at the end of this
 * turn of the event loop (a posted event: no epoll_ctl() per command, and
 * the commands of one turn go out in one write); the fd is watched only
 * while connecting and when hiredis could not write everything (it asks
 * again from the write handler).
 */
static void
ngx_http_tokengate_redis_add_write(void *privdata)
{
    ngx_http_tokengate_redis_t *rd = privdata;

    ngx_event_t  *wev;

    if (rd->conn == NULL) {
        return;
    }

    wev = rd->conn->write;

    if (wev->active || wev->posted) {
        return;
    }

    if (!rd->writing && rd->ac != NULL
        && (rd->ac->c.flags & REDIS_CONNECTED))
    {
        ngx_post_event(wev, &ngx_posted_events);
        return;
    }

    (void) ngx_add_event(wev, NGX_WRITE_EVENT, 0);
}


static void
ngx_http_tokengate_redis_del_write(void *privdata)
{
    ngx_http_tokengate_redis_t *rd = privdata;

    if (rd->conn == NULL) {
        return;
    }

    if (rd->conn->write->active) {
        (void) ngx_del_event(rd->conn->write, NGX_WRITE_EVENT, 0);
    }

    if (rd->conn->write->posted) {
        ngx_delete_posted_event(rd->conn->write);
    }
}


/* hiredis is about to close the fd: forget its events, free (not close)
 * the connection. */
static void
ngx_http_tokengate_redis_cleanup(void *privdata)
{
    ngx_connection_t            *c;
    ngx_http_tokengate_redis_t  *rd = privdata;

    c = rd->conn;

    if (c == NULL) {
        return;
    }

    rd->conn = NULL;

    ngx_http_tokengate_forget_connection(c);
}


static void
ngx_http_tokengate_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_tokengate_redis_t  *rd;

    c = ev->data;
    rd = c->data;

    if (rd->ac != NULL) {
        redisAsyncHandleRead(rd->ac);
    }
}


static void
ngx_http_tokengate_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_tokengate_redis_t  *rd;

    c = ev->data;
    rd = c->data;

    if (rd->ac == NULL) {
        return;
    }

    /* what hiredis could not write now waits for the fd (add_write) */

    rd->writing = 1;
    redisAsyncHandleWrite(rd->ac);
    rd->writing = 0;
}


static void
ngx_http_tokengate_redis_connected(const redisAsyncContext *ac, int status)
{
    ngx_http_tokengate_redis_t *rd = ac->data;

    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        rd->ac = NULL;
        ngx_http_tokengate_redis_log(rd, "cannot connect", ac->errstr);
        ngx_http_tokengate_redis_drop(rd, NULL);
    }
}


static void
ngx_http_tokengate_redis_disconnected(const redisAsyncContext *ac,
    int status)
{
    ngx_http_tokengate_redis_t *rd = ac->data;

    if (rd->ac == ac) {
        rd->ac = NULL;

        if (status != REDIS_OK) {
            ngx_http_tokengate_redis_log(rd, "connection lost", ac->errstr);
        }

        ngx_http_tokengate_redis_drop(rd, NULL);
    }
}


/* AUTH and SELECT: an error reply drops the connection. */
static void
ngx_http_tokengate_redis_setup_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                  *reply = r;
    ngx_http_tokengate_redis_t  *rd = privdata;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_tokengate_redis_log(rd, "AUTH or SELECT refused",
                                     reply->str);

        /* not from hiredis's stack: the timer frees the context */
        if (rd->timer.timer_set) {
            ngx_del_timer(&rd->timer);
        }

        ngx_add_timer(&rd->timer, 1);
        return;
    }

    rd->backoff = NGX_HTTP_TOKENGATE_BACKOFF_MIN;
}


static void
ngx_http_tokengate_redis_connect(ngx_http_tokengate_redis_t *rd)
{
    ngx_connection_t   *c;
    redisAsyncContext  *ac;

    ac = redisAsyncConnect((char *) rd->host, (int) rd->port);

    if (ac == NULL) {
        ngx_http_tokengate_redis_log(rd, "cannot connect", "out of memory");
        ngx_http_tokengate_redis_drop(rd, NULL);
        return;
    }

    if (ac->err) {
        ngx_http_tokengate_redis_log(rd, "cannot connect", ac->errstr);
        redisAsyncFree(ac);
        ngx_http_tokengate_redis_drop(rd, NULL);
        return;
    }

    c = ngx_get_connection(ac->c.fd, ngx_cycle->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        ngx_http_tokengate_redis_drop(rd, NULL);
        return;
    }

    c->data = rd;
    c->log = ngx_cycle->log;
    c->read->log = c->log;
    c->write->log = c->log;
    c->read->handler = ngx_http_tokengate_redis_read_handler;
    c->write->handler = ngx_http_tokengate_redis_write_handler;

    rd->conn = c;
    rd->ac = ac;
    rd->pending = 0;

    ac->data = rd;
    ac->ev.data = rd;
    ac->ev.addRead = ngx_http_tokengate_redis_add_read;
    ac->ev.delRead = ngx_http_tokengate_redis_del_read;
    ac->ev.addWrite = ngx_http_tokengate_redis_add_write;
    ac->ev.delWrite = ngx_http_tokengate_redis_del_write;
    ac->ev.cleanup = ngx_http_tokengate_redis_cleanup;

    (void) redisAsyncSetConnectCallback(ac,
                                        ngx_http_tokengate_redis_connected);
    (void) redisAsyncSetDisconnectCallback(ac,
                                       ngx_http_tokengate_redis_disconnected);

    if (rd->password.len != 0) {
        (void) redisAsyncCommand(ac, ngx_http_tokengate_redis_setup_reply,
                                 rd, "AUTH %b", rd->password.data,
                                 rd->password.len);
    }

    if (rd->db != 0) {
        (void) redisAsyncCommand(ac, ngx_http_tokengate_redis_setup_reply,
                                 rd, "SELECT %d", (int) rd->db);
    }

    /* the connect completes when the fd is writable */
    ngx_http_tokengate_redis_add_write(rd);
}


/*
 * Drop the connection (if any: its pending commands end as errors) and
 * connect again after the back-off, which doubles up to 30 s and starts
 * over at 1 s once AUTH (or the first command) succeeds.
 */
static void
ngx_http_tokengate_redis_drop(ngx_http_tokengate_redis_t *rd,
    const char *why)
{
    redisAsyncContext  *ac;

    if (why != NULL) {
        ngx_http_tokengate_redis_log(rd, why, NULL);
    }

    ac = rd->ac;
    rd->ac = NULL;

    if (ac != NULL) {
        redisAsyncFree(ac);
    }

    if (ngx_http_tokengate_redis_exiting) {
        return;
    }

    if (rd->timer.timer_set) {
        ngx_del_timer(&rd->timer);
    }

    ngx_add_timer(&rd->timer, rd->backoff);

    rd->backoff = ngx_min(2 * rd->backoff, NGX_HTTP_TOKENGATE_BACKOFF_MAX);
}


/* The reconnect timer; also frees a context AUTH failed on. */
static void
ngx_http_tokengate_redis_timer(ngx_event_t *ev)
{
    ngx_http_tokengate_redis_t *rd = ev->data;

    if (ngx_http_tokengate_redis_exiting) {
        return;
    }

    if (rd->ac != NULL) {
        ngx_http_tokengate_redis_drop(rd, NULL);
        return;
    }

    ngx_http_tokengate_redis_connect(rd);
}


/* One log line per interval for a Redis, not one per request. */
static void
ngx_http_tokengate_redis_log(ngx_http_tokengate_redis_t *rd,
    const char *what, const char *detail)
{
    time_t  now;

    now = ngx_time();

    if (rd->logged != 0 && now - rd->logged < NGX_HTTP_TOKENGATE_LOG_INTERVAL)
    {
        rd->suppressed++;
        return;
    }

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "tokengate: shared cache \"%V\": %s%s%s (%ui more in the "
                  "last %d s); requests go on to the auth server",
                  &rd->url, what, detail != NULL ? ": " : "",
                  detail != NULL ? detail : "", rd->suppressed,
                  NGX_HTTP_TOKENGATE_LOG_INTERVAL);

    rd->logged = now;
    rd->suppressed = 0;
}


/* A GET's reply (NULL: the connection went away). */
static void
ngx_http_tokengate_get_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply                *reply = r;
    ngx_http_tokengate_get_t  *g = privdata;

    ngx_int_t                         rc;
    ngx_http_tokengate_redis_t       *rd;
    ngx_http_tokengate_shared_get_pt  handler;

    rd = g->redis;

    if (rd->pending > 0) {
        rd->pending--;
    }

    if (g->timer.timer_set) {
        ngx_del_timer(&g->timer);
    }

    handler = g->handler;

    if (reply == NULL) {
        rc = NGX_ERROR;

    } else if (reply->type == REDIS_REPLY_NIL) {
        rc = NGX_DECLINED;
        rd->backoff = NGX_HTTP_TOKENGATE_BACKOFF_MIN;

    } else if (reply->type == REDIS_REPLY_STRING) {
        rc = NGX_OK;
        rd->backoff = NGX_HTTP_TOKENGATE_BACKOFF_MIN;

    } else {
        rc = NGX_ERROR;
        ngx_http_tokengate_redis_log(rd, "unexpected reply to GET",
                                     reply->type == REDIS_REPLY_ERROR
                                     ? reply->str : "not a string");
    }

    if (handler != NULL) {
        handler(g->data, rc, rc == NGX_OK ? (u_char *) reply->str : NULL,
                rc == NGX_OK ? reply->len : 0);
    }

    ngx_free(g);
}


/* A GET past its timeout: Redis is slow; drop the connection (which ends
 * this GET and the others on it as errors). */
static void
ngx_http_tokengate_get_timeout(ngx_event_t *ev)
{
    ngx_http_tokengate_get_t  *g = ev->data;

    ngx_http_tokengate_redis_drop(g->redis, "timed out");
}


static void
ngx_http_tokengate_set_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply                  *reply = r;
    ngx_http_tokengate_redis_t  *rd = privdata;

    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        ngx_http_tokengate_shared_count(NGX_HTTP_TOKENGATE_SHARED_ERRORS);
        ngx_http_tokengate_redis_log(rd, "write refused", reply->str);
    }
}


/*
 * Write what was just queued now rather than on the next write event
 * (hiredis writes what it can without blocking): a SET reaches Redis before
 * the answer it stores reaches the client, so that the next node asking
 * finds it.  Not from within a hiredis callback nor while connecting.  A
 * write error frees the context here: the GETs pending on it end (as
 * errors) before this returns, so a GET is never flushed from
 * ngx_http_tokengate_shared_get (its caller holds no handle yet).
 */
static void
ngx_http_tokengate_redis_flush(ngx_http_tokengate_redis_t *rd)
{
    redisAsyncContext  *ac;

    ac = rd->ac;

    if (ac != NULL && (ac->c.flags & REDIS_CONNECTED)
        && !(ac->c.flags & (REDIS_IN_CALLBACK|REDIS_DISCONNECTING
                            |REDIS_FREEING)))
    {
        rd->writing = 1;
        redisAsyncHandleWrite(ac);
        rd->writing = 0;
    }
}

#endif /* NGX_HTTP_TOKENGATE_REDIS */


/*
 * The generic async GET (for the shared back-off and failure limits too):
 * handler(data, rc, value, len) runs once, from the event loop, with
 * NGX_OK and the value (borrowed until it returns), NGX_DECLINED (no such
 * key) or NGX_ERROR (Redis down, slow past the timeout, a reply not a
 * string); never from this call.  NULL: not sent (no connection now); the
 * handler will not run.  The returned handle is for
 * ngx_http_tokengate_shared_cancel() until the handler runs.
 */
void *
ngx_http_tokengate_shared_get(ngx_http_tokengate_shared_t *sh, u_char *key,
    size_t key_len, ngx_http_tokengate_shared_get_pt handler, void *data)
{
#if (NGX_HTTP_TOKENGATE_REDIS)

    ngx_http_tokengate_get_t    *g;
    ngx_http_tokengate_redis_t  *rd;

    rd = sh->redis;

    if (rd->ac == NULL || rd->pending >= NGX_HTTP_TOKENGATE_PENDING_MAX
        || key_len > NGX_HTTP_TOKENGATE_SKEY_MAX)
    {
        return NULL;
    }

    g = ngx_calloc(sizeof(ngx_http_tokengate_get_t), ngx_cycle->log);
    if (g == NULL) {
        return NULL;
    }

    g->redis = rd;
    g->handler = handler;
    g->data = data;
    g->sh = sh;
    g->key_len = key_len;
    ngx_memcpy(g->key, key, key_len);

    if (redisAsyncCommand(rd->ac, ngx_http_tokengate_get_reply, g, "GET %b",
                          g->key, g->key_len)
        != REDIS_OK)
    {
        ngx_free(g);
        return NULL;
    }

    rd->pending++;

    g->timer.handler = ngx_http_tokengate_get_timeout;
    g->timer.data = g;
    g->timer.log = ngx_cycle->log;

    ngx_add_timer(&g->timer, sh->timeout);

    return g;

#else

    return NULL;

#endif
}


/* SET key value PX px (px 0: no expiry), not waited for; an error reply
 * (OOM, NOAUTH) is logged and counted.  NGX_DECLINED: no connection. */
ngx_int_t
ngx_http_tokengate_shared_set(ngx_http_tokengate_shared_t *sh, u_char *key,
    size_t key_len, u_char *value, size_t len, ngx_msec_t px)
{
#if (NGX_HTTP_TOKENGATE_REDIS)

    int                          rc;
    ngx_http_tokengate_redis_t  *rd;

    rd = sh->redis;

    if (rd->ac == NULL || rd->pending >= NGX_HTTP_TOKENGATE_PENDING_MAX) {
        return NGX_DECLINED;
    }

    if (px > 0) {
        rc = redisAsyncCommand(rd->ac, ngx_http_tokengate_set_reply, rd,
                               "SET %b %b PX %u", key, key_len, value, len,
                               (unsigned int) px);

    } else {
        rc = redisAsyncCommand(rd->ac, ngx_http_tokengate_set_reply, rd,
                               "SET %b %b", key, key_len, value, len);
    }

    if (rc != REDIS_OK) {
        return NGX_DECLINED;
    }

    ngx_http_tokengate_redis_flush(rd);

    return NGX_OK;

#else

    return NGX_DECLINED;

#endif
}


/* DEL the token's entry (logout, purge: the whole fleet forgets it);
 * NGX_DECLINED: no connection now, not sent. */
ngx_int_t
ngx_http_tokengate_shared_delete(ngx_http_tokengate_shared_t *sh,
    u_char *skey, size_t skey_len)
{
#if (NGX_HTTP_TOKENGATE_REDIS)

    ngx_http_tokengate_redis_t  *rd;

    rd = sh->redis;

    if (rd->ac != NULL
        && redisAsyncCommand(rd->ac, ngx_http_tokengate_set_reply, rd,
                             "DEL %b", skey, skey_len)
           == REDIS_OK)
    {
        ngx_http_tokengate_redis_flush(rd);
        return NGX_OK;
    }

#endif

    return NGX_DECLINED;
}


/* A worker connects to each Redis of its configuration. */
ngx_int_t
ngx_http_tokengate_shared_init_process(ngx_cycle_t *cycle)
{
#if (NGX_HTTP_TOKENGATE_REDIS)

    ngx_uint_t                       i;
    ngx_http_tokengate_redis_t      *rd;
    ngx_http_tokengate_main_conf_t  *tmcf;

    tmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_tokengate_module);

    if (tmcf == NULL || tmcf->shared_servers == NULL) {
        return NGX_OK;
    }

    rd = tmcf->shared_servers->elts;

    for (i = 0; i < tmcf->shared_servers->nelts; i++) {
        rd[i].timer.handler = ngx_http_tokengate_redis_timer;
        rd[i].timer.data = &rd[i];
        rd[i].timer.log = cycle->log;
        rd[i].timer.cancelable = 1;
        rd[i].backoff = NGX_HTTP_TOKENGATE_BACKOFF_MIN;

        ngx_http_tokengate_redis_connect(&rd[i]);
    }

    if (tmcf->shared_backoffs != NULL && tmcf->shared_backoffs->nelts > 0) {
        ngx_http_tokengate_poll_timer.handler =
                                           ngx_http_tokengate_backoff_poll;
        ngx_http_tokengate_poll_timer.data = tmcf;
        ngx_http_tokengate_poll_timer.log = cycle->log;
        ngx_http_tokengate_poll_timer.cancelable = 1;

        ngx_add_timer(&ngx_http_tokengate_poll_timer,
                      NGX_HTTP_TOKENGATE_POLL);
    }

#endif

    return NGX_OK;
}


void
ngx_http_tokengate_shared_exit_process(ngx_cycle_t *cycle)
{
#if (NGX_HTTP_TOKENGATE_REDIS)

    ngx_uint_t                       i;
    redisAsyncContext               *ac;
    ngx_http_tokengate_redis_t      *rd;
    ngx_http_tokengate_main_conf_t  *tmcf;

    ngx_http_tokengate_redis_exiting = 1;

    if (ngx_http_tokengate_poll_timer.timer_set) {
        ngx_del_timer(&ngx_http_tokengate_poll_timer);
    }

    tmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_tokengate_module);

    if (tmcf == NULL || tmcf->shared_servers == NULL) {
        return;
    }

    rd = tmcf->shared_servers->elts;

    for (i = 0; i < tmcf->shared_servers->nelts; i++) {
        if (rd[i].timer.timer_set) {
            ngx_del_timer(&rd[i].timer);
        }

        ac = rd[i].ac;
        rd[i].ac = NULL;

        if (ac != NULL) {
            redisAsyncFree(ac);
        }
    }

#endif
}
