
/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_module: access-phase authentication of bearer tokens
 * against a FICO Xpress Insight or Looker server, without blocking the
 * worker.
 *
 * The request is built and the answer parsed by libtokengate's pure code
 * (tg_build_validate, tg_parse_validate); the HTTP exchange runs on one
 * curl multi handle per worker, driven by nginx's event loop through the
 * multi-socket API:
 *
 *   CURLMOPT_SOCKETFUNCTION  -> an ngx_connection_t wrapping curl's fd, whose
 *                               read/write events call curl back;
 *   CURLMOPT_TIMERFUNCTION   -> one nginx timer (a zero delay is a zero
 *                               timer: libcurl is never called from inside
 *                               its own callback);
 *   CURLMSG_DONE             -> the verdict is stored in the request ctx and
 *                               a posted event resumes the phase handlers.
 *
 * While a validation is in flight the request is "blocked" (as for thread
 * tasks and AIO), so nginx keeps it alive; the request cleanup removes the
 * transfer when the request is terminated early.
 *
 * Answers are cached in an optional shared-memory zone keyed by an
 * HMAC-SHA-256 of the token and of the location's fingerprint (everything
 * the answer depends on, hashed once at configuration time), and requests
 * of one worker carrying the same token to the same settings wait on one
 * in-flight validation (coalescing).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <tokengate.h>
#include <tg_curl.h>

#include "ngx_http_tokengate.h"


/* Kept-alive connections to the auth server per worker. */
#define NGX_HTTP_TOKENGATE_MAXCONNECTS     64

/* Idle curl easy handles a worker keeps for the next transfers, and the
 * largest response buffer one keeps. */
#define NGX_HTTP_TOKENGATE_HANDLES_MAX     64
#define NGX_HTTP_TOKENGATE_BODY_KEEP       16384

/* How many idle handles are looked at for one whose options match. */
#define NGX_HTTP_TOKENGATE_HANDLES_SCAN    8

/* Keyed HMAC templates a worker keeps (one per cache zone key, plus the
 * coalescing key). */
#define NGX_HTTP_TOKENGATE_HMACS_MAX  16

/* SHA-256 sizes: the HMAC keys, the token MACs and the fingerprints of
 * the locations' settings. */
#define NGX_HTTP_TOKENGATE_MAC_LEN         32

/* The first field of a fingerprint: changing what goes into one changes
 * this, so that no entry made under the old rules is found again. */
#define NGX_HTTP_TOKENGATE_FP_VERSION      "tokengate cache key 2"

/* The largest identity kept in the cache; bigger ones are not cached. */
#define NGX_HTTP_TOKENGATE_ENTRY_MAX       8192

/* Bounded work per request: entries expired on an insert, entries evicted
 * (least recently used first) to make room for one. */
#define NGX_HTTP_TOKENGATE_EXPIRE_MAX      2
#define NGX_HTTP_TOKENGATE_EVICT_MAX       32

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
#define NGX_HTTP_TOKENGATE_OUTCOMES        6


/* The shared cache: one per zone, in shared memory. */
typedef struct {
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
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
 */
typedef struct {
    ngx_rbtree_node_t          node;
    ngx_queue_t                queue;
    u_char                     mac[NGX_HTTP_TOKENGATE_MAC_LEN];
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
    u_char                     data[1];
} ngx_http_tokengate_node_t;


/* Counters shared by the workers, for tokengate_status. */
typedef struct {
    ngx_atomic_t               results[NGX_HTTP_TOKENGATE_OUTCOMES];
    ngx_atomic_t               cache[4];
    ngx_atomic_t               calls;
    ngx_atomic_t               embed[NGX_HTTP_TOKENGATE_EMBED_N];
    ngx_atomic_t               handles_created;
    ngx_atomic_t               handles_reused;
} ngx_http_tokengate_stats_t;


/* Per configuration (not static: a failed reload must not change what the
 * running cycle's workers use). */
typedef struct {
    ngx_int_t                  remote_user_index;
    ngx_shm_zone_t            *stats_zone;
} ngx_http_tokengate_main_conf_t;


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

    ngx_str_t                  config_file;
    ngx_str_t                  url;
    ngx_uint_t                 api;

    ngx_array_t               *groups;
    ngx_uint_t                 groups_mode;

    ngx_array_t               *require;        /* ngx_http_complex_value_t */
    ngx_int_t                  require_error;

    ngx_msec_t                 timeout;
    ngx_msec_t                 connect_timeout;

    tg_config_t               *tg;
    tg_insight_validate_t      which;

    /* what a validation's answer depends on, see
     * ngx_http_tokengate_fingerprint, and the longest life of a token
     * (token_lifetime_max, resolved) */
    u_char                     fingerprint[NGX_HTTP_TOKENGATE_MAC_LEN];
    time_t                     lifetime_max;
};


typedef struct ngx_http_tokengate_ctx_s  ngx_http_tokengate_ctx_t;


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

    /* the running transfer */
    ngx_http_tokengate_handle_t  *handle;

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
    unsigned                   basic:1;
    unsigned                   exchanging:1;

    /* the outcome is FORBIDDEN because tokengate_require failed: the
     * location's tokengate_require status answers */
    unsigned                   require_failed:1;

    /* the lookup found an expired entry that may answer an outage
     * (tokengate_on_unavailable stale); use_stale reads it again */
    unsigned                   stale:1;

    time_t                     sent_at;
};


static ngx_int_t ngx_http_tokengate_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_tokengate_get_token(ngx_http_request_t *r,
    ngx_http_tokengate_loc_conf_t *tlcf, ngx_str_t *token);
static ngx_int_t ngx_http_tokengate_get_basic(ngx_http_request_t *r,
    ngx_table_elt_t *h, ngx_str_t *creds);
static ngx_int_t ngx_http_tokengate_validate(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, ngx_http_tokengate_loc_conf_t *tlcf,
    ngx_str_t *token);
static EVP_MAC_CTX *ngx_http_tokengate_hmac_get(const u_char *key,
    ngx_uint_t *once);
static ngx_int_t ngx_http_tokengate_hmac_reinit_ok(void);
static char *ngx_http_tokengate_fp(ngx_http_tokengate_ctx_t *ctx);
static ngx_int_t ngx_http_tokengate_mac(const u_char *key,
    ngx_str_t *token, ngx_uint_t basic, const u_char *fingerprint,
    u_char *out);
static void ngx_http_tokengate_be64(u_char *p, uint64_t v);
static ngx_int_t ngx_http_tokengate_join(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx);
static void ngx_http_tokengate_handover(ngx_http_tokengate_ctx_t *ctx);
static ngx_int_t ngx_http_tokengate_cache_lookup(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, ngx_http_tokengate_loc_conf_t *tlcf);
static void ngx_http_tokengate_cache_store(
    ngx_http_tokengate_loc_conf_t *tlcf, u_char *mac, tg_identity_t *id);
static u_char *ngx_http_tokengate_cache_copy(ngx_http_tokengate_node_t *tn,
    ngx_pool_t *pool, tg_identity_t *id);
static ngx_int_t ngx_http_tokengate_decode(u_char *copy, size_t len,
    tg_identity_t *id, ngx_pool_t *pool);
static ngx_int_t ngx_http_tokengate_use_stale(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf);
static ngx_http_tokengate_node_t *ngx_http_tokengate_cache_find(
    ngx_http_tokengate_cache_t *cache, u_char *mac, time_t now);
static void ngx_http_tokengate_cache_remove(
    ngx_http_tokengate_loc_conf_t *tlcf, u_char *mac);
static void ngx_http_tokengate_cache_drop(ngx_http_tokengate_cache_t *cache,
    ngx_http_tokengate_node_t *tn);
static ngx_uint_t ngx_http_tokengate_cache_evict(
    ngx_http_tokengate_cache_t *cache, ngx_uint_t force);
static void ngx_http_tokengate_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_tokengate_start(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, ngx_http_tokengate_loc_conf_t *tlcf,
    ngx_str_t *token);
static ngx_int_t ngx_http_tokengate_send(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf, tg_request_t *req, ngx_log_t *log);
static ngx_http_tokengate_handle_t *ngx_http_tokengate_handle_get(
    ngx_http_tokengate_loc_conf_t *tlcf, ngx_uint_t http,
    ngx_http_tokengate_stats_t *st, ngx_log_t *log);
static ngx_int_t ngx_http_tokengate_handle_setup(
    ngx_http_tokengate_handle_t *h);
static void ngx_http_tokengate_handle_put(ngx_http_tokengate_handle_t *h,
    ngx_uint_t reusable);
static void ngx_http_tokengate_handle_free(ngx_http_tokengate_handle_t *h);
static void ngx_http_tokengate_release(ngx_http_tokengate_ctx_t *ctx);
static void ngx_http_tokengate_abort(ngx_http_tokengate_ctx_t *ctx);
static void ngx_http_tokengate_complete(ngx_http_tokengate_ctx_t *ctx,
    CURLcode rc);
static void ngx_http_tokengate_validated(void *data, tg_err_t err,
    tg_response_t *resp, time_t sent_at, const char *reason);
static tg_err_t ngx_http_tokengate_exchanged(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf, tg_response_t *resp,
    tg_diag_t *diag);
static void ngx_http_tokengate_decide(ngx_http_tokengate_ctx_t *ctx,
    tg_err_t err, tg_identity_t *id, tg_diag_t *diag, long retry_after);
static void ngx_http_tokengate_verdict(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf, tg_identity_t *id);
static ngx_int_t ngx_http_tokengate_groups_ok(
    ngx_http_tokengate_loc_conf_t *tlcf, tg_identity_t *id);
static ngx_int_t ngx_http_tokengate_copy(ngx_http_request_t *r, ngx_str_t *dst,
    const char *src);
static ngx_int_t ngx_http_tokengate_keep_identity(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, tg_identity_t *id);
static void ngx_http_tokengate_wake_handler(ngx_event_t *ev);
static void ngx_http_tokengate_watch_client(ngx_http_request_t *r);
static void ngx_http_tokengate_cleanup(void *data);
static ngx_int_t ngx_http_tokengate_answer(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx);
static ngx_int_t ngx_http_tokengate_require_ok(ngx_http_request_t *r,
    ngx_http_tokengate_loc_conf_t *tlcf);
static void ngx_http_tokengate_outcome(ngx_http_tokengate_ctx_t *ctx,
    ngx_uint_t outcome);
static ngx_int_t ngx_http_tokengate_www_authenticate(ngx_http_request_t *r,
    ngx_str_t *realm, const char *error);
static ngx_int_t ngx_http_tokengate_login(ngx_http_request_t *r,
    ngx_str_t *url);

static curl_socket_t ngx_http_tokengate_open_socket(void *clientp,
    curlsocktype purpose, struct curl_sockaddr *addr);
static int ngx_http_tokengate_close_socket(void *clientp, curl_socket_t s);
static ngx_http_tokengate_sock_t *ngx_http_tokengate_sock_find(
    curl_socket_t s);
static ngx_connection_t *ngx_http_tokengate_sock_add(ngx_socket_t s,
    ngx_uint_t own);
static ngx_int_t ngx_http_tokengate_sock_set(ngx_socket_t s,
    ngx_connection_t *c, ngx_uint_t own);
static void ngx_http_tokengate_sock_forget(ngx_http_tokengate_sock_t *sk);
static int ngx_http_tokengate_socket_cb(CURL *easy, curl_socket_t s,
    int what, void *userp, void *socketp);
static int ngx_http_tokengate_timer_cb(CURLM *multi, long timeout_ms,
    void *userp);
static void ngx_http_tokengate_event_handler(ngx_event_t *ev);
static void ngx_http_tokengate_timer_handler(ngx_event_t *ev);
static void ngx_http_tokengate_drain(void);
static void ngx_http_tokengate_active(ngx_int_t delta);

static void ngx_http_tokengate_count(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx);
static ngx_int_t ngx_http_tokengate_status_handler(ngx_http_request_t *r);

static ngx_int_t ngx_http_tokengate_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_http_tokengate_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_tokengate_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_tokengate_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_tokengate_init_process(ngx_cycle_t *cycle);
static void ngx_http_tokengate_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_tokengate_create_main_conf(ngx_conf_t *cf);
static ngx_http_tokengate_stats_t *ngx_http_tokengate_get_stats(
    ngx_http_request_t *r);
static void *ngx_http_tokengate_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_tokengate_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_tokengate_build_config(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *conf);
static char *ngx_http_tokengate_fingerprint(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *conf);
static ngx_int_t ngx_http_tokengate_fingerprint_add(EVP_MD_CTX *md,
    const void *data, size_t len);
static void ngx_http_tokengate_config_cleanup(void *data);
static char *ngx_http_tokengate_config_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_tokengate_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static char *ngx_http_tokengate_cache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_tokengate_enum_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_tokengate_init_stats(ngx_shm_zone_t *shm_zone,
    void *data);
static char *ngx_http_tokengate_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_tokengate_require_group(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_tokengate_require(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_tokengate_positive_msec(ngx_conf_t *cf, void *post,
    void *data);


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

    { ngx_string("tokengate_on_unavailable"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tokengate_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tokengate_loc_conf_t, on_unavailable),
      &ngx_http_tokengate_on_unavailable },

    { ngx_string("tokengate_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_tokengate_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
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
    ngx_http_tokengate_exit_process,       /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_tokengate_vars[] = {

    { ngx_string("tokengate_user"), NULL, ngx_http_tokengate_variable,
      offsetof(ngx_http_tokengate_ctx_t, user), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tokengate_user_id"), NULL, ngx_http_tokengate_variable,
      offsetof(ngx_http_tokengate_ctx_t, user_id),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tokengate_email"), NULL, ngx_http_tokengate_variable,
      offsetof(ngx_http_tokengate_ctx_t, email), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tokengate_groups"), NULL, ngx_http_tokengate_variable,
      offsetof(ngx_http_tokengate_ctx_t, groups), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tokengate_result"), NULL, ngx_http_tokengate_variable,
      offsetof(ngx_http_tokengate_ctx_t, result), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tokengate_cache_status"), NULL, ngx_http_tokengate_variable,
      offsetof(ngx_http_tokengate_ctx_t, cache_status),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/* Per worker: the multi handle, its timer, and in-flight transfers. */
static CURLM             *ngx_http_tokengate_multi;
static ngx_event_t        ngx_http_tokengate_timer;
static ngx_connection_t   ngx_http_tokengate_timer_conn;
static ngx_uint_t         ngx_http_tokengate_in_flight;
static ngx_uint_t         ngx_http_tokengate_exiting;
static ngx_uint_t         ngx_http_tokengate_curl_ready;

/* The fds libcurl uses and their connections, by fd: nginx owns the
 * lifetime of the sockets (ngx_http_tokengate_open_socket). */
static ngx_http_tokengate_sock_t  *ngx_http_tokengate_socks;
static ngx_uint_t                  ngx_http_tokengate_nsocks;

typedef struct {
    u_char                     key[NGX_HTTP_TOKENGATE_MAC_LEN];
    EVP_MAC_CTX               *ctx;
} ngx_http_tokengate_hmac_t;

static EVP_MAC            *ngx_http_tokengate_hmac_alg;
/* does EVP_MAC_init(ctx, NULL, 0, NULL) restart an HMAC with its key?
 * -1 not known yet, 1 yes, 0 no (see ngx_http_tokengate_hmac_reinit_ok) */
static ngx_int_t          ngx_http_tokengate_hmac_reinit = -1;
static ngx_http_tokengate_hmac_t
                           ngx_http_tokengate_hmacs[NGX_HTTP_TOKENGATE_HMACS_MAX];
static ngx_uint_t         ngx_http_tokengate_nhmacs;
static ngx_queue_t        ngx_http_tokengate_leaders;
static ngx_queue_t        ngx_http_tokengate_handles;
static ngx_uint_t         ngx_http_tokengate_nhandles;
static volatile ngx_cycle_t  *ngx_http_tokengate_handles_cycle;
static u_char             ngx_http_tokengate_ckey[NGX_HTTP_TOKENGATE_MAC_LEN];
static ngx_uint_t         ngx_http_tokengate_ckey_ready;



/* $tokengate_result of each outcome (NGX_HTTP_TOKENGATE_VALID, ...), in
 * the order of the counters in ngx_http_tokengate_stats_t. */
static ngx_str_t  ngx_http_tokengate_results[] = {
    ngx_string("valid"),
    ngx_string("missing"),
    ngx_string("malformed"),
    ngx_string("invalid"),
    ngx_string("forbidden"),
    ngx_string("unavailable")
};

static char  *ngx_http_tokengate_cache_names[] = {
    "hit", "miss", "coalesced", "stale"
};

/* The order of NGX_HTTP_TOKENGATE_EMBED_*. */
static char  *ngx_http_tokengate_embed_names[] = {
    "local", "server", "refused", "failed"
};


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

    rc = ngx_http_tokengate_get_token(r, tlcf, &token);

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

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        ngx_explicit_memzero(token.data, token.len);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_tokengate_cleanup;
    cln->data = ctx;

    ctx->token = token;

    rc = ngx_http_tokengate_validate(r, ctx, tlcf, &token);

    /* A request that may still log (denied, waiting, or with
     * tokengate_require to check) needs the fingerprint before the token
     * goes; an allowed cache hit never computes it. */
    if (rc != NGX_OK || !ctx->allowed || tlcf->require != NULL) {
        (void) ngx_http_tokengate_fp(ctx);
    }

    ngx_str_null(&ctx->token);
    ngx_explicit_memzero(token.data, token.len);

    if (rc == NGX_OK) {
        /* decided from the cache */
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


/* Decide from the cache (NGX_OK), or wait (NGX_AGAIN) on an identical
 * in-flight validation of this worker or on a new one. */
static ngx_int_t
ngx_http_tokengate_validate(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, ngx_http_tokengate_loc_conf_t *tlcf,
    ngx_str_t *token)
{
    ngx_http_tokengate_cache_t  *cache;

    ctx->tg = tlcf->tg;
    ctx->cache = tlcf->cache;

    ctx->wake.handler = ngx_http_tokengate_wake_handler;
    ctx->wake.data = ctx;
    ctx->wake.log = r->connection->log;

    if (tlcf->cache != NULL) {
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

    if (ngx_http_tokengate_start(r, ctx, tlcf, token) != NGX_OK) {
        return NGX_ERROR;
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


/*
 * The key of a token's answer, in the cache and for coalescing: an
 * HMAC-SHA-256 of the length-prefixed full token, then whether it came as
 * Basic credentials, then the location's fingerprint (everything else the
 * answer depends on, see ngx_http_tokengate_fingerprint).  Two locations
 * share an answer only when they would send the same validation, the same
 * way, and trust it the same way.  The fingerprint was hashed once at
 * configuration time: per request this costs the token's bytes plus 41.
 */
static ngx_int_t
ngx_http_tokengate_mac(const u_char *key, ngx_str_t *token, ngx_uint_t basic,
    const u_char *fingerprint, u_char *out)
{
    u_char        head[8], tail[1 + NGX_HTTP_TOKENGATE_MAC_LEN];
    size_t        mac_len;
    ngx_int_t     rc;
    ngx_uint_t    once;
    EVP_MAC_CTX  *hmac;

    if (token->len > TG_TOKEN_MAX) {
        return NGX_ERROR;
    }

    ngx_http_tokengate_be64(head, token->len);

    tail[0] = (u_char) (basic != 0);
    ngx_memcpy(tail + 1, fingerprint, NGX_HTTP_TOKENGATE_MAC_LEN);

    mac_len = 0;
    rc = NGX_ERROR;

    hmac = ngx_http_tokengate_hmac_get(key, &once);

    if (hmac != NULL
        && EVP_MAC_update(hmac, head, sizeof(head)) == 1
        && EVP_MAC_update(hmac, token->data, token->len) == 1
        && EVP_MAC_update(hmac, tail, sizeof(tail)) == 1
        && EVP_MAC_final(hmac, out, &mac_len, NGX_HTTP_TOKENGATE_MAC_LEN)
           == 1
        && mac_len == NGX_HTTP_TOKENGATE_MAC_LEN)
    {
        rc = NGX_OK;
    }

    if (once) {
        EVP_MAC_CTX_free(hmac);
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
 * A keyed HMAC-SHA-256 context, ready for one MAC.  OpenSSL 3's one-shot
 * HMAC() fetches the MAC and the digest on every call (a provider lookup
 * under a lock), and duplicating a keyed context allocates and frees three
 * digest contexts; a worker instead keeps one keyed context per key (the
 * cache zones' keys and the coalescing key: a handful) and re-initialises
 * it with the same key, which copies the keyed digest states it already
 * holds.  The worker uses it to completion before anything else runs.
 * Where re-initialising does not restart the MAC (an HMAC provider older
 * than OpenSSL 3.0.3, openssl/openssl#17811: a successful no-op, so every
 * MAC after the first would depend on the ones before it and no cache
 * entry would ever be found again), the kept context stays a template that
 * is duplicated for each MAC, as before.  *once tells the caller to free
 * the context after its one use.
 */
static EVP_MAC_CTX *
ngx_http_tokengate_hmac_get(const u_char *key, ngx_uint_t *once)
{
    ngx_uint_t    i;
    EVP_MAC_CTX  *ctx;
    OSSL_PARAM    params[2];

    *once = 0;

    for (i = 0; i < ngx_http_tokengate_nhmacs; i++) {
        if (ngx_memcmp(ngx_http_tokengate_hmacs[i].key, key,
                       NGX_HTTP_TOKENGATE_MAC_LEN) == 0)
        {
            ctx = ngx_http_tokengate_hmacs[i].ctx;

            if (!ngx_http_tokengate_hmac_reinit) {
                *once = 1;
                return EVP_MAC_CTX_dup(ctx);
            }

            /* a NULL key: the same key again */
            return EVP_MAC_init(ctx, NULL, 0, NULL) == 1 ? ctx : NULL;
        }
    }

    if (ngx_http_tokengate_hmac_alg == NULL) {
        ngx_http_tokengate_hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
        if (ngx_http_tokengate_hmac_alg == NULL) {
            return NULL;
        }
    }

    if (ngx_http_tokengate_hmac_reinit == -1) {
        ngx_http_tokengate_hmac_reinit = ngx_http_tokengate_hmac_reinit_ok();

        if (!ngx_http_tokengate_hmac_reinit) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "tokengate: this OpenSSL's HMAC cannot be "
                          "re-initialised with its key (OpenSSL < 3.0.3?), "
                          "each MAC uses a copy of a keyed context");
        }
    }

    ctx = EVP_MAC_CTX_new(ngx_http_tokengate_hmac_alg);
    if (ctx == NULL) {
        return NULL;
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) "SHA256",
                                                 0);
    params[1] = OSSL_PARAM_construct_end();

    if (EVP_MAC_init(ctx, key, NGX_HTTP_TOKENGATE_MAC_LEN, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }

    /* Keep it when there is room; else use it once. */
    if (ngx_http_tokengate_nhmacs < NGX_HTTP_TOKENGATE_HMACS_MAX) {
        i = ngx_http_tokengate_nhmacs++;
        ngx_memcpy(ngx_http_tokengate_hmacs[i].key, key,
                   NGX_HTTP_TOKENGATE_MAC_LEN);
        ngx_http_tokengate_hmacs[i].ctx = ctx;

        if (!ngx_http_tokengate_hmac_reinit) {
            /* the template stays unused */
            *once = 1;
            return EVP_MAC_CTX_dup(ctx);
        }

        return ctx;
    }

    *once = 1;

    return ctx;
}


/*
 * Whether EVP_MAC_init() with a NULL key restarts an HMAC with the key it
 * has (providers from OpenSSL 3.0.3 on; a FIPS provider may be older than
 * the libcrypto that loads it, so the version number does not tell):
 * checked once per process on the provider actually fetched, the MAC of
 * the same input after a re-initialisation must equal the first one.
 */
static ngx_int_t
ngx_http_tokengate_hmac_reinit_ok(void)
{
    size_t         n1, n2;
    ngx_int_t      ok;
    EVP_MAC_CTX   *ctx;
    OSSL_PARAM     params[2];
    u_char         key[NGX_HTTP_TOKENGATE_MAC_LEN];
    u_char         mac1[NGX_HTTP_TOKENGATE_MAC_LEN];
    u_char         mac2[NGX_HTTP_TOKENGATE_MAC_LEN];
    static u_char  text[] = "tokengate HMAC re-initialisation check";

    ctx = EVP_MAC_CTX_new(ngx_http_tokengate_hmac_alg);
    if (ctx == NULL) {
        return 0;
    }

    ngx_memset(key, 0x5c, sizeof(key));

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) "SHA256",
                                                 0);
    params[1] = OSSL_PARAM_construct_end();

    n1 = 0;
    n2 = 0;

    ok = EVP_MAC_init(ctx, key, sizeof(key), params) == 1
         && EVP_MAC_update(ctx, text, sizeof(text) - 1) == 1
         && EVP_MAC_final(ctx, mac1, &n1, sizeof(mac1)) == 1
         && EVP_MAC_init(ctx, NULL, 0, NULL) == 1
         && EVP_MAC_update(ctx, text, sizeof(text) - 1) == 1
         && EVP_MAC_final(ctx, mac2, &n2, sizeof(mac2)) == 1
         && n1 == sizeof(mac1) && n2 == n1
         && ngx_memcmp(mac1, mac2, n1) == 0;

    EVP_MAC_CTX_free(ctx);

    return ok;
}


/* The token's fingerprint (the first bytes of its SHA-256) for log lines.
 * Computing it costs a digest, so only requests that log pay for it. */
static char *
ngx_http_tokengate_fp(ngx_http_tokengate_ctx_t *ctx)
{
    if (ctx->fp[0] == '\0') {
        if (ctx->token.data != NULL) {
            tg_fingerprint((char *) ctx->token.data, ctx->token.len, ctx->fp);

        } else {
            /* not reached: every request that may log computes it while
             * the token is there */
            ngx_memcpy(ctx->fp, "????????", TG_FINGERPRINT_SIZE);
        }
    }

    return ctx->fp;
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
    w->handle->ctx = w;
    w->exchanging = ctx->exchanging;
    w->sent_at = ctx->sent_at;

    ctx->handle = NULL;

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


/*
 * The token, NUL-terminated in r->pool (the caller wipes it): NGX_OK,
 * NGX_HTTP_UNAUTHORIZED when there are no credentials, NGX_HTTP_BAD_REQUEST
 * when they are malformed.
 */
static ngx_int_t
ngx_http_tokengate_get_token(ngx_http_request_t *r,
    ngx_http_tokengate_loc_conf_t *tlcf, ngx_str_t *token)
{
    u_char           *p, *last;
    ngx_str_t         value;
    tg_diag_t         diag;
    ngx_table_elt_t  *h;

    if (tlcf->token != NULL) {
        if (ngx_http_complex_value(r, tlcf->token, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        if (value.len == 0) {
            return NGX_HTTP_UNAUTHORIZED;
        }

    } else {
        h = r->headers_in.authorization;

        if (h == NULL) {
            return NGX_HTTP_UNAUTHORIZED;
        }

        p = h->value.data;
        last = p + h->value.len;

        if (tlcf->basic
            && h->value.len >= sizeof("Basic ") - 1
            && ngx_strncasecmp(p, (u_char *) "Basic ", sizeof("Basic ") - 1)
               == 0)
        {
            return ngx_http_tokengate_get_basic(r, h, token);
        }

        if (h->value.len < sizeof("Bearer ") - 1
            || ngx_strncasecmp(p, (u_char *) "Bearer ", sizeof("Bearer ") - 1)
               != 0)
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "tokengate: the Authorization header is not "
                          "\"Bearer\"");
            return NGX_HTTP_BAD_REQUEST;
        }

        p += sizeof("Bearer ") - 1;

        while (p < last && *p == ' ') {
            p++;
        }

        value.data = p;
        value.len = last - p;

        if (value.len == 0) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "tokengate: empty bearer token");
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    if (value.len > TG_TOKEN_MAX) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "tokengate: bearer token longer than %d bytes",
                      TG_TOKEN_MAX);
        return NGX_HTTP_BAD_REQUEST;
    }

    token->data = ngx_pnalloc(r->pool, value.len + 1);
    if (token->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(token->data, value.data, value.len);
    token->data[value.len] = '\0';
    token->len = value.len;

    /* without a diagnostic first (clearing one costs more than the check),
     * then again with one to say why */

    if (tg_token_check((char *) token->data, NULL) != TG_OK) {
        tg_diag_clear(&diag);
        (void) tg_token_check((char *) token->data, &diag);
        ngx_explicit_memzero(token->data, token->len);
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "tokengate: malformed bearer token: %s", diag.message);
        return NGX_HTTP_BAD_REQUEST;
    }

    return NGX_OK;
}


/*
 * tokengate_basic: "Basic base64(client_id:secret)" decoded into creds
 * ("client_id:secret", NUL-terminated, the caller wipes it), or
 * NGX_HTTP_BAD_REQUEST.  NGX_DONE tells the caller these are credentials to
 * exchange for a token, not a token.
 */
static ngx_int_t
ngx_http_tokengate_get_basic(ngx_http_request_t *r, ngx_table_elt_t *h,
    ngx_str_t *creds)
{
    u_char     *p, *last, *colon;
    ngx_str_t   enc;
    tg_diag_t   diag;

    p = h->value.data + sizeof("Basic ") - 1;
    last = h->value.data + h->value.len;

    while (p < last && *p == ' ') {
        p++;
    }

    enc.data = p;
    enc.len = last - p;

    if (enc.len == 0 || enc.len > 4 * ((2 * TG_SECRET_MAX + 3) / 3)) {
        return NGX_HTTP_BAD_REQUEST;
    }

    creds->data = ngx_pnalloc(r->pool, ngx_base64_decoded_length(enc.len) + 1);
    if (creds->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64(creds, &enc) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "tokengate: malformed Basic credentials");
        return NGX_HTTP_BAD_REQUEST;
    }

    creds->data[creds->len] = '\0';

    colon = ngx_strlchr(creds->data, creds->data + creds->len, ':');

    if (colon == NULL || ngx_strlen(creds->data) != creds->len) {
        ngx_explicit_memzero(creds->data, creds->len);
        return NGX_HTTP_BAD_REQUEST;
    }

    /* check both halves in place */

    *colon = '\0';

    tg_diag_clear(&diag);

    if (tg_credential_check((char *) creds->data, "client id", &diag)
        != TG_OK
        || tg_credential_check((char *) colon + 1, "client secret", &diag)
           != TG_OK)
    {
        ngx_explicit_memzero(creds->data, creds->len);
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "tokengate: malformed Basic credentials: %s",
                      diag.message);
        return NGX_HTTP_BAD_REQUEST;
    }

    *colon = ':';

    return NGX_DONE;
}


static ngx_int_t
ngx_http_tokengate_start(ngx_http_request_t *r, ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf, ngx_str_t *token)
{
    u_char                      *colon;
    tg_err_t                     rc;
    tg_diag_t                    diag;
    tg_request_t                 req;
    ngx_http_tokengate_stats_t  *st;

    if (ngx_http_tokengate_multi == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tokengate: no curl multi handle in this process");
        return NGX_ERROR;
    }

    tg_diag_clear(&diag);
    ngx_memzero(&req, sizeof(tg_request_t));

    if (ctx->basic) {
        /* "client_id:secret": exchange for a token first */

        colon = ngx_strlchr(token->data, token->data + token->len, ':');
        if (colon == NULL) {
            return NGX_ERROR;
        }

        *colon = '\0';

        rc = tg_build_token(tlcf->tg, (char *) token->data,
                            (char *) colon + 1, &req, &diag);

        *colon = ':';

        if (rc != TG_OK) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "tokengate: credentials %s: %s", ctx->fp,
                          diag.message);
            tg_request_clear(&req);
            return NGX_ERROR;
        }

        ctx->exchanging = 1;

    } else if (tg_build_validate(tlcf->tg, (char *) token->data, tlcf->which,
                                 &req, &diag)
               != TG_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tokengate: token %s: %s", ctx->fp, diag.message);
        tg_request_clear(&req);
        return NGX_ERROR;
    }

    if (ngx_http_tokengate_send(ctx, tlcf, &req, r->connection->log)
        != NGX_OK)
    {
        ctx->exchanging = 0;
        return NGX_ERROR;
    }

    r->main->blocked++;
    ctx->blocked = 1;
    ngx_http_tokengate_watch_client(r);

    ngx_http_tokengate_active(1);

    st = ngx_http_tokengate_get_stats(r);

    if (st != NULL) {
        (void) ngx_atomic_fetch_add(&st->calls, 1);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "tokengate: validating token %s", ctx->fp);

    return NGX_OK;
}


/*
 * Send req (taken over, wiped when the transfer ends) on a handle of the
 * worker's free list, or a new one; NGX_OK once it is in the multi.
 */
static ngx_int_t
ngx_http_tokengate_send(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf, tg_request_t *req, ngx_log_t *log)
{
    CURLMcode                     mrc;
    tg_diag_t                     diag;
    ngx_uint_t                    http;
    ngx_http_tokengate_handle_t  *h;

    http = (req->url != NULL
            && ngx_strncasecmp((u_char *) req->url, (u_char *) "http://", 7)
               == 0);

    h = ngx_http_tokengate_handle_get(tlcf, http,
                                      ngx_http_tokengate_get_stats(
                                          ctx->request),
                                      log);
    if (h == NULL) {
        tg_request_clear(req);
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tokengate: cannot set up the transfer");
        return NGX_ERROR;
    }

    h->req = *req;
    ngx_memzero(req, sizeof(tg_request_t));

    h->ctx = ctx;
    ctx->handle = h;

    tg_diag_clear(&diag);

    if (tg__curl_request(&h->cu, &h->req, &diag) != TG_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tokengate: cannot set up the transfer");
        ctx->handle = NULL;
        ngx_http_tokengate_handle_put(h, 0);
        return NGX_ERROR;
    }

    mrc = curl_multi_add_handle(ngx_http_tokengate_multi, h->cu.easy);
    if (mrc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tokengate: curl_multi_add_handle() failed: %s",
                      curl_multi_strerror(mrc));
        ctx->handle = NULL;
        ngx_http_tokengate_handle_put(h, 0);
        return NGX_ERROR;
    }

    ctx->sent_at = ngx_time();
    ctx->done = 0;

    return NGX_OK;
}


/* An idle handle whose constant options fit this location, else one set
 * up again (curl_easy_reset), else a new one. */
static ngx_http_tokengate_handle_t *
ngx_http_tokengate_handle_get(ngx_http_tokengate_loc_conf_t *tlcf,
    ngx_uint_t http, ngx_http_tokengate_stats_t *st, ngx_log_t *log)
{
    long                          timeout, connect_timeout;
    ngx_uint_t                    i;
    ngx_queue_t                  *q;
    ngx_http_tokengate_handle_t  *h;

    timeout = tlcf->timeout != NGX_CONF_UNSET_MSEC
              ? (long) tlcf->timeout : tlcf->tg->timeout_ms;
    connect_timeout = tlcf->connect_timeout != NGX_CONF_UNSET_MSEC
                      ? (long) tlcf->connect_timeout
                      : tlcf->tg->connect_timeout_ms;

    h = NULL;

    if (ngx_http_tokengate_handles_cycle != ngx_cycle) {
        /* a new configuration (a reload without a master process): the
         * kept handles' options may belong to configurations now freed */

        while (!ngx_queue_empty(&ngx_http_tokengate_handles)) {
            q = ngx_queue_head(&ngx_http_tokengate_handles);
            ngx_queue_remove(q);
            ngx_http_tokengate_handle_free(
                ngx_queue_data(q, ngx_http_tokengate_handle_t, queue));
        }

        ngx_http_tokengate_nhandles = 0;
        ngx_http_tokengate_handles_cycle = ngx_cycle;
    }

    for (q = ngx_queue_head(&ngx_http_tokengate_handles), i = 0;
         q != ngx_queue_sentinel(&ngx_http_tokengate_handles)
         && i < NGX_HTTP_TOKENGATE_HANDLES_SCAN;
         q = ngx_queue_next(q), i++)
    {
        h = ngx_queue_data(q, ngx_http_tokengate_handle_t, queue);

        if (h->cu.cfg == tlcf->tg && h->cu.timeout_ms == timeout
            && h->cu.connect_timeout_ms == connect_timeout
            && h->cu.http == (int) http)
        {
            ngx_queue_remove(q);
            ngx_http_tokengate_nhandles--;

            if (st != NULL) {
                (void) ngx_atomic_fetch_add(&st->handles_reused, 1);
            }

            return h;
        }
    }

    if (!ngx_queue_empty(&ngx_http_tokengate_handles)) {
        /* none fits: the first one gets this location's options */

        q = ngx_queue_head(&ngx_http_tokengate_handles);
        ngx_queue_remove(q);
        ngx_http_tokengate_nhandles--;

        h = ngx_queue_data(q, ngx_http_tokengate_handle_t, queue);

        curl_easy_reset(h->cu.easy);
        h->ready = 0;

        if (st != NULL) {
            (void) ngx_atomic_fetch_add(&st->handles_reused, 1);
        }

    } else {
        h = ngx_calloc(sizeof(ngx_http_tokengate_handle_t), log);
        if (h == NULL) {
            return NULL;
        }

        h->cu.easy = curl_easy_init();
        if (h->cu.easy == NULL) {
            ngx_free(h);
            return NULL;
        }

        if (st != NULL) {
            (void) ngx_atomic_fetch_add(&st->handles_created, 1);
        }
    }

    h->cycle = ngx_cycle;
    h->cu.cfg = tlcf->tg;
    h->cu.timeout_ms = timeout;
    h->cu.connect_timeout_ms = connect_timeout;
    h->cu.http = (int) http;

    if (ngx_http_tokengate_handle_setup(h) != NGX_OK) {
        ngx_http_tokengate_handle_free(h);
        return NULL;
    }

    h->ready = 1;

    return h;
}


/* The options of common/curl.c (the same as the CLI's and PAM's), then
 * what only nginx sets: the handle as curl's private pointer and sockets
 * opened and closed by nginx (see open_socket).  Once per handle, and
 * again after a curl_easy_reset. */
static ngx_int_t
ngx_http_tokengate_handle_setup(ngx_http_tokengate_handle_t *h)
{
    CURL       *e;
    tg_diag_t   diag;

    tg_diag_clear(&diag);

    if (tg__curl_setup(&h->cu, &diag) != TG_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0, "tokengate: %s",
                      diag.message);
        return NGX_ERROR;
    }

    e = h->cu.easy;

    if (curl_easy_setopt(e, CURLOPT_PRIVATE, h) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION,
                            ngx_http_tokengate_open_socket) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, NULL) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION,
                            ngx_http_tokengate_close_socket) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, NULL) != CURLE_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A transfer ended (the handle is out of the multi: curl no longer uses
 * it): wipe the request's secrets and the response, then keep the handle
 * for the next transfer, or free it when the free list is full or it is
 * not known to be in a clean state.
 */
static void
ngx_http_tokengate_handle_put(ngx_http_tokengate_handle_t *h,
    ngx_uint_t reusable)
{
    h->ctx = NULL;

    if (tg__curl_end(&h->cu, NGX_HTTP_TOKENGATE_BODY_KEEP) != 0) {
        reusable = 0;
    }

    tg_request_clear(&h->req);

    if (!reusable || !h->ready || ngx_http_tokengate_exiting
        || h->cycle != ngx_cycle
        || ngx_http_tokengate_nhandles >= NGX_HTTP_TOKENGATE_HANDLES_MAX)
    {
        ngx_http_tokengate_handle_free(h);
        return;
    }

    ngx_queue_insert_head(&ngx_http_tokengate_handles, &h->queue);
    ngx_http_tokengate_nhandles++;
}


static void
ngx_http_tokengate_handle_free(ngx_http_tokengate_handle_t *h)
{
    tg__curl_free(&h->cu);
    tg_request_clear(&h->req);

    ngx_free(h);
}


/* The request's transfer is over or abandoned, and its handle out of the
 * multi: give the handle back. */
static void
ngx_http_tokengate_release(ngx_http_tokengate_ctx_t *ctx)
{
    if (ctx->handle != NULL) {
        ngx_http_tokengate_handle_put(ctx->handle, 1);
        ctx->handle = NULL;
    }
}


/* Stop a running transfer (a request or a call that goes away first) and
 * give its handle back. */
static void
ngx_http_tokengate_abort(ngx_http_tokengate_ctx_t *ctx)
{
    /* Out of the multi first: curl drops its references to the handle (and
     * closes the connection of the unfinished transfer), so the handle can
     * serve another transfer once its state is wiped. */

    if (ngx_http_tokengate_multi != NULL
        && curl_multi_remove_handle(ngx_http_tokengate_multi,
                                    ctx->handle->cu.easy)
           != CURLM_OK)
    {
        /* not known to be detached: never reused */
        ngx_http_tokengate_handle_put(ctx->handle, 0);
        ctx->handle = NULL;
    }

    ngx_http_tokengate_release(ctx);
}


/*
 * The one way the end of a transfer (out of the multi already) reaches its
 * owner, an access check or a call of another part of the module: the
 * answer, or the error through common/curl.c's map, goes to the owner's
 * handler.  Runs from drain once libcurl's callbacks have returned (never
 * from libcurl's stack), so the handler may start transfers (it may start
 * the next one on this ctx: a token exchange's validation) and finalize
 * requests.  Then the handle goes back; a call is freed.
 */
static void
ngx_http_tokengate_complete(ngx_http_tokengate_ctx_t *ctx, CURLcode rc)
{
    tg_err_t                      err;
    tg_diag_t                     diag;
    tg_response_t                 resp, *answer;
    ngx_http_tokengate_handle_t  *h;

    h = ctx->handle;
    answer = NULL;

    tg_diag_clear(&diag);

    if (rc != CURLE_OK) {
        err = tg__curl_failed(&h->cu, rc, &diag);

    } else if (tg__curl_response(&h->cu, &resp, &diag) != TG_OK) {
        err = TG_INTERNAL;

    } else {
        err = TG_OK;
        answer = &resp;
    }

    ctx->done = 1;

    ctx->handler(ctx->data, err, answer, ctx->sent_at, diag.message);

    if (!ctx->done) {
        /* the handler sent the next request on ctx */
        return;
    }

    ngx_http_tokengate_release(ctx);
    ngx_http_tokengate_active(-1);

    if (ctx->call) {
        ngx_free(ctx);
    }
}


/* A validation's transfer ended: decide for the leader and its followers,
 * then post their wake-up events. */
static void
ngx_http_tokengate_validated(void *data, tg_err_t err, tg_response_t *resp,
    time_t sent_at, const char *reason)
{
    ngx_http_tokengate_ctx_t *ctx = data;

    long                            retry_after;
    tg_diag_t                       diag;
    ngx_queue_t                    *q;
    tg_identity_t                  *id;
    ngx_http_tokengate_ctx_t       *w;
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

    /* errors of the server are never cached */

    if (tlcf->cache != NULL && ctx->has_mac) {
        if (err == TG_OK) {
            ngx_http_tokengate_cache_store(tlcf, ctx->mac, id);

        } else if (err == TG_TOKEN_INVALID || err == TG_REJECTED
                   || err == TG_NOT_FOUND)
        {
            ngx_http_tokengate_cache_store(tlcf, ctx->mac, NULL);

        } else if (err == TG_FORBIDDEN) {
            /*
             * the server knows the token and refuses it: not a "rejected"
             * to answer 401 from, but the identity kept for it must not
             * answer again, stale mode included
             */
            ngx_http_tokengate_cache_remove(tlcf, ctx->mac);
        }
    }

    ngx_http_tokengate_decide(ctx, err, id, &diag, retry_after);

    if (ctx->is_leader) {
        ngx_queue_remove(&ctx->inflight);
        ctx->is_leader = 0;

        while (!ngx_queue_empty(&ctx->waiters)) {
            q = ngx_queue_head(&ctx->waiters);
            ngx_queue_remove(q);
            w = ngx_queue_data(q, ngx_http_tokengate_ctx_t, wait_link);
            w->leader = NULL;

            ngx_http_tokengate_decide(w, err, id, &diag, retry_after);

            w->done = 1;
            ngx_post_event(&w->wake, &ngx_posted_events);
        }
    }

    tg_identity_free(id);

    ngx_post_event(&ctx->wake, &ngx_posted_events);
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


/* One request's answer from the validation's outcome (its own location's
 * rules apply). */
static void
ngx_http_tokengate_decide(ngx_http_tokengate_ctx_t *ctx, tg_err_t err,
    tg_identity_t *id, tg_diag_t *diag, long retry_after)
{
    ngx_http_request_t             *r;
    ngx_http_tokengate_loc_conf_t  *tlcf;

    r = ctx->request;
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tokengate_module);

    switch (err) {

    case TG_OK:
        ngx_http_tokengate_verdict(ctx, tlcf, id);
        break;

    case TG_TOKEN_INVALID:
    case TG_REJECTED:
    case TG_NOT_FOUND:
        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_INVALID);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "tokengate: token %s rejected: %s", ctx->fp,
                      diag->message);
        break;

    case TG_FORBIDDEN:
        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_FORBIDDEN);

        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "tokengate: token %s forbidden: %s", ctx->fp,
                      diag->message);
        break;

    default:
        if (ctx->stale
            && tlcf->on_unavailable == NGX_HTTP_TOKENGATE_UNAVAILABLE_STALE
            && ngx_http_tokengate_use_stale(ctx, tlcf) == NGX_OK)
        {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "tokengate: token %s: the auth server failed "
                          "(err=%s): %s; deciding from a stale cache entry",
                          ctx->fp, tg_err_name(err), diag->message);
            break;
        }

        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_UNAVAILABLE);
        ctx->retry_after = retry_after;

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tokengate: token %s: the auth server failed "
                      "(err=%s): %s",
                      ctx->fp, tg_err_name(err), diag->message);
        break;
    }
}


/* The server accepted the token: apply the rules, keep the identity. */
static void
ngx_http_tokengate_verdict(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf, tg_identity_t *id)
{
    tg_diag_t            diag;
    ngx_http_request_t  *r;

    r = ctx->request;

    /* allow only on a parsed identity with a user id */

    if (id == NULL || id->id == NULL || id->id[0] == '\0') {
        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_UNAVAILABLE);

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tokengate: token %s: the answer has no user id",
                      ngx_http_tokengate_fp(ctx));
        return;
    }

    /* as in get_token: the diagnostic only for a denial */

    if (tg_rules_check(tlcf->tg, id, NULL) != TG_OK) {
        tg_diag_clear(&diag);
        (void) tg_rules_check(tlcf->tg, id, &diag);

        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_FORBIDDEN);

        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "tokengate: token %s forbidden: %s",
                      ngx_http_tokengate_fp(ctx), diag.message);
        return;
    }

    if (ngx_http_tokengate_groups_ok(tlcf, id) != NGX_OK) {
        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_FORBIDDEN);

        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "tokengate: token %s forbidden: "
                      "tokengate_require_group not satisfied",
                      ngx_http_tokengate_fp(ctx));
        return;
    }

    if (ngx_http_tokengate_keep_identity(r, ctx, id) != NGX_OK) {
        ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_UNAVAILABLE);
        return;
    }

    ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_VALID);
    ctx->allowed = 1;
}


static ngx_int_t
ngx_http_tokengate_groups_ok(ngx_http_tokengate_loc_conf_t *tlcf,
    tg_identity_t *id)
{
    size_t       j;
    ngx_str_t   *group;
    ngx_uint_t   i, found;

    if (tlcf->groups == NULL || tlcf->groups->nelts == 0) {
        return NGX_OK;
    }

    if (!id->has_profile) {
        return NGX_DECLINED;
    }

    group = tlcf->groups->elts;

    for (i = 0; i < tlcf->groups->nelts; i++) {

        found = 0;

        for (j = 0; j < id->n_groups; j++) {
            if (id->groups[j] != NULL
                && ngx_strlen(id->groups[j]) == group[i].len
                && ngx_strncmp(id->groups[j], group[i].data, group[i].len)
                   == 0)
            {
                found = 1;
                break;
            }
        }

        if (found && tlcf->groups_mode == NGX_HTTP_TOKENGATE_GROUPS_ANY) {
            return NGX_OK;
        }

        if (!found && tlcf->groups_mode == NGX_HTTP_TOKENGATE_GROUPS_ALL) {
            return NGX_DECLINED;
        }
    }

    return tlcf->groups_mode == NGX_HTTP_TOKENGATE_GROUPS_ALL
           ? NGX_OK : NGX_DECLINED;
}


static ngx_int_t
ngx_http_tokengate_copy(ngx_http_request_t *r, ngx_str_t *dst,
    const char *src)
{
    size_t  len;

    len = src != NULL ? ngx_strlen(src) : 0;

    dst->len = len;
    dst->data = ngx_pnalloc(r->pool, len + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src != NULL ? src : "", len);
    dst->data[len] = '\0';

    return NGX_OK;
}


/* $tokengate_user is libtokengate's choice (tg_identity_user), the same
 * for one token at a location with group rules (auth/currentuser) and one
 * without (auth/user). */
static ngx_int_t
ngx_http_tokengate_keep_identity(ngx_http_request_t *r,
    ngx_http_tokengate_ctx_t *ctx, tg_identity_t *id)
{
    u_char                         *p;
    size_t                          i, len;
    ngx_http_tokengate_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tokengate_module);

    if (ngx_http_tokengate_copy(r, &ctx->user,
                                tg_identity_user(tlcf->tg, id))
        != NGX_OK
        || ngx_http_tokengate_copy(r, &ctx->user_id, id->id) != NGX_OK
        || ngx_http_tokengate_copy(r, &ctx->email, id->email) != NGX_OK)
    {
        return NGX_ERROR;
    }

    len = 0;

    for (i = 0; i < id->n_groups; i++) {
        len += ngx_strlen(id->groups[i]) + 1;
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->groups.data = p;

    for (i = 0; i < id->n_groups; i++) {
        if (i != 0) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, id->groups[i], ngx_strlen(id->groups[i]));
    }

    ctx->groups.len = p - ctx->groups.data;

    return NGX_OK;
}


/*
 * A fresh entry decides now (NGX_OK): a rejected token, or the identity,
 * checked against this location's rules.  An expired positive entry that
 * may still answer an outage (before its stale_until, on a location with
 * tokengate_on_unavailable stale) is a miss that marks ctx: use_stale
 * reads the entry again if the server fails.
 */
static ngx_int_t
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

    ngx_http_tokengate_verdict(ctx, tlcf, &id);

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


/* An entry's data back into an identity whose strings point into copy:
 * id, name, email, then id->n_groups groups, each NUL-terminated. */
static ngx_int_t
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

        nul = ngx_strlchr(p, last, '\0');
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
static ngx_int_t
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

    ngx_http_tokengate_verdict(ctx, tlcf, &id);
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
 */
static void
ngx_http_tokengate_cache_store(ngx_http_tokengate_loc_conf_t *tlcf,
    u_char *mac, tg_identity_t *id)
{
    u_char                      *p;
    size_t                       len, size;
    time_t                       now, first_seen, limit, expires, stale_until,
                                 keep_until;
    ngx_uint_t                   i, keep;
    const char                  *f[3];
    ngx_http_tokengate_node_t   *tn;
    ngx_http_tokengate_cache_t  *cache;

    cache = tlcf->cache->data;
    now = ngx_time();
    len = 0;
    keep = 1;

    if (id != NULL) {
        f[0] = id->id;
        f[1] = id->name;
        f[2] = id->email;

        for (i = 0; i < 3; i++) {
            len += (f[i] != NULL ? ngx_strlen(f[i]) : 0) + 1;
        }

        for (i = 0; i < id->n_groups; i++) {
            len += ngx_strlen(id->groups[i]) + 1;
        }

        if (id->n_groups > 0xffff || len > NGX_HTTP_TOKENGATE_ENTRY_MAX) {
            keep = 0;
        }
    }

    size = offsetof(ngx_http_tokengate_node_t, data) + len;
    first_seen = now;

    ngx_shmtx_lock(&cache->shpool->mutex);

    tn = ngx_http_tokengate_cache_find(cache, mac, now);

    if (tn != NULL) {
        if (id != NULL && !tn->negative && tn->first_seen <= now) {
            first_seen = tn->first_seen;
        }

        ngx_http_tokengate_cache_drop(cache, tn);
    }

    if (id == NULL) {
        expires = now + tlcf->cache_negative_ttl;
        stale_until = expires;
        keep_until = expires;

    } else {
        limit = id->expires_at > 0 ? id->expires_at
                                   : first_seen + tlcf->lifetime_max;

        expires = ngx_min(now + tlcf->cache_ttl, limit);
        stale_until = ngx_min(expires + tlcf->cache_stale_ttl, limit);
        keep_until = id->expires_at > 0 ? stale_until : limit;
    }

    if (!keep || expires <= now) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return;
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
        return;
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

    if (id != NULL) {
        tn->n_groups = (uint16_t) id->n_groups;
        tn->evaluation = (signed char) id->evaluation;
        tn->disabled = (signed char) id->disabled;
        tn->has_profile = (u_char) (id->has_profile != 0);

        p = tn->data;

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
    }

    ngx_rbtree_insert(&cache->sh->rbtree, &tn->node);
    ngx_queue_insert_head(&cache->sh->lru, &tn->queue);

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


/* The entry for mac, with the zone locked; one past its keep_until, or
 * whose times or size are not consistent, is dropped on the way. */
static ngx_http_tokengate_node_t *
ngx_http_tokengate_cache_find(ngx_http_tokengate_cache_t *cache, u_char *mac,
    time_t now)
{
    ngx_int_t                   rc;
    ngx_rbtree_key_t            key;
    ngx_rbtree_node_t          *node, *sentinel;
    ngx_http_tokengate_node_t  *tn;

    ngx_memcpy(&key, mac, sizeof(ngx_rbtree_key_t));

    node = cache->sh->rbtree.root;
    sentinel = cache->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        tn = (ngx_http_tokengate_node_t *) node;

        rc = ngx_memcmp(mac, tn->mac, NGX_HTTP_TOKENGATE_MAC_LEN);

        if (rc == 0) {
            if (tn->keep_until <= now
                || tn->expires > tn->stale_until
                || tn->stale_until > tn->keep_until
                || tn->len > NGX_HTTP_TOKENGATE_ENTRY_MAX)
            {
                ngx_http_tokengate_cache_drop(cache, tn);
                return NULL;
            }

            return tn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/* Remove the token's entry, if any, from the location's zone. */
static void
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


/* Unlink and free an entry; locked. */
static void
ngx_http_tokengate_cache_drop(ngx_http_tokengate_cache_t *cache,
    ngx_http_tokengate_node_t *tn)
{
    ngx_queue_remove(&tn->queue);
    ngx_rbtree_delete(&cache->sh->rbtree, &tn->node);
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
    ngx_rbtree_node_t          **p;
    ngx_http_tokengate_node_t   *tn, *tnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            tn = (ngx_http_tokengate_node_t *) node;
            tnt = (ngx_http_tokengate_node_t *) temp;

            p = ngx_memcmp(tn->mac, tnt->mac, NGX_HTTP_TOKENGATE_MAC_LEN) < 0
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

    if (ctx->handle != NULL && ctx->is_leader
        && !ngx_queue_empty(&ctx->waiters))
    {
        ngx_http_tokengate_handover(ctx);
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


/* Set the outcome and $tokengate_result with it. */
static void
ngx_http_tokengate_outcome(ngx_http_tokengate_ctx_t *ctx, ngx_uint_t outcome)
{
    ctx->outcome = outcome;
    ctx->result = ngx_http_tokengate_results[outcome];
}


/*
 * The one place an outcome becomes nginx's answer (as pam_code() is for
 * PAM), after tokengate_require and with the request counted:
 *
 *   VALID        the phases go on; $remote_user is the user
 *   MISSING      401, WWW-Authenticate: Bearer realm="..."
 *   MALFORMED    400, ... error="invalid_request"
 *   INVALID      401, ... error="invalid_token"
 *   FORBIDDEN    403, ... error="insufficient_scope"; a failed
 *                tokengate_require answers its own status (401 with
 *                error="invalid_token", or 403)
 *   UNAVAILABLE  503, with Retry-After when the server advised one
 *
 * A 401 is a 302 to tokengate_login_url instead for a browser's GET or
 * HEAD.  The outcomes come from the token's syntax (MISSING, MALFORMED),
 * from the server's error (ngx_http_tokengate_decide: a rejected or
 * unknown token is INVALID, TG_FORBIDDEN is FORBIDDEN, any other failure
 * -- a timeout, a refused connection, TLS, a broken answer -- is
 * UNAVAILABLE unless tokengate_on_unavailable stale answers) and from the
 * rules on an accepted identity (FORBIDDEN).
 */
static ngx_int_t
ngx_http_tokengate_answer(ngx_http_request_t *r, ngx_http_tokengate_ctx_t *ctx)
{
    ngx_int_t                        rc, status;
    ngx_str_t                        url;
    const char                      *error;
    ngx_table_elt_t                 *h;
    ngx_http_variable_value_t       *vv;
    ngx_http_tokengate_loc_conf_t   *tlcf;
    ngx_http_tokengate_main_conf_t  *tmcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tokengate_module);

    if (ctx->outcome == NGX_HTTP_TOKENGATE_VALID && tlcf->require != NULL) {
        rc = ngx_http_tokengate_require_ok(r, tlcf);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc != NGX_OK) {
            /* denied: the identity goes */
            ctx->allowed = 0;
            ctx->require_failed = 1;
            ngx_http_tokengate_outcome(ctx, NGX_HTTP_TOKENGATE_FORBIDDEN);

            ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                          "tokengate: token %s: tokengate_require not "
                          "satisfied", ctx->fp);
        }
    }

    ngx_http_tokengate_count(r, ctx);

    if (ctx->outcome == NGX_HTTP_TOKENGATE_VALID && !ctx->allowed) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "tokengate: no accepted validation behind an OK, "
                      "answering 503");
        ctx->outcome = NGX_HTTP_TOKENGATE_UNAVAILABLE;
    }

    switch (ctx->outcome) {

    case NGX_HTTP_TOKENGATE_VALID:
        tmcf = ngx_http_get_module_main_conf(r, ngx_http_tokengate_module);

        if (tmcf->remote_user_index != NGX_ERROR) {
            vv = &r->variables[tmcf->remote_user_index];
            vv->len = ctx->user.len;
            vv->data = ctx->user.data;
            vv->valid = 1;
            vv->no_cacheable = 0;
            vv->not_found = 0;
        }

        return NGX_OK;

    case NGX_HTTP_TOKENGATE_MISSING:
        status = NGX_HTTP_UNAUTHORIZED;
        error = NULL;
        break;

    case NGX_HTTP_TOKENGATE_MALFORMED:
        status = NGX_HTTP_BAD_REQUEST;
        error = "invalid_request";
        break;

    case NGX_HTTP_TOKENGATE_INVALID:
        status = NGX_HTTP_UNAUTHORIZED;
        error = "invalid_token";
        break;

    case NGX_HTTP_TOKENGATE_FORBIDDEN:
        status = ctx->require_failed ? tlcf->require_error
                                     : NGX_HTTP_FORBIDDEN;
        error = status == NGX_HTTP_UNAUTHORIZED ? "invalid_token"
                                                : "insufficient_scope";
        break;

    default: /* NGX_HTTP_TOKENGATE_UNAVAILABLE */
        if (ctx->retry_after > 0
            && ngx_http_tokengate_retry_after(r, ctx->retry_after) != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    if (status == NGX_HTTP_UNAUTHORIZED) {
        rc = ngx_http_tokengate_login(r, &url);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK) {
            h = ngx_list_push(&r->headers_out.headers);
            if (h == NULL) {
                return NGX_ERROR;
            }

            h->hash = 1;
#if (nginx_version >= 1023000)
            h->next = NULL;
#endif
            ngx_str_set(&h->key, "Location");
            h->value = url;

            ngx_http_clear_location(r);
            r->headers_out.location = h;

            return NGX_HTTP_MOVED_TEMPORARILY;
        }
    }

    if (ngx_http_tokengate_www_authenticate(r, &ctx->realm, error)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return status;
}


/* tokengate_require: every value non-empty and not "0", evaluated once
 * the token was accepted (so it may use $tokengate_* variables). */
static ngx_int_t
ngx_http_tokengate_require_ok(ngx_http_request_t *r,
    ngx_http_tokengate_loc_conf_t *tlcf)
{
    ngx_str_t                  val;
    ngx_uint_t                 i;
    ngx_http_complex_value_t  *cv;

    cv = tlcf->require->elts;

    for (i = 0; i < tlcf->require->nelts; i++) {
        if (ngx_http_complex_value(r, &cv[i], &val) != NGX_OK) {
            return NGX_ERROR;
        }

        if (val.len == 0 || (val.len == 1 && val.data[0] == '0')) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* Add WWW-Authenticate: Bearer realm="..."[, error="..."]; the realm's
 * quotes and backslashes are escaped. */
static ngx_int_t
ngx_http_tokengate_www_authenticate(ngx_http_request_t *r, ngx_str_t *realm,
    const char *error)
{
    u_char           *p;
    size_t            len, i;
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    len = sizeof("Bearer realm=\"\"") - 1 + realm->len * 2;

    if (error != NULL) {
        len += sizeof(", error=\"\"") - 1 + ngx_strlen(error);
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    ngx_str_set(&h->key, "WWW-Authenticate");
    h->value.data = p;

    p = ngx_cpymem(p, "Bearer realm=\"", sizeof("Bearer realm=\"") - 1);

    for (i = 0; i < realm->len; i++) {

        /* The realm may come from variables ($uri is decoded): a CR, LF
         * or other control byte would split the header. */
        if (realm->data[i] < 0x20 || realm->data[i] == 0x7f) {
            *p++ = '?';
            continue;
        }

        if (realm->data[i] == '"' || realm->data[i] == '\\') {
            *p++ = '\\';
        }

        *p++ = realm->data[i];
    }

    *p++ = '"';

    if (error != NULL) {
        p = ngx_cpymem(p, ", error=\"", sizeof(", error=\"") - 1);
        p = ngx_cpymem(p, error, ngx_strlen(error));
        *p++ = '"';
    }

    h->value.len = p - h->value.data;

    r->headers_out.www_authenticate = h;

    return NGX_OK;
}


/* The tokengate_login_url a 401 becomes a 302 to (NGX_OK): for GET/HEAD
 * requests that accept text/html; API clients keep their 401
 * (NGX_DECLINED). */
static ngx_int_t
ngx_http_tokengate_login(ngx_http_request_t *r, ngx_str_t *url)
{
    ngx_uint_t                      i, html;
    ngx_list_part_t                *part;
    ngx_table_elt_t                *h;
    ngx_http_tokengate_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tokengate_module);

    if (tlcf->login_url == NULL
        || !(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)))
    {
        return NGX_DECLINED;
    }

    html = 0;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Accept") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Accept",
                               sizeof("Accept") - 1) == 0
            && ngx_strlcasestrn(h[i].value.data,
                                h[i].value.data + h[i].value.len,
                                (u_char *) "text/html",
                                sizeof("text/html") - 2) != NULL)
        {
            html = 1;
            break;
        }
    }

    if (!html) {
        return NGX_DECLINED;
    }

    if (ngx_http_complex_value(r, tlcf->login_url, url) != NGX_OK) {
        return NGX_ERROR;
    }

    /* A login URL built from variables must not split the header: keep
     * the 401 instead. */
    for (i = 0; i < url->len; i++) {
        if (url->data[i] < 0x20 || url->data[i] == 0x7f) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "tokengate: login url has a control byte, "
                          "answering 401");
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_tokengate_retry_after(ngx_http_request_t *r, long seconds)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->value.data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (h->value.data == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    ngx_str_set(&h->key, "Retry-After");
    h->value.len = ngx_sprintf(h->value.data, "%l", seconds) - h->value.data;

    return NGX_OK;
}


/*
 * CURLOPT_OPENSOCKETFUNCTION: the module, not libcurl, opens the sockets of
 * its transfers, each with an nginx connection, and closes them in
 * close_socket the way ngx_close_connection() does: the events go first
 * (a closed fd has left epoll already), then the fd.
 *
 * libcurl 7.88 does not always call close_socket: it closes a socket that
 * is still connecting (a validation cancelled by a client that left) with
 * close() itself, and only then asks to stop watching it.  epoll_ctl() on
 * that fd logged "[alert] epoll_ctl(2, N) failed (9: Bad file
 * descriptor)" for every such request.  So each socket's identity (its
 * inode) is kept: when the fd is no longer that socket, its events are
 * forgotten without a system call (sock_forget), as for a closed one.
 */
static curl_socket_t
ngx_http_tokengate_open_socket(void *clientp, curlsocktype purpose,
    struct curl_sockaddr *addr)
{
    ngx_socket_t  s;

    if (purpose != CURLSOCKTYPE_IPCXN) {
        return CURL_SOCKET_BAD;
    }

    s = ngx_socket(addr->family, addr->socktype, addr->protocol);
    if (s == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, ngx_socket_errno,
                      "tokengate: " ngx_socket_n " failed");
        return CURL_SOCKET_BAD;
    }

    /* an entry left for this fd is a socket libcurl closed behind our
     * back: finding it forgets it */

    (void) ngx_http_tokengate_sock_find(s);

    if (ngx_http_tokengate_sock_add(s, 1) == NULL) {
        (void) ngx_close_socket(s);
        return CURL_SOCKET_BAD;
    }

    return s;
}


/* CURLOPT_CLOSESOCKETFUNCTION: close a socket of open_socket as nginx
 * closes its own connections (NGX_CLOSE_EVENT, then close()). */
static int
ngx_http_tokengate_close_socket(void *clientp, curl_socket_t s)
{
    ngx_connection_t           *c;
    ngx_http_tokengate_sock_t  *sk;

    sk = ngx_http_tokengate_sock_find(s);

    if (sk == NULL || !sk->own) {
        /* not opened by open_socket: its events go with the fd */

        if (sk != NULL) {
            ngx_http_tokengate_sock_forget(sk);
        }

        return ngx_close_socket(s) == -1;
    }

    c = sk->connection;
    sk->connection = NULL;

    ngx_close_connection(c);

    return 0;
}


/* The entry of fd s, if s still is the socket it was made for; an entry
 * whose socket libcurl closed itself is forgotten. */
static ngx_http_tokengate_sock_t *
ngx_http_tokengate_sock_find(curl_socket_t s)
{
    ngx_file_info_t             fi;
    ngx_http_tokengate_sock_t  *sk;

    if (s < 0 || (ngx_uint_t) s >= ngx_http_tokengate_nsocks) {
        return NULL;
    }

    sk = &ngx_http_tokengate_socks[s];

    if (sk->connection == NULL) {
        return NULL;
    }

    if (ngx_fd_info(s, &fi) == NGX_FILE_ERROR || fi.st_ino != sk->ino) {
        ngx_http_tokengate_sock_forget(sk);
        return NULL;
    }

    return sk;
}


/* An nginx connection for fd s, whose events call curl, in the table. */
static ngx_connection_t *
ngx_http_tokengate_sock_add(ngx_socket_t s, ngx_uint_t own)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(s, ngx_cycle->log);
    if (c == NULL) {
        return NULL;
    }

    if (ngx_http_tokengate_sock_set(s, c, own) != NGX_OK) {
        ngx_free_connection(c);
        c->fd = (ngx_socket_t) -1;
        return NULL;
    }

    c->log = ngx_cycle->log;
    c->read->log = c->log;
    c->write->log = c->log;
    c->read->handler = ngx_http_tokengate_event_handler;
    c->write->handler = ngx_http_tokengate_event_handler;

    return c;
}


static ngx_int_t
ngx_http_tokengate_sock_set(ngx_socket_t s, ngx_connection_t *c,
    ngx_uint_t own)
{
    ngx_uint_t                  n;
    ngx_file_info_t             fi;
    ngx_http_tokengate_sock_t  *socks;

    if (ngx_fd_info(s, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, ngx_errno,
                      "tokengate: " ngx_fd_info_n " failed");
        return NGX_ERROR;
    }

    if ((ngx_uint_t) s >= ngx_http_tokengate_nsocks) {
        n = ngx_max((ngx_uint_t) s + 1, 2 * ngx_http_tokengate_nsocks);
        n = ngx_max(n, 64);

        socks = ngx_calloc(n * sizeof(ngx_http_tokengate_sock_t),
                           ngx_cycle->log);
        if (socks == NULL) {
            return NGX_ERROR;
        }

        if (ngx_http_tokengate_socks != NULL) {
            ngx_memcpy(socks, ngx_http_tokengate_socks,
                       ngx_http_tokengate_nsocks
                       * sizeof(ngx_http_tokengate_sock_t));
            ngx_free(ngx_http_tokengate_socks);
        }

        ngx_http_tokengate_socks = socks;
        ngx_http_tokengate_nsocks = n;
    }

    ngx_http_tokengate_socks[s].connection = c;
    ngx_http_tokengate_socks[s].ino = fi.st_ino;
    ngx_http_tokengate_socks[s].own = own;

    return NGX_OK;
}


/* The fd is closed (by libcurl itself) or about to be: the kernel drops a
 * closed fd from epoll, so its events are forgotten without a system call
 * (what NGX_CLOSE_EVENT means), and the connection is freed, not closed. */
static void
ngx_http_tokengate_sock_forget(ngx_http_tokengate_sock_t *sk)
{
    ngx_connection_t  *c;

    c = sk->connection;
    sk->connection = NULL;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}


/*
 * CURLMOPT_SOCKETFUNCTION: watch curl's fd with its nginx connection,
 * found by the fd (not through curl_multi_assign(): curl may close the
 * fd first).  A socket of open_socket stays the module's until
 * close_socket; any other fd curl hands over (the threaded resolver's) gets
 * a connection here until curl stops watching it.
 */
static int
ngx_http_tokengate_socket_cb(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp)
{
    ngx_connection_t           *c;
    ngx_http_tokengate_sock_t  *sk;

    sk = ngx_http_tokengate_sock_find(s);

    if (what == CURL_POLL_REMOVE) {
        if (sk == NULL) {
            /* closed already: its events went with it */
            return 0;
        }

        c = sk->connection;

        if (!ngx_http_tokengate_exiting) {
            if (c->read->active) {
                (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
            }

            if (c->write->active) {
                (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
            }
        }

        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }

        if (!sk->own) {
            /* curl's own fd: curl closes it, free the connection only */

            sk->connection = NULL;
            ngx_free_connection(c);
            c->fd = (ngx_socket_t) -1;
        }

        return 0;
    }

    if (sk == NULL) {
        c = ngx_http_tokengate_sock_add(s, 0);
        if (c == NULL) {
            return -1;
        }

    } else {
        c = sk->connection;
    }

    if (what & CURL_POLL_IN) {
        if (!c->read->active
            && ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK)
        {
            return -1;
        }

    } else if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (what & CURL_POLL_OUT) {
        if (!c->write->active
            && ngx_add_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK)
        {
            return -1;
        }

    } else if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    return 0;
}


/* CURLMOPT_TIMERFUNCTION: only (re)arm the nginx timer, never call curl. */
static int
ngx_http_tokengate_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    if (ngx_http_tokengate_timer.timer_set) {
        ngx_del_timer(&ngx_http_tokengate_timer);
    }

    if (timeout_ms >= 0 && !ngx_http_tokengate_exiting) {
        ngx_add_timer(&ngx_http_tokengate_timer, (ngx_msec_t) timeout_ms);
    }

    return 0;
}


static void
ngx_http_tokengate_event_handler(ngx_event_t *ev)
{
    int                running;
    ngx_connection_t  *c;

    c = ev->data;

    (void) curl_multi_socket_action(ngx_http_tokengate_multi, c->fd,
                                    ev->write ? CURL_CSELECT_OUT
                                              : CURL_CSELECT_IN,
                                    &running);

    ngx_http_tokengate_drain();
}


static void
ngx_http_tokengate_timer_handler(ngx_event_t *ev)
{
    int  running;

    (void) curl_multi_socket_action(ngx_http_tokengate_multi,
                                    CURL_SOCKET_TIMEOUT, 0, &running);

    ngx_http_tokengate_drain();
}


static void
ngx_http_tokengate_drain(void)
{
    int                           left;
    CURL                         *easy;
    CURLMsg                      *msg;
    CURLcode                      rc;
    ngx_http_tokengate_handle_t  *h;

    for ( ;; ) {
        msg = curl_multi_info_read(ngx_http_tokengate_multi, &left);
        if (msg == NULL) {
            break;
        }

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        rc = msg->data.result;
        h = NULL;

        (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &h);

        if (h == NULL) {
            (void) curl_multi_remove_handle(ngx_http_tokengate_multi, easy);
            curl_easy_cleanup(easy);
            continue;
        }

        if (curl_multi_remove_handle(ngx_http_tokengate_multi, easy)
            != CURLM_OK)
        {
            /* not known to be detached: never reused */
            h->ready = 0;
        }

        if (h->ctx == NULL) {
            ngx_http_tokengate_handle_put(h, 0);
            continue;
        }

        ngx_http_tokengate_complete(h->ctx, rc);
    }
}


/* Count transfers; while any runs, the curl timer keeps a graceful
 * shutdown waiting (nginx exits once only cancelable timers remain). */
static void
ngx_http_tokengate_active(ngx_int_t delta)
{
    ngx_http_tokengate_in_flight += delta;
    ngx_http_tokengate_timer.cancelable = (ngx_http_tokengate_in_flight == 0);
}


/*
 * Calls for other parts of the module (ngx_http_tokengate.h): the same
 * kept easy handles (ngx_http_tokengate_send), options, response caps and
 * multi handle as a validation, with the caller's handler instead of the
 * validation logic.  A call lives on the heap, not in a request's pool: its
 * owner cancels it when it goes away first.
 */
ngx_http_tokengate_call_t *
ngx_http_tokengate_call(ngx_http_tokengate_loc_conf_t *tlcf,
    tg_request_t *req, ngx_log_t *log, ngx_http_tokengate_call_pt handler,
    void *data)
{
    ngx_http_tokengate_ctx_t  *ctx;

    if (ngx_http_tokengate_multi == NULL || tlcf->tg == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tokengate: no curl multi handle in this process");
        tg_request_clear(req);
        return NULL;
    }

    ctx = ngx_calloc(sizeof(ngx_http_tokengate_ctx_t), log);
    if (ctx == NULL) {
        tg_request_clear(req);
        return NULL;
    }

    ctx->tg = tlcf->tg;
    ctx->handler = handler;
    ctx->data = data;
    ctx->call = 1;

    /* req is the handle's now (wiped when the transfer ends), or wiped */

    if (ngx_http_tokengate_send(ctx, tlcf, req, log) != NGX_OK) {
        ngx_free(ctx);
        return NULL;
    }

    ngx_http_tokengate_active(1);

    return ctx;
}


void
ngx_http_tokengate_call_cancel(ngx_http_tokengate_call_t *call)
{
    if (call->handle != NULL) {
        ngx_http_tokengate_abort(call);
    }

    ngx_http_tokengate_active(-1);
    ngx_free(call);
}


ngx_uint_t
ngx_http_tokengate_allowed(ngx_http_request_t *r)
{
    ngx_http_tokengate_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_tokengate_module);

    return ctx != NULL && ctx->allowed
           && ctx->outcome == NGX_HTTP_TOKENGATE_VALID;
}


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


void
ngx_http_tokengate_embed_count(ngx_http_request_t *r, ngx_uint_t what)
{
    ngx_http_tokengate_stats_t  *st;

    st = ngx_http_tokengate_get_stats(r);

    if (st != NULL && what < NGX_HTTP_TOKENGATE_EMBED_N) {
        (void) ngx_atomic_fetch_add(&st->embed[what], 1);
    }
}


/* Count one decided request: its result and its cache status. */
static void
ngx_http_tokengate_count(ngx_http_request_t *r, ngx_http_tokengate_ctx_t *ctx)
{
    ngx_uint_t                   i;
    ngx_http_tokengate_stats_t  *st;

    st = ngx_http_tokengate_get_stats(r);

    if (st == NULL) {
        return;
    }

    if (ctx->outcome < NGX_HTTP_TOKENGATE_OUTCOMES) {
        (void) ngx_atomic_fetch_add(&st->results[ctx->outcome], 1);
    }

    if (ctx->cache_status.len != 0) {
        switch (ctx->cache_status.data[0]) {
        case 'H':
            i = 0;
            break;
        case 'M':
            i = 1;
            break;
        case 'C':
            i = 2;
            break;
        default:
            i = 3;
        }

        (void) ngx_atomic_fetch_add(&st->cache[i], 1);
    }
}


/* tokengate_status: the counters as JSON, or as Prometheus text with
 * ?format=prometheus. */
static ngx_int_t
ngx_http_tokengate_status_handler(ngx_http_request_t *r)
{
    u_char                      *p;
    ngx_int_t                    rc;
    ngx_buf_t                   *b;
    ngx_str_t                    format;
    ngx_uint_t                   i, prom;
    ngx_chain_t                  out;
    ngx_http_tokengate_stats_t  *st;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    st = ngx_http_tokengate_get_stats(r);
    if (st == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    prom = (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK
            && format.len == 10
            && ngx_strncmp(format.data, "prometheus", 10) == 0);

    b = ngx_create_temp_buf(r->pool, 2048);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->last;

    if (prom) {
        p = ngx_sprintf(p, "# HELP tokengate_requests_total Requests "
                        "decided, by result.\n"
                        "# TYPE tokengate_requests_total counter\n");

        for (i = 0; i < NGX_HTTP_TOKENGATE_OUTCOMES; i++) {
            p = ngx_sprintf(p, "tokengate_requests_total{result=\"%V\"} "
                            "%uA\n", &ngx_http_tokengate_results[i],
                            st->results[i]);
        }

        p = ngx_sprintf(p, "# HELP tokengate_cache_total Cache lookups, "
                        "by status.\n"
                        "# TYPE tokengate_cache_total counter\n");

        for (i = 0; i < 4; i++) {
            p = ngx_sprintf(p, "tokengate_cache_total{status=\"%s\"} %uA\n",
                            ngx_http_tokengate_cache_names[i], st->cache[i]);
        }

        p = ngx_sprintf(p, "# HELP tokengate_auth_calls_total Validation "
                        "calls sent to the auth server.\n"
                        "# TYPE tokengate_auth_calls_total counter\n"
                        "tokengate_auth_calls_total %uA\n", st->calls);

        p = ngx_sprintf(p, "# HELP tokengate_embed_total tokengate_embed "
                        "answers, by result.\n"
                        "# TYPE tokengate_embed_total counter\n");

        for (i = 0; i < NGX_HTTP_TOKENGATE_EMBED_N; i++) {
            p = ngx_sprintf(p, "tokengate_embed_total{result=\"%s\"} %uA\n",
                            ngx_http_tokengate_embed_names[i], st->embed[i]);
        }

        p = ngx_sprintf(p, "# HELP tokengate_curl_handles_total Transfers "
                        "by the curl handle they ran on: a new one, or one "
                        "a worker kept.\n"
                        "# TYPE tokengate_curl_handles_total counter\n"
                        "tokengate_curl_handles_total{handle=\"created\"} "
                        "%uA\n"
                        "tokengate_curl_handles_total{handle=\"reused\"} "
                        "%uA\n", st->handles_created, st->handles_reused);

        ngx_str_set(&r->headers_out.content_type,
                    "text/plain; version=0.0.4");

    } else {
        p = ngx_sprintf(p, "{\"requests\":{");

        for (i = 0; i < NGX_HTTP_TOKENGATE_OUTCOMES; i++) {
            p = ngx_sprintf(p, "%s\"%V\":%uA", i ? "," : "",
                            &ngx_http_tokengate_results[i], st->results[i]);
        }

        p = ngx_sprintf(p, "},\"cache\":{");

        for (i = 0; i < 4; i++) {
            p = ngx_sprintf(p, "%s\"%s\":%uA", i ? "," : "",
                            ngx_http_tokengate_cache_names[i], st->cache[i]);
        }

        p = ngx_sprintf(p, "},\"auth_calls\":%uA,\"embed\":{", st->calls);

        for (i = 0; i < NGX_HTTP_TOKENGATE_EMBED_N; i++) {
            p = ngx_sprintf(p, "%s\"%s\":%uA", i ? "," : "",
                            ngx_http_tokengate_embed_names[i], st->embed[i]);
        }

        p = ngx_sprintf(p, "},\"curl_handles\":{\"created\":%uA,"
                        "\"reused\":%uA}}\n",
                        st->handles_created, st->handles_reused);

        ngx_str_set(&r->headers_out.content_type, "application/json");
    }

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* $tokengate_*: only for allowed requests; $tokengate_result and
 * $tokengate_cache_status (no identity data) always. */
static ngx_int_t
ngx_http_tokengate_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                 *s;
    ngx_http_tokengate_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_tokengate_module);

    if (ctx == NULL
        || (!ctx->allowed
            && data != offsetof(ngx_http_tokengate_ctx_t, result)
            && data != offsetof(ngx_http_tokengate_ctx_t, cache_status)))
    {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (ngx_str_t *) ((char *) ctx + data);

    if (s->data == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_tokengate_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_tokengate_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
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


static ngx_int_t
ngx_http_tokengate_init_module(ngx_cycle_t *cycle)
{
    CURLcode  rc;

    /* once per process, before any thread exists; never cleaned up */

    if (ngx_http_tokengate_curl_ready) {
        return NGX_OK;
    }

    rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "tokengate: curl_global_init() failed: %s",
                      curl_easy_strerror(rc));
        return NGX_ERROR;
    }

    ngx_http_tokengate_curl_ready = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_tokengate_init_process(ngx_cycle_t *cycle)
{
    CURLM  *m;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    m = curl_multi_init();
    if (m == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "tokengate: curl_multi_init() failed");
        return NGX_ERROR;
    }

    if (curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION,
                          ngx_http_tokengate_socket_cb) != CURLM_OK
        || curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION,
                             ngx_http_tokengate_timer_cb) != CURLM_OK
        || curl_multi_setopt(m, CURLMOPT_MAXCONNECTS,
                             (long) NGX_HTTP_TOKENGATE_MAXCONNECTS)
           != CURLM_OK
        /* Each transfer takes one of the worker's connections: beyond a
         * quarter of them curl queues transfers (their timeout still
         * runs), so a flood of distinct tokens cannot starve the worker. */
        || curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                             (long) ngx_max(cycle->connection_n / 4, 8))
           != CURLM_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "tokengate: curl_multi_setopt() failed");
        curl_multi_cleanup(m);
        return NGX_ERROR;
    }

    /* debug logging reads a timer's data as a connection */

    ngx_http_tokengate_timer_conn.fd = (ngx_socket_t) -1;
    ngx_http_tokengate_timer.data = &ngx_http_tokengate_timer_conn;
    ngx_http_tokengate_timer.handler = ngx_http_tokengate_timer_handler;
    ngx_http_tokengate_timer.log = cycle->log;
    ngx_http_tokengate_timer.cancelable = 1;

    ngx_http_tokengate_multi = m;

    ngx_queue_init(&ngx_http_tokengate_leaders);
    ngx_queue_init(&ngx_http_tokengate_handles);
    ngx_http_tokengate_nhandles = 0;
    ngx_http_tokengate_handles_cycle = ngx_cycle;

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
ngx_http_tokengate_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                  i;
    ngx_queue_t                *q;
    ngx_http_tokengate_sock_t  *sk;

    if (ngx_http_tokengate_multi == NULL) {
        return;
    }

    ngx_http_tokengate_exiting = 1;

    if (ngx_http_tokengate_timer.timer_set) {
        ngx_del_timer(&ngx_http_tokengate_timer);
    }

    while (!ngx_queue_empty(&ngx_http_tokengate_handles)) {
        q = ngx_queue_head(&ngx_http_tokengate_handles);
        ngx_queue_remove(q);
        ngx_http_tokengate_handle_free(
            ngx_queue_data(q, ngx_http_tokengate_handle_t, queue));
    }

    ngx_http_tokengate_nhandles = 0;

    /* closes the kept connections through close_socket */
    curl_multi_cleanup(ngx_http_tokengate_multi);
    ngx_http_tokengate_multi = NULL;

    if (ngx_http_tokengate_socks != NULL) {

        /* what libcurl closed itself, or left open */

        for (i = 0; i < ngx_http_tokengate_nsocks; i++) {
            sk = ngx_http_tokengate_sock_find((curl_socket_t) i);

            if (sk == NULL) {
                continue;
            }

            if (sk->own) {
                (void) ngx_http_tokengate_close_socket(NULL,
                                                       (curl_socket_t) i);

            } else {
                ngx_http_tokengate_sock_forget(sk);
            }
        }

        ngx_free(ngx_http_tokengate_socks);
        ngx_http_tokengate_socks = NULL;
        ngx_http_tokengate_nsocks = 0;
    }
}


static void *
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


/* The shared counters, NULL when no location has tokengate_status; r is
 * NULL for a call (ngx_http_tokengate_call), which has no request. */
static ngx_http_tokengate_stats_t *
ngx_http_tokengate_get_stats(ngx_http_request_t *r)
{
    ngx_http_tokengate_main_conf_t  *tmcf;

    tmcf = r != NULL
           ? ngx_http_get_module_main_conf(r, ngx_http_tokengate_module)
           : ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                 ngx_http_tokengate_module);

    if (tmcf == NULL || tmcf->stats_zone == NULL) {
        return NULL;
    }

    return tmcf->stats_zone->data;
}


static void *
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

    return conf;
}


static char *
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

    if (conf->tg == NULL) {
        return NGX_CONF_OK;
    }

    conf->lifetime_max = (time_t) tg_config_token_lifetime_max(conf->tg);

    /* the same settings as the enclosing level: the same fingerprint */

    if (conf->tg == prev->tg && conf->which == prev->which) {
        ngx_memcpy(conf->fingerprint, prev->fingerprint,
                   NGX_HTTP_TOKENGATE_MAC_LEN);
        return NGX_CONF_OK;
    }

    return ngx_http_tokengate_fingerprint(cf, conf);
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
static char *
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


static void
ngx_http_tokengate_config_cleanup(void *data)
{
    tg_config_free(data);
}


/* tokengate_config FILE: read now, so that errors name the directive's
 * line; the merged configuration is built again in merge. */
static char *
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


/* tokengate_cache zone=NAME[:SIZE] [ttl=TIME] [negative_ttl=TIME] | off */
static char *
ngx_http_tokengate_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tokengate_loc_conf_t *tlcf = conf;

    u_char                      *p;
    ssize_t                      size;
    ngx_int_t                    ttl, negative_ttl, stale_ttl;
    ngx_str_t                   *value, name, s;
    ngx_uint_t                   i;
    ngx_shm_zone_t              *shm_zone;
    ngx_http_tokengate_cache_t  *cache;

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
    ttl = 60;
    negative_ttl = 5;
    stale_ttl = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            name.data = value[i].data + 5;
            name.len = value[i].len - 5;

            p = ngx_strlchr(name.data, name.data + name.len, ':');

            if (p != NULL) {
                s.data = p + 1;
                s.len = name.data + name.len - s.data;
                name.len = p - name.data;

                size = ngx_parse_size(&s);

                if (size == NGX_ERROR) {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "invalid zone size \"%V\" in "
                                       "\"%V\" directive", &value[i],
                                       &cmd->name);
                    return NGX_CONF_ERROR;
                }

                if (size < (ssize_t) (8 * ngx_pagesize)) {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "zone \"%V\" of \"%V\" is too small",
                                       &name, &cmd->name);
                    return NGX_CONF_ERROR;
                }
            }

            if (name.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone name \"%V\" in \"%V\" "
                                   "directive", &value[i], &cmd->name);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "ttl=", 4) == 0) {
            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            ttl = ngx_parse_time(&s, 1);

            if (ttl == NGX_ERROR || ttl == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"%V\" directive",
                                   &value[i], &cmd->name);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "stale_ttl=", 10) == 0) {
            s.data = value[i].data + 10;
            s.len = value[i].len - 10;

            stale_ttl = ngx_parse_time(&s, 1);

            if (stale_ttl == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"%V\" directive",
                                   &value[i], &cmd->name);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "negative_ttl=", 13) == 0) {
            s.data = value[i].data + 13;
            s.len = value[i].len - 13;

            negative_ttl = ngx_parse_time(&s, 1);

            if (negative_ttl == NGX_ERROR) {
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
    tlcf->cache_ttl = ttl;
    tlcf->cache_negative_ttl = negative_ttl;
    tlcf->cache_stale_ttl = stale_ttl;

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


/* tokengate_status: a content handler; the counters get a small zone. */
static char *
ngx_http_tokengate_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t                        name = ngx_string("tokengate_status");
    ngx_shm_zone_t                  *shm_zone;
    ngx_http_core_loc_conf_t        *clcf;
    ngx_http_tokengate_main_conf_t  *tmcf;

    shm_zone = ngx_shared_memory_add(cf, &name, 8 * ngx_pagesize,
                                     &ngx_http_tokengate_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_tokengate_init_stats;

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_tokengate_module);
    tmcf->stats_zone = shm_zone;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_tokengate_status_handler;

    return NGX_CONF_OK;
}


/* The counters survive a reload. */
static ngx_int_t
ngx_http_tokengate_init_stats(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t             *shpool;
    ngx_http_tokengate_stats_t  *st;

    if (data != NULL) {
        shm_zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        return NGX_OK;
    }

    st = ngx_slab_calloc(shpool, sizeof(ngx_http_tokengate_stats_t));
    if (st == NULL) {
        return NGX_ERROR;
    }

    shpool->data = st;
    shm_zone->data = st;

    return NGX_OK;
}


/* The enum slot, with the directive named in the error */
static char *
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
static char *
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
static char *
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


static char *
ngx_http_tokengate_positive_msec(ngx_conf_t *cf, void *post, void *data)
{
    ngx_msec_t  *np = data;

    if (*np == 0) {
        return "must be more than 0";
    }

    return NGX_CONF_OK;
}
