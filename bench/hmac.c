/* SPDX-License-Identifier: MIT */
/*
 * bench/hmac.c - the nginx module's HMAC-SHA-256 key of a token
 * (ngx_http_tokengate_mac: the 8-byte length, the token, the Basic flag
 * and a 32-byte fingerprint under a 32-byte key) computed N times, by the
 * way the module computes it now (keyed SHA256_CTX states copied by
 * assignment per MAC, nginx_module/ngx_http_tokengate_hmac.c, built from
 * the same source), or by one of the ways it did before: keyed states in
 * EVP_MD_CTXs copied with EVP_MD_CTX_copy_ex() (evp_md), a kept EVP_MAC
 * "HMAC" context re-initialised with its key (evp_mac).  All outputs are
 * compared first.  bench/hmac runs it under callgrind and natively; see
 * bench/README.md.
 *
 * usage: hmac evp_mac|evp_md|states TOKEN_LEN N   (N = 0: the set-up alone)
 */
#include "ngx_http_tokengate_hmac.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOKEN_MAX 4096

static unsigned char key[32], head[8], token[TOKEN_MAX], tail[33];
static size_t token_len;

static EVP_MAC_CTX *mac_ctx;
static EVP_MD_CTX *md, *md_inner, *md_outer;
static ngx_http_tokengate_hmac_key_t hk;

/* The former ngx_http_tokengate_mac(): re-initialise, update, final. */
static int
mac_evp_mac(unsigned char *out)
{
    size_t n = 0;

    return EVP_MAC_init(mac_ctx, NULL, 0, NULL) == 1 &&
           EVP_MAC_update(mac_ctx, head, sizeof(head)) == 1 &&
           EVP_MAC_update(mac_ctx, token, token_len) == 1 &&
           EVP_MAC_update(mac_ctx, tail, sizeof(tail)) == 1 &&
           EVP_MAC_final(mac_ctx, out, &n, 32) == 1 && n == 32;
}

/* The keyed states of the former ngx_http_tokengate_hmac_key_init(): the
 * SHA-256 states after the key ^ 0x36 and key ^ 0x5c blocks. */
static int
evp_md_key(void)
{
    unsigned char ipad[64], opad[64];
    size_t j;

    memset(ipad, 0x36, sizeof(ipad));
    memset(opad, 0x5c, sizeof(opad));
    for (j = 0; j < sizeof(key); j++) {
        ipad[j] ^= key[j];
        opad[j] ^= key[j];
    }
    md_inner = EVP_MD_CTX_new();
    md_outer = EVP_MD_CTX_new();
    return md_inner != NULL && md_outer != NULL &&
           EVP_DigestInit_ex2(md_inner, EVP_sha256(), NULL) == 1 &&
           EVP_DigestUpdate(md_inner, ipad, sizeof(ipad)) == 1 &&
           EVP_DigestInit_ex2(md_outer, EVP_sha256(), NULL) == 1 &&
           EVP_DigestUpdate(md_outer, opad, sizeof(opad)) == 1;
}

/* The former ngx_http_tokengate_mac() on those states: copy, update,
 * final, copy, update, final. */
static int
mac_evp_md(unsigned char *out)
{
    unsigned char inner[32];
    unsigned int n = 0, m = 0;

    return EVP_MD_CTX_copy_ex(md, md_inner) == 1 &&
           EVP_DigestUpdate(md, head, sizeof(head)) == 1 &&
           EVP_DigestUpdate(md, token, token_len) == 1 &&
           EVP_DigestUpdate(md, tail, sizeof(tail)) == 1 &&
           EVP_DigestFinal_ex(md, inner, &n) == 1 && n == 32 &&
           EVP_MD_CTX_copy_ex(md, md_outer) == 1 &&
           EVP_DigestUpdate(md, inner, n) == 1 &&
           EVP_DigestFinal_ex(md, out, &m) == 1 && m == 32;
}

/* The module's ngx_http_tokengate_mac() now. */
static int
mac_states(unsigned char *out)
{
    ngx_http_tokengate_hmac_t ctx;

    ngx_http_tokengate_hmac_start(&ctx, &hk);
    return ngx_http_tokengate_hmac_update(&ctx, head, sizeof(head)) == 0 &&
           ngx_http_tokengate_hmac_update(&ctx, token, token_len) == 0 &&
           ngx_http_tokengate_hmac_update(&ctx, tail, sizeof(tail)) == 0 &&
           ngx_http_tokengate_hmac_final(&ctx, &hk, out) == 0;
}

int
main(int argc, char **argv)
{
    int (*mac)(unsigned char *);
    long i, n;
    size_t j;
    unsigned char a[32], b[32], c[32];
    struct timespec t0, t1;
    OSSL_PARAM params[2];
    EVP_MAC *alg;

    if (argc != 4) {
        fprintf(stderr, "usage: hmac evp_mac|evp_md|states TOKEN_LEN N\n");
        return 64;
    }
    if (strcmp(argv[1], "evp_mac") == 0) {
        mac = mac_evp_mac;
    } else if (strcmp(argv[1], "evp_md") == 0) {
        mac = mac_evp_md;
    } else if (strcmp(argv[1], "states") == 0) {
        mac = mac_states;
    } else {
        fprintf(stderr, "usage: hmac evp_mac|evp_md|states TOKEN_LEN N\n");
        return 64;
    }
    token_len = strtoul(argv[2], NULL, 10);
    n = strtol(argv[3], NULL, 10);
    if (token_len > TOKEN_MAX) {
        fprintf(stderr, "hmac: TOKEN_LEN is at most %d\n", TOKEN_MAX);
        return 64;
    }

    for (j = 0; j < sizeof(key); j++) {
        key[j] = (unsigned char) (j * 7 + 1);
    }
    for (j = 0; j < token_len; j++) {
        token[j] = (unsigned char) ('a' + j % 26);
    }
    for (j = 0; j < 8; j++) {
        head[j] =
            (unsigned char) ((unsigned long long) token_len >> (56 - 8 * j));
    }
    memset(tail, 0x42, sizeof(tail));

    alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    mac_ctx = alg != NULL ? EVP_MAC_CTX_new(alg) : NULL;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    md = EVP_MD_CTX_new();
    if (mac_ctx == NULL || md == NULL ||
        EVP_MAC_init(mac_ctx, key, sizeof(key), params) != 1 ||
        !evp_md_key() ||
        ngx_http_tokengate_hmac_key_init(&hk, key, sizeof(key)) != 0) {
        fprintf(stderr, "hmac: set-up failed\n");
        return 1;
    }

    /* the same bytes every way, and each context used once already */
    if (!mac_evp_mac(a) || !mac_evp_md(b) || !mac_states(c) ||
        memcmp(a, b, 32) != 0 || memcmp(a, c, 32) != 0) {
        fprintf(stderr, "hmac: the ways differ\n");
        return 1;
    }

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < n; i++) {
        if (!mac(a)) {
            fprintf(stderr, "hmac: a MAC failed\n");
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);

    if (n > 0) {
        printf("%s token %zu bytes: %.1f ns per MAC\n", argv[1], token_len,
               ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n);
    }
    return 0;
}
