
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
 * EVP_MAC_final(), without the EVP_MAC layer around it and without
 * relying on a re-initialisation that restarts with the key (which
 * providers older than OpenSSL 3.0.3 did not do, openssl/openssl#17811).
 */


/*
 * The states are SHA256_CTX structs of OpenSSL's low-level SHA-256 API,
 * copied by assignment.  Through EVP (the only non-deprecated way in
 * OpenSSL 3.0), each of the two copies of a MAC is an
 * EVP_MD_CTX_copy_ex(), which wipes and frees the provider's old state,
 * drops and takes a reference and allocates a new one: about 0.3 us per
 * MAC, the largest user-space cost left on a cache hit.  The low-level
 * functions are deprecated in 3.0 but present, and compress blocks with
 * the same code as EVP (the CPU's SHA extensions included).  Declaring the
 * 1.1.1 API level, before any OpenSSL header, gets their declarations
 * without the deprecation attribute that -Werror would stop on.  Only this
 * file calls them: the header needs the struct alone, which OpenSSL 3.0
 * declares at any API level (unless it was built without the deprecated
 * API, which Debian's is not).
 */
#define OPENSSL_API_COMPAT  10101

#include "ngx_http_tokengate_hmac.h"

#include <string.h>

#include <openssl/crypto.h>


/* SHA-256's block. */
#define NGX_HTTP_TOKENGATE_HMAC_BLOCK      64


int
ngx_http_tokengate_hmac_key_init(ngx_http_tokengate_hmac_key_t *hk,
    const unsigned char *key, size_t len)
{
    int            ok;
    size_t         i;
    unsigned char  ipad[NGX_HTTP_TOKENGATE_HMAC_BLOCK];
    unsigned char  opad[NGX_HTTP_TOKENGATE_HMAC_BLOCK];

    memset(hk, 0, sizeof(*hk));

    if (len > NGX_HTTP_TOKENGATE_HMAC_KEY_MAX) {
        return -1;
    }

    memset(ipad, 0x36, sizeof(ipad));
    memset(opad, 0x5c, sizeof(opad));

    for (i = 0; i < len; i++) {
        ipad[i] ^= key[i];
        opad[i] ^= key[i];
    }

    ok = SHA256_Init(&hk->inner) == 1
         && SHA256_Update(&hk->inner, ipad, sizeof(ipad)) == 1
         && SHA256_Init(&hk->outer) == 1
         && SHA256_Update(&hk->outer, opad, sizeof(opad)) == 1;

    OPENSSL_cleanse(ipad, sizeof(ipad));
    OPENSSL_cleanse(opad, sizeof(opad));

    if (!ok) {
        ngx_http_tokengate_hmac_key_free(hk);
        return -1;
    }

    return 0;
}


void
ngx_http_tokengate_hmac_key_free(ngx_http_tokengate_hmac_key_t *hk)
{
    OPENSSL_cleanse(hk, sizeof(*hk));
}


void
ngx_http_tokengate_hmac_start(ngx_http_tokengate_hmac_t *ctx,
    const ngx_http_tokengate_hmac_key_t *hk)
{
    ctx->sha = hk->inner;
}


int
ngx_http_tokengate_hmac_update(ngx_http_tokengate_hmac_t *ctx,
    const void *data, size_t len)
{
    return SHA256_Update(&ctx->sha, data, len) == 1 ? 0 : -1;
}


/* SHA256_Final() wipes the block it buffered; what it leaves in ctx is
 * the outer hash's result, the MAC. */
int
ngx_http_tokengate_hmac_final(ngx_http_tokengate_hmac_t *ctx,
    const ngx_http_tokengate_hmac_key_t *hk, unsigned char *out)
{
    int            ok;
    unsigned char  inner[NGX_HTTP_TOKENGATE_HMAC_LEN];

    ok = SHA256_Final(inner, &ctx->sha) == 1;

    if (ok) {
        ctx->sha = hk->outer;

        ok = SHA256_Update(&ctx->sha, inner, sizeof(inner)) == 1
             && SHA256_Final(out, &ctx->sha) == 1;
    }

    OPENSSL_cleanse(inner, sizeof(inner));

    return ok ? 0 : -1;
}
