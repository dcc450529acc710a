/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate.h: what the files of the tokengate nginx module share
 * (internal; not installed): the types of a request's check, the limits
 * more than one file needs, and the functions one file offers the others.
 *
 * ngx_http_tokengate_module.c owns the access check,
 * ngx_http_tokengate_answer.c the outcome and nginx's answer,
 * ngx_http_tokengate_token.c a request's credentials and identity,
 * ngx_http_tokengate_conf.c the configuration, ngx_http_tokengate_curl.c
 * the worker's transfers (through libcurl's multi handle, or on nginx's
 * own connections: ngx_http_tokengate_peer.c, their TLS
 * ngx_http_tokengate_tls.c),
 * ngx_http_tokengate_cache.c the shared cache, ngx_http_tokengate_status.c
 * the shared counters, ngx_http_tokengate_limit.c tokengate_fail_limit,
 * ngx_http_tokengate_backoff.c the node-wide back-off from an auth server.
 * Other parts of the module (the tokengate_embed
 * handler) make their own HTTP calls to the BI server on that multi handle
 * through ngx_http_tokengate_call(), read the identity the access phase
 * accepted through ngx_http_tokengate_allowed() and the $tokengate_*
 * variables, and count what they do in tokengate_status.  The
 * tokengate_logout and tokengate_purge handlers
 * (ngx_http_tokengate_logout.c) remove a token's cache entries through
 * ngx_http_tokengate_cache_purge_token() and answer refusals through
 * ngx_http_tokengate_answer().
 */


#ifndef _NGX_HTTP_TOKENGATE_H_INCLUDED_
#define _NGX_HTTP_TOKENGATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <tokengate.h>
#include <tg_curl.h>
#include <tg_http1.h>


/* The counters of tokengate_status for tokengate_embed. */
#define NGX_HTTP_TOKENGATE_EMBED_LOCAL     0    /* 302 to a URL signed here */
#define NGX_HTTP_TOKENGATE_EMBED_SERVER    1    /* 302 to a URL from Looker */
#define NGX_HTTP_TOKENGATE_EMBED_REFUSED   2    /* 4xx: not for this client */
#define NGX_HTTP_TOKENGATE_EMBED_FAILED    3    /* 5xx: Looker or nginx */
#define NGX_HTTP_TOKENGATE_EMBED_N         4

/* The counters of tokengate_status for tokengate_logout and
 * tokengate_purge. */
#define NGX_HTTP_TOKENGATE_LOGOUT_SERVER   0    /* logged out at Looker */
#define NGX_HTTP_TOKENGATE_LOGOUT_LOCAL    1    /* cache only (Insight) */
#define NGX_HTTP_TOKENGATE_LOGOUT_REFUSED  2    /* 400/401: no valid token */
#define NGX_HTTP_TOKENGATE_LOGOUT_FAILED   3    /* 503: not at the server */
#define NGX_HTTP_TOKENGATE_PURGE_TOKEN     4    /* purges of one token */
#define NGX_HTTP_TOKENGATE_PURGE_ALL       5    /* purges of whole zones */
#define NGX_HTTP_TOKENGATE_PURGE_ENTRIES   6    /* entries they removed */
#define NGX_HTTP_TOKENGATE_LOGOUT_N        7


/* The largest response buffer an idle transfer handle keeps. */
#define NGX_HTTP_TOKENGATE_BODY_KEEP       16384

/* SHA-256 sizes: the HMAC keys, the token MACs and the fingerprints of
 * the locations' settings. */
#define NGX_HTTP_TOKENGATE_MAC_LEN         32

#define NGX_HTTP_TOKENGATE_UNAVAILABLE_DENY   0
#define NGX_HTTP_TOKENGATE_UNAVAILABLE_STALE  1

#define NGX_HTTP_TOKENGATE_GROUPS_ANY      0
#define NGX_HTTP_TOKENGATE_GROUPS_ALL      1

/*
 * What the access check concluded for a request, in the order of the
 * counters of tokengate_status and of $tokengate_result's values.
 * ngx_http_tokengate_answer() turns it into the HTTP answer.
 */
#define NGX_HTTP_TOKENGATE_VALID           0
#define NGX_HTTP_TOKENGATE_MISSING         1
#define NGX_HTTP_TOKENGATE_MALFORMED       2
#define NGX_HTTP_TOKENGATE_INVALID         3
#define NGX_HTTP_TOKENGATE_FORBIDDEN       4
#define NGX_HTTP_TOKENGATE_UNAVAILABLE     5
#define NGX_HTTP_TOKENGATE_LIMITED         6    /* tokengate_fail_limit */
#define NGX_HTTP_TOKENGATE_OUTCOMES        7


typedef struct ngx_http_tokengate_loc_conf_s  ngx_http_tokengate_loc_conf_t;
typedef struct ngx_http_tokengate_peer_s      ngx_http_tokengate_peer_t;

/* tokengate_shared_cache: the fleet's Redis (a worker's connection to it,
 * ngx_http_tokengate_redis.c's) and the keys of its entries
 * (ngx_http_tokengate_seal.c). */
typedef struct ngx_http_tokengate_redis_s  ngx_http_tokengate_redis_t;

typedef struct {
    ngx_http_tokengate_redis_t  *redis;
    ngx_msec_t                 timeout;
    ngx_str_t                  prefix;
    u_char                     mac_key[NGX_HTTP_TOKENGATE_MAC_LEN];
    u_char                     aead_key[32];
} ngx_http_tokengate_shared_t;

/* A sealed value of the shared cache: version, nonce, ciphertext, tag. */
#define NGX_HTTP_TOKENGATE_NONCE_LEN       12
#define NGX_HTTP_TOKENGATE_TAG_LEN         16
#define NGX_HTTP_TOKENGATE_SEALED(len)                                       \
    (1 + NGX_HTTP_TOKENGATE_NONCE_LEN + (len) + NGX_HTTP_TOKENGATE_TAG_LEN)

/* A Redis key: the prefix (at most 64 bytes), "backoff:" for a back-off
 * deadline, and 64 hex digits. */
#define NGX_HTTP_TOKENGATE_SKEY_MAX                                          \
    (64 + sizeof("backoff:") - 1 + 2 * NGX_HTTP_TOKENGATE_MAC_LEN)

/* The counters of the shared cache (tokengate_status "shared"). */
#define NGX_HTTP_TOKENGATE_SHARED_HITS     0
#define NGX_HTTP_TOKENGATE_SHARED_MISSES   1
#define NGX_HTTP_TOKENGATE_SHARED_ERRORS   2
#define NGX_HTTP_TOKENGATE_SHARED_REJECTED 3
#define NGX_HTTP_TOKENGATE_SHARED_N        4

/* One HTTP call in flight: the context of a transfer, an access check's
 * or a call's; the embed handler uses it only through
 * ngx_http_tokengate_call() and ngx_http_tokengate_call_cancel(). */
typedef struct ngx_http_tokengate_ctx_s  ngx_http_tokengate_call_t;

/*
 * The end of a call, through the path the access check's validations take
 * too (ngx_http_tokengate_complete): run once libcurl's callbacks have
 * returned, never from libcurl's stack, so it may start new calls and
 * finalize requests.  err is TG_OK when an
 * HTTP answer came (any status: resp holds it, borrowed until the handler
 * returns); otherwise the transfer's error from common/curl_error.c (the
 * map the CLI and PAM use: TG_TIMEOUT, TG_UNAVAILABLE, TG_TLS, TG_PROTOCOL
 * for a broken or too large answer, ...) with its reason, and resp is
 * NULL.  sent_at is when the request was sent.  The call is freed after
 * the handler returns.
 */
typedef void (*ngx_http_tokengate_call_pt)(void *data, tg_err_t err,
    tg_response_t *resp, time_t sent_at, const char *reason);


/* The shared cache: one per zone, in shared memory. */
typedef struct {
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
    ngx_rbtree_t               tokens;         /* by token-only MAC */
    ngx_rbtree_node_t          tokens_sentinel;
    ngx_queue_t                lru;
    u_char                     key[NGX_HTTP_TOKENGATE_MAC_LEN];
} ngx_http_tokengate_shctx_t;


typedef struct {
    ngx_http_tokengate_shctx_t  *sh;
    ngx_slab_pool_t             *shpool;
} ngx_http_tokengate_cache_t;


/*
 * A cache entry: the MAC of the token and either "rejected" (negative) or
 * the identity, serialized as id, name, email, then the groups, each
 * NUL-terminated.  An entry is written in full, under the zone's lock,
 * before it is linked into the tree and the LRU queue, and never changes
 * afterwards: a worker that dies while writing one leaves an unreachable
 * allocation, never a half-written hit.  Its data is still checked when it
 * is decoded (NUL-terminated fields within len).
 *
 * Times (ngx_time()): it answers until expires; a positive one answers an
 * outage (tokengate_on_unavailable stale) until stale_until; it is dropped
 * at keep_until.  expires <= stale_until <= keep_until.  first_seen is the
 * first accepted validation of the token (kept when the entry is renewed),
 * from which the life of a token whose answers carry no expiry is counted.
 *
 * tmac is the token-only MAC (ngx_http_tokengate_cache_token_mac: no
 * fingerprint), by which tnode links the entry into the zone's second
 * tree, so that logout and purge find every entry of a token whatever
 * the location that made it; an entry stored without one (indexed 0) is
 * in the first tree only.
 */
typedef struct {
    ngx_rbtree_node_t          node;
    ngx_rbtree_node_t          tnode;
    ngx_queue_t                queue;
    u_char                     mac[NGX_HTTP_TOKENGATE_MAC_LEN];
    u_char                     tmac[NGX_HTTP_TOKENGATE_MAC_LEN];
    time_t                     expires;
    time_t                     stale_until;
    time_t                     keep_until;
    time_t                     first_seen;
    uint16_t                   len;
    uint16_t                   n_groups;
    u_char                     negative;
    signed char                evaluation;
    signed char                disabled;
    u_char                     has_profile;
    u_char                     indexed;
    u_char                     data[1];
} ngx_http_tokengate_node_t;


/* Counters shared by the workers, for tokengate_status. */
typedef struct {
    ngx_atomic_t               results[NGX_HTTP_TOKENGATE_OUTCOMES];
    ngx_atomic_t               cache[4];
    ngx_atomic_t               calls;
    ngx_atomic_t               embed[NGX_HTTP_TOKENGATE_EMBED_N];
    ngx_atomic_t               logout[NGX_HTTP_TOKENGATE_LOGOUT_N];
    ngx_atomic_t               handles_created;
    ngx_atomic_t               handles_reused;
    ngx_atomic_t               transfers[2];   /* nginx's, libcurl's */
    ngx_atomic_t               connects;       /* nginx's new ones */
    ngx_atomic_t               backoff_refused;
    ngx_atomic_t               backoff_probes;
    ngx_atomic_t               shared[NGX_HTTP_TOKENGATE_SHARED_N];
} ngx_http_tokengate_stats_t;


/* Per configuration (not static: a failed reload must not change what the
 * running cycle's workers use). */
typedef struct {
    ngx_int_t                  remote_user_index;
    ngx_shm_zone_t            *stats_zone;
    ngx_shm_zone_t            *backoff_zone;
    ngx_array_t               *shared_servers;  /* redis.c's, by URL */
    ngx_array_t               *shared_pairs;    /* redis.c's, see there */
    ngx_array_t               *shared_backoffs; /* redis.c's, see there */
    ngx_array_t               *peers;           /* peer.c's, by tg */
} ngx_http_tokengate_main_conf_t;

/* A tokengate.conf and its server on nginx's own connections (NULL: the
 * calls go through libcurl). */
typedef struct {
    tg_config_t                *tg;
    ngx_http_tokengate_peer_t  *peer;
} ngx_http_tokengate_tg_peer_t;


struct ngx_http_tokengate_loc_conf_s {
    ngx_http_complex_value_t  *realm;
    ngx_http_complex_value_t  *token;
    ngx_http_complex_value_t  *login_url;
    ngx_flag_t                 basic;

    ngx_shm_zone_t            *cache;
    time_t                     cache_ttl;
    time_t                     cache_negative_ttl;
    time_t                     cache_stale_ttl;
    ngx_uint_t                 on_unavailable;

    ngx_http_tokengate_shared_t  *shared;      /* tokengate_shared_cache */

    ngx_str_t                  config_file;
    ngx_str_t                  url;
    ngx_uint_t                 api;

    ngx_array_t               *groups;
    ngx_uint_t                 groups_mode;

    ngx_array_t               *require;        /* ngx_http_complex_value_t */
    ngx_int_t                  require_error;

    ngx_msec_t                 timeout;
    ngx_msec_t                 connect_timeout;

    ngx_shm_zone_t            *fail_limit;

    tg_config_t               *tg;
    tg_insight_validate_t      which;

    /* tg's server on nginx's own connections; NULL: through libcurl */
    ngx_http_tokengate_peer_t  *peer;

    /* what a validation's answer depends on, see
     * ngx_http_tokengate_fingerprint, and the longest life of a token
     * (token_lifetime_max, resolved) */
    u_char                     fingerprint[NGX_HTTP_TOKENGATE_MAC_LEN];
    time_t                     lifetime_max;

    /* tokengate_backoff, and the key of the server's back-off (the
     * SHA-256 of tg->url) */
    ngx_flag_t                 backoff;
    u_char                     backoff_key[NGX_HTTP_TOKENGATE_MAC_LEN];
};


typedef struct ngx_http_tokengate_ctx_s  ngx_http_tokengate_ctx_t;


/*
 * An auth server reached over nginx's own connections
 * (ngx_http_tokengate_peer.c): its addresses, resolved when the
 * configuration is read, and for https its TLS context and pins.
 */
struct ngx_http_tokengate_peer_s {
    ngx_addr_t                *addrs;
    ngx_uint_t                 naddrs;
    ngx_str_t                  name;           /* host:port, for logs */
    u_char                    *name_z;
    ngx_str_t                  host;           /* the certificate's name */
    unsigned                   https:1;
    unsigned                   ip:1;           /* host is an address */
#if (NGX_SSL)
    ngx_ssl_t                 *ssl;
    u_char                    *host_z;         /* host, NUL-terminated */
    ngx_array_t               *pins;           /* SHA-256 of SPKIs */
    ngx_str_t                  pin_der;        /* a pinned key's DER */
#endif
};


/* An fd libcurl uses, and its nginx connection. */
typedef struct {
    ngx_connection_t          *connection;     /* NULL: no fd */
    ino_t                      ino;            /* which socket the fd is */
    unsigned                   own:1;          /* opened by open_socket */
} ngx_http_tokengate_sock_t;


/*
 * A curl easy handle and everything one transfer needs (common/curl.c's
 * tg__curl_t: options, limits, request header lines, capped response
 * buffers), kept by the worker between transfers (a free list) so that a
 * validation neither creates a handle nor sets its constant options again:
 * those are set once for (tg, timeouts, protocols) and kept while the next
 * user asks for the same.  Per transfer: the URL, the method and the
 * request headers, which live in the handle's own buffers (curl reads them
 * during the transfer) and are wiped when it ends, as is the response body.
 */
typedef struct {
    ngx_queue_t                queue;          /* in the free list */
    ngx_http_tokengate_ctx_t  *ctx;            /* the owner; NULL when free */

    /* what the constant options were set for (cu.cfg, cu's timeouts and
     * cu.http): tg lives as long as its cycle, so a handle is only reused
     * within the cycle it was set up in */
    volatile ngx_cycle_t      *cycle;
    unsigned                   ready:1;        /* constant options set */

    tg_request_t               req;

    tg__curl_t                 cu;

    /* a transfer on nginx's own connections (ngx_http_tokengate_peer.c):
     * the server, the connection, the request's bytes (wiped once sent),
     * the answer being parsed, the deadline, and a place in the queue of
     * transfers waiting for a connection */
    ngx_http_tokengate_peer_t  *peer;
    tg_config_t               *tg;
    ngx_connection_t          *conn;
    char                      *out;
    size_t                     out_len;
    size_t                     out_cap;
    size_t                     out_sent;
    tg__http1_t                in;
    ngx_event_t                deadline;
    ngx_queue_t                wait;
    size_t                     read;           /* bytes of the answer */
    ngx_msec_t                 started;
    ngx_msec_t                 connect_by;
    ngx_msec_t                 timeout;
    ngx_msec_t                 connect_timeout;
    ngx_uint_t                 addr;
    ngx_err_t                  connect_errno;
    unsigned                   native:1;
    unsigned                   sent:1;
    unsigned                   reused:1;
    unsigned                   retried:1;
    unsigned                   connecting:1;
    unsigned                   waiting:1;
    unsigned                   holds:1;
    unsigned                   keep:1;
} ngx_http_tokengate_handle_t;

struct ngx_http_tokengate_ctx_s {
    ngx_http_request_t        *request;
    ngx_str_t                  realm;

    /* coalescing: a leader is in the worker's in-flight queue and holds
     * its followers; a follower waits on its leader */
    ngx_queue_t                inflight;
    ngx_queue_t                waiters;
    ngx_queue_t                wait_link;
    ngx_http_tokengate_ctx_t  *leader;
    tg_config_t               *tg;
    ngx_shm_zone_t            *cache;
    u_char                     cmac[NGX_HTTP_TOKENGATE_MAC_LEN];
    u_char                     mac[NGX_HTTP_TOKENGATE_MAC_LEN];
    u_char                     tmac[NGX_HTTP_TOKENGATE_MAC_LEN];

    /* the running transfer */
    ngx_http_tokengate_handle_t  *handle;

    /* the shared cache: the token's Redis key; while the leader's lookup
     * runs (lookup), the validation it sends on a miss (req) */
    void                      *lookup;
    tg_request_t               req;
    size_t                     skey_len;
    u_char                     skey[NGX_HTTP_TOKENGATE_SKEY_MAX];

    ngx_event_t                wake;

    /* the token's fingerprint for log lines, computed on first use from
     * token, which is only set while the handler runs (it is wiped when
     * the handler returns) */
    char                       fp[TG_FINGERPRINT_SIZE];
    ngx_str_t                  token;

    /* NGX_HTTP_TOKENGATE_VALID, ...: set by ngx_http_tokengate_outcome,
     * with result (the text of $tokengate_result) */
    ngx_uint_t                 outcome;
    long                       retry_after;

    ngx_str_t                  result;
    ngx_str_t                  cache_status;

    /* tokengate_fail_limit's key of the client (empty: not limited) */
    ngx_str_t                  limit_key;

    ngx_str_t                  user;
    ngx_str_t                  user_id;
    ngx_str_t                  email;
    ngx_str_t                  groups;

    /* who gets the end of the transfer (ngx_http_tokengate_complete): the
     * validation logic (ngx_http_tokengate_validated), or the handler of a
     * call of another part of the module (ngx_http_tokengate_call) */
    ngx_http_tokengate_call_pt  handler;
    void                       *data;

    unsigned                   done:1;
    unsigned                   call:1;         /* ngx_calloc'ed call */
    unsigned                   woken:1;
    unsigned                   blocked:1;
    unsigned                   allowed:1;
    unsigned                   is_leader:1;
    unsigned                   has_mac:1;
    unsigned                   has_cmac:1;
    unsigned                   has_tmac:1;
    unsigned                   basic:1;
    unsigned                   exchanging:1;
    unsigned                   has_req:1;

    /* the outcome is FORBIDDEN because tokengate_require failed: the
     * location's tokengate_require status answers */
    unsigned                   require_failed:1;

    /* the lookup found an expired entry that may answer an outage
     * (tokengate_on_unavailable stale); use_stale reads it again */
    unsigned                   stale:1;

    time_t                     sent_at;

    /* the back-off the transfer's end is recorded in (NULL: none), and
     * whether it is the back-off's probe */
    u_char                    *backoff_key;
    unsigned                   backoff_probe:1;
};


/* Shared between the module's files only: not exported from the .so. */
#pragma GCC visibility push(hidden)


/*
 * Send req (the call takes it over and wipes it) to the server of tlcf on
 * the worker's multi handle, with tlcf's timeouts and TLS settings.  The
 * call does not belong to a request: whoever holds it cancels it when it
 * is no longer wanted.  NULL on failure (req is wiped then too).
 */
ngx_http_tokengate_call_t *ngx_http_tokengate_call(
    ngx_http_tokengate_loc_conf_t *tlcf, tg_request_t *req, ngx_log_t *log,
    ngx_http_tokengate_call_pt handler, void *data);

/* Stop a call whose handler has not run yet and free it; the handler will
 * not run. */
void ngx_http_tokengate_call_cancel(ngx_http_tokengate_call_t *call);

/* The request (its main request) was let through by tokengate's access
 * check with an identity: 1, else 0. */
ngx_uint_t ngx_http_tokengate_allowed(ngx_http_request_t *r);

/* Configuration time: is "tokengate" on (not absent, not a literal off)
 * in this merged location conf, and which tokengate.conf applies. */
ngx_uint_t ngx_http_tokengate_conf_on(ngx_http_tokengate_loc_conf_t *tlcf);
tg_config_t *ngx_http_tokengate_conf_tg(ngx_http_tokengate_loc_conf_t *tlcf);

/* Count one tokengate_embed answer (NGX_HTTP_TOKENGATE_EMBED_*). */
void ngx_http_tokengate_embed_count(ngx_http_request_t *r, ngx_uint_t what);

/* Add n to a counter of tokengate_logout and tokengate_purge
 * (NGX_HTTP_TOKENGATE_LOGOUT_*, NGX_HTTP_TOKENGATE_PURGE_*). */
void ngx_http_tokengate_logout_count(ngx_http_request_t *r, ngx_uint_t what,
    ngx_uint_t n);

/* Add "Retry-After: seconds" to the response headers. */
ngx_int_t ngx_http_tokengate_retry_after(ngx_http_request_t *r, long seconds);

/* Add a response header (NULL when out of memory); key and value are not
 * copied: they must live as long as the request. */
ngx_table_elt_t *ngx_http_tokengate_header(ngx_http_request_t *r, char *key,
    ngx_str_t *value);

/*
 * Between the files of ngx_http_tokengate_module; the contracts are at the
 * definitions.
 */

/* ngx_http_tokengate_answer.c: the outcome and nginx's answer */
void ngx_http_tokengate_outcome(ngx_http_tokengate_ctx_t *ctx,
    ngx_uint_t outcome);
void ngx_http_tokengate_decide(ngx_http_tokengate_ctx_t *ctx, tg_err_t err,
    tg_identity_t *id, tg_diag_t *diag, long retry_after);
void ngx_http_tokengate_verdict(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf, tg_identity_t *id,
    ngx_uint_t pooled);
ngx_int_t ngx_http_tokengate_answer(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx);

extern ngx_str_t          ngx_http_tokengate_results[];

/* ngx_http_tokengate_token.c: credentials in, identity out */
ngx_int_t ngx_http_tokengate_get_token(ngx_http_request_t *r,
    ngx_http_tokengate_loc_conf_t *tlcf, ngx_str_t *token);
ngx_int_t ngx_http_tokengate_find_token(ngx_http_request_t *r,
    ngx_http_tokengate_loc_conf_t *tlcf, ngx_str_t *token);
ngx_int_t ngx_http_tokengate_check_token(ngx_http_request_t *r,
    ngx_str_t *token);
char *ngx_http_tokengate_fp(ngx_http_tokengate_ctx_t *ctx);
ngx_int_t ngx_http_tokengate_keep_identity(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, tg_identity_t *id, ngx_uint_t pooled);
ngx_int_t ngx_http_tokengate_add_variables(ngx_conf_t *cf);

/* ngx_http_tokengate_conf.c: configuration */
void *ngx_http_tokengate_create_main_conf(ngx_conf_t *cf);
void *ngx_http_tokengate_create_loc_conf(ngx_conf_t *cf);
char *ngx_http_tokengate_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
char *ngx_http_tokengate_config_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tokengate_enum_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tokengate_require(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tokengate_require_group(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tokengate_positive_msec(ngx_conf_t *cf, void *post,
    void *data);
ngx_int_t ngx_http_tokengate_zone_arg(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *arg, ngx_str_t *name, ssize_t *size);

/* ngx_http_tokengate_curl.c: transfers */
ngx_int_t ngx_http_tokengate_send(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf, tg_request_t *req, ngx_log_t *log);
void ngx_http_tokengate_release(ngx_http_tokengate_ctx_t *ctx);
void ngx_http_tokengate_abort(ngx_http_tokengate_ctx_t *ctx);
void ngx_http_tokengate_active(ngx_int_t delta);
void ngx_http_tokengate_forget_connection(ngx_connection_t *c);
ngx_int_t ngx_http_tokengate_init_module(ngx_cycle_t *cycle);
ngx_int_t ngx_http_tokengate_curl_init_process(ngx_cycle_t *cycle);
void ngx_http_tokengate_exit_process(ngx_cycle_t *cycle);

void ngx_http_tokengate_ended(ngx_http_tokengate_ctx_t *ctx, tg_err_t err,
    tg_response_t *answer, tg_diag_t *diag);

extern CURLM             *ngx_http_tokengate_multi;

/* ngx_http_tokengate_peer.c: transfers on nginx's own connections */
char *ngx_http_tokengate_peer_conf(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *conf);
ngx_int_t ngx_http_tokengate_peer_start(ngx_http_tokengate_handle_t *h);
void ngx_http_tokengate_peer_stop(ngx_http_tokengate_handle_t *h);
void ngx_http_tokengate_peer_unwrite(ngx_http_tokengate_handle_t *h);
ngx_int_t ngx_http_tokengate_peer_init_process(ngx_cycle_t *cycle);
void ngx_http_tokengate_peer_exit_process(ngx_cycle_t *cycle);

/* ngx_http_tokengate_tls.c: TLS on those connections */
#if (NGX_SSL)
ngx_int_t ngx_http_tokengate_peer_ssl(ngx_conf_t *cf,
    ngx_http_tokengate_peer_t *peer, tg_config_t *tg);
ngx_int_t ngx_http_tokengate_peer_verify(ngx_connection_t *c,
    ngx_http_tokengate_peer_t *peer, tg_diag_t *diag);
#endif

/* ngx_http_tokengate_cache.c: the shared cache */
ngx_int_t ngx_http_tokengate_mac(const u_char *key, ngx_str_t *token,
    ngx_uint_t basic, const u_char *fingerprint, u_char *out);
ngx_int_t ngx_http_tokengate_cache_lookup(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, ngx_http_tokengate_loc_conf_t *tlcf);
ngx_int_t ngx_http_tokengate_use_stale(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf);
void ngx_http_tokengate_cache_store(ngx_http_tokengate_loc_conf_t *tlcf,
    u_char *mac, u_char *tmac, tg_identity_t *id);
ngx_int_t ngx_http_tokengate_cache_token_mac(ngx_shm_zone_t *zone,
    ngx_str_t *token, ngx_uint_t basic, u_char *out);
ngx_int_t ngx_http_tokengate_cache_purge_token(ngx_shm_zone_t *zone,
    ngx_str_t *token, ngx_uint_t basic, ngx_log_t *log);
ngx_int_t ngx_http_tokengate_cache_purge_all(ngx_shm_zone_t *zone,
    ngx_log_t *log);
ngx_uint_t ngx_http_tokengate_cache_is_zone(ngx_shm_zone_t *zone);
size_t ngx_http_tokengate_encoded_len(tg_identity_t *id);
u_char *ngx_http_tokengate_encode(u_char *p, tg_identity_t *id);
ngx_int_t ngx_http_tokengate_decode(u_char *copy, size_t len,
    tg_identity_t *id, ngx_pool_t *pool);
time_t ngx_http_tokengate_cache_put(ngx_http_tokengate_loc_conf_t *tlcf,
    u_char *mac, u_char *tmac, tg_identity_t *id, time_t first_seen,
    time_t cap);
ngx_int_t ngx_http_tokengate_cache_bounds(
    ngx_http_tokengate_loc_conf_t *tlcf, tg_identity_t *id,
    time_t first_seen, time_t now, time_t *expires, time_t *stale_until,
    time_t *keep_until);
void ngx_http_tokengate_cache_remove(ngx_http_tokengate_loc_conf_t *tlcf,
    u_char *mac);
char *ngx_http_tokengate_fingerprint(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *conf);
char *ngx_http_tokengate_cache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* ngx_http_tokengate_backoff.c: the node-wide back-off */
char *ngx_http_tokengate_backoff_conf(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *tlcf);
ngx_int_t ngx_http_tokengate_backoff_check(
    ngx_http_tokengate_loc_conf_t *tlcf, ngx_log_t *log, time_t *wait,
    ngx_uint_t *probe);
time_t ngx_http_tokengate_backoff_record(const u_char *key, const char *url,
    tg_err_t err, tg_response_t *resp, ngx_uint_t probe, ngx_log_t *log);
void ngx_http_tokengate_backoff_extend(const u_char *key, time_t until);
ngx_uint_t ngx_http_tokengate_backoff_active(void);
/* ngx_http_tokengate_redis.c: the shared cache's Redis
 * (tokengate_shared_cache) */
typedef void (*ngx_http_tokengate_shared_get_pt)(void *data, ngx_int_t rc,
    u_char *value, size_t len);

char *ngx_http_tokengate_shared_cache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_tokengate_shared_move(void *lookup,
    ngx_http_tokengate_ctx_t *ctx);
void ngx_http_tokengate_shared_cancel(void *lookup);
ngx_int_t ngx_http_tokengate_shared_delete(ngx_http_tokengate_shared_t *sh,
    u_char *skey, size_t skey_len);
ngx_int_t ngx_http_tokengate_shared_set(ngx_http_tokengate_shared_t *sh,
    u_char *key, size_t key_len, u_char *value, size_t len,
    ngx_msec_t px);
void *ngx_http_tokengate_shared_get(ngx_http_tokengate_shared_t *sh,
    u_char *key, size_t key_len, ngx_http_tokengate_shared_get_pt handler,
    void *data);
ngx_int_t ngx_http_tokengate_shared_init_process(ngx_cycle_t *cycle);
void ngx_http_tokengate_shared_exit_process(ngx_cycle_t *cycle);
char *ngx_http_tokengate_shared_merge(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *conf);
char *ngx_http_tokengate_shared_register(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *conf);
void ngx_http_tokengate_shared_purge(ngx_shm_zone_t *zone, ngx_str_t *token,
    ngx_uint_t basic, ngx_log_t *log);
void ngx_http_tokengate_shared_backoff(const u_char *key, time_t until);

/* ngx_http_tokengate_seal.c: the shared cache's keys and sealed entries */
ngx_int_t ngx_http_tokengate_read_secret(ngx_conf_t *cf, ngx_str_t *name,
    const char *what, size_t min, ngx_uint_t root, ngx_str_t *out);
ngx_int_t ngx_http_tokengate_shared_keys(ngx_conf_t *cf,
    ngx_http_tokengate_shared_t *sh, ngx_str_t *key_file);
ngx_int_t ngx_http_tokengate_seal(ngx_http_tokengate_shared_t *sh,
    u_char *skey, size_t skey_len, u_char *plain, size_t plain_len,
    u_char *out);
ngx_int_t ngx_http_tokengate_open(ngx_http_tokengate_shared_t *sh,
    u_char *skey, size_t skey_len, u_char *value, size_t len, u_char *out);
ngx_int_t ngx_http_tokengate_shared_key(ngx_http_tokengate_shared_t *sh,
    ngx_str_t *token, ngx_uint_t basic, const u_char *fingerprint,
    u_char *out, size_t *len);
ngx_int_t ngx_http_tokengate_shared_lookup(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf);
void ngx_http_tokengate_shared_store(ngx_http_tokengate_loc_conf_t *tlcf,
    u_char *skey, size_t skey_len, tg_identity_t *id, time_t first_seen);

/* ngx_http_tokengate_module.c: a lookup in the shared cache ended */
void ngx_http_tokengate_shared_answer(ngx_http_tokengate_ctx_t *ctx,
    ngx_int_t rc, tg_identity_t *id, time_t first_seen, time_t fresh_until);

/* ngx_http_tokengate_status.c: counters */
void ngx_http_tokengate_shared_count(ngx_uint_t what);
ngx_http_tokengate_stats_t *ngx_http_tokengate_get_stats(
    ngx_http_request_t *r);
void ngx_http_tokengate_count(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx);
char *ngx_http_tokengate_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_tokengate_init_struct_zone(ngx_shm_zone_t *shm_zone,
    void *data, size_t size);

/* ngx_http_tokengate_limit.c: tokengate_fail_limit */
ngx_int_t ngx_http_tokengate_limit_check(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, ngx_http_tokengate_loc_conf_t *tlcf);
void ngx_http_tokengate_limit_refused(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, ngx_http_tokengate_loc_conf_t *tlcf);
ngx_uint_t ngx_http_tokengate_limit_entries(void);
char *ngx_http_tokengate_fail_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tokengate_fail_limit_merge(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *prev, ngx_http_tokengate_loc_conf_t *conf);

#pragma GCC visibility pop


extern ngx_module_t  ngx_http_tokengate_module;
extern ngx_module_t  ngx_http_tokengate_embed_module;


#endif /* _NGX_HTTP_TOKENGATE_H_INCLUDED_ */
