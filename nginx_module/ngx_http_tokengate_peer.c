/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_peer.c: the module's HTTP exchanges with the auth
 * server on nginx's own connections, the way ngx_http_upstream and its
 * keepalive module talk to a backend:
 *
 *   configuration  the server's addresses, resolved when nginx reads its
 *                  configuration (as proxy_pass resolves a host name), and
 *                  its TLS context (ngx_http_tokengate_peer_conf; the TLS
 *                  itself is ngx_http_tokengate_tls.c's);
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

/* Bytes one read event takes before it lets other events run. */
#define NGX_HTTP_TOKENGATE_PEER_SLICE      262144

/* Bytes an answer may take on the wire: the head, the body, and as much
 * again (and some) for chunk framing. */
#define NGX_HTTP_TOKENGATE_PEER_WIRE(body_max)                               \
    (TG__HTTP1_HEADER_BYTES_MAX + 2 * (body_max) + 65536)


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
static void ngx_http_tokengate_peer_arm(ngx_http_tokengate_handle_t *h,
    ngx_uint_t connecting);
static void ngx_http_tokengate_peer_write(ngx_event_t *wev);
static void ngx_http_tokengate_peer_read(ngx_event_t *rev);
static ngx_uint_t ngx_http_tokengate_peer_clean_end(ngx_connection_t *c);
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
static ngx_uint_t ngx_http_tokengate_peer_usable(ngx_connection_t *c);
static void ngx_http_tokengate_peer_idle(ngx_event_t *ev);
static void ngx_http_tokengate_peer_dummy(ngx_event_t *ev);
static void ngx_http_tokengate_peer_close(ngx_connection_t *c);
static void ngx_http_tokengate_peer_leave(ngx_http_tokengate_handle_t *h);
static void ngx_http_tokengate_peer_wake(ngx_event_t *ev);
static void ngx_http_tokengate_peer_drop(ngx_queue_t *queue);
#if (NGX_SSL)
static void ngx_http_tokengate_peer_handshaked(ngx_connection_t *c);
#endif


/* Per worker: kept connections (most recently used first), the transfers
 * waiting for a connection and those holding one, and how many connections
 * transfers hold. */
static ngx_queue_t   ngx_http_tokengate_kept;
static ngx_queue_t   ngx_http_tokengate_kept_free;
static ngx_uint_t    ngx_http_tokengate_nkept;
static ngx_queue_t   ngx_http_tokengate_waiting;
static ngx_queue_t   ngx_http_tokengate_running;
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
    ngx_http_tokengate_loc_conf_t *conf)
{
    u_char                          *p, *last, *host;
    ngx_url_t                        u;
    ngx_uint_t                       i, https;
    tg_config_t                     *tg;
    ngx_http_tokengate_peer_t       *peer;
    ngx_http_tokengate_tg_peer_t    *known;
    ngx_http_tokengate_main_conf_t  *tmcf;

    tg = conf->tg;

    /* one peer per tokengate.conf: resolved and given a TLS context
     * once, its connections kept for every location using it */

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_tokengate_module);

    if (tmcf->peers == NULL) {
        tmcf->peers = ngx_array_create(cf->pool, 4,
                                       sizeof(ngx_http_tokengate_tg_peer_t));
        if (tmcf->peers == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    known = tmcf->peers->elts;

    for (i = 0; i < tmcf->peers->nelts; i++) {
        if (known[i].tg == tg) {
            conf->peer = known[i].peer;
            return NGX_CONF_OK;
        }
    }

    known = ngx_array_push(tmcf->peers);
    if (known == NULL) {
        return NGX_CONF_ERROR;
    }

    known->tg = tg;
    known->peer = NULL;

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
    known->peer = peer;

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

    /* the buffer a kept handle holds serves again */

    tg__http1_reuse(&h->in, h->tg->max_response_bytes > 0
                            ? (size_t) h->tg->max_response_bytes : 0, 0);

    h->out_sent = 0;
    h->read = 0;
    h->started = ngx_current_msec;
    h->addr = 0;
    h->sent = 0;
    h->retried = 0;
    h->reused = 0;
    h->connecting = 0;
    h->keep = 0;

    /* debug logging reads a timer's data as a connection */

    h->deadline.handler = ngx_http_tokengate_peer_deadline;
    h->deadline.data = &ngx_http_tokengate_wake_conn;
    h->deadline.log = ngx_cycle->log;

    ngx_http_tokengate_peer_arm(h, 1);

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


/* A kept connection to h's server, else a new one (a retry goes straight
 * to a new one: ngx_http_tokengate_peer_retry). */
static void
ngx_http_tokengate_peer_next(ngx_http_tokengate_handle_t *h)
{
    ngx_connection_t  *c;

    c = ngx_http_tokengate_peer_kept(h->peer);

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
    ngx_msec_int_t               share;
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
        if (h->addr < h->peer->naddrs) {
            /* more addresses: this one gets its share of the time left
             * to connect, as libcurl gives each address of a name */
            share = (ngx_msec_int_t) (h->connect_by - ngx_current_msec)
                    / (ngx_msec_int_t) (h->peer->naddrs - h->addr + 1);

            ngx_add_timer(c->write, (ngx_msec_t) ngx_max(share, 1));
        }

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

    if (wev->timedout) {
        /* this address's share of the time is over */
        err = NGX_ETIMEDOUT;

    } else if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
               == -1)
    {
        err = ngx_socket_errno;
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
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

        if (ngx_ssl_create_connection(h->peer->ssl, c, NGX_SSL_CLIENT)
            != NGX_OK)
        {
            ngx_http_tokengate_peer_fail(h, TG_TLS, "TLS failure: cannot "
                                         "set up a TLS connection");
            return;
        }

        /* the certificate is checked once, after the handshake: a server
         * must not present another one later */

        SSL_set_options(c->ssl->connection, SSL_OP_NO_RENEGOTIATION);

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
    ngx_http_tokengate_peer_arm(h, 0);

    ngx_http_tokengate_peer_write(h->conn->write);
}


/*
 * The deadline: while (re)connecting, connect_timeout from the start of
 * the connection, within the whole call's timeout; then what is left of
 * the whole call's.  Re-armed from scratch (ngx_add_timer keeps a timer
 * that moves by less than NGX_TIMER_LAZY_DELAY).
 */
static void
ngx_http_tokengate_peer_arm(ngx_http_tokengate_handle_t *h,
    ngx_uint_t connecting)
{
    ngx_msec_int_t  left;

    left = (ngx_msec_int_t) (h->started + h->timeout - ngx_current_msec);

    if (connecting) {
        h->connect_by = ngx_current_msec
                        + ngx_min((ngx_msec_int_t) h->connect_timeout,
                                  ngx_max(left, 0));
        left = (ngx_msec_int_t) (h->connect_by - ngx_current_msec);
    }

    if (h->deadline.timer_set) {
        ngx_del_timer(&h->deadline);
    }

    ngx_add_timer(&h->deadline, (ngx_msec_t) ngx_max(left, 1));
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

            if (c->ssl) {
                /* libcurl names TLS for any failure on a TLS connection
                 * before an answer (curl_error.c) */
                ngx_http_tokengate_peer_fail(h, TG_TLS, "TLS failure: "
                                             "cannot send the request: %s",
                                             e ? strerror(e)
                                               : "connection closed");
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

    ngx_http_tokengate_peer_unwrite(h);

    wev->handler = ngx_http_tokengate_peer_dummy;

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_http_tokengate_peer_fail(h, TG_UNAVAILABLE,
                                     "cannot wait for the answer");
        return;
    }

    ngx_http_tokengate_peer_read(c->read);
}


static void
ngx_http_tokengate_peer_read(ngx_event_t *rev)
{
    size_t                        used, slice;
    ssize_t                       n;
    tg_err_t                      err;
    ngx_err_t                     e;
    tg_diag_t                     diag;
    ngx_connection_t             *c;
    ngx_http_tokengate_handle_t  *h;

    c = rev->data;
    h = c->data;

    if (c->close) {
        /* nginx is shutting down and its time for that is over */
        ngx_http_tokengate_peer_fail(h, TG_UNAVAILABLE,
                                     "nginx is shutting down");
        return;
    }

    if (!h->sent) {
        /* an early answer is read once the request is out */
        return;
    }

    for (slice = 0; /* void */; slice += n) {

        if (slice >= NGX_HTTP_TOKENGATE_PEER_SLICE) {
            /* a fast server does not keep the worker from its other
             * events: the rest is read on the next turn of the loop */
            ngx_post_event(rev, &ngx_posted_next_events);
            return;
        }

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

        if (n == 0 && !ngx_http_tokengate_peer_clean_end(c)) {
            /* a TLS connection reset: broken, not ended */
            n = NGX_ERROR;
        }

        if (n == NGX_ERROR) {
            e = ngx_socket_errno;

            if (!tg__http1_received(&h->in)
                && ngx_http_tokengate_peer_retry(h))
            {
                return;
            }

            if (!tg__http1_status_seen(&h->in)) {
                if (c->ssl) {
                    /* libcurl names TLS for any failure on a TLS
                     * connection before an answer (curl_error.c) */
                    ngx_http_tokengate_peer_fail(h, TG_TLS, "TLS failure: "
                                                 "the connection broke "
                                                 "before an answer: %s",
                                                 e ? strerror(e)
                                                   : "no close_notify");
                    return;
                }

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
                                         e ? strerror(e)
                                           : c->ssl ? "no close_notify"
                                                    : "receive error");
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

        /* what the chunk framing can add to a body is bounded too */

        h->read += n;

        if (h->read > NGX_HTTP_TOKENGATE_PEER_WIRE(
                          (size_t) h->tg->max_response_bytes))
        {
            explicit_bzero(ngx_http_tokengate_rbuf, (size_t) n);
            ngx_http_tokengate_peer_fail(h, TG_PROTOCOL,
                                         "response larger than "
                                         "max_response_bytes (%ld)",
                                         h->tg->max_response_bytes);
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
 * A read of 0 bytes ended the connection, rather than broke it.  nginx's
 * TLS layer reads 0 for a close_notify, a close without one, and a reset
 * alike; libcurl takes the first two for the end of the connection (an
 * answer delimited by it is whole: a JSON body cut short does not parse)
 * and a reset for a TLS failure, and so does this, by the system error
 * the read left.
 */
static ngx_uint_t
ngx_http_tokengate_peer_clean_end(ngx_connection_t *c)
{
#if (NGX_SSL)
    if (c->ssl) {
        return ngx_socket_errno == 0;
    }
#endif

    return 1;
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
    h->read = 0;
    h->sent = 0;
    h->addr = 0;

    tg__http1_reset(&h->in, NGX_HTTP_TOKENGATE_BODY_KEEP);

    /* a new connection gets connect_timeout, within what is left */

    ngx_http_tokengate_peer_arm(h, 1);

    ngx_http_tokengate_peer_connect(h);

    return 1;
}


static void
ngx_http_tokengate_peer_deadline(ngx_event_t *ev)
{
    ngx_http_tokengate_handle_t  *h;

    h = (ngx_http_tokengate_handle_t *)
            ((u_char *) ev - offsetof(ngx_http_tokengate_handle_t, deadline));

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

    ngx_http_tokengate_peer_leave(h);

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

    ngx_http_tokengate_peer_leave(h);
}


/* h gives its connection up (if it held one): a waiting transfer may
 * start (from a posted event: never inside another transfer's end). */
static void
ngx_http_tokengate_peer_leave(ngx_http_tokengate_handle_t *h)
{
    if (!h->holds) {
        return;
    }

    h->holds = 0;
    ngx_queue_remove(&h->wait);
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

        ngx_queue_insert_tail(&ngx_http_tokengate_running, q);
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
        || !ngx_http_tokengate_peer_usable(c))
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

    if (ngx_handle_write_event(c->write, 0) != NGX_OK
        || ngx_handle_read_event(c->read, 0) != NGX_OK
        || c->read->ready)
    {
        ngx_http_tokengate_peer_idle(c->read);
    }
}


/*
 * Whether c may carry another call: no error or timeout on it, younger
 * than NGX_HTTP_TOKENGATE_PEER_LIFETIME, and for TLS, no bytes OpenSSL
 * read ahead (they would be taken for the next call's answer), no
 * close_notify, no sticky error.
 */
static ngx_uint_t
ngx_http_tokengate_peer_usable(ngx_connection_t *c)
{
    if (c->read->eof || c->read->error || c->read->timedout
        || c->write->error || c->write->timedout
        || ngx_current_msec - c->start_time
           >= NGX_HTTP_TOKENGATE_PEER_LIFETIME)
    {
        return 0;
    }

#if (NGX_SSL)
    if (c->ssl
        && (SSL_has_pending(c->ssl->connection)
            || SSL_get_shutdown(c->ssl->connection) != 0
            || (c->ssl->last != NGX_OK && c->ssl->last != NGX_AGAIN)))
    {
        return 0;
    }
#endif

    return 1;
}


/* The most recently kept connection to peer that may carry a call; NULL
 * when none.  Connections kept for an earlier configuration (a reload
 * without a master process) are closed on the way. */
static ngx_connection_t *
ngx_http_tokengate_peer_kept(ngx_http_tokengate_peer_t *peer)
{
    ngx_queue_t                *q, *next;
    ngx_connection_t           *c;
    ngx_http_tokengate_kept_t  *k;

    for (q = ngx_queue_head(&ngx_http_tokengate_kept);
         q != ngx_queue_sentinel(&ngx_http_tokengate_kept);
         q = next)
    {
        next = ngx_queue_next(q);
        k = ngx_queue_data(q, ngx_http_tokengate_kept_t, queue);

        if (k->cycle == ngx_cycle && k->peer != peer) {
            continue;
        }

        c = k->connection;

        ngx_queue_remove(q);
        ngx_queue_insert_head(&ngx_http_tokengate_kept_free, q);
        ngx_http_tokengate_nkept--;

        if (k->cycle != ngx_cycle || !ngx_http_tokengate_peer_usable(c)) {
            c->log = ngx_cycle->log;
            c->read->log = ngx_cycle->log;
            c->write->log = ngx_cycle->log;
            ngx_http_tokengate_peer_close(c);
            continue;
        }

        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        c->read->cancelable = 0;

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
    ngx_queue_init(&ngx_http_tokengate_running);
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

    /* transfers cut short by the exit: closed, their secrets wiped */

    ngx_http_tokengate_peer_drop(&ngx_http_tokengate_waiting);
    ngx_http_tokengate_peer_drop(&ngx_http_tokengate_running);

    if (ngx_http_tokengate_wake_ev.posted) {
        ngx_delete_posted_event(&ngx_http_tokengate_wake_ev);
    }
}


/* The request's bytes (they hold a token, or a secret): wiped and freed;
 * h->req still holds the request (a retry writes it again). */
void
ngx_http_tokengate_peer_unwrite(ngx_http_tokengate_handle_t *h)
{
    tg_secret_free_len(h->out, h->out_cap);
    h->out = NULL;
    h->out_len = 0;
    h->out_cap = 0;
}


static void
ngx_http_tokengate_peer_drop(ngx_queue_t *queue)
{
    ngx_queue_t                  *q;
    ngx_http_tokengate_handle_t  *h;

    while (!ngx_queue_empty(queue)) {
        q = ngx_queue_head(queue);
        h = ngx_queue_data(q, ngx_http_tokengate_handle_t, wait);

        ngx_http_tokengate_peer_stop(h);

        tg_request_clear(&h->req);
        ngx_http_tokengate_peer_unwrite(h);
        tg__http1_free(&h->in);
    }
}
