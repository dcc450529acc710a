/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_peer.c: the module's HTTP exchanges with the auth
 * server on nginx's own connections, the way ngx_http_upstream and its
 * keepalive module talk to a backend:
 *
 *   configuration  the server's addresses, resolved when nginx reads its
 *                  configuration (as proxy_pass resolves a host name), and
 *                  its TLS context (ngx_http_tokengate_peer_conf);
 *   a transfer     a kept connection, or ngx_event_connect_peer() over the
 *                  addresses in turn, then the TLS handshake, the request
 *                  and the answer, with one deadline per transfer
 *                  (ngx_http_tokengate_peer_start);
 *   keepalive      connections idle between transfers, per worker,
 *                  closed when the server closes them, after
 *                  NGX_HTTP_TOKENGATE_PEER_IDLE, after
 *                  NGX_HTTP_TOKENGATE_PEER_LIFETIME, or when nginx exits.
 *
 * The bytes are common/http1.c's (the request written once with memcpy,
 * the answer parsed in one pass with libcurl's caps), the answer goes the
 * one way every transfer's end goes (ngx_http_tokengate_ended in
 * ngx_http_tokengate_curl.c), and each failure gets the tg_err_t the same
 * fault gets from libcurl (common/curl_error.c), so nginx, the CLI and PAM
 * still give one error per fault.  A location whose tokengate.conf names
 * a proxy, or whose host cannot be resolved when the configuration is
 * read, keeps libcurl's transfers (ngx_http_tokengate_curl.c).
 */


#include "ngx_http_tokengate.h"

#include <tg_http1.h>


/* Connections a worker keeps idle, and for how long. */
#define NGX_HTTP_TOKENGATE_PEER_KEEP       64
#define NGX_HTTP_TOKENGATE_PEER_IDLE       118000
#define NGX_HTTP_TOKENGATE_PEER_LIFETIME   (TG__CURL_MAXLIFETIME_CONN * 1000)

/* One read's buffer: a validation's answer is well under a kilobyte. */
#define NGX_HTTP_TOKENGATE_PEER_READ       16384


/* A kept connection: the record outlives nothing it points to but the
 * connection (peer and cycle are compared, never followed). */
typedef struct {
    ngx_queue_t                queue;
    ngx_connection_t          *connection;
    ngx_http_tokengate_peer_t *peer;
    volatile ngx_cycle_t      *cycle;
} ngx_http_tokengate_kept_t;


static void ngx_http_tokengate_peer_next(ngx_http_tokengate_handle_t *h);
static void ngx_http_tokengate_peer_connect(ngx_http_tokengate_handle_t *h);
static void ngx_http_tokengate_peer_connected(ngx_event_t *wev);
static void ngx_http_tokengate_peer_ready(ngx_http_tokengate_handle_t *h);
static void ngx_http_tokengate_peer_write(ngx_event_t *wev);
static void ngx_http_tokengate_peer_read(ngx_event_t *rev);
static void ngx_http_tokengate_peer_deadline(ngx_event_t *ev);
static void ngx_http_tokengate_peer_fail(ngx_http_tokengate_handle_t *h,
    tg_err_t err, const char *fmt, ...);
static void ngx_http_tokengate_peer_failed(ngx_http_tokengate_handle_t *h,
    tg_err_t err, tg_diag_t *diag);
static void ngx_http_tokengate_peer_done(ngx_http_tokengate_handle_t *h);
static ngx_uint_t ngx_http_tokengate_peer_retry(
    ngx_http_tokengate_handle_t *h);
static void ngx_http_tokengate_peer_keep(ngx_connection_t *c,
    ngx_http_tokengate_peer_t *peer);
static ngx_connection_t *ngx_http_tokengate_peer_kept(
    ngx_http_tokengate_peer_t *peer);
static void ngx_http_tokengate_peer_idle(ngx_event_t *ev);
static void ngx_http_tokengate_peer_dummy(ngx_event_t *ev);
static void ngx_http_tokengate_peer_close(ngx_connection_t *c);
static void ngx_http_tokengate_peer_leave(void);
static void ngx_http_tokengate_peer_wake(ngx_event_t *ev);
#if (NGX_SSL)
static ngx_int_t ngx_http_tokengate_peer_ssl(ngx_conf_t *cf,
    ngx_http_tokengate_peer_t *peer, tg_config_t *tg);
static void ngx_http_tokengate_peer_handshaked(ngx_connection_t *c);
static ngx_int_t ngx_http_tokengate_peer_verify(ngx_connection_t *c,
    ngx_http_tokengate_peer_t *peer, tg_diag_t *diag);
static ngx_int_t ngx_http_tokengate_peer_pins(ngx_conf_t *cf,
    ngx_http_tokengate_peer_t *peer, const char *pinned);
#endif


/* Per worker: kept connections (most recently used first), the transfers
 * waiting for a connection, and how many connections transfers hold. */
static ngx_queue_t   ngx_http_tokengate_kept;
static ngx_queue_t   ngx_http_tokengate_kept_free;
static ngx_uint_t    ngx_http_tokengate_nkept;
static ngx_queue_t   ngx_http_tokengate_waiting;
static ngx_uint_t    ngx_http_tokengate_busy;
static ngx_uint_t    ngx_http_tokengate_busy_max;
static ngx_event_t   ngx_http_tokengate_wake_ev;
static ngx_connection_t  ngx_http_tokengate_wake_conn;

static u_char        ngx_http_tokengate_rbuf[NGX_HTTP_TOKENGATE_PEER_READ];


/*
 * Configuration: the server of conf->tg as a peer, or NULL (libcurl's
 * transfers) when its tokengate.conf names a proxy or its host does not
 * resolve now.  Locations that share a tokengate.conf share the peer.
 */
char *
ngx_http_tokengate_peer_conf(ngx_conf_t *cf,
    ngx_http_tokengate_loc_conf_t *conf, ngx_http_tokengate_loc_conf_t *prev)
{
    u_char                     *p, *last, *host;
    ngx_url_t                   u;
    ngx_uint_t                  https;
    tg_config_t                *tg;
    ngx_http_tokengate_peer_t  *peer;

    tg = conf->tg;

    if (tg == prev->tg && prev->peer != NGX_CONF_UNSET_PTR) {
        conf->peer = prev->peer;
        return NGX_CONF_OK;
    }

    conf->peer = NULL;

    if (tg->proxy != NULL && tg->proxy[0] != '\0') {
        return NGX_CONF_OK;
    }

    p = (u_char *) tg->url;
    last = p + ngx_strlen(p);

    if (ngx_strncasecmp(p, (u_char *) "https://", 8) == 0) {
        https = 1;
        p += 8;

    } else if (ngx_strncasecmp(p, (u_char *) "http://", 7) == 0) {
        https = 0;
        p += 7;

    } else {
        return NGX_CONF_OK;
    }

#if !(NGX_SSL)
    if (https) {
        return NGX_CONF_OK;
    }
#endif

    for (host = p; p < last && *p != '/' && *p != '?' && *p != '#'; p++) {
        if (*p == '@') {
            /* credentials in the URL: libcurl's to handle */
            return NGX_CONF_OK;
        }
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = host;
    u.url.len = p - host;
    u.default_port = https ? 443 : 80;
    u.no_resolve = 0;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "tokengate: \"%V\" %s%s: its calls go through "
                           "libcurl, which resolves the name for each new "
                           "connection", &u.url,
                           u.err ? "cannot be resolved now: " : "",
                           u.err ? u.err : "has no address");
        return NGX_CONF_OK;
    }

    peer = ngx_pcalloc(cf->pool, sizeof(ngx_http_tokengate_peer_t));
    if (peer == NULL) {
        return NGX_CONF_ERROR;
    }

    peer->addrs = u.addrs;
    peer->naddrs = u.naddrs;
    peer->name = u.url;
    peer->host = u.host;
    peer->https = https;

    peer->name_z = ngx_pnalloc(cf->pool, u.url.len + 1);
    if (peer->name_z == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(peer->name_z, u.url.data, u.url.len + 1);

#if (NGX_SSL)
    if (https) {
        switch (ngx_http_tokengate_peer_ssl(cf, peer, tg)) {
        case NGX_OK:
            break;
        case NGX_DECLINED:
            return NGX_CONF_OK;
        default:
            return NGX_CONF_ERROR;
        }
    }
#endif

    conf->peer = peer;

    return NGX_CONF_OK;
}


/*
 * Start h's transfer (h->req and the limits are set): on a kept
 * connection, a new one, or after another transfer gives its connection
 * back.  Its end, whatever it is, reaches ngx_http_tokengate_ended.
 */
ngx_int_t
ngx_http_tokengate_peer_start(ngx_http_tokengate_handle_t *h)
{
    tg_diag_t  diag;

    tg_diag_clear(&diag);

    if (tg__http1_request(&h->req, &h->out, &h->out_len, &h->out_cap, &diag)
        != TG_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "tokengate: cannot write the request: %s",
                      diag.message);
        return NGX_ERROR;
    }

    tg__http1_init(&h->in, h->tg->max_response_bytes > 0
                           ? (size_t) h->tg->max_response_bytes : 0, 0);

    h->out_sent = 0;
    h->started = ngx_current_msec;
    h->addr = 0;
    h->sent = 0;
    h->retried = 0;
    h->reused = 0;
    h->connecting = 0;

    h->deadline.handler = ngx_http_tokengate_peer_deadline;
    h->deadline.data = h;
    h->deadline.log = ngx_cycle->log;

    /* until connected, the first of the two limits; then the whole
     * transfer's */

    ngx_add_timer(&h->deadline, ngx_min(h->connect_timeout, h->timeout));

    /* it starts from a posted event, never inside its caller (which may
     * be another transfer's end): a connect that fails at once must not
     * finish a request under its own access handler */

    h->waiting = 1;
    ngx_queue_insert_tail(&ngx_http_tokengate_waiting, &h->wait);

    if (!ngx_http_tokengate_wake_ev.posted) {
        ngx_post_event(&ngx_http_tokengate_wake_ev, &ngx_posted_events);
    }

    return NGX_OK;
}


/* A kept connection to h's server, else a new one. */
static void
ngx_http_tokengate_peer_next(ngx_http_tokengate_handle_t *h)
{
    ngx_connection_t  *c;

    c = h->retried ? NULL : ngx_http_tokengate_peer_kept(h->peer);

    if (c == NULL) {
        ngx_http_tokengate_peer_connect(h);
        return;
    }

    h->conn = c;
    h->reused = 1;

    c->data = h;
    c->read->handler = ngx_http_tokengate_peer_read;
    c->write->handler = ngx_http_tokengate_peer_write;
    c->idle = 0;

    ngx_http_tokengate_peer_ready(h);
}


/* A new connection to the next of the server's addresses. */
static void
ngx_http_tokengate_peer_connect(ngx_http_tokengate_handle_t *h)
{
    ngx_int_t                    rc;
    ngx_err_t                    err;
    ngx_addr_t                  *addr;
    ngx_connection_t            *c;
    ngx_peer_connection_t        pc;
    ngx_http_tokengate_stats_t  *st;

    h->reused = 0;

    for ( ;; ) {
        if (h->addr >= h->peer->naddrs) {
            err = h->connect_errno;
            ngx_http_tokengate_peer_fail(h, TG_UNAVAILABLE,
                                         "cannot connect: %s",
                                         err ? strerror(err) : "no address");
            return;
        }

        addr = &h->peer->addrs[h->addr++];

        ngx_memzero(&pc, sizeof(ngx_peer_connection_t));

        pc.sockaddr = addr->sockaddr;
        pc.socklen = addr->socklen;
        pc.name = &addr->name;
        pc.get = ngx_event_get_peer;
        pc.log = ngx_cycle->log;
        pc.log_error = NGX_ERROR_ERR;

        ngx_set_errno(0);

        rc = ngx_event_connect_peer(&pc);

        if (rc == NGX_DECLINED) {
            h->connect_errno = ngx_socket_errno;
            continue;
        }

        if (rc == NGX_ERROR || rc == NGX_BUSY || pc.connection == NULL) {
            ngx_http_tokengate_peer_fail(h, TG_UNAVAILABLE,
                                         "cannot connect: no socket or "
                                         "connection left in this worker");
            return;
        }

        break;
    }

    c = pc.connection;
    h->conn = c;

    st = ngx_http_tokengate_get_stats(NULL);

    if (st != NULL) {
        (void) ngx_atomic_fetch_add(&st->connects, 1);
    }

    c->data = h;
    c->read->handler = ngx_http_tokengate_peer_read;
    c->write->handler = ngx_http_tokengate_peer_connected;
    c->sendfile = 0;
    c->log_error = NGX_ERROR_INFO;
    c->start_time = ngx_current_msec;

    c->pool = ngx_create_pool(128, ngx_cycle->log);
    if (c->pool == NULL) {
        ngx_http_tokengate_peer_fail(h, TG_NOMEM, "out of memory");
        return;
    }

    h->connecting = 1;

    if (rc == NGX_AGAIN) {
        return;
    }

    ngx_http_tokengate_peer_connected(c->write);
}


/* The connection is up (or its connect failed): check, then TLS or the
 * request. */
static void
ngx_http_tokengate_peer_connected(ngx_event_t *wev)
{
    int                           err;
    socklen_t                     len;
    ngx_connection_t             *c;
    ngx_http_tokengate_handle_t  *h;

    c = wev->data;
    h = c->data;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        /* the next address, or the end */
        h->connect_errno = err;
        h->conn = NULL;
        h->connecting = 0;
        ngx_http_tokengate_peer_close(c);
        ngx_http_tokengate_peer_connect(h);
        return;
    }

    c->write->handler = ngx_http_tokengate_peer_write;

#if (NGX_SSL)

    if (h->peer->https) {
        ngx_int_t  rc;

        if (ngx_ssl_create_connection(h->peer->ssl, c,
                                      NGX_SSL_BUFFER|NGX_SSL_CLIENT)
            != NGX_OK)
        {
            ngx_http_tokengate_peer_fail(h, TG_TLS, "TLS failure: cannot "
                                         "set up a TLS connection");
            return;
        }

        if (!h->peer->ip
            && SSL_set_tlsext_host_name(c->ssl->connection,
                                        (char *) h->peer->host_z)
               == 0)
        {
            ngx_http_tokengate_peer_fail(h, TG_TLS, "TLS failure: cannot "
                                         "set the server name");
            return;
        }

        rc = ngx_ssl_handshake(c);

        if (rc == NGX_AGAIN) {
            c->ssl->handler = ngx_http_tokengate_peer_handshaked;
            return;
        }

        ngx_http_tokengate_peer_handshaked(c);
        return;
    }

#endif

    h->connecting = 0;
    ngx_http_tokengate_peer_ready(h);
}


#if (NGX_SSL)

/* The TLS handshake ended: the certificate and the pins, or a TLS
 * failure. */
static void
ngx_http_tokengate_peer_handshaked(ngx_connection_t *c)
{
    tg_diag_t                     diag;
    ngx_http_tokengate_handle_t  *h;

    h = c->data;

    tg_diag_clear(&diag);

    if (!c->ssl->handshaked) {
        ngx_http_tokengate_peer_fail(h, TG_TLS, "TLS failure: no TLS "
                                     "handshake with %s", h->peer->name_z);
        return;
    }

    if (ngx_http_tokengate_peer_verify(c, h->peer, &diag) != NGX_OK) {
        ngx_http_tokengate_peer_failed(h, TG_TLS, &diag);
        return;
    }

    c->read->handler = ngx_http_tokengate_peer_read;
    c->write->handler = ngx_http_tokengate_peer_write;

    h->connecting = 0;
    ngx_http_tokengate_peer_ready(h);
}

#endif


/* Connected (or reused): the whole transfer's deadline, then the
 * request. */
static void
ngx_http_tokengate_peer_ready(ngx_http_tokengate_handle_t *h)
{
    ngx_msec_int_t  left;

    left = (ngx_msec_int_t) (h->started + h->timeout - ngx_current_msec);

    if (left <= 0) {
        left = 1;
    }

    ngx_add_timer(&h->deadline, (ngx_msec_t) left);

    ngx_http_tokengate_peer_write(h->conn->write);
}


static void
ngx_http_tokengate_peer_write(ngx_event_t *wev)
{
    ssize_t                       n;
    ngx_err_t                     e;
    ngx_connection_t             *c;
    ngx_http_tokengate_handle_t  *h;

    c = wev->data;
    h = c->data;

    while (h->out_sent < h->out_len) {
        ngx_set_socket_errno(0);

        n = c->send(c, (u_char *) h->out + h->out_sent,
                    h->out_len - h->out_sent);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                break;
            }

            return;
        }

        if (n == NGX_ERROR || n <= 0) {
            e = ngx_socket_errno;

            if (ngx_http_tokengate_peer_retry(h)) {
                return;
            }

            ngx_http_tokengate_peer_fail(h, TG_UNAVAILABLE,
                                         "cannot send the request: %s",
                                         e ? strerror(e)
                                           : "connection closed");
            return;
        }

        h->out_sent += n;
    }

    if (h->out_sent < h->out_len) {
        ngx_http_tokengate_peer_fail(h, TG_UNAVAILABLE,
                                     "cannot send the request");
        return;
    }

    h->sent = 1;

    /* the request (a token, or a secret) is not needed any more */

    tg_secret_free_len(h->out, h->out_cap);
    h->out = NULL;
    h->out_len = 0;
    h->out_cap = 0;

    wev->handler = ngx_http_tokengate_peer_dummy;

    ngx_http_tokengate_peer_read(c->read);
}


static void
ngx_http_tokengate_peer_read(ngx_event_t *rev)
{
    size_t                        used;
    ssize_t                       n;
    tg_err_t                      err;
    ngx_err_t                     e;
    tg_diag_t                     diag;
    ngx_connection_t             *c;
    ngx_http_tokengate_handle_t  *h;

    c = rev->data;
    h = c->data;

    if (!h->sent) {
        /* an early answer is read once the request is out */
        return;
    }

    for ( ;; ) {
        ngx_set_socket_errno(0);

        n = c->recv(c, ngx_http_tokengate_rbuf,
                    NGX_HTTP_TOKENGATE_PEER_READ);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_http_tokengate_peer_fail(h, TG_UNAVAILABLE,
                                             "cannot wait for the answer");
            }

            return;
        }

        if (n == NGX_ERROR) {
            e = ngx_socket_errno;

            if (!tg__http1_received(&h->in)
                && ngx_http_tokengate_peer_retry(h))
            {
                return;
            }

#if (NGX_SSL)
            if (c->ssl && e == 0 && !tg__http1_status_seen(&h->in)) {
                /* no system error: TLS itself (an unclean shutdown, an
                 * alert), as libcurl's errors say it */
                ngx_http_tokengate_peer_fail(h, TG_TLS, "TLS failure: the "
                                             "connection broke before an "
                                             "answer");
                return;
            }
#endif

            if (!tg__http1_status_seen(&h->in)) {
                ngx_http_tokengate_peer_fail(h, TG_UNAVAILABLE,
                                             "connection broken before an "
                                             "answer: %s",
                                             e ? strerror(e)
                                               : "receive error");
                return;
            }

            ngx_http_tokengate_peer_fail(h, TG_PROTOCOL,
                                         "connection broken while reading "
                                         "the answer: %s",
                                         e ? strerror(e) : "receive error");
            return;
        }

        if (n == 0) {
            if (!tg__http1_received(&h->in)
                && ngx_http_tokengate_peer_retry(h))
            {
                return;
            }

            tg_diag_clear(&diag);

            err = tg__http1_eof(&h->in, &diag);

            if (err != TG_OK) {
                ngx_http_tokengate_peer_failed(h, err, &diag);
                return;
            }

            h->keep = 0;
            ngx_http_tokengate_peer_done(h);
            return;
        }

        tg_diag_clear(&diag);

        err = tg__http1_parse(&h->in, (char *) ngx_http_tokengate_rbuf,
                              (size_t) n, &used, &diag);

        /* the bytes may hold a token (an exchange's answer) */
        explicit_bzero(ngx_http_tokengate_rbuf, (size_t) n);

        if (err != TG_OK) {
            ngx_http_tokengate_peer_failed(h, err, &diag);
            return;
        }

        if (tg__http1_done(&h->in)) {
            h->keep = (used == (size_t) n && tg__http1_keepalive(&h->in));
            ngx_http_tokengate_peer_done(h);
            return;
        }
    }
}


/*
 * A kept connection that died before any byte of an answer came (the
 * server closed it while it was idle, as HTTP allows): the request goes
 * once more, on a new connection.  1 when it does.
 */
static ngx_uint_t
ngx_http_tokengate_peer_retry(ngx_http_tokengate_handle_t *h)
{
    tg_diag_t  diag;

    if (!h->reused || h->retried) {
        return 0;
    }

    ngx_http_tokengate_peer_close(h->conn);
    h->conn = NULL;
    h->retried = 1;

    if (h->out == NULL) {
        /* written and wiped: write it again */
        tg_diag_clear(&diag);

        if (tg__http1_request(&h->req, &h->out, &h->out_len, &h->out_cap,
                              &diag)
            != TG_OK)
        {
            ngx_http_tokengate_peer_failed(h, TG_INTERNAL, &diag);
            return 1;
        }
    }

    h->out_sent = 0;
    h->sent = 0;
    h->addr = 0;

    tg__http1_reset(&h->in, NGX_HTTP_TOKENGATE_BODY_KEEP);

    ngx_http_tokengate_peer_connect(h);

    return 1;
}


static void
ngx_http_tokengate_peer_deadline(ngx_event_t *ev)
{
    ngx_http_tokengate_handle_t  *h;

    h = ev->data;

    if (h->waiting || h->connecting) {
        ngx_http_tokengate_peer_fail(h, TG_TIMEOUT,
                                     "could not connect within %.1f s "
                                     "(timed out)",
                                     (double) ngx_min(h->connect_timeout,
                                                      h->timeout) / 1000.0);
        return;
    }

    ngx_http_tokengate_peer_fail(h, TG_TIMEOUT,
                                 "no answer within %.1f s (timed out)",
                                 (double) h->timeout / 1000.0);
}


/* The transfer failed: its connection is closed, and the owner told
 * why. */
static void
ngx_http_tokengate_peer_fail(ngx_http_tokengate_handle_t *h, tg_err_t err,
    const char *fmt, ...)
{
    va_list    args;
    tg_diag_t  diag;

    tg_diag_clear(&diag);

    va_start(args, fmt);
    (void) vsnprintf(diag.message, sizeof(diag.message), fmt, args);
    va_end(args);

    ngx_http_tokengate_peer_failed(h, err, &diag);
}


static void
ngx_http_tokengate_peer_failed(ngx_http_tokengate_handle_t *h, tg_err_t err,
    tg_diag_t *diag)
{
    ngx_http_tokengate_peer_stop(h);

    ngx_http_tokengate_ended(h->ctx, err, NULL, diag);
}


/* The answer is complete: the connection is kept or closed, then the owner
 * reads the answer (still in h until the handle goes back). */
static void
ngx_http_tokengate_peer_done(ngx_http_tokengate_handle_t *h)
{
    tg_diag_t          diag;
    tg_response_t      resp;
    ngx_connection_t  *c;

    c = h->conn;
    h->conn = NULL;

    if (h->deadline.timer_set) {
        ngx_del_timer(&h->deadline);
    }

    if (h->keep) {
        ngx_http_tokengate_peer_keep(c, h->peer);

    } else {
        ngx_http_tokengate_peer_close(c);
    }

    if (h->holds) {
        h->holds = 0;
        ngx_http_tokengate_peer_leave();
    }

    tg__http1_response(&h->in, &resp, h->tg->retry_after_max);

    tg_diag_clear(&diag);

    ngx_http_tokengate_ended(h->ctx, TG_OK, &resp, &diag);
}


/* Stop h's transfer where it is: out of the queue, no timer, no
 * connection (a transfer cut short leaves it in an unknown state). */
void
ngx_http_tokengate_peer_stop(ngx_http_tokengate_handle_t *h)
{
    if (h->deadline.timer_set) {
        ngx_del_timer(&h->deadline);
    }

    if (h->waiting) {
        h->waiting = 0;
        ngx_queue_remove(&h->wait);
    }

    if (h->conn != NULL) {
        ngx_http_tokengate_peer_close(h->conn);
        h->conn = NULL;
    }

    h->connecting = 0;

    if (h->holds) {
        h->holds = 0;
        ngx_http_tokengate_peer_leave();
    }
}


/* A transfer gave its connection up: a waiting one may start (from a
 * posted event: never inside another transfer's end). */
static void
ngx_http_tokengate_peer_leave(void)
{
    ngx_http_tokengate_busy--;

    if (!ngx_queue_empty(&ngx_http_tokengate_waiting)
        && !ngx_http_tokengate_wake_ev.posted)
    {
        ngx_post_event(&ngx_http_tokengate_wake_ev, &ngx_posted_events);
    }
}


static void
ngx_http_tokengate_peer_wake(ngx_event_t *ev)
{
    ngx_queue_t                  *q;
    ngx_http_tokengate_handle_t  *h;

    while (ngx_http_tokengate_busy < ngx_http_tokengate_busy_max
           && !ngx_queue_empty(&ngx_http_tokengate_waiting))
    {
        q = ngx_queue_head(&ngx_http_tokengate_waiting);
        ngx_queue_remove(q);

        h = ngx_queue_data(q, ngx_http_tokengate_handle_t, wait);
        h->waiting = 0;

        ngx_http_tokengate_busy++;
        h->holds = 1;

        ngx_http_tokengate_peer_next(h);
    }
}


/* Keep c for the next transfer to peer, like the upstream keepalive
 * module: closed on any event while idle, by its idle timer, or by nginx
 * when it exits (c->idle). */
static void
ngx_http_tokengate_peer_keep(ngx_connection_t *c,
    ngx_http_tokengate_peer_t *peer)
{
    ngx_queue_t                *q;
    ngx_http_tokengate_kept_t  *k;

    if (ngx_exiting || ngx_terminate || ngx_quit
        || c->read->eof || c->read->error || c->read->timedout
        || c->write->error || c->write->timedout
        || ngx_current_msec - c->start_time
           >= NGX_HTTP_TOKENGATE_PEER_LIFETIME)
    {
        ngx_http_tokengate_peer_close(c);
        return;
    }

    if (ngx_http_tokengate_nkept >= NGX_HTTP_TOKENGATE_PEER_KEEP) {
        /* the least recently used one goes */
        q = ngx_queue_last(&ngx_http_tokengate_kept);
        k = ngx_queue_data(q, ngx_http_tokengate_kept_t, queue);
        ngx_http_tokengate_peer_close(k->connection);
        ngx_queue_remove(q);
        ngx_http_tokengate_nkept--;

    } else if (!ngx_queue_empty(&ngx_http_tokengate_kept_free)) {
        q = ngx_queue_head(&ngx_http_tokengate_kept_free);
        ngx_queue_remove(q);
        k = ngx_queue_data(q, ngx_http_tokengate_kept_t, queue);

    } else {
        k = ngx_alloc(sizeof(ngx_http_tokengate_kept_t), ngx_cycle->log);
        if (k == NULL) {
            ngx_http_tokengate_peer_close(c);
            return;
        }
    }

    k->connection = c;
    k->peer = peer;
    k->cycle = ngx_cycle;

    ngx_queue_insert_head(&ngx_http_tokengate_kept, &k->queue);
    ngx_http_tokengate_nkept++;

    c->data = k;
    c->idle = 1;
    c->read->handler = ngx_http_tokengate_peer_idle;
    c->write->handler = ngx_http_tokengate_peer_dummy;
    c->log = ngx_cycle->log;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    ngx_add_timer(c->read, NGX_HTTP_TOKENGATE_PEER_IDLE);
    c->read->cancelable = 1;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK || c->read->ready) {
        ngx_http_tokengate_peer_idle(c->read);
    }
}


/* The most recently kept connection to peer, of this configuration and
 * not too old; NULL when none. */
static ngx_connection_t *
ngx_http_tokengate_peer_kept(ngx_http_tokengate_peer_t *peer)
{
    ngx_queue_t                *q;
    ngx_connection_t           *c;
    ngx_http_tokengate_kept_t  *k;

    for (q = ngx_queue_head(&ngx_http_tokengate_kept);
         q != ngx_queue_sentinel(&ngx_http_tokengate_kept);
         q = ngx_queue_next(q))
    {
        k = ngx_queue_data(q, ngx_http_tokengate_kept_t, queue);

        if (k->peer != peer || k->cycle != ngx_cycle) {
            continue;
        }

        c = k->connection;

        ngx_queue_remove(q);
        ngx_queue_insert_head(&ngx_http_tokengate_kept_free, q);
        ngx_http_tokengate_nkept--;

        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        c->read->cancelable = 0;

        if (ngx_current_msec - c->start_time
            >= NGX_HTTP_TOKENGATE_PEER_LIFETIME)
        {
            ngx_http_tokengate_peer_close(c);
            return NULL;
        }

        return c;
    }

    return NULL;
}


/* An event on an idle connection: the server closed it, sent something it
 * should not have, or it is time to close it. */
static void
ngx_http_tokengate_peer_idle(ngx_event_t *ev)
{
    int                         n;
    char                        buf[1];
    ngx_connection_t           *c;
    ngx_http_tokengate_kept_t  *k;

    c = ev->data;

    if (!c->close && !ev->timedout) {
        n = recv(c->fd, buf, 1, MSG_PEEK);

        if (n == -1 && ngx_socket_errno == NGX_EAGAIN) {
            ev->ready = 0;

            if (ngx_handle_read_event(c->read, 0) == NGX_OK) {
                return;
            }
        }
    }

    k = c->data;

    ngx_queue_remove(&k->queue);
    ngx_queue_insert_head(&ngx_http_tokengate_kept_free, &k->queue);
    ngx_http_tokengate_nkept--;

    ngx_http_tokengate_peer_close(c);
}


static void
ngx_http_tokengate_peer_dummy(ngx_event_t *ev)
{
}


static void
ngx_http_tokengate_peer_close(ngx_connection_t *c)
{
    ngx_pool_t  *pool;

#if (NGX_SSL)

    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        c->ssl->no_send_shutdown = 1;

        (void) ngx_ssl_shutdown(c);
    }

#endif

    pool = c->pool;
    c->pool = NULL;

    ngx_close_connection(c);

    if (pool != NULL) {
        ngx_destroy_pool(pool);
    }
}


/* Per worker: the queues, and how many connections transfers may hold at
 * once (as many as libcurl's multi handle allowed: beyond them,
 * transfers wait, their deadline running). */
ngx_int_t
ngx_http_tokengate_peer_init_process(ngx_cycle_t *cycle)
{
    ngx_queue_init(&ngx_http_tokengate_kept);
    ngx_queue_init(&ngx_http_tokengate_kept_free);
    ngx_queue_init(&ngx_http_tokengate_waiting);
    ngx_http_tokengate_nkept = 0;
    ngx_http_tokengate_busy = 0;
    ngx_http_tokengate_busy_max = ngx_max(cycle->connection_n / 4, 8);

    ngx_http_tokengate_wake_conn.fd = (ngx_socket_t) -1;
    ngx_http_tokengate_wake_ev.data = &ngx_http_tokengate_wake_conn;
    ngx_http_tokengate_wake_ev.handler = ngx_http_tokengate_peer_wake;
    ngx_http_tokengate_wake_ev.log = cycle->log;

    return NGX_OK;
}


void
ngx_http_tokengate_peer_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t                *q;
    ngx_http_tokengate_kept_t  *k;

    if (ngx_http_tokengate_kept.next == NULL) {
        return;
    }

    while (!ngx_queue_empty(&ngx_http_tokengate_kept)) {
        q = ngx_queue_head(&ngx_http_tokengate_kept);
        ngx_queue_remove(q);
        k = ngx_queue_data(q, ngx_http_tokengate_kept_t, queue);
        ngx_http_tokengate_peer_close(k->connection);
        ngx_free(k);
    }

    while (!ngx_queue_empty(&ngx_http_tokengate_kept_free)) {
        q = ngx_queue_head(&ngx_http_tokengate_kept_free);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_http_tokengate_kept_t, queue));
    }

    ngx_http_tokengate_nkept = 0;

    if (ngx_http_tokengate_wake_ev.posted) {
        ngx_delete_posted_event(&ngx_http_tokengate_wake_ev);
    }
}


#if (NGX_SSL)

/*
 * The TLS context of an https server, with what common/curl.c sets for
 * libcurl: TLS 1.2 or later, the peer verified against ca_file and
 * ca_path, or libcurl's own CA bundle when neither is set (never a bundle
 * the environment chooses: OpenSSL's default paths are not loaded), and
 * pinned_pubkey.  NGX_DECLINED: a pinned_pubkey this code cannot read,
 * left to libcurl (which refuses every connection then, as before).
 */
static ngx_int_t
ngx_http_tokengate_peer_ssl(ngx_conf_t *cf, ngx_http_tokengate_peer_t *peer,
    tg_config_t *tg)
{
    const char                *file, *path;
    ngx_pool_cleanup_t        *cln;
    const curl_version_info_data  *v;

    peer->host_z = ngx_pnalloc(cf->pool, peer->host.len + 1);
    if (peer->host_z == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn(peer->host_z, peer->host.data, peer->host.len + 1);

    /* an address literal has no server name (RFC 6066 3) */

    peer->ip = (peer->host.len > 0 && peer->host.data[0] == '[')
               || ngx_inet_addr(peer->host.data, peer->host.len)
                  != INADDR_NONE;

    if (peer->host.len > 2 && peer->host.data[0] == '[') {
        /* "[::1]": the address without its brackets */
        (void) ngx_cpystrn(peer->host_z, peer->host.data + 1,
                           peer->host.len - 1);
    }

    if (tg->pinned_pubkey != NULL && tg->pinned_pubkey[0] != '\0'
        && ngx_http_tokengate_peer_pins(cf, peer, tg->pinned_pubkey)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    peer->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (peer->ssl == NULL) {
        return NGX_ERROR;
    }

    peer->ssl->log = cf->log;

    if (ngx_ssl_create(peer->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(peer->ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = peer->ssl;

    file = (tg->ca_file != NULL && tg->ca_file[0] != '\0') ? tg->ca_file
                                                           : NULL;
    path = (tg->ca_path != NULL && tg->ca_path[0] != '\0') ? tg->ca_path
                                                           : NULL;

    if (file == NULL && path == NULL) {
        v = curl_version_info(CURLVERSION_NOW);

        if (v != NULL) {
            file = v->cainfo;
            path = v->capath;
        }
    }

    /* the chain is verified during the handshake and its result checked
     * before a byte is sent (ngx_http_tokengate_peer_verify), as nginx's
     * proxy_ssl_verify does */

    SSL_CTX_set_verify(peer->ssl->ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_verify_depth(peer->ssl->ctx, 100);

    if ((file != NULL || path != NULL)
        && SSL_CTX_load_verify_locations(peer->ssl->ctx, file, path) != 1)
    {
        /* as with libcurl, every connection fails verification then */
        ngx_ssl_error(NGX_LOG_WARN, cf->log, 0,
                      "tokengate: cannot load the CA certificates of "
                      "\"%s\" (ca_file \"%s\", ca_path \"%s\")",
                      peer->name_z, file != NULL ? file : "",
                      path != NULL ? path : "");
    }

    ERR_clear_error();

    return NGX_OK;
}


/*
 * pinned_pubkey as libcurl reads it: "sha256//BASE64" hashes separated by
 * ';', or a file holding the public key (PEM or DER).
 */
static ngx_int_t
ngx_http_tokengate_peer_pins(ngx_conf_t *cf, ngx_http_tokengate_peer_t *peer,
    const char *pinned)
{
    int         n;
    BIO        *bio;
    u_char     *der, *p;
    ngx_str_t   b64, *pin;
    EVP_PKEY   *key;
    const char *s, *e;

    if (ngx_strncmp(pinned, "sha256//", 8) == 0) {
        peer->pins = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
        if (peer->pins == NULL) {
            return NGX_ERROR;
        }

        for (s = pinned; *s != '\0'; s = (*e == ';') ? e + 1 : e) {
            if (ngx_strncmp(s, "sha256//", 8) != 0) {
                return NGX_ERROR;
            }

            s += 8;

            for (e = s; *e != '\0' && *e != ';'; e++) { /* void */ }

            b64.data = (u_char *) s;
            b64.len = e - s;

            pin = ngx_array_push(peer->pins);
            if (pin == NULL) {
                return NGX_ERROR;
            }

            pin->data = ngx_pnalloc(cf->pool,
                                    ngx_base64_decoded_length(b64.len));
            if (pin->data == NULL
                || ngx_decode_base64(pin, &b64) != NGX_OK
                || pin->len != NGX_HTTP_TOKENGATE_MAC_LEN)
            {
                return NGX_ERROR;
            }
        }

        return NGX_OK;
    }

    bio = BIO_new_file(pinned, "r");
    if (bio == NULL) {
        ERR_clear_error();
        return NGX_ERROR;
    }

    key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);

    if (key == NULL) {
        (void) BIO_reset(bio);
        key = d2i_PUBKEY_bio(bio, NULL);
    }

    BIO_free(bio);
    ERR_clear_error();

    if (key == NULL) {
        return NGX_ERROR;
    }

    n = i2d_PUBKEY(key, NULL);

    if (n <= 0) {
        EVP_PKEY_free(key);
        return NGX_ERROR;
    }

    der = ngx_pnalloc(cf->pool, n);
    if (der == NULL) {
        EVP_PKEY_free(key);
        return NGX_ERROR;
    }

    p = der;
    n = i2d_PUBKEY(key, &p);
    EVP_PKEY_free(key);

    if (n <= 0) {
        return NGX_ERROR;
    }

    peer->pin_der.data = der;
    peer->pin_der.len = n;

    return NGX_OK;
}


/* After the handshake, before a byte of the request: the chain, the name
 * (or address) and the pins. */
static ngx_int_t
ngx_http_tokengate_peer_verify(ngx_connection_t *c,
    ngx_http_tokengate_peer_t *peer, tg_diag_t *diag)
{
    int           n;
    long          rc;
    X509         *cert;
    u_char       *der, *p;
    ngx_int_t     ok;
    ngx_uint_t    i;
    ngx_str_t    *pin;
    unsigned int  len;
    u_char        md[EVP_MAX_MD_SIZE];

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        (void) snprintf(diag->message, sizeof(diag->message),
                    "TLS failure: the certificate of %s does not verify: "
                    "%s", peer->name_z, X509_verify_cert_error_string(rc));
        return NGX_ERROR;
    }

    cert = SSL_get_peer_certificate(c->ssl->connection);
    if (cert == NULL) {
        (void) snprintf(diag->message, sizeof(diag->message),
                    "TLS failure: %s sent no certificate", peer->name_z);
        return NGX_ERROR;
    }

    if (peer->ip) {
        ok = (X509_check_ip_asc(cert, (char *) peer->host_z, 0) == 1);

    } else {
        ok = (X509_check_host(cert, (char *) peer->host_z,
                              ngx_strlen(peer->host_z), 0, NULL) == 1);
    }

    if (!ok) {
        X509_free(cert);
        (void) snprintf(diag->message, sizeof(diag->message),
                    "TLS failure: the certificate is not for \"%s\"",
                    (char *) peer->host_z);
        return NGX_ERROR;
    }

    if (peer->pins == NULL && peer->pin_der.len == 0) {
        X509_free(cert);
        return NGX_OK;
    }

    der = NULL;
    n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
    X509_free(cert);

    if (n <= 0 || der == NULL) {
        ERR_clear_error();
        (void) snprintf(diag->message, sizeof(diag->message),
                    "TLS failure: cannot read the server's public key");
        return NGX_ERROR;
    }

    ok = 0;

    if (peer->pin_der.len != 0) {
        ok = ((size_t) n == peer->pin_der.len
              && ngx_memcmp(der, peer->pin_der.data, n) == 0);

    } else if (EVP_Digest(der, n, md, &len, EVP_sha256(), NULL) == 1) {
        pin = peer->pins->elts;

        for (i = 0; i < peer->pins->nelts; i++) {
            if (pin[i].len == len && ngx_memcmp(pin[i].data, md, len) == 0) {
                ok = 1;
                break;
            }
        }
    }

    p = der;
    OPENSSL_free(p);

    if (!ok) {
        (void) snprintf(diag->message, sizeof(diag->message),
                    "TLS failure: the public key of %s does not match "
                    "pinned_pubkey", peer->name_z);
        return NGX_ERROR;
    }

    return NGX_OK;
}

#endif
