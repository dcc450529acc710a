
/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_module: access-phase authentication of bearer tokens
 * against a FICO Xpress Insight or Looker server, without blocking the
 * worker.
 *
 * This file owns the module's definition (directives, the access
 * handler, the process hooks) and a request's way to a decision: from the
 * cache, or from a validation it starts (asking the fleet's shared cache
 * first) or joins, and waits for.  The request is built and the answer
 * parsed by libtokengate's pure code (tg_build_validate,
 * tg_parse_validate); what the answer means for the request is
 * ngx_http_tokengate_answer.c's.
 *
 * The other files: ngx_http_tokengate_answer.c (the server's answer
 * turned into an outcome, ngx_http_tokengate_decide and
 * ngx_http_tokengate_verdict, and the outcome into nginx's answer,
 * ngx_http_tokengate_answer), ngx_http_tokengate_token.c (the credentials
 * of a request, its identity in the $tokengate_* variables),
 * ngx_http_tokengate_conf.c (create, merge and the directive parsers),
 * ngx_http_tokengate_curl.c (the transfers on the worker's curl multi
 * handle), ngx_http_tokengate_cache.c (the shared cache),
 * ngx_http_tokengate_status.c (counters and tokengate_status),
 * ngx_http_tokengate_limit.c (tokengate_fail_limit),
 * ngx_http_tokengate_embed*.c (tokengate_embed).
 *
 * While a validation is in flight the request is "blocked" (as for thread
 * tasks and AIO), so nginx keeps it alive; the request cleanup removes the
 * transfer when the request is terminated early.  Requests of one worker
 * carrying the same token to the same settings wait on one in-flight
 * validation (coalescing, keyed by an HMAC with a per-worker key).
 */


#include "ngx_http_tokengate.h"

#include <openssl/rand.h>


static ngx_int_t ngx_http_tokengate_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_tokengate_cached(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, ngx_http_tokengate_loc_conf_t *tlcf,
    ngx_str_t *token);
static ngx_int_t ngx_http_tokengate_validate(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, ngx_http_tokengate_loc_conf_t *tlcf,
    ngx_str_t *token);
static ngx_int_t ngx_http_tokengate_join(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx);
static void ngx_http_tokengate_handover(ngx_http_tokengate_ctx_t *ctx);
static ngx_int_t ngx_http_tokengate_start(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, ngx_http_tokengate_loc_conf_t *tlcf,
    ngx_str_t *token);
static ngx_int_t ngx_http_tokengate_build(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, ngx_http_tokengate_loc_conf_t *tlcf,
    ngx_str_t *token, tg_request_t *req);
static ngx_int_t ngx_http_tokengate_send_req(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf, tg_request_t *req);
static void ngx_http_tokengate_finish(ngx_http_tokengate_ctx_t *ctx,
    tg_err_t err, tg_identity_t *id, tg_diag_t *diag, long retry_after);
static void ngx_http_tokengate_validated(void *data, tg_err_t err,
    tg_response_t *resp, time_t sent_at, const char *reason);
static tg_err_t ngx_http_tokengate_exchanged(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf, tg_response_t *resp,
    tg_diag_t *diag);
static void ngx_http_tokengate_watch_client(ngx_http_request_t *r);
static void ngx_http_tokengate_wake_handler(ngx_event_t *ev);
static void ngx_http_tokengate_cleanup(void *data);
static ngx_int_t ngx_http_tokengate_init_process(ngx_cycle_t *cycle);
static void ngx_http_tokengate_exit(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_tokengate_init(ngx_conf_t *cf);


static ngx_conf_post_handler_pt  ngx_http_tokengate_positive_msec_p =
    ngx_http_tokengate_positive_msec;


static ngx_conf_enum_t  ngx_http_tokengate_api[] = {
    { ngx_string("insight"), TG_API_INSIGHT },
    { ngx_string("looker"), TG_API_LOOKER },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_tokengate_on_unavailable[] = {
    { ngx_string("deny"), NGX_HTTP_TOKENGATE_UNAVAILABLE_DENY },
    { ngx_string("stale"), NGX_HTTP_TOKENGATE_UNAVAILABLE_STALE },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_tokengate_commands[] = {

    { ngx_string("tokengate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_loc_conf_t, realm),
      NULL },

    { ngx_string("tokengate_config"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tokengate_config_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_loc_conf_t, config_file),
      NULL },

    { ngx_string("tokengate_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_loc_conf_t, url),
      NULL },

    { ngx_string("tokengate_api"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tokengate_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_loc_conf_t, api),
      &ngx_http_tokengate_api },

    { ngx_string("tokengate_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_loc_conf_t, token),
      NULL },

    { ngx_string("tokengate_basic"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_loc_conf_t, basic),
      NULL },

    { ngx_string("tokengate_login_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_loc_conf_t, login_url),
      NULL },

    { ngx_string("tokengate_require_group"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tokengate_require_group,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tokengate_require"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tokengate_require,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tokengate_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tokengate_cache,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tokengate_shared_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tokengate_shared_cache,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tokengate_on_unavailable"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tokengate_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_loc_conf_t, on_unavailable),
      &ngx_http_tokengate_on_unavailable },

    { ngx_string("tokengate_fail_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tokengate_fail_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tokengate_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_tokengate_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tokengate_backoff"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_loc_conf_t, backoff),
      NULL },

    { ngx_string("tokengate_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_loc_conf_t, timeout),
      &ngx_http_tokengate_positive_msec_p },

    { ngx_string("tokengate_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_loc_conf_t, connect_timeout),
      &ngx_http_tokengate_positive_msec_p },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_tokengate_module_ctx = {
    ngx_http_tokengate_add_variables,      /* preconfiguration */
    ngx_http_tokengate_init,               /* postconfiguration */

    ngx_http_tokengate_create_main_conf,   /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_tokengate_create_loc_conf,    /* create location configuration */
    ngx_http_tokengate_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_http_tokengate_module = {
    NGX_MODULE_V1,
    &ngx_http_tokengate_module_ctx,        /* module context */
    ngx_http_tokengate_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_tokengate_init_module,        /* init module */
    ngx_http_tokengate_init_process,       /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_tokengate_exit,               /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* Per worker: the validations in flight, which identical requests wait
 * on (coalescing), and the key of the MACs that find them. */
static ngx_queue_t        ngx_http_tokengate_leaders;
static u_char             ngx_http_tokengate_ckey[NGX_HTTP_TOKENGATE_MAC_LEN];
static ngx_uint_t         ngx_http_tokengate_ckey_ready;


static ngx_int_t
ngx_http_tokengate_handler(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_str_t                       realm, token;
    ngx_http_cleanup_t             *cln;
    ngx_http_tokengate_ctx_t       *ctx;
    ngx_http_tokengate_loc_conf_t  *tlcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tokengate_module);

    if (tlcf->realm == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_tokengate_module);

    if (ctx != NULL) {
        if (!ctx->woken) {
            /* a spurious wake-up: the transfer is still running */
            return NGX_AGAIN;
        }

        return ngx_http_tokengate_answer(r, ctx);
    }

    if (ngx_http_complex_value(r, tlcf->realm, &realm) != NGX_OK) {
        return NGX_ERROR;
    }

    if (realm.len == 3 && ngx_strncmp(realm.data, "off", 3) == 0) {
        return NGX_DECLINED;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_tokengate_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->request = r;
    ctx->realm = realm;
    ctx->handler = ngx_http_tokengate_validated;
    ctx->data = ctx;

    /* Fail closed: only a completed, accepted validation is VALID. */
    ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_UNAVAILABLE);
    ctx->retry_after = -1;

    ngx_http_set_ctx(r, ctx, ngx_http_tokengate_module);

    /* a client over its refusals: nothing else, no call */

    rc = ngx_http_tokengate_limit_check(r, ctx, tlcf);

    if (rc == NGX_BUSY) {
        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_LIMITED);
        return ngx_http_tokengate_answer(r, ctx);
    }

    if (rc != NGX_DECLINED) {
        return NGX_ERROR;
    }

    rc = ngx_http_tokengate_find_token(r, tlcf, &token);

    if (rc == NGX_HTTP_UNAUTHORIZED) {
        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_MISSING);
        return ngx_http_tokengate_answer(r, ctx);
    }

    if (rc == NGX_HTTP_BAD_REQUEST) {
        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_MALFORMED);
        return ngx_http_tokengate_answer(r, ctx);
    }

    if (rc == NGX_DONE) {
        ctx->basic = 1;

    } else if (rc != NGX_OK) {
        return rc;
    }

    /*
     * A bearer token is still the request's own bytes: a hit needs no
     * copy to wipe and no syntax check (the entry was made from the same
     * bytes, checked then).  Basic credentials are a decoded copy.
     */

    ctx->token = token;

    rc = ngx_http_tokengate_cached(r, ctx, tlcf, &token);

    if (rc == NGX_OK) {
        /* A request that may still log (denied, or with tokengate_require
         * to check) needs the fingerprint before the token goes; an
         * allowed hit never computes it. */
        if (!ctx->allowed || tlcf->require != NULL) {
            (void) ngx_http_tokengate_fp(ctx);
        }

        ngx_str_null(&ctx->token);

        if (ctx->basic) {
            ngx_explicit_memzero(token.data, token.len);
        }

        ctx->done = 1;
        ctx->woken = 1;
        return ngx_http_tokengate_answer(r, ctx);
    }

    if (!ctx->basic) {
        rc = ngx_http_tokengate_check_token(r, &token);

        if (rc != NGX_OK) {
            ngx_str_null(&ctx->token);
            ngx_str_null(&ctx->cache_status);

            if (rc != NGX_HTTP_BAD_REQUEST) {
                return NGX_ERROR;
            }

            ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_MALFORMED);
            return ngx_http_tokengate_answer(r, ctx);
        }

        ctx->token = token;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        ngx_str_null(&ctx->token);
        ngx_explicit_memzero(token.data, token.len);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_tokengate_cleanup;
    cln->data = ctx;

    rc = ngx_http_tokengate_validate(r, ctx, tlcf, &token);

    /* A request that may still log (denied, waiting, or with
     * tokengate_require to check) needs the fingerprint before the token
     * goes. */
    if (rc != NGX_OK || !ctx->allowed || tlcf->require != NULL) {
        (void) ngx_http_tokengate_fp(ctx);
    }

    ngx_str_null(&ctx->token);
    ngx_explicit_memzero(token.data, token.len);

    if (rc == NGX_OK) {
        /* decided without a call (backing off) */
        ctx->done = 1;
        ctx->woken = 1;
        return ngx_http_tokengate_answer(r, ctx);
    }

    if (rc != NGX_AGAIN) {
        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_UNAVAILABLE);
        return ngx_http_tokengate_answer(r, ctx);
    }

    return NGX_AGAIN;
}


/* Decide from the zone (NGX_OK) with the token as it came (its bytes are
 * only MACed), or NGX_DECLINED. */
static ngx_int_t
ngx_http_tokengate_cached(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, ngx_http_tokengate_loc_conf_t *tlcf,
    ngx_str_t *token)
{
    ngx_http_tokengate_cache_t  *cache;

    ctx->tg = tlcf->tg;
    ctx->cache = tlcf->cache;

    if (tlcf->cache == NULL) {
        return NGX_DECLINED;
    }

    cache = tlcf->cache->data;

    if (cache->sh != NULL
        && ngx_http_tokengate_mac(cache->sh->key, token, ctx->basic,
                                  tlcf->fingerprint, ctx->mac)
           == NGX_OK)
    {
        ctx->has_mac = 1;

        if (ngx_http_tokengate_cache_lookup(r, ctx, tlcf) == NGX_OK) {
            ngx_str_set(&ctx->cache_status, "HIT");
            return NGX_OK;
        }
    }

    ngx_str_set(&ctx->cache_status, "MISS");

    return NGX_DECLINED;
}


/* After a miss in the zone: decide now (NGX_OK, backing off), or wait
 * (NGX_AGAIN) on an identical in-flight validation of this worker or on a
 * new one. */
static ngx_int_t
ngx_http_tokengate_validate(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, ngx_http_tokengate_loc_conf_t *tlcf,
    ngx_str_t *token)
{
    time_t       wait;
    tg_diag_t    diag;
    ngx_uint_t   probe;

    ctx->wake.handler = ngx_http_tokengate_wake_handler;
    ctx->wake.data = ctx;
    ctx->wake.log = r->connection->log;

    if (tlcf->cache != NULL) {
        /* the store indexes the entry by token for logout and purge */
        if (ngx_http_tokengate_cache_token_mac(tlcf->cache, token,
                                               ctx->basic, ctx->tmac)
            == NGX_OK)
        {
            ctx->has_tmac = 1;
        }
    }

    /* waiting on the server: the log lines to come need the fingerprint */
    (void) ngx_http_tokengate_fp(ctx);

    if (ngx_http_tokengate_ckey_ready
        && ngx_http_tokengate_mac(ngx_http_tokengate_ckey, token, ctx->basic,
                                  tlcf->fingerprint, ctx->cmac)
           == NGX_OK)
    {
        ctx->has_cmac = 1;

        if (ngx_http_tokengate_join(r, ctx) == NGX_OK) {
            if (tlcf->cache != NULL) {
                ngx_str_set(&ctx->cache_status, "COALESCED");
            }

            return NGX_AGAIN;
        }
    }

    /*
     * the node backs off from the server: no call before the deadline (the
     * fleet's shared cache is not asked either: the zone answers alone)
     */

    if (ngx_http_tokengate_backoff_check(tlcf, r->connection->log, &wait,
                                         &probe)
        != NGX_OK)
    {
        tg_diag_clear(&diag);
        ngx_snprintf((u_char *) diag.message, sizeof(diag.message) - 1,
                     "backing off, no call for %T s%Z", wait);
        ngx_http_tokengate_decide(ctx, TG_RATE_LIMITED, NULL, &diag,
                                  (long) wait);
        return NGX_OK;
    }

    if (tlcf->shared != NULL && ctx->has_mac
        && ngx_http_tokengate_shared_key(tlcf->shared, token, ctx->basic,
                                         tlcf->fingerprint, ctx->skey,
                                         &ctx->skey_len)
           == NGX_OK)
    {
        /* the fleet's level: the validation is built now (the token is
         * wiped when the handler returns) and sent on a miss */

        if (ngx_http_tokengate_build(r, ctx, tlcf, token, &ctx->req)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ctx->has_req = 1;

        if (ngx_http_tokengate_shared_lookup(ctx, tlcf) == NGX_AGAIN) {
            r->main->blocked++;
            ctx->blocked = 1;
            ngx_http_tokengate_watch_client(r);

        } else {
            ctx->has_req = 0;

            if (ngx_http_tokengate_send_req(ctx, tlcf, &ctx->req) != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

    } else if (ngx_http_tokengate_start(r, ctx, tlcf, token) != NGX_OK) {
        return NGX_ERROR;
    }

    if (tlcf->backoff) {
        ctx->backoff_key = tlcf->backoff_key;
        ctx->backoff_probe = probe;
    }

    ctx->is_leader = 1;
    ngx_queue_init(&ctx->waiters);

    if (ctx->has_cmac) {
        ngx_queue_insert_tail(&ngx_http_tokengate_leaders, &ctx->inflight);

    } else {
        ngx_queue_init(&ctx->inflight);
    }

    return NGX_AGAIN;
}


/* Wait on a leader validating the same token with the same settings (the
 * coalescing MAC covers the fingerprint) for the same cache zone: the
 * leader stores the answer, a refusal included, in its own zone only. */
static ngx_int_t
ngx_http_tokengate_join(ngx_http_request_t *r, ngx_http_tokengate_ctx_t *ctx)
{
    ngx_queue_t               *q;
    ngx_http_tokengate_ctx_t  *l;

    for (q = ngx_queue_head(&ngx_http_tokengate_leaders);
         q != ngx_queue_sentinel(&ngx_http_tokengate_leaders);
         q = ngx_queue_next(q))
    {
        l = ngx_queue_data(q, ngx_http_tokengate_ctx_t, inflight);

        if (l->cache == ctx->cache
            && ngx_memcmp(l->cmac, ctx->cmac, NGX_HTTP_TOKENGATE_MAC_LEN) == 0)
        {
            ctx->leader = l;
            ngx_queue_insert_tail(&l->waiters, &ctx->wait_link);

            r->main->blocked++;
            ctx->blocked = 1;
            ngx_http_tokengate_watch_client(r);

            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "tokengate: token %s joins a validation", ctx->fp);
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* The leader's request goes away: its first follower takes the transfer
 * over, so that the others keep waiting on it. */
static void
ngx_http_tokengate_handover(ngx_http_tokengate_ctx_t *ctx)
{
    ngx_queue_t               *q;
    ngx_http_tokengate_ctx_t  *w, *f;

    q = ngx_queue_head(&ctx->waiters);
    ngx_queue_remove(q);
    w = ngx_queue_data(q, ngx_http_tokengate_ctx_t, wait_link);

    w->leader = NULL;
    w->done = 0;
    w->handle = ctx->handle;
    w->exchanging = ctx->exchanging;
    w->sent_at = ctx->sent_at;
    w->backoff_key = ctx->backoff_key;
    w->backoff_probe = ctx->backoff_probe;

    if (w->handle != NULL) {
        w->handle->ctx = w;
    }

    ctx->handle = NULL;

    /* the shared cache's lookup, and the validation to send after it */

    w->skey_len = ctx->skey_len;
    ngx_memcpy(w->skey, ctx->skey, ctx->skey_len);

    if (ctx->lookup != NULL) {
        w->lookup = ctx->lookup;
        ngx_http_tokengate_shared_move(w->lookup, w);
        ctx->lookup = NULL;

        w->req = ctx->req;
        w->has_req = ctx->has_req;
        ngx_memzero(&ctx->req, sizeof(tg_request_t));
        ctx->has_req = 0;
    }

    ngx_queue_init(&w->waiters);

    while (!ngx_queue_empty(&ctx->waiters)) {
        q = ngx_queue_head(&ctx->waiters);
        ngx_queue_remove(q);
        f = ngx_queue_data(q, ngx_http_tokengate_ctx_t, wait_link);
        f->leader = w;
        ngx_queue_insert_tail(&w->waiters, q);
    }

    w->is_leader = 1;
    ngx_queue_insert_after(&ctx->inflight, &w->inflight);
    ngx_queue_remove(&ctx->inflight);
    ctx->is_leader = 0;
}


static ngx_int_t
ngx_http_tokengate_start(ngx_http_request_t *r, ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf, ngx_str_t *token)
{
    tg_request_t  req;

    if (ngx_http_tokengate_build(r, ctx, tlcf, token, &req) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_tokengate_send_req(ctx, tlcf, &req);
}


/* The first request of a validation: the token exchange of Basic
 * credentials, or the validation itself. */
static ngx_int_t
ngx_http_tokengate_build(ngx_http_request_t *r, ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf, ngx_str_t *token, tg_request_t *req)
{
    u_char     *colon;
    tg_err_t    rc;
    tg_diag_t   diag;

    tg_diag_clear(&diag);
    ngx_memzero(req, sizeof(tg_request_t));

    if (ctx->basic) {
        /* "client_id:secret": exchange for a token first */

        colon = ngx_strlchr(token->data, token->data + token->len, ':');
        if (colon == NULL) {
            return NGX_ERROR;
        }

        *colon = '\0';

        rc = tg_build_token(tlcf->tg, (char *) token->data,
                            (char *) colon + 1, req, &diag);

        *colon = ':';

        if (rc != TG_OK) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "tokengate: credentials %s: %s", ctx->fp,
                          diag.message);
            tg_request_clear(req);
            return NGX_ERROR;
        }

        ctx->exchanging = 1;

    } else if (tg_build_validate(tlcf->tg, (char *) token->data, tlcf->which,
                                 req, &diag)
               != TG_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tokengate: token %s: %s", ctx->fp, diag.message);
        tg_request_clear(req);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* Send the built request (taken over) on the worker's multi handle. */
static ngx_int_t
ngx_http_tokengate_send_req(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf, tg_request_t *req)
{
    ngx_http_request_t          *r;
    ngx_http_tokengate_stats_t  *st;

    r = ctx->request;

    if (ngx_http_tokengate_multi == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tokengate: no curl multi handle in this process");
        tg_request_clear(req);
        ctx->exchanging = 0;
        return NGX_ERROR;
    }

    if (ngx_http_tokengate_send(ctx, tlcf, req, r->connection->log)
        != NGX_OK)
    {
        ctx->exchanging = 0;
        return NGX_ERROR;
    }

    if (!ctx->blocked) {
        r->main->blocked++;
        ctx->blocked = 1;
        ngx_http_tokengate_watch_client(r);
    }

    ngx_http_tokengate_active(1);

    st = ngx_http_tokengate_get_stats(r);

    if (st != NULL) {
        (void) ngx_atomic_fetch_add(&st->calls, 1);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "tokengate: validating token %s", ctx->fp);

    return NGX_OK;
}


/* A validation's transfer ended: decide for the leader and its followers,
 * then post their wake-up events. */
static void
ngx_http_tokengate_validated(void *data, tg_err_t err, tg_response_t *resp,
    time_t sent_at, const char *reason)
{
    ngx_http_tokengate_ctx_t *ctx = data;

    long                            retry_after;
    time_t                          first_seen;
    tg_diag_t                       diag;
    tg_identity_t                  *id;
    ngx_http_tokengate_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(ctx->request,
                                        ngx_http_tokengate_module);

    id = NULL;
    retry_after = -1;

    tg_diag_clear(&diag);

    if (err != TG_OK) {
        (void) ngx_cpystrn((u_char *) diag.message, (u_char *) reason,
                           sizeof(diag.message));

    } else {
        if (ctx->exchanging) {
            err = ngx_http_tokengate_exchanged(ctx, tlcf, resp, &diag);

            if (err == TG_OK) {
                /* the validation runs now, on a new transfer */
                return;
            }

        } else {
            err = tg_parse_validate(tlcf->tg, resp, tlcf->which, &id,
                                    &diag);
        }

        retry_after = diag.retry_after > 0 ? diag.retry_after
                                           : resp->retry_after;

        /* allow only on a parsed identity with a user id */

        if (err == TG_OK && (id == NULL || id->id == NULL || id->id[0] == '\0'))
        {
            err = TG_PROTOCOL;
            ngx_snprintf((u_char *) diag.message, sizeof(diag.message) - 1,
                         "the answer has no user id%Z");
        }
    }

    /* errors of the server are never cached; the answer goes to the zone
     * and to the fleet's shared cache */

    if (tlcf->cache != NULL && ctx->has_mac) {
        if (err == TG_OK) {
            first_seen = ngx_http_tokengate_cache_put(tlcf, ctx->mac,
                                        ctx->has_tmac ? ctx->tmac : NULL,
                                        id, 0, 0);

            if (tlcf->shared != NULL && ctx->skey_len != 0) {
                ngx_http_tokengate_shared_store(tlcf, ctx->skey,
                                                ctx->skey_len, id,
                                                first_seen);
            }

        } else if (err == TG_TOKEN_INVALID || err == TG_REJECTED
                   || err == TG_NOT_FOUND)
        {
            ngx_http_tokengate_cache_store(tlcf, ctx->mac,
                                           ctx->has_tmac ? ctx->tmac : NULL,
                                           NULL);

            if (tlcf->shared != NULL && ctx->skey_len != 0) {
                ngx_http_tokengate_shared_store(tlcf, ctx->skey,
                                                ctx->skey_len, NULL, 0);
            }

        } else if (err == TG_FORBIDDEN) {
            if (tlcf->shared != NULL && ctx->skey_len != 0) {
                (void) ngx_http_tokengate_shared_delete(tlcf->shared,
                                                        ctx->skey,
                                                        ctx->skey_len);
            }

            /*
             * the server knows the token and refuses it: not a "rejected"
             * to answer 401 from, but the identity kept for it must not
             * answer again, stale mode included
             */
            ngx_http_tokengate_cache_remove(tlcf, ctx->mac);
        }
    }

    ngx_http_tokengate_finish(ctx, err, id, &diag, retry_after);

    tg_identity_free(id);
}


/* Decide for the leader and its followers, then post their wake-up
 * events. */
static void
ngx_http_tokengate_finish(ngx_http_tokengate_ctx_t *ctx, tg_err_t err,
    tg_identity_t *id, tg_diag_t *diag, long retry_after)
{
    ngx_queue_t               *q;
    ngx_http_tokengate_ctx_t  *w;

    ngx_http_tokengate_decide(ctx, err, id, diag, retry_after);

    if (ctx->is_leader) {
        ngx_queue_remove(&ctx->inflight);
        ctx->is_leader = 0;

        while (!ngx_queue_empty(&ctx->waiters)) {
            q = ngx_queue_head(&ctx->waiters);
            ngx_queue_remove(q);
            w = ngx_queue_data(q, ngx_http_tokengate_ctx_t, wait_link);
            w->leader = NULL;

            ngx_http_tokengate_decide(w, err, id, diag, retry_after);

            w->done = 1;
            ngx_post_event(&w->wake, &ngx_posted_events);
        }
    }

    ngx_post_event(&ctx->wake, &ngx_posted_events);
}


/*
 * The leader's lookup in the fleet's shared cache ended (from
 * ngx_http_tokengate_redis.c, on the event loop): NGX_OK with the
 * identity, NGX_DONE for a rejected token, both written to the zone for
 * no longer than the entry is fresh (fresh_until), and decided for the
 * leader and its followers as a validation would be; NGX_DECLINED (no
 * entry) or NGX_ERROR (Redis failed, or the entry did not open): the
 * validation goes to the BI server, as without the shared level.
 */
void
ngx_http_tokengate_shared_answer(ngx_http_tokengate_ctx_t *ctx, ngx_int_t rc,
    tg_identity_t *id, time_t first_seen, time_t fresh_until)
{
    tg_diag_t                       diag;
    ngx_http_tokengate_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(ctx->request,
                                        ngx_http_tokengate_module);

    ctx->lookup = NULL;
    tg_diag_clear(&diag);

    if (rc == NGX_OK || rc == NGX_DONE) {
        tg_request_clear(&ctx->req);
        ctx->has_req = 0;
        ctx->exchanging = 0;

        if (tlcf->cache != NULL && ctx->has_mac) {
            (void) ngx_http_tokengate_cache_put(tlcf, ctx->mac,
                                        ctx->has_tmac ? ctx->tmac : NULL,
                                        rc == NGX_OK ? id : NULL,
                                        first_seen, fresh_until);
        }

        ngx_str_set(&ctx->cache_status, "SHARED");

        (void) ngx_cpystrn((u_char *) diag.message,
                           (u_char *) "rejected (shared cache)",
                           sizeof(diag.message));

        ngx_http_tokengate_finish(ctx, rc == NGX_OK ? TG_OK : TG_REJECTED,
                                  rc == NGX_OK ? id : NULL, &diag, -1);
        return;
    }

    ctx->has_req = 0;

    if (ngx_http_tokengate_send_req(ctx, tlcf, &ctx->req) != NGX_OK) {
        (void) ngx_cpystrn((u_char *) diag.message,
                           (u_char *) "cannot send the validation",
                           sizeof(diag.message));

        ngx_http_tokengate_finish(ctx, TG_INTERNAL, NULL, &diag, -1);
    }
}


/* The token call answered: validate the new token on a new transfer
 * (TG_OK), or fail with the reason. */
static tg_err_t
ngx_http_tokengate_exchanged(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf, tg_response_t *resp,
    tg_diag_t *diag)
{
    tg_err_t      err;
    tg_token_t    tok;
    tg_request_t  req;

    ngx_memzero(&tok, sizeof(tg_token_t));
    ngx_memzero(&req, sizeof(tg_request_t));

    err = tg_parse_token(tlcf->tg, resp, ctx->sent_at, &tok, diag);
    if (err != TG_OK) {
        tg_token_clear(&tok);
        return err;
    }

    /* the response is parsed: the handle goes back and the validation
     * takes one (the same, usually) */

    ngx_http_tokengate_release(ctx);

    ctx->exchanging = 0;

    err = tg_build_validate(tlcf->tg, tok.value, tlcf->which, &req, diag);
    tg_token_clear(&tok);

    if (err != TG_OK) {
        tg_request_clear(&req);
        return err;
    }

    if (ngx_http_tokengate_send(ctx, tlcf, &req, ctx->request->connection->log)
        != NGX_OK)
    {
        ngx_snprintf((u_char *) diag->message, sizeof(diag->message) - 1,
                     "cannot send the validation%Z");
        return TG_INTERNAL;
    }

    return TG_OK;
}


/*
 * While the request waits for its validation, notice a client that goes
 * away (as ngx_http_core_auth_delay does): ngx_http_test_reading ends the
 * request with 499 on end of file or an HTTP/2 reset, which runs our
 * cleanup, and that cancels the transfer.
 */
static void
ngx_http_tokengate_watch_client(ngx_http_request_t *r)
{
    r->read_event_handler = ngx_http_test_reading;

    if (r->connection->read->ready) {
        ngx_post_event(r->connection->read, &ngx_posted_events);
    }
}


/* The posted event: resume the phase handlers outside curl's stack. */
static void
ngx_http_tokengate_wake_handler(ngx_event_t *ev)
{
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_tokengate_ctx_t  *ctx;

    ctx = ev->data;
    r = ctx->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "tokengate: resume \"%V\"", &r->uri);

    ctx->woken = 1;

    /* Stop watching the client connection: the phases go on. */
    r->read_event_handler = ngx_http_block_reading;

    if (ctx->blocked) {
        r->main->blocked--;
        ctx->blocked = 0;
    }

    if (r->done) {
        c->write->handler(c->write);

    } else {
        r->write_event_handler(r);
        ngx_http_run_posted_requests(c);
    }
}


/* The request goes away: cancel a running transfer. */
static void
ngx_http_tokengate_cleanup(void *data)
{
    ngx_http_tokengate_ctx_t *ctx = data;

    if (ctx->leader != NULL) {
        ngx_queue_remove(&ctx->wait_link);
        ctx->leader = NULL;
    }

    if ((ctx->handle != NULL || ctx->lookup != NULL) && ctx->is_leader
        && !ngx_queue_empty(&ctx->waiters))
    {
        ngx_http_tokengate_handover(ctx);
    }

    if (ctx->lookup != NULL) {
        ngx_http_tokengate_shared_cancel(ctx->lookup);
        ctx->lookup = NULL;
    }

    if (ctx->has_req) {
        tg_request_clear(&ctx->req);
        ctx->has_req = 0;
    }

    if (ctx->handle != NULL) {
        ngx_http_tokengate_abort(ctx);
        ngx_http_tokengate_active(-1);

        ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                      "tokengate: token %s: validation cancelled", ctx->fp);
    }

    if (ctx->is_leader) {
        ngx_queue_remove(&ctx->inflight);
        ctx->is_leader = 0;
    }

    if (ctx->wake.posted) {
        ngx_delete_posted_event(&ctx->wake);
    }

    if (ctx->blocked) {
        ctx->request->main->blocked--;
        ctx->blocked = 0;
    }
}


static ngx_int_t
ngx_http_tokengate_init_process(ngx_cycle_t *cycle)
{
    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    if (ngx_http_tokengate_curl_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_tokengate_shared_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_queue_init(&ngx_http_tokengate_leaders);

    /* the per-worker key of the coalescing MACs */

    if (RAND_bytes(ngx_http_tokengate_ckey, NGX_HTTP_TOKENGATE_MAC_LEN) == 1) {
        ngx_http_tokengate_ckey_ready = 1;

    } else {
        ngx_log_error(NGX_LOG_ERR, cycle->log, 0,
                      "tokengate: RAND_bytes() failed, no coalescing");
    }

    return NGX_OK;
}


static void
ngx_http_tokengate_exit(ngx_cycle_t *cycle)
{
    ngx_http_tokengate_shared_exit_process(cycle);
    ngx_http_tokengate_exit_process(cycle);
}


static ngx_int_t
ngx_http_tokengate_init(ngx_conf_t *cf)
{
    ngx_str_t                        name = ngx_string("remote_user");
    ngx_http_handler_pt             *h;
    ngx_http_core_main_conf_t       *cmcf;
    ngx_http_tokengate_main_conf_t  *tmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_tokengate_handler;

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_tokengate_module);

    tmcf->remote_user_index = ngx_http_get_variable_index(cf, &name);
    if (tmcf->remote_user_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    return NGX_OK;
}
