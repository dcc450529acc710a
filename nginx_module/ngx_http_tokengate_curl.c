
/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_curl.c: the HTTP transfers of ngx_http_tokengate_module,
 * on one curl multi handle per worker driven by nginx's event loop through
 * the multi-socket API:
 *
 *   CURLMOPT_SOCKETFUNCTION  -> an ngx_connection_t wrapping curl's fd, whose
 *                               read/write events call curl back;
 *   CURLMOPT_TIMERFUNCTION   -> one nginx timer (a zero delay is a zero
 *                               timer: libcurl is never called from inside
 *                               its own callback);
 *   CURLMSG_DONE             -> ngx_http_tokengate_complete(), the one way
 *                               a transfer's end reaches its owner.
 *
 * It owns the sockets (opened and closed by nginx, CURLOPT_OPENSOCKET /
 * CLOSESOCKET), the worker's pool of kept easy handles (their options and
 * buffers are common/curl.c's, as for the CLI and PAM), the one way to
 * start a transfer (ngx_http_tokengate_send; ngx_http_tokengate_call for
 * other parts of the module) and the process lifecycle of the multi
 * handle.
 */


#include "ngx_http_tokengate.h"


/* Kept-alive connections to the auth server per worker. */
#define NGX_HTTP_TOKENGATE_MAXCONNECTS     64

/* Idle handles a worker keeps for the next transfers. */
#define NGX_HTTP_TOKENGATE_HANDLES_MAX     64

/* How many idle handles are looked at for one whose options match. */
#define NGX_HTTP_TOKENGATE_HANDLES_SCAN    8


static ngx_http_tokengate_handle_t *ngx_http_tokengate_handle_get(
    ngx_http_tokengate_loc_conf_t *tlcf, ngx_uint_t http, ngx_uint_t native,
    ngx_http_tokengate_stats_t *st, ngx_log_t *log);
static ngx_int_t ngx_http_tokengate_handle_setup(
    ngx_http_tokengate_handle_t *h);
static void ngx_http_tokengate_handle_put(ngx_http_tokengate_handle_t *h,
    ngx_uint_t reusable);
static void ngx_http_tokengate_handle_free(ngx_http_tokengate_handle_t *h);
static void ngx_http_tokengate_complete(ngx_http_tokengate_ctx_t *ctx,
    CURLcode rc);
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


/* Per worker: the multi handle, its timer, and in-flight transfers. */
CURLM                    *ngx_http_tokengate_multi;
static ngx_event_t        ngx_http_tokengate_timer;
static ngx_connection_t   ngx_http_tokengate_timer_conn;
static ngx_uint_t         ngx_http_tokengate_in_flight;
static ngx_uint_t         ngx_http_tokengate_exiting;

/* The fds libcurl uses and their connections, by fd: nginx owns the
 * lifetime of the sockets (ngx_http_tokengate_open_socket). */
static ngx_http_tokengate_sock_t  *ngx_http_tokengate_socks;
static ngx_uint_t                  ngx_http_tokengate_nsocks;

/* Per worker: the kept easy handles, and the cycle they were set up in. */
static ngx_queue_t        ngx_http_tokengate_handles;
static ngx_uint_t         ngx_http_tokengate_nhandles;
static volatile ngx_cycle_t  *ngx_http_tokengate_handles_cycle;


/*
 * Send req (taken over, wiped when the transfer ends) on a handle of the
 * worker's free list, or a new one; NGX_OK once it is in the multi.
 */
ngx_int_t
ngx_http_tokengate_send(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf, tg_request_t *req, ngx_log_t *log)
{
    CURLMcode                     mrc;
    tg_diag_t                     diag;
    ngx_uint_t                    http, native;
    ngx_http_tokengate_stats_t   *st;
    ngx_http_tokengate_handle_t  *h;

    http = (req->url != NULL
            && ngx_strncasecmp((u_char *) req->url, (u_char *) "http://", 7)
               == 0);

    native = (tlcf->peer != NULL);

    st = ngx_http_tokengate_get_stats(ctx->request);

    h = ngx_http_tokengate_handle_get(tlcf, http, native, st, log);
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

    if (st != NULL) {
        (void) ngx_atomic_fetch_add(&st->transfers[native ? 0 : 1], 1);
    }

    if (native) {
        if (ngx_http_tokengate_peer_start(h) != NGX_OK) {
            goto failed;
        }

    } else {
        tg_diag_clear(&diag);

        if (tg__curl_request(&h->cu, &h->req, &diag) != TG_OK) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "tokengate: cannot set up the transfer");
            goto failed;
        }

        mrc = curl_multi_add_handle(ngx_http_tokengate_multi, h->cu.easy);
        if (mrc != CURLM_OK) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "tokengate: curl_multi_add_handle() failed: %s",
                          curl_multi_strerror(mrc));
            goto failed;
        }
    }

    ctx->sent_at = ngx_time();
    ctx->done = 0;

    return NGX_OK;

failed:

    /* the request is wiped with the handle; a handle curl may have seen
     * is not kept */

    ctx->handle = NULL;
    ngx_http_tokengate_handle_put(h, native);

    return NGX_ERROR;
}


/* For a transfer on nginx's own connections, the first idle handle (only
 * its buffers serve); for libcurl, an idle handle whose constant options
 * fit this location, else one set up again (curl_easy_reset), else a new
 * one. */
static ngx_http_tokengate_handle_t *
ngx_http_tokengate_handle_get(ngx_http_tokengate_loc_conf_t *tlcf,
    ngx_uint_t http, ngx_uint_t native, ngx_http_tokengate_stats_t *st,
    ngx_log_t *log)
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
         !native
         && q != ngx_queue_sentinel(&ngx_http_tokengate_handles)
         && i < NGX_HTTP_TOKENGATE_HANDLES_SCAN;
         q = ngx_queue_next(q), i++)
    {
        h = ngx_queue_data(q, ngx_http_tokengate_handle_t, queue);

        if (h->ready
            && h->cu.cfg == tlcf->tg && h->cu.timeout_ms == timeout
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

    /* none fits (or its options do not matter): the first idle one, or a
     * new one */

    if (!ngx_queue_empty(&ngx_http_tokengate_handles)) {
        q = ngx_queue_head(&ngx_http_tokengate_handles);
        ngx_queue_remove(q);
        ngx_http_tokengate_nhandles--;

        h = ngx_queue_data(q, ngx_http_tokengate_handle_t, queue);

        if (st != NULL) {
            (void) ngx_atomic_fetch_add(&st->handles_reused, 1);
        }

    } else {
        h = ngx_calloc(sizeof(ngx_http_tokengate_handle_t), log);
        if (h == NULL) {
            return NULL;
        }

        if (st != NULL) {
            (void) ngx_atomic_fetch_add(&st->handles_created, 1);
        }
    }

    h->cycle = ngx_cycle;

    if (native) {
        /* only its buffers serve: its curl options stay as they are */

        h->native = 1;
        h->peer = tlcf->peer;
        h->tg = tlcf->tg;
        h->timeout = (ngx_msec_t) timeout;
        h->connect_timeout = (ngx_msec_t) connect_timeout;

        return h;
    }

    h->ready = 0;

    if (h->cu.easy != NULL) {
        curl_easy_reset(h->cu.easy);

    } else {
        h->cu.easy = curl_easy_init();
        if (h->cu.easy == NULL) {
            ngx_http_tokengate_handle_free(h);
            return NULL;
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

    if (h->native) {
        h->native = 0;
        ngx_http_tokengate_peer_unwrite(h);
        tg__http1_reset(&h->in, NGX_HTTP_TOKENGATE_BODY_KEEP);

    } else if (tg__curl_end(&h->cu, NGX_HTTP_TOKENGATE_BODY_KEEP) != 0
               || !h->ready)
    {
        reusable = 0;
    }

    tg_request_clear(&h->req);

    if (!reusable || ngx_http_tokengate_exiting
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
    tg__http1_free(&h->in);
    ngx_http_tokengate_peer_unwrite(h);
    tg_request_clear(&h->req);

    ngx_free(h);
}


/* The request's transfer is over or abandoned, and its handle out of the
 * multi: give the handle back. */
void
ngx_http_tokengate_release(ngx_http_tokengate_ctx_t *ctx)
{
    if (ctx->handle != NULL) {
        ngx_http_tokengate_handle_put(ctx->handle, 1);
        ctx->handle = NULL;
    }
}


/* Stop a running transfer (a request or a call that goes away first) and
 * give its handle back. */
void
ngx_http_tokengate_abort(ngx_http_tokengate_ctx_t *ctx)
{
    if (ctx->backoff_probe) {
        /* a cancelled probe learnt nothing: the next request probes */
        (void) ngx_http_tokengate_backoff_record(ctx->backoff_key,
                                                 ctx->tg->url, TG_INTERNAL,
                                                 NULL, 1, ngx_cycle->log);
        ctx->backoff_probe = 0;
    }

    if (ctx->handle->native) {
        /* its connection is closed, its deadline gone */
        ngx_http_tokengate_peer_stop(ctx->handle);
        ngx_http_tokengate_release(ctx);
        return;
    }

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


/* A libcurl transfer's end (out of the multi already): its answer, or its
 * error through common/curl.c's map, to ngx_http_tokengate_ended. */
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

    ngx_http_tokengate_ended(ctx, err, answer, &diag);
}


/*
 * The one way the end of a transfer reaches its owner, an access check or
 * a call of another part of the module, whichever transport ran it: the
 * answer (err TG_OK), or the error with the one map's reason, goes to the
 * owner's handler.  Runs from nginx's event loop, never from libcurl's
 * stack (drain runs once libcurl's callbacks have returned), so the
 * handler may start transfers (it may start the next one on this ctx: a
 * token exchange's validation) and finalize requests.  Then the handle
 * goes back; a call is freed.
 */
void
ngx_http_tokengate_ended(ngx_http_tokengate_ctx_t *ctx, tg_err_t err,
    tg_response_t *answer, tg_diag_t *diag)
{
    time_t  until;

    ctx->done = 1;

    if (ctx->backoff_key != NULL) {
        until = ngx_http_tokengate_backoff_record(ctx->backoff_key,
                                                  ctx->tg->url, err, answer,
                                                  ctx->backoff_probe,
                                                  ngx_cycle->log);
        ctx->backoff_probe = 0;

        /* a Retry-After deadline quiets the fleet (a connect failure may
         * be this node's own) */

        if (until > 0 && answer != NULL) {
            ngx_http_tokengate_shared_backoff(ctx->backoff_key, until);
        }
    }

    ctx->handler(ctx->data, err, answer, ctx->sent_at, diag->message);

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

    /* an entry left for this fd, just returned by socket(), is a socket
     * libcurl closed behind our back: forget it (no fstat needed) */

    if ((ngx_uint_t) s < ngx_http_tokengate_nsocks
        && ngx_http_tokengate_socks[s].connection != NULL)
    {
        ngx_http_tokengate_sock_forget(&ngx_http_tokengate_socks[s]);
    }

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


/* The fd is closed (by libcurl itself) or about to be: its connection is
 * let go of without closing it. */
static void
ngx_http_tokengate_sock_forget(ngx_http_tokengate_sock_t *sk)
{
    ngx_connection_t  *c;

    c = sk->connection;
    sk->connection = NULL;

    ngx_http_tokengate_forget_connection(c);
}


/*
 * Let go of c, whose fd its library closes (libcurl, hiredis) or is about
 * to: the kernel drops a closed fd from epoll, so its events are
 * forgotten without a system call (what NGX_CLOSE_EVENT means), and the
 * connection is freed, not closed.
 */
void
ngx_http_tokengate_forget_connection(ngx_connection_t *c)
{
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

    /* Only a socket curl stops watching may be one it closed itself (a
     * connect it gave up): the inode is checked then.  A socket curl
     * wants events on is open, and open_socket replaces the entry of a
     * reused fd: the table alone answers, without an fstat per call. */

    if (what == CURL_POLL_REMOVE) {
        sk = ngx_http_tokengate_sock_find(s);

    } else if (s >= 0 && (ngx_uint_t) s < ngx_http_tokengate_nsocks
               && ngx_http_tokengate_socks[s].connection != NULL)
    {
        sk = &ngx_http_tokengate_socks[s];

    } else {
        sk = NULL;
    }

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
void
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
    time_t                     wait;
    ngx_uint_t                 probe;
    ngx_http_tokengate_ctx_t  *ctx;

    if (ngx_http_tokengate_multi == NULL || tlcf->tg == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tokengate: no curl multi handle in this process");
        tg_request_clear(req);
        return NULL;
    }

    if (ngx_http_tokengate_backoff_check(tlcf, log, &wait, &probe)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tokengate: auth server %s: backing off, no call "
                      "for %T s", tlcf->tg->url, wait);
        tg_request_clear(req);
        return NULL;
    }

    ctx = ngx_calloc(sizeof(ngx_http_tokengate_ctx_t), log);
    if (ctx == NULL) {
        tg_request_clear(req);
        return NULL;
    }

    ctx->tg = tlcf->tg;

    if (tlcf->backoff) {
        ctx->backoff_key = tlcf->backoff_key;
        ctx->backoff_probe = probe;
    }

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


ngx_int_t
ngx_http_tokengate_init_module(ngx_cycle_t *cycle)
{
    CURLcode  rc;

    /* once per process, before any thread exists; never cleaned up */

    rc = tg__curl_global_init();
    if (rc != CURLE_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "tokengate: curl_global_init() failed: %s",
                      curl_easy_strerror(rc));
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* A worker's multi handle, its timer and its pool of easy handles. */
ngx_int_t
ngx_http_tokengate_curl_init_process(ngx_cycle_t *cycle)
{
    CURLM  *m;

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

    ngx_queue_init(&ngx_http_tokengate_handles);
    ngx_http_tokengate_nhandles = 0;
    ngx_http_tokengate_handles_cycle = ngx_cycle;

    return ngx_http_tokengate_peer_init_process(cycle);
}


void
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

    ngx_http_tokengate_peer_exit_process(cycle);

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
