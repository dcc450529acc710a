/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_backoff.c: the node-wide back-off (tokengate_backoff).
 * When the auth server answers 429 or 503 with Retry-After (capped by
 * retry_after_max in common/curl.c), or cannot be reached (a connect
 * failure or a timeout before any status line), no worker of the node
 * calls it again before a deadline; requests that need a call are
 * answered 503 with the remaining Retry-After (or from a stale entry),
 * cached tokens are not affected.
 *
 * Keyed per auth server: the SHA-256 of the server's base URL (tg->url),
 * so that the locations of one server share one back-off whatever their
 * other settings.  The state lives in a small shared zone
 * ("tokengate_backoff", a fixed table of slots) under the slab mutex.
 *
 * The rules (one slot, times in ngx_time() seconds):
 *
 *   429/503 with Retry-After N    until = max(until, now + N)
 *   connect failure or timeout    failures++,
 *                                 until = max(until, now + min(2^(f-1), 30))
 *   any other HTTP answer         failures = 0, until = 0 (a success), but
 *                                 a Retry-After deadline still running stays
 *   other errors (TLS, protocol)  nothing (a probe's window ends)
 *
 * After a connect-failure deadline passes, one call at a time goes through
 * (the probe: the first request after the deadline); the others are
 * refused until it ends or until probe_until (the probe's longest life, so
 * that a lost probe never blocks the server for good).
 *
 * The API (ngx_http_tokengate.h): ngx_http_tokengate_backoff_check()
 * before a call, ngx_http_tokengate_backoff_record() on its completion
 * (it returns the deadline it set, for a shared store to publish),
 * ngx_http_tokengate_backoff_extend() for a deadline learnt elsewhere (a
 * shared store such as Redis), ngx_http_tokengate_backoff_active() for
 * tokengate_status.
 */


#include "ngx_http_tokengate.h"

#include <openssl/sha.h>


#define NGX_HTTP_TOKENGATE_BACKOFF_SLOTS   64
#define NGX_HTTP_TOKENGATE_BACKOFF_MAX     30


typedef struct {
    u_char                     key[NGX_HTTP_TOKENGATE_MAC_LEN];
    time_t                     until;
    time_t                     probe_until;
    ngx_uint_t                 failures;
    ngx_uint_t                 used;
} ngx_http_tokengate_backoff_slot_t;


typedef struct {
    ngx_http_tokengate_backoff_slot_t  slots[NGX_HTTP_TOKENGATE_BACKOFF_SLOTS];

    /* slots in use, changed under the lock: while it is 0 (no server has
     * failed), a call neither locks nor scans the slots */
    ngx_atomic_t                       used;
} ngx_http_tokengate_backoff_sh_t;


static ngx_int_t ngx_http_tokengate_backoff_init_zone(
    ngx_shm_zone_t *shm_zone, void *data);
static ngx_http_tokengate_backoff_slot_t *ngx_http_tokengate_backoff_slot(
    ngx_http_tokengate_backoff_sh_t *sh, const u_char *key,
    ngx_uint_t create);
static ngx_slab_pool_t *ngx_http_tokengate_backoff_pool(
    ngx_http_tokengate_backoff_sh_t **sh);


/* Configuration time: the key of tlcf's server, and the shared zone. */
char *
ngx_http_tokengate_backoff_conf(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *tlcf)
{
    ngx_str_t                        name = ngx_string("tokengate_backoff");
    ngx_shm_zone_t                  *shm_zone;
    ngx_http_tokengate_main_conf_t  *tmcf;

    if (!tlcf->backoff || tlcf->tg == NULL || tlcf->tg->url == NULL) {
        return NGX_CONF_OK;
    }

    SHA256((u_char *) tlcf->tg->url, ngx_strlen(tlcf->tg->url),
           tlcf->backoff_key);

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_tokengate_module);

    if (tmcf->backoff_zone != NULL) {
        return NGX_CONF_OK;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, 8 * ngx_pagesize,
                                     &ngx_http_tokengate_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_tokengate_backoff_init_zone;
    tmcf->backoff_zone = shm_zone;

    return NGX_CONF_OK;
}


/* The state survives a reload. */
static ngx_int_t
ngx_http_tokengate_backoff_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    return ngx_http_tokengate_init_struct_zone(shm_zone, data,
               sizeof(ngx_http_tokengate_backoff_sh_t));
}


static ngx_slab_pool_t *
ngx_http_tokengate_backoff_pool(ngx_http_tokengate_backoff_sh_t **sh)
{
    ngx_http_tokengate_main_conf_t  *tmcf;

    tmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_tokengate_module);

    if (tmcf == NULL || tmcf->backoff_zone == NULL
        || tmcf->backoff_zone->data == NULL)
    {
        return NULL;
    }

    *sh = tmcf->backoff_zone->data;

    return (ngx_slab_pool_t *) tmcf->backoff_zone->shm.addr;
}


/* The slot of a server (under the lock); a free one when create is set
 * and the server has none; NULL when the table is full. */
static ngx_http_tokengate_backoff_slot_t *
ngx_http_tokengate_backoff_slot(ngx_http_tokengate_backoff_sh_t *sh,
    const u_char *key, ngx_uint_t create)
{
    ngx_uint_t                          i;
    ngx_http_tokengate_backoff_slot_t  *s, *free;

    free = NULL;

    for (i = 0; i < NGX_HTTP_TOKENGATE_BACKOFF_SLOTS; i++) {
        s = &sh->slots[i];

        if (!s->used) {
            if (free == NULL) {
                free = s;
            }

            continue;
        }

        if (ngx_memcmp(s->key, key, NGX_HTTP_TOKENGATE_MAC_LEN) == 0) {
            return s;
        }
    }

    if (!create || free == NULL) {
        return NULL;
    }

    ngx_memzero(free, sizeof(ngx_http_tokengate_backoff_slot_t));
    ngx_memcpy(free->key, key, NGX_HTTP_TOKENGATE_MAC_LEN);
    free->used = 1;
    sh->used++;

    return free;
}


/*
 * Before a call to tlcf's server: NGX_OK, the call may go (*probe is set
 * when it is the one probe after a connect-failure deadline: pass it to
 * ngx_http_tokengate_backoff_record), or NGX_DECLINED, no call before
 * *wait seconds (>= 1).
 */
ngx_int_t
ngx_http_tokengate_backoff_check(ngx_http_tokengate_loc_conf_t *tlcf,
    ngx_log_t *log, time_t *wait, ngx_uint_t *probe)
{
    time_t                              now, life;
    ngx_int_t                           rc;
    ngx_uint_t                          failures;
    ngx_http_tokengate_stats_t         *st;
    ngx_slab_pool_t                    *shpool;
    ngx_http_tokengate_backoff_sh_t    *sh;
    ngx_http_tokengate_backoff_slot_t  *s;

    *probe = 0;
    *wait = 0;

    if (!tlcf->backoff) {
        return NGX_OK;
    }

    shpool = ngx_http_tokengate_backoff_pool(&sh);
    if (shpool == NULL || sh->used == 0) {
        /* no server has failed: nothing to wait for */
        return NGX_OK;
    }

    now = ngx_time();
    rc = NGX_OK;

    ngx_shmtx_lock(&shpool->mutex);

    s = ngx_http_tokengate_backoff_slot(sh, tlcf->backoff_key, 0);

    if (s == NULL) {
        /* never failed */

    } else if (s->until > now) {
        *wait = s->until - now;
        rc = NGX_DECLINED;

    } else if (s->failures > 0) {
        if (s->probe_until > now) {
            /* a probe is on its way: wait for it */
            *wait = 1;
            rc = NGX_DECLINED;

        } else {
            life = (time_t) ((tlcf->timeout != NGX_CONF_UNSET_MSEC
                              ? (long) tlcf->timeout : tlcf->tg->timeout_ms)
                             / 1000) + 2;
            s->probe_until = now + life;
            *probe = 1;
        }
    }

    failures = s != NULL ? s->failures : 0;

    ngx_shmtx_unlock(&shpool->mutex);

    st = ngx_http_tokengate_get_stats(NULL);

    if (*probe) {
        if (st != NULL) {
            (void) ngx_atomic_fetch_add(&st->backoff_probes, 1);
        }

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "tokengate: auth server %s: probing after %ui "
                      "failures", tlcf->tg->url, failures);

    } else if (rc == NGX_DECLINED && st != NULL) {
        (void) ngx_atomic_fetch_add(&st->backoff_refused, 1);
    }

    return rc;
}


/*
 * A call to the server of key ended: err and resp as the call's handler
 * gets them (ngx_http_tokengate_call_pt).  Sets or clears the deadline by
 * the rules at the top of this file; returns the deadline it set (0: none
 * set), which a shared store may publish to other nodes.
 */
time_t
ngx_http_tokengate_backoff_record(const u_char *key, const char *url,
    tg_err_t err, tg_response_t *resp, ngx_uint_t probe, ngx_log_t *log)
{
    time_t                              now, delay, until;
    ngx_uint_t                          failures;
    ngx_slab_pool_t                    *shpool;
    ngx_http_tokengate_backoff_sh_t    *sh;
    ngx_http_tokengate_backoff_slot_t  *s;

    shpool = ngx_http_tokengate_backoff_pool(&sh);
    if (shpool == NULL) {
        return 0;
    }

    if (sh->used == 0 && resp != NULL
        && !((resp->status == 429 || resp->status == 503)
             && resp->retry_after > 0))
    {
        /* an answer, and no back-off to end */
        return 0;
    }

    now = ngx_time();
    delay = 0;
    until = 0;
    failures = 0;

    ngx_shmtx_lock(&shpool->mutex);

    if (resp != NULL) {
        if ((resp->status == 429 || resp->status == 503)
            && resp->retry_after > 0)
        {
            s = ngx_http_tokengate_backoff_slot(sh, key, 1);

            if (s != NULL) {
                s->failures = 0;
                s->probe_until = 0;

                if (now + resp->retry_after > s->until) {
                    s->until = now + resp->retry_after;
                    delay = resp->retry_after;
                    until = s->until;
                }
            }

        } else {
            /* the server answered: the connect-failure back-off ends; a
             * Retry-After deadline still running stays (this answer may
             * have been on its way before the server asked for it) */
            s = ngx_http_tokengate_backoff_slot(sh, key, 0);

            if (s != NULL && (s->failures > 0 || s->until <= now)) {
                failures = s->failures;
                s->used = 0;
                sh->used--;
            }
        }

    } else if (err == TG_TIMEOUT || err == TG_UNAVAILABLE) {
        s = ngx_http_tokengate_backoff_slot(sh, key, 1);

        if (s != NULL) {
            s->failures++;
            failures = s->failures;

            delay = NGX_HTTP_TOKENGATE_BACKOFF_MAX;

            if (failures <= 5) {
                delay = (time_t) 1 << (failures - 1);
            }

            s->until = ngx_max(s->until, now + delay);
            s->probe_until = 0;
            until = s->until;
        }

    } else if (probe) {
        /* the probe ended without an answer or a connect failure */
        s = ngx_http_tokengate_backoff_slot(sh, key, 0);

        if (s != NULL) {
            s->probe_until = 0;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (delay > 0) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "tokengate: auth server %s: backing off for %T s "
                      "(%s, failures %ui)", url, delay,
                      resp != NULL ? "Retry-After" : tg_err_name(err),
                      failures);

    } else if (resp != NULL && failures > 0) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "tokengate: auth server %s: answering again, "
                      "back-off ended", url);
    }

    return until;
}


/* A deadline for key learnt elsewhere (a shared store): no call before
 * until. */
void
ngx_http_tokengate_backoff_extend(const u_char *key, time_t until)
{
    ngx_slab_pool_t                    *shpool;
    ngx_http_tokengate_backoff_sh_t    *sh;
    ngx_http_tokengate_backoff_slot_t  *s;

    shpool = ngx_http_tokengate_backoff_pool(&sh);
    if (shpool == NULL) {
        return;
    }

    ngx_shmtx_lock(&shpool->mutex);

    s = ngx_http_tokengate_backoff_slot(sh, key, 1);

    if (s != NULL && until > s->until) {
        s->until = until;
    }

    ngx_shmtx_unlock(&shpool->mutex);
}


/* tokengate_status: how many servers are backed off now. */
ngx_uint_t
ngx_http_tokengate_backoff_active(void)
{
    time_t                            now;
    ngx_uint_t                        i, n;
    ngx_slab_pool_t                  *shpool;
    ngx_http_tokengate_backoff_sh_t  *sh;

    shpool = ngx_http_tokengate_backoff_pool(&sh);
    if (shpool == NULL) {
        return 0;
    }

    now = ngx_time();
    n = 0;

    ngx_shmtx_lock(&shpool->mutex);

    for (i = 0; i < NGX_HTTP_TOKENGATE_BACKOFF_SLOTS; i++) {
        if (sh->slots[i].used
            && (sh->slots[i].until > now || sh->slots[i].failures > 0))
        {
            n++;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return n;
}
