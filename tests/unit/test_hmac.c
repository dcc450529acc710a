/* SPDX-License-Identifier: MIT */
/*
 * test_hmac.c - the nginx module's HMAC-SHA-256 from keyed SHA-256 states
 * (nginx_module/ngx_http_tokengate_hmac.c, built here from the same source
 * as in the module): the keys of the cache, of coalescing and of the
 * fleet's shared cache are these MACs, so they must be HMAC-SHA-256 to the
 * byte (the shared cache's keys are compared across nodes and versions).
 * Checked against RFC 4231's vectors and against OpenSSL's HMAC() (the
 * EVP_MAC "HMAC" the module used before) for keys and messages of every
 * length around SHA-256's 64-byte block, fed in pieces as the module does.
 * Each test is named by what it protects.
 */
#include "ngx_http_tokengate_hmac.h"

#include <openssl/hmac.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The module's longest message: the 8-byte length, a token of
 * TG_TOKEN_MAX (4096) bytes, the Basic flag and a 32-byte fingerprint. */
#define MSG_MAX (8 + 4096 + 1 + 32)

/* Deterministic bytes (xorshift32), so a failure can be reproduced. */
static void
fill(unsigned char *p, size_t len, uint32_t seed)
{
    size_t i;
    uint32_t x = seed * 2654435761u + 1;

    for (i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char) x;
    }
}

static void
from_hex(const char *hex, unsigned char *out)
{
    size_t i;
    unsigned int b;

    for (i = 0; hex[2 * i] != '\0'; i++) {
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &b), 1);
        out[i] = (unsigned char) b;
    }
}

/* The MAC of msg with hk in md, the message fed in parts cut at cut1 and
 * cut2 (cut1 <= cut2 <= len), as the module feeds length, token, tail. */
static void
mac_in_parts(EVP_MD_CTX *md, const ngx_http_tokengate_hmac_key_t *hk,
             const unsigned char *msg, size_t len, size_t cut1, size_t cut2,
             unsigned char *out)
{
    assert_int_equal(ngx_http_tokengate_hmac_start(md, hk), 0);
    assert_int_equal(EVP_DigestUpdate(md, msg, cut1), 1);
    assert_int_equal(EVP_DigestUpdate(md, msg + cut1, cut2 - cut1), 1);
    assert_int_equal(EVP_DigestUpdate(md, msg + cut2, len - cut2), 1);
    assert_int_equal(ngx_http_tokengate_hmac_final(md, hk, out), 0);
}

static void
openssl_hmac(const unsigned char *key, size_t key_len, const unsigned char *msg,
             size_t len, unsigned char *out)
{
    unsigned int n = 0;

    assert_non_null(HMAC(EVP_sha256(), key, (int) key_len, msg, len, out, &n));
    assert_int_equal(n, NGX_HTTP_TOKENGATE_HMAC_LEN);
}

static void
rfc4231_vectors_match(void **state)
{
    static const struct {
        const char *key_hex;
        const char *data;
        const char *mac_hex;
    } cases[] = {
        /* test case 1 */
        {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "Hi There",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        /* test case 2 */
        {"4a656665", "what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
    };
    unsigned char key[64], mac[32], want[32];
    size_t i, key_len;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ngx_http_tokengate_hmac_key_t hk;

    (void) state;
    assert_non_null(md);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        key_len = strlen(cases[i].key_hex) / 2;
        from_hex(cases[i].key_hex, key);
        from_hex(cases[i].mac_hex, want);
        assert_int_equal(ngx_http_tokengate_hmac_key_init(&hk, key, key_len),
                         0);
        mac_in_parts(md, &hk, (const unsigned char *) cases[i].data,
                     strlen(cases[i].data), 0, 0, mac);
        assert_memory_equal(mac, want, sizeof(want));
        ngx_http_tokengate_hmac_key_free(&hk);
    }
    EVP_MD_CTX_free(md);
}

static void
matches_openssl_hmac_for_keys_and_messages_around_the_block(void **state)
{
    static const size_t key_lens[] = {0, 1, 20, 32, 63, 64};
    static const size_t msg_lens[] = {0,   1,   41,  55,   56,     63,
                                      64,  65,  81,  119,  120,    127,
                                      128, 161, 200, 1000, MSG_MAX};
    static unsigned char msg[MSG_MAX];
    unsigned char key[64], mac[32], want[32];
    size_t k, m, len, cut1, cut2;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ngx_http_tokengate_hmac_key_t hk;

    (void) state;
    assert_non_null(md);
    for (k = 0; k < sizeof(key_lens) / sizeof(key_lens[0]); k++) {
        fill(key, key_lens[k], (uint32_t) k + 1);
        assert_int_equal(
            ngx_http_tokengate_hmac_key_init(&hk, key, key_lens[k]), 0);

        for (m = 0; m < sizeof(msg_lens) / sizeof(msg_lens[0]); m++) {
            len = msg_lens[m];
            fill(msg, len, (uint32_t) (100 * k + m + 7));
            openssl_hmac(key, key_lens[k], msg, len, want);

            /* whole, and in the module's three parts (8, token, 33) */
            mac_in_parts(md, &hk, msg, len, 0, len, mac);
            assert_memory_equal(mac, want, sizeof(want));

            cut1 = len < 8 ? len : 8;
            cut2 = len < cut1 + 33 ? cut1 : len - 33;
            mac_in_parts(md, &hk, msg, len, cut1, cut2, mac);
            assert_memory_equal(mac, want, sizeof(want));
        }
        ngx_http_tokengate_hmac_key_free(&hk);
    }
    EVP_MD_CTX_free(md);
}

static void
one_context_serves_keys_in_turn_without_carrying_state(void **state)
{
    unsigned char key_a[32], key_b[32], msg[120];
    unsigned char a1[32], b1[32], a2[32], want_a[32], want_b[32];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ngx_http_tokengate_hmac_key_t ha, hb;

    (void) state;
    assert_non_null(md);
    fill(key_a, sizeof(key_a), 11);
    fill(key_b, sizeof(key_b), 12);
    fill(msg, sizeof(msg), 13);
    assert_int_equal(ngx_http_tokengate_hmac_key_init(&ha, key_a, 32), 0);
    assert_int_equal(ngx_http_tokengate_hmac_key_init(&hb, key_b, 32), 0);
    openssl_hmac(key_a, 32, msg, sizeof(msg), want_a);
    openssl_hmac(key_b, 32, msg, sizeof(msg), want_b);

    mac_in_parts(md, &ha, msg, sizeof(msg), 8, 87, a1);
    mac_in_parts(md, &hb, msg, sizeof(msg), 8, 87, b1);
    mac_in_parts(md, &ha, msg, sizeof(msg), 8, 87, a2);

    assert_memory_equal(a1, want_a, 32);
    assert_memory_equal(b1, want_b, 32);
    assert_memory_equal(a2, want_a, 32);
    assert_memory_not_equal(a1, b1, 32);

    ngx_http_tokengate_hmac_key_free(&ha);
    ngx_http_tokengate_hmac_key_free(&hb);
    EVP_MD_CTX_free(md);
}

static void
a_key_longer_than_a_block_is_refused_and_holds_nothing(void **state)
{
    unsigned char key[65];
    ngx_http_tokengate_hmac_key_t hk;

    (void) state;
    fill(key, sizeof(key), 21);
    assert_int_equal(ngx_http_tokengate_hmac_key_init(&hk, key, sizeof(key)),
                     -1);
    assert_null(hk.inner);
    assert_null(hk.outer);
    ngx_http_tokengate_hmac_key_free(&hk);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc4231_vectors_match),
        cmocka_unit_test(
            matches_openssl_hmac_for_keys_and_messages_around_the_block),
        cmocka_unit_test(
            one_context_serves_keys_in_turn_without_carrying_state),
        cmocka_unit_test(
            a_key_longer_than_a_block_is_refused_and_holds_nothing),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
