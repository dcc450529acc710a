
/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_limit.c: tokengate_fail_limit, a limit on the refused
 * credentials of each client (by default its address), shared by the
 * workers in a zone of its own.
 *
 * A client's refusals fill a bucket that leaks at the zone's rate; while
 * more than burst refusals are in it, the client's requests are answered
 * 429 before anything else (ngx_http_tokengate_limit_check: no cache
 * lookup, no call to the server).  ngx_http_tokengate_answer counts a
 * refusal (an INVALID outcome, from the server or from the negative cache)
 * with ngx_http_tokengate_limit_refused.  The habits are limit_req's: an
 * rbtree keyed by a CRC32 of the key with an LRU queue, the bucket in
 * thousandths of a refusal, the key a complex value, an empty key not
 * limited.  Only clients with a refusal in their bucket have an entry.
 */


#include "ngx_http_tokengate.h"


/* A node keeps its key's length in 16 bits, as limit_req does. */
#define NGX_HTTP_TOKENGATE_LIMIT_KEY_MAX     65535

/* Bounded work per refusal: drained entries expired before an insert, and
 * least recently used ones evicted when the zone has no room for it. */
#define NGX_HTTP_TOKENGATE_LIMIT_EXPIRE_MAX  2
#define NGX_HTTP_TOKENGATE_LIMIT_EVICT_MAX   4

/* A zone too full for a new entry is logged once per this many seconds,
 * by whichever worker meets it first. */
#define NGX_HTTP_TOKENGATE_LIMIT_LOG_EVERY   60

/* Far from overflow in the arithmetic in thousandths: a rate of at most a
 * million a second, a burst of at most a million. */
#define NGX_HTTP_TOKENGATE_LIMIT_RATE_MAX    1000000
#define NGX_HTTP_TOKENGATE_LIMIT_BURST_MAX   1000000


/* A client with refusals in its bucket; node.key is a CRC32 of the key. */
typedef struct {
    ngx_rbtree_node_t          node;
    ngx_queue_t                queue;
    ngx_msec_t                 last;           /* when excess was set */
    ngx_uint_t                 excess;         /* refusals, in 1/1000 */
    u_short                    len;
    u_char                     data[1];
} ngx_http_tokengate_limit_node_t;


typedef struct {
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
    ngx_queue_t                lru;
    ngx_uint_t                 entries;
    time_t                     full_logged;
} ngx_http_tokengate_limit_shctx_t;


/* A zone (shm_zone->data): its settings come from the directive that
 * declares it (zone=NAME:SIZE); zone=NAME elsewhere shares them. */
typedef struct {
    ngx_http_tokengate_limit_shctx_t  *sh;
    ngx_slab_pool_t                   *shpool;
    ngx_uint_t                         rate;      /* 1/1000 per minute */
    ngx_uint_t                         burst;     /* 1/1000 */
    ngx_http_complex_value_t           key;
    unsigned                           declared:1;
} ngx_http_tokengate_limit_t;


static ngx_http_tokengate_limit_node_t *ngx_http_tokengate_limit_find(
    ngx_http_tokengate_limit_t *lim, uint32_t hash, ngx_str_t *key);
static ngx_uint_t ngx_http_tokengate_limit_leak(
    ngx_http_tokengate_limit_t *lim, ngx_http_tokengate_limit_node_t *ln,
    ngx_msec_t now, ngx_uint_t update);
static ngx_http_tokengate_limit_node_t *ngx_http_tokengate_limit_alloc(
    ngx_http_tokengate_limit_t *lim, size_t size, ngx_msec_t now);
static void ngx_http_tokengate_limit_drop(ngx_http_tokengate_limit_t *lim,
    ngx_http_tokengate_limit_node_t *ln);
static void ngx_http_tokengate_limit_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static char *ngx_http_tokengate_limit_rate(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *value, ngx_uint_t *rate);
static ngx_int_t ngx_http_tokengate_limit_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


/* The tag of the zones: a name used by tokengate_cache too fails nginx -t
 * ("already declared for a different use"). */
static u_char  ngx_http_tokengate_limit_tag;

static ngx_str_t  ngx_http_tokengate_limit_default_key =
    ngx_string("$binary_remote_addr");


/*
 * Before anything else in the access check: NGX_BUSY when the client is
 * over its limit (ctx->retry_after is then the seconds until one more
 * refusal fits, at least 1), NGX_DECLINED when it may go on (no limit
 * here, an empty or too long key, room in its bucket), NGX_ERROR.  The key
 * stays in ctx for ngx_http_tokengate_limit_refused.
 */
ngx_int_t
ngx_http_tokengate_limit_check(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, ngx_http_tokengate_loc_conf_t *tlcf)
{
    uint32_t                          hash;
    ngx_str_t                         key;
    ngx_uint_t                        excess;
    ngx_msec_t                        wait;
    ngx_http_tokengate_limit_t       *lim;
    ngx_http_tokengate_limit_node_t  *ln;

    if (tlcf->fail_limit == NULL) {
        return NGX_DECLINED;
    }

    lim = tlcf->fail_limit->data;

    if (ngx_http_complex_value(r, &lim->key, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    if (key.len == 0) {
        return NGX_DECLINED;
    }

    if (key.len > NGX_HTTP_TOKENGATE_LIMIT_KEY_MAX) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tokengate: the key \"%V\" of tokengate_fail_limit "
                      "is more than %d bytes, not limited",
                      &lim->key.value, NGX_HTTP_TOKENGATE_LIMIT_KEY_MAX);
        return NGX_DECLINED;
    }

    ctx->limit_key = key;

    hash = ngx_crc32_short(key.data, key.len);

    ngx_shmtx_lock(&lim->shpool->mutex);

    ln = ngx_http_tokengate_limit_find(lim, hash, &key);

    if (ln == NULL) {
        ngx_shmtx_unlock(&lim->shpool->mutex);
        return NGX_DECLINED;
    }

    /* a client that keeps trying stays in the zone */

    ngx_queue_remove(&ln->queue);
    ngx_queue_insert_head(&lim->sh->lru, &ln->queue);

    excess = ngx_http_tokengate_limit_leak(lim, ln, ngx_current_msec, 0);

    ngx_shmtx_unlock(&lim->shpool->mutex);

    if (excess <= lim->burst) {
        return NGX_DECLINED;
    }

    wait = ((excess - lim->burst) * 60000 + lim->rate - 1) / lim->rate;

    ctx->retry_after = ngx_max((long) ((wait + 999) / 1000), 1);

    /* a guesser at full speed: one line per request at info only */

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "tokengate: limiting a client over its refusals, "
                  "excess: %ui.%03ui by zone \"%V\"",
                  excess / 1000, excess % 1000, &tlcf->fail_limit->shm.name);

    return NGX_BUSY;
}


/*
 * One refusal for the client of a request that went through
 * ngx_http_tokengate_limit_check: into its bucket, a new entry if it has
 * none.  With no room for an entry even after evicting the least recently
 * used ones, the refusal is not counted (logged once a minute): the client
 * is not limited rather than answered 500.
 */
void
ngx_http_tokengate_limit_refused(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, ngx_http_tokengate_loc_conf_t *tlcf)
{
    size_t                            size;
    time_t                            now;
    uint32_t                          hash;
    ngx_str_t                        *key;
    ngx_uint_t                        full;
    ngx_msec_t                        msec;
    ngx_http_tokengate_limit_t       *lim;
    ngx_http_tokengate_limit_node_t  *ln;

    if (tlcf->fail_limit == NULL || ctx->limit_key.len == 0) {
        return;
    }

    lim = tlcf->fail_limit->data;
    key = &ctx->limit_key;
    hash = ngx_crc32_short(key->data, key->len);
    msec = ngx_current_msec;
    full = 0;

    ngx_shmtx_lock(&lim->shpool->mutex);

    ln = ngx_http_tokengate_limit_find(lim, hash, key);

    if (ln != NULL) {
        ln->excess = ngx_http_tokengate_limit_leak(lim, ln, msec, 1) + 1000;

        ngx_queue_remove(&ln->queue);
        ngx_queue_insert_head(&lim->sh->lru, &ln->queue);

        ngx_shmtx_unlock(&lim->shpool->mutex);
        return;
    }

    size = offsetof(ngx_http_tokengate_limit_node_t, data) + key->len;

    ln = ngx_http_tokengate_limit_alloc(lim, size, msec);

    if (ln == NULL) {
        now = ngx_time();

        if (now - lim->sh->full_logged >= NGX_HTTP_TOKENGATE_LIMIT_LOG_EVERY) {
            lim->sh->full_logged = now;
            full = 1;
        }

        ngx_shmtx_unlock(&lim->shpool->mutex);

        if (full) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "tokengate: tokengate_fail_limit zone \"%V\" has "
                          "no room for a new client, its refusals are not "
                          "counted", &tlcf->fail_limit->shm.name);
        }

        return;
    }

    ln->node.key = hash;
    ln->last = msec;
    ln->excess = 1000;
    ln->len = (u_short) key->len;
    ngx_memcpy(ln->data, key->data, key->len);

    ngx_rbtree_insert(&lim->sh->rbtree, &ln->node);
    ngx_queue_insert_head(&lim->sh->lru, &ln->queue);
    lim->sh->entries++;

    ngx_shmtx_unlock(&lim->shpool->mutex);
}


/* The entry of a key; locked. */
static ngx_http_tokengate_limit_node_t *
ngx_http_tokengate_limit_find(ngx_http_tokengate_limit_t *lim, uint32_t hash,
    ngx_str_t *key)
{
    ngx_int_t                         rc;
    ngx_rbtree_node_t                *node, *sentinel;
    ngx_http_tokengate_limit_node_t  *ln;

    node = lim->sh->rbtree.root;
    sentinel = lim->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        ln = (ngx_http_tokengate_limit_node_t *) node;

        rc = ngx_memn2cmp(key->data, ln->data, key->len, (size_t) ln->len);

        if (rc == 0) {
            return ln;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * The refusals left in an entry's bucket at now (1/1000); locked.  With
 * update the entry keeps them, and its time moves on by what leaking them
 * took, so that the rest of a thousandth is not lost to frequent updates.
 * A worker whose cached time is a little behind another's leaks nothing.
 */
static ngx_uint_t
ngx_http_tokengate_limit_leak(ngx_http_tokengate_limit_t *lim,
    ngx_http_tokengate_limit_node_t *ln, ngx_msec_t now, ngx_uint_t update)
{
    ngx_uint_t      leaked;
    ngx_msec_int_t  ms;

    ms = (ngx_msec_int_t) (now - ln->last);

    if (ms <= 0) {
        return ln->excess;
    }

    /* drained: this also keeps rate * ms from overflowing */

    if ((ngx_uint_t) ms > ln->excess * 60000 / lim->rate) {
        if (update) {
            ln->excess = 0;
            ln->last = now;
        }

        return 0;
    }

    leaked = lim->rate * ms / 60000;

    if (update) {
        ln->excess -= leaked;
        ln->last += leaked * 60000 / lim->rate;
        return ln->excess;
    }

    return ln->excess - leaked;
}


/* Room for a new entry: drained entries at the end of the LRU go first
 * (a couple), then the least recently used ones, drained or not (a few);
 * NULL when that was not enough.  Locked. */
static ngx_http_tokengate_limit_node_t *
ngx_http_tokengate_limit_alloc(ngx_http_tokengate_limit_t *lim, size_t size,
    ngx_msec_t now)
{
    ngx_uint_t                        i;
    ngx_queue_t                      *q;
    ngx_http_tokengate_limit_node_t  *ln;

    for (i = 0; i < NGX_HTTP_TOKENGATE_LIMIT_EXPIRE_MAX; i++) {

        if (ngx_queue_empty(&lim->sh->lru)) {
            break;
        }

        q = ngx_queue_last(&lim->sh->lru);
        ln = ngx_queue_data(q, ngx_http_tokengate_limit_node_t, queue);

        if (ngx_http_tokengate_limit_leak(lim, ln, now, 0) != 0) {
            break;
        }

        ngx_http_tokengate_limit_drop(lim, ln);
    }

    ln = ngx_slab_alloc_locked(lim->shpool, size);

    for (i = 0; ln == NULL && i < NGX_HTTP_TOKENGATE_LIMIT_EVICT_MAX; i++) {

        if (ngx_queue_empty(&lim->sh->lru)) {
            break;
        }

        q = ngx_queue_last(&lim->sh->lru);
        ngx_http_tokengate_limit_drop(lim,
            ngx_queue_data(q, ngx_http_tokengate_limit_node_t, queue));

        ln = ngx_slab_alloc_locked(lim->shpool, size);
    }

    return ln;
}


/* Unlink and free an entry; locked. */
static void
ngx_http_tokengate_limit_drop(ngx_http_tokengate_limit_t *lim,
    ngx_http_tokengate_limit_node_t *ln)
{
    ngx_queue_remove(&ln->queue);
    ngx_rbtree_delete(&lim->sh->rbtree, &ln->node);
    ngx_slab_free_locked(lim->shpool, ln);
    lim->sh->entries--;
}


static void
ngx_http_tokengate_limit_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t                **p;
    ngx_http_tokengate_limit_node_t   *ln, *lnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            ln = (ngx_http_tokengate_limit_node_t *) node;
            lnt = (ngx_http_tokengate_limit_node_t *) temp;

            p = ngx_memn2cmp(ln->data, lnt->data, ln->len, lnt->len) < 0
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* The clients in all tokengate_fail_limit zones, for tokengate_status. */
ngx_uint_t
ngx_http_tokengate_limit_entries(void)
{
    ngx_uint_t                   i, n;
    ngx_list_part_t             *part;
    ngx_shm_zone_t              *shm_zone;
    ngx_http_tokengate_limit_t  *lim;

    n = 0;
    part = (ngx_list_part_t *) &ngx_cycle->shared_memory.part;
    shm_zone = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            shm_zone = part->elts;
            i = 0;
        }

        if (shm_zone[i].tag != &ngx_http_tokengate_limit_tag) {
            continue;
        }

        lim = shm_zone[i].data;

        if (lim == NULL || lim->sh == NULL) {
            continue;
        }

        ngx_shmtx_lock(&lim->shpool->mutex);
        n += lim->sh->entries;
        ngx_shmtx_unlock(&lim->shpool->mutex);
    }

    return n;
}


/*
 * tokengate_fail_limit zone=NAME:SIZE rate=N/s|N/m [burst=N] [key=$var]
 *                    | zone=NAME | off
 *
 * The first form declares a zone with its settings, the second shares a
 * zone declared elsewhere (its settings too).
 */
char *
ngx_http_tokengate_fail_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tokengate_loc_conf_t *tlcf = conf;

    ssize_t                            size;
    ngx_int_t                          burst;
    ngx_str_t                         *value, name, *key;
    ngx_uint_t                         i, rate;
    ngx_shm_zone_t                    *shm_zone;
    ngx_http_tokengate_limit_t        *lim;
    ngx_http_complex_value_t           cv;
    ngx_http_compile_complex_value_t   ccv;

    if (tlcf->fail_limit != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        tlcf->fail_limit = NULL;
        return NGX_CONF_OK;
    }

    ngx_str_null(&name);
    size = 0;
    rate = 0;
    burst = -1;
    key = NULL;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            if (ngx_http_tokengate_zone_arg(cf, cmd, &value[i], &name,
                                            &size)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "rate=", 5) == 0) {
            if (ngx_http_tokengate_limit_rate(cf, cmd, &value[i], &rate)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {
            burst = ngx_atoi(value[i].data + 6, value[i].len - 6);

            if (burst == NGX_ERROR
                || burst > NGX_HTTP_TOKENGATE_LIMIT_BURST_MAX)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid burst \"%V\" in \"%V\" "
                                   "directive", &value[i], &cmd->name);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "key=", 4) == 0) {
            value[i].data += 4;
            value[i].len -= 4;
            key = &value[i];
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"%V\" directive",
                           &value[i], &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have a \"zone\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (size == 0 && (rate != 0 || burst != -1 || key != NULL)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" with \"zone=%V\" shares a zone declared "
                           "elsewhere: \"rate\", \"burst\" and \"key\" go "
                           "where it is declared (zone=%V:SIZE)",
                           &cmd->name, &name, &name);
        return NGX_CONF_ERROR;
    }

    if (size != 0 && rate == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have a \"rate\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&cv, sizeof(ngx_http_complex_value_t));

    if (size != 0) {
        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = key != NULL ? key : &ngx_http_tokengate_limit_default_key;
        ccv.complex_value = &cv;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        /* a constant key would make one bucket for every client */

        if (cv.lengths == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid key \"%V\" in \"%V\" directive, "
                               "it must contain a variable",
                               ccv.value, &cmd->name);
            return NGX_CONF_ERROR;
        }
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_tokengate_limit_tag);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    lim = shm_zone->data;

    if (lim == NULL) {
        lim = ngx_pcalloc(cf->pool, sizeof(ngx_http_tokengate_limit_t));
        if (lim == NULL) {
            return NGX_CONF_ERROR;
        }

        shm_zone->init = ngx_http_tokengate_limit_init_zone;
        shm_zone->data = lim;
    }

    if (size != 0) {
        if (lim->declared) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "zone \"%V\" of \"%V\" is already declared",
                               &name, &cmd->name);
            return NGX_CONF_ERROR;
        }

        lim->declared = 1;
        lim->rate = rate;
        lim->burst = (ngx_uint_t) (burst == -1 ? 0 : burst) * 1000;
        lim->key = cv;
    }

    tlcf->fail_limit = shm_zone;

    return NGX_CONF_OK;
}


/* rate=N/s or N/m (also Nr/s, Nr/m as limit_req writes it), in 1/1000 per
 * minute: exact for both (limit_req's 1/1000 per second makes 1r/m last
 * 62.5 s). */
static char *
ngx_http_tokengate_limit_rate(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *value, ngx_uint_t *rate)
{
    size_t      len;
    u_char     *p;
    ngx_int_t   n, scale;

    p = value->data + 5;
    len = value->len - 5;
    scale = 0;

    if (len > 2 && ngx_strncmp(p + len - 2, "/s", 2) == 0) {
        scale = 60;

    } else if (len > 2 && ngx_strncmp(p + len - 2, "/m", 2) == 0) {
        scale = 1;
    }

    if (scale != 0) {
        len -= 2;

        if (len > 1 && p[len - 1] == 'r') {
            len--;
        }
    }

    n = scale != 0 ? ngx_atoi(p, len) : NGX_ERROR;

    if (n == NGX_ERROR || n == 0 || n > NGX_HTTP_TOKENGATE_LIMIT_RATE_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid rate \"%V\" in \"%V\" directive, it must "
                           "be N/s or N/m with N from 1 to %d", value,
                           &cmd->name, NGX_HTTP_TOKENGATE_LIMIT_RATE_MAX);
        return NGX_CONF_ERROR;
    }

    *rate = (ngx_uint_t) n * 1000 * scale;

    return NGX_CONF_OK;
}


/*
 * Merge: inherited like the other directives; a zone used with zone=NAME
 * must be declared somewhere with zone=NAME:SIZE and a rate.
 */
char *
ngx_http_tokengate_fail_limit_merge(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *prev, ngx_http_tokengate_loc_conf_t *conf)
{
    ngx_http_tokengate_limit_t  *lim;

    ngx_conf_merge_ptr_value(conf->fail_limit, prev->fail_limit, NULL);

    if (conf->fail_limit == NULL) {
        return NGX_CONF_OK;
    }

    lim = conf->fail_limit->data;

    if (!lim->declared) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tokengate_fail_limit\" zone \"%V\" is used but "
                           "never declared with zone=%V:SIZE and a rate",
                           &conf->fail_limit->shm.name,
                           &conf->fail_limit->shm.name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* A zone kept over a reload keeps its clients; the settings are the new
 * configuration's. */
static ngx_int_t
ngx_http_tokengate_limit_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_tokengate_limit_t  *olim = data;

    size_t                       len;
    ngx_http_tokengate_limit_t  *lim;

    lim = shm_zone->data;

    if (olim != NULL) {
        lim->sh = olim->sh;
        lim->shpool = olim->shpool;
        return NGX_OK;
    }

    lim->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        lim->sh = lim->shpool->data;
        return NGX_OK;
    }

    lim->sh = ngx_slab_calloc(lim->shpool,
                              sizeof(ngx_http_tokengate_limit_shctx_t));
    if (lim->sh == NULL) {
        return NGX_ERROR;
    }

    lim->shpool->data = lim->sh;

    ngx_rbtree_init(&lim->sh->rbtree, &lim->sh->sentinel,
                    ngx_http_tokengate_limit_rbtree_insert);
    ngx_queue_init(&lim->sh->lru);

    len = sizeof(" in tokengate_fail_limit zone \"\"")
          + shm_zone->shm.name.len;

    lim->shpool->log_ctx = ngx_slab_alloc(lim->shpool, len);
    if (lim->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(lim->shpool->log_ctx, " in tokengate_fail_limit zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone evicts; it is not an error worth a [crit] */

    lim->shpool->log_nomem = 0;

    return NGX_OK;
}
