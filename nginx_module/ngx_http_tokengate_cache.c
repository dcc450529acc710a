
/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_cache.c: the shared cache of ngx_http_tokengate_module:
 * the tokengate_cache directive and its zone, entries keyed by an
 * HMAC-SHA-256 of the token and of the location's fingerprint (everything
 * the answer depends on, hashed once at configuration time; a worker
 * keeps the HMAC's keyed states here, ngx_http_tokengate_hmac.c computes
 * it), lookups, stores, the LRU and its bounded expiry and eviction, and
 * the stale entries that may answer an outage (tokengate_on_unavailable
 * stale).
 */


#include "ngx_http_tokengate.h"
#include "ngx_http_tokengate_hmac.h"

#include <openssl/evp.h>
#include <openssl/rand.h>


/* Keyed HMAC states a worker keeps (one per cache zone key, plus the
 * coalescing key and the shared caches' keys). */
#define NGX_HTTP_TOKENGATE_HMACS_MAX  16

/* The first field of a fingerprint: changing what goes into one changes
 * this, so that no entry made under the old rules is found again. */
#define NGX_HTTP_TOKENGATE_FP_VERSION      "tokengate cache key 2"

/* The largest identity kept in the cache; bigger ones are not cached. */
#define NGX_HTTP_TOKENGATE_ENTRY_MAX       8192

/* Bounded work per request: entries expired on an insert, entries evicted
 * (least recently used first) to make room for one. */
#define NGX_HTTP_TOKENGATE_EXPIRE_MAX      2
#define NGX_HTTP_TOKENGATE_EVICT_MAX       32

/* A time parameter of tokengate_cache. */
typedef struct {
    ngx_str_t                  name;           /* "ttl=" */
    time_t                     dflt;
    unsigned                   zero:1;         /* 0 is allowed */
} ngx_http_tokengate_ttl_t;


/* The keyed HMAC states a worker keeps for a key. */
typedef struct {
    u_char                          key[NGX_HTTP_TOKENGATE_MAC_LEN];
    ngx_http_tokengate_hmac_key_t   hk;
} ngx_http_tokengate_hmac_slot_t;


static void ngx_http_tokengate_be64(u_char *p, uint64_t v);
static ngx_http_tokengate_hmac_key_t *ngx_http_tokengate_hmac_get(
    const u_char *key, ngx_http_tokengate_hmac_key_t *once);
static u_char *ngx_http_tokengate_cache_copy(ngx_http_tokengate_node_t *tn,
    ngx_pool_t *pool, tg_identity_t *id);
static ngx_http_tokengate_node_t *ngx_http_tokengate_cache_find(
    ngx_http_tokengate_cache_t *cache, u_char *mac, time_t now);
static void ngx_http_tokengate_cache_drop(ngx_http_tokengate_cache_t *cache,
    ngx_http_tokengate_node_t *tn);
static ngx_uint_t ngx_http_tokengate_cache_evict(
    ngx_http_tokengate_cache_t *cache, ngx_uint_t force);
static void ngx_http_tokengate_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static void ngx_http_tokengate_tokens_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_tokengate_node_t *ngx_http_tokengate_tree_find(
    ngx_rbtree_t *tree, u_char *mac, size_t node_off, size_t mac_off);
static void ngx_http_tokengate_tree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel, size_t node_off,
    size_t mac_off);
static ngx_uint_t ngx_http_tokengate_cache_purge_zone(ngx_shm_zone_t *zone,
    ngx_str_t *token, ngx_uint_t basic);
static ngx_shm_zone_t *ngx_http_tokengate_cache_next(ngx_list_part_t **part,
    ngx_uint_t *i);
static ngx_int_t ngx_http_tokengate_fingerprint_add(EVP_MD_CTX *md,
    const void *data, size_t len);
static ngx_int_t ngx_http_tokengate_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


/* The order of ttls[] in ngx_http_tokengate_cache: ttl, negative_ttl,
 * stale_ttl. */
static ngx_http_tokengate_ttl_t  ngx_http_tokengate_cache_ttls[] = {
    { ngx_string("ttl="), 60, 0 },
    { ngx_string("negative_ttl="), 5, 1 },
    { ngx_string("stale_ttl="), 0, 1 },
    { ngx_null_string, 0, 0 }
};


/* The keyed states of the worker's keys. */
static ngx_http_tokengate_hmac_slot_t
    ngx_http_tokengate_hmacs[NGX_HTTP_TOKENGATE_HMACS_MAX];
static ngx_uint_t         ngx_http_tokengate_nhmacs;


/*
 * The key of a token's answer, in the cache and for coalescing: an
 * HMAC-SHA-256 of the length-prefixed full token, then whether it came as
 * Basic credentials, then the location's fingerprint (everything else the
 * answer depends on, see ngx_http_tokengate_fingerprint).  Two locations
 * share an answer only when they would send the same validation, the same
 * way, and trust it the same way.  The fingerprint was hashed once at
 * configuration time: per request this costs the token's bytes plus 41.
 */
ngx_int_t
ngx_http_tokengate_mac(const u_char *key, ngx_str_t *token, ngx_uint_t basic,
    const u_char *fingerprint, u_char *out)
{
    u_char                          head[8];
    u_char                          tail[1 + NGX_HTTP_TOKENGATE_MAC_LEN];
    ngx_int_t                       rc;
    ngx_http_tokengate_hmac_t       hmac;
    ngx_http_tokengate_hmac_key_t   once;
    ngx_http_tokengate_hmac_key_t  *hk;

    if (token->len > TG_TOKEN_MAX) {
        return NGX_ERROR;
    }

    ngx_http_tokengate_be64(head, token->len);

    tail[0] = (u_char) (basic != 0);
    ngx_memcpy(tail + 1, fingerprint, NGX_HTTP_TOKENGATE_MAC_LEN);

    hk = ngx_http_tokengate_hmac_get(key, &once);
    if (hk == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    ngx_http_tokengate_hmac_start(&hmac, hk);

    if (ngx_http_tokengate_hmac_update(&hmac, head, sizeof(head)) == 0
        && ngx_http_tokengate_hmac_update(&hmac, token->data, token->len)
           == 0
        && ngx_http_tokengate_hmac_update(&hmac, tail, sizeof(tail)) == 0
        && ngx_http_tokengate_hmac_final(&hmac, hk, out) == 0)
    {
        rc = NGX_OK;

    } else {
        /* A MAC cut short holds the keyed state and the token's bytes. */
        ngx_explicit_memzero(&hmac, sizeof(hmac));
    }

    if (hk == &once) {
        ngx_http_tokengate_hmac_key_free(&once);
    }

    return rc;
}


/* v as 8 bytes, most significant first: the length prefixes of the MAC's
 * and the fingerprint's fields. */
static void
ngx_http_tokengate_be64(u_char *p, uint64_t v)
{
    ngx_uint_t  i;

    for (i = 0; i < 8; i++) {
        p[i] = (u_char) (v >> (56 - 8 * i));
    }
}


/*
 * The keyed states of key (ngx_http_tokengate_hmac.c).  OpenSSL 3's
 * one-shot HMAC() fetches the MAC and the digest on every call (a
 * provider lookup under a lock), and an EVP_MAC context re-initialised
 * with its key adds parameter handling and allocations to copies of keyed
 * digest states: a worker keeps the states of each key (the cache
 * zones' keys, the coalescing key, the shared caches' keys: a handful)
 * and starts every MAC from copies of them, made by assignment.
 * When the table is full, the states are made in *once for one MAC, and
 * the caller wipes them.
 */
static ngx_http_tokengate_hmac_key_t *
ngx_http_tokengate_hmac_get(const u_char *key,
    ngx_http_tokengate_hmac_key_t *once)
{
    ngx_uint_t                       i;
    ngx_http_tokengate_hmac_slot_t  *h;

    for (i = 0; i < ngx_http_tokengate_nhmacs; i++) {
        if (ngx_memcmp(ngx_http_tokengate_hmacs[i].key, key,
                       NGX_HTTP_TOKENGATE_MAC_LEN) == 0)
        {
            return &ngx_http_tokengate_hmacs[i].hk;
        }
    }

    /* Keep it when there is room; else use it once. */

    if (ngx_http_tokengate_nhmacs == NGX_HTTP_TOKENGATE_HMACS_MAX) {
        if (ngx_http_tokengate_hmac_key_init(once, key,
                                             NGX_HTTP_TOKENGATE_MAC_LEN)
            != 0)
        {
            return NULL;
        }

        return once;
    }

    h = &ngx_http_tokengate_hmacs[ngx_http_tokengate_nhmacs];

    if (ngx_http_tokengate_hmac_key_init(&h->hk, key,
                                         NGX_HTTP_TOKENGATE_MAC_LEN)
        != 0)
    {
        return NULL;
    }

    ngx_memcpy(h->key, key, NGX_HTTP_TOKENGATE_MAC_LEN);
    ngx_http_tokengate_nhmacs++;

    return &h->hk;
}


/*
 * A fresh entry decides now (NGX_OK): a rejected token, or the identity,
 * checked against this location's rules.  An expired positive entry that
 * may still answer an outage (before its stale_until, on a location with
 * tokengate_on_unavailable stale) is a miss that marks ctx: use_stale
 * reads the entry again if the server fails.
 */
ngx_int_t
ngx_http_tokengate_cache_lookup(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, ngx_http_tokengate_loc_conf_t *tlcf)
{
    u_char                      *copy;
    size_t                       len;
    time_t                       now;
    ngx_uint_t                   negative;
    tg_identity_t                id;
    ngx_http_tokengate_node_t   *tn;
    ngx_http_tokengate_cache_t  *cache;

    cache = tlcf->cache->data;
    copy = NULL;
    len = 0;
    now = ngx_time();

    ngx_memzero(&id, sizeof(tg_identity_t));

    ngx_shmtx_lock(&cache->shpool->mutex);

    tn = ngx_http_tokengate_cache_find(cache, ctx->mac, now);

    if (tn == NULL) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return NGX_DECLINED;
    }

    if (now >= tn->expires) {
        if (!tn->negative && now < tn->stale_until
            && tlcf->on_unavailable == NGX_HTTP_TOKENGATE_UNAVAILABLE_STALE)
        {
            ctx->stale = 1;
        }

        ngx_shmtx_unlock(&cache->shpool->mutex);
        return NGX_DECLINED;
    }

    ngx_queue_remove(&tn->queue);
    ngx_queue_insert_head(&cache->sh->lru, &tn->queue);

    negative = tn->negative;

    if (!negative) {
        len = tn->len;
        copy = ngx_http_tokengate_cache_copy(tn, r->pool, &id);
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);

    if (negative) {
        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_INVALID);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "tokengate: token %s rejected (cached)",
                      ngx_http_tokengate_fp(ctx));
        return NGX_OK;
    }

    if (copy == NULL
        || ngx_http_tokengate_decode(copy, len, &id, r->pool) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    ngx_http_tokengate_verdict(ctx, tlcf, &id, 1);

    return NGX_OK;
}


/* A positive entry's data and flags, copied out under the zone's lock
 * (decoded once it is released); NULL when out of memory. */
static u_char *
ngx_http_tokengate_cache_copy(ngx_http_tokengate_node_t *tn,
    ngx_pool_t *pool, tg_identity_t *id)
{
    u_char  *copy;

    copy = ngx_pnalloc(pool, tn->len);
    if (copy == NULL) {
        return NULL;
    }

    ngx_memcpy(copy, tn->data, tn->len);

    id->n_groups = tn->n_groups;
    id->evaluation = tn->evaluation;
    id->disabled = tn->disabled;
    id->has_profile = tn->has_profile;

    return copy;
}


/* The length of an identity's encoding (ngx_http_tokengate_encode). */
size_t
ngx_http_tokengate_encoded_len(tg_identity_t *id)
{
    size_t      len;
    ngx_uint_t  i;

    len = (id->id != NULL ? ngx_strlen(id->id) : 0) + 1
          + (id->name != NULL ? ngx_strlen(id->name) : 0) + 1
          + (id->email != NULL ? ngx_strlen(id->email) : 0) + 1;

    for (i = 0; i < id->n_groups; i++) {
        len += ngx_strlen(id->groups[i]) + 1;
    }

    return len;
}


/* An identity as an entry keeps it, in the zone and (sealed) in the
 * shared cache: id, name, email, then the groups, each NUL-terminated;
 * returns the end. */
u_char *
ngx_http_tokengate_encode(u_char *p, tg_identity_t *id)
{
    ngx_uint_t   i;
    const char  *f[3];

    f[0] = id->id;
    f[1] = id->name;
    f[2] = id->email;

    for (i = 0; i < 3; i++) {
        if (f[i] != NULL) {
            p = ngx_cpymem(p, f[i], ngx_strlen(f[i]));
        }

        *p++ = '\0';
    }

    for (i = 0; i < id->n_groups; i++) {
        p = ngx_cpymem(p, id->groups[i], ngx_strlen(id->groups[i]));
        *p++ = '\0';
    }

    return p;
}


/* An entry's data back into an identity whose strings point into copy:
 * id, name, email, then id->n_groups groups, each NUL-terminated. */
ngx_int_t
ngx_http_tokengate_decode(u_char *copy, size_t len, tg_identity_t *id,
    ngx_pool_t *pool)
{
    u_char      *p, *last, *nul;
    ngx_uint_t   i, n_groups;

    n_groups = id->n_groups;

    if (len == 0 || copy[len - 1] != '\0') {
        return NGX_ERROR;
    }

    id->groups = ngx_pcalloc(pool, (n_groups + 1) * sizeof(char *));
    if (id->groups == NULL) {
        return NGX_ERROR;
    }

    p = copy;
    last = copy + len;

    for (i = 0; i < 3 + n_groups; i++) {
        if (p >= last) {
            return NGX_ERROR;
        }

        /* memchr: the byte loop of ngx_strlchr was most of a hit's
         * decoding */
        nul = memchr(p, '\0', last - p);
        if (nul == NULL) {
            return NGX_ERROR;
        }

        switch (i) {
        case 0:
            id->id = (char *) p;
            break;
        case 1:
            id->name = (char *) p;
            break;
        case 2:
            id->email = (char *) p;
            break;
        default:
            id->groups[i - 3] = (char *) p;
        }

        p = nul + 1;
    }

    id->display_name = id->name;
    id->first_name = (char *) "";
    id->last_name = (char *) "";

    return NGX_OK;
}


/*
 * The server is unavailable: decide from the token's entry if it may
 * answer an outage now.  It is read again rather than kept from the
 * lookup: meanwhile a refusal (in any worker) may have removed it, or its
 * stale window may have closed while the call ran.
 */
ngx_int_t
ngx_http_tokengate_use_stale(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf)
{
    u_char                      *copy;
    size_t                       len;
    time_t                       now;
    tg_identity_t                id;
    ngx_http_tokengate_node_t   *tn;
    ngx_http_tokengate_cache_t  *cache;

    if (tlcf->cache == NULL || !ctx->has_mac) {
        return NGX_DECLINED;
    }

    cache = tlcf->cache->data;
    copy = NULL;
    len = 0;
    now = ngx_time();

    ngx_memzero(&id, sizeof(tg_identity_t));

    ngx_shmtx_lock(&cache->shpool->mutex);

    tn = ngx_http_tokengate_cache_find(cache, ctx->mac, now);

    if (tn != NULL && !tn->negative && now < tn->stale_until) {
        len = tn->len;
        copy = ngx_http_tokengate_cache_copy(tn, ctx->request->pool, &id);
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);

    if (copy == NULL
        || ngx_http_tokengate_decode(copy, len, &id, ctx->request->pool)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    ngx_http_tokengate_verdict(ctx, tlcf, &id, 1);
    ngx_str_set(&ctx->cache_status, "STALE");

    return NGX_OK;
}


/*
 * The server answered for the token's MAC: keep the identity, or, with id
 * NULL, "rejected".  Whatever comes next, the token's previous entry goes
 * first, so that a rejection always ends an accepted identity (also with
 * negative_ttl=0, or when the new answer is too large to keep): stale mode
 * never revives a token the server refused.
 *
 * The life of an accepted token is bounded by its expiry when the answer
 * gives one, else by its first accepted validation (kept when the entry is
 * renewed) plus token_lifetime_max (Looker GET /user and Insight
 * auth/currentuser carry no expiry).  The entry is fresh for ttl, answers
 * an outage for stale_ttl more, both within that bound, and is kept (not
 * answering) up to that bound so that a renewal still knows the first
 * validation.  A server that still accepts the token past the bound (a
 * token_lifetime_max too short for it) finds the entry gone: that
 * validation counts a new life.  A rejection is kept negative_ttl.
 * tmac, the token-only MAC (NULL if none), puts the entry in the zone's
 * index of tokens for logout and purge.
 */
void
ngx_http_tokengate_cache_store(ngx_http_tokengate_loc_conf_t *tlcf,
    u_char *mac, u_char *tmac, tg_identity_t *id)
{
    (void) ngx_http_tokengate_cache_put(tlcf, mac, tmac, id, 0, 0);
}


/*
 * The times of an entry for an answer got at now (the one rule of the
 * zone and of the shared cache): with id NULL, a rejection kept
 * negative_ttl; else fresh for ttl, answering an outage for stale_ttl
 * more, both within the token's life (its expiry, else first_seen +
 * token_lifetime_max), and kept to that bound.  NGX_DECLINED when the
 * entry would not be fresh at all.
 */
ngx_int_t
ngx_http_tokengate_cache_bounds(ngx_http_tokengate_loc_conf_t *tlcf,
    tg_identity_t *id, time_t first_seen, time_t now, time_t *expires,
    time_t *stale_until, time_t *keep_until)
{
    time_t  limit;

    if (id == NULL) {
        *expires = now + tlcf->cache_negative_ttl;
        *stale_until = *expires;
        *keep_until = *expires;

    } else {
        limit = id->expires_at > 0 ? id->expires_at
                                   : first_seen + tlcf->lifetime_max;

        *expires = ngx_min(now + tlcf->cache_ttl, limit);
        *stale_until = ngx_min(*expires + tlcf->cache_stale_ttl, limit);
        *keep_until = id->expires_at > 0 ? *stale_until : limit;
    }

    return *expires > now ? NGX_OK : NGX_DECLINED;
}


/*
 * ngx_http_tokengate_cache_store with a first validation known from
 * elsewhere (first_seen, 0: now or the entry's) and a bound on the
 * entry's freshness (cap, 0: none), for an answer of the shared cache.
 * Returns the entry's first_seen.
 */
time_t
ngx_http_tokengate_cache_put(ngx_http_tokengate_loc_conf_t *tlcf,
    u_char *mac, u_char *tmac, tg_identity_t *id, time_t first_seen,
    time_t cap)
{
    size_t                       len, size;
    time_t                       now, expires, stale_until, keep_until;
    ngx_uint_t                   i, keep;
    ngx_http_tokengate_node_t   *tn;
    ngx_http_tokengate_cache_t  *cache;

    cache = tlcf->cache->data;
    now = ngx_time();
    len = 0;
    keep = 1;

    if (id != NULL) {
        len = ngx_http_tokengate_encoded_len(id);

        if (id->n_groups > 0xffff || len > NGX_HTTP_TOKENGATE_ENTRY_MAX) {
            keep = 0;
        }
    }

    size = offsetof(ngx_http_tokengate_node_t, data) + len;

    if (first_seen <= 0 || first_seen > now) {
        first_seen = now;
    }

    ngx_shmtx_lock(&cache->shpool->mutex);

    tn = ngx_http_tokengate_cache_find(cache, mac, now);

    if (tn != NULL) {
        if (id != NULL && !tn->negative && tn->first_seen <= now
            && tn->first_seen < first_seen)
        {
            first_seen = tn->first_seen;
        }

        ngx_http_tokengate_cache_drop(cache, tn);
    }

    (void) ngx_http_tokengate_cache_bounds(tlcf, id, first_seen, now,
                                           &expires, &stale_until,
                                           &keep_until);

    if (cap > 0 && cap < expires) {
        expires = cap;
    }

    if (!keep || expires <= now) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return first_seen;
    }

    for (i = 0; i < NGX_HTTP_TOKENGATE_EXPIRE_MAX; i++) {
        if (!ngx_http_tokengate_cache_evict(cache, 0)) {
            break;
        }
    }

    tn = ngx_slab_alloc_locked(cache->shpool, size);

    for (i = 0; tn == NULL && i < NGX_HTTP_TOKENGATE_EVICT_MAX; i++) {
        if (!ngx_http_tokengate_cache_evict(cache, 1)) {
            break;
        }

        tn = ngx_slab_alloc_locked(cache->shpool, size);
    }

    if (tn == NULL) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "tokengate: cache zone \"%V\" is full",
                      &tlcf->cache->shm.name);
        return first_seen;
    }

    ngx_memcpy(tn->mac, mac, NGX_HTTP_TOKENGATE_MAC_LEN);
    ngx_memcpy(&tn->node.key, mac, sizeof(ngx_rbtree_key_t));

    tn->expires = expires;
    tn->stale_until = stale_until;
    tn->keep_until = keep_until;
    tn->first_seen = first_seen;
    tn->len = (uint16_t) len;
    tn->negative = (id == NULL);
    tn->n_groups = 0;
    tn->evaluation = 0;
    tn->disabled = 0;
    tn->has_profile = 0;
    tn->indexed = 0;

    if (tmac != NULL) {
        ngx_memcpy(tn->tmac, tmac, NGX_HTTP_TOKENGATE_MAC_LEN);
        ngx_memcpy(&tn->tnode.key, tmac, sizeof(ngx_rbtree_key_t));
        tn->indexed = 1;
    }

    if (id != NULL) {
        tn->n_groups = (uint16_t) id->n_groups;
        tn->evaluation = (signed char) id->evaluation;
        tn->disabled = (signed char) id->disabled;
        tn->has_profile = (u_char) (id->has_profile != 0);

        (void) ngx_http_tokengate_encode(tn->data, id);
    }

    ngx_rbtree_insert(&cache->sh->rbtree, &tn->node);

    if (tn->indexed) {
        ngx_rbtree_insert(&cache->sh->tokens, &tn->tnode);
    }

    ngx_queue_insert_head(&cache->sh->lru, &tn->queue);

    ngx_shmtx_unlock(&cache->shpool->mutex);

    return first_seen;
}


/* The entry for mac, with the zone locked; one past its keep_until, or
 * whose times or size are not consistent, is dropped on the way. */
static ngx_http_tokengate_node_t *
ngx_http_tokengate_cache_find(ngx_http_tokengate_cache_t *cache, u_char *mac,
    time_t now)
{
    ngx_http_tokengate_node_t  *tn;

    tn = ngx_http_tokengate_tree_find(&cache->sh->rbtree, mac,
                                      offsetof(ngx_http_tokengate_node_t,
                                               node),
                                      offsetof(ngx_http_tokengate_node_t,
                                               mac));

    if (tn != NULL
        && (tn->keep_until <= now
            || tn->expires > tn->stale_until
            || tn->stale_until > tn->keep_until
            || tn->len > NGX_HTTP_TOKENGATE_ENTRY_MAX))
    {
        ngx_http_tokengate_cache_drop(cache, tn);
        return NULL;
    }

    return tn;
}


/*
 * The entry whose MAC (at mac_off) is mac in a tree of entries linked by
 * their node at node_off: the zone's tree by MAC, or its index of tokens
 * (one of the entries of the token); locked.
 */
static ngx_http_tokengate_node_t *
ngx_http_tokengate_tree_find(ngx_rbtree_t *tree, u_char *mac,
    size_t node_off, size_t mac_off)
{
    ngx_int_t                   rc;
    ngx_rbtree_key_t            key;
    ngx_rbtree_node_t          *node, *sentinel;
    ngx_http_tokengate_node_t  *tn;

    ngx_memcpy(&key, mac, sizeof(ngx_rbtree_key_t));

    node = tree->root;
    sentinel = tree->sentinel;

    while (node != sentinel) {

        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        tn = (ngx_http_tokengate_node_t *) ((u_char *) node - node_off);

        rc = ngx_memcmp(mac, (u_char *) tn + mac_off,
                        NGX_HTTP_TOKENGATE_MAC_LEN);

        if (rc == 0) {
            return tn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/* Remove the token's entry, if any, from the location's zone. */
void
ngx_http_tokengate_cache_remove(ngx_http_tokengate_loc_conf_t *tlcf,
    u_char *mac)
{
    ngx_http_tokengate_node_t   *tn;
    ngx_http_tokengate_cache_t  *cache;

    cache = tlcf->cache->data;

    ngx_shmtx_lock(&cache->shpool->mutex);

    tn = ngx_http_tokengate_cache_find(cache, mac, ngx_time());

    if (tn != NULL) {
        ngx_http_tokengate_cache_drop(cache, tn);
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


/*
 * The token-only MAC of a token in a zone: the zone's key over the token
 * and whether it came as Basic credentials, with an all-zero fingerprint
 * (no location's, which are SHA-256 outputs), so that one token has one
 * such MAC per zone whatever the location.  It keys the zone's index of
 * tokens; it is computed on a cache miss only (the store needs it, and
 * the token is wiped before the answer comes).
 */
ngx_int_t
ngx_http_tokengate_cache_token_mac(ngx_shm_zone_t *zone, ngx_str_t *token,
    ngx_uint_t basic, u_char *out)
{
    ngx_http_tokengate_cache_t  *cache;
    static u_char                none[NGX_HTTP_TOKENGATE_MAC_LEN];

    cache = zone->data;

    if (cache == NULL || cache->sh == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_tokengate_mac(cache->sh->key, token, basic, none, out);
}


/*
 * Remove every entry of a token (basic: Basic credentials) from a cache
 * zone, or, with zone NULL, from every tokengate_cache zone of this
 * nginx: the entries of all locations, whatever their fingerprint (the
 * index of tokens), so that no location answers from what the server said
 * before.  The number removed, or NGX_ERROR.  The one place logout and
 * purge remove a token: a cache shared beyond this node removes it here
 * too.
 */
ngx_int_t
ngx_http_tokengate_cache_purge_token(ngx_shm_zone_t *zone, ngx_str_t *token,
    ngx_uint_t basic, ngx_log_t *log)
{
    ngx_uint_t        i, n;
    ngx_shm_zone_t   *shm_zone;
    ngx_list_part_t  *part;

    /* the fleet's copies first (DEL, written at once) */

    ngx_http_tokengate_shared_purge(zone, token, basic, log);

    if (zone != NULL) {
        return ngx_http_tokengate_cache_purge_zone(zone, token, basic);
    }

    n = 0;
    part = NULL;
    i = 0;

    for ( ;; ) {
        shm_zone = ngx_http_tokengate_cache_next(&part, &i);

        if (shm_zone == NULL) {
            break;
        }

        n += ngx_http_tokengate_cache_purge_zone(shm_zone, token, basic);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "tokengate: %ui cache entries of a token removed", n);

    return n;
}


/* Remove every entry of zone (NULL: of every zone); the number removed. */
ngx_int_t
ngx_http_tokengate_cache_purge_all(ngx_shm_zone_t *zone, ngx_log_t *log)
{
    ngx_uint_t                   i, n;
    ngx_queue_t                 *q;
    ngx_list_part_t             *part;
    ngx_shm_zone_t              *shm_zone;
    ngx_http_tokengate_node_t   *tn;
    ngx_http_tokengate_cache_t  *cache;

    n = 0;
    part = NULL;
    i = 0;

    for ( ;; ) {
        shm_zone = ngx_http_tokengate_cache_next(&part, &i);

        if (shm_zone == NULL) {
            break;
        }

        if (zone != NULL && zone->shm.addr != shm_zone->shm.addr) {
            continue;
        }

        cache = shm_zone->data;

        ngx_shmtx_lock(&cache->shpool->mutex);

        while (!ngx_queue_empty(&cache->sh->lru)) {
            q = ngx_queue_head(&cache->sh->lru);
            tn = ngx_queue_data(q, ngx_http_tokengate_node_t, queue);
            ngx_http_tokengate_cache_drop(cache, tn);
            n++;
        }

        ngx_shmtx_unlock(&cache->shpool->mutex);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "tokengate: %ui cache entries removed", n);

    return n;
}


/* Is this shared memory zone a tokengate_cache zone, set up? */
ngx_uint_t
ngx_http_tokengate_cache_is_zone(ngx_shm_zone_t *zone)
{
    ngx_http_tokengate_cache_t  *cache;

    if (zone->tag != &ngx_http_tokengate_module
        || zone->init != ngx_http_tokengate_init_zone)
    {
        return 0;
    }

    cache = zone->data;

    return cache != NULL && cache->sh != NULL;
}


/* The next tokengate_cache zone of this cycle after *part, *i (both
 * start at NULL, 0), or NULL. */
static ngx_shm_zone_t *
ngx_http_tokengate_cache_next(ngx_list_part_t **part, ngx_uint_t *i)
{
    ngx_shm_zone_t  *shm_zone;

    if (*part == NULL) {
        *part = (ngx_list_part_t *) &ngx_cycle->shared_memory.part;
        *i = 0;
    }

    for ( ;; ) {

        if (*i >= (*part)->nelts) {
            if ((*part)->next == NULL) {
                return NULL;
            }

            *part = (*part)->next;
            *i = 0;
            continue;
        }

        shm_zone = (ngx_shm_zone_t *) (*part)->elts + (*i)++;

        if (ngx_http_tokengate_cache_is_zone(shm_zone)) {
            return shm_zone;
        }
    }
}


/* Remove every entry of a token from one zone; the number removed. */
static ngx_uint_t
ngx_http_tokengate_cache_purge_zone(ngx_shm_zone_t *zone, ngx_str_t *token,
    ngx_uint_t basic)
{
    u_char                       tmac[NGX_HTTP_TOKENGATE_MAC_LEN];
    ngx_uint_t                   n;
    ngx_http_tokengate_node_t   *tn;
    ngx_http_tokengate_cache_t  *cache;

    if (!ngx_http_tokengate_cache_is_zone(zone)
        || ngx_http_tokengate_cache_token_mac(zone, token, basic, tmac)
           != NGX_OK)
    {
        return 0;
    }

    cache = zone->data;
    n = 0;

    ngx_shmtx_lock(&cache->shpool->mutex);

    for ( ;; ) {
        tn = ngx_http_tokengate_tree_find(&cache->sh->tokens, tmac,
                                          offsetof(ngx_http_tokengate_node_t,
                                                   tnode),
                                          offsetof(ngx_http_tokengate_node_t,
                                                   tmac));

        if (tn == NULL) {
            break;
        }

        ngx_http_tokengate_cache_drop(cache, tn);
        n++;
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);

    ngx_explicit_memzero(tmac, sizeof(tmac));

    return n;
}


/* Unlink and free an entry; locked. */
static void
ngx_http_tokengate_cache_drop(ngx_http_tokengate_cache_t *cache,
    ngx_http_tokengate_node_t *tn)
{
    ngx_queue_remove(&tn->queue);
    ngx_rbtree_delete(&cache->sh->rbtree, &tn->node);

    if (tn->indexed) {
        ngx_rbtree_delete(&cache->sh->tokens, &tn->tnode);
    }

    ngx_slab_free_locked(cache->shpool, tn);
}


/* Drop the least recently used entry if forced or past its keep_until;
 * locked. */
static ngx_uint_t
ngx_http_tokengate_cache_evict(ngx_http_tokengate_cache_t *cache,
    ngx_uint_t force)
{
    ngx_queue_t                *q;
    ngx_http_tokengate_node_t  *tn;

    if (ngx_queue_empty(&cache->sh->lru)) {
        return 0;
    }

    q = ngx_queue_last(&cache->sh->lru);
    tn = ngx_queue_data(q, ngx_http_tokengate_node_t, queue);

    if (!force && tn->keep_until > ngx_time()) {
        return 0;
    }

    ngx_http_tokengate_cache_drop(cache, tn);

    return 1;
}


static void
ngx_http_tokengate_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_http_tokengate_tree_insert(temp, node, sentinel,
                                   offsetof(ngx_http_tokengate_node_t, node),
                                   offsetof(ngx_http_tokengate_node_t, mac));
}


/* The index of tokens: one token may have an entry per fingerprint, so
 * equal MACs go right. */
static void
ngx_http_tokengate_tokens_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_http_tokengate_tree_insert(temp, node, sentinel,
                                   offsetof(ngx_http_tokengate_node_t, tnode),
                                   offsetof(ngx_http_tokengate_node_t, tmac));
}


/* Insert an entry linked by its node at node_off, ordered by its MAC at
 * mac_off. */
static void
ngx_http_tokengate_tree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel, size_t node_off,
    size_t mac_off)
{
    u_char              *mac, *tmac;
    ngx_rbtree_node_t  **p;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            mac = (u_char *) node - node_off + mac_off;
            tmac = (u_char *) temp - node_off + mac_off;

            p = ngx_memcmp(mac, tmac, NGX_HTTP_TOKENGATE_MAC_LEN) < 0
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


/*
 * The fingerprint of a location: SHA-256 of everything a validation's
 * answer depends on besides the token, so that the cache and coalescing
 * never give one location the answer to another's question.  It covers
 * the requests themselves, as libtokengate's pure builders make them for a
 * placeholder token and placeholder credentials (so the full URL with the
 * base path or API version, the method, the Authorization scheme, the
 * token exchange of tokengate_basic with its maxAge), then what decides
 * where they go and whether the answer is trusted and read: the flavor,
 * the validation call, ca_file, ca_path, pinned_pubkey, proxy,
 * allow_insecure_http, token_max_age, max_response_bytes, and the longest
 * token life that bounds how long an answer is used.  Timeouts and
 * retry_after_max are left out: they only decide between an answer and a
 * failure, and failures are never cached.  The rules are not in it either:
 * they are applied to the cached identity on every request.  Every field
 * is length-prefixed, so no two different settings give the same input.
 */
char *
ngx_http_tokengate_fingerprint(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *conf)
{
    u_char        num[8];
    char         *rc;
    ngx_uint_t    i, ok;
    tg_diag_t     diag;
    tg_config_t  *tg;
    EVP_MD_CTX   *md;
    tg_request_t  val, tok;
    unsigned int  len;
    const char   *s[14];
    long          n[6];

    tg = conf->tg;
    md = NULL;
    rc = NGX_CONF_ERROR;

    tg_diag_clear(&diag);
    ngx_memzero(&val, sizeof(tg_request_t));
    ngx_memzero(&tok, sizeof(tg_request_t));

    if (tg_build_validate(tg, "placeholder", conf->which, &val, &diag)
        != TG_OK
        || tg_build_token(tg, "placeholder", "placeholder", &tok, &diag)
           != TG_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tokengate: cannot build the validation "
                           "request: %s", diag.message);
        goto out;
    }

    s[0] = NGX_HTTP_TOKENGATE_FP_VERSION;
    s[1] = val.method;
    s[2] = val.url;
    s[3] = val.accept;
    s[4] = val.content_type;
    s[5] = val.authorization;
    s[6] = tok.method;
    s[7] = tok.url;
    s[8] = tok.accept;
    s[9] = tok.content_type;
    s[10] = tg->ca_file;
    s[11] = tg->ca_path;
    s[12] = tg->pinned_pubkey;
    s[13] = tg->proxy;

    n[0] = (long) tg->api;
    n[1] = (long) conf->which;
    n[2] = (long) tg->allow_insecure_http;
    n[3] = tg->token_max_age;
    n[4] = tg->max_response_bytes;
    n[5] = (long) conf->lifetime_max;

    md = EVP_MD_CTX_new();

    ok = (md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1);

    for (i = 0; ok && i < sizeof(s) / sizeof(s[0]); i++) {
        ok = ngx_http_tokengate_fingerprint_add(md, s[i],
                                                s[i] != NULL
                                                ? ngx_strlen(s[i]) : 0)
             == NGX_OK;
    }

    for (i = 0; ok && i < sizeof(n) / sizeof(n[0]); i++) {
        ngx_http_tokengate_be64(num, (uint64_t) n[i]);
        ok = ngx_http_tokengate_fingerprint_add(md, num, sizeof(num))
             == NGX_OK;
    }

    len = 0;

    if (!ok
        || ngx_http_tokengate_fingerprint_add(md, val.body, val.body_len)
           != NGX_OK
        || ngx_http_tokengate_fingerprint_add(md, tok.body, tok.body_len)
           != NGX_OK
        || EVP_DigestFinal_ex(md, conf->fingerprint, &len) != 1
        || len != NGX_HTTP_TOKENGATE_MAC_LEN)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tokengate: SHA-256 failed");
        goto out;
    }

    rc = NGX_CONF_OK;

out:

    EVP_MD_CTX_free(md);
    tg_request_clear(&val);
    tg_request_clear(&tok);

    return rc;
}


/* One field of a fingerprint: its length (8 bytes), then its bytes. */
static ngx_int_t
ngx_http_tokengate_fingerprint_add(EVP_MD_CTX *md, const void *data,
    size_t len)
{
    u_char  prefix[8];

    ngx_http_tokengate_be64(prefix, len);

    if (EVP_DigestUpdate(md, prefix, sizeof(prefix)) != 1
        || (len > 0 && EVP_DigestUpdate(md, data, len) != 1))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* tokengate_cache zone=NAME[:SIZE] [ttl=TIME] [negative_ttl=TIME]
 * [stale_ttl=TIME] | off */
char *
ngx_http_tokengate_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tokengate_loc_conf_t *tlcf = conf;

    ssize_t                      size;
    ngx_int_t                    ttls[3];
    ngx_str_t                   *value, name, s;
    ngx_uint_t                   i, n;
    ngx_shm_zone_t              *shm_zone;
    ngx_http_tokengate_cache_t  *cache;
    ngx_http_tokengate_ttl_t    *t;

    if (tlcf->cache != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        tlcf->cache = NULL;
        return NGX_CONF_OK;
    }

    ngx_str_null(&name);
    size = 0;

    for (n = 0; ngx_http_tokengate_cache_ttls[n].name.len != 0; n++) {
        ttls[n] = ngx_http_tokengate_cache_ttls[n].dflt;
    }

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

        for (t = ngx_http_tokengate_cache_ttls; t->name.len != 0; t++) {
            if (value[i].len >= t->name.len
                && ngx_strncmp(value[i].data, t->name.data, t->name.len) == 0)
            {
                break;
            }
        }

        if (t->name.len != 0) {
            s.data = value[i].data + t->name.len;
            s.len = value[i].len - t->name.len;

            n = t - ngx_http_tokengate_cache_ttls;
            ttls[n] = ngx_parse_time(&s, 1);

            if (ttls[n] == NGX_ERROR || (ttls[n] == 0 && !t->zero)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"%V\" directive",
                                   &value[i], &cmd->name);
                return NGX_CONF_ERROR;
            }

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

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_tokengate_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data == NULL) {
        cache = ngx_pcalloc(cf->pool, sizeof(ngx_http_tokengate_cache_t));
        if (cache == NULL) {
            return NGX_CONF_ERROR;
        }

        shm_zone->init = ngx_http_tokengate_init_zone;
        shm_zone->data = cache;
    }

    tlcf->cache = shm_zone;
    tlcf->cache_ttl = ttls[0];
    tlcf->cache_negative_ttl = ttls[1];
    tlcf->cache_stale_ttl = ttls[2];

    return NGX_CONF_OK;
}


/* A new zone gets a random HMAC key; a zone kept over a reload keeps its
 * entries and its key. */
static ngx_int_t
ngx_http_tokengate_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_tokengate_cache_t  *octx = data;

    size_t                       len;
    ngx_http_tokengate_cache_t  *cache;

    cache = shm_zone->data;

    if (octx != NULL) {
        cache->sh = octx->sh;
        cache->shpool = octx->shpool;
        return NGX_OK;
    }

    cache->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        cache->sh = cache->shpool->data;
        return NGX_OK;
    }

    cache->sh = ngx_slab_alloc(cache->shpool,
                               sizeof(ngx_http_tokengate_shctx_t));
    if (cache->sh == NULL) {
        return NGX_ERROR;
    }

    cache->shpool->data = cache->sh;

    ngx_rbtree_init(&cache->sh->rbtree, &cache->sh->sentinel,
                    ngx_http_tokengate_rbtree_insert);
    ngx_rbtree_init(&cache->sh->tokens, &cache->sh->tokens_sentinel,
                    ngx_http_tokengate_tokens_insert);
    ngx_queue_init(&cache->sh->lru);

    if (RAND_bytes(cache->sh->key, NGX_HTTP_TOKENGATE_MAC_LEN) != 1) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "tokengate: RAND_bytes() failed");
        return NGX_ERROR;
    }

    len = sizeof(" in tokengate zone \"\"") + shm_zone->shm.name.len;

    cache->shpool->log_ctx = ngx_slab_alloc(cache->shpool, len);
    if (cache->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(cache->shpool->log_ctx, " in tokengate zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone evicts; it is not an error worth a [crit] */

    cache->shpool->log_nomem = 0;

    return NGX_OK;
}
