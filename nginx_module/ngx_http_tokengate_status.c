
/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_status.c: the counters of ngx_http_tokengate_module,
 * shared by the workers in a small zone, and the tokengate_status handler
 * that shows them as JSON or Prometheus text.
 */


#include "ngx_http_tokengate.h"


static ngx_int_t ngx_http_tokengate_status_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_tokengate_init_stats(ngx_shm_zone_t *shm_zone,
    void *data);


static char  *ngx_http_tokengate_cache_names[] = {
    "hit", "miss", "coalesced", "stale"
};


/* The order of NGX_HTTP_TOKENGATE_EMBED_*. */
static char  *ngx_http_tokengate_embed_names[] = {
    "local", "server", "refused", "failed"
};


/* The order of NGX_HTTP_TOKENGATE_LOGOUT_* (the first four) and
 * NGX_HTTP_TOKENGATE_PURGE_*. */
static char  *ngx_http_tokengate_logout_names[] = {
    "server", "local", "refused", "failed", "token", "all", "entries"
};


void
ngx_http_tokengate_logout_count(ngx_http_request_t *r, ngx_uint_t what,
    ngx_uint_t n)
{
    ngx_http_tokengate_stats_t  *st;

    st = ngx_http_tokengate_get_stats(r);

    if (st != NULL && what < NGX_HTTP_TOKENGATE_LOGOUT_N) {
        (void) ngx_atomic_fetch_add(&st->logout[what], n);
    }
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


/* The order of NGX_HTTP_TOKENGATE_SHARED_*. */
static char  *ngx_http_tokengate_shared_names[] = {
    "hits", "misses", "errors", "rejected"
};


/* Count one event of the shared cache (no request needed). */
void
ngx_http_tokengate_shared_count(ngx_uint_t what)
{
    ngx_http_tokengate_stats_t  *st;

    st = ngx_http_tokengate_get_stats(NULL);

    if (st != NULL && what < NGX_HTTP_TOKENGATE_SHARED_N) {
        (void) ngx_atomic_fetch_add(&st->shared[what], 1);
    }
}


/* Count one decided request: its result and its cache status. */
void
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
        case 'S':
            if (ctx->cache_status.data[1] == 'H') {
                /* SHARED: counted as a shared hit, a zone miss */
                i = 1;
                break;
            }

            i = 3;
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
    ngx_uint_t                   i, prom, limit_entries;
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

    limit_entries = ngx_http_tokengate_limit_entries();

    /*
     * the Prometheus text with every counter at 20 digits is about 3 KB:
     * twice that, since ngx_sprintf does not check the end
     */
    b = ngx_create_temp_buf(r->pool, 8192);
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

        p = ngx_sprintf(p, "# HELP tokengate_logout_total tokengate_logout "
                        "answers, by result.\n"
                        "# TYPE tokengate_logout_total counter\n");

        for (i = 0; i < NGX_HTTP_TOKENGATE_PURGE_TOKEN; i++) {
            p = ngx_sprintf(p, "tokengate_logout_total{result=\"%s\"} %uA\n",
                            ngx_http_tokengate_logout_names[i],
                            st->logout[i]);
        }

        p = ngx_sprintf(p, "# HELP tokengate_purge_total tokengate_purge "
                        "requests, by what they purged.\n"
                        "# TYPE tokengate_purge_total counter\n"
                        "tokengate_purge_total{purge=\"token\"} %uA\n"
                        "tokengate_purge_total{purge=\"all\"} %uA\n"
                        "# HELP tokengate_purged_entries_total Cache entries "
                        "removed by tokengate_purge.\n"
                        "# TYPE tokengate_purged_entries_total counter\n"
                        "tokengate_purged_entries_total %uA\n",
                        st->logout[NGX_HTTP_TOKENGATE_PURGE_TOKEN],
                        st->logout[NGX_HTTP_TOKENGATE_PURGE_ALL],
                        st->logout[NGX_HTTP_TOKENGATE_PURGE_ENTRIES]);

        p = ngx_sprintf(p, "# HELP tokengate_curl_handles_total Transfers "
                        "by the curl handle they ran on: a new one, or one "
                        "a worker kept.\n"
                        "# TYPE tokengate_curl_handles_total counter\n"
                        "tokengate_curl_handles_total{handle=\"created\"} "
                        "%uA\n"
                        "tokengate_curl_handles_total{handle=\"reused\"} "
                        "%uA\n", st->handles_created, st->handles_reused);

        p = ngx_sprintf(p, "# HELP tokengate_transfers_total Calls to the "
                        "auth server by transport: nginx's own connections, "
                        "or libcurl (a proxy, a host not resolved at "
                        "load).\n"
                        "# TYPE tokengate_transfers_total counter\n"
                        "tokengate_transfers_total{transport=\"nginx\"} "
                        "%uA\n"
                        "tokengate_transfers_total{transport=\"libcurl\"} "
                        "%uA\n"
                        "# HELP tokengate_connections_total Connections to "
                        "the auth server nginx opened (the others were "
                        "kept alive).\n"
                        "# TYPE tokengate_connections_total counter\n"
                        "tokengate_connections_total %uA\n",
                        st->transfers[0], st->transfers[1], st->connects);

        p = ngx_sprintf(p, "# HELP tokengate_fail_limit_entries Clients "
                        "with refusals in a tokengate_fail_limit zone.\n"
                        "# TYPE tokengate_fail_limit_entries gauge\n"
                        "tokengate_fail_limit_entries %ui\n", limit_entries);
        p = ngx_sprintf(p, "# HELP tokengate_backoff_active Auth servers "
                        "the node backs off from now.\n"
                        "# TYPE tokengate_backoff_active gauge\n"
                        "tokengate_backoff_active %ui\n"
                        "# HELP tokengate_backoff_total Requests refused "
                        "without a call, and probes, during a back-off.\n"
                        "# TYPE tokengate_backoff_total counter\n"
                        "tokengate_backoff_total{event=\"refused\"} %uA\n"
                        "tokengate_backoff_total{event=\"probe\"} %uA\n",
                        ngx_http_tokengate_backoff_active(),
                        st->backoff_refused, st->backoff_probes);
        p = ngx_sprintf(p, "# HELP tokengate_shared_total Lookups in the "
                        "fleet's shared cache (tokengate_shared_cache), by "
                        "result.\n"
                        "# TYPE tokengate_shared_total counter\n");

        for (i = 0; i < NGX_HTTP_TOKENGATE_SHARED_N; i++) {
            p = ngx_sprintf(p, "tokengate_shared_total{result=\"%s\"} %uA\n",
                            ngx_http_tokengate_shared_names[i],
                            st->shared[i]);
        }

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

        p = ngx_sprintf(p, "},\"logout\":{");

        for (i = 0; i < NGX_HTTP_TOKENGATE_PURGE_TOKEN; i++) {
            p = ngx_sprintf(p, "%s\"%s\":%uA", i ? "," : "",
                            ngx_http_tokengate_logout_names[i],
                            st->logout[i]);
        }

        p = ngx_sprintf(p, "},\"purge\":{");

        for (i = NGX_HTTP_TOKENGATE_PURGE_TOKEN;
             i < NGX_HTTP_TOKENGATE_LOGOUT_N;
             i++)
        {
            p = ngx_sprintf(p, "%s\"%s\":%uA",
                            i != NGX_HTTP_TOKENGATE_PURGE_TOKEN ? "," : "",
                            ngx_http_tokengate_logout_names[i],
                            st->logout[i]);
        }

        p = ngx_sprintf(p, "},\"curl_handles\":{\"created\":%uA,"
                        "\"reused\":%uA},\"transfers\":{\"nginx\":%uA,"
                        "\"libcurl\":%uA},\"connections\":%uA,"
                        "\"backoff\":{\"active\":%ui,"
                        "\"refused\":%uA,\"probes\":%uA},"
                        "\"fail_limit_entries\":%ui,\"shared\":{",
                        st->handles_created, st->handles_reused,
                        st->transfers[0], st->transfers[1], st->connects,
                        ngx_http_tokengate_backoff_active(),
                        st->backoff_refused, st->backoff_probes,
                        limit_entries);

        for (i = 0; i < NGX_HTTP_TOKENGATE_SHARED_N; i++) {
            p = ngx_sprintf(p, "%s\"%s\":%uA", i ? "," : "",
                            ngx_http_tokengate_shared_names[i],
                            st->shared[i]);
        }

        p = ngx_sprintf(p, "}}\n");

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


/* The shared counters, NULL when no location has tokengate_status; r is
 * NULL for a call (ngx_http_tokengate_call), which has no request. */
ngx_http_tokengate_stats_t *
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


/* tokengate_status: a content handler; the counters get a small zone. */
char *
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
    return ngx_http_tokengate_init_struct_zone(shm_zone, data,
               sizeof(ngx_http_tokengate_stats_t));
}


/*
 * The init of a small zone holding one zeroed struct of size bytes (the
 * counters, the back-off): kept over a reload (data) and found again in
 * an existing zone.
 */
ngx_int_t
ngx_http_tokengate_init_struct_zone(ngx_shm_zone_t *shm_zone, void *data,
    size_t size)
{
    void             *p;
    ngx_slab_pool_t  *shpool;

    if (data != NULL) {
        shm_zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        return NGX_OK;
    }

    p = ngx_slab_calloc(shpool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    shpool->data = p;
    shm_zone->data = p;

    return NGX_OK;
}
