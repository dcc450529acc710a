
/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_seal.c: what the fleet's shared cache
 * (tokengate_shared_cache) stores, and how it is sealed.
 *
 * Keys: prefix + hex(HMAC-SHA-256(K_mac, len || token || basic ||
 * fingerprint)) (ngx_http_tokengate_mac, the zone's own MAC, under the
 * fleet's key), never a token.  Values: a version byte, a random 96-bit
 * nonce, the AES-256-GCM ciphertext and its tag, under K_aead, with the
 * version byte and the Redis key as associated data (an entry moved to
 * another key does not open).  K_mac and K_aead are derived from key_file
 * with HKDF-SHA-256 (one salt, one info each).  The plain text: flags
 * (negative, has_profile), evaluation, disabled, the token's expiry, the
 * first validation, the end of freshness, the number of groups, then id,
 * name, email and the groups, each NUL-terminated (the zone's encoding,
 * ngx_http_tokengate_decode).  An
 * entry that does not open or parse is ignored, counted (shared_rejected)
 * and never admitted.
 */


#include "ngx_http_tokengate.h"

#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>


#define NGX_HTTP_TOKENGATE_SEAL_VERSION    1
/* flags, evaluation, disabled, expires_at, first_seen, fresh_until,
 * n_groups */
#define NGX_HTTP_TOKENGATE_PLAIN_HEAD      (3 + 8 + 8 + 8 + 2)
#define NGX_HTTP_TOKENGATE_VALUE_MAX       16384
#define NGX_HTTP_TOKENGATE_KEY_FILE_MAX    4096

#define NGX_HTTP_TOKENGATE_F_NEGATIVE      0x01
#define NGX_HTTP_TOKENGATE_F_PROFILE       0x02


static ngx_int_t ngx_http_tokengate_hkdf(const u_char *ikm, size_t len,
    const char *info, u_char *out, size_t out_len);
static void ngx_http_tokengate_lookup_done(void *data, ngx_int_t rc,
    u_char *value, size_t len);


static void
ngx_http_tokengate_put64(u_char *p, uint64_t v)
{
    ngx_uint_t  i;

    for (i = 0; i < 8; i++) {
        p[i] = (u_char) (v >> (56 - 8 * i));
    }
}


static uint64_t
ngx_http_tokengate_get64(u_char *p)
{
    uint64_t    v;
    ngx_uint_t  i;

    v = 0;

    for (i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }

    return v;
}


/* key_file's keys: K_mac and K_aead, HKDF-SHA-256 of its bytes. */
ngx_int_t
ngx_http_tokengate_shared_keys(ngx_conf_t *cf, ngx_http_tokengate_shared_t *sh,
    ngx_str_t *key_file)
{
    ngx_int_t  ok;
    ngx_str_t  key;

    if (ngx_http_tokengate_read_secret(cf, key_file, "key_file", 32, 1, &key)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ok = ngx_http_tokengate_hkdf(key.data, key.len, "tokengate fleet key-mac",
                                 sh->mac_key, sizeof(sh->mac_key))
         == NGX_OK
         && ngx_http_tokengate_hkdf(key.data, key.len, "tokengate fleet aead",
                                    sh->aead_key, sizeof(sh->aead_key))
            == NGX_OK;

    ngx_explicit_memzero(key.data, key.len);

    if (!ok) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tokengate_shared_cache: HKDF failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A secret file: a regular file of min to NGX_HTTP_TOKENGATE_KEY_FILE_MAX
 * bytes, readable by its owner only (and owned by root when root is set).
 */
ngx_int_t
ngx_http_tokengate_read_secret(ngx_conf_t *cf, ngx_str_t *name,
    const char *what, size_t min, ngx_uint_t root, ngx_str_t *out)
{
    u_char           *path;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_str_t         full;
    ngx_file_info_t   fi;

    full = *name;

    if (ngx_conf_full_name(cf->cycle, &full, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    path = full.data;

    fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "tokengate_shared_cache: %s \"%s\" cannot be "
                           "opened", what, path);
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR || !ngx_is_file(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tokengate_shared_cache: %s \"%s\" is not a "
                           "regular file", what, path);
        goto failed;
    }

    if (root && fi.st_uid != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tokengate_shared_cache: %s \"%s\" is not owned "
                           "by root", what, path);
        goto failed;
    }

    if (fi.st_mode & 077) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tokengate_shared_cache: %s \"%s\" has mode "
                           "0%d%d%d: it must be readable by its owner only "
                           "(0600)", what, path, (int) (fi.st_mode >> 6) & 7,
                           (int) (fi.st_mode >> 3) & 7,
                           (int) fi.st_mode & 7);
        goto failed;
    }

    if ((size_t) fi.st_size < min
        || fi.st_size > NGX_HTTP_TOKENGATE_KEY_FILE_MAX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tokengate_shared_cache: %s \"%s\" has %O bytes: "
                           "it must have %uz to %d (head -c 32 "
                           "/dev/urandom)", what, path, fi.st_size, min,
                           NGX_HTTP_TOKENGATE_KEY_FILE_MAX);
        goto failed;
    }

    out->data = ngx_pnalloc(cf->pool, fi.st_size);
    if (out->data == NULL) {
        goto failed;
    }

    n = read(fd, out->data, fi.st_size);

    if (n != fi.st_size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "tokengate_shared_cache: %s \"%s\" cannot be "
                           "read", what, path);
        goto failed;
    }

    out->len = n;
    (void) ngx_close_file(fd);

    return NGX_OK;

failed:

    (void) ngx_close_file(fd);
    return NGX_ERROR;
}


static ngx_int_t
ngx_http_tokengate_hkdf(const u_char *ikm, size_t len, const char *info,
    u_char *out, size_t out_len)
{
    int            ok;
    EVP_KDF       *kdf;
    OSSL_PARAM     params[5];
    EVP_KDF_CTX   *kctx;
    static char    salt[] = "tokengate fleet cache v1";

    kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    if (kdf == NULL) {
        return NGX_ERROR;
    }

    kctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);

    if (kctx == NULL) {
        return NGX_ERROR;
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
                                                 (char *) "SHA256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                                  (void *) ikm, len);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                                  salt, sizeof(salt) - 1);
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                                  (void *) info,
                                                  ngx_strlen(info));
    params[4] = OSSL_PARAM_construct_end();

    ok = EVP_KDF_derive(kctx, out, out_len, params);

    EVP_KDF_CTX_free(kctx);

    return ok == 1 ? NGX_OK : NGX_ERROR;
}


/* The token's Redis key: prefix + hex of its MAC under K_mac. */
ngx_int_t
ngx_http_tokengate_shared_key(ngx_http_tokengate_shared_t *sh,
    ngx_str_t *token, ngx_uint_t basic, const u_char *fingerprint,
    u_char *out, size_t *len)
{
    u_char  *p, mac[NGX_HTTP_TOKENGATE_MAC_LEN];

    if (ngx_http_tokengate_mac(sh->mac_key, token, basic, fingerprint, mac)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_cpymem(out, sh->prefix.data, sh->prefix.len);
    p = ngx_hex_dump(p, mac, sizeof(mac));
    *len = p - out;

    ngx_explicit_memzero(mac, sizeof(mac));

    return NGX_OK;
}


/* version || nonce || AES-256-GCM(plain) || tag, with version || skey as
 * associated data; out has room for NGX_HTTP_TOKENGATE_SEALED(plain_len)
 * bytes.  Also for other values kept in Redis (the fleet's back-off and
 * failure counters), each under its own key. */
ngx_int_t
ngx_http_tokengate_seal(ngx_http_tokengate_shared_t *sh, u_char *skey,
    size_t skey_len, u_char *plain, size_t plain_len, u_char *out)
{
    int              n, ok;
    u_char          *nonce, *ct;
    EVP_CIPHER_CTX  *cctx;

    out[0] = NGX_HTTP_TOKENGATE_SEAL_VERSION;
    nonce = out + 1;
    ct = nonce + NGX_HTTP_TOKENGATE_NONCE_LEN;

    if (RAND_bytes(nonce, NGX_HTTP_TOKENGATE_NONCE_LEN) != 1) {
        return NGX_ERROR;
    }

    cctx = EVP_CIPHER_CTX_new();
    if (cctx == NULL) {
        return NGX_ERROR;
    }

    ok = EVP_EncryptInit_ex(cctx, EVP_aes_256_gcm(), NULL, sh->aead_key,
                            nonce) == 1
         && EVP_EncryptUpdate(cctx, NULL, &n, out, 1) == 1
         && EVP_EncryptUpdate(cctx, NULL, &n, skey, (int) skey_len) == 1
         && EVP_EncryptUpdate(cctx, ct, &n, plain, (int) plain_len) == 1
         && (size_t) n == plain_len
         && EVP_EncryptFinal_ex(cctx, ct + n, &n) == 1
         && EVP_CIPHER_CTX_ctrl(cctx, EVP_CTRL_GCM_GET_TAG,
                                NGX_HTTP_TOKENGATE_TAG_LEN, ct + plain_len)
            == 1;

    EVP_CIPHER_CTX_free(cctx);

    return ok ? NGX_OK : NGX_ERROR;
}


/* Open a sealed value into out (room for len bytes); the plain length,
 * or NGX_ERROR for anything that does not open. */
ngx_int_t
ngx_http_tokengate_open(ngx_http_tokengate_shared_t *sh, u_char *skey,
    size_t skey_len, u_char *value, size_t len, u_char *out)
{
    int              n, ok;
    size_t           ct_len;
    u_char          *nonce, *ct;
    EVP_CIPHER_CTX  *cctx;

    if (len < NGX_HTTP_TOKENGATE_SEALED(0)
        || len > NGX_HTTP_TOKENGATE_VALUE_MAX
        || value[0] != NGX_HTTP_TOKENGATE_SEAL_VERSION)
    {
        return NGX_ERROR;
    }

    nonce = value + 1;
    ct = nonce + NGX_HTTP_TOKENGATE_NONCE_LEN;
    ct_len = len - 1 - NGX_HTTP_TOKENGATE_NONCE_LEN
             - NGX_HTTP_TOKENGATE_TAG_LEN;

    cctx = EVP_CIPHER_CTX_new();
    if (cctx == NULL) {
        return NGX_ERROR;
    }

    ok = EVP_DecryptInit_ex(cctx, EVP_aes_256_gcm(), NULL, sh->aead_key,
                            nonce) == 1
         && EVP_DecryptUpdate(cctx, NULL, &n, value, 1) == 1
         && EVP_DecryptUpdate(cctx, NULL, &n, skey, (int) skey_len) == 1
         && EVP_DecryptUpdate(cctx, out, &n, ct, (int) ct_len) == 1
         && (size_t) n == ct_len
         && EVP_CIPHER_CTX_ctrl(cctx, EVP_CTRL_GCM_SET_TAG,
                                NGX_HTTP_TOKENGATE_TAG_LEN, ct + ct_len) == 1
         && EVP_DecryptFinal_ex(cctx, out + n, &n) == 1;

    EVP_CIPHER_CTX_free(cctx);

    if (!ok) {
        ngx_explicit_memzero(out, ct_len);
        return NGX_ERROR;
    }

    return (ngx_int_t) ct_len;
}


/*
 * Write the BI server's answer for the token (id, or NULL: rejected) to
 * Redis, sealed, for as long as the zone's rule keeps it fresh
 * (ngx_http_tokengate_cache_bounds): never past the token's expiry or its
 * life since first_seen.
 */
void
ngx_http_tokengate_shared_store(ngx_http_tokengate_loc_conf_t *tlcf,
    u_char *skey, size_t skey_len, tg_identity_t *id, time_t first_seen)
{
    u_char                       *plain, *sealed, *p;
    size_t                        len;
    time_t                        now, expires, stale_until, keep_until;
    ngx_http_tokengate_shared_t  *sh;

    sh = tlcf->shared;
    now = ngx_time();

    if (sh == NULL || skey_len == 0) {
        return;
    }

    if (first_seen <= 0 || first_seen > now) {
        first_seen = now;
    }

    if (ngx_http_tokengate_cache_bounds(tlcf, id, first_seen, now, &expires,
                                        &stale_until, &keep_until)
        != NGX_OK)
    {
        return;
    }

    len = NGX_HTTP_TOKENGATE_PLAIN_HEAD;

    if (id != NULL) {
        if (id->n_groups > 0xffff) {
            return;
        }

        len += ngx_http_tokengate_encoded_len(id);
    }

    if (len + 64 > NGX_HTTP_TOKENGATE_VALUE_MAX) {
        return;
    }

    plain = ngx_alloc(2 * len + 64, ngx_cycle->log);
    if (plain == NULL) {
        return;
    }

    sealed = plain + len;
    p = plain;

    *p++ = (u_char) ((id == NULL ? NGX_HTTP_TOKENGATE_F_NEGATIVE : 0)
                     | (id != NULL && id->has_profile
                        ? NGX_HTTP_TOKENGATE_F_PROFILE : 0));
    *p++ = (u_char) (signed char) (id != NULL ? id->evaluation : 0);
    *p++ = (u_char) (signed char) (id != NULL ? id->disabled : 0);
    ngx_http_tokengate_put64(p, id != NULL ? (uint64_t) id->expires_at : 0);
    p += 8;
    ngx_http_tokengate_put64(p, (uint64_t) first_seen);
    p += 8;
    ngx_http_tokengate_put64(p, (uint64_t) expires);
    p += 8;
    *p++ = (u_char) ((id != NULL ? id->n_groups : 0) >> 8);
    *p++ = (u_char) (id != NULL ? id->n_groups : 0);

    if (id != NULL) {
        p = ngx_http_tokengate_encode(p, id);
    }

    if (ngx_http_tokengate_seal(sh, skey, skey_len, plain, len, sealed)
        == NGX_OK)
    {
        (void) ngx_http_tokengate_shared_set(sh, skey, skey_len, sealed,
                                             NGX_HTTP_TOKENGATE_SEALED(len),
                                             (ngx_msec_t) (expires - now)
                                             * 1000);
    }

    ngx_explicit_memzero(plain, len);
    ngx_free(plain);
}


/* Start the leader's lookup of ctx->skey: NGX_AGAIN, the answer comes
 * through ngx_http_tokengate_shared_answer; NGX_DECLINED, Redis is not
 * there now (go on to the BI server). */
ngx_int_t
ngx_http_tokengate_shared_lookup(ngx_http_tokengate_ctx_t *ctx,
    ngx_http_tokengate_loc_conf_t *tlcf)
{
    void  *g;

    g = ngx_http_tokengate_shared_get(tlcf->shared, ctx->skey, ctx->skey_len,
                                      ngx_http_tokengate_lookup_done, ctx);
    if (g == NULL) {
        ngx_http_tokengate_shared_count(NGX_HTTP_TOKENGATE_SHARED_ERRORS);
        return NGX_DECLINED;
    }

    ctx->lookup = g;

    return NGX_AGAIN;
}


/* A lookup's GET ended: open the entry, hand the answer over. */
static void
ngx_http_tokengate_lookup_done(void *data, ngx_int_t rc, u_char *value,
    size_t len)
{
    ngx_http_tokengate_ctx_t *ctx = data;

    u_char                         *plain, *p, *last;
    time_t                          now, first_seen, fresh_until;
    ngx_int_t                       n;
    ngx_uint_t                      flags;
    tg_identity_t                  *id;
    ngx_http_tokengate_shared_t    *sh;
    ngx_http_tokengate_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(ctx->request,
                                        ngx_http_tokengate_module);
    sh = tlcf->shared;
    ctx->lookup = NULL;

    if (rc == NGX_ERROR) {
        ngx_http_tokengate_shared_count(NGX_HTTP_TOKENGATE_SHARED_ERRORS);
        ngx_http_tokengate_shared_answer(ctx, NGX_ERROR, NULL, 0, 0);
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_tokengate_shared_count(NGX_HTTP_TOKENGATE_SHARED_MISSES);
        ngx_http_tokengate_shared_answer(ctx, NGX_DECLINED, NULL, 0, 0);
        return;
    }

    plain = ngx_pnalloc(ctx->request->pool, len + 1);
    if (plain == NULL) {
        ngx_http_tokengate_shared_answer(ctx, NGX_ERROR, NULL, 0, 0);
        return;
    }

    n = ngx_http_tokengate_open(sh, ctx->skey, ctx->skey_len, value, len,
                                plain);
    if (n == NGX_ERROR || n < NGX_HTTP_TOKENGATE_PLAIN_HEAD) {
        goto rejected;
    }

    p = plain;
    last = plain + n;
    now = ngx_time();

    flags = p[0];

    first_seen = (time_t) ngx_http_tokengate_get64(p + 11);
    fresh_until = (time_t) ngx_http_tokengate_get64(p + 19);

    if (fresh_until <= now || first_seen > now) {
        /* late, or from a clock ahead of ours: not fresh here */
        ngx_http_tokengate_shared_count(NGX_HTTP_TOKENGATE_SHARED_MISSES);
        ngx_http_tokengate_shared_answer(ctx, NGX_DECLINED, NULL, 0, 0);
        return;
    }

    if (flags & NGX_HTTP_TOKENGATE_F_NEGATIVE) {
        ngx_http_tokengate_shared_count(NGX_HTTP_TOKENGATE_SHARED_HITS);
        ngx_http_tokengate_shared_answer(ctx, NGX_DONE, NULL, first_seen,
                                         fresh_until);
        return;
    }

    id = ngx_pcalloc(ctx->request->pool, sizeof(tg_identity_t));
    if (id == NULL) {
        ngx_http_tokengate_shared_answer(ctx, NGX_ERROR, NULL, 0, 0);
        return;
    }

    id->has_profile = (flags & NGX_HTTP_TOKENGATE_F_PROFILE) != 0;
    id->evaluation = (signed char) p[1];
    id->disabled = (signed char) p[2];
    id->expires_at = (time_t) ngx_http_tokengate_get64(p + 3);
    id->n_groups = ((size_t) p[27] << 8) | p[28];

    if (id->expires_at > 0 && id->expires_at <= now) {
        ngx_http_tokengate_shared_count(NGX_HTTP_TOKENGATE_SHARED_MISSES);
        ngx_http_tokengate_shared_answer(ctx, NGX_DECLINED, NULL, 0, 0);
        return;
    }

    /* the zone's own encoding: id, name, email, then the groups */

    p += NGX_HTTP_TOKENGATE_PLAIN_HEAD;

    if (ngx_http_tokengate_decode(p, last - p, id, ctx->request->pool)
        != NGX_OK
        || id->id[0] == '\0')
    {
        goto rejected;
    }

    ngx_http_tokengate_shared_count(NGX_HTTP_TOKENGATE_SHARED_HITS);
    ngx_http_tokengate_shared_answer(ctx, NGX_OK, id, first_seen,
                                     fresh_until);
    return;

rejected:

    ngx_http_tokengate_shared_count(NGX_HTTP_TOKENGATE_SHARED_REJECTED);

    ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                  "tokengate: token %s: the shared cache's entry does not "
                  "open (tampered, another key_file, truncated or another "
                  "version): ignored", ngx_http_tokengate_fp(ctx));

    ngx_http_tokengate_shared_answer(ctx, NGX_ERROR, NULL, 0, 0);
}
