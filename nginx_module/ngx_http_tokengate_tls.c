/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_tls.c: the TLS of the module's own connections to an
 * https auth server (ngx_http_tokengate_peer.c): the context a peer gets
 * when the configuration is read (TLS 1.2 or later, the trust of
 * tokengate.conf, pinned_pubkey read as libcurl reads it), and the check
 * of a server after the handshake, before a byte of the request: chain,
 * name or address, pins.
 */


#include "ngx_http_tokengate.h"


#if (NGX_SSL)

static ngx_int_t ngx_http_tokengate_peer_pins(ngx_conf_t *cf,
    ngx_http_tokengate_peer_t *peer, const char *pinned);


/*
 * The TLS context of an https server, with what common/curl.c sets for
 * libcurl: TLS 1.2 or later, the peer verified against ca_file and
 * ca_path, or libcurl's own CA bundle when neither is set (never a bundle
 * the environment chooses: OpenSSL's default paths are not loaded), and
 * pinned_pubkey.  NGX_DECLINED: a pinned_pubkey this code cannot read,
 * left to libcurl (which refuses every connection then, as before).
 */
ngx_int_t
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
ngx_int_t
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
        /* as libcurl: a wildcard only as a whole left-most label */
        ok = (X509_check_host(cert, (char *) peer->host_z,
                              ngx_strlen(peer->host_z),
                              X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL)
              == 1);
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

