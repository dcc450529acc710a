
/*
 * SPDX-License-Identifier: MIT
 *
 * ngx_http_tokengate_hmac.h: HMAC-SHA-256 (RFC 2104) from SHA-256 states
 * keyed once per key, for the MACs of tokens (ngx_http_tokengate_mac).
 * Plain C on libcrypto, without nginx's headers, so that the unit test
 * tests/unit/test_hmac.c builds ngx_http_tokengate_hmac.c as the module
 * does and checks its output against OpenSSL's HMAC().
 */


#ifndef _NGX_HTTP_TOKENGATE_HMAC_H_INCLUDED_
#define _NGX_HTTP_TOKENGATE_HMAC_H_INCLUDED_


#include <stddef.h>

#include <openssl/sha.h>


/* SHA-256's block: the longest key taken as it is (the module's are 32
 * bytes); a longer one is refused rather than hashed first. */
#define NGX_HTTP_TOKENGATE_HMAC_KEY_MAX    64

/* SHA-256's output: the MAC's length. */
#define NGX_HTTP_TOKENGATE_HMAC_LEN        32


/* A key: the SHA-256 states after the block K ^ ipad (inner) and after
 * K ^ opad (outer).  They are as secret as the key: only
 * ngx_http_tokengate_hmac_key_free() may dispose of them, it wipes them. */
typedef struct {
    SHA256_CTX                 inner;
    SHA256_CTX                 outer;
} ngx_http_tokengate_hmac_key_t;

/* One MAC in progress: plain memory (the stack will do), nothing to
 * allocate or free; any number of keys may use it in turn. */
typedef struct {
    SHA256_CTX                 sha;
} ngx_http_tokengate_hmac_t;


#pragma GCC visibility push(hidden)

/*
 * Key hk with key (len bytes, at most NGX_HTTP_TOKENGATE_HMAC_KEY_MAX):
 * 0, or -1 on failure (then hk holds zeroes).  Dispose of it with
 * ngx_http_tokengate_hmac_key_free(), which wipes it and takes one that
 * failed too.
 */
int ngx_http_tokengate_hmac_key_init(ngx_http_tokengate_hmac_key_t *hk,
    const unsigned char *key, size_t len);
void ngx_http_tokengate_hmac_key_free(ngx_http_tokengate_hmac_key_t *hk);

/*
 * One MAC: ngx_http_tokengate_hmac_start() sets ctx to hk's inner state,
 * ngx_http_tokengate_hmac_update() feeds the message (in as many pieces as
 * wanted), and ngx_http_tokengate_hmac_final() writes the
 * NGX_HTTP_TOKENGATE_HMAC_LEN bytes of HMAC-SHA-256(key, message) to out;
 * update and final return 0, or -1 on failure.  No call allocates.  hk is
 * only read: one key serves any number of MACs.  After final, ctx holds
 * nothing of the key and may start another MAC.
 */
void ngx_http_tokengate_hmac_start(ngx_http_tokengate_hmac_t *ctx,
    const ngx_http_tokengate_hmac_key_t *hk);
int ngx_http_tokengate_hmac_update(ngx_http_tokengate_hmac_t *ctx,
    const void *data, size_t len);
int ngx_http_tokengate_hmac_final(ngx_http_tokengate_hmac_t *ctx,
    const ngx_http_tokengate_hmac_key_t *hk, unsigned char *out);

#pragma GCC visibility pop


#endif /* _NGX_HTTP_TOKENGATE_HMAC_H_INCLUDED_ */
