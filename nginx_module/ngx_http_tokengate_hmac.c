
/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_hmac.c: HMAC-SHA-256 from keyed SHA-256 states.
 *
 * HMAC(K, m) = H(K ^ opad || H(K ^ ipad || m)); with K at most one block,
 * K ^ ipad and K ^ opad are one block each, so the states after them
 * depend on the key only.  They are computed once per key and each MAC
 * starts from copies: one copy, the message and a final for the inner
 * hash, one copy, 32 bytes and a final for the outer.  This is what
 * OpenSSL's HMAC provider does inside EVP_MAC_init(ctx, NULL, ...) and
 * EVP_MAC_final(), without the EVP_MAC layer around it (parameter
 * lookups, the size query of each final) and without relying on a
 * re-initialisation that restarts with the key (which providers older than
 * OpenSSL 3.0.3 did not do, openssl/openssl#17811).  Only the public,
 * non-deprecated EVP_MD API of OpenSSL 3 is used.
 */


#include <string.h>

#include <openssl/crypto.h>

#include "ngx_http_tokengate_hmac.h"


/* SHA-256's block. */
#define NGX_HTTP_TOKENGATE_HMAC_BLOCK      64


/* SHA-256, fetched once per process (a provider lookup under a lock). */
static EVP_MD  *ngx_http_tokengate_sha256;


int
ngx_http_tokengate_hmac_key_init(ngx_http_tokengate_hmac_key_t *hk,
    const unsigned char *key, size_t len)
{
    int            ok;
    size_t         i;
    unsigned char  ipad[NGX_HTTP_TOKENGATE_HMAC_BLOCK];
    unsigned char  opad[NGX_HTTP_TOKENGATE_HMAC_BLOCK];

    hk->inner = NULL;
    hk->outer = NULL;

    if (len > NGX_HTTP_TOKENGATE_HMAC_KEY_MAX) {
        return -1;
    }

    if (ngx_http_tokengate_sha256 == NULL) {
        ngx_http_tokengate_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
        if (ngx_http_tokengate_sha256 == NULL) {
            return -1;
        }
    }

    memset(ipad, 0x36, sizeof(ipad));
    memset(opad, 0x5c, sizeof(opad));

    for (i = 0; i < len; i++) {
        ipad[i] ^= key[i];
        opad[i] ^= key[i];
    }

    hk->inner = EVP_MD_CTX_new();
    hk->outer = EVP_MD_CTX_new();

    ok = hk->inner != NULL && hk->outer != NULL
         && EVP_DigestInit_ex2(hk->inner, ngx_http_tokengate_sha256, NULL)
            == 1
         && EVP_DigestUpdate(hk->inner, ipad, sizeof(ipad)) == 1
         && EVP_DigestInit_ex2(hk->outer, ngx_http_tokengate_sha256, NULL)
            == 1
         && EVP_DigestUpdate(hk->outer, opad, sizeof(opad)) == 1;

    OPENSSL_cleanse(ipad, sizeof(ipad));
    OPENSSL_cleanse(opad, sizeof(opad));

    if (!ok) {
        ngx_http_tokengate_hmac_key_free(hk);
        return -1;
    }

    return 0;
}


/* EVP_MD_CTX_free() wipes the states it frees. */
void
ngx_http_tokengate_hmac_key_free(ngx_http_tokengate_hmac_key_t *hk)
{
    EVP_MD_CTX_free(hk->inner);
    EVP_MD_CTX_free(hk->outer);

    hk->inner = NULL;
    hk->outer = NULL;
}


int
ngx_http_tokengate_hmac_start(EVP_MD_CTX *md,
    const ngx_http_tokengate_hmac_key_t *hk)
{
    return EVP_MD_CTX_copy_ex(md, hk->inner) == 1 ? 0 : -1;
}


int
ngx_http_tokengate_hmac_final(EVP_MD_CTX *md,
    const ngx_http_tokengate_hmac_key_t *hk, unsigned char *out)
{
    int            ok;
    unsigned int   n, m;
    unsigned char  inner[NGX_HTTP_TOKENGATE_HMAC_LEN];

    n = 0;
    m = 0;

    ok = EVP_DigestFinal_ex(md, inner, &n) == 1
         && n == NGX_HTTP_TOKENGATE_HMAC_LEN
         && EVP_MD_CTX_copy_ex(md, hk->outer) == 1
         && EVP_DigestUpdate(md, inner, n) == 1
         && EVP_DigestFinal_ex(md, out, &m) == 1
         && m == NGX_HTTP_TOKENGATE_HMAC_LEN;

    OPENSSL_cleanse(inner, sizeof(inner));

    return ok ? 0 : -1;
}
